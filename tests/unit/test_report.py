"""The validation report as a library: report_arrays, the validation card, the figures,
write_report (files, sections, embedded PNGs), and the page in a real headless browser."""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import os
import re
import stat
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pytest_mlpval.card import validation_card
from pytest_mlpval.report import MAX_COMPONENTS, SECTIONS, report_arrays, write_report
from pytest_mlpval.results import RunResults
from pytest_mlpval.testing import CHROMIUM, have_chromium, headless_chromium

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="needs matplotlib (plot extra)")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = "energy=dft_energy,forces=dft_forces,stress=dft_stress"
IMG_SRC = re.compile(r'<img\b[^>]*\bsrc="([^"]*)"')
#: what the page's script inserts after an image that did not load
MISSING = r'<b>\[image missing: [^"]*\]</b>'


# --- report_arrays ----------------------------------------------------------------------

def _fake(n_atoms, config_types, energy=None, forces=None):
    """A stand-in for ReferenceSet / Predictions (report_arrays reads attributes only)."""
    return SimpleNamespace(n_atoms=np.asarray(n_atoms), config_types=tuple(config_types),
                           energy=None if energy is None else np.asarray(energy, float),
                           forces=None if forces is None else tuple(
                               np.asarray(f, float) for f in forces))


def _numbered_forces(n_atoms, start=0.0):
    """Forces whose flattened components are start, start+1, ... (so a sampled value
    tells which component it is)."""
    out, k = [], start
    for n in n_atoms:
        out.append(np.arange(k, k + 3 * n, dtype=float).reshape(n, 3))
        k += 3 * n
    return out


def test_report_arrays_energy_per_atom_and_types():
    ref = _fake([2, 4, 1], ["b", "a", "b"], energy=[-8.0, -20.0, -3.0],
                forces=_numbered_forces([2, 4, 1]))
    pred = _fake([2, 4, 1], ["b", "a", "b"], energy=[-7.0, -22.0, -3.5],
                 forces=_numbered_forces([2, 4, 1], start=100.0))
    out = report_arrays(ref, pred)
    assert out["n_atoms"] == [2, 4, 1]
    assert out["config_types"] == ["b", "a", "b"]
    assert out["energy_ref"] == pytest.approx([-4.0, -5.0, -3.0])
    assert out["energy_pred"] == pytest.approx([-3.5, -5.5, -3.5])
    # few components: all of them, in dataset order, each with its structure's type
    assert out["force_components_total"] == 21
    assert out["force_ref"] == list(np.arange(21.0))
    assert out["force_pred"] == list(np.arange(100.0, 121.0))
    assert out["force_config_type"] == ["b"] * 6 + ["a"] * 12 + ["b"] * 3
    # builtin types only: it travels on pytest reports (xdist) and through json
    assert json.loads(json.dumps(out)) == out
    assert all(type(v) is int for v in out["n_atoms"])
    assert all(type(v) is float for v in out["force_ref"] + out["energy_pred"])


def test_report_arrays_subsample_is_seeded_and_keeps_types():
    n_atoms = [5, 40, 3, 60, 12]
    types = ["x", "y", "x", "z", "y"]
    ref = _fake(n_atoms, types, energy=np.ones(5), forces=_numbered_forces(n_atoms))
    pred = _fake(n_atoms, types, energy=np.ones(5),
                 forces=[-2 * f for f in _numbered_forces(n_atoms)])
    total = 3 * sum(n_atoms)
    out = report_arrays(ref, pred, max_components=50, seed=3)
    assert out["force_components_total"] == total == 360
    assert len(out["force_ref"]) == len(out["force_pred"]) == 50
    assert len(out["force_config_type"]) == 50
    index = np.asarray(out["force_ref"], dtype=int)  # the value is the component index
    assert np.all(np.diff(index) > 0)  # distinct, in dataset order
    assert out["force_pred"] == pytest.approx(list(-2.0 * index))  # pairs kept together
    owner = np.repeat(types, 3 * np.asarray(n_atoms))
    assert out["force_config_type"] == [owner[i] for i in index]
    # per-structure values are never subsampled
    assert out["n_atoms"] == n_atoms and len(out["energy_ref"]) == 5
    # reproducible, and the seed matters
    assert report_arrays(ref, pred, max_components=50, seed=3) == out
    assert report_arrays(ref, pred, max_components=50, seed=4)["force_ref"] != out["force_ref"]
    # exactly at the limit: everything
    assert report_arrays(ref, pred, max_components=total)["force_ref"] == list(
        np.arange(float(total)))


