"""The results of a run: metric records per test, and what is made of them (summary
tables, the JSON document, plots). Plain library, no pytest: records are builtin-typed
dicts, as they travel on pytest reports, so a notebook can rebuild all of this from a
saved JSON file.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pytest_mlpval
from pytest_mlpval import plots
from pytest_mlpval.fileio import nonfinite_name, strict_json
from pytest_mlpval.subjects import subject_label, subject_of
from pytest_mlpval.verdict import build_verdict, combine_outcome

SCHEMA = "pytest-mlpval/1"


class RunResults:
    """Records of the tests of a run: ``tests`` is a list of ``{"nodeid", "outcome",
    "when", "records"}``; each record is a dict with ``kind`` (``errors``, ``checks``,
    ``cost``), ``potential``, ``dataset``, ``subset``, ``metrics``, ``units``,
    ``thresholds`` and, after a baseline comparison, ``baseline`` and ``comparison``."""

    def __init__(self, tests: list[dict[str, Any]] | None = None) -> None:
        self.tests: list[dict[str, Any]] = list(tests or [])
        #: nodeid -> {"nodeid", "outcome", "subject", "regression"} of every test whose
        #: phases were reported (:meth:`add_phase`), records or not: the verdict's input
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.candidates: list[str] = []  # the configured potentials, in order

    def add(self, nodeid: str, outcome: str, when: str, records: list[dict[str, Any]]) -> None:
        self.tests.append({"nodeid": nodeid, "outcome": outcome, "when": when,
                           "records": records})

    def add_phase(self, nodeid: str, when: str, outcome: str, wasxfail: bool = False,
                  subject: dict[str, Any] | None = None, regression: bool = False) -> str:
        """One phase report (setup, call, teardown) of a test; returns the test's
        outcome so far (``xfailed``/``xpassed`` for expected failures, ``error`` for a
        failed setup or teardown; see :func:`~pytest_mlpval.verdict.combine_outcome`).
        ``regression``: the call failed with a baseline regression only."""
        entry = self.outcomes.setdefault(nodeid, {"nodeid": nodeid, "outcome": None})
        entry["outcome"] = combine_outcome(entry["outcome"], when, outcome, wasxfail)
        if subject:
            entry["subject"] = subject
        if regression:
            entry["regression"] = True
        return entry["outcome"]

    def __bool__(self) -> bool:
        return bool(self.tests)

    def verdict(self) -> dict[str, Any]:
        """The verdict matrix (:func:`~pytest_mlpval.verdict.build_verdict`) of every
        test whose phases were reported, and of every test with records."""
        by_id = {t["nodeid"]: t for t in self.tests}
        tests = [{**entry, "records": by_id[nodeid]["records"] if nodeid in by_id else []}
                 for nodeid, entry in self.outcomes.items() if entry["outcome"]]
        tests += [t for t in self.tests if t["nodeid"] not in self.outcomes]
        seen = [name for name in self.identities()[0] if name not in self.candidates]
        return build_verdict(tests, [*self.candidates, *seen])

    def outcome_of(self, test: dict[str, Any]) -> str:
        """A test's outcome, its setup and teardown included where they were reported."""
        entry = self.outcomes.get(test["nodeid"])
        return (entry or {}).get("outcome") or test["outcome"]

    def order_by_potential(self, names: list[str]) -> None:
        """Stable-sort the tests by the rank of their potentials in ``names`` (the
        configured order), so that pages and documents do not depend on the order in
        which xdist workers finished."""
        self.candidates = list(names)
        rank = {name: i for i, name in enumerate(names)}

        def key(test: dict[str, Any]) -> int:
            ranks = [rank.get(r["potential"]["name"], len(rank)) for r in test["records"]
                     if isinstance(r.get("potential"), dict)]
            return min(ranks, default=len(rank))

        self.tests.sort(key=key)

    def pairs(self):
        """(nodeid, record) for every record of the run."""
        return [(test["nodeid"], rec) for test in self.tests for rec in test["records"]]

    def error_records(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The first error record of each (potential, dataset, subset), in run order
        (several tests may record the same errors)."""
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for _, rec in self.pairs():
            if rec.get("kind", "errors") == "errors":
                out.setdefault((subject_label(rec), rec["dataset"]["name"],
                                rec["subset"]), rec)
        return out

    def identities(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Potentials and datasets of the run, by name (from the error records)."""
        potentials: dict[str, Any] = {}
        datasets: dict[str, Any] = {}
        for _, rec in self.pairs():
            if isinstance(rec.get("potential"), dict):  # a dataset's, a recipe's: None
                potentials.setdefault(rec["potential"]["name"], rec["potential"])
            if rec.get("kind", "errors") == "errors":
                datasets.setdefault(rec["dataset"]["name"], rec["dataset"])
        return potentials, datasets

    def baseline_rows(self) -> tuple[dict[str, int], list[list[Any]]]:
        """Counts of compared metrics by status, and rows for the improved / new /
        regressed ones (potential, dataset, subset, metric, baseline, now, status)."""
        counts = {"regressed": 0, "improved": 0, "new": 0, "compared records": 0,
                  "records without baseline entry": 0}
        rows = []
        for nodeid, rec in self.pairs():
            if "baseline" not in rec:
                continue
            what = {"compared": "compared records", "other data": "records on other data "
                    "(not compared)"}.get(rec["baseline"], "records without baseline entry")
            counts[what] = counts.get(what, 0) + 1
            for c in rec.get("comparison", []):
                counts[c["status"]] = counts.get(c["status"], 0) + 1
                if c["status"] != "new":
                    rows.append([subject_label(rec), rec["dataset"]["name"],
                                 rec["subset"], c["metric"], _nan(c["baseline"]),
                                 _nan(c["now"]), c["unit"], c["status"]])
        return counts, rows

    def summary_rows(self, details: bool = False) -> tuple[list[str], list[list[Any]]]:
        combos: dict[tuple[str, str, str], dict[str, Any]] = {}
        for test in self.tests:
            expected = self.outcome_of(test) == "xfailed"
            for rec in test["records"]:
                if rec.get("kind", "errors") != "errors":
                    continue
                key = (subject_label(rec), rec["dataset"]["name"], rec["subset"])
                entry = combos.setdefault(key, {"metrics": rec["metrics"], "n": rec["n_structures"],
                                                "passed": 0, "failed": 0, "xfail": 0,
                                                "unmeasured": rec.get("not_measured", ())})
                for t in rec["thresholds"]:
                    entry["passed" if t["passed"] else "xfail" if expected else "failed"] += 1
        headers = ["potential", "dataset", "subset", "n", "E RMSE", "E-offset RMSE",
                   "E MAE", "F RMSE", "F MAE", "F max", "S RMSE", "limits"]
        rows = []
        for (pot, data, subset), entry in sorted(combos.items(),
                                                 key=lambda kv: (kv[0][1], kv[0][2] != "all",
                                                                 kv[0][2], kv[0][0])):
            if subset != "all" and not details:
                continue
            m = entry["metrics"]

            def raw(name):
                return shown(m.get(name), name in entry["unmeasured"])

            def meV(name):
                value = raw(name)
                return 1000.0 * value if isinstance(value, (int, float)) else value

            limits = "-"
            if entry["passed"] or entry["failed"] or entry["xfail"]:
                limits = f"{entry['passed']} ok" + (f", {entry['failed']} FAIL"
                                                    if entry["failed"] else "") + (
                    f", {entry['xfail']} xfail" if entry["xfail"] else "")
            rows.append([pot, data, subset, entry["n"], meV("energy_rmse"),
                         meV("energy_offset_removed_rmse"), meV("energy_mae"),
                         raw("force_rmse"), raw("force_mae"), raw("force_max"),
                         raw("stress_rmse"), limits, _element_offsets(m)])
        if not any(row[-1] for row in rows):  # one element: no per-element column
            return headers, [row[:-1] for row in rows]
        return headers[:-1] + ["E offsets/El", "limits"], [
            row[:-2] + [row[-1] or "-", row[-2]] for row in rows]

    def records_of(self, kind: str) -> list[dict[str, Any]]:
        return [rec for test in self.tests for rec in test["records"]
                if rec.get("kind", "errors") == kind]

    def _records_with_outcome(self, kind: str):
        """(record, the test's outcome) of every record of ``kind``."""
        return [(rec, self.outcome_of(test)) for test in self.tests
                for rec in test["records"] if rec.get("kind", "errors") == kind]

    def check_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Worst value of each physics check per potential. A check that could not be
        evaluated (the calculator raised: ``ERROR``) or did not apply (``skipped``) has
        its row too; a recorded NaN or inf shows as such, not as n/a; a failure in an
        expected failure (xfail) shows as ``xfail``."""
        worst: dict[tuple[str, str], dict[str, Any]] = {}
        for rec, outcome in self._records_with_outcome("checks"):
            for t in rec["thresholds"]:
                t = expected_status(t, outcome)
                key = (subject_label(rec), t["metric"])
                old = worst.get(key)
                n = rec["n_structures"] + (old or {}).get("n", 0)
                if old is None or worse_check(t, old):
                    worst[key] = {**t, "n": n}
                else:
                    old["n"] = n  # every record's structures count, not only the worst's
        rows = [[pot, check, t["n"], shown(t["value"]), t["limit"], t["unit"],
                 check_status(t)] for (pot, check), t in sorted(worst.items())]
        return ["potential", "check", "structures", "worst", "tolerance", "unit", "status"], rows

    def protocol_rows(self, limit: int | None = None, bounded_only: bool = False
                      ) -> tuple[list[str], list[list[Any]]]:
        """Metrics of protocol results (RSS, MD, properties), each metric once per
        subject, protocol and group however many tests recorded it: its value, every
        bound any test put on it and one status (``FAIL`` if any bound failed, ``xfail``
        if only in expected failures). ``bounded_only``: only bounded metrics, and up to
        ``limit`` metrics of a result without any bound (``limit`` None: all)."""
        merged: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
        for rec, outcome in self._records_with_outcome("protocol"):
            key = (subject_label(rec), rec["dataset"]["name"], rec["subset"])
            metrics = merged.setdefault(key, {})
            unmeasured = set(rec.get("not_measured", ()))
            for name, value in rec["metrics"].items():
                metrics.setdefault(name, {"value": shown(value, name in unmeasured),
                                          "unit": rec["units"].get(name) or "-",
                                          "bounds": [], "statuses": set()})
            for t in rec["thresholds"]:
                entry = metrics.setdefault(t["metric"], {
                    "value": shown(t["value"]), "unit": t.get("unit") or "-",
                    "bounds": [], "statuses": set()})
                bound = f"{'>=' if t.get('bound') == 'min' else '<='} {t['limit']:.4g}"
                status = check_status(expected_status(t, outcome))
                if (bound, status) not in entry["bounds"]:
                    entry["bounds"].append((bound, status))
                entry["statuses"].add(status)
        rows = []
        for (pot, protocol, group), metrics in merged.items():
            bounded = [m for m, e in metrics.items() if e["bounds"]]
            others = [m for m in metrics if m not in bounded]
            if bounded_only:
                others = [] if bounded else others[:limit]
            elif limit is not None:
                others = others[:max(0, limit - len(bounded))]
            for metric in bounded + others:
                e = metrics[metric]
                status = next((s for s in ("ERROR", "FAIL", "xfail", "ok", "skipped")
                               if s in e["statuses"]), "-")
                # each bound once; with its own status where the statuses differ
                bounds = list(dict.fromkeys(
                    b if len(e["statuses"]) == 1 else f"{b} {s}" for b, s in e["bounds"]))
                rows.append([pot, protocol, group, metric, e["value"], e["unit"],
                             "; ".join(bounds) or "-", status])
        return ["potential", "protocol", "group", "metric", "value", "unit", "bound",
                "status"], rows

    def protocol_metric_count(self) -> int:
        """Distinct metrics of protocol results (per subject, protocol and group)."""
        return len({(subject_label(rec), rec["dataset"]["name"], rec["subset"], name)
                    for rec in self.records_of("protocol") for name in rec["metrics"]})

    def cost_rows(self) -> tuple[list[str], list[list[Any]]]:
        by_pot: dict[str, list[tuple[int, float]]] = {}
        for rec in self.records_of("cost"):
            m = rec["metrics"]
            by_pot.setdefault(rec["potential"]["name"], []).append(
                (int(m["n_atoms"]), float(m["time_per_call_s"])))
        rows = []
        for pot, points in sorted(by_pot.items()):
            points.sort()
            exponent = scaling_exponent([n for n, _ in points], [t for _, t in points])
            for n, t in points:
                rows.append([pot, n, t, 1e6 * t / n, exponent])
        return ["potential", "atoms", "s/call", "µs/atom/call", "scaling exponent"], rows

    def write_plots(self, out: Path, cost_dataset: str | None = None) -> list[Path]:
        """Cost scaling and accuracy-cost plots (matplotlib is imported only to draw them)."""
        out = Path(out)
        written = []
        _, cost = self.cost_rows()
        if cost:
            written.append(plots.cost_scaling(cost, out / "cost_scaling.png"))
            accuracy = self.accuracy_cost_points(cost, cost_dataset)
            if accuracy:
                written.append(plots.accuracy_cost(accuracy, out / "accuracy_cost.png"))
        return written

    def accuracy_cost_points(self, cost_rows, wanted: str | None = None
                             ) -> list[tuple[str, float, float, str]]:
        """(potential, µs/atom/call at the largest size, force RMSE, dataset) per candidate
        with a cost and its own errors (:func:`accuracy_cost_points` of this module:
        never a recipe's cross-validation errors); the dataset is --mlpval-cost-dataset
        or the first that every plotted candidate has force errors on."""
        return accuracy_cost_points(self.records_of("errors"), cost_rows, wanted)

    # --- JSON ----------------------------------------------------------------------------

    def json_document(self) -> dict[str, Any]:
        """The run as strict JSON (no NaN or Infinity tokens): a non-finite metric or
        threshold value is written as ``"value": null`` with ``"finite": false`` and
        ``"non_finite": "nan"`` (or ``"inf"``, ``"-inf"``), and listed in the document's
        ``non_finite`` list (nodeid, kind, potential, dataset, subset, metric, value,
        not_measured: true for a value that does not apply, not a fault). Its
        ``verdict`` is the verdict matrix (:meth:`verdict`); a test's ``outcome`` is
        ``passed``, ``failed``, ``error``, ``skipped``, ``xfailed`` or ``xpassed``."""
        tests, nonfinite = [], []
        for test in self.tests:
            entry = {"nodeid": test["nodeid"], "outcome": self.outcome_of(test),
                     "records": []}
            for rec in test["records"]:
                where = {"nodeid": test["nodeid"], "kind": rec.get("kind", "errors"),
                         "potential": rec["potential"]["name"]
                         if isinstance(rec.get("potential"), dict) else None,
                         "dataset": rec["dataset"]["name"], "subset": rec["subset"]}
                unmeasured = set(rec.get("not_measured", ()))
                for name, value in rec["metrics"].items():
                    if not _finite(value):
                        nonfinite.append({**where, "metric": name, "value": _name(value),
                                          "not_measured": _is_nan(value)
                                          and name in unmeasured})
                entry["records"].append({
                    "kind": where["kind"],
                    "potential": where["potential"],
                    "subject": subject_of(rec),
                    "dataset": where["dataset"],
                    "subset": rec["subset"],
                    "n_structures": rec["n_structures"],
                    "n_atoms": rec["n_atoms"],
                    "metrics": {name: _json_value({"unit": rec["units"].get(name, "")}, value)
                                for name, value in rec["metrics"].items()},
                    "thresholds": [_json_value(dict(t), t["value"])
                                   for t in rec["thresholds"]],
                    **({"not_measured": sorted(unmeasured)} if unmeasured else {}),
                    **({"baseline": rec["baseline"], "comparison": rec["comparison"]}
                       if "baseline" in rec else {}),
                })
            tests.append(entry)
        return {"schema": SCHEMA, **self.run_info(), "verdict": self.verdict(),
                "tests": tests, "non_finite": nonfinite}

    def run_info(self) -> dict[str, Any]:
        """Who ran what: package version, UTC time, machine, potentials and datasets
        (the header of the JSON document and of a baseline)."""
        potentials, datasets = self.identities()
        return {
            "version": pytest_mlpval.__version__,
            "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "machine_info": machine_info(),
            "potentials": potentials,
            "datasets": datasets,
        }


# --- cost: the scaling exponent and the accuracy-cost points ------------------------

def scaling_exponent(n_atoms: Sequence[int], seconds: Sequence[float]) -> float:
    """Slope of log(time) against log(N): 1 for linear scaling. NaN with < 2 sizes."""
    import numpy as np  # not at the top: results loads with the plugin

    n = np.asarray(n_atoms, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if len(np.unique(n)) < 2:
        return float("nan")
    return float(np.polyfit(np.log(n), np.log(t), 1)[0])


def accuracy_cost_points(records: Iterable[Mapping[str, Any]], cost_rows: Sequence[Sequence],
                         wanted: str | None = None) -> list[tuple[str, float, float, str]]:
    """(potential, µs/atom/call at the largest size, force RMSE in eV/Å, dataset) for each
    candidate with a cost and its *own* test-set errors: error records (subset ``all``)
    whose subject is that candidate, never a recipe's cross-validation errors or anything
    recorded under another subject (:mod:`pytest_mlpval.subjects`).

    ``records``: the run's records; ``cost_rows``: (potential, atoms, s/call, µs/atom,
    exponent). The dataset is ``wanted`` (--mlpval-cost-dataset), else the first dataset
    (in run order) on which every plotted candidate has force errors, so that the points
    compare like with like; else each candidate's first dataset with force errors."""
    largest: dict[str, tuple[int, float]] = {}
    for pot, n, _, per_atom, _ in cost_rows:
        if pot not in largest or n > largest[pot][0]:
            largest[pot] = (n, per_atom)
    own: dict[str, dict[str, float]] = {pot: {} for pot in largest}
    order: list[str] = []
    for rec in records:
        subject = subject_of(rec)
        force = rec["metrics"].get("force_rmse")
        if (rec.get("kind", "errors") != "errors" or rec["subset"] != "all"
                or subject["kind"] != "candidate" or subject["name"] not in own
                or force is None):
            continue
        dataset = rec["dataset"]["name"]
        own[subject["name"]].setdefault(dataset, force)
        if dataset not in order:
            order.append(dataset)
    measured = [pot for pot in largest if own[pot]]
    common = [d for d in order if all(d in own[pot] for pot in measured)]
    points = []
    for pot in sorted(measured):
        if wanted is not None:
            dataset = wanted if wanted in own[pot] else None
        else:
            dataset = common[0] if common else next(iter(own[pot]))
        if dataset is not None:
            points.append((pot, largest[pot][1], own[pot][dataset], dataset))
    return points


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or inf: they are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def strict_document(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` made strict JSON: any non-finite number left in it (e.g. added by a
    ``pytest_mlpval_update_json`` hook) becomes null and is listed in its ``non_finite``
    list by JSON-pointer ``path``."""
    clean, found = strict_json(document)
    if found:
        clean.setdefault("non_finite", []).extend(found)
    return clean


def nonfinite_faults(rec: dict[str, Any]) -> list[tuple[str, float]]:
    """(metric, value) of a record's non-finite metrics that are faults: every inf, and
    NaN unless the record lists the metric as ``not_measured`` (a quantity that does not
    apply, e.g. force angles where no reference force reaches the angle threshold)."""
    unmeasured = set(rec.get("not_measured", ()))
    return [(name, value) for name, value in rec["metrics"].items()
            if not _finite(value) and not (_is_nan(value) and name in unmeasured)]


def _element_offsets(metrics: Mapping[str, Any]) -> str:
    """``"C -370, Si +810"``: the fitted per-element energy offsets (``energy_offset_<El>``,
    eV/atom) in meV/atom; empty for a one-element dataset."""
    prefix = "energy_offset_"
    return ", ".join(f"{name[len(prefix):]} {1000.0 * value:+.4g}"
                     for name, value in sorted(metrics.items())
                     if name.startswith(prefix) and name[len(prefix):][:1].isupper()
                     and isinstance(value, (int, float)))


def shown(value: Any, not_measured: bool = False) -> Any:
    """A value for a table: NaN (n/a) when missing or not measured, the strings ``NaN``,
    ``inf`` or ``-inf`` for a non-finite value that was recorded (a fault to see, not a
    gap), the value otherwise."""
    if value is None or (not_measured and _is_nan(value)):
        return math.nan
    if not _finite(value):
        return {"nan": "NaN"}.get(_name(value), _name(value))
    return value


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except TypeError:  # None, strings: not a number, nothing to flag
        return True


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _name(value: float) -> str:
    return nonfinite_name(float(value))


def _json_value(entry: dict[str, Any], value: Any) -> dict[str, Any]:
    """``entry`` with ``"value": value``, or for a non-finite value ``"value": null``,
    ``"finite": false`` and ``"non_finite": "nan"`` (``"inf"``, ``"-inf"``)."""
    out = {"value": value if _finite(value) else None,
           **{k: v for k, v in entry.items() if k != "value"}}
    if not _finite(value):
        out.update(finite=False, non_finite=_name(value))
    return out


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("pytest", "ase", "numpy", "dscribe", "matscipy", "quippy-ase"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"node": platform.node(), "machine": platform.machine(),
            "python": sys.version.split()[0], "system": platform.system(),
            "cpu_count": os.cpu_count(), "packages": packages}


def _nan(value: Any) -> float:
    return math.nan if value is None else value


#: statuses of a check threshold, best first (``skipped``: the check did not apply;
#: ``xfail``: failed in a test expected to fail)
CHECK_STATUSES = ("skipped", "ok", "xfail", "FAIL", "ERROR")


def expected_status(t: dict[str, Any], outcome: str) -> dict[str, Any]:
    """A threshold of a test with ``outcome``: a failure in an expected failure
    (``xfailed``) gets status ``xfail``, not a bare FAIL in a green run."""
    if outcome == "xfailed" and check_status(t) in ("FAIL", "ERROR"):
        return {**t, "status": "xfail"}
    return t


def check_status(t: dict[str, Any]) -> str:
    """``ok``, ``FAIL``, ``ERROR`` (not evaluated: the calculator raised) or ``skipped``."""
    return t.get("status") or ("ok" if t["passed"] else "FAIL")


def worse_check(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """``new`` (a check threshold) is worse than ``old``: a worse status (ERROR, FAIL,
    ok, skipped), else a larger value (NaN or None, from JSON, worst of all)."""
    rank_new = CHECK_STATUSES.index(check_status(new))
    rank_old = CHECK_STATUSES.index(check_status(old))
    if rank_new != rank_old:
        return rank_new > rank_old
    value, before = _nan(new["value"]), _nan(old["value"])
    if math.isnan(value):
        return not math.isnan(before)
    return not math.isnan(before) and value > before
