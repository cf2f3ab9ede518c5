"""Threshold checks on error reports, usable with or without pytest.

``assert_errors_within(report, force_rmse=0.15, energy_offset_removed_rmse=0.005)``
raises :class:`MlpvalAssertionError` (an ``AssertionError``) whose message is a table:
which limit, by how much, per config_type, and the worst structures.
Limits are upper bounds in the metric's unit (:func:`pytest_mlpval.metrics.metric_unit`);
``energy_offset`` and the per-element ``energy_offset_<El>`` are compared by absolute
value. A value that is not finite (NaN or inf errors in the sample) fails every limit, and
the message names the structures.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.metrics import (
    STATS,
    ErrorReport,
    is_offset_metric,
    metric_unit,
    split_element,
)

__all__ = [
    "MlpvalAssertionError",
    "MissingMetricError",
    "ThresholdResult",
    "assert_errors_within",
    "evaluate_thresholds",
    "format_table",
    "validate_limits",
]

#: rows of the worst-structures table in a failure message
WORST_ROWS = 5


class MlpvalAssertionError(MlpvalError, AssertionError):
    """A validation threshold was exceeded."""


class MissingMetricError(MlpvalError, LookupError):
    """A threshold names a metric the report cannot provide (missing labels)."""


@dataclass(frozen=True)
class ThresholdResult:
    """One limit checked against one value (``value`` in ``unit``)."""

    metric: str
    subset: str
    value: float
    limit: float
    unit: str

    @property
    def passed(self) -> bool:
        value = abs(self.value) if is_offset_metric(self.metric) else self.value
        return math.isfinite(value) and value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "subset": self.subset, "value": self.value,
                "limit": self.limit, "unit": self.unit, "passed": self.passed}


def validate_limits(limits: Mapping[str, Any], source: str = "thresholds") -> dict[str, float]:
    """Check names and values; raise ``ValueError`` naming ``source`` on a bad entry."""
    clean: dict[str, float] = {}
    for name, raw in limits.items():
        try:
            metric_unit(name)
        except KeyError:
            raise ValueError(
                f"{source}: unknown metric {name!r}; use <quantity>_<stat> with stat in "
                f"{', '.join(STATS)} (e.g. force_rmse, energy_offset_removed_mae), "
                "energy_offset, or per element energy_offset_<El> and force_rmse_<El>, "
                "force_mae_<El>, force_max_<El>") from None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{source}: {name}={raw!r} is not a number") from None
        if not value >= 0 or math.isinf(value):
            raise ValueError(f"{source}: {name}={raw!r} must be a finite number >= 0")
        clean[name] = value
    return clean


def _quantity(metric: str) -> str:
    metric = split_element(metric)[0]
    return "energy" if metric == "energy_offset" else metric.rpartition("_")[0]


def evaluate_thresholds(report: ErrorReport, limits: Mapping[str, float]
                        ) -> list[ThresholdResult]:
    """One :class:`ThresholdResult` per limit. A metric that is NaN because of NaN or inf
    errors gives a failing result; one with no errors at all raises
    :class:`MissingMetricError`."""
    metrics = report.metrics()
    results = []
    for name, limit in limits.items():
        value = metrics.get(name, math.nan)
        quantity = _quantity(name)
        stats = report.stats.get(quantity)
        element = split_element(name)[1]
        if name not in metrics and element is not None and stats is not None:
            raise MissingMetricError(
                f"cannot check {name}: dataset {report.dataset!r} ({report.subset}) has "
                f"elements {', '.join(report.species) or 'unknown'}; per-element metrics "
                f"exist for each of them when there are two or more")
        if math.isnan(value) and not (stats is not None and stats.n_nonfinite):
            if stats is not None and quantity == "force_angle":
                raise MissingMetricError(
                    f"cannot check {name}: no atom of dataset {report.dataset!r} "
                    f"({report.subset}) has a reference force of at least "
                    f"{report.angle_min_force_eV_A} eV/Å, below which angles are not "
                    "counted")
            label = {"energy": "energy", "force": "forces", "stress": "stress"}[
                quantity.split("_")[0]]
            why = getattr(report, "missing_labels", {}).get(label)
            raise MissingMetricError(
                f"cannot check {name}: no {quantity.split('_')[0]} errors for dataset "
                f"{report.dataset!r} ({report.subset}): the dataset has no such labels or "
                "the potential does not implement the property"
                + (f"\n{why}" if why else ""))
        results.append(ThresholdResult(name, report.subset, value, limit, metric_unit(name)))
    return results


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Aligned plain-text table: first column left-aligned, others right-aligned."""
    text = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in text]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def _excess(result: ThresholdResult) -> str:
    value = abs(result.value) if is_offset_metric(result.metric) else result.value
    if not math.isfinite(value):
        return "not finite"
    if result.limit == 0:
        return "+inf%"
    return f"{100.0 * (value - result.limit) / result.limit:+.0f}%"


