"""Crystals beyond silicon's phases (pytest_mlpval.crystals specs: prototypes, files,
spacegroup:, python: builders) and the property protocols on them: elastic constants of
the crystal's symmetry against direct finite differences (ASE's EMT for hcp Cu, a
Lennard-Jones pair potential for bcc Mo: test calculators, not physics), surfaces on given facets,
vacancies of a compound's sublattice."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_mlpval.crystals import (UnknownCrystalError, build_crystal, canonical_crystal,
                                    crystal_label, crystal_spec, register_crystal,
                                    space_group, spacegroup_spec)
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.properties import (elastic_constants, facet_name,
                                                miller_indices, slug, surface_energy,
                                                vacancy_formation)
from pytest_mlpval.units import EV_PER_A3_TO_GPA


@pytest.fixture
def emt():
    from ase.calculators.emt import EMT

    return EMT()


@pytest.fixture
def pair_mo():
    """A Lennard-Jones pair potential for Mo (matscipy's, fast): a test calculator with
    bcc near a = 3.1 Å, not physics (a pair potential's bcc is Born-unstable)."""
    from ase.data import atomic_numbers
    from matscipy.calculators.pair_potential import LennardJonesQuadratic, PairPotential

    z = atomic_numbers["Mo"]
    return PairPotential({(z, z): LennardJonesQuadratic(0.5, 2.43, 5.5)})


def mo_builder(symbol):
    """A module-level builder, named by crystal_spec as python:<module>:mo_builder."""
    from ase.build import bulk

    return bulk(symbol, "bcc", a=3.147, cubic=True)


# --- one crystal, many ways of naming it ----------------------------------------------

@pytest.mark.parametrize("fmt,name", [("cif", "sic.cif"), ("vasp", "POSCAR"),
                                      ("extxyz", "sic.xyz")])
def test_a_structure_file_gives_the_prototype_crystal(tmp_path, fmt, name):
    import ase.io

    prototype = build_crystal("zincblende:a=4.36", "SiC")
    ase.io.write(tmp_path / name, prototype, format=fmt)
    spec = crystal_spec(f"file:{name}", tmp_path)
    assert spec.startswith(f"file:{tmp_path / name}#sha256=")
    read = build_crystal(spec, "SiC")
    assert space_group(read) == space_group(prototype) == (216, "F-43m")
    assert read.get_volume() / len(read) == pytest.approx(
        prototype.get_volume() / len(prototype), rel=1e-6)
    assert sorted(set(read.get_chemical_symbols())) == ["C", "Si"]
    assert read.info["crystal"] == spec and crystal_label(spec) == name.split(".")[0]


def test_a_spacegroup_spec_and_a_registered_builder_give_the_prototype():
    hcp = build_crystal("hcp", "Mg")  # ASE's reference state: a = 3.21, c = 5.21 Å
    a, c = hcp.cell.cellpar()[[0, 2]]
    spec = spacegroup_spec(["Mg"], [[1 / 3, 2 / 3, 0.75]], 194, [a, a, c, 90, 90, 120],
                           name="hcp_mg")
    built = build_crystal(spec, "Mg")
    assert space_group(built) == space_group(hcp) == (194, "P6_3/mmc")
    assert np.allclose(built.cell.cellpar(), hcp.cell.cellpar())
    assert slug(spec) == "hcp_mg"
    assert crystal_spec(mo_builder) == f"python:{__name__}:mo_builder"
    via_python = build_crystal(crystal_spec(mo_builder), "Mo")
    register_crystal("my-bcc", mo_builder)
    assert np.allclose(build_crystal("my-bcc", "Mo").cell, via_python.cell)
    assert np.allclose(via_python.cell, build_crystal("bcc:a=3.147,cubic=true", "Mo").cell)


def test_multi_element_prototypes_and_metal_starts():
    assert space_group(build_crystal("rocksalt:a=4.2", "MgO")) == (225, "Fm-3m")
    b2 = build_crystal("B2:symbols=NiAl", "Ni")
    assert space_group(b2) == (221, "Pm-3m") and sorted(b2.get_chemical_symbols()) == \
        ["Al", "Ni"]
    sic = build_crystal("zincblende", "SiC")  # no a: nearest neighbours at r_Si + r_C
    d = np.linalg.norm(sic.positions[1] - sic.positions[0])
    assert d == pytest.approx(1.11 + 0.76, rel=1e-6)
    mo = build_crystal("bcc", "Mo")  # the named phase of a bcc metal: its own a
    assert len(mo) == 2 and mo.cell[0, 0] == pytest.approx(3.15)
    assert build_crystal("fcc", "Mo").get_volume() / 4 == pytest.approx(3.15 ** 3 / 2)
    assert canonical_crystal(" rocksalt:a=4.2 ") == "rocksalt:a=4.2"
    assert [crystal_label(s) for s in ("BETA_SN", "rocksalt:a=4.2", "hcp:name=hcp_ideal")] \
        == ["beta-Sn", "rocksalt", "hcp_ideal"]


@pytest.mark.parametrize("spec,symbol,message", [
    ("rocksalt:q=1", "MgO", "unknown key 'q'; keys: a, b, c"),
    ("fcc:a=big", "Cu", "bad value for 'a': 'big'"),
    ("spacegroup:[1]", "Cu", "JSON object"),
    ("file:/nonexistent/x.cif", "Cu", "does not exist"),
    ("python:nonexistent_module_h6:f", "Cu", "cannot import f from nonexistent_module_h6"),
])
def test_bad_specs_say_what_is_wrong(spec, symbol, message):
    with pytest.raises(UnknownCrystalError, match=message):
        build_crystal(spec, symbol)


def test_a_crystal_of_other_elements_or_a_changed_file_is_refused(tmp_path):
    import ase.io

    ase.io.write(tmp_path / "cu.cif", build_crystal("fcc", "Cu"))
    spec = crystal_spec(tmp_path / "cu.cif")
    with pytest.raises(UnknownCrystalError, match=r"holds Cu, not Mo"):
        build_crystal(spec, "Mo")
    ase.io.write(tmp_path / "cu.cif", build_crystal("fcc:a=3.7,cubic=true", "Cu"))
    with pytest.raises(UnknownCrystalError, match="changed since its spec was made"):
        build_crystal(spec, "Cu")
    with pytest.raises(ValueError, match="the named phase 'diamond' is elemental"):
        build_crystal("diamond", "SiC")


# --- elastic constants of the crystal's symmetry, against direct finite differences ---

def _direct_constants(atoms, calc, relax_ions, step=0.005, columns=range(6)):
    """C_ij = d sigma_i / d eps_j by central differences of the stress (GPa), with the
    ions relaxed at each strained cell when asked (the ``columns`` j only)."""
    from ase.optimize import BFGS

    C = np.zeros((6, 6))
    for j in columns:
        stresses = []
        for sign in (1, -1):
            strain = np.zeros((3, 3))
            a, b = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)][j]
            strain[a, b] = strain[b, a] = sign * step if a == b else sign * step / 2
            strained = atoms.copy()
            strained.set_cell(atoms.cell[:] @ (np.eye(3) + strain), scale_atoms=True)
            strained.calc = calc
            if relax_ions:
                BFGS(strained, logfile=None).run(fmax=1e-4, steps=500)
            stresses.append(strained.get_stress())
        C[:, j] = (stresses[0] - stresses[1]) / (2 * step) * EV_PER_A3_TO_GPA
    return C


