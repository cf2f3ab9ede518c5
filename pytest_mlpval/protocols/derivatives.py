"""Central differences over a sequence of steps, judged as h -> 0 (plain library, no pytest).

A derivative check compares an analytic quantity (forces, stress) with central
differences of the energy. One step cannot tell a true inconsistency from the
truncation error of a rough but smooth energy surface, nor from the rounding noise of a
single-precision model. So :func:`converge` takes the central differences at h, h/2,
h/4, ... down to a floor, with the Richardson extrapolation of each pair
(``(4 D(h/2) - D(h)) / 3``: central differences err by O(h²), the extrapolation by
O(h⁴)), and judges the smallest discrepancy the sequence reaches:

- truncation error shrinks with the step (observed order about 2): the sequence follows
  it down (a rough surface passes once a step resolves it);
- rounding noise grows as the step shrinks (about eps E / h, order about -1): the
  minimum over the sequence leaves it behind;
- a true inconsistency (forces scaled by 1.1, a stress of the wrong sign) stays at a
  floor at every step and fails.

The sequence stops at the first step (after ``min_steps``) whose discrepancy is within
the tolerance, so a sound model costs two steps; at the third step whose discrepancy
agrees within 1 % with the two before it (a floor: truncation error would have fallen
sixteenfold); otherwise at the floor step.
Any non-finite value makes the discrepancy NaN (a failure).

Also here: the central differences of an ASE calculator's energy (:func:`central_forces`,
:func:`central_stress`), and the smoothness path's direction (:func:`clear_direction`)
and the bisection of its steps beyond the tolerance (:func:`refine_path`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from pytest_mlpval.units import EV_PER_A3_TO_GPA as GPA

__all__ = ["StepRow", "StepSequence", "central_forces", "central_stress", "converge",
           "clear_direction", "has_free_energy", "refine_path", "step_sequence", "table",
           "verdict"]


@dataclass(frozen=True)
class StepRow:
    """One step of the sequence: ``discrepancy`` = max |exact - central difference|,
    ``extrapolated`` the same for the Richardson extrapolation with the previous step,
    ``order`` = log(previous discrepancy / this one) / log(previous step / this one) (NaN
    on the first row, or where a discrepancy is zero or not finite)."""

    step: float
    discrepancy: float
    extrapolated: float = math.nan
    order: float = math.nan


@dataclass(frozen=True)
class StepSequence:
    """The rows of :func:`converge` and the estimate at the best one (``best_estimate``,
    the central difference or extrapolation that reached ``value``)."""

    rows: tuple[StepRow, ...]
    best_estimate: np.ndarray = field(compare=False, repr=False)
    finite: bool = True

    @property
    def value(self) -> float:
        """The smallest discrepancy over the rows, central or extrapolated; NaN if any
        value was not finite."""
        if not self.finite or not self.rows:
            return math.nan
        return min(min(r.discrepancy, r.extrapolated) if not math.isnan(r.extrapolated)
                   else r.discrepancy for r in self.rows)

    @property
    def best(self) -> tuple[StepRow, str]:
        """The row that reached :attr:`value` and how (``central``/``extrapolated``)."""
        value = self.value
        for row in self.rows:
            if row.extrapolated == value:
                return row, "extrapolated"
            if row.discrepancy == value:
                return row, "central"
        return self.rows[-1], "central"

    @property
    def order(self) -> float:
        """The observed order at the smallest steps: the slope of log(discrepancy)
        against log(step) from the row of the smallest discrepancy on (the last two rows
        at least): about 2 for truncation error, 0 for an inconsistency, -1 for rounding
        noise. NaN with one row, or where a discrepancy is zero or not finite."""
        if not self.finite:
            return math.nan
        lowest = min(range(len(self.rows)), key=lambda i: self.rows[i].discrepancy,
                     default=0)
        last = self.rows[min(lowest, len(self.rows) - 2):]
        d = np.array([r.discrepancy for r in last])
        if len(last) < 2 or not np.all(np.isfinite(d) & (d > 0)):
            return math.nan
        return float(np.polyfit(np.log([r.step for r in last]), np.log(d), 1)[0])

    def as_tuples(self) -> tuple[tuple[float, float, float, float], ...]:
        return tuple((r.step, r.discrepancy, r.extrapolated, r.order) for r in self.rows)


def step_sequence(first: float, floor: float) -> tuple[float, ...]:
    """``first``, ``first/2``, ``first/4``, ... while at least ``floor`` (``first`` alone
    when ``floor >= first``)."""
    if not first > 0:
        raise ValueError(f"a finite-difference step must be positive, got {first!r}")
    steps = [float(first)]
    while steps[-1] / 2 >= floor * (1 - 1e-9):
        steps.append(steps[-1] / 2)
    return tuple(steps)


def _max_abs(a: np.ndarray) -> float:
    return float(np.max(np.abs(a))) if a.size else 0.0


def _order(previous: StepRow, discrepancy: float, step: float) -> float:
    ratio = previous.step / step
    if not (previous.discrepancy > 0 and discrepancy > 0 and ratio > 1):
        return math.nan
    return math.log(previous.discrepancy / discrepancy) / math.log(ratio)


def _at_a_floor(rows: list[StepRow], tolerance: float) -> bool:
    """The last three discrepancies agree within 1 % and exceed the tolerance: no
    truncation error (it would fall fourfold per halving), a floor that smaller steps
    only confirm, so the sequence stops there."""
    if len(rows) < 3:
        return False
    last = [r.discrepancy for r in rows[-3:]]
    return min(last) > tolerance and max(last) <= 1.01 * min(last)


def converge(estimate: Callable[[float], np.ndarray], exact: np.ndarray,
             steps: tuple[float, ...], tolerance: float, min_steps: int = 2) -> StepSequence:
    """Compare ``exact`` with ``estimate(h)`` (the central difference at step ``h``, an
    array of ``exact``'s shape) for ``h`` in ``steps`` (decreasing), stopping at the first
    step after ``min_steps`` whose discrepancy (central or extrapolated) is within
    ``tolerance``, at a floor (three discrepancies within 1 % of each other, beyond the
    tolerance), or at the first non-finite value."""
    exact = np.asarray(exact, dtype=float)
    rows: list[StepRow] = []
    best, best_value, previous = None, math.inf, None
    if not np.all(np.isfinite(exact)):
        return StepSequence((), exact, finite=False)
    for step in steps:
        numeric = np.asarray(estimate(step), dtype=float)
        if numeric.shape != exact.shape:
            raise ValueError(f"a finite-difference estimate of shape {numeric.shape}, "
                             f"expected {exact.shape}")
        discrepancy = _max_abs(exact - numeric)
        if not np.all(np.isfinite(numeric)):
            rows.append(StepRow(step, math.nan))
            return StepSequence(tuple(rows), numeric, finite=False)
        if discrepancy < best_value:
            best, best_value = numeric, discrepancy
        if previous is None:
            row = StepRow(step, discrepancy)
        else:
            square = (rows[-1].step / step) ** 2
            extrapolated = (square * numeric - previous) / (square - 1.0)
            extra = _max_abs(exact - extrapolated)
            if extra < best_value:
                best, best_value = extrapolated, extra
            row = StepRow(step, discrepancy, extra, _order(rows[-1], discrepancy, step))
        rows.append(row)
        previous = numeric
        if len(rows) >= min_steps and best_value <= tolerance:
            break
        if _at_a_floor(rows, tolerance):
            break
    return StepSequence(tuple(rows), exact if best is None else best)


def verdict(sequence: StepSequence, tolerance: float) -> str:
    """A sentence on how the discrepancy behaves as the step shrinks."""
    if not sequence.finite:
        return "a non-finite energy or derivative in the sequence"
    if sequence.value <= tolerance:
        return "within the tolerance"
    order = sequence.order
    if math.isnan(order):
        return "one step only: no convergence observed"
    if order >= 1.0:
        return (f"still shrinking at the smallest step (order {order:.1f}): truncation "
                f"error of a rough surface, or a floor not yet reached (lower the floor "
                f"step to follow it)")
    if order <= -0.5:
        return (f"growing as the step shrinks (order {order:.1f}): rounding noise (a "
                f"single-precision model? --mlpval-precision=float32)")
    return (f"stays at a floor as the step shrinks (order {order:.1f}): not truncation "
            f"error but a jump in the energy or derivatives that are not its own")


def table(rows: Sequence[tuple[float, float, float, float]], step_name: str,
          unit: str) -> list[str]:
    """Rows ``(step, discrepancy, extrapolated, order)`` (:meth:`StepSequence.as_tuples`)
    as text lines under a header."""
    def number(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.3g}"

    lines = [f"{step_name:>12}  {'discrepancy (' + unit + ')':>22}  "
             f"{'extrapolated (' + unit + ')':>24}  {'order':>6}"]
    for step, discrepancy, extrapolated, order in rows:
        lines.append(f"{step:>12.4g}  {number(discrepancy):>22}  "
                     f"{number(extrapolated):>24}  "
                     f"{'-' if math.isnan(order) else f'{order:.2f}':>6}")
    return lines


# --- the central differences of an ASE calculator -----------------------------------

def central_forces(work, indices: Sequence[int], step: float) -> np.ndarray:
    """Minus the central-difference gradient of ``work``'s energy (eV/Å) for the atoms
    ``indices`` (shape ``(len(indices), 3)``), each coordinate moved by +-``step`` Å;
    ``work``'s positions are restored."""
    origin = work.positions.copy()
    out = np.zeros((len(indices), 3))
    try:
        for row, atom in enumerate(indices):
            for axis in range(3):
                energies = []
                for sign in (1.0, -1.0):
                    moved = origin.copy()
                    moved[atom, axis] += sign * step
                    work.positions = moved
                    energies.append(float(work.get_potential_energy()))
                out[row, axis] = -(energies[0] - energies[1]) / (2 * step)
    finally:
        work.positions = origin
    return out


def has_free_energy(work) -> bool:
    """Whether ``work``'s calculator gives a free energy (``force_consistent=True``)."""
    from ase.calculators.calculator import PropertyNotImplementedError

    try:
        work.get_potential_energy(force_consistent=True)
        return True
    except PropertyNotImplementedError:
        return False


def central_stress(work, eps: float, consistent: bool) -> np.ndarray:
    """Central differences of the energy per volume over the six Voigt strains (GPa),
    as ASE's ``calculate_numerical_stress``: of the free energy when ``consistent``."""
    cell = work.cell.copy()
    volume = work.get_volume()
    stress = np.zeros((3, 3))
    for i, j in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)):
        energies = []
        for sign in (1.0, -1.0):
            strain = np.eye(3)
            if i == j:
                strain[i, i] += sign * eps
            else:
                strain[i, j] = strain[j, i] = sign * 0.5 * eps
            work.set_cell(cell @ strain, scale_atoms=True)
            energies.append(float(work.get_potential_energy(force_consistent=consistent)))
        stress[i, j] = stress[j, i] = (energies[0] - energies[1]) / (2 * eps * volume)
    work.set_cell(cell, scale_atoms=True)
    return stress.flat[[0, 4, 8, 5, 2, 1]] * GPA