def test_report_arrays_default_limit():
    n_atoms = [MAX_COMPONENTS // 3 + 10]  # one structure with more components than kept
    ref = _fake(n_atoms, ["big"], forces=[np.zeros((n_atoms[0], 3))])
    out = report_arrays(ref, ref)
    assert len(out["force_ref"]) == MAX_COMPONENTS < out["force_components_total"]
    assert set(out["force_config_type"]) == {"big"}


def test_report_arrays_without_labels():
    ref = _fake([2], ["a"], energy=[-1.0])  # no forces
    pred = _fake([2], ["a"], energy=[-1.5], forces=[np.zeros((2, 3))])
    out = report_arrays(ref, pred)
    assert out["energy_pred"] == [-0.75]
    assert not {"force_ref", "force_pred", "force_config_type",
                "force_components_total"} & set(out)
    out = report_arrays(_fake([2], ["a"], forces=[np.ones((2, 3))]), pred)
    assert "energy_ref" not in out and "energy_pred" not in out
    assert out["force_ref"] == [1.0] * 6 and out["force_pred"] == [0.0] * 6


@pytest.fixture(scope="module")
def silicon(reference_file):
    """The reference set, and sw / forces-scaled potentials with their predictions and
    errors on it."""
    from pytest_mlpval.data import read_dataset
    from pytest_mlpval.evaluate import predict
    from pytest_mlpval.metrics import compute_errors
    from pytest_mlpval.potentials import load_potential

    reference = read_dataset(f"ref={reference_file},{LABELS}")
    out = {"reference": reference}
    for name, spec in (("sw", "sw"), ("scaled", "scaled=pytest_mlpval.testing:sw_forces_scaled")):
        potential = load_potential(spec)
        predictions = predict(potential.calculator, reference)
        out[name] = SimpleNamespace(potential=potential, predictions=predictions,
                                    errors=compute_errors(reference, predictions))
    return SimpleNamespace(**out)


def test_report_arrays_of_real_predictions(silicon):
    reference, scaled = silicon.reference, silicon.scaled
    out = report_arrays(reference, scaled.predictions)
    assert out["n_atoms"] == [8, 16, 8, 16, 8, 16]
    assert out["config_types"] == ["bulk", "rattled"] * 3
    assert out["energy_ref"] == pytest.approx(list(reference.energy / reference.n_atoms))
    assert out["energy_pred"] == pytest.approx(out["energy_ref"], abs=1e-6)
    assert out["force_components_total"] == len(out["force_ref"]) == 3 * 72
    assert out["force_ref"] == list(np.concatenate([f.ravel() for f in reference.forces]))
    sw_forces = np.concatenate([f.ravel() for f in silicon.sw.predictions.forces])
    assert out["force_pred"] == pytest.approx(list(1.5 * sw_forces))
    assert out["force_config_type"][:24] == ["bulk"] * 24
    assert out["force_config_type"][24:72] == ["rattled"] * 48


# --- records and results ----------------------------------------------------------------

SHA_SW = "ab" * 32
SHA_DATA = "cd" * 32


def _potential(name, loader="builtin", sha256=SHA_SW, spec=None):
    return {"name": name, "spec": spec or name, "loader": loader, "files": [],
            "sha256": sha256, "file_sha256": {}, "species": ["Si"]}


def _dataset(name="test"):
    return {"name": name, "path": f"/data/{name}.xyz", "sha256": SHA_DATA,
            "n_structures": 6, "n_atoms": 72, "labels": ["energy", "forces"],
            "config_types": ["bulk", "rattled"]}


def _record(potential, dataset=None, subset="all", n=6, thresholds=(), **metrics):
    from pytest_mlpval.metrics import metric_unit

    return {"kind": "errors", "potential": potential, "dataset": dataset or _dataset(),
            "subset": subset, "n_structures": n, "n_atoms": 12 * n, "metrics": metrics,
            "units": {k: metric_unit(k) for k in metrics}, "thresholds": list(thresholds)}


METRICS = dict(energy_rmse=0.0123, energy_mae=0.0100, energy_offset_removed_rmse=0.0045,
               energy_offset=0.002, force_rmse=0.2, force_mae=0.15, stress_rmse=0.05)
ROW = "| 6 | 12.3 | 10 | 4.5 | 0.2 | 0.15 | 0.05 |"


def _card(*records, document=None):
    results = RunResults()
    for i, rec in enumerate(records):
        results.add(f"test_x.py::test_{i}", "passed", "call", [rec])
    return validation_card(results, document or {"version": "9.9", "datetime": "when"})


def test_card_potentials_definitions_datasets_and_errors():
    sw = _potential("sw")
    fac = _potential("fac", loader="factory", sha256=None, spec="pkg.mod:make")
    text = _card(_record(sw, **METRICS), _record(fac, **{**METRICS, "force_rmse": 0.9}),
                 _record(sw, **METRICS),  # the same errors recorded by another test
                 _record(sw, subset="bulk", n=3, **METRICS))
    lines = text.splitlines()
    assert lines[0] == "# Validation card"
    assert "Made by pytest-mlpval 9.9 on when." in lines
    for heading in ("## Potentials", "## Error definitions", "## Test sets", "## Errors"):
        assert heading in lines
    assert f"| sw | builtin | `sw` | `{SHA_SW}` |" in lines
    assert "| fac | factory | `pkg.mod:make` | `none (code-defined)` |" in lines
    definitions = text.split("## Error definitions")[1].split("## Test sets")[0]
    assert "predicted minus reference" in definitions
    assert "per atom" in definitions and "Cartesian components" in definitions
    assert "| test | 6 | 72 | bulk, rattled | energy, forces | `cdcdcdcdcdcdcdcd` |" in lines
    # energies in meV/atom, forces in eV/Å, stresses in GPa; one row per combination
    assert "(meV/atom)" in text.split("## Errors")[1]
    assert lines.count(f"| sw | test | all {ROW}") == 1
    assert f"| fac | test | all {ROW.replace('0.2 |', '0.9 |')}" in lines
    assert f"| sw | test | bulk {ROW.replace('| 6 |', '| 3 |')}" in lines
    assert "- [x] Errors per configuration type" in lines


def test_card_missing_metric_is_na():
    metrics = {k: v for k, v in METRICS.items() if not k.startswith("stress")}
    text = _card(_record(_potential("sw"), **metrics))
    assert "| sw | test | all | 6 | 12.3 | 10 | 4.5 | 0.2 | 0.15 | n/a |" in text.splitlines()


@pytest.mark.parametrize("names", [["sw"], ["sw", "gap"]], ids=["one", "two"])
def test_card_checklist(names):
    lines = _card(*[_record(_potential(n), **METRICS) for n in names]).splitlines()
    checklist = [line for line in lines if line.startswith("- [")]
    assert len(checklist) == 8
    several = "x" if len(names) > 1 else " "
    assert f"- [{several}] Comparison of several potentials on the same data" in checklist
    assert "- [ ] Internal k-fold cross-validation errors" in checklist
    assert any(line.startswith("- [ ] Comparison with experiment") for line in checklist)
    assert "- [x] Errors with their definitions (RMSE and MAE, components)" in checklist
    assert "- [ ] Errors per configuration type" in checklist
    assert "- [ ] Physical invariances and consistency of forces and stress" in checklist
    assert "- [ ] Cost (time per atom per force call)" in checklist
    assert any(line.startswith("- [x] Errors on held-out test data") for line in checklist)


def test_card_training_set_is_not_held_out():
    lines = _card(_record(_potential("sw"), _dataset("train"), **METRICS)).splitlines()
    assert any(line.startswith("- [ ] Errors on held-out test data") for line in lines)


def test_card_two_potentials_on_subsets_only_of_one_potential():
    # a second potential whose only record is a physics check is no comparison of errors
    check = {"kind": "checks", "potential": _potential("gap"), "dataset": {"name": "checks"},
             "subset": "translation", "n_structures": 3, "n_atoms": 0,
             "metrics": {"translation": 1e-9}, "units": {"translation": "eV/Å"},
             "thresholds": [{"metric": "translation", "subset": "translation",
                             "value": 1e-9, "limit": 1e-5, "unit": "eV/Å", "passed": True}]}
    lines = _card(_record(_potential("sw"), **METRICS), check).splitlines()
    assert "- [ ] Comparison of several potentials on the same data" in lines
    assert "- [x] Physical invariances and consistency of forces and stress" in lines
    assert "| gap | translation | 3 | 1e-09 | 1e-05 | eV/Å | ok |" in lines


# --- plots ------------------------------------------------------------------------------

@needs_mpl
def test_energy_error_vs_size_figure():
    from matplotlib.figure import Figure

    from pytest_mlpval import plots

    fig = plots.energy_error_vs_size_figure({"a": ([8, 16], [0.001, -0.002]),
                                             "b": ([8, 64], [0.0005, 0.004])})
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert len(ax.collections) == 2  # one scatter per potential
        assert ax.get_yscale() == "log"
    per_cell, per_sqrt, per_atom = (ax.collections[0].get_offsets() for ax in fig.axes)
    assert np.asarray(per_cell)[:, 1] == pytest.approx([0.008, 0.032])
    assert np.asarray(per_sqrt)[:, 1] == pytest.approx([0.001 * 8 ** 0.5, 0.002 * 4])
    assert np.asarray(per_atom)[:, 1] == pytest.approx([1.0, 2.0])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    assert plots.png(fig).startswith(PNG_MAGIC)


@needs_mpl
def test_parity_figure_has_the_identity_line():
    from matplotlib.figure import Figure

    from pytest_mlpval import plots

    fig = plots.parity_figure({"a": ([1.0, 2.0, 3.0], [1.1, 2.2, 2.9]),
                               "b": ([0.5, 4.0], [0.4, 4.5])}, "eV/Å", "forces")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    (ax,) = fig.axes
    assert len(ax.collections) == 2
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == list(line.get_ydata()) == [0.4, 4.5]
    assert ax.get_xlabel() == "reference (eV/Å)" and ax.get_title() == "forces"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


@needs_mpl
def test_error_violins_figure():
    from matplotlib.collections import PolyCollection

    from pytest_mlpval import plots

    rng = np.random.default_rng(0)
    groups = {"a": {"bulk": rng.normal(size=20), "rattled": rng.normal(size=30)},
              "b": {"bulk": rng.normal(size=20), "rattled": np.array([1.0]),  # too few
                    "surface": np.array([0.1, np.nan, 0.3])}}
    fig = plots.error_violins_figure(groups, "error (meV/atom)", "violins")
    # one panel per potential, each with every config_type
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["bulk", "rattled", "surface"]
    bodies = [[c for c in ax.collections if isinstance(c, PolyCollection)]
              for ax in fig.axes]
    assert [len(b) for b in bodies] == [2, 2]  # a: bulk, rattled; b: bulk, surface
    assert fig.axes[0].get_ylabel() == "error (meV/atom)"
    assert "violins" in fig.get_suptitle()
    one = plots.error_violins_figure({"a": groups["a"]}, "y", "t")
    assert len(one.axes) == 1 and one.axes[0].get_title() == ""


@needs_mpl
def test_error_violins_scale_each_potential():
    """A good candidate next to a bad one keeps its shape: each panel has its own y
    range (on a shared axis errors 1000 times smaller are a flat line)."""
    from pytest_mlpval import plots

    rng = np.random.default_rng(1)
    good = {"bulk": 0.001 * rng.normal(size=50), "rattled": 0.002 * rng.normal(size=50)}
    bad = {"bulk": rng.normal(size=50), "rattled": 2.0 * rng.normal(size=50)}
    fig = plots.error_violins_figure({"good": good, "bad": bad}, "y", "t")
    spans = [np.subtract(*ax.get_ylim()[::-1]) for ax in fig.axes]
    assert len(spans) == 2
    assert spans[0] < 0.05 < 2.0 < spans[1]
    assert plots.png(fig).startswith(PNG_MAGIC)


@needs_mpl
def test_figures_of_one_structure_do_not_warn():
    """One structure: the offset-removed error is exactly 0 and each violin has one
    value; matplotlib warned (log axis of zeros, legend without artists), which
    filterwarnings=error turns into a crash at the end of the session."""
    from pytest_mlpval import plots

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        size = plots.energy_error_vs_size_figure({"a": ([8], [0.0]), "b": ([8], [0.0])})
        violins = plots.error_violins_figure({"a": {"bulk": [0.0]}, "b": {"bulk": [0.0]}},
                                             "y", "t")
        for fig in (size, violins):
            assert plots.png(fig).startswith(PNG_MAGIC)
    assert [ax.get_title() for ax in violins.axes] == ["a", "b"]


@needs_mpl
def test_cost_figures():
    from pytest_mlpval import plots

    rows = [["a", 8, 0.001, 125.0, 1.0], ["a", 64, 0.008, 125.0, 1.0],
            ["b", 8, 0.01, 1250.0, float("nan")]]
    fig = plots.cost_scaling_figure(rows)
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()] == ["a (N^1.00)", "b"]
    assert list(ax.get_lines()[0].get_xdata()) == [8, 64]
    fig = plots.accuracy_cost_figure([("a", 125.0, 0.1, "ref"), ("b", 1250.0, 0.05, "ref")])
    (ax,) = fig.axes
    assert len(ax.collections) == 2
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    assert "ref" in ax.get_ylabel()