def _relaxed(spec, symbol, calc):
    from pytest_mlpval.crystals import relaxed_crystal

    return relaxed_crystal(spec, calc, symbol=symbol, fmax_eV_A=1e-4).atoms


def test_hcp_elastic_constants_are_hexagonal_and_match_finite_differences(emt):
    result = elastic_constants(emt, crystal="hcp", symbol="Cu", n_strains=3,
                               spread_strains=())
    metrics = result.metrics()
    assert result.symmetry == "hexagonal"
    names = sorted(k for k in metrics if k.startswith("C") and "clamped" not in k)
    assert names == ["C11_GPa", "C12_GPa", "C13_GPa", "C33_GPa", "C44_GPa", "C66_GPa"]
    base = _relaxed("hcp", "Cu", emt)
    for relax_ions, tail in ((True, ""), (False, "_clamped")):
        direct = _direct_constants(base, emt, relax_ions, columns=(0, 2, 3, 5))
        for name, i, j in (("C11", 0, 0), ("C12", 1, 0), ("C13", 2, 0), ("C33", 2, 2),
                           ("C44", 3, 3), ("C66", 5, 5)):
            assert metrics[f"{name}{tail}_GPa"] == pytest.approx(direct[i, j], abs=1.5), \
                (name, tail)
    # C66 is derived, (C11 - C12) / 2, and internal relaxation lowers it
    assert metrics["C66_GPa"] == pytest.approx((metrics["C11_GPa"] - metrics["C12_GPa"]) / 2)
    assert metrics["C66_GPa"] < metrics["C66_clamped_GPa"] - 5


