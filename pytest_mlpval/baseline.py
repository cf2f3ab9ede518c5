"""Regression baselines: save the metrics of a run, compare a later run against them
(plain library, no pytest).

A baseline file is JSON with ``schema`` :data:`SCHEMA`, the run's identity (datetime,
machine, package versions, potentials and datasets with their sha256) and ``entries``:
one per (test node id, subject, dataset, subset, kind) with its metrics (finite
numbers; a metric that was NaN or infinite is listed under ``non_finite`` with value
``"nan"``, ``"inf"`` or ``"-inf"`` instead, never as a null) and its ``identity``: what
it was measured on (the dataset's sha256, label keys, index, size; for cross-validation
the split and the fitting command). The subject is a candidate potential
(``potential``: its name) or, with ``potential`` null, a dataset or fitting recipe
(``subject``: kind and name; keyed as ``dataset:NAME``, ``recipe:NAME``). Potentials
are matched by *name*, so a new fit under the same name is compared with the accepted one;
a record measured on other data than its entry is not compared: its test fails and says
what changed. Every value is checked when the file is read (:class:`BaselineError`).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pytest_mlpval.assertions import format_table
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.fileio import write_json
from pytest_mlpval.metrics import is_offset_metric
from pytest_mlpval.results import finite_or_none
from pytest_mlpval.subjects import subject_label, subject_of
from pytest_mlpval.tolerance import (DEFAULT_TOLERANCE, Tolerance, parse_tolerance,
                                     resolve_tolerance)

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
    "identity_changes",
    "identity_message",
    "IDENTITY_FIELDS",
    "is_baseline_file",
    "load_baseline",
    "record_identity",
    "parse_tolerance",
    "resolve_tolerance",
    "write_baseline",
]

#: 2: entries carry ``identity`` and ``non_finite`` (1 had neither, and NaN as null)
SCHEMA = "pytest-mlpval-baseline/2"
#: changes smaller than this (in the metric's unit) are never a regression or improvement
NOISE_FLOOR = 1e-12
#: kinds of record saved in a baseline
SAVED_KINDS = ("errors", "checks", "protocol")
#: compared: error metrics. Check values are float noise of random structures (a failed
#: check already fails its test) and costs depend on the machine, so both are only saved;
#: protocol metrics (RSS counts, MD outcomes, properties) have no common "worse" direction,
#: so they are saved for reference and checked by bounds (mlpval_expect) instead.
COMPARED_KINDS = ("errors",)


class BaselineError(MlpvalError, ValueError):
    """A baseline file that is missing, corrupt, foreign or of another schema version."""


class BaselineVersionError(BaselineError):
    """A baseline of another schema version (--mlpval-regen-baseline may overwrite it)."""


class MlpvalRegressionError(MlpvalError, AssertionError):
    """A metric is worse than its baseline by more than its tolerance."""


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
        now, base = (_magnitude(self.metric, v) for v in (self.now, self.baseline))
        if not (math.isfinite(now) and math.isfinite(base)):
            # NaN or inf on either side: the same non-finite value as accepted is
            # unchanged, a non-finite value now regressed, a finite one now improved
            if now == base or (math.isnan(now) and math.isnan(base)):
                return "unchanged"
            return "regressed" if not math.isfinite(now) else "improved"
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
    return abs(value) if is_offset_metric(metric) else value


def compare_metrics(now: Mapping[str, float], units: Mapping[str, str],
                    baseline: Mapping[str, Any] | None,
                    tolerances: Sequence[Tolerance]) -> list[Comparison]:
    """Compare every metric of ``now`` with ``baseline`` (``{name: {"value", "unit"}}``
    as :func:`load_baseline` returns it, values numbers, NaN and inf included; None when
    the entry is missing). A baseline value that is not a number is a
    :class:`BaselineError`: a null must not switch the gate off."""
    out = []
    for name, value in now.items():
        base = None if baseline is None else baseline.get(name)
        if base is not None and not _is_number(base.get("value")):
            raise BaselineError(f"baseline value of {name!r} is not a number: "
                                f"{_json(base.get('value'))}")
        out.append(Comparison(
            name, math.nan if value is None else float(value),
            None if base is None else float(base["value"]),
            units.get(name, ""), resolve_tolerance(name, tolerances)))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- what a record was measured on ------------------------------------------------------

#: dataset fields that identify the data a record was measured on: the file's content,
#: the label keys, the structures taken (ASE index, format, count); for a
#: cross-validation the training data, the split and the fitting command. Other fields
#: describe (name, path, prose) and may change between versions without changing the data.
IDENTITY_FIELDS = ("sha256", "keys", "index", "format", "n_structures", "training_sha256",
                   "split", "fitter")
#: prose inside those fields (a split's notes)
_PROSE = ("notes", "description")


def record_identity(rec: Mapping[str, Any]) -> dict[str, Any]:
    """What a record was measured on: its dataset's :data:`IDENTITY_FIELDS` and the
    protocol's ``parameters`` where a record has them."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _PROSE}
        return value

    identity: dict[str, Any] = {"dataset": {k: strip(rec["dataset"][k])
                                            for k in IDENTITY_FIELDS if k in rec["dataset"]}}
    if rec.get("parameters"):
        identity["parameters"] = strip(rec["parameters"])
    return json.loads(json.dumps(identity, default=str))  # as it reads back from a file


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def identity_changes(baseline: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``field: old (baseline) -> new (now)`` for each identifying field that differs;
    empty when both are the same, or when one side knows nothing of its data (a record
    made by hand from a report, without the dataset it came from)."""
    old, new = _flatten(dict(baseline)), _flatten(dict(now))
    if not any(v is not None for v in old.values()) or not any(
            v is not None for v in new.values()):
        return []
    missing = object()
    return [f"{key}: {_show(old.get(key, missing))} (baseline) -> "
            f"{_show(new.get(key, missing))} (now)"
            for key in sorted(set(old) | set(new))
            if old.get(key, missing) != new.get(key, missing)]


def _show(value: Any) -> str:
    if not isinstance(value, (str, int, float, list, type(None))):
        return "(absent)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def identity_message(groups: Sequence[tuple[Mapping[str, Any], Sequence[str]]],
                     baseline_path: str, regenerated: bool) -> str:
    """Failure text for records measured on other data than their baseline entries."""
    lines = []
    for rec, changes in groups:
        lines.append(f"baseline {baseline_path} was measured on other data than this run "
                     f"for {_measured(rec)}: not compared")
        lines += [f"  {change}" for change in changes[:MAX_ROWS]]
        if len(changes) > MAX_ROWS:
            lines.append(f"  ... and {len(changes) - MAX_ROWS} more")
    if regenerated:
        lines.append(f"baseline {baseline_path} is rewritten with this run's values and data "
                     "at the end of this run; the next run compares against them")
    else:
        lines.append("if the data changed on purpose, accept the new data with "
                     "--mlpval-regen-baseline (rewrites the baseline with this run's values)")
    return "\n".join(lines)


# --- files -----------------------------------------------------------------------------

def entry_key(nodeid: str, potential: str, dataset: str, subset: str, kind: str) -> str:
    """``potential``: the subject's label (a candidate's name, ``recipe:NAME``)."""
    return "::".join((kind, potential, dataset, subset, nodeid))


def _who(rec: Mapping[str, Any]) -> str:
    subject = subject_of(rec)
    kind = "potential" if subject["kind"] == "candidate" else subject["kind"]
    return f"{kind} {subject['name']!r}"


def _measured(rec: Mapping[str, Any]) -> str:
    """``potential 'sw' on 'test', Elastic``: who a record judges, on what data."""
    where = "" if rec["subset"] == "all" else f", {rec['subset']}"
    return f"{_who(rec)} on {rec['dataset']['name']!r}{where}"


def _entry_subject(entry: Mapping[str, Any]) -> str:
    """An entry's subject label: its potential's name, else its subject's kind:name."""
    if entry.get("potential") is not None:
        return entry["potential"]
    return f"{entry['subject']['kind']}:{entry['subject']['name']}"