# --- write_report -----------------------------------------------------------------------

def _real_record(side, reference, report, thresholds=()):
    from pytest_mlpval.metrics import metric_unit

    metrics = report.metrics()
    return {"kind": "errors", "potential": side.potential.info.as_dict(),
            "dataset": reference.as_dict(), "subset": report.subset,
            "n_structures": len(report), "n_atoms": int(report.n_atoms.sum()),
            "metrics": metrics, "units": {k: metric_unit(k) for k in metrics},
            "thresholds": list(thresholds)}


def _threshold(metric, value, limit, unit, subset="all"):
    return {"metric": metric, "subset": subset, "value": value, "limit": limit,
            "unit": unit, "passed": value <= limit}


def _silicon_results(silicon) -> RunResults:
    """Records as a run of two potentials would make them: errors with report arrays,
    a config_type subset, a physics check and cost."""
    reference = silicon.reference
    results = RunResults()
    for name in ("sw", "scaled"):
        side = getattr(silicon, name)
        force_rmse = side.errors.metrics()["force_rmse"]
        rec = _real_record(side, reference, side.errors,
                           [_threshold("force_rmse", force_rmse, 0.2, "eV/Å")])
        rec["arrays"] = report_arrays(reference, side.predictions)
        results.add(f"test_suite.py::test_forces[{name}-ref]",
                    "passed" if force_rmse <= 0.2 else "failed", "call", [rec])
        bulk = side.errors.subset_by_config_type("bulk")
        bulk_rec = _real_record(side, reference, bulk, [_threshold(
            "energy_rmse", bulk.metrics()["energy_rmse"], 0.005, "eV/atom", "bulk")])
        bulk_rec["metrics"]["force_angle_max"] = float("nan")  # strict JSON all the same
        results.add(f"test_suite.py::test_bulk[{name}-ref]", "passed", "call",
                    [_real_record(side, reference, side.errors), bulk_rec])
        info = side.potential.info.as_dict()
        results.add(f"test_suite.py::test_mlpval_translation_invariance[{name}]", "passed",
                    "call", [{"kind": "checks", "potential": info,
                              "dataset": {"name": "checks"}, "subset": "translation",
                              "n_structures": 30, "n_atoms": 0,
                              "metrics": {"translation": 3e-14},
                              "units": {"translation": "eV/Å"},
                              "thresholds": [_threshold("translation", 3e-14, 1e-5, "eV/Å",
                                                        "translation")]}])
        for n, seconds in ((8, 1e-3), (64, 8e-3)):
            results.add(f"test_suite.py::test_mlpval_cost[{name}-{n}]", "passed", "call", [{
                "kind": "cost", "potential": info, "dataset": {"name": "cost"},
                "subset": f"{n} atoms", "n_structures": 1, "n_atoms": 0,
                "metrics": {"n_atoms": n, "time_per_call_s": seconds,
                            "time_per_atom_us": 1e6 * seconds / n},
                "units": {"n_atoms": "atoms", "time_per_call_s": "s",
                          "time_per_atom_us": "µs"}, "thresholds": []}])
    return results


