"""The verdict of a run at a glance: subjects (candidates, datasets, fitting recipes) as
rows, test groups as columns (errors, physics, structures, MD, properties, baseline),
each cell the tests' outcomes with the worst excess over a limit, and one PASS or FAIL
per subject (plain library, no pytest).

It is built from the outcome of every test (setup, call and teardown combined, expected
failures kept apart) and the records the tests carried, so it is the same under
pytest-xdist (the controller has them all) and can be rebuilt from code.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["GROUPS", "CORE_GROUPS", "OUTCOMES", "combine_outcome", "group_of",
           "build_verdict", "verdict_rows", "failure_lines", "threshold_excess"]

#: columns of the matrix, in order; ``data`` (leakage, applicability), ``cost`` and
#: ``other`` are shown only when a test falls into them
GROUPS = ("errors", "physics", "structures", "MD", "properties", "data", "cost", "other",
          "baseline")
CORE_GROUPS = ("errors", "physics", "structures", "MD", "properties", "baseline")
#: a test's outcome, worst first as a cell lists them, with the word a cell shows
OUTCOMES = {"failed": "FAIL", "error": "ERROR", "xpassed": "XPASS", "xfailed": "xfail",
            "passed": "ok", "skipped": "skip"}
SUBJECT_KINDS = ("candidate", "dataset", "recipe")

# protocol names and test ids to groups: first match wins
_PATTERNS = tuple((group, re.compile(pattern)) for group, pattern in (
    ("data", r"leakage|applicab|duplicat"),
    ("structures", r"(?<![a-z])rss(?![a-z])|random_structure|structure_search|crystal"
                   r"|structure"),
    ("MD", r"(?<![a-z])md(?![a-z])|compression|melt|quench|dynamics|stability"),
    ("properties", r"propert|lattice|(?<![a-z])eos(?![a-z])|elastic|phonon|vacanc|surface"
                   r"|polymorph|liquid|defect"),
    ("physics", r"physic|invarian|equivarian|symmetr|sum_to_zero|extensiv|finite_output"
                r"|gradient|derivative|smooth|cutoff|translation|rotation|permutation"),
    ("cost", r"(?<![a-z])cost|benchmark|timing"),
    ("errors", r"error|rmse|(?<![a-z])mae|force|energ|stress|(?<![a-z])cv(?![a-z])"
               r"|cross_valid|learning"),
))


def combine_outcome(previous: str | None, when: str, outcome: str,
                    wasxfail: bool = False) -> str:
    """A test's outcome after one more phase report: ``passed``, ``failed``, ``error``
    (setup or teardown failed), ``skipped``, ``xfailed`` (an expected failure) or
    ``xpassed`` (an expected failure that passed, not strict)."""
    if when == "setup":
        if outcome == "failed":
            return "error"
        if outcome == "skipped":
            return "xfailed" if wasxfail else "skipped"
        return "passed"
    if when == "call":
        if outcome == "failed":
            return "failed"
        if outcome == "skipped":
            return "xfailed" if wasxfail else "skipped"
        return "xpassed" if wasxfail else "passed"
    # teardown: an error after a pass is an error; an earlier verdict stays
    if outcome == "failed" and previous in (None, "passed", "xpassed"):
        return "error"
    return previous or ("error" if outcome == "failed" else outcome)


def group_of(records: Sequence[Mapping[str, Any]], nodeid: str = "") -> str:
    """The column of a test: from its records (a protocol's name, else physics checks,
    cost, errors), else from its module and function name."""
    kinds = {r.get("kind", "errors") for r in records}
    for rec in records:
        if rec.get("kind") == "protocol":
            name = str(rec.get("dataset", {}).get("name", "")).lower()
            found = _match(name)
            if found is not None:
                return found
    for kind, group in (("checks", "physics"), ("cost", "cost"), ("errors", "errors")):
        if kind in kinds:
            return group
    path, _, name = nodeid.partition("::")
    name = name.split("[")[0].lower()
    module = path.rsplit("/", 1)[-1].lower()
    return _match(name) or _match(module) or "other"


def _match(text: str) -> str | None:
    for group, pattern in _PATTERNS:
        if pattern.search(text):
            return group
    return None


def _subject_from_id(nodeid: str, candidates: Sequence[str]) -> str | None:
    """The configured candidate whose name is a dash-separated part of the test id's
    parameters (``test_forces[sw-ref]`` -> ``sw``)."""
    match = re.search(r"\[(.*)\]$", nodeid)
    if not match:
        return None
    params = "-" + match.group(1) + "-"
    for name in sorted(candidates, key=len, reverse=True):
        if f"-{name}-" in params:
            return name
    return None


def _subject(test: Mapping[str, Any], candidates: Sequence[str]) -> dict[str, Any] | None:
    """``{"kind", "name", "identity"}`` of a test: the ``mlpval_subject`` its report
    carried, else its records' ``subject`` or ``potential``, else the candidate in its id."""
    own = [r["subject"] for r in test.get("records", ())
           if isinstance(r.get("subject"), Mapping)]
    subject = test.get("subject") or next(iter(own), None)
    if subject and subject.get("identity") is None:  # the report's brief subject
        subject = next((s for s in own if (s.get("kind"), s.get("name"))
                        == (subject.get("kind"), subject.get("name"))), subject)
    if not subject:
        pot = next((r["potential"] for r in test.get("records", ())
                    if isinstance(r.get("potential"), Mapping)), None)
        if pot is not None:
            subject = {"kind": "candidate", "name": pot.get("name"),
                       "identity": pot.get("sha256")}
    if not subject:
        name = _subject_from_id(test["nodeid"], candidates)
        if name is not None:
            subject = {"kind": "candidate", "name": name}
    if not subject or subject.get("name") is None:
        return None
    return {"kind": subject.get("kind") or "candidate", "name": str(subject["name"]),
            "identity": subject.get("identity")}


