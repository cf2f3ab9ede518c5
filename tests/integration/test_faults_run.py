"""A run never ends without its summary, JSON and report, whatever the candidates do, and
a non-finite value never passes: several candidates of very different quality, one of
which produces NaN or inf in an error metric, a protocol metric and a physics check; an
end-of-run writer that fails; physics checks on calculators without ``free_energy``, in
float32, that raise or that have no stress; a validation card fed markup."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys

import pytest

HAVE_XDIST = importlib.util.find_spec("xdist") is not None

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
if HAVE_MPL:  # in-process runs drop what they import; matplotlib cannot be imported twice
    for _name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg",
                  "pytest_mlpval.plots", "pytest_mlpval.report", "pytest_mlpval.card"):
        importlib.import_module(_name)
needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="needs matplotlib (plot extra)")

CONFTEST = """
from hypothesis import Phase, settings

settings.register_profile("faults", max_examples=2, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate])
settings.load_profile("faults")
"""

# Stillinger-Weber, except on cells of fewer than 8 atoms (the fake protocol's 2-atom
# cell, the physics checks' generated structures): there energy, forces and stress are
# FAULT. The dataset's 8- and 16-atom cells are predicted as by sw, so its errors are
# finite and the run has three candidates of very different quality on the same data.
CANDIDATE = """
import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from pytest_mlpval import load_potential

FAULT = float({fault!r})
SW = load_potential("sw").calculator


