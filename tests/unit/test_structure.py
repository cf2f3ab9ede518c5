"""SOAP similarity (dscribe), coordination numbers (matscipy) and reference crystals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mlpval.crystals import (CRYSTALS, RelaxationError, UnknownCrystalError,
                                    build_crystal, relax, relaxed_crystal, space_group)
from pytest_mlpval.descriptors import (SI_SOAP, SoapSettings, compare_with_crystals,
                                     coordination, coordination_numbers, fraction_above,
                                     kernel, similarity_to_reference, soap_descriptors,
                                     structure_descriptors)


@pytest.fixture(scope="module")
def sw():
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw").calculator


# --- reference crystals -----------------------------------------------------------------

@pytest.mark.parametrize("name", list(CRYSTALS))
def test_crystals_have_their_space_group_and_coordination(name):
    atoms = build_crystal(name)
    _, expected_cn, expected_sg = CRYSTALS[name]
    assert space_group(atoms)[0] == expected_sg
    assert set(coordination_numbers(atoms)) == {expected_cn}
    assert atoms.info["crystal"] == name


def test_crystal_names_are_case_insensitive_with_aliases():
    assert build_crystal("BETA-SN").info["crystal"] == "beta-Sn"
    assert build_crystal("simple_hexagonal").info["crystal"] == "sh"


def test_unknown_crystal_names_the_known_ones():
    with pytest.raises(UnknownCrystalError, match=r"unknown crystal 'wurtzit'; known: "
                                                  r"diamond, beta-Sn, Imma, sh"):
        build_crystal("wurtzit")


def test_other_elements_are_scaled_by_covalent_radius():
    si, ge = build_crystal("diamond", "Si"), build_crystal("diamond", "Ge")
    assert set(ge.get_chemical_symbols()) == {"Ge"}
    assert ge.cell[0, 0] / si.cell[0, 0] == pytest.approx(1.20 / 1.11, rel=1e-6)
    with pytest.raises(ValueError, match="'Xx' is not a chemical symbol"):
        build_crystal("diamond", "Xx")


def test_relaxation_under_pressure_shrinks_the_cell_and_keeps_symmetry(sw):
    ambient = relaxed_crystal("beta-Sn", sw, pressure_GPa=0.0)
    squeezed = relaxed_crystal("beta-Sn", sw, pressure_GPa=20.0)
    assert squeezed.volume_per_atom_A3 < ambient.volume_per_atom_A3 - 0.3
    assert squeezed.converged and squeezed.pressure_GPa == 20.0
    # H = E + pV, with 1 eV/Å³ = 160.2 GPa
    assert squeezed.enthalpy_per_atom_eV == pytest.approx(
        squeezed.energy_per_atom_eV + 20.0 * squeezed.volume_per_atom_A3 / 160.21766208)
    atoms = squeezed.atoms
    assert space_group(atoms) == (141, "I4_1/amd")
    assert atoms.calc is None and atoms.info["pressure_GPa"] == 20.0


def test_relaxed_diamond_has_the_sw_lattice_constant(sw):
    # SW's parameters are fitted to a0 = 5.431 Å (Stillinger and Weber, PRB 31, 5262 (1985))
    result = relaxed_crystal("diamond", sw)
    assert result.volume_per_atom_A3 == pytest.approx(5.431 ** 3 / 8, rel=1e-3)
    assert result.energy_per_atom_eV == pytest.approx(-4.3366, abs=1e-3)


def test_relaxation_that_does_not_converge_is_an_error_for_references(sw):
    with pytest.raises(RelaxationError, match=r"sh did not relax to fmax 1e-06 eV/Å in 2 "
                                              r"steps at 12.0 GPa"):
        relaxed_crystal("sh", sw, pressure_GPa=12.0, fmax_eV_A=1e-6, steps=2)
    # plain relax reports it instead
    result = relax(build_crystal("sh"), sw, pressure_GPa=12.0, fmax_eV_A=1e-6, steps=2)
    assert not result.converged and result.steps == 2


def test_relaxation_with_a_nan_calculator_is_an_error():
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.testing import BrokenCalculator

    atoms = build_crystal("diamond") * (2, 2, 2)
    atoms.positions[1] = atoms.positions[0] + [1.5, 0, 0]  # two atoms 1.5 Å apart: NaN
    nan = BrokenCalculator(load_potential("sw").calculator, "nan")
    with pytest.raises(RelaxationError, match="relaxation (failed|gave a non-finite)"):
        relax(atoms, nan, steps=5)


# --- SOAP -------------------------------------------------------------------------------

def test_kernel_is_one_for_identical_and_below_one_for_other_environments():
    p = soap_descriptors(build_crystal("diamond"))[0]
    q = soap_descriptors(build_crystal("beta-Sn"), species=["Si"])[0]
    assert np.allclose(kernel(p, p), 1.0)
    k = kernel(p, q)
    assert k.shape == (8, 4) and np.all(k < 0.9)
    # zeta sharpens: a higher power gives a smaller kernel for the same pair
    assert np.all(kernel(p, q, zeta=8) < k)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=5, max_size=5),
       st.lists(st.floats(-1, 1), min_size=5, max_size=5), st.floats(1, 8))
def test_kernel_is_symmetric_bounded_and_scale_invariant(a, b, zeta):
    a, b = np.array(a), np.array(b)
    if np.linalg.norm(a) < 1e-3 or np.linalg.norm(b) < 1e-3:
        return
    k = kernel(a, b, zeta)[0, 0]
    assert 0.0 <= k <= 1.0 + 1e-12
    assert k == pytest.approx(kernel(b, a, zeta)[0, 0])
    assert k == pytest.approx(kernel(3.0 * a, 0.5 * b, zeta)[0, 0])


def test_similarity_tells_diamond_from_other_phases():
    diamond = build_crystal("diamond")
    strained = diamond.copy()
    strained.set_cell(diamond.cell * 1.01, scale_atoms=True)
    sims = similarity_to_reference([diamond * (2, 1, 1), strained, build_crystal("sh")],
                                   diamond)
    assert len(sims) == 3 and len(sims[0]) == 16
    assert np.allclose(sims[0], 1.0)
    assert np.all(sims[1] > 0.998)
    assert np.all(sims[2] < 0.9)
    assert fraction_above(sims[1], 0.99) == 1.0 and fraction_above(sims[2], 0.99) == 0.0


def test_similarity_counts_every_site_of_a_multi_site_reference():
    bc8 = build_crystal("bc8")
    assert np.allclose(similarity_to_reference(bc8 * (1, 1, 2), bc8)[0], 1.0)


def test_rattled_diamond_is_less_similar_and_per_atom_values_differ():
    diamond = build_crystal("diamond") * (2, 2, 2)
    rattled = diamond.copy()
    rattled.rattle(0.1, seed=1)
    sims = similarity_to_reference(rattled, build_crystal("diamond"))[0]
    assert 0.5 < sims.mean() < 0.999
    assert sims.std() > 0


def test_compare_with_crystals_summarises_each_reference():
    sh = build_crystal("sh") * (2, 2, 2)
    result = compare_with_crystals(sh, {"diamond": build_crystal("diamond"),
                                        "sh": build_crystal("sh")}, cutoff=0.95)
    assert result["sh"].fraction == 1.0 and result["sh"].mean == pytest.approx(1.0)
    assert result["diamond"].fraction == 0.0 and result["diamond"].mean < 0.9


def test_chunked_similarity_equals_unchunked():
    rattled = build_crystal("diamond") * (2, 2, 2)
    rattled.rattle(0.05, seed=3)
    whole = similarity_to_reference(rattled, build_crystal("diamond"))[0]
    chunked = similarity_to_reference(rattled, build_crystal("diamond"), chunk=7)[0]
    assert np.allclose(whole, chunked)


def test_structure_descriptors_are_unit_vectors():
    vectors = structure_descriptors([build_crystal("diamond"), build_crystal("sh")])
    assert vectors.shape[0] == 2
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert vectors[0] @ vectors[1] < 0.999


def test_non_periodic_clusters_work_and_partial_periodicity_is_refused():
    cluster = build_crystal("diamond") * (2, 2, 2)
    cluster.pbc = False
    cluster.center(vacuum=5.0)
    sims = similarity_to_reference(cluster, build_crystal("diamond"))[0]
    assert sims.shape == (len(cluster),) and np.all(sims < 1.0)
    slab = build_crystal("diamond")
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match="periodic in some directions only"):
        soap_descriptors(slab)


def test_species_outside_the_settings_are_refused():
    with pytest.raises(ValueError, match=r"structures contain \['Ge'\], not in the SOAP "
                                         r"species \['Si'\]"):
        soap_descriptors(build_crystal("diamond", "Ge"), SoapSettings(species=("Si",)))


@pytest.mark.parametrize("kwargs, message", [
    ({"r_cut_A": 0.5}, "r_cut_A must be > 1 Å"),
    ({"n_max": 0}, "need n_max >= 1"),
    ({"zeta": 0}, "sigma_A and zeta must be > 0"),
    ({"dtype": "float16"}, "dtype must be"),
])
def test_bad_soap_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SoapSettings(**kwargs)


def test_soap_settings_are_frozen_and_serialisable():
    assert SI_SOAP.as_dict() == {"r_cut_A": 5.0, "n_max": 8, "l_max": 6, "sigma_A": 0.5,
                                 "zeta": 4.0, "species": None, "dtype": "float64"}
    with pytest.raises(AttributeError):
        SI_SOAP.zeta = 2  # type: ignore[misc]


def test_float32_settings_give_the_same_classification():
    rattled = build_crystal("diamond") * (2, 2, 2)
    rattled.rattle(0.05, seed=4)
    ref = build_crystal("diamond")
    f64 = similarity_to_reference(rattled, ref)[0]
    f32 = similarity_to_reference(rattled, ref, SoapSettings(dtype="float32"))[0]
    assert np.allclose(f64, f32, atol=1e-4)


# --- coordination -----------------------------------------------------------------------

def test_coordination_summary_of_a_mixture():
    from ase import Atoms

    diamond = build_crystal("diamond") * (2, 2, 2)
    result = coordination(diamond)
    assert result.mean == 4.0 and result.histogram == {4: 1.0}
    assert not result.unphysical and result.high_fraction == 0.0
    # a dense fcc crystal squeezed so that 12 neighbours sit inside the cutoff
    dense = coordination(build_crystal("fcc"))
    assert dense.mean == 12.0 and dense.unphysical and dense.high_fraction == 1.0
    # a longer cutoff reaches diamond's second shell (12 atoms at 3.84 Å)
    assert coordination(diamond, cutoff_A=4.0).mean == 16.0
    assert coordination(Atoms("Si", cell=[10, 10, 10], pbc=True)).histogram == {0: 1.0}


def test_coordination_as_dict_and_bad_cutoff():
    result = coordination(build_crystal("sh"))
    assert result.as_dict()["histogram"] == {"8": 1.0}
    assert result.as_dict()["unphysical"] is False
    with pytest.raises(ValueError, match="cutoff_A must be > 0"):
        coordination(build_crystal("sh"), cutoff_A=0)


# --- shortest distance ------------------------------------------------------------------

def test_one_min_distance_for_md_strategies_and_checks():
    """descriptors.min_distance is the one shortest-distance function (MD's overlap
    check, the Hypothesis strategies): periodic images count, the cutoff comes back when
    no pair is closer, open and periodic cells agree where they should."""
    import math

    import ase

    from pytest_mlpval import strategies
    from pytest_mlpval.descriptors import min_distance
    from pytest_mlpval.protocols import md

    assert strategies.min_distance is min_distance and md.min_distance is min_distance
    diamond = build_crystal("diamond", "Si")
    bond = diamond.get_distance(0, 1, mic=True)
    assert min_distance(diamond) == pytest.approx(bond)
    assert min_distance(diamond, cutoff_A=2.0) == 2.0  # none closer than 2 Å
    assert min_distance(diamond * (2, 1, 1)) == pytest.approx(bond)
    one = ase.Atoms("Si", positions=[[0, 0, 0]], cell=[2.5, 3.0, 4.0], pbc=True)
    assert min_distance(one) == pytest.approx(2.5)  # its own image
    pair = ase.Atoms("Si2", positions=[[0, 0, 0], [0, 0, 1.7]])  # open box: ASE's list
    assert min_distance(pair) == pytest.approx(1.7)
    assert min_distance(ase.Atoms("Si", positions=[[0, 0, 0]])) == math.inf
    assert min_distance(ase.Atoms()) == math.inf