def test_bcc_mo_elastic_constants_are_cubic_and_match_finite_differences(pair_mo):
    result = elastic_constants(pair_mo, crystal="bcc", symbol="Mo", n_strains=3,
                               spread_strains=())
    metrics = result.metrics()
    assert result.symmetry == "cubic" and result.crystal == "bcc"
    assert sorted(k for k in metrics if k.startswith("C") and k.endswith("_GPa")) == [
        "C11_GPa", "C11_clamped_GPa", "C12_GPa", "C12_clamped_GPa", "C44_GPa",
        "C44_clamped_GPa"]
    # the same strain as the fit's largest (max_strain 0.01); the protocol's own
    # relaxation (fmax 1e-3) leaves the cell 0.3 % stiffer or softer at most
    direct = _direct_constants(_relaxed("bcc", "Mo", pair_mo), pair_mo, False,
                               step=0.01, columns=(0, 3))
    for name, i, j in (("C11", 0, 0), ("C12", 1, 0), ("C44", 3, 3)):
        assert metrics[f"{name}_GPa"] == pytest.approx(direct[i, j], rel=5e-3), name


def test_a_rotated_cell_gives_the_crystals_constants(emt):
    """fcc Cu in its orthorhombic cell (cube axes rotated by 45 degrees about z): the full
    6x6 fit, rotated to the standard frame, gives the cube's C11, C12, C44."""
    cube = elastic_constants(emt, crystal="fcc:a=3.59,cubic=true", symbol="Cu",
                             n_strains=3, spread_strains=(), relax_ions=False).metrics()
    turned = elastic_constants(emt, crystal="fcc:a=3.59,orthorhombic=true", symbol="Cu",
                               n_strains=3, spread_strains=(), relax_ions=False)
    assert turned.symmetry == "cubic"
    for name in ("C11_clamped_GPa", "C12_clamped_GPa", "C44_clamped_GPa"):
        assert turned.metrics()[name] == pytest.approx(cube[name], abs=0.5), name


# --- surfaces and vacancies of any crystal ---------------------------------------------

@pytest.mark.parametrize("text,indices,name", [
    ("110", (1, 1, 0), "110"), ("(211)", (2, 1, 1), "211"), ("1,-1,0", (1, -1, 0), "1m10"),
    ("1 10 0", (1, 10, 0), "1_10_0"), ((0, 0, 1), (0, 0, 1), "001")])
def test_miller_indices(text, indices, name):
    assert miller_indices(text) == indices and facet_name(indices) == name


def test_bad_facets_are_settings_errors():
    with pytest.raises(SettingsError, match="three Miller indices"):
        surface_energy(None, facet="000")
    with pytest.raises(SettingsError, match="'2x1' is not available for \\(110\\)"):
        surface_energy(None, facet="110", reconstruction="2x1")


def test_bcc_mo_surfaces_on_given_facets(pair_mo):
    energies = {}
    for facet in ("100", "110", "111"):
        r = surface_energy(pair_mo, crystal="bcc", symbol="Mo", facet=facet, layers=6,
                           fmax_eV_A=0.02)
        assert r.crystal == "bcc" and r.n_layers >= 6
        energies[facet] = r.metrics()[f"surface_energy_{facet}_J_m2"]
    # a pair potential's bcc: the close-packed (110) is the lowest
    assert energies["110"] < min(energies["100"], energies["111"])
    assert all(e > 0 for e in energies.values())


def test_a_compound_vacancy_needs_its_chemical_potential(emt):
    with pytest.raises(SettingsError, match="needs its chemical potential"):
        vacancy_formation(emt, crystal="B2:symbols=NiAl,a=2.88", symbol="NiAl",
                          supercell=2, start_shifts_A=(0.0,))
    al = vacancy_formation(emt, crystal="B2:symbols=NiAl,a=2.88", symbol="NiAl",
                           supercell=2, species="Al", chemical_potential_eV=-0.5,
                           start_shifts_A=(0.0,), fmax_eV_A=0.05)
    assert al.species == "Al" and al.n_atoms == 16
    metrics = al.metrics()
    assert "vacancy_Al_formation_eV" in metrics and "vacancy_formation_eV" not in metrics
    # one more eV of chemical potential: one more eV of formation energy
    al2 = vacancy_formation(emt, crystal="B2:symbols=NiAl,a=2.88", symbol="NiAl",
                            supercell=2, species="Al", chemical_potential_eV=0.5,
                            start_shifts_A=(0.0,), fmax_eV_A=0.05)
    assert al2.formation_eV - al.formation_eV == pytest.approx(1.0, abs=1e-9)


