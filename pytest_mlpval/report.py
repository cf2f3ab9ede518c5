"""The validation report: a self-contained HTML page (plots embedded as PNG), the JSON
document, and a Markdown "validation card" (plain library, no pytest).

It is built from a :class:`~pytest_mlpval.results.RunResults` (the records of a run; under
pytest-xdist the controller has them all), so it can also be rebuilt from code.
"""

from __future__ import annotations

import base64
import html
import math
from importlib import import_module
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pytest_mlpval import fileio, plots
from pytest_mlpval.card import validation_card
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.results import check_status, expected_status
from pytest_mlpval.subjects import LINK_HEADERS, side_by_side_rows, subject_label
from pytest_mlpval.verdict import verdict_html

__all__ = ["SECTIONS", "ReportError", "report_arrays", "write_report",
           "figure_reference", "figure_function"]

#: id and title of every section of the page, in order (the per-potential sections are
#: ``potential-<name>``)
SECTIONS = (
    ("verdict", "Verdict"),
    ("overview", "Overview"),
    ("comparison", "Side-by-side comparison"),
    ("potentials", "Per potential"),
    ("checks", "Physics checks"),
    ("protocols", "Protocols (structure search, MD, properties)"),
    ("cost", "Cost"),
    ("baseline", "Baseline comparison"),
    ("tests", "Tests and thresholds"),
    ("card", "Validation card"),
)
#: force components kept for parity and violin plots (seeded subsample)
MAX_COMPONENTS = 20000


def report_arrays(reference: Any, predictions: Any, max_components: int = MAX_COMPONENTS,
                  seed: int = 0) -> dict[str, Any]:
    """Builtin-typed values for the plots of one potential on one dataset: per structure
    (atoms, config_type, reference and predicted energy per atom) and a seeded subsample
    of at most ``max_components`` force components (reference, predicted, config_type)."""
    out: dict[str, Any] = {"n_atoms": [int(n) for n in reference.n_atoms],
                           "config_types": list(reference.config_types)}
    if reference.energy is not None and predictions.energy is not None:
        n = np.asarray(reference.n_atoms, dtype=float)
        out["energy_ref"] = (np.asarray(reference.energy) / n).tolist()
        out["energy_pred"] = (np.asarray(predictions.energy) / n).tolist()
    if reference.forces is not None and predictions.forces is not None:
        ref = np.concatenate([np.ravel(f) for f in reference.forces])
        pred = np.concatenate([np.ravel(f) for f in predictions.forces])
        names = sorted(set(reference.config_types))
        owner = np.repeat([names.index(c) for c in reference.config_types],
                          3 * np.asarray(reference.n_atoms))
        if ref.size > max_components:
            keep = np.sort(np.random.default_rng(seed).choice(ref.size, max_components,
                                                              replace=False))
            ref, pred, owner = ref[keep], pred[keep], owner[keep]
        out.update(force_ref=ref.tolist(), force_pred=pred.tolist(),
                   force_config_type=[names[i] for i in owner.tolist()],
                   force_components_total=int(sum(3 * n for n in reference.n_atoms)))
    return out


# --- gathering -----------------------------------------------------------------------

