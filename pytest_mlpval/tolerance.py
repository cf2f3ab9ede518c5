"""Baseline tolerances (plain library, no pytest): ``METRIC:AMOUNT`` where METRIC is a
metric name or ``*`` (all metrics) and AMOUNT is a percentage (``5%``), a number in the
metric's own unit (``0.002``) or a number with a unit (``0.5meV``, ``0.01eV``, ``0.1GPa``,
``50MPa``, ``1e-3eV/Å``). Re-exported by :mod:`pytest_mlpval.baseline`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from pytest_mlpval.metrics import metric_unit

__all__ = ["DEFAULT_TOLERANCE", "PHYSICS_CHECKS", "Tolerance", "parse_tolerance",
           "resolve_tolerance"]

#: used for metrics that no tolerance names
DEFAULT_TOLERANCE = "*:1%"

#: the physics checks' names, which a tolerance may name as metrics (the keys of
#: :data:`pytest_mlpval.protocols.invariance.CHECKS`, which the core does not import; a
#: test keeps the two equal)
PHYSICS_CHECKS = ("translation", "rotation", "permutation", "force_gradient",
                  "stress_gradient", "extensivity", "force_sum", "smoothness", "finite")


_UNIT_SCALE = {
    # energy per atom or per cell, force, stress; the number is converted to the metric's
    # own unit (eV/..., GPa)
    "mev": 1e-3, "ev": 1.0, "mev/atom": 1e-3, "ev/atom": 1.0,
    "ev/å": 1.0, "ev/a": 1.0, "mev/å": 1e-3, "mev/a": 1e-3,
    "gpa": 1.0, "mpa": 1e-3, "kbar": 0.1,
    "deg": 1.0, "degree": 1.0,
}
_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%|[A-Za-zÅ/]+)?\s*$")


@dataclass(frozen=True)
class Tolerance:
    """How much a metric may grow: ``relative`` (fraction) or ``absolute`` (metric unit)."""

    metric: str
    relative: float | None = None
    absolute: float | None = None
    text: str = ""

    def allowed(self, baseline: float) -> float:
        if self.relative is not None:
            return abs(baseline) * self.relative
        return float(self.absolute or 0.0)


def parse_tolerance(text: str) -> Tolerance:
    """Parse ``METRIC:AMOUNT``; raises ``ValueError`` with the grammar on bad input."""
    metric, sep, amount = text.strip().partition(":")
    metric = metric.strip()
    match = _AMOUNT.match(amount)
    if not sep or not metric or match is None:
        raise ValueError(
            f"{text!r}: expected METRIC:AMOUNT, e.g. force_rmse:5%, energy_rmse:0.5meV, "
            "stress_rmse:0.1GPa, *:2%")
    if metric != "*" and not _known_metric(metric, metric_unit):
        raise ValueError(f"{text!r}: unknown metric {metric!r}")
    number, unit = float(match.group(1)), (match.group(2) or "")
    if unit == "%":
        return Tolerance(metric, relative=number / 100.0, text=text.strip())
    if unit:
        scale = _UNIT_SCALE.get(unit.lower())
        if scale is None:
            raise ValueError(f"{text!r}: unknown unit {unit!r}; use %, "
                             + ", ".join(sorted({'meV', 'eV', 'GPa', 'MPa', 'kbar'})))
        expected = _dimension_of_metric(metric, metric_unit)
        if metric == "*" or (expected is not None and expected != _UNIT_DIMENSION[unit.lower()]):
            raise ValueError(
                f"{text!r}: {_article(_UNIT_DIMENSION[unit.lower()])} unit does not fit "
                + ("every metric ('*' takes % or a plain number)" if metric == "*"
                   else f"{metric} ({expected}, {metric_unit(metric)})"))
        number *= scale
    return Tolerance(metric, absolute=number, text=text.strip())


_UNIT_DIMENSION = {
    **dict.fromkeys(("mev", "ev", "mev/atom", "ev/atom"), "energy"),
    **dict.fromkeys(("ev/å", "ev/a", "mev/å", "mev/a"), "force"),
    **dict.fromkeys(("gpa", "mpa", "kbar"), "stress"),
    **dict.fromkeys(("deg", "degree"), "angle"),
}


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _dimension_of_metric(metric: str, metric_unit) -> str | None:
    """energy / force / stress / angle for error metrics; None where the unit varies
    (physics checks) or is not one of these (cost)."""
    try:
        unit = metric_unit(metric)
    except KeyError:
        return None
    if unit.startswith("eV/Å"):
        return "force"
    if unit.startswith("eV"):
        return "energy"
    return {"GPa": "stress", "degree": "angle"}.get(unit)


def _known_metric(name: str, metric_unit) -> bool:
    try:
        metric_unit(name)
    except KeyError:
        return name in PHYSICS_CHECKS or name in ("time_per_atom_us", "time_per_call_s")
    return True


def resolve_tolerance(metric: str, tolerances: Sequence[Tolerance]) -> Tolerance:
    """The last tolerance naming ``metric``, else the last ``*`` one, else the default."""
    for tol in reversed(tolerances):
        if tol.metric == metric:
            return tol
    for tol in reversed(tolerances):
        if tol.metric == "*":
            return tol
    return parse_tolerance(DEFAULT_TOLERANCE)