def test_silicon_numbers_are_those_of_the_cubic_fit():
    """Stillinger-Weber diamond Si: the numbers of the code before crystals by spec
    (measured 2026-12-06 on the previous commit), to rounding."""
    from pytest_mlpval.potentials import load_potential

    sw = load_potential("sw").calculator
    metrics = elastic_constants(sw, n_strains=3, spread_strains=()).metrics()
    before = {"C11_GPa": 151.3913193468732, "C12_GPa": 76.45652286662154,
              "C44_GPa": 56.42160470672143, "C11_clamped_GPa": 151.43261246763427,
              "C12_clamped_GPa": 76.46620381594259, "C44_clamped_GPa": 109.79171133745679}
    assert {k: v for k, v in metrics.items() if k in before} == pytest.approx(before,
                                                                               rel=1e-12)
    assert not [k for k in metrics if k.startswith("C") and k[:3] not in ("C11", "C12",
                                                                          "C44")]


def test_one_atom_cells_get_acoustic_branch_labels(emt):
    from pytest_mlpval.protocols.properties import phonons

    result = phonons(emt, crystal="fcc", symbol="Cu", mesh=[2, 2, 2],
                     spread_displacements_A=(), supercell=2)
    metrics = result.metrics()
    # fcc: at X and L one longitudinal and a degenerate transverse pair, LA above TA
    for point in ("X", "L"):
        assert metrics[f"phonon_{point}_LA_THz"] > metrics[f"phonon_{point}_TA_THz"] > 2
    assert metrics["phonon_X_LA_THz"] == pytest.approx(metrics["phonon_max_frequency_THz"],
                                                       rel=0.05)


def test_transitions_between_any_given_crystals(emt):
    from pytest_mlpval.protocols.properties import polymorph_energies

    result = polymorph_energies(emt, symbol="Cu", names=("fcc", "bcc", "hcp"),
                                reference="fcc", pairs=[("hcp", "bcc")], n_points=5)
    metrics = result.metrics()
    assert {"fcc_bcc_transition_GPa", "fcc_hcp_transition_GPa",
            "hcp_bcc_transition_GPa"} <= set(metrics)
    assert metrics["energy_bcc_vs_fcc_per_atom_eV"] > 0.01  # EMT: bcc Cu above fcc
    with pytest.raises(SettingsError, match="both must be among the polymorphs"):
        polymorph_energies(emt, symbol="Cu", names=("fcc",), reference="fcc",
                           pairs=[("fcc", "bcc")], n_points=5)


def test_the_lattice_parameter_is_the_conventional_cells(emt):
    """fcc Cu built primitive (fcc:a=3.6): a0 is the cube's, not the primitive vector's."""
    from pytest_mlpval.protocols.properties import relaxed_lattice

    primitive = relaxed_lattice(emt, crystal="fcc:a=3.6", symbol="Cu").lattice_parameter_A
    cube = relaxed_lattice(emt, crystal="fcc:a=3.6,cubic=true",
                           symbol="Cu").lattice_parameter_A
    assert primitive == pytest.approx(cube, rel=1e-4) and cube == pytest.approx(3.59, abs=0.01)


def test_references_for_a_compound_in_any_formula_order(tmp_path):
    import json

    from pytest_mlpval.references import load_references, packaged_elements

    (tmp_path / "sic.json").write_text(json.dumps({
        "schema": "pytest-mlpval-references/1", "element": "SiC", "entries": [
            {"property": "lattice_parameter_A", "value": 4.36, "unit": "A",
             "kind": "experiment", "source": "test entry"}]}), encoding="utf-8")
    table = load_references("CSi", [tmp_path / "sic.json"])  # the species' order
    assert table.get("lattice_parameter_A").value == 4.36
    assert "Si" in packaged_elements()  # found by the file's name, silicon.json
