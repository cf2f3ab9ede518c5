"""Unit tests of pytest_mlpval.cost: the cost structures, fresh force calls, timings and
the scaling exponent."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from pytest_mlpval.cost import (
    CostResult,
    cost_structure,
    force_call,
    scaling_exponent,
    time_force_calls,
)


def counting_calculator():
    """A harmonic ASE calculator (E = sum |x|^2 / 2) that counts its calculate() calls."""
    from ase.calculators.calculator import Calculator, all_changes

    class Counting(Calculator):
        implemented_properties = ["energy", "forces"]

        def __init__(self):
            super().__init__()
            self.calls = 0

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.calls += 1
            x = self.atoms.positions
            self.results = {"energy": 0.5 * float((x * x).sum()), "forces": -x.copy()}

    return Counting()


# --- cost_structure ------------------------------------------------------------------

@pytest.mark.parametrize("repeat, n", [(1, 8), (2, 64), (3, 216)])
def test_cost_structure_sizes(repeat, n):
    atoms = cost_structure(("Si",), repeat)
    assert len(atoms) == n
    assert set(atoms.get_chemical_symbols()) == {"Si"}
    assert all(atoms.pbc)
    # a repeat^3 supercell of ASE's conventional diamond cell
    from ase.build import bulk

    a = bulk("Si", cubic=True).cell.lengths()[0]
    assert a == pytest.approx(5.43, abs=0.01)
    np.testing.assert_allclose(np.asarray(atoms.cell), np.eye(3) * a * repeat)


def test_cost_structure_is_rattled_slightly():
    from ase.build import bulk

    atoms = cost_structure(("Si",), 2)
    ideal = bulk("Si", cubic=True).repeat((2, 2, 2))
    shift = np.linalg.norm(atoms.positions - ideal.positions, axis=1)
    assert 0 < shift.max() < 0.06
    assert 0.005 < shift.mean() < 0.03  # 0.01 Å per component


@pytest.mark.parametrize("species", [("Si", "Ge"), ("Si", "Ge", "C"), ("C", "Si", "Ge", "Sn")])
def test_cost_structure_relabels_every_species(species):
    atoms = cost_structure(species, 1)
    assert len(atoms) == 8  # the crystal of species[0]
    counts = Counter(atoms.get_chemical_symbols())
    assert set(counts) == set(species)
    assert max(counts.values()) - min(counts.values()) <= 1  # evenly mixed


def test_cost_structure_without_a_cubic_cell():
    atoms = cost_structure(("Mg",), 2)  # hcp: ASE has no cubic cell
    assert len(atoms) == 2 * 8
    assert set(atoms.get_chemical_symbols()) == {"Mg"}


def test_cost_structure_needs_species():
    with pytest.raises(ValueError, match="at least one species"):
        cost_structure((), 2)


def test_cost_structure_is_seeded():
    one = cost_structure(("Si", "Ge"), 2, seed=4)
    two = cost_structure(("Si", "Ge"), 2, seed=4)
    np.testing.assert_array_equal(one.positions, two.positions)
    assert one.get_chemical_symbols() == two.get_chemical_symbols()
    other = cost_structure(("Si", "Ge"), 2, seed=5)
    assert not np.allclose(one.positions, other.positions)
    assert one.get_chemical_symbols() != other.get_chemical_symbols()
    # the default seed is fixed too
    np.testing.assert_array_equal(cost_structure(("Si",), 1).positions,
                                  cost_structure(("Si",), 1).positions)


# --- force_call ----------------------------------------------------------------------

def test_force_call_recomputes_every_time():
    calc = counting_calculator()
    atoms = cost_structure(("Si",), 1)
    before = atoms.positions.copy()
    call = force_call(calc, atoms)
    assert calc.calls == 0
    results = [call() for _ in range(5)]
    assert calc.calls == 5  # one calculation per call: nothing served from a cache
    # forces of the structure as it is at that call (positions alternate by 1e-6 Å)
    assert results[0][0, 0] == pytest.approx(-(before[0, 0] + 1e-6), abs=1e-12)
    assert results[1][0, 0] == pytest.approx(-before[0, 0], abs=1e-12)
    np.testing.assert_allclose(results[0][1:], -before[1:])
    # the caller's atoms are untouched and get no calculator
    np.testing.assert_array_equal(atoms.positions, before)
    assert atoms.calc is None


def test_force_call_with_a_real_potential():
    from pytest_mlpval import load_potential

    calc = load_potential("sw").calculator
    atoms = cost_structure(("Si",), 1)
    forces = force_call(calc, atoms)()
    assert forces.shape == (8, 3)
    reference = atoms.copy()
    reference.positions[0, 0] += 1e-6
    reference.calc = calc
    np.testing.assert_allclose(forces, reference.get_forces(), atol=1e-9)


# --- time_force_calls ----------------------------------------------------------------

def test_time_force_calls():
    calc = counting_calculator()
    atoms = cost_structure(("Si",), 1)
    result = time_force_calls(calc, atoms, rounds=4, warmup=2)
    assert isinstance(result, CostResult)
    assert calc.calls == 6  # warm-up calls and timed calls all compute
    assert result.n_atoms == 8
    assert len(result.seconds) == 4
    assert all(s > 0 for s in result.seconds)
    assert result.median_s == pytest.approx(float(np.median(result.seconds)))
    assert result.per_atom_us == pytest.approx(1e6 * result.median_s / 8)


def test_cost_result_per_atom():
    result = CostResult(n_atoms=100, seconds=(0.002, 0.001, 0.5))
    assert result.median_s == 0.002
    assert result.per_atom_us == pytest.approx(20.0)


def test_cost_result_is_a_protocol_result():
    """CostResult is a protocols.base.Result: metrics named and in the units the cost
    tests record, and a round trip through as_dict()."""
    from pytest_mlpval.protocols.base import Result, result_from_dict

    result = CostResult(n_atoms=8, seconds=(0.004, 0.002, 0.003))
    assert isinstance(result, Result)
    assert result.metrics() == pytest.approx({"n_atoms": 8, "time_per_call_s": 0.003,
                                              "time_per_atom_us": 375.0})
    assert result.units() == {"n_atoms": "atoms", "time_per_call_s": "s",
                              "time_per_atom_us": "µs"}
    assert result_from_dict(result.as_dict()) == result


def test_time_force_calls_grows_with_size():
    from pytest_mlpval import load_potential

    calc = load_potential("sw").calculator
    small = time_force_calls(calc, cost_structure(("Si",), 1), rounds=3)
    large = time_force_calls(calc, cost_structure(("Si",), 3), rounds=3)
    assert large.n_atoms == 27 * small.n_atoms
    assert large.median_s > small.median_s


# --- scaling_exponent ----------------------------------------------------------------

@pytest.mark.parametrize("power", [1.0, 2.0, 0.5, 3.0])
def test_scaling_exponent_of_exact_power_laws(power):
    n = [64, 216, 512, 1000]
    seconds = [3e-6 * x ** power for x in n]
    assert scaling_exponent(n, seconds) == pytest.approx(power, abs=1e-9)


def test_scaling_exponent_is_a_least_squares_fit():
    # N, 2N, 4N at times t, 2t, 8t: slopes 1 and 2, fitted 1.5
    assert scaling_exponent([10, 20, 40], [1.0, 2.0, 8.0]) == pytest.approx(1.5)
    # order does not matter
    assert scaling_exponent([40, 10, 20], [16.0, 1.0, 4.0]) == pytest.approx(2.0)


def test_scaling_exponent_needs_two_sizes():
    assert math.isnan(scaling_exponent([64], [0.01]))
    assert math.isnan(scaling_exponent([64, 64, 64], [0.01, 0.02, 0.015]))
    assert math.isnan(scaling_exponent([], []))
