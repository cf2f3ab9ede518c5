"""--mlpval-report end to end: the page, the card and the JSON of a pytester run of two
potentials, the same page under xdist (the controller assembles it), the baseline
section, and the usage error without matplotlib."""

from __future__ import annotations

import base64
import html
import importlib
import importlib.util
import json
import re

import pytest

from .conftest import LABELS, SCALED, read_json

# In-process pytester runs drop the modules they imported; import the report's stack
# here, once, so that every run finds it (matplotlib's extension modules included).
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
if HAVE_MPL:
    for _name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg",
                  "pytest_mlpval.plots", "pytest_mlpval.report", "pytest_mlpval.card"):
        importlib.import_module(_name)
needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="needs matplotlib (plot extra)")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTION_IDS = ["verdict", "overview", "comparison", "potentials", "checks", "protocols",
               "cost", "baseline", "tests", "card"]
PLOTS = ("ref energy error violins", "ref energy parity",
         "ref energy error against cell size", "ref force error violins",
         "ref force parity")

SUITE = """
import pytest
{imports}

@pytest.mark.mlpval_thresholds(force_rmse=0.2)
def test_forces(mlpval_errors):
    pass

def test_bulk_energy(mlpval, mlpval_errors):
    mlpval.check(mlpval_errors, config_type="bulk", energy_rmse=0.005)
"""
PHYSICS = "from pytest_mlpval.physics_tests import test_mlpval_translation_invariance"


def _args(reference_file, *more):
    return ["--potential=sw", f"--potential=scaled={SCALED}",
            f"--mlpval-dataset=ref={reference_file},{LABELS}", *more]


def _section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert match, sid
    return match.group(1)


def _rows(fragment: str) -> list[list[str]]:
    """Cell texts of the body rows of the tables in ``fragment``."""
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", fragment, re.S) if "<td" in row]


def _images(page: str) -> list[str]:
    """alt texts of the images, after checking each is an embedded PNG."""
    alts = []
    for alt, src in re.findall(r'<img alt="([^"]*)" src="([^"]*)">', page):
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
        alts.append(alt)
    assert len(alts) == page.count("<img")
    return alts


