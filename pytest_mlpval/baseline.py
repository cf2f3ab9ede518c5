"""Regression baselines: save the metrics of a run, compare a later run against them
(plain library, no pytest).

A baseline file is JSON with ``schema`` :data:`SCHEMA`, the run's identity (datetime,
machine, package versions, potentials and datasets with their sha256) and ``entries``:
one per (test node id, potential name, dataset, subset, kind) with its metrics. Potentials
are matched by *name*, so a new fit under the same name is compared with the accepted one.

Tolerances use the grammar ``METRIC:AMOUNT`` where METRIC is a metric name or ``*`` (all
metrics) and AMOUNT is a percentage (``5%``), a number in the metric's own unit
(``0.002``) or a number with a unit (``0.5meV``, ``2meV``, ``0.01eV``, ``0.1GPa``,
``50MPa``, ``1e-3eV/Å``). A metric regresses when it grows by more than its tolerance;
metrics where smaller is better are errors, check values and costs.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .results import finite_or_none

__all__ = [
    "DEFAULT_TOLERANCE",
    "SCHEMA",
    "BaselineError",
    "BaselineVersionError",
    "Comparison",
    "MlpvalRegressionError",
    "regression_message",
    "Tolerance",
    "compare_metrics",
    "entry_key",
    "load_baseline",
    "parse_tolerance",
    "resolve_tolerance",
    "write_baseline",
]

SCHEMA = "pytest-mlpval-baseline/1"
#: used for metrics that no tolerance names
DEFAULT_TOLERANCE = "*:1%"
#: changes smaller than this (in the metric's unit) are never a regression or improvement
NOISE_FLOOR = 1e-12
#: kinds of record saved in a baseline
SAVED_KINDS = ("errors", "checks", "protocol")
#: compared: error metrics. Check values are float noise of random structures (a failed
#: check already fails its test) and costs depend on the machine, so both are only saved;
#: protocol metrics (RSS counts, MD outcomes, properties) have no common "worse" direction,
#: so they are saved for reference and checked by bounds (mlpval_expect) instead.
COMPARED_KINDS = ("errors",)


class BaselineError(ValueError):
    """A baseline file that is missing, corrupt, foreign or of another schema version."""


class BaselineVersionError(BaselineError):
    """A baseline of another schema version (--mlpval-regen-baseline may overwrite it)."""


class MlpvalRegressionError(AssertionError):
    """A metric is worse than its baseline by more than its tolerance."""


# --- tolerances ------------------------------------------------------------------------

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
    from .metrics import metric_unit

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
        from .invariance import CHECKS

        return name in CHECKS or name in ("time_per_atom_us", "time_per_call_s")
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


# --- comparison ------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """One metric now against its baseline. ``status``: ``regressed``, ``improved``,
    ``unchanged`` or ``new`` (no baseline value)."""

    metric: str
    now: float
    baseline: float | None
    unit: str
    tolerance: Tolerance

    @property
    def change(self) -> float:
        if self.baseline is None:
            return math.nan
        return _magnitude(self.metric, self.now) - _magnitude(self.metric, self.baseline)

    @property
    def status(self) -> str:
        if self.baseline is None:
            return "new"
        if math.isnan(self.now) and not math.isnan(self.baseline):
            return "regressed"
        if math.isnan(self.change):
            return "unchanged"
        # floor: float noise on a zero baseline is no change
        allowed = max(self.tolerance.allowed(_magnitude(self.metric, self.baseline)),
                      NOISE_FLOOR)
        if self.change > allowed:
            return "regressed"
        if self.change < 0 and -self.change > allowed:
            return "improved"
        return "unchanged"

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "now": finite_or_none(self.now),
                "baseline": finite_or_none(self.baseline), "change": finite_or_none(self.change),
                "unit": self.unit, "tolerance": self.tolerance.text or DEFAULT_TOLERANCE,
                "status": self.status}


def _magnitude(metric: str, value: float) -> float:
    return abs(value) if metric == "energy_offset" else value


def compare_metrics(now: Mapping[str, float], units: Mapping[str, str],
                    baseline: Mapping[str, Any] | None,
                    tolerances: Sequence[Tolerance]) -> list[Comparison]:
    """Compare every metric of ``now`` with ``baseline`` (``{name: {"value", "unit"}}``,
    or None when the entry is missing)."""
    out = []
    for name, value in now.items():
        base = None if baseline is None else baseline.get(name)
        base_value = None if base is None else base.get("value")
        out.append(Comparison(
            name, math.nan if value is None else float(value),
            None if base is None else (math.nan if base_value is None else float(base_value)),
            units.get(name, ""), resolve_tolerance(name, tolerances)))
    return out


# --- files -----------------------------------------------------------------------------

def entry_key(nodeid: str, potential: str, dataset: str, subset: str, kind: str) -> str:
    return "::".join((kind, potential, dataset, subset, nodeid))


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a baseline; returns the document with ``entries`` as a dict
    keyed by :func:`entry_key`. Raises :class:`BaselineError`."""
    path = Path(path)
    if not path.is_file():
        raise BaselineError(f"baseline file not found: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or "schema" not in document:
        raise BaselineError(f"{path} is not a pytest-mlpval baseline (no 'schema' key)")
    if document["schema"] != SCHEMA:
        if not str(document["schema"]).startswith(SCHEMA.rpartition("/")[0] + "/"):
            raise BaselineError(f"{path} is not a pytest-mlpval baseline (schema "
                                f"{document['schema']!r}, expected {SCHEMA!r})")
        raise BaselineVersionError(
            f"baseline {path} has schema {document['schema']!r}; this version reads "
            f"{SCHEMA!r}: regenerate it with --mlpval-regen-baseline")
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise BaselineError(f"baseline {path}: 'entries' must be a list")
    keyed = {}
    for i, entry in enumerate(entries):
        try:
            key = entry_key(entry["nodeid"], entry["potential"], entry["dataset"],
                            entry["subset"], entry.get("kind", "errors"))
            metrics = entry["metrics"]
            if not isinstance(metrics, dict) or not all(
                    isinstance(m, dict) and "value" in m for m in metrics.values()):
                raise TypeError("metrics must map names to {value, unit}")
        except (KeyError, TypeError) as exc:
            raise BaselineError(f"baseline {path}: entry {i} is malformed ({exc})") from None
        keyed[key] = entry
    return {**document, "entries": keyed}


def baseline_entries(records: Iterable[tuple[str, Mapping[str, Any]]],
                     kinds: Sequence[str] = SAVED_KINDS) -> dict[str, dict[str, Any]]:
    """Baseline entries from (nodeid, record) pairs of a run."""
    entries = {}
    for nodeid, rec in records:
        kind = rec.get("kind", "errors")
        if kind not in kinds:
            continue
        potential, dataset = rec["potential"]["name"], rec["dataset"]["name"]
        entries[entry_key(nodeid, potential, dataset, rec["subset"], kind)] = {
            "nodeid": nodeid, "potential": potential, "dataset": dataset,
            "subset": rec["subset"], "kind": kind,
            "potential_sha256": rec["potential"].get("sha256"),
            "dataset_sha256": rec["dataset"].get("sha256"),
            "metrics": {name: {"value": finite_or_none(value), "unit": rec["units"].get(name, "")}
                        for name, value in rec["metrics"].items()},
        }
    return entries


def write_baseline(path: str | os.PathLike[str], entries: Mapping[str, Mapping[str, Any]],
                   meta: Mapping[str, Any]) -> Path:
    """Write atomically (temporary file + rename): never a half-written baseline."""
    from .fileio import write_json

    document = {"schema": SCHEMA, **meta,
                "entries": [entries[k] for k in sorted(entries)]}
    return write_json(path, document, indent=1)


#: rows of a regression table
MAX_ROWS = 25


def regression_message(groups: Sequence[tuple[Mapping[str, Any], Sequence[Comparison]]],
                       baseline_path: str, regenerated: bool) -> str:
    """Failure text: one table (baseline, now, change, tolerance) per record."""
    from .assertions import format_table

    lines = []
    for rec, comparisons in groups:
        where = "" if rec["subset"] == "all" else f", {rec['subset']}"
        verb = "changed or are new" if regenerated else "regressed"
        lines.append(f"{len(comparisons)} metrics {verb} against baseline {baseline_path} "
                     f"for potential {rec['potential']['name']!r} on "
                     f"{rec['dataset']['name']!r}{where}")
        ranked = sorted(comparisons, key=lambda c: -_relative(c))[:MAX_ROWS]
        rows = [(c.metric, _num(c.baseline), _num(c.now), _num(c.change), _pct(c),
                 c.tolerance.text or DEFAULT_TOLERANCE, c.unit, c.status) for c in ranked]
        lines += format_table(["metric", "baseline", "now", "change", "change %",
                               "tolerance", "unit", "status"], rows)
        if len(comparisons) > MAX_ROWS:
            lines.append(f"... and {len(comparisons) - MAX_ROWS} more")
        lines.append("")
    if regenerated:
        lines.append(f"baseline {baseline_path} is rewritten with these values at the end "
                     "of this run; the next run compares against them")
    else:
        lines.append("if the change is intended, accept it with --mlpval-regen-baseline "
                     "(rewrites the baseline), or widen --mlpval-compare-tolerance")
    return "\n".join(lines)


def _relative(c: Comparison) -> float:
    if c.baseline is None or math.isnan(c.change):
        return math.inf
    base = abs(_magnitude(c.metric, c.baseline))
    return abs(c.change) / base if base else math.inf


def _num(value: float | None) -> Any:
    return "-" if value is None else value


def _pct(c: Comparison) -> str:
    rel = _relative(c)
    if math.isinf(rel):
        return "-"
    return f"{100 * rel * (1 if c.change >= 0 else -1):+.1f}%"