def failure_message(report: ErrorReport, results: Sequence[ThresholdResult],
                    potential: str | None = None, hint: str | None = None) -> str:
    failed = [r for r in results if not r.passed]
    who = f"potential {potential!r} on " if potential else ""
    where = "" if report.subset == "all" else f", config_type {report.subset!r}"
    first = failed[0]
    if math.isfinite(first.value):
        what = f"{first.metric} {first.value:.4g} {first.unit} > {first.limit:.4g}"
    else:
        what = _nonfinite_text(report, first.metric)
    lines = [
        f"{len(failed)} of {len(results)} thresholds exceeded for {who}dataset "
        f"{report.dataset!r}{where} ({len(report)} structures, {int(report.n_atoms.sum())} "
        f"atoms): {what}",
        "",
    ]
    lines += format_table(
        ["metric", "value", "limit", "excess", "unit", "status"],
        [(r.metric, r.value if math.isfinite(r.value) else _nonfinite_cell(r.value),
          r.limit, _excess(r) if not r.passed else "", r.unit,
          "FAIL" if not r.passed else "ok") for r in results])
    lines += _offset_lines(report, failed)
    groups = report.by_config_type if len(report.config_type_names) > 1 else {}
    if groups:
        names = [r.metric for r in failed]
        lines += ["", "per config_type (limits apply to the whole set; shown to locate it):"]
        rows = []
        for ctype, sub in groups.items():
            m = sub.metrics()
            rows.append([ctype, len(sub)] + [_subset_cell(sub, n, m) for n in names])
        lines += format_table(["config_type", "n"] + names, rows)
    seen = []
    for r in failed:
        quantity = _quantity(r.metric)
        if quantity in seen:
            continue
        seen.append(quantity)
        unit = report.stats[quantity].unit
        bad = set(int(i) for i in report.nonfinite_structures(quantity))
        lines += ["", f"worst structures by {quantity} error ({unit}):"]
        lines += format_table(["index", "config_type", "atoms", f"{quantity} error"],
                              [(i, c, n, _nonfinite_cell(v) if i in bad else v)
                               for i, c, n, v in report.worst(quantity, WORST_ROWS)])
    if hint:
        lines += ["", hint]
    return "\n".join(lines)


def _offset_lines(report: ErrorReport, failed: Sequence[ThresholdResult]) -> list[str]:
    """The per-element energy offsets removed, under a failed energy limit (2+ elements)."""
    offsets = getattr(report, "element_offsets", {})
    if len(offsets) < 2 or not any(_quantity(r.metric) == "energy" or
                                   r.metric.startswith("energy_offset_removed")
                                   for r in failed):
        return []
    note = "" if report.offsets_determined else (
        " (the compositions do not determine each one: minimum-norm split)")
    return ["", "per-element energy offsets fitted on the whole dataset and removed from "
            "energy_offset_removed" + note + ":"] + format_table(
        ["element", "offset", "unit"], [(el, mu, "eV/atom") for el, mu in offsets.items()])


def _nonfinite_cell(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value}"


def _subset_cell(report: ErrorReport, metric: str, metrics: Mapping[str, float]) -> Any:
    value = metrics.get(metric, math.nan)
    stats = report.stats.get(_quantity(metric))
    if stats is not None and stats.n_nonfinite:
        return _nonfinite_cell(value)
    return value


def _nonfinite_text(report: ErrorReport, metric: str) -> str:
    """``force_rmse is not finite: NaN/inf in 3 of 72 force errors, in structures 2
    (rattled), ...``"""
    quantity = _quantity(metric)
    stats = report.stats[quantity]
    bad = [int(i) for i in report.nonfinite_structures(quantity)]
    position = {int(i): k for k, i in enumerate(report.indices)}
    named = ", ".join(f"{i} ({report.config_types[position[i]]})" for i in bad[:WORST_ROWS])
    more = f" and {len(bad) - WORST_ROWS} more" if len(bad) > WORST_ROWS else ""
    return (f"{metric} is not finite: NaN/inf in {stats.n_nonfinite} of {stats.n} "
            f"{quantity} errors, in structure{'s' if len(bad) != 1 else ''} {named}{more}")