@needs_mpl
def test_report_of_two_potentials(pytester, run, reference_file):
    pytester.makepyfile(test_suite=SUITE.format(imports=PHYSICS))
    result = run(*_args(reference_file, "--mlpval-report=out"))
    # test_forces fails for 'scaled' (force RMSE 0.85 > 0.2)
    result.assert_outcomes(passed=5, failed=1)
    out = pytester.path / "out"
    result.stdout.fnmatch_lines([f"mlpval: wrote {out / 'index.html'}",
                                 f"mlpval: wrote {out / 'mlpval.json'}",
                                 f"mlpval: wrote {out / 'validation_card.md'}"])
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "mlpval.json",
                                                     "validation_card.md"]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'<section id="([^"]+)"', page) == SECTION_IDS
    assert re.findall(r'id="potential-([^"]+)"', page) == ["sw", "scaled"]

    # both potentials side by side, and again each in its own block
    alts = _images(page)
    assert sorted(alts) == sorted(PLOTS * 3)
    assert _images(_section(page, "comparison")) == list(PLOTS)
    comparison = _rows(_section(page, "comparison"))
    assert [r[:4] for r in comparison[:2]] == [["scaled", "ref", "all", "6"],
                                               ["sw", "ref", "all", "6"]]
    assert comparison[0][8] == "0.8521"  # F RMSE (eV/Å) of the scaled forces
    overview = _section(page, "overview")
    assert "6 tests" in overview
    assert "<b>sw</b> (builtin, sha256 " in overview and "<b>scaled</b> (factory" in overview

    # tests and thresholds: the failing test is marked
    tests = {r[0]: r[1:] for r in _rows(_section(page, "tests"))}
    assert len(tests) == 6
    assert tests["test_suite.py::test_forces[scaled-ref]"] == [
        "failed", "force_rmse 0.8521 <= 0.2 eV/Å FAIL"]
    assert tests["test_suite.py::test_forces[sw-ref]"][0] == "passed"
    assert tests["test_suite.py::test_forces[sw-ref]"][1].endswith("<= 0.2 eV/Å ok")
    assert re.fullmatch(r"energy_rmse\[bulk\] \S+ <= 0\.005 eV/atom ok",
                        tests["test_suite.py::test_bulk_energy[scaled-ref]"][1])
    assert re.search(r'<td>test_suite\.py::test_forces\[scaled-ref\]</td>'
                     r'<td class="fail">failed</td><td class="fail">', page)
    assert _section(page, "tests").count('class="fail"') == 2

    checks = _rows(_section(page, "checks"))
    assert [(r[0], r[1], r[-1]) for r in checks] == [("scaled", "translation", "ok"),
                                                     ("sw", "translation", "ok")]
    assert "No baseline was compared" in _section(page, "baseline")
    assert "No cost tests ran" in _section(page, "cost")

    card = (out / "validation_card.md").read_text(encoding="utf-8")
    assert html.escape(card) in _section(page, "card")
    lines = card.splitlines()
    assert any(re.fullmatch(r"\| sw \| builtin \| `sw` \| `[0-9a-f]{64}` \|", x) for x in lines)
    assert f"| scaled | factory | `{SCALED}` | `none (code-defined)` |" in lines
    assert "- [x] Comparison of several potentials on the same data" in lines
    assert "- [x] Physical invariances and consistency of forces and stress" in lines
    assert "- [ ] Internal k-fold cross-validation errors" in lines
    assert any(x.startswith("| scaled | ref | all | 6 |") and "| 0.8521 |" in x
               for x in lines)

    text = (out / "mlpval.json").read_text(encoding="utf-8")
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert doc["schema"] == "pytest-mlpval/1"
    assert set(doc["potentials"]) == {"sw", "scaled"} and set(doc["datasets"]) == {"ref"}
    assert len(doc["tests"]) == 6
    assert "force_ref" not in text and "arrays" not in text  # the plot data stays out


@needs_mpl
def test_report_is_the_same_under_xdist(pytester, run, plugin_args, reference_file):
    """Records (with the plot arrays) reach the controller, which writes the report:
    with -n 2 it has the same sections, blocks, images and rows as without."""
    pytester.makepyfile(test_suite=SUITE.format(imports=""))
    result = run(*plugin_args, *_args(reference_file, "--mlpval-report=out",
                                      "--mlpval-json=out.json"))
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([f"mlpval: wrote {pytester.path / 'out' / 'index.html'}"])
    page = (pytester.path / "out" / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'<section id="([^"]+)"', page) == SECTION_IDS
    assert re.findall(r'id="potential-([^"]+)"', page) == ["sw", "scaled"]
    assert sorted(_images(page)) == sorted(PLOTS * 3)
    for pot in ("sw", "scaled"):
        block = page.split(f'id="potential-{pot}"')[1].split('<div class="potential"')[0]
        assert sorted(_images(block.split('<section id="checks">')[0])) == sorted(PLOTS)
    tests = sorted(_rows(_section(page, "tests")))
    assert [r[:2] for r in tests] == [
        ["test_suite.py::test_bulk_energy[scaled-ref]", "passed"],
        ["test_suite.py::test_bulk_energy[sw-ref]", "passed"],
        ["test_suite.py::test_forces[scaled-ref]", "failed"],
        ["test_suite.py::test_forces[sw-ref]", "passed"]]
    assert "No physics checks ran" in _section(page, "checks")
    # the report's JSON is the run's JSON document
    report_doc = read_json(pytester.path / "out" / "mlpval.json")
    json_doc = read_json(pytester.path / "out.json")
    for doc in (report_doc, json_doc):
        doc.pop("datetime")
    assert report_doc == json_doc


