"""The physics checks (``pytest_mlpval.physics_tests``) cached across runs: a rerun of an
unchanged candidate passes without calling its calculator; a change of the model, the
tolerances or Hypothesis' settings searches again; a failure is judged again on its
kept structure, never served as a verdict; a damaged entry warns and is recomputed;
``--mlpval-no-cache`` and a candidate without identity keep nothing; xdist workers share.

The candidates are Stillinger-Weber factories declaring ``mlpval_identity`` that log
each calculator call made while a test runs (not while loading), so a test can count them.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from hypothesis import settings

HAVE_XDIST = importlib.util.find_spec("xdist") is not None

CANDIDATE = """
import os
from pathlib import Path

from ase.calculators.calculator import Calculator, all_changes
from pytest_mlpval import load_potential

SW = load_potential("sw").calculator
LOG = Path(__file__).with_name("calls.txt")


class Counting(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, force_scale=1.0):
        super().__init__()
        self.force_scale = force_scale

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        test = os.environ.get("PYTEST_CURRENT_TEST", "")
        if test.endswith("(call)"):
            with LOG.open("a") as log:
                log.write(test.split("::")[-1].split("[")[0] + "\\n")
        work = self.atoms.copy()
        work.calc = SW
        energy = work.get_potential_energy()
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": self.force_scale * work.get_forces(),
                        "stress": work.get_stress()}


def counted():
    return Counting()


def scaled():  # forces x1.5: the force-gradient check fails
    return Counting(1.5)


def anonymous():  # no identity: nothing is cached across runs
    return Counting()


counted.mlpval_identity = os.environ.get("COUNTED_IDENTITY", "counted-1")
scaled.mlpval_identity = "scaled-1"
"""

CONFTEST = """
import os

from hypothesis import settings

settings.register_profile("cache-test", deadline=None,
                          max_examples=int(os.environ.get("CACHE_TEST_EXAMPLES", "2")))
settings.load_profile("cache-test")
"""

SUITE = "from pytest_mlpval.physics_tests import *  # noqa: F401,F403\n"

CHEAP = ["translation", "rotation", "permutation", "force_sum", "extensivity", "finite"]
# the tests' names without the prefix, and their checks
TESTS = {"translation_invariance": "translation", "rotation_equivariance": "rotation",
         "permutation_invariance": "permutation", "forces_sum_to_zero": "force_sum",
         "extensivity": "extensivity", "finite_outputs": "finite",
         "forces_are_energy_gradient": "force_gradient",
         "stress_is_strain_derivative": "stress_gradient",
         "smooth_across_cutoff": "smoothness"}
# this suite turns warnings into errors; the runs it makes show them
WARN = ["-W", "always::pytest_mlpval.campaign_cache.CacheWarning"]
SOME = "-k=translation or forces_are_energy or stress_is_strain"
FROM_CACHE = "from the physics-check cache"


@pytest.fixture
def suite(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(candidate=CANDIDATE, test_physics=SUITE)
    pytester.syspathinsert()
    for name in ("COUNTED_IDENTITY", "CACHE_TEST_EXAMPLES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "candidate", raising=False)
    profile = settings.get_current_profile_name()
    yield pytester
    settings.load_profile(profile)  # the suite's conftest loaded its own in this process


def go(suite, run, candidate="counted", *args):
    """A run of the suite; the calls it made, by test (the log is emptied)."""
    log = suite.path / "calls.txt"
    log.unlink(missing_ok=True)
    result = run(f"--potential=candidate:{candidate}", "--mlpval-species=Si", "-rA",
                 "-p", "no:randomly", *args)
    calls: dict[str, int] = {}
    for line in log.read_text().split() if log.exists() else []:
        calls[line] = calls.get(line, 0) + 1
    return result, calls


def entries(suite):
    folder = suite.path / ".pytest_cache" / "d" / "mlpval-checks"
    return sorted(folder.iterdir()) if folder.exists() else []


def physics_rows(result):
    """The physics table's rows (potential, check, structures, worst, tolerance, ...)."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if " mlpval physics checks " in line)
    rows = []
    for line in lines[start + 4:]:
        if not line.strip() or line.startswith(("=", "-", "mlpval:")):
            break
        rows.append(line.split())
    return rows


def test_a_rerun_passes_every_check_without_calling_the_calculator(suite, run):
    """Every cacheable check: the second run makes no calculator call in any test, says
    where each pass came from, and shows the same physics table."""
    first, calls = go(suite, run, "counted", "-k=not cost")
    first.assert_outcomes(passed=9)
    assert set(calls) == {f"test_mlpval_{name}" for name in TESTS}, calls
    assert FROM_CACHE not in first.stdout.str()
    assert len(entries(suite)) == 9
    second, calls = go(suite, run, "counted", "-k=not cost")
    second.assert_outcomes(passed=9)
    assert calls == {}
    for check in TESTS.values():
        second.stdout.fnmatch_lines([f"mlpval: {check}: passed * structures (* s when "
                                     f"searched), {FROM_CACHE} *.json"])
    assert physics_rows(second) == physics_rows(first)
    assert [row[2] for row in physics_rows(second)] == ["2"] * 9  # structures tried


