"""The ready-made property tests on a suite's own crystal and reference file: fcc Cu with
ASE's EMT (a test calculator shipped with ASE) against a user's reference JSON, in
pytester runs."""

from __future__ import annotations

import importlib
import json
import textwrap

# In-process pytester runs drop the modules they imported; extension modules cannot be
# imported twice, so the properties' stack is imported here once
for _name in ("phonopy", "phonopy.structure.cells", "spglib", "matscipy.elasticity",
              "matscipy.neighbours", "scipy.optimize", "ase.eos", "ase.optimize",
              "ase.filters", "ase.constraints", "ase.calculators.emt", "threadpoolctl",
              "pytest_mlpval.property_tests", "pytest_mlpval.protocols.properties",
              "pytest_mlpval.comparison", "pytest_mlpval.crystals"):
    importlib.import_module(_name)

#: a user's reference file for copper (numbers of the literature, rounded; the source
#: strings say where they come from)
CU_REFERENCES = {
    "schema": "pytest-mlpval-references/1", "element": "Cu",
    "entries": [
        {"property": "lattice_parameter_A", "value": 3.615, "unit": "Å",
         "uncertainty": 0.001, "kind": "experiment", "conditions": {"temperature_K": 293},
         "source": "user file: fcc Cu, room temperature", "confidence": "high"},
        {"property": "C44_GPa", "value": 75.4, "unit": "GPa", "uncertainty": None,
         "kind": "experiment", "source": "user file: Cu C44 at 300 K"},
        {"property": "energy_bcc_vs_fcc_per_atom_eV", "value": 0.04, "unit": "eV/atom",
         "uncertainty": None, "kind": "DFT-PBE", "source": "user file: bcc - fcc, PBE"},
    ]}

SUITE = """
    import pytest
    from pytest_mlpval.property_tests import ElasticTests, LatticeTests

    MLPVAL_CRYSTAL = "fcc"
    MLPVAL_REFERENCE_FILES = ["cu.json"]
    MLPVAL_PROPERTY_PARAMS = {"elastic": {"n_strains": 3, "spread_strains": []},
                              "eos": {"spread_spans": [], "n_points": 5}}


    @pytest.mark.mlpval_property("lattice_parameter_A", rel=0.01)
    class TestLattice(LatticeTests):
        pass


    @pytest.mark.mlpval_property("C44_GPa", rel=0.02)
    class TestElastic(ElasticTests):
        pass
"""

POLYMORPHS = """
    import pytest
    from pytest_mlpval.property_tests import PolymorphTests

    MLPVAL_CRYSTAL = "fcc"
    MLPVAL_POLYMORPHS = ("fcc", "bcc")
    MLPVAL_REFERENCE_FILES = ["cu.json"]
    MLPVAL_PROPERTY_PARAMS = {"polymorphs": {"n_points": 7}}


    @pytest.mark.mlpval_property("energy_bcc_vs_fcc_per_atom_eV", abs={tolerance},
                                 against="PBE")
    class TestPolymorphs(PolymorphTests):
        pass
"""


def test_copper_against_a_users_reference_file(pytester, run):
    (pytester.path / "cu.json").write_text(json.dumps(CU_REFERENCES), encoding="utf-8")
    pytester.makepyfile(test_cu=textwrap.dedent(SUITE))
    result = run("--potential=ase.calculators.emt:EMT", "--mlpval-species=Cu", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*EMT: 1 of 1 properties outside tolerance: C44_GPa = * GPa, experiment 75.4*",
        "*experiment for C44_GPa: user file: Cu C44 at 300 K*",
    ], consecutive=False)


def test_copper_polymorphs_are_named_by_the_crystals_given(pytester, run):
    """bcc vs fcc Cu with EMT: about 0.04 eV/atom (passes within 0.05 of the user's 0.04,
    fails within 0.001)."""
    (pytester.path / "cu.json").write_text(json.dumps(CU_REFERENCES), encoding="utf-8")
    pytester.makepyfile(test_pass=textwrap.dedent(POLYMORPHS.replace("{tolerance}", "0.05")),
                        test_fail=textwrap.dedent(POLYMORPHS.replace("{tolerance}", "0.001")))
    result = run("--potential=ase.calculators.emt:EMT", "--mlpval-species=Cu", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*energy_bcc_vs_fcc_per_atom_eV = * eV/atom, DFT-PBE 0.04*"],
                                consecutive=False)


def test_a_bad_crystal_spec_is_a_usage_error(pytester, run):
    (pytester.path / "cu.json").write_text(json.dumps(CU_REFERENCES), encoding="utf-8")
    pytester.makepyfile(test_cu=textwrap.dedent("""
        from pytest_mlpval.property_tests import LatticeTests

        MLPVAL_CRYSTAL = "fcc:a=big"
        MLPVAL_REFERENCE_FILES = ["cu.json"]


        class TestLattice(LatticeTests):
            pass
    """))
    result = run("--potential=ase.calculators.emt:EMT", "--mlpval-species=Cu")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*MLPVAL_CRYSTAL / MLPVAL_POLYMORPHS: crystal fcc:a=big: "
                                 "bad value for 'a': 'big'*"], consecutive=False)


CU3AU = """
    import pytest
    from pytest_mlpval.crystals import spacegroup_spec
    from pytest_mlpval.property_tests import ElasticTests, LatticeTests

    # L1_2 Cu3Au from its space group (Au on 1a, Cu on 3c)
    MLPVAL_CRYSTAL = spacegroup_spec(["Au", "Cu"], [[0, 0, 0], [0, 0.5, 0.5]], 221,
                                     [3.75] * 3 + [90] * 3, name="L1_2")
    MLPVAL_SYMBOL = "Cu3Au"
    MLPVAL_REFERENCE_FILES = ["cu3au.json"]
    MLPVAL_PROPERTY_PARAMS = {"elastic": {"n_strains": 3, "spread_strains": []},
                              "eos": {"spread_spans": [], "n_points": 5}}


    @pytest.mark.mlpval_property("lattice_parameter_A", rel=0.02)
    class TestLattice(LatticeTests):
        pass


    @pytest.mark.mlpval_property("C44_GPa", rel=0.3)
    class TestElastic(ElasticTests):
        pass
"""


def test_a_binary_crystal_through_the_ready_made_tests(pytester, run):
    """Cu3Au (L1_2) with EMT, which was fitted to Cu and Au: a0 within 2 % and C44
    within 30 % of the alloy's experimental values (the file's numbers, rounded)."""
    (pytester.path / "cu3au.json").write_text(json.dumps({
        "schema": "pytest-mlpval-references/1", "element": "Cu3Au", "entries": [
            {"property": "lattice_parameter_A", "value": 3.749, "unit": "Å",
             "kind": "experiment", "source": "user file: L1_2 Cu3Au"},
            {"property": "C44_GPa", "value": 66.5, "unit": "GPa", "kind": "experiment",
             "source": "user file: Cu3Au C44"}]}), encoding="utf-8")
    pytester.makepyfile(test_cu3au=textwrap.dedent(CU3AU))
    result = run("--potential=ase.calculators.emt:EMT", "--mlpval-species=Cu,Au", "-rf")
    result.assert_outcomes(passed=2)