def threshold_excess(t: Mapping[str, Any]) -> float:
    """How far a failed threshold is past its limit, relative to the limit (0.5: 50%
    over; inf for a NaN value, or a limit of 0 exceeded); NaN for one that passed or was
    not judged."""
    if t.get("passed") is not False or t.get("status") in ("ERROR", "skipped"):
        return math.nan
    value, limit = t.get("value"), t.get("limit")
    if value is None or limit is None or not math.isfinite(value):
        return math.inf
    if re.fullmatch(r"energy_offset(_[A-Z][a-z]?)?", str(t.get("metric"))):  # signed
        value = abs(value)
    over = limit - value if t.get("bound") == "min" else value - limit
    if limit == 0:
        return math.inf if over > 0 else 0.0
    return over / abs(limit)


def _excess_text(excess: float) -> str:
    """``+326%``; from 10 times the limit on, the factor: ``×300``."""
    if math.isinf(excess):
        return "+inf%"
    if excess >= 9.995:
        return f"×{1.0 + excess:.3g}"
    return f"+{100.0 * excess:.0f}%"


def _worst_threshold(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    worst = None
    for rec in records:
        for t in rec.get("thresholds", ()):
            excess = threshold_excess(t)
            if math.isnan(excess) or (worst is not None and excess <= worst["excess"]):
                continue
            worst = {"excess": excess, "metric": t["metric"],
                     "value": _plain(t.get("value")), "limit": _plain(t.get("limit")),
                     "unit": t.get("unit", ""),
                     "bound": t.get("bound", "max"), "where": _where(rec, t)}
    return worst


def _plain(value: Any) -> Any:
    """A number for strict JSON: NaN and inf as the strings ``NaN``, ``inf``, ``-inf``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _where(rec: Mapping[str, Any], t: Mapping[str, Any]) -> str:
    name = rec.get("dataset", {}).get("name", "")
    subset = rec.get("subset", "all")
    if rec.get("kind") == "checks":
        return ""
    if subset not in ("all", t.get("metric"), t.get("bound")):
        return f"{name} [{subset}]"
    return name


def _relative_change(c: Mapping[str, Any]) -> float:
    base, change = c.get("baseline"), c.get("change")
    if base is None or change is None or not math.isfinite(change):
        return math.inf
    base = abs(base)
    return abs(change) / base if base else math.inf


def _baseline_status(records: Sequence[Mapping[str, Any]]) -> tuple[str | None, Any]:
    """(``failed`` / ``passed`` / ``new`` / None, worst regression) of a test's records
    against the baseline: failed for a regressed metric or a record measured on other
    data, passed when compared without regression, new when no entry existed."""
    statuses = [r["baseline"] for r in records if "baseline" in r]
    if not statuses:
        return None, None
    worst = None
    for rec in records:
        for c in rec.get("comparison", ()):
            if c.get("status") != "regressed":
                continue
            rel = _relative_change(c)
            if worst is None or rel > worst["excess"]:
                worst = {"excess": rel, "metric": c["metric"],
                         "value": _plain(c.get("now")),
                         "baseline": _plain(c.get("baseline")), "unit": c.get("unit", ""),
                         "where": _where(rec, {"metric": c["metric"]})}
    if worst is not None or "other data" in statuses:
        return "failed", worst
    if "compared" in statuses:
        return "passed", None
    return "new", None


def build_verdict(tests: Sequence[Mapping[str, Any]], candidates: Sequence[str] = ()
                  ) -> dict[str, Any]:
    """The matrix as builtin types (the ``verdict`` key of the JSON document).

    ``tests``: ``{"nodeid", "outcome", "records", "subject", "regression"}`` per test
    (``regression``: it failed only for regressing against the baseline);
    ``candidates``: the configured potentials, in order (rows follow it). A test
    without a subject (no records, no ``mlpval_subject``, no candidate in its id) is
    not in the matrix."""
    subjects: dict[tuple[str, str], dict[str, Any]] = {}
    for test in tests:
        subject = _subject(test, candidates)
        if subject is None:
            continue
        key = (subject["kind"], subject["name"])
        row = subjects.setdefault(key, {**subject, "cells": {}, "tests": 0})
        row["tests"] += 1
        records = list(test.get("records", ()))
        outcome = test.get("outcome", "passed")
        worst = _worst_threshold(records) if outcome == "failed" else None
        base, regression = _baseline_status(records)
        if outcome == "failed" and test.get("regression") and worst is None:
            outcome = "passed"  # its limits held: the failure is in the baseline column
            base = "failed"
        if base == "failed" and outcome in ("xfailed", "skipped"):
            base = outcome  # a regression inside an expected failure fails nothing
        _count(row, group_of(records, test["nodeid"]), outcome, worst, test["nodeid"])
        if base is not None:
            _count(row, "baseline", {"new": "passed"}.get(base, base), regression,
                   test["nodeid"], new=base == "new")
    rank = {name: i for i, name in enumerate(candidates)}
    order = sorted(subjects, key=lambda k: (SUBJECT_KINDS.index(k[0])
                                            if k[0] in SUBJECT_KINDS else 3,
                                            rank.get(k[1], len(rank)), k[1]))
    rows = []
    for key in order:
        row = subjects[key]
        for cell in row["cells"].values():
            cell["status"] = next((OUTCOMES[o] for o in OUTCOMES if cell["counts"].get(o)),
                                  "-")
            cell["text"] = _cell_text(cell)
        counts: dict[str, int] = {}
        for group, cell in row["cells"].items():
            if group != "baseline":
                for outcome, n in cell["counts"].items():
                    counts[outcome] = counts.get(outcome, 0) + n
        failed = any(c["counts"].get("failed") or c["counts"].get("error")
                     for c in row["cells"].values())
        ran = any(c["counts"].get(o) for c in row["cells"].values()
                  for o in ("passed", "failed", "error", "xfailed", "xpassed"))
        row["verdict"] = "FAIL" if failed else "PASS" if ran else "SKIP"
        row["counts"] = counts
        rows.append(row)
    used = {g for row in rows for g in row["cells"]}
    groups = [g for g in GROUPS if g in CORE_GROUPS or g in used]
    return {"groups": groups, "subjects": rows,
            "verdict": "FAIL" if any(r["verdict"] == "FAIL" for r in rows)
            else "PASS" if rows else "none"}


def _count(row: dict[str, Any], group: str, outcome: str, worst: Any, nodeid: str,
           new: bool = False) -> None:
    cell = row["cells"].setdefault(group, {"counts": {}, "worst": None, "new": 0,
                                           "failed_tests": []})
    cell["counts"][outcome] = cell["counts"].get(outcome, 0) + 1
    cell["new"] += int(new)
    if outcome in ("failed", "error"):
        cell["failed_tests"].append(nodeid)
    if worst is not None and (cell["worst"] is None
                              or worst["excess"] > _stored_excess(cell["worst"])):
        cell["worst"] = {**worst, "test": nodeid,
                         "excess": None if math.isinf(worst["excess"]) else worst["excess"]}


def _stored_excess(worst: Mapping[str, Any]) -> float:
    """A cell's worst excess as a number again: an infinite one is stored as None (the
    JSON has no infinity)."""
    return math.inf if worst["excess"] is None else worst["excess"]


def _cell_text(cell: Mapping[str, Any]) -> str:
    parts = []
    for outcome, word in OUTCOMES.items():
        n = cell["counts"].get(outcome, 0)
        if outcome == "passed":
            n -= cell.get("new", 0)
        if n > 0:
            text = f"{n} {word}"
            if outcome == "failed" and cell["worst"] is not None:
                text += " " + _short(cell["worst"])
            parts.append(text)
    if cell.get("new"):
        parts.append(f"{cell['new']} new")
    return ", ".join(parts) or "-"


def _short(worst: Mapping[str, Any]) -> str:
    """The worst excess in a cell: ``+326%`` over a limit (or against the baseline);
    ``2 > 0`` past a limit of 0; ``NaN`` for a non-finite value."""
    if worst.get("excess") is not None:
        return _excess_text(worst["excess"])
    value = worst.get("value")
    if not isinstance(value, (int, float)):
        return str(value) if value is not None else "NaN"
    if "baseline" in worst:
        return f"{_num(worst['baseline'])}->{_num(value)}"
    op = "<" if worst.get("bound") == "min" else ">"
    return f"{_num(value)} {op} {_num(worst.get('limit'))}"


def _inf(value: Any) -> float:
    return math.inf if value is None else value


def verdict_rows(verdict: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the matrix as text: subject, its kind, one cell per group
    (``-``: no test of that group), the subject's verdict."""
    groups = list(verdict["groups"])
    rows = []
    for row in verdict["subjects"]:
        rows.append([row["name"], row["kind"]]
                    + [row["cells"][g]["text"] if g in row["cells"] else "-" for g in groups]
                    + [row["verdict"]])
    return ["subject", "kind", *groups, "verdict"], rows