@pytest.fixture(scope="module")
def written(silicon, tmp_path_factory):
    """write_report of _silicon_results, under umask 022."""
    if not HAVE_MPL:
        pytest.skip("needs matplotlib (plot extra)")
    results = _silicon_results(silicon)
    document = results.json_document()
    out = tmp_path_factory.mktemp("report") / "nested" / "out"
    old = os.umask(0o022)
    try:
        paths = write_report(results, out, document)
    finally:
        os.umask(old)
    page = (out / "index.html").read_text(encoding="utf-8")
    return SimpleNamespace(results=results, out=out, paths=paths, page=page,
                           document=document)


def _section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert match, sid
    return match.group(1)


def _cells(fragment: str) -> list[list[str]]:
    """Text of the cells of every body row of the tables in ``fragment``."""
    rows = re.findall(r"<tr>(.*?)</tr>", fragment, re.S)
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
            for r in rows if "<td" in r]


def test_write_report_files(written):
    out = written.out
    assert sorted(p.name for p in written.paths) == ["index.html", "mlpval.json",
                                                     "validation_card.md"]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "mlpval.json",
                                                     "validation_card.md"]  # no temp files
    for path in written.paths:
        assert path.parent == out and path.stat().st_size > 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # readable by others

    def reject(constant):
        raise ValueError(f"not strict JSON: {constant}")

    doc = json.loads((out / "mlpval.json").read_text(encoding="utf-8"),
                     parse_constant=reject)
    assert doc["schema"] == "pytest-mlpval/1"
    assert set(doc["potentials"]) == {"sw", "scaled"}
    assert len(doc["tests"]) == 10
    bulk = doc["tests"][1]["records"][1]
    assert bulk["subset"] == "bulk"
    # no reference force reaches the angle threshold in bulk: NaN, written as flagged null
    assert bulk["metrics"]["force_angle_max"] == {"value": None, "unit": "degree",
                                                  "finite": False, "non_finite": "nan"}
    assert "force_ref" not in (out / "mlpval.json").read_text()  # arrays stay out
    card = (out / "validation_card.md").read_text(encoding="utf-8")
    assert card == validation_card(written.results, written.document)
    assert html.escape(card) in written.page


