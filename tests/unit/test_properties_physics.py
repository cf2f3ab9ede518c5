"""Elastic constants, phonons, vacancy and surfaces, each checked against a computation
done here independently; Stillinger-Weber fails against experiment where the bundled GAP
passes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import GAP_XML, needs_quippy
from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.comparison import assert_property, compare
from pytest_mlpval.protocols.properties import (
    EV_PER_A2_TO_J_PER_M2,
    PropertyError,
    assert_born_stable,
    assert_dynamically_stable,
    born_stability,
    elastic_constants,
    phonons,
    surface_energy,
    vacancy_convergence,
    vacancy_formation,
)
from pytest_mlpval.references import load_references
from pytest_mlpval.units import EV_PER_A3_TO_GPA

#: SW's pair minimum is at the diamond bond and its three-body term vanishes at the
#: tetrahedral angle, so the energy of an ideal cut is epsilon per broken bond
SW_EPSILON_EV = 2.1683
SW_A0 = 4 / np.sqrt(3) * 2 ** (1 / 6) * 2.0951


@pytest.fixture(scope="module")
def sw():
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw").calculator


@pytest.fixture(scope="module")
def elastic_sw(sw):
    return elastic_constants(sw)


@pytest.fixture(scope="module")
def phonons_sw(sw):
    return phonons(sw)


@pytest.fixture(scope="module")
def si():
    return load_references("Si")


def _diamond(a=SW_A0, cubic=True):
    from ase.build import bulk

    return bulk("Si", "diamond", a=a, cubic=cubic)


# -- elastic constants ----------------------------------------------------------------------

def _shear_c44(calc, relax, strain=2e-3):
    """C44 from +-strain of pure engineering shear e4 on the 8-atom cell, ions optionally
    relaxed here with ASE's BFGS: an independent route (no matscipy)."""
    from ase.optimize import BFGS

    stresses = []
    for e in (-strain, strain):
        atoms = _diamond()
        deformation = np.eye(3)
        deformation[1, 2] = deformation[2, 1] = e / 2
        atoms.set_cell(atoms.cell @ deformation, scale_atoms=True)
        atoms.calc = calc
        if relax:
            BFGS(atoms, logfile=None).run(fmax=1e-5, steps=200)
        stresses.append(atoms.get_stress()[3])
    return (stresses[1] - stresses[0]) / (2 * strain) * EV_PER_A3_TO_GPA


def test_elastic_constants_of_sw(sw, elastic_sw):
    m = elastic_sw.metrics()
    # C11 = 151.4, C12 = 76.4, C44 = 56.4 GPa (relaxed) for the original SW parameters
    # (the often-quoted 161.6 / 81.6 / 60.3 and clamped 117 belong to SW rescaled to the
    # 4.63 eV cohesive energy, Balamane et al., Phys. Rev. B 46, 2250 (1992))
    assert m["C11_GPa"] == pytest.approx(151.4, abs=0.5)
    assert m["C12_GPa"] == pytest.approx(76.4, abs=0.5)
    assert m["C44_GPa"] == pytest.approx(_shear_c44(sw, relax=True), rel=5e-3)
    assert m["C44_clamped_GPa"] == pytest.approx(_shear_c44(sw, relax=False), rel=5e-3)
    assert m["C44_clamped_GPa"] > 1.9 * m["C44_GPa"]  # SW's large internal relaxation
    assert m["C11_clamped_GPa"] == pytest.approx(m["C11_GPa"], rel=1e-3)  # none for C11
    assert elastic_sw.born_stable and elastic_sw.born_failures == ()
    assert elastic_sw.strains == pytest.approx([-0.01, -0.005, 0.0, 0.005, 0.01])
    assert 0 < m["elastic_fit_residual_GPa"] < 0.1 and elastic_sw.max_force_eV_A < 1e-4


def test_bulk_modulus_from_elastic_constants_matches_eos(sw, elastic_sw):
    from pytest_mlpval.protocols.properties import equation_of_state

    eos = equation_of_state(sw, strain_span=0.01)
    c = elastic_sw.metrics()
    assert eos.bulk_modulus_GPa == pytest.approx((c["C11_GPa"] + 2 * c["C12_GPa"]) / 3,
                                                 rel=5e-3)


def test_elastic_relaxation_that_does_not_converge(sw):
    with pytest.raises(PropertyError, match="ionic relaxation of diamond at strain .* did "
                       "not reach fmax 1e-06 eV/Å in 1 steps"):
        elastic_constants(sw, fmax_eV_A=1e-6, steps=1)


