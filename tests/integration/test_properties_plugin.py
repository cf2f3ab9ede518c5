"""The ready-made property tests (pytest_mlpval.property_tests) in pytester runs with
Stillinger-Weber: pass and fail with the comparison table, bad markers, the cross-level
flag, JSON, baselines, the report's figures, the campaign cache, and the silicon suite's
test_properties.py."""

from __future__ import annotations

import importlib
import re
import shutil
import textwrap

import pytest

from .conftest import SILICON, read_json, records_by_nodeid

# In-process pytester runs drop the modules they imported; extension modules cannot be
# imported twice, so the properties' stack is imported here once
for _name in ("phonopy", "phonopy.structure.cells", "spglib", "matscipy.elasticity",
              "matscipy.neighbours", "scipy.optimize", "ase.eos", "ase.optimize",
              "ase.filters", "ase.constraints", "threadpoolctl", "matplotlib",
              "matplotlib.figure", "matplotlib.backends.backend_agg", "pytest_mlpval.plots",
              "pytest_mlpval.report", "pytest_mlpval.card", "pytest_mlpval.property_tests",
              "pytest_mlpval.protocols.properties", "pytest_mlpval.comparison",
              "pytest_mlpval.baseline"):
    try:
        importlib.import_module(_name)
    except ImportError:  # matplotlib is optional
        pass

#: cheap settings for SW: 3 strains, a small phonon mesh
HEADER = """
    import pytest
    from pytest_mlpval.property_tests import (ElasticTests, LatticeTests, PhononTests,
                                              VacancyTests)

    MLPVAL_TRAINING_LEVEL = "PBE"
    MLPVAL_PROPERTY_PARAMS = {"elastic": {"n_strains": 3}, "phonons": {"mesh": [4, 4, 4]}}
"""

PASS_FAIL = HEADER + """
    @pytest.mark.mlpval_property("C11_GPa", rel=0.13)
    class TestPass(ElasticTests):
        pass


    @pytest.mark.mlpval_property("C44_GPa", rel=0.15)
    @pytest.mark.mlpval_property("C11_GPa", rel=0.13)
    class TestFail(ElasticTests):
        pass
"""



def _source(extra: str, header: str = HEADER) -> str:
    return textwrap.dedent(header) + textwrap.dedent(extra)


FAIL_ID = "test_props.py::TestFail::test_mlpval_elastic[sw]"


def test_pass_and_fail_with_the_table(pytester, run, plugin_args):
    pytester.makepyfile(test_props=PASS_FAIL)
    result = run(*plugin_args, "--potential=sw", "--mlpval-json=out.json", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*sw: 1 of 2 properties outside tolerance: C44_GPa = 56.* GPa, experiment 79.6 "
        "(difference -23.*, tolerance 11.94)",
        "*property*candidate*reference*unit*against*difference*rel. diff*tolerance*status*",
        "*C11_GPa*151.*165.7*GPa*experiment*-14.3*-8.6%*21.54*ok*",
        "*C44_GPa*56.*79.6*GPa*experiment*-23.*-29.*%*11.94*FAIL*",
        "*experiment for C11_GPa, C44_GPa: H. J. McSkimin & P. Andreatch*",
        "*tolerances from @pytest.mark.mlpval_property('C44_GPa', rel=0.15) in "
        f"{FAIL_ID.replace('[', '[[]')}; change them there*",
    ], consecutive=False)
    records = records_by_nodeid(read_json(pytester.path / "out.json"))
    (record,) = records[FAIL_ID]
    assert record["kind"] == "protocol" and record["dataset"] == "elastic"
    metrics = {k: v["value"] for k, v in record["metrics"].items()}
    assert metrics["C44_GPa"] == pytest.approx(56.4, abs=1.0)
    assert metrics["|C44_GPa - experiment|"] == pytest.approx(79.6 - metrics["C44_GPa"])
    bounds = {t["metric"]: t for t in record["thresholds"]}
    assert bounds["|C44_GPa - experiment|"]["limit"] == pytest.approx(0.15 * 79.6)
    assert not bounds["|C44_GPa - experiment|"]["passed"]
    assert bounds["|C11_GPa - experiment|"]["passed"]
    assert bounds["|C44_GPa - experiment|"]["source"].startswith("H. J. McSkimin")


