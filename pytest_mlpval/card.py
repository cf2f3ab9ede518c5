"""The validation card: what the best-practice section of Morrow, Gardner and Deringer,
J. Chem. Phys. 158, 121501 (2023), Sec. VI, asks a publication to report, filled from a
run (plain library). It opens with the run's verdict; its checklist is ticked from what
the run did (cross-validation and comparisons with experiment included, naming what was
done), and items the run did not measure are listed as missing, not hidden."""

from __future__ import annotations

import html
import math
import re
from typing import Any

from pytest_mlpval.results import check_status, expected_status
from pytest_mlpval.subjects import subject_label, subject_of
from pytest_mlpval.verdict import failure_lines, verdict_rows


def _fmt(value: Any, scale: float = 1.0, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else f"{value}"
    return f"{scale * value:.{digits}g}"


def md(value: Any) -> str:
    """Text safe in a Markdown table cell: HTML escaped (no ``<script>`` gets through),
    newlines made spaces, and ``|`` (which would end the cell), backslashes, backticks,
    ``*``, ``[`` and ``]`` (links, emphasis, code) backslash-escaped."""
    text = html.escape(str(value), quote=True)
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    for char in "\\`*[]|":
        text = text.replace(char, "\\" + char)
    return text


def _code(value: Any) -> str:
    """A spec or hash as a code span when that is safe (no markup, backtick, ``|`` or
    line break in it), else escaped text (:func:`md`)."""
    text = str(value)
    if re.search(r"[<>&`|\\\r\n]", text):
        return md(text)
    return f"`{text}`"


def validation_card(results, document: dict[str, Any]) -> str:
    """Markdown text of the card for the records of ``results``."""
    potentials, datasets = results.identities()
    datasets = {k: v for k, v in datasets.items() if not _is_cv(k)}
    lines = ["# Validation card", "",
             f"Made by pytest-mlpval {md(document.get('version', '?'))} on "
             f"{md(document.get('datetime', '?'))}.", ""]
    lines += _verdict(results)
    lines += ["## Potentials", "", "| name | loader | spec | sha256 |", "| --- | --- | --- | --- |"]
    for name, info in potentials.items():
        lines.append(f"| {md(name)} | {md(info.get('loader'))} | {_code(info.get('spec'))} | "
                     f"{_code(info.get('sha256') or 'none (code-defined)')} |")
    lines += ["", "## Error definitions", "",
              "- Errors are predicted minus reference (the dataset's labels).",
              "- RMSE and MAE over all values; max is the largest |error|; median and 95th "
              "percentile of |error| are given beside them, never alone.",
              "- Energies: per atom (per-cell error / N). 'Offset removed': minus the mean "
              "signed error of the whole dataset (different energy zeros); the offset is "
              "reported too.",
              "- Forces: Cartesian components (3 per atom), in eV/Å.",
              "- Stresses: 6 Voigt components, in GPa.", ""]
    lines += ["## Test sets", "", "| dataset | structures | atoms | config_types | labels | "
              "file sha256 |", "| --- | --- | --- | --- | --- | --- |"]
    for name, info in datasets.items():
        lines.append(f"| {md(name)} | {md(info.get('n_structures'))} | "
                     f"{md(info.get('n_atoms'))} | "
                     f"{', '.join(md(c) for c in info.get('config_types', []))} | "
                     f"{', '.join(md(c) for c in info.get('labels', []))} | "
                     f"{_code(str(info.get('sha256'))[:16])} |")
    lines += ["", "## Errors", "",
              "| potential | dataset | subset | n | E RMSE (meV/atom) | E MAE (meV/atom) | "
              "E RMSE offset removed (meV/atom) | F RMSE (eV/Å) | F MAE (eV/Å) | "
              "S RMSE (GPa) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    seen = results.error_records()
    for key, rec in seen.items():
        m = rec["metrics"]
        lines.append(f"| {md(key[0])} | {md(key[1])} | {md(key[2])} | "
                     f"{md(rec['n_structures'])} | "
                     f"{_fmt(m.get('energy_rmse'), 1000)} | {_fmt(m.get('energy_mae'), 1000)} | "
                     f"{_fmt(m.get('energy_offset_removed_rmse'), 1000)} | "
                     f"{_fmt(m.get('force_rmse'))} | {_fmt(m.get('force_mae'))} | "
                     f"{_fmt(m.get('stress_rmse'))} |")
    headers, checks = results.check_rows()
    headers_cost, cost = results.cost_rows()
    cv = sorted({f"{subject_label(rec)} {key[1]}" for key, rec in seen.items()
                 if _is_cv(key[1]) and key[2] == "all"})
    candidates = {key[0] for key, rec in seen.items()
                  if subject_of(rec)["kind"] == "candidate" and not _is_cv(key[1])}
    experiment = _experiment_comparisons(results)
    checklist = [
        ("Errors with their definitions (RMSE and MAE, components)", bool(seen)),
        ("Errors per configuration type", any(k[2] != "all" for k in seen)),
        ("Internal k-fold cross-validation errors", ", ".join(cv)),
        ("Errors on held-out test data (a dataset not named as training data; whether "
         "it is external, i.e. from another distribution, is for the author to state)",
         any(not _looks_like_training(d) for d in datasets)),
        ("Comparison of several potentials on the same data", len(candidates) > 1),
        ("Physical invariances and consistency of forces and stress", bool(checks)),
        ("Cost (time per atom per force call)", bool(cost)),
        ("Comparison with experiment (lattice, elastic, phonons, liquid/amorphous "
         "structure)", ", ".join(sorted({c["property"] for c in experiment}))),
    ]
    lines += ["", "## Checklist (Morrow, Gardner, Deringer 2023, Sec. VI)", ""]
    lines += [f"- [{'x' if done else ' '}] {what}"
              + (f": {md(done)}" if isinstance(done, str) and done else "")
              for what, done in checklist]
    if experiment:
        lines += ["", "## Comparison with experiment", "",
                  "| subject | property | candidate | experiment | unit | source | status |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {md(c['subject'])} | {md(c['property'])} | {_fmt(c['candidate'])} | "
                  f"{_fmt(c['reference'])} | {md(c['unit'])} | {md(c['source'])} | "
                  f"{md(c['status'])} |" for c in experiment]
    if checks:
        lines += ["", "## Physics checks", "", "| " + " | ".join(headers) + " |",
                  "|" + " --- |" * len(headers)]
        lines += ["| " + " | ".join(_fmt(v) if isinstance(v, float) else md(v)
                                    for v in row) + " |" for row in checks]
    if cost:
        lines += ["", "## Cost", "", "| " + " | ".join(headers_cost) + " |",
                  "|" + " --- |" * len(headers_cost)]
        lines += ["| " + " | ".join(_fmt(v) if isinstance(v, float) else md(v)
                                    for v in row) + " |" for row in cost]
    lines.append("")
    return "\n".join(lines)


def _verdict(results) -> list[str]:
    """The run's verdict matrix as a Markdown table, with the failing groups' worst
    excesses."""
    verdict = results.verdict()
    if not verdict["subjects"]:
        return []
    headers, rows = verdict_rows(verdict)
    lines = ["## Verdict", "", "| " + " | ".join(headers) + " |",
             "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(md(v) for v in row) + " |" for row in rows]
    failures = failure_lines(verdict)
    if failures:
        lines += [""] + [f"- {md(line)}" for line in failures]
    return lines + [""]


def _experiment_comparisons(results) -> list[dict[str, Any]]:
    """Property comparisons against experiment the run recorded (one per subject and
    property; a failure in an expected failure is ``xfail``)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for test in results.tests:
        outcome = results.outcome_of(test)
        for rec in test["records"]:
            for t in rec.get("thresholds", ()):
                if not str(t.get("against", "")).lower().startswith("experiment"):
                    continue
                out.setdefault((subject_label(rec), t.get("property", t["metric"])), {
                    "subject": subject_label(rec), "property": t.get("property", t["metric"]),
                    "candidate": t.get("candidate"), "reference": t.get("reference"),
                    "unit": t.get("unit", ""), "source": t.get("source", ""),
                    "status": check_status(expected_status(t, outcome))})
    return list(out.values())


def _is_cv(dataset: str) -> bool:
    """The pooled errors of a cross-validation (dataset ``cv-<split>-k<k>``)."""
    return dataset.startswith("cv-")


def _looks_like_training(name: str) -> bool:
    return "train" in name.lower()