def is_baseline_file(path: str | os.PathLike[str]) -> bool:
    """``path`` is a JSON object with a pytest-mlpval baseline schema (any version, any
    values): a file --mlpval-save-baseline may replace."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and str(document.get("schema", "")).startswith(
        SCHEMA.rpartition("/")[0] + "/")


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a baseline; returns the document with ``entries`` as a dict
    keyed by :func:`entry_key`, each entry's ``non_finite`` metrics merged into its
    ``metrics`` as float NaN / inf. Raises :class:`BaselineError` naming the file, the
    entry and the metric at fault."""
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
            entry = _read_entry(entry)
        except _BadValue as exc:
            raise BaselineError(f"baseline {path}: {_describe_entry(i, entry)}: {exc}; a "
                                "baseline holds finite numbers (a metric that was NaN or "
                                "infinite is listed under 'non_finite'): fix the file, or "
                                "delete it and make it again (--mlpval-save-baseline)"
                                ) from None
        except ValueError as exc:
            raise BaselineError(f"baseline {path}: {_describe_entry(i, entry)} is "
                                f"malformed: {exc}") from None
        keyed[entry_key(entry["nodeid"], _entry_subject(entry), entry["dataset"],
                        entry["subset"], entry["kind"])] = entry
    return {**document, "entries": keyed}


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class _BadValue(MlpvalError, ValueError):
    """A metric value that is not a finite number."""