def test_write_report_sections(written):
    page = written.page
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert ids == [sid for sid, _ in SECTIONS]
    for sid, title in SECTIONS:
        assert f'<a href="#{sid}">{html.escape(title)}</a>' in page
        assert f"<h2>{html.escape(title)}</h2>" in _section(page, sid)
    assert re.findall(r'id="potential-([^"]+)"', page) == ["sw", "scaled"]
    assert page.count('<div class="potential"') == 2
    assert 'data-images-broken="unknown"' in page and "<script>" in page


def test_write_report_images_are_embedded_pngs(written):
    page = written.page
    sources = IMG_SRC.findall(page)
    # comparison: 5 plots of 'ref'; per potential: the same 5 each; cost: 2
    assert len(sources) == page.count("<img") == 17
    for src in sources:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix):], validate=True)
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    alts = re.findall(r'<img alt="([^"]*)"', page)
    for alt in ("ref energy error violins", "ref energy parity",
                "ref energy error against cell size", "ref force error violins",
                "ref force parity"):
        assert alts.count(alt) == 3, alt
    assert re.findall(r'<img alt="([^"]*)"', _section(page, "cost")) == [
        "cost scaling", "accuracy against cost"]
    for pot in ("sw", "scaled"):
        block = page.split(f'id="potential-{pot}"')[1].split('<div class="potential"')[0]
        block = block.split('<section id="checks">')[0]
        assert block.count("<img") == 5


