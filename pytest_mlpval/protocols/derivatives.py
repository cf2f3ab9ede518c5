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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from pytest_mlpval.units import EV_PER_A3_TO_GPA as GPA

__all__ = ["StepRow", "StepSequence", "central_forces", "central_stress", "converge",
           "has_free_energy", "step_sequence", "table", "verdict"]


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
            f"error, the analytic value disagrees with the energy")


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