# --- a path whose energy steps the forces must explain -------------------------------

def clear_direction(atoms, atom: int, distance_A: float, seed: int) -> tuple[np.ndarray, float]:
    """A path direction for ``atom`` among 64 seeded random ones: of those that keep it at
    least ``min(1.8 Å, 0.85 x its nearest-neighbour distance)`` from every other atom
    (minimum images), the one along which its distances to neighbours within 6 Å change
    most (so the path crosses many cutoff radii); the clearest one if none qualifies.
    Returns the unit vector and the closest approach in Å."""
    from ase.geometry import get_distances

    rng = np.random.default_rng(seed)
    candidates = rng.normal(size=(64, 3))
    candidates /= np.linalg.norm(candidates, axis=1)[:, None]
    others = np.delete(atoms.positions, atom, axis=0)
    if len(others) == 0:
        return candidates[0], math.inf
    _, start = get_distances(atoms.positions[atom][None, :], others, cell=atoms.cell,
                             pbc=atoms.pbc)
    needed = min(1.8, 0.85 * float(start.min()))
    best, best_score, clearest, clearance = None, -1.0, candidates[0], -1.0
    for direction in candidates:
        points = atoms.positions[atom] + np.linspace(0, distance_A, 31)[:, None] * direction
        _, dist = get_distances(points, others, cell=atoms.cell, pbc=atoms.pbc)
        closest = float(dist.min())
        if closest > clearance:
            clearest, clearance = direction, closest
        near = dist.min(axis=0) < 6.0
        score = float(np.sum(dist.max(axis=0)[near] - dist.min(axis=0)[near]))
        if closest >= needed and score > best_score:
            best, best_score, best_closest = direction, score, closest
    if best is None:
        return clearest, clearance
    return best, best_closest