def test_born_criteria(elastic_sw):
    cubic = np.zeros((6, 6))
    cubic[:3, :3] = 60.0
    np.fill_diagonal(cubic[:3, :3], 150.0)
    cubic[3, 3] = cubic[4, 4] = cubic[5, 5] = 50.0
    assert born_stability(cubic, "cubic") == (True, ())
    cubic[3, 3] = -5.0
    stable, failed = born_stability(cubic, "cubic")
    assert not stable and any(f.startswith("C44 > 0") for f in failed)
    cubic[3, 3], cubic[0, 1] = 50.0, 160.0
    assert "C11 > |C12|" in born_stability(cubic, "cubic")[1][0]
    broken = dataclasses.replace(elastic_sw, born_stable=False, born_failures=("C44 > 0 (-5)",))
    with pytest.raises(MlpvalAssertionError, match=r"mechanically unstable.*C44 > 0"):
        assert_born_stable(broken)


# -- phonons ------------------------------------------------------------------------------

def test_gamma_optical_frequency_matches_finite_difference_hessian(sw, phonons_sw):
    """Gamma-point modes from the mass-weighted Hessian of the 2-atom primitive cell,
    by central differences of forces here (no phonopy)."""
    from ase.units import _amu, _e

    atoms = _diamond(phonons_sw.lattice_parameter_A, cubic=False)
    atoms.calc = sw
    h, n = 1e-3, len(atoms)
    hessian = np.zeros((3 * n, 3 * n))
    for i in range(n):
        for k in range(3):
            forces = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.calc = sw
                moved.positions[i, k] += sign * h
                forces.append(moved.get_forces().ravel())
            hessian[3 * i + k] = -(forces[0] - forces[1]) / (2 * h)
    masses = np.repeat(atoms.get_masses(), 3)
    eigen = np.linalg.eigvalsh(0.5 * (hessian + hessian.T) / np.sqrt(np.outer(masses, masses)))
    thz = np.sqrt(np.clip(eigen, 0, None) * _e / _amu * 1e20) / (2 * np.pi) / 1e12
    assert phonons_sw.branches_THz["gamma_LTO"] == pytest.approx(thz[-1], rel=1e-3)
    assert thz[-3:] == pytest.approx([thz[-1]] * 3, rel=1e-6)  # triply degenerate
    assert thz[-1] == pytest.approx(17.83, abs=0.02)  # SW overestimates (exp. 15.53 THz)


def test_phonon_branches_and_bookkeeping(phonons_sw):
    b, f = phonons_sw.branches_THz, phonons_sw.frequencies_THz
    assert set(b) == {"gamma_LTO", "X_TA", "X_LA_LO", "X_TO", "L_TA", "L_LA", "L_LO", "L_TO"}
    assert b["X_TA"] < b["X_LA_LO"] < b["X_TO"] and b["L_TA"] < b["L_LA"] < b["L_LO"] < \
        b["L_TO"]
    for label, value in b.items():  # every label is one of the point's frequencies
        point = "G" if label.startswith("gamma") else label[0]
        assert min(abs(np.array(f[point]) - value)) < 1e-6
    assert phonons_sw.supercell_matrix == ((2, 0, 0), (0, 2, 0), (0, 0, 2))
    assert phonons_sw.n_supercell_atoms == 64 and phonons_sw.min_supercell_width_A >= 10
    assert phonons_sw.n_displacements == 1 and phonons_sw.displacement_A == 0.01
    assert phonons_sw.stable and phonons_sw.min_frequency_THz > -1e-3
    dos = np.array(phonons_sw.dos)
    assert np.trapezoid(dos, phonons_sw.dos_frequencies_THz) == pytest.approx(6, rel=0.02)


def test_fcc_silicon_with_sw_has_imaginary_modes(sw):
    result = phonons(sw, crystal="fcc", mesh=(4, 4, 4))
    assert not result.stable and result.min_frequency_THz < -1.0
    with pytest.raises(MlpvalAssertionError, match=r"fcc is dynamically unstable: lowest "
                       r"frequency -\d"):
        assert_dynamically_stable(result)


