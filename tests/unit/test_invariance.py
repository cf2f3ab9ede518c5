"""Unit tests of pytest_mlpval.protocols.invariance: the physics checks on the built-in potentials
(all pass) and on BrokenCalculator faults (the targeted check fails, unrelated ones
pass), the failure message and file of assert_check, and the tolerances."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re

import numpy as np
import pytest

from pytest_mlpval import load_potential
from pytest_mlpval.protocols.invariance import (
    CHECKS,
    FLOAT32,
    FLOAT64,
    CheckNotApplicable,
    CheckResult,
    InvarianceError,
    Tolerances,
    assert_check,
    not_evaluated,
    run_check,
)
from pytest_mlpval.potentials import BUILTINS
from pytest_mlpval.testing import FAULTS, BrokenCalculator, PerturbedCalculator

ALL_CHECKS = ("translation", "rotation", "permutation", "force_gradient", "stress_gradient",
              "extensivity", "force_sum", "smoothness", "finite")


def rattled_si(kind: str):
    """A few rattled diamond-Si cells: cubic (8 atoms), sheared cubic, primitive (2)."""
    from ase.build import bulk

    if kind == "cubic":
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        seed = 0
    elif kind == "sheared":
        atoms = bulk("Si", "diamond", a=5.45, cubic=True)
        strain = np.array([[1.01, 0.02, 0.0], [0.0, 0.99, 0.015], [0.0, 0.0, 1.005]])
        atoms.set_cell(np.asarray(atoms.cell) @ strain, scale_atoms=True)
        seed = 1
    else:
        atoms = bulk("Si", "diamond", a=5.43)
        seed = 2
    atoms.rattle(0.05, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw").calculator


@pytest.fixture(scope="module")
def cubic():
    return rattled_si("cubic")


def _no_stress_calculator(base):
    """``base`` behind a calculator that implements energy and forces only."""
    from ase.calculators.calculator import Calculator, all_changes

    class NoStress(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = base
            self.results = {"energy": work.get_potential_energy(),
                            "forces": work.get_forces()}

    return NoStress()


# --- built-in potentials pass everything ---------------------------------------------

@pytest.mark.parametrize("kind", ["cubic", "sheared", "primitive"])
@pytest.mark.parametrize("potential", sorted(BUILTINS))
def test_builtin_potentials_pass_every_check(potential, kind):
    calc = load_potential(potential).calculator
    atoms = rattled_si(kind)
    assert set(CHECKS) == set(ALL_CHECKS)
    for name in ALL_CHECKS:
        if name == "smoothness" and kind != "cubic":
            continue  # the path is the slow one: one cell per potential is enough
        result = run_check(name, calc, atoms)
        assert result.check == name
        assert result.passed, f"{potential} {kind} {name}: {result}"
        assert 0 <= result.value <= result.tolerance
        if name == "smoothness":  # nothing beyond the tolerance: nothing bisected
            assert result.steps == () and result.metrics() == {name: result.value}
        assert assert_check(result) is result
        # the structure is kept (a copy) for the failure message
        np.testing.assert_allclose(result.structure.positions, atoms.positions)
        assert result.structure is not atoms


# --- each fault is caught by its check; unrelated checks still pass ------------------

#: fault -> (checks that must fail, checks that must still pass on a rattled Si cell)
FAULT_CHECKS = {
    "not_gradient": (["force_gradient"],
                     ["translation", "extensivity", "stress_gradient", "finite"]),
    "rotation": (["rotation"],
                 ["translation", "permutation", "force_gradient", "force_sum",
                  "extensivity", "finite"]),
    "translation": (["translation", "force_sum"],
                    ["permutation", "force_gradient", "finite"]),
    "permutation": (["permutation"],
                    ["translation", "rotation", "force_gradient", "force_sum", "finite"]),
    "cutoff": (["smoothness"],
               ["translation", "rotation", "permutation", "force_gradient", "force_sum",
                "extensivity", "finite"]),
    "extensive": (["extensivity"],
                  ["translation", "rotation", "permutation", "force_gradient",
                   "stress_gradient", "force_sum", "finite"]),
    "stress": (["stress_gradient"],
               ["rotation", "translation", "force_gradient", "extensivity", "finite"]),
    "nan": (["finite"], []),
}


def test_builtins_are_sw_and_tersoff():
    assert {"sw", "tersoff"} <= set(BUILTINS)


def test_every_fault_has_a_targeted_check():
    assert set(FAULT_CHECKS) == set(FAULTS)
    for failing, passing in FAULT_CHECKS.values():
        assert set(failing) <= set(CHECKS) and set(passing) <= set(CHECKS)
        assert not set(failing) & set(passing)


@pytest.mark.parametrize("fault", list(FAULT_CHECKS))
def test_fault_fails_its_check_and_only_that(sw, cubic, fault):
    calc = BrokenCalculator(sw, fault)
    atoms = cubic.copy()
    if fault == "nan":
        # two atoms closer than 2.3 Å
        atoms.positions[1] = atoms.positions[0] + [2.0, 0.3, 0.0]
    failing, passing = FAULT_CHECKS[fault]
    for name in failing:
        result = run_check(name, calc, atoms)
        assert not result.passed, f"{fault}: {name} passed: {result}"
        assert result.value > result.tolerance, result
        with pytest.raises(InvarianceError, match=f"^{name} check failed"):
            assert_check(result)
    for name in passing:
        result = run_check(name, calc, atoms)
        assert result.passed, f"{fault}: {name} failed: {result}"


def test_fault_values_are_the_size_of_the_fault(sw, cubic):
    # not_gradient: 0.05 eV/Å on atom 0 that no energy explains
    result = run_check("force_gradient", BrokenCalculator(sw, "not_gradient"), cubic)
    assert result.value == pytest.approx(0.05, rel=1e-3)
    assert "worst atom 0" in result.detail
    # cutoff: a 0.05 eV step as one pair crosses 3.0 Å; it stays as the path's steps
    # beyond the tolerance are bisected down to 0.01/16 Å
    result = run_check("smoothness", BrokenCalculator(sw, "cutoff"), cubic)
    assert result.value == pytest.approx(0.05, rel=0.05)
    assert len(result.steps) == 5 and result.steps[-1][0] == 0.01 / 16
    assert result.metrics()["smoothness_at_smallest_step_eV"] == pytest.approx(0.05, rel=1e-3)
    assert abs(result.metrics()["smoothness_order"]) < 0.1 and "a jump" in result.detail
    with pytest.raises(InvarianceError, match=r"step \(Å\) +discrepancy \(eV\)"):
        assert_check(result)
    # translation: a field of 0.01 eV/Å -> net force 0.01 eV/Å on each atom
    result = run_check("force_sum", BrokenCalculator(sw, "translation"), cubic)
    assert result.value == pytest.approx(0.01, rel=1e-6)
    # extensive: 0.1 eV per cell -> 0.1/8 - 0.1/16 eV/atom
    result = run_check("extensivity", BrokenCalculator(sw, "extensive"), cubic)
    assert result.value == pytest.approx(0.1 / 8 - 0.1 / 16, rel=1e-6)
    # stress: twice the true stress -> differs by the true stress
    true = run_check("stress_gradient", sw, cubic)
    assert true.passed
    result = run_check("stress_gradient", BrokenCalculator(sw, "stress"), cubic)
    stress = cubic.copy()
    stress.calc = sw
    assert result.value == pytest.approx(np.abs(stress.get_stress()).max() * 160.21766208,
                                         rel=1e-3)


def test_nan_fault_is_finite_on_a_regular_structure(sw):
    from ase.build import bulk

    from pytest_mlpval.descriptors import min_distance

    regular = bulk("Si", "diamond", a=5.43, cubic=True)
    regular.rattle(0.005, seed=0)
    assert min_distance(regular) > 2.3
    result = run_check("finite", BrokenCalculator(sw, "nan"), regular)
    assert result.passed and result.value == 0
    atoms = regular.copy()
    atoms.positions[1] = atoms.positions[0] + [2.0, 0.3, 0.0]
    result = run_check("finite", BrokenCalculator(sw, "nan"), atoms)
    assert result.value == 1  # the energy only; forces and stress stay finite
    with pytest.raises(InvarianceError, match=r"finite check failed: 1 count > tolerance 0"):
        assert_check(result)


def test_nan_values_fail_and_print_nan(sw, cubic):
    atoms = cubic.copy()
    atoms.positions[1] = atoms.positions[0] + [2.0, 0.3, 0.0]
    result = run_check("translation", BrokenCalculator(sw, "nan"), atoms)
    assert math.isnan(result.value) and not result.passed
    with pytest.raises(InvarianceError, match=r"translation check failed: NaN "):
        assert_check(result)


# --- rotation: stress equivariance is part of the check -------------------------------

def test_rotation_checks_stress_equivariance(sw, cubic):
    result = run_check("rotation", sw, cubic)
    assert "stress equivariance" in result.detail
    # doubled stress is still equivariant
    assert run_check("rotation", BrokenCalculator(sw, "stress"), cubic).passed
    # a constant added to every Voigt component is not (energy and forces are exact)
    shifted = PerturbedCalculator(sw, stress_shift_eV_A3=1e-3)
    result = run_check("rotation", shifted, cubic)
    assert not result.passed
    assert result.unit == "GPa" and result.tolerance == FLOAT64.stress_GPa
    assert result.detail.startswith("stress equivariance")
    assert result.value > 0.01


def test_rotation_without_stress_checks_energy_and_forces(sw, cubic):
    calc = _no_stress_calculator(sw)
    result = run_check("rotation", calc, cubic)
    assert result.passed
    assert "stress" not in result.detail
    assert "force equivariance" in result.detail and "energy change" in result.detail


# --- not applicable ------------------------------------------------------------------

def test_stress_gradient_needs_stress(sw, cubic):
    with pytest.raises(CheckNotApplicable, match="does not implement stress"):
        run_check("stress_gradient", _no_stress_calculator(sw), cubic)


def test_stress_and_extensivity_need_a_periodic_cell(sw, cubic):
    molecule = cubic.copy()
    molecule.pbc = False
    with pytest.raises(CheckNotApplicable, match="periodic"):
        run_check("stress_gradient", sw, molecule)
    with pytest.raises(CheckNotApplicable, match="periodic"):
        run_check("extensivity", sw, molecule)
    # the others still apply to a cluster
    assert run_check("translation", sw, molecule).passed
    assert run_check("finite", sw, molecule).passed


def test_run_check_unknown_name(sw, cubic):
    with pytest.raises(KeyError, match="unknown check 'gauge'.*translation"):
        run_check("gauge", sw, cubic)


def test_run_check_passes_tolerances_and_options(sw, cubic):
    # zero tolerances: exact invariance demanded (a rigid shift changes rounding only)
    tight = Tolerances(energy_eV_atom=0.0, force_eV_A=0.0)
    result = run_check("translation", sw, cubic, tight)
    assert result.tolerance == 0.0 and not result.passed
    # a zero-shift energy change is exactly 0: passes a zero energy tolerance
    exact = run_check("translation", sw, cubic, Tolerances(energy_eV_atom=0.0),
                      shift_A=(0.0, 0.0, 0.0))
    assert exact.passed, exact
    assert "energy change 0 eV/atom (tolerance 0)" in exact.detail
    loose = Tolerances(energy_eV_atom=1.0, force_eV_A=2.0)
    assert run_check("translation", sw, cubic, loose).tolerance in (1.0, 2.0)
    result = run_check("force_gradient", sw, cubic, max_atoms=2)
    assert "atoms 0..1" in result.detail


# --- assert_check ---------------------------------------------------------------------

def test_assert_check_message_and_file(sw, cubic, tmp_path):
    import ase.io

    result = run_check("rotation", BrokenCalculator(sw, "rotation"), cubic)
    assert not result.passed
    save = tmp_path / "failures" / "nested"
    with pytest.raises(InvarianceError) as info:
        assert_check(result, save_dir=save, potential="broken")
    assert isinstance(info.value, AssertionError)
    message = str(info.value)
    first = message.splitlines()[0]
    assert first.startswith("rotation check failed for potential 'broken': ")
    assert f"{result.value:.4g} {result.unit}" in first
    assert f"> tolerance {result.tolerance:.3g} {result.unit}" in first
    assert result.detail in message
    # the structure as extxyz
    assert f"structure ({len(cubic)} atoms, extxyz):" in message
    assert "Lattice=" in message and "Properties=species:S:1:pos:R:3" in message
    assert message.count("\n    Si ") == len(cubic)
    # and the file, named after the check and the hash of its text
    files = list(save.iterdir())
    assert len(files) == 1
    path = files[0]
    text = path.read_text()
    assert path.name == f"rotation-{hashlib.sha256(text.encode()).hexdigest()[:12]}.extxyz"
    assert f"structure written to {path}" in message
    for line in text.rstrip().splitlines():
        assert "    " + line in message
    back = ase.io.read(path)
    assert back.get_chemical_symbols() == cubic.get_chemical_symbols()
    np.testing.assert_allclose(back.positions, cubic.positions, atol=1e-6)
    np.testing.assert_allclose(np.asarray(back.cell), np.asarray(cubic.cell), atol=1e-6)
    assert list(back.pbc) == [True, True, True]


def test_assert_check_same_structure_same_file(sw, cubic, tmp_path):
    result = run_check("extensivity", BrokenCalculator(sw, "extensive"), cubic)
    for _ in range(2):
        with pytest.raises(InvarianceError):
            assert_check(result, save_dir=tmp_path)
    assert len(list(tmp_path.glob("extensivity-*.extxyz"))) == 1


def test_assert_check_without_save_dir_or_structure(tmp_path):
    result = CheckResult("force_sum", 0.5, 1e-6, "eV/Å", "sum of forces [0.5, 0, 0]")
    with pytest.raises(InvarianceError) as info:
        assert_check(result)
    message = str(info.value)
    assert message.startswith("force_sum check failed: 0.5 eV/Å > tolerance 1e-06 eV/Å")
    assert "extxyz" not in message and "written" not in message
    assert list(tmp_path.iterdir()) == []
    ok = CheckResult("force_sum", 1e-7, 1e-6, "eV/Å", "")
    assert assert_check(ok, save_dir=tmp_path) is ok
    assert list(tmp_path.iterdir()) == []  # nothing written for a pass


def test_check_result_passed():
    assert CheckResult("x", 1.0, 1.0, "eV", "").passed
    assert not CheckResult("x", 1.0 + 1e-12, 1.0, "eV", "").passed
    assert not CheckResult("x", math.nan, 1.0, "eV", "").passed


def test_results_and_errors_are_on_the_contract(sw, cubic):
    """A CheckResult is a protocols.base.Result ({check: value} in its unit; a skipped
    check is not measured, a broken one is a fault); the errors derive from MlpvalError
    and keep their builtin base (InvarianceError an AssertionError); the tolerances are
    Settings."""
    from pytest_mlpval.errors import MlpvalError
    from pytest_mlpval.protocols.base import Result, Settings

    result = run_check("force_sum", sw, cubic)
    assert isinstance(result, Result)
    assert result.metrics() == {"force_sum": result.value}
    assert result.units() == {"force_sum": "eV/Å"} and result.not_measured() == set()
    skipped = not_evaluated("stress_gradient", skipped="no stress")
    assert skipped.not_measured() == {"stress_gradient"}
    assert not_evaluated("finite", error="raised").not_measured() == set()
    assert issubclass(InvarianceError, MlpvalError) and issubclass(InvarianceError,
                                                                   AssertionError)
    assert issubclass(CheckNotApplicable, MlpvalError)
    assert isinstance(FLOAT32, Settings) and Tolerances.from_dict(FLOAT32.as_dict()) == FLOAT32


# --- tolerances -----------------------------------------------------------------------

def test_float32_tolerances_are_looser_field_by_field():
    fields = [f.name for f in dataclasses.fields(Tolerances)]
    assert len(fields) == 13
    assert FLOAT64 == Tolerances()
    for name in fields:
        assert getattr(FLOAT32, name) > getattr(FLOAT64, name) > 0, name


def test_float32_tolerances_accept_float32_noise(sw, cubic):
    """Forces rounded to float32 pass the force-gradient check at FLOAT32 tolerances."""
    from ase.calculators.calculator import Calculator, all_changes

    class Float32(Calculator):
        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = sw
            self.results = {
                "energy": float(np.float32(work.get_potential_energy())),
                "forces": work.get_forces().astype(np.float32).astype(float),
                "stress": work.get_stress().astype(np.float32).astype(float),
            }

    calc = Float32()
    assert not run_check("force_gradient", calc, cubic, FLOAT64).passed
    assert run_check("force_gradient", calc, cubic, FLOAT32).passed


# --- derivative checks over a step sequence ----------------------------------------------

def rough_calculator(base, amplitude_eV=0.004, k_invA=200.0, volume_stress_GPa=3.0,
                     q_invA3=1550.0):
    """``base`` plus a smooth but rough energy, with its exact forces and stress:
    ``amplitude sum sin(k x)`` over every coordinate, and ``N B sin(q V/N)`` with
    ``B q = volume_stress`` (its stress amplitude). One central difference at the
    float64 steps (1e-3 Å, strain 1e-5) sees its truncation error (some 5e-3 eV/Å and
    0.05 GPa in an 8-atom diamond cell); smaller steps converge."""
    from ase.calculators.calculator import Calculator, all_changes

    volume_amplitude_eV = volume_stress_GPa / 160.21766208 / q_invA3

    class Rough(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = base
            x, n = work.positions, len(work)
            per_atom = work.get_volume() / n
            energy = (work.get_potential_energy() + amplitude_eV * np.sin(k_invA * x).sum()
                      + n * volume_amplitude_eV * np.sin(q_invA3 * per_atom))
            gradient = amplitude_eV * k_invA * np.cos(k_invA * x)
            virial = gradient.T @ x  # sum_i dE/dx_ia x_ib: dE/d(strain_ab)
            sigma = (0.5 * (virial + virial.T) / (n * per_atom) + volume_amplitude_eV
                     * q_invA3 * np.cos(q_invA3 * per_atom) * np.eye(3))
            self.results = {"energy": energy, "free_energy": energy,
                            "forces": work.get_forces() - gradient,
                            "stress": work.get_stress() + sigma.flat[[0, 4, 8, 5, 2, 1]]}

    return Rough()


def one_step(tol):
    """``tol`` with a sequence of one step: the check as it was before the sequence."""
    return tol.with_overrides(fd_min_step_A=tol.fd_step_A, fd_min_strain=tol.fd_strain)


@pytest.mark.parametrize("tol", [FLOAT64, FLOAT32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["force_gradient", "stress_gradient"])
def test_rough_surface_passes_where_one_step_failed(sw, cubic, name, tol):
    """Exact derivatives of a rough surface: one step sees the truncation error and
    fails; the sequence follows it down (order about 2) and passes."""
    # the float32 strain steps are 100 times larger: a roughness 15 times longer
    calc = rough_calculator(sw, q_invA3=1550.0 if tol is FLOAT64 else 100.0)
    old = run_check(name, calc, cubic, one_step(tol))
    assert not old.passed and old.value > 2 * old.tolerance, old
    assert len(old.steps) == 1
    result = run_check(name, calc, cubic, tol)
    assert result.passed, result
    assert result.value <= result.tolerance < result.steps[0][1]
    assert 2 <= len(result.steps) <= 5
    steps = [row[0] for row in result.steps]
    first = tol.fd_step_A if name == "force_gradient" else tol.fd_strain
    np.testing.assert_allclose(steps, first / 2.0 ** np.arange(len(steps)))
    assert result.metrics()[f"{name}_order"] == pytest.approx(2.0, abs=0.3)  # truncation
    assert "within the tolerance" in result.detail
    label, unit, suffix = (("step", "eV/Å", "_eV_A") if name == "force_gradient"
                           else ("strain", "GPa", "_GPa"))
    metrics, units = result.metrics(), result.units()
    assert metrics[f"{name}_at_smallest_{label}{suffix}"] == result.steps[-1][1]
    assert metrics[f"{name}_smallest_{label}" + ("_A" if label == "step" else "")] == steps[-1]
    assert units[f"{name}_at_smallest_{label}{suffix}"] == unit
    assert units[f"{name}_order"] == "" and result.not_measured() == set()


def _negated_stress(base):
    from ase.calculators.calculator import Calculator, all_changes

    class Negated(Calculator):
        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = base
            self.results = {"energy": work.get_potential_energy(),
                            "forces": work.get_forces(), "stress": -work.get_stress()}

    return Negated()


@pytest.mark.parametrize("case", ["forces x1.5", "forces x1.1", "stress x2", "stress x-1"])
def test_true_inconsistency_stays_at_a_floor_and_fails(sw, cubic, case):
    from pytest_mlpval.testing import sw_forces_scaled

    name, calc = {"forces x1.5": ("force_gradient", sw_forces_scaled()),
                  "forces x1.1": ("force_gradient", PerturbedCalculator(sw, force_scale=1.1)),
                  "stress x2": ("stress_gradient", BrokenCalculator(sw, "stress")),
                  "stress x-1": ("stress_gradient", _negated_stress(sw))}[case]
    result = run_check(name, calc, cubic)
    assert not result.passed and result.value > 10 * result.tolerance
    assert len(result.steps) == 3  # three steps at the same floor: no need to go on
    discrepancies = [row[1] for row in result.steps]
    assert max(discrepancies) == pytest.approx(min(discrepancies), rel=1e-3)
    assert abs(result.metrics()[f"{name}_order"]) < 0.1
    assert "stays at a floor" in result.detail
    with pytest.raises(InvarianceError) as info:
        assert_check(result)
    message = str(info.value)
    header = "step (Å)" if name == "force_gradient" else "strain"
    assert header in message and "discrepancy (" in message and "order" in message
    for step, discrepancy, _, _ in result.steps:
        assert re.search(rf"\n +{step:.4g} +{discrepancy:.3g} ", message), (step, message)


@pytest.mark.parametrize("at_call", [0, 20])
@pytest.mark.parametrize("name", ["force_gradient", "stress_gradient"])
def test_nan_anywhere_in_the_sequence_fails(sw, cubic, name, at_call):
    """NaN from the start, or from a call inside the second step: the finite rows before
    it do not hide it."""
    from pytest_mlpval.testing import FaultyCalculator

    result = run_check(name, FaultyCalculator(sw, "nan", at_call=at_call), cubic)
    assert math.isnan(result.value) and not result.passed and result.status == "FAIL"
    assert "non-finite" in result.detail
    with pytest.raises(InvarianceError, match=f"{name} check failed: NaN"):
        assert_check(result)


@pytest.mark.parametrize("name", ["force_gradient", "stress_gradient"])
def test_float32_rounding_floor_passes_at_float32_tolerances(sw, cubic, name):
    """A float32 model: the noise grows as the step shrinks (order about -1); the
    smallest discrepancy over the sequence is within the float32 tolerance."""
    from pytest_mlpval.testing import FaultyCalculator

    calc = FaultyCalculator(sw, "float32")
    assert run_check(name, calc, cubic, FLOAT32).passed
    # the whole sequence (no tolerance to stop at): the noise at the floor is larger
    floor = FLOAT32.with_overrides(fd_force_eV_A=0.0, fd_stress_GPa=0.0)
    result = run_check(name, calc, cubic, floor)
    assert len(result.steps) == 5
    assert result.steps[-1][1] > 3 * result.value
    assert result.metrics()[f"{name}_order"] < -0.5 and "rounding noise" in result.detail
    assert result.value <= getattr(FLOAT32, "fd_force_eV_A" if name == "force_gradient"
                                   else "fd_stress_GPa")


def test_step_sequence_and_converge_on_known_errors():
    from pytest_mlpval.protocols.derivatives import converge, step_sequence

    assert step_sequence(1e-3, 1e-3 / 16) == (1e-3, 5e-4, 2.5e-4, 1.25e-4, 6.25e-5)
    assert step_sequence(1e-2, 1.0) == (1e-2,)
    with pytest.raises(ValueError, match="positive"):
        step_sequence(0.0, 1e-3)
    exact = np.array([1.0, -2.0])
    steps = step_sequence(0.1, 0.1 / 16)
    # truncation error c h^2: Richardson removes it at the second step
    result = converge(lambda h: exact + 3.0 * h ** 2, exact, steps, 1e-6)
    assert len(result.rows) == 2 and result.value < 1e-12
    assert result.rows[1].order == pytest.approx(2.0)
    assert result.best[1] == "extrapolated"
    # an offset stays: order 0, three steps at the floor are enough
    result = converge(lambda h: exact + 0.01 + 1e-3 * h ** 2, exact, steps, 1e-3)
    assert len(result.rows) == 3 and result.value == pytest.approx(0.01, rel=1e-3)
    # an offset under a truncation error larger than 1 %: followed to the floor step
    result = converge(lambda h: exact + 0.01 + h ** 2, exact, steps, 1e-3)
    assert len(result.rows) == 5 and result.value == pytest.approx(0.01, rel=1e-3)
    # noise eps/h: the minimum is the largest step
    result = converge(lambda h: exact + 1e-5 / h, exact, steps, 1e-5)
    assert result.value == pytest.approx(1e-4) and result.order == pytest.approx(-1.0)
    # NaN at the third step: NaN, and the sequence stops there
    result = converge(lambda h: exact * (np.nan if h < 0.03 else 1.0) + 1.0, exact, steps, 0)
    assert math.isnan(result.value) and len(result.rows) == 3


def test_tolerances_version_and_step_validation():
    from pytest_mlpval.errors import SettingsError

    assert Tolerances.VERSION == 2
    assert FLOAT64.fd_min_step_A < FLOAT64.fd_step_A
    assert FLOAT32.fd_min_strain < FLOAT32.fd_strain
    for name in ("fd_step_A", "fd_min_step_A", "fd_strain", "fd_min_strain"):
        with pytest.raises(SettingsError, match=name):
            Tolerances(**{name: 0.0})


def test_smoothness_bisects_the_steps_of_a_rough_path(sw, cubic):
    """A rough surface (0.1 eV sin(100/Å x)): the 0.01 Å path steps see its truncation
    error (the check failed), bisected they converge (order about 3). A jump stays:
    test_fault_values_are_the_size_of_the_fault."""
    rough = rough_calculator(sw, amplitude_eV=0.1, k_invA=100.0)
    short = {"distance_A": 0.6}
    old = run_check("smoothness", rough, cubic,
                    FLOAT64.with_overrides(smoothness_min_step_A=FLOAT64.smoothness_step_A),
                    **short)
    assert not old.passed and old.steps[0][1] == old.value > 2 * old.tolerance
    result = run_check("smoothness", rough, cubic, **short)
    assert result.passed, result
    assert result.steps[0][:2] == old.steps[0][:2] and len(result.steps) >= 2
    assert result.steps[-1][1] <= result.value and result.metrics()["smoothness_order"] > 2
    assert "bisected" in result.detail and "within the tolerance" in result.detail