def _describe_entry(i: int, entry: Any) -> str:
    if not isinstance(entry, dict):
        return f"entry {i}"
    return (f"entry {i} ({entry.get('nodeid')}, potential {entry.get('potential')!r}, "
            f"dataset {entry.get('dataset')!r}, subset {entry.get('subset')!r})")


def _json(value: Any) -> str:
    """``value`` as it is written in the file (NaN, Infinity, null, true)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_entry(entry: Any) -> dict[str, Any]:
    """A validated entry (ValueError says what is wrong), non-finite values merged."""
    if not isinstance(entry, dict):
        raise ValueError(f"expected an object, got {_json(entry)}")
    subject = entry.get("subject")
    if entry.get("potential", "") is None and not (
            isinstance(subject, dict) and subject.get("kind") in ("dataset", "recipe")
            and isinstance(subject.get("name"), str)):
        raise ValueError("'potential' is null but 'subject' is not a dataset or recipe "
                         f"with a name: {_json(subject)}")
    for key in ("nodeid", "potential", "dataset", "subset"):
        if key == "potential" and entry.get(key, "") is None:
            continue
        if not isinstance(entry.get(key), str):
            raise ValueError(f"no {key!r}" if key not in entry else
                             f"{key!r} must be text, got {_json(entry[key])}")
    kind = entry.get("kind", "errors")
    if not isinstance(kind, str):
        raise ValueError(f"'kind' must be text, got {_json(kind)}")
    if "metrics" not in entry:
        raise ValueError("no 'metrics'")
    metrics = entry["metrics"]
    if not isinstance(metrics, dict):
        raise ValueError(f"'metrics' must map metric names to {{value, unit}}, got "
                         f"{_json(metrics)}")
    if not isinstance(entry.get("identity"), dict):
        raise ValueError("no 'identity' (what it was measured on)" if "identity" not in entry
                         else f"'identity' must be an object, got {_json(entry['identity'])}")
    non_finite = entry.get("non_finite", {})
    if not isinstance(non_finite, dict):
        raise ValueError(f"'non_finite' must map metric names to {{value, unit}}, got "
                         f"{_json(non_finite)}")
    read = {name: _read_metric(name, metric, finite=True) for name, metric in metrics.items()}
    for name, metric in non_finite.items():
        if name in read:
            raise ValueError(f"metric {name!r} is under both 'metrics' and 'non_finite'")
        read[name] = _read_metric(name, metric, finite=False)
    out = {**entry, "kind": kind, "metrics": read}
    out.pop("non_finite", None)
    return out


def _read_metric(name: str, metric: Any, finite: bool) -> dict[str, Any]:
    """``{value, unit}`` of a metric: a finite number, or (``finite=False``, under
    ``non_finite``) one of "nan", "inf", "-inf"."""
    where = f"metric {name!r}" if finite else f"non_finite metric {name!r}"
    if not isinstance(metric, dict):
        raise ValueError(f"{where}: expected {{value, unit}}, got {_json(metric)}")
    if "value" not in metric:
        raise ValueError(f"{where}: no 'value'")
    if not isinstance(metric.get("unit", ""), str):
        raise ValueError(f"{where}: unit {_json(metric['unit'])} is not text")
    value = metric["value"]
    if finite and not (_is_number(value) and math.isfinite(value)):
        raise _BadValue(f"{where}: value {_json(value)} is not a finite number")
    if not finite and (not isinstance(value, str) or value not in _NON_FINITE):
        raise _BadValue(f"{where}: value {_json(value)} is not one of "
                        + ", ".join(f'"{k}"' for k in _NON_FINITE))
    return {"value": float(value) if finite else _NON_FINITE[value],
            "unit": metric.get("unit", "")}


def baseline_entries(records: Iterable[tuple[str, Mapping[str, Any]]],
                     kinds: Sequence[str] = SAVED_KINDS) -> dict[str, dict[str, Any]]:
    """Baseline entries from (nodeid, record) pairs of a run."""
    entries = {}
    for nodeid, rec in records:
        kind = rec.get("kind", "errors")
        if kind not in kinds:
            continue
        subject, dataset = subject_of(rec), rec["dataset"]["name"]
        candidate = subject["kind"] == "candidate"
        entries[entry_key(nodeid, subject_label(subject), dataset, rec["subset"], kind)] = {
            "nodeid": nodeid, "potential": subject["name"] if candidate else None,
            **({} if candidate else {"subject": subject}),
            "dataset": dataset, "subset": rec["subset"], "kind": kind,
            "potential_sha256": subject["identity"].get("sha256") if candidate else None,
            "dataset_sha256": rec["dataset"].get("sha256"),
            "identity": record_identity(rec),
            "metrics": {name: {"value": math.nan if value is None else float(value),
                               "unit": rec["units"].get(name, "")}
                        for name, value in rec["metrics"].items()},
        }
    return entries


def _encode(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry as written: finite values under ``metrics``, NaN and inf under
    ``non_finite`` (strict JSON has no NaN, and a null would read as 'no value')."""
    metrics, non_finite = {}, {}
    for name, metric in entry["metrics"].items():
        value = metric["value"]
        if math.isfinite(value):
            metrics[name] = metric
        else:
            non_finite[name] = {**metric, "value": "nan" if math.isnan(value)
                                else ("inf" if value > 0 else "-inf")}
    out = {k: v for k, v in entry.items() if k not in ("metrics", "non_finite")}
    out["metrics"] = metrics
    if non_finite:
        out["non_finite"] = non_finite
    return out


def write_baseline(path: str | os.PathLike[str], entries: Mapping[str, Mapping[str, Any]],
                   meta: Mapping[str, Any]) -> Path:
    """Write atomically (temporary file + rename): never a half-written baseline.
    ``entries`` as :func:`baseline_entries` or :func:`load_baseline` give them."""
    document = {"schema": SCHEMA, **meta,
                "entries": [_encode(entries[k]) for k in sorted(entries)]}
    return write_json(path, document, indent=1)


#: rows of a regression table
MAX_ROWS = 25


def regression_message(groups: Sequence[tuple[Mapping[str, Any], Sequence[Comparison]]],
                       baseline_path: str, regenerated: bool) -> str:
    """Failure text: one table (baseline, now, change, tolerance) per record."""
    lines = []
    for rec, comparisons in groups:
        verb = "changed or are new" if regenerated else "regressed"
        lines.append(f"{len(comparisons)} metrics {verb} against baseline {baseline_path} "
                     f"for {_measured(rec)}")
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