def test_write_report_tables(written, silicon):
    page = written.page
    scaled = silicon.scaled.errors.metrics()
    comparison = _cells(_section(page, "comparison"))[0:2]
    assert [row[:4] for row in comparison] == [["scaled", "ref", "all", "6"],
                                               ["sw", "ref", "all", "6"]]
    assert comparison[0][4] == f"{1000 * scaled['energy_rmse']:.4g}"  # meV/atom
    assert comparison[0][8] == f"{scaled['force_rmse']:.4g}" == "0.8521"
    per_pot = page.split('id="potential-scaled"')[1]
    rows = [r for r in _cells(per_pot) if r[:1] == ["scaled"] and len(r) == 12]
    assert [r[2] for r in rows] == ["all", "bulk"]
    bulk_stress = silicon.scaled.errors.subset_by_config_type("bulk").metrics()["stress_rmse"]
    assert rows[1][-1] == f"{bulk_stress:.4g}"
    tests = _cells(_section(page, "tests"))
    assert len(tests) == 10
    failed = [r for r in tests if r[1] == "failed"]
    assert [r[0] for r in failed] == ["test_suite.py::test_forces[scaled-ref]"]
    assert failed[0][2] == "force_rmse 0.8521 <= 0.2 eV/Å FAIL"
    assert '<td class="fail">failed</td>' in _section(page, "tests")
    assert _section(page, "tests").count('class="fail"') == 2
    bulk = next(r for r in tests if r[0] == "test_suite.py::test_bulk[sw-ref]")
    assert bulk[1] == "passed" and bulk[2].startswith("energy_rmse[bulk] ")
    assert bulk[2].endswith(" <= 0.005 eV/atom ok")
    checks = _cells(_section(page, "checks"))
    assert [r[:2] + r[-1:] for r in checks] == [["scaled", "translation", "ok"],
                                                ["sw", "translation", "ok"]]
    cost = _cells(_section(page, "cost"))
    assert [r[:2] for r in cost if len(r) == 5] == [["scaled", "8"], ["scaled", "64"],
                                                    ["sw", "8"], ["sw", "64"]]
    assert "No baseline was compared" in _section(page, "baseline")
    overview = _section(page, "overview")
    assert "10 tests" in overview and "<b>sw</b>" in overview and "<b>scaled</b>" in overview
    assert "<b>ref</b> (6 structures, 72 atoms)" in overview