def refine_path(point: Callable[[float], tuple[float, float]], s: np.ndarray,
                energies: np.ndarray, along: np.ndarray, tolerance: float,
                floor: float, budget: int) -> tuple[np.ndarray, tuple[StepRow, ...]]:
    """Bisect the segments of a path whose trapezoidal residual
    ``|E(b) - E(a) + (f(a) + f(b)) / 2 (b - a)|`` exceeds ``tolerance`` (``f`` the force
    along the path, ``point(s) -> (E, f)``), level by level down to steps of ``floor``
    or until ``budget`` new points are spent: a jump keeps its residual in one half at
    every level, truncation error falls eightfold per halving. Returns each segment's
    smallest residual over the levels (its largest over the halves of a level; NaN where
    a value was not finite), and the rows (step, residual) of the refined segment that
    ends worst.
    """
    def residual(a, b):
        return abs(b[1] - a[1] + 0.5 * (a[2] + b[2]) * (b[0] - a[0]))

    points = [(float(x), float(e), float(f)) for x, e, f in zip(s, energies, along)]
    best = np.array([residual(a, b) for a, b in zip(points[:-1], points[1:])])
    pending = {i: [(points[i], points[i + 1])] for i in np.flatnonzero(best > tolerance)}
    history = {i: [float(best[i])] for i in pending}
    step, steps, spent = float(s[1] - s[0]), [float(s[1] - s[0])], 0
    while pending and step / 2 >= floor * (1 - 1e-9) and spent < budget:
        step /= 2
        steps.append(step)
        for i in list(pending):
            if spent >= budget:  # the others keep the residuals of their last level
                break
            halves = []
            for a, b in pending[i]:
                x = 0.5 * (a[0] + b[0])
                mid = (x, *map(float, point(x)))
                spent += 1
                halves += [(a, mid), (mid, b)]
            sizes = [residual(a, b) for a, b in halves]
            level = max(sizes) if all(math.isfinite(v) for v in sizes) else math.nan
            history[i].append(level)
            best[i] = math.nan if math.isnan(level) else min(best[i], level)
            pending[i] = [h for h, v in zip(halves, sizes) if v > tolerance]
            if not pending[i] or not best[i] > tolerance:
                del pending[i]
    worst = max(history, key=lambda i: math.inf if math.isnan(best[i]) else best[i])
    rows = [StepRow(steps[0], history[worst][0])]
    for step, value in zip(steps[1:], history[worst][1:]):
        rows.append(StepRow(step, value, math.nan, _order(rows[-1], value, step)))
    return best, tuple(rows)