@pytest.mark.parametrize("change", [
    pytest.param({"env": {"COUNTED_IDENTITY": "counted-2"}}, id="model-hash"),
    pytest.param({"args": ["--mlpval-precision=float32"]}, id="tolerances"),
    pytest.param({"env": {"CACHE_TEST_EXAMPLES": "3"}}, id="max-examples"),
    pytest.param({"args": ["--hypothesis-seed=7"]}, id="hypothesis-seed"),
])
def test_a_changed_key_searches_again(suite, run, monkeypatch, change):
    first, calls = go(suite, run, "counted", SOME)
    first.assert_outcomes(passed=3)
    assert set(calls) == {"test_mlpval_translation_invariance",
                          "test_mlpval_forces_are_energy_gradient",
                          "test_mlpval_stress_is_strain_derivative"}
    for name, value in change.get("env", {}).items():
        monkeypatch.setenv(name, value)
    changed, again = go(suite, run, "counted", SOME, *change.get("args", []))
    changed.assert_outcomes(passed=3)
    assert set(again) == set(calls), again
    assert FROM_CACHE not in changed.stdout.str()
    assert len(entries(suite)) == 6  # the old entries stay beside the new ones
    # and the changed run is itself served from the cache the next time
    _, third = go(suite, run, "counted", SOME, *change.get("args", []))
    assert third == {}


def failure_message(result, check):
    """The failure's message as pytest prints it: its first line ("<check> check
    failed ...") and the lines indented under it, down to the structure's last line
    (without Hypothesis' and the cache's notes, which follow at the first line's
    indentation)."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if f"{check} check failed" in line)
    first = lines[start]
    indent = first[:len(first) - len(first[1:].lstrip())] + "  "
    message = [first]
    for line in lines[start + 1:]:
        if not line.startswith(indent):
            break
        message.append(line)
    return message


def test_a_failure_is_judged_again_on_its_structure_never_served(suite, run):
    first, calls = go(suite, run, "scaled", "-k=forces_are_energy or translation")
    first.assert_outcomes(failed=1, passed=1)
    message = failure_message(first, "force_gradient")
    assert "structure (" in "\n".join(message)  # down to the structure itself
    second, again = go(suite, run, "scaled", "-k=forces_are_energy or translation")
    second.assert_outcomes(failed=1, passed=1)
    assert failure_message(second, "force_gradient") == message
    second.stdout.fnmatch_lines(["E * mlpval: the failing structure kept in the "
                                 "physics-check cache (*.json), judged again; "
                                 "--mlpval-no-cache searches anew"])
    # the one kept structure is judged: fewer calls than the search and its replay
    assert 0 < again["test_mlpval_forces_are_energy_gradient"] \
        < calls["test_mlpval_forces_are_energy_gradient"]
    assert "test_mlpval_translation_invariance" not in again  # a pass is served
    (row,) = [r for r in physics_rows(second) if r[1] == "force_gradient"]
    assert row[-1] == "FAIL"


def test_a_damaged_entry_warns_and_is_computed_again(suite, run):
    go(suite, run, "counted", "-k=translation")[0].assert_outcomes(passed=1)
    (entry,) = entries(suite)
    text = entry.read_text()
    entry.write_text(text[:len(text) // 2])  # a run cut short
    result, calls = go(suite, run, "counted", "-k=translation", *WARN)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines([f"*CacheWarning: physics-check cache {entry} "
                                 "(translation): it is not valid JSON (a run cut short?); "
                                 "the file is removed and the check computed again"])
    assert set(calls) == {"test_mlpval_translation_invariance"}
    assert json.loads(entry.read_text())["entry"]["outcome"] == "passed"  # whole again
    # a pass recorded beyond its tolerance is not a pass either
    data = json.loads(entry.read_text())
    data["entry"]["result"]["value"] = 1.0
    entry.write_text(json.dumps(data))
    result, calls = go(suite, run, "counted", "-k=translation", *WARN)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*CacheWarning: *beyond its tolerance*"])
    assert set(calls) == {"test_mlpval_translation_invariance"}


@pytest.mark.parametrize("candidate, args", [
    pytest.param("counted", ["--mlpval-no-cache"], id="no-cache-option"),
    pytest.param("anonymous", [], id="no-identity"),
])
def test_nothing_is_kept_without_cache_or_identity(suite, run, candidate, args):
    for _ in range(2):
        result, calls = go(suite, run, candidate, "-k=translation", *args)
        result.assert_outcomes(passed=1)
        assert set(calls) == {"test_mlpval_translation_invariance"}
        assert FROM_CACHE not in result.stdout.str()
        assert entries(suite) == []


@pytest.mark.skipif(not HAVE_XDIST, reason="needs pytest-xdist")
def test_xdist_workers_keep_entries_a_later_run_reads(suite, run):
    """Two workers write their entries (one run with -n 2: starting workers costs
    seconds); a run without workers then serves both."""
    two = "-k=translation or forces_sum"
    first, calls = go(suite, run, "counted", two, "-n", "2")
    first.assert_outcomes(passed=2)
    assert len(calls) == 2
    assert [p.suffix for p in entries(suite)] == [".json"] * 2  # no temporary file left
    second, calls = go(suite, run, "counted", two)
    second.assert_outcomes(passed=2)
    assert calls == {}
    assert second.stdout.str().count(FROM_CACHE) == 2