@needs_mpl
def test_write_report_of_empty_run(tmp_path):
    results = RunResults()
    paths = write_report(results, tmp_path, results.json_document())
    page = paths[0].read_text(encoding="utf-8")
    assert re.findall(r'<section id="([^"]+)"', page) == [sid for sid, _ in SECTIONS]
    assert "<img" not in page and "No potential ran." in page
    assert "No physics checks ran" in page and "No cost tests ran" in page


@needs_mpl
def test_write_report_with_baseline(tmp_path):
    sw = _potential("sw")
    rec = _record(sw, **METRICS)
    rec["baseline"] = "compared"
    rec["comparison"] = [
        {"metric": "force_rmse", "now": 0.2, "baseline": 0.1, "change": 0.1, "unit": "eV/Å",
         "tolerance": "1%", "status": "regressed"},
        {"metric": "energy_rmse", "now": 0.0123, "baseline": None, "change": None,
         "unit": "eV/atom", "tolerance": "1%", "status": "improved"},
        {"metric": "stress_rmse", "now": 0.05, "baseline": None, "change": None,
         "unit": "GPa", "tolerance": "1%", "status": "new"}]
    missing = _record(_potential("gap"), **METRICS)
    missing.update(baseline="missing", comparison=[])
    results = RunResults()
    results.add("t.py::test_a[sw-test]", "failed", "call", [rec])
    results.add("t.py::test_a[gap-test]", "passed", "call", [missing])
    write_report(results, tmp_path, results.json_document(), baseline_path="/b/base.json")
    section = _section((tmp_path / "index.html").read_text(encoding="utf-8"), "baseline")
    assert ("<p>Baseline /b/base.json: 1 regressed, 1 improved, 1 new, 1 compared records, "
            "1 records without baseline entry</p>") in section
    assert _cells(section) == [["sw", "test", "all", "force_rmse", "0.1", "0.2", "eV/Å",
                                "regressed"],
                               ["sw", "test", "all", "energy_rmse", "n/a", "0.0123",
                                "eV/atom", "improved"]]
    assert '<td class="fail">regressed</td>' in section


@needs_mpl
def test_write_report_of_one_structure(tmp_path, reference_file):
    """A dataset of one structure (and config_types of one structure) makes every plot,
    without a warning (the test suite turns warnings into errors)."""
    import ase.io

    from pytest_mlpval.data import read_dataset
    from pytest_mlpval.evaluate import predict
    from pytest_mlpval.metrics import compute_errors
    from pytest_mlpval.potentials import load_potential

    one = tmp_path / "one.xyz"
    ase.io.write(one, ase.io.read(reference_file, index=0), format="extxyz")
    reference = read_dataset(f"one={one},{LABELS}")
    results = RunResults()
    for spec in ("sw", "scaled=pytest_mlpval.testing:sw_forces_scaled"):
        side = SimpleNamespace(potential=load_potential(spec))
        predictions = predict(side.potential.calculator, reference)
        rec = _real_record(side, reference, compute_errors(reference, predictions))
        rec["arrays"] = report_arrays(reference, predictions)
        results.add(f"t.py::test[{side.potential.name}-one]", "passed", "call", [rec])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(results, tmp_path / "out", results.json_document())
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert len(IMG_SRC.findall(page)) == 15


# --- the page in a real browser ---------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not have_chromium(),
    reason=f"no headless browser: Debian's chromium is not installed at {CHROMIUM} "
           "(apt-get install chromium; .ci/run installs it)")