class SmallCellFault(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = SW
        energy, forces = work.get_potential_energy(), work.get_forces()
        stress = work.get_stress()
        if len(work) < 8:
            energy, forces, stress = FAULT, np.full_like(forces, FAULT), np.full_like(stress, FAULT)
        self.results = {{"energy": energy, "free_energy": energy, "forces": forces,
                        "stress": stress}}


def bad():
    return SmallCellFault()
"""

SUITE = """
import dataclasses

import numpy as np
import pytest
from ase.build import bulk

from pytest_mlpval.metrics import compute_errors
from pytest_mlpval.physics_tests import test_mlpval_translation_invariance  # noqa: F401

FAULT = float({fault!r})


@pytest.mark.mlpval_thresholds(force_rmse=0.5)
def test_forces(mlpval_errors):
    pass


def test_error_metric(mlpval, mlpval_dataset, mlpval_predictions):
    # errors of the candidate's own evaluation (say, on another code path): for 'bad'
    # one structure's energy is FAULT
    predictions = mlpval_predictions
    if mlpval.potential.name == "bad":
        energy = np.array(predictions.energy, dtype=float)
        energy[2] = FAULT
        predictions = dataclasses.replace(predictions, energy=energy)
    mlpval.record(compute_errors(mlpval_dataset, predictions), mlpval_dataset)


class Lattice:
    def __init__(self, energy_eV):
        self.energy_eV = energy_eV

    def metrics(self):
        return {{"energy_per_atom_eV": self.energy_eV, "n_structures": 1.0}}

    def units(self):
        return {{"energy_per_atom_eV": "eV/atom", "n_structures": ""}}


def run_lattice(potential, **options):
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = potential.calculator
    return Lattice(atoms.get_potential_energy() / len(atoms))


def test_protocol_metric(mlpval):
    mlpval.run(run_lattice)
"""

# what each test of SUITE says for 'bad': the value, which metric, and where
FAILS = {
    "test_error_metric": r"energy_rmse = (nan|inf) eV/atom for potential 'bad', "
                         r"dataset 'ref'",
    "test_protocol_metric": r"energy_per_atom_eV = (nan|inf) eV/atom for potential 'bad', "
                            r"protocol 'lattice'",
    "test_mlpval_translation_invariance": r"translation check failed for potential 'bad': "
                                          r"NaN eV/atom > tolerance",
}


def _strict(text: str) -> dict:
    def reject(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture
def suite(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.syspathinsert()
    # in-process runs import the physics tests afresh, with the suite's profile
    monkeypatch.delitem(sys.modules, "pytest_mlpval.physics_tests", raising=False)
    return pytester


@needs_mpl
@pytest.mark.parametrize("fault, plugin_args", [
    pytest.param("nan", [], id="nan"), pytest.param("inf", [], id="inf"),
    pytest.param("nan", ["-n", "2"], id="nan-xdist-2",
                 marks=pytest.mark.skipif(not HAVE_XDIST, reason="needs pytest-xdist"))])
def test_several_candidates_one_faulty_end_with_summary_json_report(suite, run, plugin_args,
                                                                     dataset_arg, fault):
    from hypothesis import settings

    profile = settings.get_current_profile_name()
    suite.makepyfile(candidate=CANDIDATE.format(fault=fault),
                     test_suite=SUITE.format(fault=fault))
    result = run(*plugin_args, "--potential=sw",
                 "--potential=shifted=pytest_mlpval.testing:sw_shifted",
                 "--potential=bad=candidate:bad", "--mlpval-species=Si",
                 f"--mlpval-dataset={dataset_arg}", "--mlpval-json=out.json",
                 "--mlpval-report=report", "-p", "no:randomly")
    settings.load_profile(profile)  # the suite's conftest loaded its own in this process
    assert result.ret == 1
    # every test of 'bad' that met the fault fails, and says which value, where
    result.assert_outcomes(passed=9, failed=3)
    failed = {m.group(1) for m in re.finditer(r"^FAILED test_suite\.py::(\w+)\[bad[^\]]*\]",
                                              result.stdout.str(), re.M)}
    assert failed == set(FAILS)
    text = result.stdout.str()
    for test, message in FAILS.items():
        assert re.search(message, text), test
    assert "non-finite metric value(s) recorded" in text
    # the summary tables: errors of all three candidates, the protocol with its NaN/inf
    result.stdout.re_match_lines([r"^=+ mlpval summary =+$"])
    for pot in ("sw", "shifted", "bad"):
        result.stdout.re_match_lines([rf"^{pot}\s+ref\s+all\s+6\s"])
    shown = "NaN" if fault == "nan" else "inf"
    result.stdout.re_match_lines([rf"^bad\s+lattice\s+all\s+energy_per_atom_eV\s+{shown}\s"])
    result.stdout.re_match_lines([r"^bad\s+translation\s+\d+\s+NaN\s.*\sFAIL$"])
    assert "mlpval: ERROR" not in text and "INTERNALERROR" not in text
    # strict JSON, with the non-finite values flagged
    document = _strict((suite.path / "out.json").read_text(encoding="utf-8"))
    flagged = {(e["potential"], e["kind"], e["metric"]) for e in document["non_finite"]
               if not e.get("not_measured")}
    assert ("bad", "protocol", "energy_per_atom_eV") in flagged
    assert ("bad", "errors", "energy_rmse") in flagged
    assert ("bad", "checks", "translation") in flagged
    assert {p for p, _, _ in flagged} == {"bad"}
    records = [r for t in document["tests"] for r in t["records"]
               if r["potential"] == "bad" and r["kind"] == "protocol"]
    assert records[0]["metrics"]["energy_per_atom_eV"] == {
        "value": None, "unit": "eV/atom", "finite": False, "non_finite": fault}
    # the report: all three files, the JSON the same document, the failures on the page
    report = suite.path / "report"
    assert sorted(p.name for p in report.iterdir()) == ["index.html", "mlpval.json",
                                                        "validation_card.md"]
    assert _strict((report / "mlpval.json").read_text(encoding="utf-8"))["non_finite"] \
        == document["non_finite"]
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "could not be made" not in page and "could not be drawn" not in page
    for path in (report / "index.html", report / "mlpval.json",
                 report / "validation_card.md", suite.path / "out.json"):
        assert f"mlpval: wrote {path}" in result.outlines, path


def test_a_sound_run_flags_only_what_was_not_measured(pytester, run, dataset_arg):
    """Force angles of cells whose reference forces are all below 0.1 eV/Å are not
    measured (NaN by design): flagged in the JSON as not_measured, and no failure."""
    pytester.makepyfile(test_suite="def test_errors(mlpval, mlpval_errors):\n"
                        "    mlpval.check(mlpval_errors, config_type='bulk', force_rmse=1)\n")
    result = run("--potential=sw", f"--mlpval-dataset={dataset_arg}", "--mlpval-json=out.json",
                 "--mlpval-details")
    result.assert_outcomes(passed=1)
    document = _strict((pytester.path / "out.json").read_text(encoding="utf-8"))
    assert all(e["not_measured"] for e in document["non_finite"]), document["non_finite"]


# --- each end-of-run writer on its own ---------------------------------------------------

PASSING = "def test_errors(mlpval_errors):\n    pass\n"

# breaks one writer of the run (in this process only: restored at unconfigure)
BREAK_WRITER = """
import pytest_mlpval.fileio
import pytest_mlpval.report
import pytest_mlpval.results

TARGETS = {{"report": (pytest_mlpval.report, "write_report"),
           "json": (pytest_mlpval.fileio, "write_json"),
           "plots": (pytest_mlpval.results.RunResults, "write_plots")}}
SAVED = []


def broken(*args, **kwargs):
    raise RuntimeError("injected failure of the {blocked} writer")


def pytest_configure(config):
    owner, name = TARGETS[{blocked!r}]
    SAVED.append((owner, name, getattr(owner, name)))
    setattr(owner, name, broken)


def pytest_unconfigure(config):
    owner, name, value = SAVED.pop()
    setattr(owner, name, value)
"""


@needs_mpl
@pytest.mark.parametrize("blocked", ["report", "json", "plots"])
def test_a_failing_writer_does_not_stop_the_others(pytester, run, dataset_arg, blocked):
    pytester.makeconftest(BREAK_WRITER.format(blocked=blocked))
    pytester.makepyfile(test_suite=PASSING)
    result = run("--potential=sw", f"--mlpval-dataset={dataset_arg}", "--mlpval-report=report",
                 "--mlpval-json=out.json", "--mlpval-plots=plots", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert result.ret == 1  # the tests passed, but a file the run was asked for is missing
    text = result.stdout.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text
    result.stdout.re_match_lines([r"^=+ mlpval summary =+$", r"^sw\s+ref\s+all\s+6\s"])
    errors = [line for line in result.outlines if line.startswith("mlpval: ERROR")]
    # with write_json broken, the report's copy of the JSON is missing too: two lines
    assert len(errors) == (2 if blocked == "json" else 1), errors
    assert all(f"injected failure of the {blocked} writer" in line for line in errors)
    report = pytester.path / "report"
    expected = {report / "index.html": blocked != "report",
                report / "mlpval.json": blocked not in ("report", "json"),
                report / "validation_card.md": blocked != "report",
                pytester.path / "out.json": blocked != "json"}
    for path, written in expected.items():
        assert path.exists() == written, (path, blocked)
        assert (f"mlpval: wrote {path}" in result.outlines) == written, (path, blocked)
    if blocked != "json":
        _strict((pytester.path / "out.json").read_text(encoding="utf-8"))


UPDATE_HOOK = """
def pytest_mlpval_update_json(config, output):
    output["extra"] = {"ratio": float("nan"), "ok": 1.5}
"""


def test_nan_added_by_a_hook_is_null_and_listed(pytester, run, dataset_arg):
    pytester.makeconftest(UPDATE_HOOK)
    pytester.makepyfile(test_suite=PASSING)
    result = run("--potential=sw", f"--mlpval-dataset={dataset_arg}", "--mlpval-json=out.json")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    document = _strict((pytester.path / "out.json").read_text(encoding="utf-8"))
    assert document["extra"] == {"ratio": None, "ok": 1.5}
    assert {"path": "/extra/ratio", "value": "nan"} in document["non_finite"]


# --- physics checks judge or skip, never crash ------------------------------------------

PHYSICS = "from pytest_mlpval.physics_tests import *  # noqa: F401,F403\n"
CHECKS = ["extensivity", "finite", "force_gradient", "force_sum", "permutation", "rotation",
          "smoothness", "stress_gradient", "translation"]

NO_STRESS = """
from ase.calculators.calculator import Calculator, all_changes
from pytest_mlpval import load_potential

SW = load_potential("sw").calculator


class NoStress(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = SW
        self.results = {"energy": work.get_potential_energy(), "forces": work.get_forces()}


def calc():
    return NoStress()
"""


@pytest.fixture(scope="module")
def structures():
    """A rattled 3-atom cell in a sheared box."""
    from ase import Atoms

    return [Atoms("Si3", positions=[[0, 0, 0], [1.6, 1.5, 0.2], [3.1, 0.4, 1.7]],
                  cell=[[5.2, 0, 0], [0.6, 4.9, 0], [0.3, 0.5, 5.4]], pbc=True)]


#: a shorter smoothness path (60 points instead of 300), for speed
SHORT = {"smoothness": {"distance_A": 0.6}}


# fault -> what every check must do on it: "pass", "fail" (judged: FAIL or ERROR), or
# "no crash" (judge or skip, whatever the verdict)
VERDICTS = {"no_free_energy": "pass", "float32": "pass", "raise": "fail", "nan": "fail",
            "inf": "fail", "wrong_shape": "no crash"}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("fault", list(VERDICTS))
def test_every_check_judges_every_fault(structures, fault, check):
    """A check returns a verdict or raises CheckNotApplicable with a reason: never an
    exception of the calculator's (free_energy missing, a RuntimeError, a wrong shape).
    A float32 model passes with the float32 tolerances."""
    from pytest_mlpval import load_potential
    from pytest_mlpval.protocols.invariance import FLOAT32, FLOAT64, assert_check, run_check
    from pytest_mlpval.testing import FaultyCalculator

    sw = load_potential("sw").calculator
    tolerances = FLOAT32 if fault == "float32" else FLOAT64
    for atoms in structures:
        result = run_check(check, FaultyCalculator(sw, fault), atoms, tolerances,
                           **SHORT.get(check, {}))
        assert result.status in ("ok", "FAIL", "ERROR"), result
        if VERDICTS[fault] == "pass":
            assert result.passed, result
            assert_check(result)
        elif VERDICTS[fault] == "fail":
            assert not result.passed, result
            with pytest.raises(AssertionError, match=f"{check} check"):
                assert_check(result, potential="p")
        if fault == "raise":
            assert result.status == "ERROR"
            assert result.error.startswith("the calculation raised RuntimeError: injected")


def test_float32_model_with_float64_tolerances_is_judged(structures):
    from pytest_mlpval import load_potential
    from pytest_mlpval.protocols.invariance import FLOAT64, run_check
    from pytest_mlpval.testing import FaultyCalculator

    calc = FaultyCalculator(load_potential("sw").calculator, "float32")
    for check in CHECKS:
        for atoms in structures:
            result = run_check(check, calc, atoms, FLOAT64, **SHORT.get(check, {}))
            assert result.status in ("ok", "FAIL")


def test_physics_summary_has_a_row_for_every_check_and_status(suite, run):
    """A candidate whose calculator raises and one without stress: every check judges
    (a failure that says the calculator raised: ERROR) or skips with its reason, and has
    its row in the physics table."""
    from hypothesis import settings

    profile = settings.get_current_profile_name()
    suite.makepyfile(test_physics=PHYSICS, nostress=NO_STRESS)
    result = run("--potential=raises=pytest_mlpval.testing:faulty_raise_at_0",
                 "--potential=nostress=nostress:calc", "--mlpval-species=Si", "-rs",
                 "-p", "no:randomly",
                 # the failing permutation test shrinks for seconds: left out for 'raises'
                 "-k", "not test_mlpval_cost and not (permutation and raises)")
    settings.load_profile(profile)
    # raises fails all its 8 checks, nostress skips the stress check and passes 8
    result.assert_outcomes(passed=8, failed=8, skipped=1)
    rows = {}
    for row in _table_rows(result, "mlpval physics checks"):
        rows.setdefault(row[0], {})[row[1]] = row
    assert sorted(rows) == ["nostress", "raises"]
    for pot, by_check in rows.items():
        # a row for every check, whatever happened
        assert sorted(by_check) == [c for c in CHECKS if (pot, c) != ("raises", "permutation")]
        for check, row in by_check.items():
            expected = {"raises": "ERROR"}.get(pot, "ok")
            if pot == "nostress" and check == "stress_gradient":
                expected = "skipped"
            assert row[-1] == expected, row
    result.stdout.fnmatch_lines(["E * check could not be evaluated for potential 'raises': "
                                 "the calculation raised RuntimeError: injected failure at "
                                 "call *"])
    result.stdout.fnmatch_lines(["SKIPPED * stress_gradient: the calculator does not "
                                 "implement stress"])


def _table_rows(result, title: str) -> list[list[str]]:
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if f" {title} " in line)
    rows = []
    for line in lines[start + 4:]:
        if not line.strip() or line.startswith(("=", "-", "mlpval:")):
            break
        rows.append(line.split())
    return rows


# --- the validation card escapes what it copies ------------------------------------------

def test_card_escapes_markup_and_table_breaking_text():
    from pytest_mlpval.card import validation_card
    from pytest_mlpval.results import RunResults

    evil = "<script>alert(1)</script>|x\ny"
    potential = {"name": "p|<b>", "spec": "mod:f`|<i>", "loader": "factory", "files": [],
                 "sha256": None, "file_sha256": {}, "species": ["Si"]}
    dataset = {"name": "d<script>", "path": "/x.xyz", "sha256": "ab" * 32, "n_structures": 1,
               "n_atoms": 2, "labels": ["energy"], "config_types": [evil, "bulk"]}
    record = {"kind": "errors", "potential": potential, "dataset": dataset, "subset": evil,
              "n_structures": 1, "n_atoms": 2, "metrics": {"energy_rmse": 0.001},
              "units": {"energy_rmse": "eV/atom"}, "thresholds": []}
    results = RunResults()
    results.add("t.py::t", "passed", "call", [record])
    card = validation_card(results, {"version": "1<br>", "datetime": "now"})
    assert "<" not in card and ">" not in card  # no HTML passes through
    # every row of every table has its header's columns: no | or newline broke a cell
    tables, current = [], []
    for line in card.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) == 4  # verdict, potentials, test sets, errors
    for table in tables:
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in table}
        assert len(widths) == 1, table
        assert len(table) == 3, table  # header, rule, one row
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|x y" in card