def test_cross_level_comparison_is_flagged(pytester, run):
    pytester.makepyfile(test_props=_source("""
        @pytest.mark.mlpval_property("C44_GPa", rel=0.05, against="PW91")
        class TestVsPW91(ElasticTests):
            pass


        @pytest.mark.mlpval_property("bulk_modulus_GPa", rel=0.02)
        class TestBulkModulus(LatticeTests):
            pass
    """))
    result = run("--potential=sw")
    result.assert_outcomes(failed=2)
    # against experiment, with the fit error and the training level's own error apart
    result.stdout.fnmatch_lines([
        "*sw: 1 of 1 properties outside tolerance: bulk_modulus_GPa = 101.* GPa, "
        "experiment 97.8*",
        "*fit error (candidate vs DFT-PBE) and DFT-PBE's own error (vs experiment):",
        "*property*candidate*DFT-PBE*experiment*unit*fit error (cand-DFT-PBE)*"
        "DFT-PBE error (vs exp)*total (cand-exp)",
        "*bulk_modulus_GPa*101.*89.4*97.8*GPa*12.*-8.4*3.*",
    ], consecutive=False)
    assert "LEVEL MISMATCH" not in result.stdout.str().split("TestBulkModulus")[-1]
    result.stdout.fnmatch_lines([
        "*sw: 1 of 1 properties outside tolerance: C44_GPa = 56.* GPa, DFT-PW91 72.2*",
        "*C44_GPa*56.*72.2*GPa*DFT-PW91 (LEVEL MISMATCH)*FAIL*",
        "*LEVEL MISMATCH: candidate trained on DFT-PBE, compared with DFT-PW91 for C44_GPa:"
        " the difference mixes the fit error with the difference between the functionals*",
    ], consecutive=False)


BAD_MARKERS = HEADER + """
    @pytest.mark.mlpval_property("C44", rel=0.1)
    class TestNoUnit(LatticeTests):
        pass


    @pytest.mark.mlpval_property("lattice_parameter_A", tol=0.1)
    class TestUnknownKwarg(LatticeTests):
        pass


    @pytest.mark.mlpval_property("lattice_parameter_A")
    class TestNoTolerance(LatticeTests):
        pass


    @pytest.mark.mlpval_property("lattice_parameter_A", rel=0.01, against="HSE")
    class TestMissingReference(LatticeTests):
        pass


    @pytest.mark.mlpval_property("C44_GPa", rel=0.1)
    class TestOtherGroup(LatticeTests):
        pass


    @pytest.mark.mlpval_property("melting_temperature_K", abs=50)
    class TestNotComputed(LatticeTests):
        pass


    @pytest.mark.mlpval_property("lattice_parameter_A", rel=-1)
    class TestNegative(LatticeTests):
        pass
"""


def test_bad_markers_are_usage_errors(pytester, run):
    pytester.makepyfile(test_props=BAD_MARKERS)
    result = run("--potential=sw", "-q")
    result.assert_outcomes(failed=7)
    out = result.stdout.str()
    for pattern in [
        r"UsageError: .*TestNoUnit.*mlpval_property\('C44', rel=0.1\): property 'C44' "
        r"carries no unit",
        r"UsageError: .*TestUnknownKwarg.*unknown keyword argument\(s\) tol; accepted: name,"
        r" rel, abs, against, training_level, metric",
        r"UsageError: .*TestNoTolerance.*give a tolerance, rel=\.\.\.",
        r"UsageError: .*TestMissingReference.*no DFT-HSE reference for 'lattice_parameter_A'"
        r" in the Si table; kinds available for it: experiment, DFT-PBE, DFT-PW91",
        r"UsageError: .*TestOtherGroup.*this test computes the lattice properties; "
        r"'C44_GPa' is computed by test_mlpval_elastic",
        r"UsageError: .*TestNotComputed.*no ready-made property test computes "
        r"'melting_temperature_K'",
        r"UsageError: .*TestNegative.*rel=-1 must be a finite number >= 0",
    ]:
        assert re.search(pattern, out), pattern