def test_negative_spring_gives_imaginary_modes(sw):
    """SW plus a bond term -k/2 (d - d0)^2 with k larger than SW's bond stiffness."""
    from ase.calculators.calculator import Calculator, all_changes
    from matscipy.neighbours import neighbour_list

    d0, k = SW_A0 * np.sqrt(3) / 4, 40.0

    class NegativeSpring(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = sw
            i, j, d, vec = neighbour_list("ijdD", work, 2.8)
            forces = work.get_forces().copy()
            for axis in range(3):
                forces[:, axis] -= np.bincount(i, k * (d - d0) * vec[:, axis] / d,
                                               minlength=len(work))
            self.results = {"energy": work.get_potential_energy() - k / 4 * np.sum(
                (d - d0) ** 2), "forces": forces}

    result = phonons(NegativeSpring(), atoms=_diamond(), relax=False, mesh=(4, 4, 4))
    assert not result.stable and result.min_frequency_THz < -5.0
    assert phonons(sw, atoms=_diamond(), relax=False, mesh=(4, 4, 4)).stable


# -- vacancy and surfaces ------------------------------------------------------------------

def test_vacancy_of_sw(sw):
    result = vacancy_formation(sw, supercell=2)
    # ideal vacancy: 4 broken bonds of epsilon, minus the atom's share (2 epsilon) = 2 eps
    assert result.unrelaxed_formation_eV == pytest.approx(2 * SW_EPSILON_EV, abs=1e-3)
    # from the ideal start nothing moves (neighbours outside the cutoff); from the inward
    # start the neighbours rebond: 2.84 eV in 64 atoms
    assert result.start_formation_eV[0] == pytest.approx(2 * SW_EPSILON_EV, abs=1e-3)
    assert result.formation_eV == pytest.approx(2.836, abs=0.01)
    assert result.n_atoms == 64 and result.max_displacement_A > 0.3
    converged = vacancy_convergence(sw, sizes=(2, 3), start_shifts_A=(0.4,))
    assert [r.n_atoms for r in converged.results] == [64, 216]
    assert converged.results[-1].formation_eV == pytest.approx(2.69, abs=0.02)
    assert converged.change_eV == pytest.approx(2.69 - 2.836, abs=0.03)


@pytest.mark.parametrize("facet, bonds_per_area_A2", [
    ("100", 2 / (SW_A0 ** 2 / 2)),  # 1x1 cell a^2/2, two bonds cut per cell
    ("110", 2 / (SW_A0 ** 2 / np.sqrt(2))),  # a x a/sqrt(2), two bonds
    ("111", 1 / (np.sqrt(3) / 4 * SW_A0 ** 2)),  # shuffle plane: one bond per 1x1 cell
])
def test_sw_surface_energies_equal_bond_counting(sw, facet, bonds_per_area_A2):
    result = surface_energy(sw, facet=facet)
    expected = SW_EPSILON_EV * bonds_per_area_A2 / 2 * EV_PER_A2_TO_J_PER_M2
    assert result.unrelaxed_energy_J_m2 == pytest.approx(expected, rel=1e-3)
    assert result.energy_J_m2 == pytest.approx(expected, rel=1e-3)  # no force in 1x1
    assert result.metrics()[f"surface_energy_{facet}_J_m2"] == result.energy_J_m2
    assert result.n_layers == 12 and result.thickness_A > 10 and result.vacuum_A == 10


def test_dimers_lower_the_100_surface(sw):
    flat = surface_energy(sw, facet="100", layers=8)
    dimers = surface_energy(sw, facet="100", layers=8, reconstruction="2x1")
    assert dimers.energy_J_m2 < flat.energy_J_m2 - 0.5
    assert "surface_energy_100_2x1_J_m2" in dimers.metrics()
    with pytest.raises(ValueError, match="'2x1' is not available for \\(111\\)"):
        surface_energy(sw, facet="111", reconstruction="2x1")


def test_every_metric_has_a_unit(sw, elastic_sw, phonons_sw):
    for result in (elastic_sw, phonons_sw, surface_energy(sw, facet="111", layers=4),
                   vacancy_convergence(sw, sizes=(1, 2), start_shifts_A=(0.4,))):
        units = result.units()
        assert set(units) == set(result.metrics())
        assert units.get("C44_GPa", "GPa") == "GPa" and \
            units.get("phonon_X_TA_THz", "THz") == "THz"


# -- against experiment: SW fails where the bundled GAP passes ------------------------------

#: tolerances vs experiment for a GGA-trained model, from the GGA level's own error: PW91
#: (GAP-18's reference) is -2.9 % on the Gamma optical mode and -9 % on C44 (the reference
#: table); a model may add a few percent of fit error on top
VS_EXPERIMENT = {"phonon_gamma_LTO_THz": 0.05, "C44_GPa": 0.15}


def test_sw_fails_against_experiment(elastic_sw, phonons_sw, si):
    for name, result in (("phonon_gamma_LTO_THz", phonons_sw), ("C44_GPa", elastic_sw)):
        with pytest.raises(MlpvalAssertionError, match=name):
            assert_property(result, si, name, "experiment", rel=VS_EXPERIMENT[name])


@needs_quippy
def test_bundled_gap_passes_against_experiment(si):
    from pytest_mlpval.potentials import load_potential

    gap = load_potential(str(GAP_XML)).calculator
    results = {"phonon_gamma_LTO_THz": phonons(gap, mesh=(4, 4, 4)),
               "C44_GPa": elastic_constants(gap, n_strains=3)}
    for name, result in results.items():
        assert_property(result, si, name, "experiment", rel=VS_EXPERIMENT[name])
    # and against its own DFT level (PBE, mlearn): the clamped-ion C44 is what it has
    check = compare(results["C44_GPa"], si, "C44_clamped_GPa", "PBE", rel=0.05,
                    training_level="PBE")
    assert check.passed and not check.level_mismatch
