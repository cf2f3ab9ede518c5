"""Physical invariances and internal consistency of a potential (plain library, no pytest).

Every check takes an ASE calculator and a structure and returns a :class:`CheckResult`
(``value`` compared with ``tolerance``, both in ``unit``); :func:`assert_check` turns a
failed result into an :class:`InvarianceError` (an ``AssertionError``) that prints the
structure as extended XYZ and can save it to a file for a bug report.

Checks, and what ``value`` is:

==================  =====================================================  ==========
check               value                                                  unit
==================  =====================================================  ==========
``translation``     max(|dE|/N, max |dF|) after a rigid shift              eV/atom, eV/Å
``rotation``        max(|dE|/N, max |R F - F'|, max |R s R^T - s'|)       eV/atom, eV/Å, GPa
``permutation``     max(|dE|/N, max |F[p] - F'|) after permuting like atoms  eV/atom, eV/Å
``force_gradient``  max |F + dE/dx| (central differences, step sequence)   eV/Å
``stress_gradient`` max |s - dE/de / V| (central differences, sequence)    GPa
``extensivity``     |E(supercell)/N' - E/N|                                eV/atom
``force_sum``       |sum of forces| / N                                    eV/Å
``smoothness``      max |dE + F.dx| along a path of one atom               eV
``finite``          number of non-finite entries in E, F, stress           count
==================  =====================================================  ==========

Molecules and clusters (no periodic direction, no cell) get every check but
``stress_gradient`` and ``extensivity``, which raise :class:`CheckNotApplicable` saying the
structure is not periodic; ``rotation`` then compares energies and forces only.

Checks with several parts (energy and forces) compare each part with its own tolerance;
the part furthest beyond its tolerance sets ``value``, ``tolerance`` and ``unit``, and every
part is listed in ``detail``.

The two derivative checks take central differences over a step sequence (the first step,
halved down to a floor, with Richardson extrapolation: :mod:`.derivatives`) and judge the
smallest discrepancy it reaches, so the truncation error of a rough surface and the
rounding noise of a float32 model are left behind while a true inconsistency stays at a
floor and fails; the smoothness path bisects its steps beyond the tolerance likewise. The
result keeps the table of (step, discrepancy) (``steps``) and reports the discrepancy at
the smallest step and the observed convergence order in ``metrics()``.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from pytest_mlpval.errors import MlpvalError, SettingsError
from pytest_mlpval.protocols.base import Result, Settings
from pytest_mlpval.protocols.derivatives import (StepRow, StepSequence, central_forces,
                                                 central_stress, clear_direction, converge,
                                                 has_free_energy, refine_path, step_sequence,
                                                 table, verdict)
from pytest_mlpval.units import EV_PER_A3_TO_GPA as GPA

__all__ = [
    "CHECKS",
    "FLOAT32",
    "FLOAT64",
    "CheckNotApplicable",
    "CheckResult",
    "InvarianceError",
    "Tolerances",
    "assert_check",
    "not_evaluated",
    "run_check",
]


@dataclass(frozen=True)
class Tolerances(Settings):
    """Tolerances of the checks. Defaults suit float64 models; :data:`FLOAT32` suits
    single-precision models (most neural-network potentials run in float32 on GPUs).

    Attributes
    ----------
    energy_eV_atom : float
        Energy per atom under translation/rotation/permutation, and extensivity.
    force_eV_A : float
        Force components under translation/rotation/permutation.
    stress_GPa : float
        Stress components under rotation.
    force_sum_eV_A : float
        |sum of forces| / N.
    fd_force_eV_A : float
        Forces against the central-difference gradient of the energy.
    fd_step_A : float
        First (largest) displacement of the finite differences (Å); halved down to
        ``fd_min_step_A`` while the discrepancy exceeds ``fd_force_eV_A``.
    fd_stress_GPa : float
        Stress against the central-difference strain derivative of the energy.
    fd_strain : float
        First (largest) strain step of the stress finite differences; halved down to
        ``fd_min_strain`` while the discrepancy exceeds ``fd_stress_GPa``.
    smoothness_eV : float
        Largest |dE + F.dx| between two points of the path (an energy jump that the
        forces do not explain); scale with ``smoothness_step_A``.
    smoothness_step_A : float
        Step of the path.
    fd_min_step_A : float
        Smallest displacement of the force finite differences (Å).
    fd_min_strain : float
        Smallest strain step of the stress finite differences.
    smoothness_min_step_A : float
        Smallest step the smoothness path's steps beyond the tolerance are bisected to.
    """

    #: 2: the derivative checks take a step sequence (fd_min_step_A, fd_min_strain), the
    #: smoothness path refines its steps beyond the tolerance (smoothness_min_step_A)
    VERSION: ClassVar[int] = 2

    energy_eV_atom: float = 1e-6
    force_eV_A: float = 1e-5
    stress_GPa: float = 1e-4
    force_sum_eV_A: float = 1e-6
    fd_force_eV_A: float = 1e-3
    fd_step_A: float = 1e-3
    fd_stress_GPa: float = 1e-2
    fd_strain: float = 1e-5
    smoothness_eV: float = 2e-3
    smoothness_step_A: float = 0.01
    fd_min_step_A: float = 1e-3 / 16
    fd_min_strain: float = 1e-5 / 16
    smoothness_min_step_A: float = 0.01 / 16

    def __post_init__(self) -> None:
        for name in ("fd_step_A", "fd_strain", "fd_min_step_A", "fd_min_strain",
                     "smoothness_step_A", "smoothness_min_step_A"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise SettingsError(f"Tolerances.{name} must be a positive step, got {value!r}")


FLOAT64 = Tolerances()
FLOAT32 = Tolerances(
    energy_eV_atom=1e-4, force_eV_A=1e-3, stress_GPa=1e-2, force_sum_eV_A=1e-4,
    fd_force_eV_A=2e-2, fd_step_A=1e-2, fd_stress_GPa=0.2, fd_strain=1e-3,
    smoothness_eV=2e-2, smoothness_step_A=0.02, fd_min_step_A=1e-2 / 16,
    fd_min_strain=1e-3 / 16, smoothness_min_step_A=0.02 / 16,
)


class CheckNotApplicable(MlpvalError):
    """The check does not apply (e.g. no stress from the calculator, non-periodic cell)."""


class InvarianceError(MlpvalError, AssertionError):
    """A physical invariance or consistency check failed."""


@dataclass(frozen=True)
class CheckResult(Result):
    """Outcome of one check on one structure.

    ``error`` is set when the check could not be evaluated (the calculator raised:
    ``value`` is NaN, the check fails), ``skipped`` when it does not apply (the reason);
    ``status`` is ``ok``, ``FAIL``, ``ERROR`` or ``skipped``. ``metrics()`` is
    ``{check: value}`` in ``unit``; a derivative check also keeps its table of
    ``(step, discrepancy, extrapolated, order)`` rows in ``steps`` (``step_name``: what
    the step is) and adds ``<check>_at_smallest_<step>_<unit>`` (the discrepancy at the
    smallest step tried), ``<check>_smallest_<step>`` and ``<check>_order`` (the observed
    convergence order there; 2 for truncation error, 0 for an inconsistency) to its
    metrics.
    """

    protocol: ClassVar[str] = "invariance"

    check: str
    value: float
    tolerance: float
    unit: str
    detail: str
    structure: Any = field(default=None, compare=False, repr=False)
    error: str | None = None
    skipped: str | None = None
    steps: tuple[tuple[float, float, float, float], ...] = ()
    step_name: str = ""

    @property
    def passed(self) -> bool:
        if self.error is not None or self.skipped is not None:
            return False
        return bool(self.value <= self.tolerance)  # NaN fails

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "skipped"
        if self.error is not None:
            return "ERROR"
        return "ok" if self.passed else "FAIL"

    def _step_metrics(self) -> dict[str, tuple[float, str]]:
        if not self.steps:
            return {}
        label, step_unit = STEP_NAMES[self.step_name]
        step, discrepancy, _, _ = self.steps[-1]
        order = StepSequence(tuple(StepRow(*row) for row in self.steps), None).order
        return {
            f"{self.check}_at_smallest_{label}{UNIT_SUFFIX[self.unit]}": (discrepancy,
                                                                          self.unit),
            f"{self.check}_smallest_{label}{UNIT_SUFFIX[step_unit]}": (step, step_unit),
            f"{self.check}_order": (order, ""),
        }

    def metrics(self) -> dict[str, float]:
        return {self.check: float(self.value),
                **{k: float(v) for k, (v, _) in self._step_metrics().items()}}

    def units(self) -> dict[str, str]:
        return {self.check: self.unit,
                **{k: unit for k, (_, unit) in self._step_metrics().items()}}

    def not_measured(self) -> set[str]:
        """The check, when it does not apply (skipped); a check the calculator broke is
        a fault, not a gap. The convergence order where it cannot be observed (one
        step, or a zero discrepancy)."""
        missing = {self.check} if self.skipped is not None else set()
        return missing | {k for k, (v, _) in self._step_metrics().items()
                          if k.endswith("_order") and math.isnan(v)}


#: a derivative check's step: its name in metric names and its unit
STEP_NAMES = {"step (Å)": ("step", "Å"), "strain": ("strain", "")}
#: unit -> suffix of a metric name
UNIT_SUFFIX = {"eV/Å": "_eV_A", "GPa": "_GPa", "eV": "_eV", "Å": "_A", "": ""}


# --- evaluation helpers ---------------------------------------------------------------

def _has_stress(calc: Any) -> bool:
    props = getattr(calc, "implemented_properties", None)
    return props is None or "stress" in props


def _evaluate(calc: Any, atoms: Any, stress: bool = True):
    work = atoms.copy()
    work.calc = calc
    energy = float(work.get_potential_energy())
    forces = np.array(work.get_forces(), dtype=float)
    if forces.shape != (len(work), 3):  # an error result, not a broadcast that hides it
        raise ValueError(f"forces of shape {forces.shape} for {len(work)} atoms "
                         f"(expected ({len(work)}, 3))")
    sigma = None
    if stress and _has_stress(calc) and work.cell.rank == 3 and all(work.pbc):
        sigma = np.array(work.get_stress(voigt=False), dtype=float) * GPA
    return energy, forces, sigma


def _periodicity(atoms: Any) -> str:
    """``"not periodic (pbc FFF: a molecule or cluster)"`` and the like."""
    pbc = "".join("T" if p else "F" for p in atoms.pbc)
    kind = "a molecule or cluster" if not any(atoms.pbc) else "a slab or wire"
    return f"{atoms.get_chemical_formula()} is not periodic (pbc {pbc}: {kind})"


def _max_abs(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.max(np.abs(a))) if a.size else 0.0


def _parts_result(check: str, parts: Sequence[tuple[str, float, float, str]],
                  atoms: Any) -> CheckResult:
    """Several (what, value, tolerance, unit) parts: report the worst by ratio."""
    def ratio(p):
        if math.isnan(p[1]):
            return math.inf
        if p[2] <= 0:  # a zero tolerance: any excess is infinitely far beyond it
            return 0.0 if p[1] <= p[2] else math.inf
        return p[1] / p[2]

    worst = max(parts, key=ratio)
    detail = "; ".join(f"{what} {value:.3g} {unit} (tolerance {tol:.3g})"
                       for what, value, tol, unit in parts)
    return CheckResult(check, worst[1] if not math.isnan(worst[1]) else math.nan,
                       worst[2], worst[3], f"{worst[0]} — {detail}", atoms.copy())


def _rotation_matrix(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# --- the checks -----------------------------------------------------------------------

def translation(calc, atoms, tol: Tolerances = FLOAT64, shift_A=(0.37, -1.21, 2.03)):
    e0, f0, _ = _evaluate(calc, atoms, stress=False)
    moved = atoms.copy()
    moved.positions += np.asarray(shift_A, dtype=float)
    if any(moved.pbc):
        moved.wrap()
    e1, f1, _ = _evaluate(calc, moved, stress=False)
    n = len(atoms)
    return _parts_result("translation", [
        ("energy change", abs(e1 - e0) / n, tol.energy_eV_atom, "eV/atom"),
        ("force change", _max_abs(f1 - f0), tol.force_eV_A, "eV/Å"),
    ], atoms)


def rotation(calc, atoms, tol: Tolerances = FLOAT64, seed: int = 7):
    """Rotate positions and cell together by a seeded random rotation R: energy invariant,
    forces F' = R F, stress s' = R s R^T."""
    rot = _rotation_matrix(seed)
    e0, f0, s0 = _evaluate(calc, atoms)
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    turned.set_cell(np.asarray(atoms.cell) @ rot.T, scale_atoms=False)
    e1, f1, s1 = _evaluate(calc, turned)
    n = len(atoms)
    parts = [
        ("energy change", abs(e1 - e0) / n, tol.energy_eV_atom, "eV/atom"),
        ("force equivariance", _max_abs(f1 - f0 @ rot.T), tol.force_eV_A, "eV/Å"),
    ]
    if s0 is not None and s1 is not None:
        parts.append(("stress equivariance", _max_abs(s1 - rot @ s0 @ rot.T),
                      tol.stress_GPa, "GPa"))
    return _parts_result("rotation", parts, atoms)


def permutation(calc, atoms, tol: Tolerances = FLOAT64, seed: int = 3):
    """Shuffle the order of like atoms: same energy, forces permuted alike."""
    rng = np.random.default_rng(seed)
    order = np.arange(len(atoms))
    numbers = atoms.numbers
    for z in np.unique(numbers):
        idx = np.flatnonzero(numbers == z)
        shuffled = rng.permutation(idx)
        if len(idx) > 1 and np.array_equal(shuffled, idx):
            shuffled = np.roll(idx, 1)  # never the identity
        order[idx] = shuffled
    e0, f0, _ = _evaluate(calc, atoms, stress=False)
    shuffled = atoms[order]
    e1, f1, _ = _evaluate(calc, shuffled, stress=False)
    n = len(atoms)
    return _parts_result("permutation", [
        ("energy change", abs(e1 - e0) / n, tol.energy_eV_atom, "eV/atom"),
        ("force change", _max_abs(f1 - f0[order]), tol.force_eV_A, "eV/Å"),
    ], atoms)


def force_gradient(calc, atoms, tol: Tolerances = FLOAT64, max_atoms: int = 8):
    """Forces against central differences of the energy for up to ``max_atoms`` atoms
    (all three components), over the step sequence ``fd_step_A`` halved down to
    ``fd_min_step_A`` (:func:`.derivatives.converge`)."""
    work = atoms.copy()
    work.calc = calc
    forces = np.array(work.get_forces(), dtype=float)
    indices = list(range(min(len(atoms), max_atoms)))
    sequence = converge(lambda step: central_forces(work, indices, step), forces[indices],
                        step_sequence(tol.fd_step_A, tol.fd_min_step_A), tol.fd_force_eV_A)
    diff = forces[indices] - sequence.best_estimate
    worst = int(np.nanargmax(np.max(np.abs(diff), axis=1))) if np.isfinite(diff).any() else 0
    row, how = sequence.best if sequence.rows else (None, "")
    where = f"{how} at step {row.step:.3g} Å" if row is not None else "no step"
    return CheckResult(
        "force_gradient", sequence.value, tol.fd_force_eV_A, "eV/Å",
        f"max |F - (-dE/dx)| over atoms {indices[0]}..{indices[-1]}, smallest over "
        f"{len(sequence.rows)} steps ({where}), worst atom {worst}: "
        f"F = {np.round(forces[indices][worst], 5).tolist()}, "
        f"-dE/dx = {np.round(sequence.best_estimate[worst], 5).tolist()} eV/Å; "
        f"{verdict(sequence, tol.fd_force_eV_A)}", atoms.copy(),
        steps=sequence.as_tuples(), step_name="step (Å)")


def stress_gradient(calc, atoms, tol: Tolerances = FLOAT64):
    """Stress against the central-difference strain derivative of the energy: of the
    free energy where the calculator has one (smearing DFT), else of the energy (most
    machine-learned calculators do not implement ``free_energy``)."""
    if not _has_stress(calc):
        raise CheckNotApplicable("the calculator does not implement stress")
    if not all(atoms.pbc):
        raise CheckNotApplicable(f"{_periodicity(atoms)}: a stress needs a cell periodic "
                                 "in all three directions")
    work = atoms.copy()
    work.calc = calc
    stress = np.array(work.get_stress(voigt=True), dtype=float) * GPA
    consistent = has_free_energy(work)
    which = "free energy" if consistent else "energy"
    sequence = converge(lambda eps: central_stress(work, eps, consistent), stress,
                        step_sequence(tol.fd_strain, tol.fd_min_strain), tol.fd_stress_GPa)
    row, how = sequence.best if sequence.rows else (None, "")
    where = f"{how} at strain step {row.step:.3g}" if row is not None else "no step"
    return CheckResult(
        "stress_gradient", sequence.value, tol.fd_stress_GPa, "GPa",
        f"stress {np.round(stress, 4).tolist()} GPa vs strain derivative of the {which} "
        f"{np.round(sequence.best_estimate, 4).tolist()} GPa, smallest discrepancy over "
        f"{len(sequence.rows)} strain steps ({where}); "
        f"{verdict(sequence, tol.fd_stress_GPa)}", atoms.copy(),
        steps=sequence.as_tuples(), step_name="strain")


def extensivity(calc, atoms, tol: Tolerances = FLOAT64, repeat=(2, 1, 1)):
    if not all(atoms.pbc):
        raise CheckNotApplicable(f"{_periodicity(atoms)}: extensivity is checked on "
                                 "supercells of cells periodic in all three directions")
    e0, _, _ = _evaluate(calc, atoms, stress=False)
    big = atoms.repeat(repeat)
    e1, _, _ = _evaluate(calc, big, stress=False)
    value = abs(e1 / len(big) - e0 / len(atoms))
    return CheckResult(
        "extensivity", value, tol.energy_eV_atom, "eV/atom",
        f"E/N = {e0 / len(atoms):.8f} eV for {len(atoms)} atoms, "
        f"{e1 / len(big):.8f} eV for the {'x'.join(map(str, repeat))} supercell", atoms.copy())


def force_sum(calc, atoms, tol: Tolerances = FLOAT64):
    _, forces, _ = _evaluate(calc, atoms, stress=False)
    total = forces.sum(axis=0)
    return CheckResult("force_sum", float(np.linalg.norm(total)) / len(atoms),
                       tol.force_sum_eV_A, "eV/Å",
                       f"sum of forces {np.round(total, 8).tolist()} eV/Å over {len(atoms)} atoms",
                       atoms.copy())


def smoothness(calc, atoms, tol: Tolerances = FLOAT64, atom: int = 0,
               distance_A: float = 3.0, seed: int = 11):
    """Move one atom along a straight line (crossing its neighbours' cutoffs, keeping as
    clear of them as 64 seeded directions allow) and check that every energy step is
    explained by the forces: |E(i+1) - E(i) + (F(i) + F(i+1))/2 . dx| (trapezoidal work).
    A discontinuous cutoff, or forces that are not the energy's gradient, leave a jump.
    Steps beyond the tolerance are bisected down to ``smoothness_min_step_A``
    (:func:`.derivatives.refine_path`): a jump stays, the truncation error of a rough
    surface falls eightfold per halving.
    """
    direction, clearance = clear_direction(atoms, atom, distance_A, seed)
    n_steps = max(2, int(round(distance_A / tol.smoothness_step_A)))
    dx = direction * distance_A / n_steps
    work = atoms.copy()
    work.calc = calc
    energies, forces = [], []
    for _ in range(n_steps + 1):
        energies.append(float(work.get_potential_energy()))
        forces.append(np.array(work.get_forces()[atom], dtype=float))
        positions = work.positions
        positions[atom] += dx
        work.positions = positions
    energies = np.array(energies)
    forces = np.array(forces)
    residual = np.diff(energies) + 0.5 * (forces[1:] + forces[:-1]) @ dx
    finite_steps = np.isfinite(residual)
    worst = int(np.nanargmax(np.abs(residual))) if finite_steps.any() else 0
    value = float(np.max(np.abs(residual))) if finite_steps.all() else math.nan
    detail = (f"atom {atom} moved {distance_A} Å in {n_steps} steps (closest approach "
              f"{clearance:.2f} Å); largest energy step not explained by the forces "
              f"{residual[worst]:.3g} eV at {worst * np.linalg.norm(dx):.3f} Å "
              f"(energy step {energies[worst + 1] - energies[worst]:.3g} eV)")
    rows: tuple = ()
    if value > tol.smoothness_eV:  # not NaN: a non-finite path fails as it is
        start, ds = atoms.positions[atom].copy(), float(np.linalg.norm(dx))

        def point(x: float) -> tuple[float, float]:
            positions = work.positions
            positions[atom] = start + x * direction
            work.positions = positions
            return work.get_potential_energy(), float(work.get_forces()[atom] @ direction)

        best, rows = refine_path(point, np.arange(n_steps + 1) * ds, energies,
                                 forces @ direction, tol.smoothness_eV,
                                 tol.smoothness_min_step_A, budget=n_steps + 1)
        value = math.nan if np.isnan(best).any() else float(np.max(best))
        worst_at = int(np.argmax(np.where(np.isnan(best), np.inf, best)))
        refined = int(np.sum(np.abs(residual) > tol.smoothness_eV))
        detail += (f"; the {refined} steps beyond the tolerance bisected down to "
                   f"{rows[-1].step:.3g} Å; the worst, at {worst_at * ds:.3f} Å: "
                   f"{verdict(StepSequence(rows, None), tol.smoothness_eV)}")
    return CheckResult("smoothness", value, tol.smoothness_eV, "eV", detail, atoms.copy(),
                       steps=StepSequence(rows, None).as_tuples(), step_name="step (Å)")


def finite(calc, atoms, tol: Tolerances = FLOAT64):
    e, f, s = _evaluate(calc, atoms)
    bad = int(not math.isfinite(e)) + int(np.sum(~np.isfinite(f)))
    if s is not None:
        bad += int(np.sum(~np.isfinite(s)))
    return CheckResult("finite", float(bad), 0.0, "count",
                       f"energy {e!r}; non-finite force entries {int(np.sum(~np.isfinite(f)))}",
                       atoms.copy())


CHECKS: dict[str, Callable[..., CheckResult]] = {
    "translation": translation,
    "rotation": rotation,
    "permutation": permutation,
    "force_gradient": force_gradient,
    "stress_gradient": stress_gradient,
    "extensivity": extensivity,
    "force_sum": force_sum,
    "smoothness": smoothness,
    "finite": finite,
}


#: the tolerance (a :class:`Tolerances` field) and unit a check reports when it is not
#: evaluated (its main part; checks with several parts report the worst)
NOMINAL = {
    "translation": ("energy_eV_atom", "eV/atom"),
    "rotation": ("energy_eV_atom", "eV/atom"),
    "permutation": ("energy_eV_atom", "eV/atom"),
    "force_gradient": ("fd_force_eV_A", "eV/Å"),
    "stress_gradient": ("fd_stress_GPa", "GPa"),
    "extensivity": ("energy_eV_atom", "eV/atom"),
    "force_sum": ("force_sum_eV_A", "eV/Å"),
    "smoothness": ("smoothness_eV", "eV"),
    "finite": (None, "count"),
}


def not_evaluated(name: str, tol: Tolerances = FLOAT64, *, error: str | None = None,
                  skipped: str | None = None, atoms: Any = None) -> CheckResult:
    """The result of a check that did not judge: ``error`` (the calculator raised) or
    ``skipped`` (the reason it does not apply)."""
    field_name, unit = NOMINAL[name]
    tolerance = 0.0 if field_name is None else float(getattr(tol, field_name))
    why = f"not evaluated: {error}" if error is not None else f"skipped: {skipped}"
    return CheckResult(name, math.nan, tolerance, unit, why,
                       None if atoms is None else atoms.copy(), error=error, skipped=skipped)


def run_check(name: str, calc: Any, atoms: Any, tol: Tolerances = FLOAT64,
              **kwargs: Any) -> CheckResult:
    """Run the check ``name`` (a key of :data:`CHECKS`). It judges or says why not: a
    check that does not apply (no stress, no periodic cell, a property the calculator
    does not implement) raises :class:`CheckNotApplicable`; one the calculator breaks
    (it raises, returns arrays of the wrong shape) returns a failed result (status
    ``ERROR``) whose ``error`` names the exception."""
    from ase.calculators.calculator import PropertyNotImplementedError

    if name not in CHECKS:
        raise KeyError(f"unknown check {name!r}; known: {', '.join(CHECKS)}")
    try:
        # NaN and inf results are judged (they fail): numpy need not warn about them
        with np.errstate(all="ignore"):
            return CHECKS[name](calc, atoms, tol, **kwargs)
    except CheckNotApplicable:
        raise
    except PropertyNotImplementedError as exc:
        raise CheckNotApplicable(f"the calculator does not implement a property the check "
                                 f"needs ({exc})") from exc
    except Exception as exc:  # the candidate broke the check: a failure that says how
        return not_evaluated(name, tol, error=f"the calculation raised "
                             f"{type(exc).__name__}: {exc}", atoms=atoms)


def structure_text(atoms: Any) -> str:
    import ase.io

    buffer = io.StringIO()
    ase.io.write(buffer, atoms, format="extxyz")
    return buffer.getvalue()


def assert_check(result: CheckResult, save_dir: str | Path | None = None,
                 potential: str | None = None) -> CheckResult:
    """Raise :class:`InvarianceError` if ``result`` failed: the message has the value,
    tolerance and detail, and the structure as extended XYZ (also written to
    ``save_dir/<check>-<sha256 prefix>.extxyz`` when given)."""
    __tracebackhide__ = True
    if result.passed or result.skipped is not None:
        return result
    who = f" for potential {potential!r}" if potential else ""
    value = "NaN" if math.isnan(result.value) else f"{result.value:.4g}"
    if result.error is not None:
        lines = [f"{result.check} check could not be evaluated{who}: {result.error}"]
    else:
        lines = [f"{result.check} check failed{who}: {value} {result.unit} > tolerance "
                 f"{result.tolerance:.3g} {result.unit}", f"  {result.detail}"]
        if result.steps:
            lines += ["  " + line for line in table(result.steps, result.step_name,
                                                      result.unit)]
    if result.structure is not None:
        text = structure_text(result.structure)
        if save_dir is not None:
            digest = hashlib.sha256(text.encode()).hexdigest()[:12]
            path = Path(save_dir) / f"{result.check}-{digest}.extxyz"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            lines.append(f"  structure written to {path}")
        lines.append(f"  structure ({len(result.structure)} atoms, extxyz):")
        lines += ["    " + line for line in text.rstrip().splitlines()]
    raise InvarianceError("\n".join(lines))