def test_module_markers_go_to_their_groups(pytester, run):
    """Module-wide markers are shared out by group: the phonon marker is checked by the
    phonon test only (and SW's Gamma optical mode fails it), the lattice test passes."""
    pytester.makepyfile(test_props=_source("""
        from pytest_mlpval.property_tests import test_mlpval_lattice, test_mlpval_phonons

        pytestmark = [pytest.mark.mlpval_property("phonon_gamma_LTO_THz", rel=0.05),
                      pytest.mark.mlpval_property("lattice_parameter_A", rel=0.005)]
    """))
    result = run("--potential=sw", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*phonon_gamma_LTO_THz*17.8*15.53*THz*experiment*FAIL*",
        "FAILED test_props.py::test_mlpval_phonons[[]sw[]]*",
    ], consecutive=False)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="needs matplotlib (plot extra)")
def test_json_baseline_report_and_cache(pytester, run):
    pytester.makepyfile(test_props=_source("""
        from pytest_mlpval.property_tests import test_mlpval_phonons, test_mlpval_polymorphs

        pytestmark = [pytest.mark.mlpval_property("phonon_X_TA_THz", rel=0.5),
                      pytest.mark.mlpval_property("diamond_beta_sn_transition_GPa", abs=20)]
    """))
    first = run("--potential=sw", "--mlpval-json=out.json", "--mlpval-report=report",
                "--mlpval-save-baseline=base.json")
    first.assert_outcomes(passed=2)
    records = records_by_nodeid(read_json(pytester.path / "out.json"))
    (phonon,) = records["test_props.py::test_mlpval_phonons[sw]"]
    assert phonon["metrics"]["phonon_gamma_LTO_THz"]["value"] == pytest.approx(17.83, abs=0.05)
    assert phonon["metrics"]["phonon_gamma_LTO_THz"]["unit"] == "THz"
    assert phonon["metrics"]["|phonon_X_TA_THz - experiment|"]["value"] > 1.0
    baseline = read_json(pytester.path / "base.json")
    entries = {e["dataset"]: e for e in baseline["entries"]}
    assert entries["phonons"]["kind"] == "protocol"
    assert entries["polymorphs"]["metrics"]["diamond_beta_sn_transition_GPa"]["value"] \
        == pytest.approx(18.57, abs=0.1)
    page = (pytester.path / "report" / "index.html").read_text(encoding="utf-8")
    assert "<h3>phonons (all)</h3>" in page and '<img alt="phonons all"' in page
    assert "<h3>polymorphs (all)</h3>" in page and '<img alt="polymorphs all"' in page
    assert "figure pytest_mlpval" not in page  # no drawing failed
    # the property table in the protocol table
    assert "diamond_beta_sn_transition_GPa" in page and "phonon_L_TA_THz" in page

    cache = sorted((pytester.path / ".pytest_cache").rglob("*.jsonl"))
    assert len(cache) == 2, cache  # one campaign per protocol
    stamps = [(p.stat().st_mtime_ns, p.read_text()) for p in cache]

    second = run("--potential=sw", "--mlpval-json=again.json")
    second.assert_outcomes(passed=2)
    again = records_by_nodeid(read_json(pytester.path / "again.json"))
    (rec,) = again["test_props.py::test_mlpval_polymorphs[sw]"]
    assert rec["metrics"]["diamond_beta_sn_transition_GPa"]["value"] == \
        records["test_props.py::test_mlpval_polymorphs[sw]"][0]["metrics"][
            "diamond_beta_sn_transition_GPa"]["value"]
    # read back from the campaign cache: nothing recomputed, nothing appended
    assert [(p.stat().st_mtime_ns, p.read_text()) for p in cache] == stamps