def _chromium(tmp_path: Path, page: Path, *args: str):
    return headless_chromium(page, *args, workdir=tmp_path)


def _broken(dom: str) -> str:
    match = re.search(r'<body\b[^>]*\bdata-images-broken="([^"]*)"', dom)
    assert match, dom[:500]
    return match.group(1)


@needs_mpl
@needs_chromium
def test_page_renders_in_a_browser(written, tmp_path):
    index = written.out / "index.html"
    dom = _chromium(tmp_path, index, "--dump-dom").stdout
    assert _broken(dom) == "0"  # the page's script ran and every image decoded
    assert not re.search(MISSING, dom)
    for sid, _ in SECTIONS:
        assert f'<section id="{sid}">' in dom
    assert 'id="potential-sw"' in dom and 'id="potential-scaled"' in dom
    assert len(re.findall(r"<img\b", dom)) == written.page.count("<img") == 17

    shot = tmp_path / "report.png"
    _chromium(tmp_path, index, f"--screenshot={shot}", "--window-size=1300,3000")
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


@needs_mpl
@needs_chromium
def test_browser_check_sees_a_broken_image(written, tmp_path):
    page = written.page
    first = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    # still valid base64, no longer a PNG
    corrupt = page[:first] + "QUJD" * 8 + page[first + 32:]
    alt = re.search(r'<img alt="([^"]*)"', page).group(1)
    copy = tmp_path / "corrupt.html"
    copy.write_text(corrupt, encoding="utf-8")
    dom = _chromium(tmp_path, copy, "--dump-dom").stdout
    assert _broken(dom) == "1"
    assert re.findall(MISSING, dom) == [f"<b>[image missing: {alt}]</b>"]


# --- protocol figures -------------------------------------------------------------------

def line_figure(per_potential):
    """A protocol figure as the families write them: ``{potential: data}``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    for name, data in per_potential.items():
        ax.plot(data["x"], data["y"], label=name)
    return fig


class Figures:
    @staticmethod
    def broken(per_potential):
        raise ValueError("nothing to draw")


def test_figure_reference_names_the_function_and_finds_it_again():
    from pytest_mlpval.report import figure_function, figure_reference

    assert figure_reference(line_figure) == f"{__name__}:line_figure"
    assert figure_function(figure_reference(line_figure)) is line_figure
    assert figure_reference(Figures.broken) == f"{__name__}:Figures.broken"
    assert figure_function(figure_reference(Figures.broken)) is Figures.broken


def _protocol_record(potential, protocol, data, figure=None):
    rec = {"kind": "protocol", "potential": {"name": potential},
           "dataset": {"name": protocol}, "subset": "all", "n_structures": 1, "n_atoms": 0,
           "metrics": {"y_max": 1.0}, "units": {"y_max": ""}, "thresholds": [],
           "arrays": data}
    if figure is not None:
        rec["figure"] = figure
    return rec


@needs_mpl
def test_protocol_figures_from_the_record_or_the_data(tmp_path):
    from pytest_mlpval.report import figure_reference

    results = RunResults()
    drawn = figure_reference(line_figure)
    for pot in ("a", "b"):  # the figure of the result's class, one per protocol and group
        results.add(f"t.py::test_new[{pot}]", "passed", "call", [_protocol_record(
            pot, "new", {"x": [0, 1], "y": [1, 0]}, drawn)])
    results.add("t.py::test_old[a]", "passed", "call", [_protocol_record(  # the old key
        "a", "old", {"figure": drawn, "x": [0, 1], "y": [0, 1]})])
    results.add("t.py::test_broken[a]", "passed", "call", [_protocol_record(
        "a", "broken", {"x": [0]}, figure_reference(Figures.broken))])
    results.add("t.py::test_none[a]", "passed", "call", [_protocol_record(
        "a", "none", {"x": [0]})])
    write_report(results, tmp_path, results.json_document())
    section = _section((tmp_path / "index.html").read_text(encoding="utf-8"), "protocols")
    assert re.findall(r"<h3>(.*?)</h3>", section) == ["new (all)", "old (all)"]
    assert re.findall(r'<img alt="([^"]*)"', section) == ["new all", "old all"]
    assert (f"[figure {figure_reference(Figures.broken)} of broken failed: ValueError: "
            "nothing to draw]") in section