@needs_mpl
def test_report_with_baseline_comparison(pytester, run, reference_file):
    pytester.makepyfile(test_suite=SUITE.format(imports=""))
    data = f"--mlpval-dataset=ref={reference_file},{LABELS}"
    run("--potential=sw", data, "--mlpval-save-baseline=base.json").assert_outcomes(passed=2)
    # the same name, worse forces: every force metric regresses
    result = run(f"--potential=sw={SCALED}", data, "--mlpval-compare=base.json",
                 "--mlpval-report=out")
    result.assert_outcomes(failed=2)
    page = (pytester.path / "out" / "index.html").read_text(encoding="utf-8")
    section = _section(page, "baseline")
    counts = re.search(r"<p>Baseline (.*?): (\d+) regressed, (\d+) improved, (\d+) new, "
                       r"(\d+) compared records, (\d+) records without baseline entry</p>",
                       section)
    assert counts, section[:500]
    path, regressed, improved, new, compared, missing = counts.groups()
    assert path == str(pytester.path / "base.json")
    assert (int(improved), int(new), int(compared), int(missing)) == (0, 0, 3, 0)
    rows = _rows(section)
    assert int(regressed) == len(rows) > 0
    assert {r[-1] for r in rows} == {"regressed"}
    assert {r[2] for r in rows} == {"all", "bulk"}
    assert ["sw", "ref", "all", "force_rmse"] in [r[:4] for r in rows]
    assert section.count('<td class="fail">regressed</td>') == len(rows)
    assert "force_rmse" in result.stdout.str()  # the same regressions in the summary


def test_report_needs_matplotlib(pytester, run, monkeypatch):
    find_spec = importlib.util.find_spec

    def without_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            return None
        return find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_matplotlib)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run("--potential=sw", "--mlpval-report=out")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --mlpval-report='out': matplotlib is not installed "
                                 "(pip install 'pytest-mlpval[[]plot[]]')"])
    assert not (pytester.path / "out").exists()
    # only the report needs it
    run("--potential=sw").assert_outcomes(passed=1)


# A registered protocol whose result draws itself (Result.figure), with no "figure" key
# in its report_data: the report finds the figure through the result's class.
FIGURED_PROTOCOL = """
from dataclasses import dataclass

from pytest_mlpval.protocols.base import Result, Settings, register


def stretch_figure(per_potential):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    for name, data in per_potential.items():
        ax.plot(data["lattice_A"], data["energy_eV"], label=name)
    ax.legend()
    return fig


@dataclass(frozen=True)
class StretchSettings(Settings):
    lattices_A: tuple = (5.3, 5.43, 5.6)


@dataclass(frozen=True)
class StretchResult(Result):
    protocol = "stretch"
    figure = staticmethod(stretch_figure)
    lattices_A: tuple
    energies_eV: tuple

    def metrics(self):
        return {"lowest_energy_eV": min(self.energies_eV)}

    def units(self):
        return {"lowest_energy_eV": "eV/atom"}

    def report_data(self):
        return {"lattice_A": list(self.lattices_A), "energy_eV": list(self.energies_eV)}


def stretch(calc, settings):
    from ase.build import bulk

    energies = []
    for a in settings.lattices_A:
        atoms = bulk("Si", "diamond", a=a)
        atoms.calc = calc
        energies.append(atoms.get_potential_energy() / len(atoms))
    return StretchResult(tuple(settings.lattices_A), tuple(energies))


register("stretch-report", stretch, StretchSettings, StretchResult)
"""


@needs_mpl
def test_report_draws_the_figure_of_a_registered_protocols_result(pytester, run):
    pytester.makepyfile(stretch_protocol=FIGURED_PROTOCOL)
    pytester.makeconftest("import stretch_protocol  # registers the protocol\n")
    pytester.makepyfile(test_stretch="""
        def test_stretch(mlpval):
            mlpval.run_protocol("stretch-report")
    """)
    result = run("--potential=sw", f"--potential=scaled={SCALED}", "--mlpval-report=out")
    result.assert_outcomes(passed=2)
    section = _section((pytester.path / "out" / "index.html").read_text(encoding="utf-8"),
                       "protocols")
    assert "failed" not in section
    assert re.findall(r"<h3>(.*?)</h3>", section) == ["stretch-report (all)"]
    assert _images(section) == ["stretch-report all"]  # one figure for both potentials