def test_silicon_suite_sw_fails_c44_and_optical_phonon(pytester, run):
    suite = pytester.path / "silicon"
    shutil.copytree(SILICON, suite, ignore=shutil.ignore_patterns(
        "__pycache__", ".pytest_cache"))
    result = run("silicon/test_properties.py::TestElasticVsExperiment",
                 "silicon/test_properties.py::TestOpticalPhononVsExperiment",
                 "silicon/test_properties.py::test_stillinger_weber_fails_where_the_gap_passes",
                 "--potential=sw", "--mlpval-workers=0", "-rf")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*sw: 1 of 3 properties outside tolerance: C44_GPa = 56.* GPa, experiment 79.6*",
        "*C44_GPa*56.*79.6*GPa*experiment*FAIL*",
    ], consecutive=False)
    result.stdout.fnmatch_lines([
        "*sw: 1 of 1 properties outside tolerance: phonon_gamma_LTO_THz = 17.8* THz, "
        "experiment 15.53*",
    ], consecutive=False)


#: Stillinger-Weber with a rough surface (0.1 meV per bond, period 0.03 Å)
ROUGH = "--potential=rough=pytest_mlpval.testing:sw_rough"


def test_rough_surface_fails_on_amplitude_dependence_sw_shows_its_spread(pytester, run):
    """The elastic, EoS and phonon protocols run at several amplitudes: a rough surface
    fails on its roughness (before B' and the comparisons), SW shows its tiny spread
    beside the value in the failure table and the JSON."""
    pytester.makepyfile(test_props=_source("""
        MLPVAL_PROPERTY_PARAMS = {"elastic": {"n_strains": 3, "spread_strains": [0.0025]},
                                  "eos": {"n_points": 5}}


        @pytest.mark.mlpval_property("C44_GPa", rel=0.15)
        class TestElastic(ElasticTests):
            pass


        class TestLattice(LatticeTests):
            pass
    """))
    result = run("--potential=sw", ROUGH, "--mlpval-species=Si", "--mlpval-json=out.json",
                 "-rf")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines([
        "*property*candidate*± amplitude*reference*unit*against*difference*",
        "*C44_GPa*56.4*0.0[0-9]*79.6*GPa*experiment*FAIL*",
        "*± amplitude: the candidate's spread over its protocol's finite amplitudes*",
    ], consecutive=False)
    for text in ("TestElastic::test_mlpval_elastic[rough]", "TestLattice::test_mlpval_lattice"
                 "[rough]"):
        assert f"FAILED test_props.py::{text}" in result.stdout.str()
    result.stdout.fnmatch_lines([
        "*rough: C*_GPa (elastic) moves by * % with the finite strain (limit 5 %, "
        "max_amplitude_spread_fraction): the potential energy surface is rough*",
        "*rough: bulk_modulus_GPa (eos) moves by * % with the finite strain span*",
        # the summary and the verdict name the roughness
        "*rough*elastic*elastic_amplitude_spread_fraction*<= 0.05*FAIL*",
    ], consecutive=False)
    text = result.stdout.str()
    rough_lattice = text[text.index("bulk_modulus_GPa (eos) moves by"):]
    assert "unphysical equation of state" in rough_lattice  # B' too, after the roughness
    records = records_by_nodeid(read_json(pytester.path / "out.json"))
    (record,) = records["test_props.py::TestElastic::test_mlpval_elastic[sw]"]
    spread = record["metrics"]["C44_amplitude_spread_GPa"]
    assert spread["unit"] == "GPa" and 0 < spread["value"] < 0.1
    assert record["metrics"]["elastic_amplitude_spread_fraction"]["value"] < 1e-3
    (bound,) = [t for t in record["thresholds"] if t["metric"] == "|C44_GPa - experiment|"]
    assert bound["amplitude_spread"] == spread["value"]