def failure_lines(verdict: Mapping[str, Any]) -> list[str]:
    """For each failing subject, one line per failing group: the worst excess over a
    limit or the baseline and the test that found it (what got worse)."""
    lines = []
    for row in verdict["subjects"]:
        if row["verdict"] != "FAIL":
            continue
        for group in verdict["groups"]:
            cell = row["cells"].get(group)
            if cell is None or not (cell["counts"].get("failed")
                                    or cell["counts"].get("error")):
                continue
            worst = cell["worst"]
            if worst is None:
                tests = cell.get("failed_tests", [])
                what = (f"{len(tests)} test(s) failed or errored without a failed limit: "
                        + ", ".join(tests[:2]) + (", ..." if len(tests) > 2 else ""))
            else:
                what = f"{_describe(worst)} in {worst['test']}"
            lines.append(f"{row['name']} FAIL {group}: {what}")
    return lines


def _describe(worst: Mapping[str, Any]) -> str:
    value, unit, rel = worst.get("value"), worst.get("unit") or "", worst.get("excess")
    where = f" on {worst['where']}" if worst.get("where") else ""
    if "baseline" in worst:
        how = "worse than the baseline" if rel is None else \
            f"{_excess_text(rel)} against the baseline"
        text = f"{worst['metric']}{where} {_num(worst['baseline'])} -> {_num(value)} {unit}"
    else:
        op = ">=" if worst.get("bound") == "min" else "<="
        how = _excess_text(rel) if rel is not None else "not finite" if not isinstance(
            value, (int, float)) else "past a limit of 0"
        text = f"{worst['metric']}{where} {_num(value)} {unit} not {op} " \
               f"{_num(worst.get('limit'))}"
    return f"{' '.join(text.split())} ({how})"


