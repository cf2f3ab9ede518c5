"""g(r), S(q) and coordination (checked against ASE's get_rdf, a crystal and an ideal
gas), users' curves, and a short liquid run."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.comparison import compare
from pytest_mlpval.protocols.md import diamond_start, random_start
from pytest_mlpval.protocols.properties import (
    PropertyError,
    assert_curve,
    compare_curve,
    liquid_structure,
    pair_correlation,
    read_curve,
)
from pytest_mlpval.references import load_references


@pytest.fixture(scope="module")
def crystal():
    return pair_correlation([diamond_start("Si", 3, rattle_A=0.1, seed=1)], bin_A=0.05,
                            label="amorphous")


def test_g_of_r_equals_ase_get_rdf(crystal):
    from ase.geometry.rdf import get_rdf

    atoms = diamond_start("Si", 3, rattle_A=0.1, seed=1)
    g, r = get_rdf(atoms, 7.5, 150)
    np.testing.assert_allclose(np.interp(r, crystal.r_A, crystal.g_r), g, atol=1e-10)


def test_diamond_peaks_and_coordination(crystal):
    a = 5.431
    assert crystal.first_peak_A == pytest.approx(a * np.sqrt(3) / 4, abs=0.05)
    assert crystal.second_peak_A == pytest.approx(a / np.sqrt(2), abs=0.05)
    assert crystal.coordination == pytest.approx(4.0, abs=0.05)
    # the (111) reflection: q = 2 pi sqrt(3) / a
    assert crystal.sq_first_peak_invA == pytest.approx(2 * np.pi * np.sqrt(3) / a, abs=0.05)
    assert crystal.density_g_cm3 == pytest.approx(2.329, abs=0.002)
    assert crystal.units()["amorphous_rdf_first_peak_A"] == "Å"


def test_ideal_gas_has_flat_g_and_s():
    gas = random_start("Si", 500, volume_per_atom_A3=20.0, min_separation_A=0.0, seed=2)
    result = pair_correlation([gas], bin_A=0.1)
    assert np.mean(result.g_r[10:]) == pytest.approx(1.0, abs=0.03)
    assert np.mean(result.s_q[100:]) == pytest.approx(1.0, abs=0.03)


def test_bad_frames():
    with pytest.raises(ValueError, match="no frames"):
        pair_correlation([])
    slab = diamond_start("Si", 2)
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match="periodic"):
        pair_correlation([slab])
    with pytest.raises(ValueError, match="same number of atoms"):
        pair_correlation([diamond_start("Si", 2), diamond_start("Si", 1)])


def test_user_curves(crystal, tmp_path):
    own = tmp_path / "own.dat"
    np.savetxt(own, np.column_stack([crystal.r_A, crystal.g_r]), header="r_A g")
    same = compare_curve(crystal, own, "g_r")
    assert same.rms_difference == pytest.approx(0, abs=1e-9) and same.n_points > 100
    shifted = tmp_path / "shifted.csv"
    np.savetxt(shifted, np.column_stack([crystal.q_invA, np.array(crystal.s_q) + 0.2]),
               delimiter=",")
    assert compare_curve(crystal, shifted, "s_q").rms_difference == pytest.approx(0.2)
    with pytest.raises(MlpvalAssertionError, match="(?s)amorphous s_q differs from .*"
                       "rms difference +0.2 +0.1 +FAIL"):
        assert_curve(crystal, shifted, "s_q", max_rms=0.1)
    bad = tmp_path / "bad.dat"
    bad.write_text("1 2 3\n4 5 6\n7 8 9\n")
    with pytest.raises(ValueError, match="expected two columns"):
        read_curve(bad)


def test_short_liquid_run_and_its_reference(tmp_path):
    from pytest_mlpval.potentials import load_potential

    # 8 atoms (mechanics only; r_max beyond half the cell: periodic images are counted)
    result = liquid_structure(load_potential("sw").calculator, n_atoms=8, melt_steps=50,
                              equilibration_steps=20, sample_steps=40, sample_every=10,
                              r_max_A=5.0)
    assert result.md_status == "completed" and result.n_frames == 4 and result.n_atoms == 8
    assert result.r_A[-1] == pytest.approx(5.0, abs=0.02)
    assert result.density_g_cm3 == pytest.approx(2.56, rel=1e-6)
    assert result.n_force_calls >= 110
    check = compare(result, load_references("Si"), "liquid_density_g_cm3", abs=0.03)
    assert check.passed


def test_liquid_run_that_explodes_is_reported():
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.testing import BrokenCalculator

    # NaN when two atoms come closer than 2.3 Å, which they do in a random start
    broken = BrokenCalculator(load_potential("sw").calculator, "nan")
    with pytest.raises(PropertyError, match="non-finite energy for a Si64 structure"):
        liquid_structure(broken, melt_steps=20, equilibration_steps=0, sample_steps=10)
    # without the relaxation of the random start, SW overheats at once: the run is
    # stopped by the MD watch, and the reason is in the error
    with pytest.raises(PropertyError, match=r"did not complete \(unstable, temperature\)"):
        liquid_structure(load_potential("sw").calculator, n_atoms=8, prerelax_steps=0,
                         melt_steps=50, equilibration_steps=0, sample_steps=10)


@pytest.mark.slow
def test_sw_liquid_against_experiment():
    """64 atoms at the experimental density and 1800 K (SW melts near 1690 K): 3 ps.
    Measured: first peak 2.51 Å, S(q) peak 2.76 1/Å, 6.2 neighbours within 3.1 Å, 5.7 Å^2
    mean-square displacement in 1.5 ps."""
    from pytest_mlpval.comparison import assert_properties
    from pytest_mlpval.potentials import load_potential

    result = liquid_structure(load_potential("sw").calculator, melt_steps=1000,
                              equilibration_steps=500, sample_steps=1500,
                              coordination_cutoff_A=3.1)
    assert result.msd_A2 > 2.0, "the run did not stay liquid"
    assert abs(result.temperature_K - 1800) < 100
    # experiment: 2.45 +- 0.03 Å, 6.0 +- 0.5 (Waseda et al. 1995), S(q) 2.8 +- 0.1 1/Å
    assert_properties(result, load_references("Si"),
                      {"liquid_rdf_first_peak_A": {"abs": 0.1},
                       "liquid_coordination": {"abs": 1.0},
                       "liquid_sq_first_peak_invA": {"abs": 0.15}})