def assert_errors_within(report: ErrorReport, *, config_type: str | None = None,
                         potential: str | None = None, hint: str | None = None,
                         **limits: float) -> list[ThresholdResult]:
    """Check upper limits on metrics of ``report`` (or of one ``config_type`` of it).

    Returns the checked :class:`ThresholdResult` list; raises
    :class:`MlpvalAssertionError` if any limit is exceeded, :class:`MissingMetricError`
    if a metric cannot be computed, ``ValueError`` for unknown metric names.
    """
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if not limits:
        raise ValueError("assert_errors_within: give at least one limit, e.g. force_rmse=0.1")
    limits = validate_limits(limits, "assert_errors_within")
    if config_type is not None:
        report = report.subset_by_config_type(config_type)
    results = evaluate_thresholds(report, limits)
    if not all(r.passed for r in results):
        raise MlpvalAssertionError(failure_message(report, results, potential, hint))
    return results


# -- bounds on the metrics of protocol results (RSS, MD, properties) ---------------------

@dataclass(frozen=True)
class BoundResult:
    """One bound ``min_<metric>`` or ``max_<metric>`` checked on a protocol result."""

    metric: str
    kind: str  # "min" or "max"
    limit: float
    value: float
    unit: str
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "subset": self.kind, "value": self.value,
                "limit": self.limit, "unit": self.unit, "passed": self.passed,
                "bound": self.kind}


def parse_bounds(bounds: Mapping[str, Any], source: str = "bounds"
                 ) -> list[tuple[str, str, float]]:
    """``{"min_diamond_like_fraction": 0.05, "max_n_failed": 0}`` as
    ``[(metric, "min"|"max", limit)]``; ValueError naming ``source`` otherwise."""
    parsed = []
    for key, limit in bounds.items():
        kind, _, metric = key.partition("_")
        if kind not in ("min", "max") or not metric:
            raise ValueError(f"{source}: {key!r} is not min_<metric> or max_<metric>")
        try:
            limit = float(limit)
        except (TypeError, ValueError):
            raise ValueError(f"{source}: {key}={limit!r} is not a number") from None
        if math.isnan(limit):
            raise ValueError(f"{source}: {key} is NaN")
        parsed.append((metric, kind, limit))
    return parsed


def check_bounds(metrics: Mapping[str, float], units: Mapping[str, str],
                 bounds: Mapping[str, Any], source: str = "bounds") -> list[BoundResult]:
    """Check ``min_<metric>`` / ``max_<metric>`` bounds on a result's metrics. A NaN
    value fails; a metric the result does not have raises :class:`MissingMetricError`
    listing those it has."""
    results = []
    for metric, kind, limit in parse_bounds(bounds, source):
        if metric not in metrics:
            raise MissingMetricError(
                f"{source}: no metric {metric!r} in this result; it has "
                f"{', '.join(sorted(metrics)) or 'none'}")
        value = float(metrics[metric])
        passed = (value >= limit if kind == "min" else value <= limit) and value == value
        results.append(BoundResult(metric, kind, limit, value, units.get(metric, ""), passed))
    return results


def bounds_message(results: Sequence[BoundResult], what: str, hint: str = "") -> str:
    """A failure message: a table of every bound, failing ones marked."""
    rows = [[r.metric, r.value, f"{'>=' if r.kind == 'min' else '<='} {_cell(r.limit)}",
             r.unit or "-", "ok" if r.passed else "FAIL"] for r in results]
    failed = sum(not r.passed for r in results)
    lines = [f"{what}: {failed} of {len(results)} bounds not met"]
    lines += format_table(["metric", "value", "bound", "unit", "status"], rows)
    if hint:
        lines.append(hint)
    return "\n".join(lines)


def assert_bounds(result: Any, what: str = "result", **bounds: float) -> list[BoundResult]:
    """Check ``min_<metric>`` / ``max_<metric>`` bounds on ``result.metrics()``; raise
    :class:`MlpvalAssertionError` with a table if any fails."""
    __tracebackhide__ = True
    results = check_bounds(result.metrics(), result.units(), bounds, what)
    if not all(r.passed for r in results):
        raise MlpvalAssertionError(bounds_message(results, what))
    return results