def _num(value: Any) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


#: CSS class of a cell by its status (the report's stylesheet colours them)
CELL_CLASS = {"FAIL": "fail", "ERROR": "fail", "XPASS": "xfail", "xfail": "xfail",
              "ok": "ok", "skip": "skip", "-": "none", "PASS": "ok", "SKIP": "skip"}


def verdict_html(verdict: Mapping[str, Any]) -> str:
    """The matrix as an HTML fragment for the top of the report: a banner with the
    run's verdict, the table (cells coloured by status) and the failing groups' worst
    excesses."""
    import html

    esc = html.escape
    subjects = verdict["subjects"]
    if not subjects:
        return "<p>No test judged a candidate, dataset or recipe.</p>"
    failing = [r["name"] for r in subjects if r["verdict"] == "FAIL"]
    banner = (f"FAIL: {', '.join(failing)}" if failing else "PASS: every subject passed")
    cls = "fail" if failing else "ok"
    head = "".join(f"<th>{esc(h)}</th>" for h in ("subject", "kind", *verdict["groups"],
                                                  "verdict"))
    body = []
    for row in subjects:
        cells = [f'<td class="subject">{esc(row["name"])}</td>',
                 f"<td>{esc(row['kind'])}</td>"]
        for group in verdict["groups"]:
            cell = row["cells"].get(group)
            status = cell["status"] if cell else "-"
            title = ""
            if cell and cell.get("worst"):
                title = f' title="{esc(_describe(cell["worst"]))}"'
            cells.append(f'<td class="{CELL_CLASS.get(status, "none")}"{title}>'
                         f"{esc(cell['text'] if cell else '-')}</td>")
        cells.append(f'<td class="{CELL_CLASS[row["verdict"]]} verdict">'
                     f"{esc(row['verdict'])}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    failures = "".join(f"<li>{esc(line)}</li>" for line in failure_lines(verdict))
    return (f'<p class="banner {cls}">{esc(banner)}</p>'
            f'<table class="verdict"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
            + (f'<ul class="failures">{failures}</ul>' if failures else "")
            + "<p>Cells: tests per group, worst first: ok, FAIL with the worst excess over "
            "a limit (hover for the metric and test), xfail (expected failure), XPASS "
            "(expected failure that passed), ERROR (setup or teardown), skip. Baseline: "
            "tests compared with --mlpval-compare; FAIL there is worse than the "
            "baseline.</p>")