def _arrays_by_dataset(results) -> dict[str, dict[str, dict[str, Any]]]:
    """dataset -> potential -> arrays (the first shipped copy)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for _, rec in results.pairs():
        if rec.get("kind", "errors") == "errors" and "arrays" in rec:
            out.setdefault(rec["dataset"]["name"], {}).setdefault(
                subject_label(rec), rec["arrays"])
    return out


def _img(fig, alt: str) -> str:
    data = base64.b64encode(plots.png(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


#: columns whose text is a status (a metric named ``failed`` elsewhere is no failure)
STATUS_COLUMNS = ("status", "outcome", "thresholds", "limits", "verdict")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v):
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.4g}"
        return html.escape(str(v))

    def css(v, header):
        text = str(v)
        if text in ("NaN", "inf", "-inf"):  # a non-finite value recorded: a fault
            return ' class="fail"'
        if header not in STATUS_COLUMNS:
            return ""
        if text in ("xfailed", "xpassed", "xfail") or text.endswith(" xfail"):
            return ' class="xfail"'
        bad = text in ("failed", "regressed", "error")
        return ' class="fail"' if bad or "FAIL" in text or "ERROR" in text else ""

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{css(v, h)}>{cell(v)}</td>"
                                    for v, h in zip(row, headers)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- sections ------------------------------------------------------------------------

def _dataset_figures(dataset: str, per_pot: dict[str, dict[str, Any]]) -> list[str]:
    parts = []
    energy = {p: a for p, a in per_pot.items() if "energy_ref" in a}
    forces = {p: a for p, a in per_pot.items() if "force_ref" in a}
    if energy:
        # offset removed: potentials with different energy zeros stay comparable
        shifted = {p: _offset_removed(a) for p, a in energy.items()}
        groups = {p: _by_type(shifted[p] * plots.MEV, a["config_types"])
                  for p, a in energy.items()}
        parts.append('<div class="pair">' + _img(plots.error_violins_figure(
            groups, "energy error, offset removed (meV/atom)",
            f"{dataset}: energy errors per config_type"), f"{dataset} energy error violins")
            + _stats_table(groups, "meV/atom") + "</div>")
        parts.append(_img(plots.parity_figure(
            {p: (a["energy_ref"], np.add(a["energy_ref"], shifted[p]))
             for p, a in energy.items()},
            "eV/atom", f"{dataset}: energy per atom (offset removed)"),
            f"{dataset} energy parity"))
        parts.append(_img(plots.energy_error_vs_size_figure(
            {p: (a["n_atoms"], shifted[p]) for p, a in energy.items()}),
            f"{dataset} energy error against cell size"))
    if forces:
        groups = {p: _by_type(np.subtract(a["force_pred"], a["force_ref"]),
                              a["force_config_type"]) for p, a in forces.items()}
        sample = next(iter(forces.values()))
        note = ""
        if len(sample["force_ref"]) < sample["force_components_total"]:
            note = (f"<p>Force plots and this table use a seeded sample of "
                    f"{len(sample['force_ref'])} of {sample['force_components_total']} "
                    "components; the metric tables use all.</p>")
        parts.append('<div class="pair">' + _img(plots.error_violins_figure(
            groups, "force component error (eV/Å)",
            f"{dataset}: force errors per config_type"), f"{dataset} force error violins")
            + _stats_table(groups, "eV/Å") + note + "</div>")
        parts.append(_img(plots.parity_figure(
            {p: (a["force_ref"], a["force_pred"]) for p, a in forces.items()},
            "eV/Å", f"{dataset}: force components"), f"{dataset} force parity"))
    return parts


def figure_reference(function: Any) -> str:
    """``"module:qualname"`` of a result's figure function (``type(result).figure``), as
    a record carries it to the process that draws the report."""
    return f"{function.__module__}:{function.__qualname__}"


def figure_function(reference: str) -> Any:
    """The function a :func:`figure_reference` names (its module imported)."""
    module, _, qualname = reference.partition(":")
    function = import_module(module)
    for name in qualname.split("."):
        function = getattr(function, name)
    return function


def _protocol_figures(results) -> list[str]:
    """Figures of protocol results that shipped ``report_data`` (with --mlpval-report),
    drawn by the figure of the result's class (the record's ``figure``, or the data's
    own ``"figure"`` key), called with ``{potential: data}`` for every potential that
    ran the same protocol and group."""
    grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rec in results.records_of("protocol"):
        data = rec.get("arrays")
        figure = rec.get("figure") or (data.get("figure") if data else None)
        if not data or not figure:
            continue
        key = (figure, rec["dataset"]["name"], rec["subset"])
        grouped.setdefault(key, {}).setdefault(subject_label(rec), data)
    out = []
    for (figure, protocol, group), per_pot in grouped.items():
        try:
            fig = figure_function(figure)(per_pot)
        except Exception as exc:  # a report never fails the run: say what went wrong
            out.append(f"<p>[figure {html.escape(figure)} of {html.escape(protocol)} "
                       f"failed: {html.escape(type(exc).__name__)}: "
                       f"{html.escape(str(exc))}]</p>")
            continue
        out.append(f"<h3>{html.escape(protocol)} ({html.escape(group)})</h3>")
        out.append(_img(fig, f"{protocol} {group}"))
    return out


def _offset_removed(arrays: dict[str, Any]) -> np.ndarray:
    error = np.subtract(arrays["energy_pred"], arrays["energy_ref"])
    return error - np.mean(error)


def _stats_table(groups: dict[str, dict[str, np.ndarray]], unit: str) -> str:
    rows = []
    for pot, per_type in groups.items():
        for ctype, values in per_type.items():
            values = values[np.isfinite(values)]
            if values.size:
                rows.append([pot, ctype, int(values.size), float(np.mean(np.abs(values))),
                             float(np.sqrt(np.mean(values ** 2)))])
    return _table(["potential", "config_type", "values", f"MAE ({unit})",
                   f"RMSE ({unit})"], rows)


def _by_type(values, types) -> dict[str, np.ndarray]:
    values = np.asarray(values, dtype=float)
    types = np.asarray(types)
    return {t: values[types == t] for t in sorted(set(types.tolist()))}


def _error_rows(results, potential: str | None = None) -> list[list[Any]]:
    rows = []
    for (pot, dataset, subset), rec in results.error_records().items():
        if potential is not None and pot != potential:
            continue
        m = rec["metrics"]
        row = [pot, dataset, subset, rec["n_structures"]]
        for name, scale in (("energy_rmse", 1000), ("energy_mae", 1000),
                            ("energy_offset_removed_rmse", 1000), ("energy_offset", 1000),
                            ("force_rmse", 1), ("force_mae", 1), ("force_max", 1),
                            ("stress_rmse", 1)):
            value = m.get(name)
            row.append(math.nan if value is None else scale * value)
        rows.append(row)
    rows.sort(key=lambda r: (r[1], r[2] != "all", r[2], r[0]))
    return rows


def _fitted_by(results) -> list[str]:
    """Linked candidates (ini ``mlpval_fitted_by``) beside the recipes that fitted them:
    the candidate's test-set errors, the recipe's cross-validation errors; nothing when
    no candidate is linked to a recipe that ran."""
    rows = side_by_side_rows(rec for _, rec in results.pairs())
    if not rows:
        return []
    return ["<h3>Candidates beside the recipes that fitted them (mlpval_fitted_by)</h3>"
            "<p>Energies in meV/atom, forces in eV/Å, stresses in GPa.</p>",
            _table(LINK_HEADERS, rows)]


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}"


ERROR_HEADERS = ["potential", "dataset", "subset", "n", "E RMSE (meV/atom)",
                 "E MAE (meV/atom)", "E RMSE offset removed (meV/atom)",
                 "E offset (meV/atom)", "F RMSE (eV/Å)", "F MAE (eV/Å)", "F max (eV/Å)",
                 "S RMSE (GPa)"]


def _test_rows(results) -> list[list[Any]]:
    rows = []
    for test in results.tests:
        limits = []
        outcome = results.outcome_of(test)
        for rec in test["records"]:
            for t in rec.get("thresholds", []):
                mark = check_status(expected_status(t, outcome))
                where = "" if t["subset"] in ("all", t["metric"]) else f"[{t['subset']}]"
                if mark in ("ERROR", "skipped"):
                    limits.append(f"{t['metric']}{where} {mark}: {t.get('reason', '')}")
                    continue
                value = "NaN" if t["value"] is None or t["value"] != t["value"] \
                    else f"{t['value']:.4g}"
                limits.append(f"{t['metric']}{where} {value} <= {_num(t['limit'])} "
                              f"{t['unit']} {mark}")
        rows.append([test["nodeid"], outcome, "; ".join(limits) or "-"])
    return rows


class ReportError(MlpvalError):
    """Parts of the report could not be made; the files were written without them."""


def write_report(results, out_dir: str | Path, json_document: dict[str, Any],
                 baseline_path: str | None = None) -> list[Path]:
    """Write ``index.html``, ``mlpval.json`` and ``validation_card.md`` into ``out_dir``.

    Each section of the page, the card and each file is made on its own: one that fails
    is replaced by a line saying why, the others are still written, and
    :class:`ReportError` (with ``written``, the files that were) is raised at the end."""
    out = Path(out_dir)
    problems: list[str] = []
    body: list[str] = []
    for sid, title, build in _sections(results, baseline_path):
        try:
            content = build()
        except Exception as exc:  # the rest of the page is still made
            problems.append(f"section {title!r}: {type(exc).__name__}: {exc}")
            content = [f'<p class="fail">[this section could not be made: '
                       f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}]</p>"]
        body.append(f'<section id="{sid}"><h2>{html.escape(title)}</h2>'
                    + "\n".join(content) + "</section>")
    try:
        card = validation_card(results, json_document)
    except Exception as exc:
        problems.append(f"validation card: {type(exc).__name__}: {exc}")
        card = f"# Validation card\n\n(could not be made: {type(exc).__name__}: {exc})\n"
    body.append(f'<section id="card"><h2>Validation card</h2>'
                f"<pre>{html.escape(card)}</pre></section>")
    page = _PAGE.format(title="pytest-mlpval validation report",
                        nav=" · ".join(f'<a href="#{sid}">{html.escape(t)}</a>'
                                       for sid, t in SECTIONS),
                        body="\n".join(body))
    written = []
    for name, write in (  # fileio's writers looked up now, as the JSON file's are
            ("index.html", lambda path: fileio.atomic_write(
                path, lambda h: h.write(page.encode("utf-8")))),
            ("mlpval.json", lambda path: fileio.write_json(path, json_document)),
            ("validation_card.md", lambda path: fileio.atomic_write(
                path, lambda h: h.write(card.encode("utf-8"))))):
        try:
            written.append(write(out / name))
        except Exception as exc:
            problems.append(f"{out / name}: {type(exc).__name__}: {exc}")
    if problems:
        error = ReportError("; ".join(problems))
        error.written = written
        raise error
    return written


def _sections(results, baseline_path: str | None):
    """(id, title, function returning the HTML parts) of every section but the card."""
    potentials, datasets = results.identities()
    arrays = _arrays_by_dataset(results)

    def verdict():
        return [verdict_html(results.verdict())]

    def overview():
        return [
            f"<p>{len(results.tests)} tests; potentials: "
            + ", ".join(f"<b>{html.escape(p)}</b> ({html.escape(i.get('loader', ''))}, "
                        + (f"sha256 {html.escape(i['sha256'][:12])}" if i.get("sha256")
                           else "no content hash: code-defined") + ")"
                        for p, i in potentials.items())
            + "; datasets: " + (", ".join(
                f"<b>{html.escape(d)}</b> ({i.get('n_structures', '?')} structures, "
                f"{i.get('n_atoms', '?')} atoms)" for d, i in datasets.items()) or "none")
            + ".</p><p>Errors are predicted minus reference; energies per atom; forces as "
            "Cartesian components; stresses in GPa. Offset removed: minus the mean signed "
            "energy error of the dataset. NaN or inf: a non-finite value was recorded "
            "(n/a: not measured).</p>"]

    def comparison():
        parts = [_table(ERROR_HEADERS, [r for r in _error_rows(results) if r[2] == "all"])]
        parts += _fitted_by(results)
        for dataset, per_pot in arrays.items():
            parts.append(f"<h3>{html.escape(dataset)}</h3>")
            parts += _guarded(_dataset_figures, dataset, per_pot)
        return parts

    def per_potential():
        blocks = []
        for pot in potentials:
            content = [f'<div class="potential" id="potential-{html.escape(pot)}">'
                       f"<h3>{html.escape(pot)}</h3>",
                       _table(["key", "value"], [[k, v] for k, v in potentials[pot].items()
                                                 if k != "file_sha256"]),
                       _table(ERROR_HEADERS, _error_rows(results, pot))]
            for dataset, per_pot in arrays.items():
                if pot in per_pot and len(per_pot) > 1:
                    content += _guarded(_dataset_figures, dataset, {pot: per_pot[pot]})
            blocks.append("\n".join(content) + "</div>")
        return blocks or ["<p>No potential ran.</p>"]

    def checks():
        headers, rows = results.check_rows()
        return [_table(headers, rows)] if rows else [
            "<p>No physics checks ran (switch them on with pytest_mlpval.physics_tests).</p>"]

    def protocols():
        headers, rows = results.protocol_rows(limit=40)
        parts = [_table(headers, rows)] if rows else [
            "<p>No protocol ran (random structure search, MD, properties: mlpval.run).</p>"]
        return parts + _protocol_figures(results)

    def cost():
        headers, rows = results.cost_rows()
        if not rows:
            return ["<p>No cost tests ran (they need pytest-benchmark without -n).</p>"]
        parts = [_table(headers, rows), _img(plots.cost_scaling_figure(rows), "cost scaling")]
        points = results.accuracy_cost_points(rows)
        if points:
            parts.append(_img(plots.accuracy_cost_figure(points), "accuracy against cost"))
        return parts

    def baseline():
        if baseline_path is None:
            return ["<p>No baseline was compared (--mlpval-compare).</p>"]
        counts, rows = results.baseline_rows()
        return [f"<p>Baseline {html.escape(baseline_path)}: " + ", ".join(
                    f"{n} {html.escape(k)}" for k, n in counts.items()) + "</p>",
                _table(["potential", "dataset", "subset", "metric", "baseline", "now",
                        "unit", "status"], rows) if rows else ""]

    def tests():
        return [_table(["test", "outcome", "thresholds"], _test_rows(results))]

    builders = {"verdict": verdict, "overview": overview, "comparison": comparison,
                "potentials": per_potential, "checks": checks, "protocols": protocols,
                "cost": cost, "baseline": baseline, "tests": tests}
    return [(sid, title, builders[sid]) for sid, title in SECTIONS if sid in builders]


def _guarded(draw, *args) -> list[str]:
    """Figures that fail to draw (e.g. a plot of NaN values) become a line saying so."""
    try:
        return draw(*args)
    except Exception as exc:
        return [f'<p class="fail">[figures could not be drawn: '
                f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}]</p>"]


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
th {{ background: #f0f0f0; }} td:first-child {{ text-align: left; }}
td.fail, p.fail {{ color: #b00; font-weight: bold; }}
td.xfail {{ color: #8a5a00; }}
table.verdict {{ font-size: 1em; }}
table.verdict th, table.verdict td {{ text-align: center; padding: 0.3em 0.6em;
  white-space: nowrap; }}
table.verdict td.subject {{ text-align: left; font-weight: bold; }}
table.verdict td.ok {{ background: #e3f4e6; color: #14532d; }}
table.verdict td.fail {{ background: #fde2e1; }}
table.verdict td.xfail {{ background: #fff3d6; }}
table.verdict td.skip, table.verdict td.none {{ color: #888; }}
table.verdict td.verdict {{ font-weight: bold; }}
p.banner {{ font-size: 1.4em; font-weight: bold; padding: 0.3em 0.6em; }}
p.banner.ok {{ background: #e3f4e6; color: #14532d; }}
p.banner.fail {{ background: #fde2e1; color: #b00; }}
ul.failures {{ color: #b00; }}
img {{ max-width: 100%; margin: 0.4em 0.4em 0 0; vertical-align: top; }}
.pair {{ display: flex; flex-wrap: wrap; align-items: flex-start; gap: 1em; }}
section {{ border-top: 2px solid #ddd; margin-top: 1.5em; }}
pre {{ background: #f8f8f8; padding: 1em; white-space: pre-wrap; }}
</style></head>
<body data-images-broken="unknown">
<h1>{title}</h1>
<nav>{nav}</nav>
{body}
<script>
window.addEventListener("load", function () {{
  var broken = Array.prototype.filter.call(document.images, function (img) {{
    return !img.complete || img.naturalWidth === 0; }});
  document.body.setAttribute("data-images-broken", String(broken.length));
  broken.forEach(function (img) {{
    img.insertAdjacentHTML("afterend", "<b>[image missing: " + img.alt + "]</b>"); }});
}});
</script>
</body></html>
"""
