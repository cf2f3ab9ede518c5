"""A campaign result that several tests of a run use is computed once per process: the
in-memory memo of :func:`pytest_mlpval.campaign.run_campaign` (whenever a cache folder is
given), keyed like the disk cache, with the calculator object in place of the content
hash for a potential that has none (a factory, which has no disk cache).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ase.build import bulk

from pytest_mlpval.campaign import run_campaign
from pytest_mlpval.campaign_cache import RESULT_MEMO, Cache
from pytest_mlpval.potentials import Potential, PotentialInfo, load_potential

CALLS: list[int] = []


def counting_task(calc, item):
    CALLS.append(item)
    atoms = bulk("Si", "diamond", 5.43 + 0.01 * item, cubic=True)
    atoms.calc = calc
    return {"energy_eV": float(atoms.get_potential_energy()), "atoms": atoms}


@pytest.fixture(autouse=True)
def fresh():
    RESULT_MEMO.clear()
    CALLS.clear()
    yield
    RESULT_MEMO.clear()


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw")


def _run(potential, cache_dir, n=3):
    return run_campaign("demo-once", counting_task, range(n), potential, {"n": n},
                        version=1, cache_dir=cache_dir)


def test_factory_campaign_runs_once_per_process(sw, tmp_path):
    factory = Potential(PotentialInfo("made", "pkg:make", "factory"), sw.calculator)
    first = _run(factory, tmp_path)
    assert len(CALLS) == 3 and first.n_from_cache == 0
    second = _run(factory, tmp_path)
    assert len(CALLS) == 3 and second.n_from_cache == 3 and second.executor == "cache"
    assert [i.value["energy_eV"] for i in second.items] == \
        [i.value["energy_eV"] for i in first.items]
    # copies: what one test does to its result does not reach the next
    second.items[0].value["atoms"].positions[0] += 1.0
    third = _run(factory, tmp_path)
    assert (third.items[0].value["atoms"].positions[0]
            == first.items[0].value["atoms"].positions[0]).all()
    # no file for a model without a content hash; another run's folder or calculator,
    # or no cache at all, computes again
    assert list(tmp_path.iterdir()) == []
    _run(factory, tmp_path / "elsewhere")
    _run(Potential(factory.info, load_potential("sw").calculator), tmp_path)
    _run(factory, None)
    assert len(CALLS) == 3 + 3 * 3


def test_hashed_campaign_is_not_read_again_unless_its_file_changed(sw, tmp_path,
                                                                   monkeypatch):
    first = _run(sw, tmp_path)
    reads = []
    original = Cache.read
    monkeypatch.setattr(Cache, "read", lambda self: reads.append(1) or original(self))
    again = _run(sw, tmp_path)
    assert again.n_from_cache == 3 and reads == [] and len(CALLS) == 3
    # a file changed since (repaired, edited, another process): read, not remembered
    path = Path(first.cache_path)
    lines = path.read_text("utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:3]), "utf-8")  # the header and two items
    resumed = _run(sw, tmp_path)
    assert reads == [1] and resumed.n_from_cache == 2 and len(CALLS) == 4


def test_a_failed_item_is_computed_again(sw, tmp_path):
    def flaky(calc, item):  # a local task: runs in this process
        CALLS.append(item)
        if item == 1 and CALLS.count(1) == 1:
            raise RuntimeError("transient")
        return {"item": item}

    factory = Potential(PotentialInfo("made", "pkg:make", "factory"), sw.calculator)
    first = run_campaign("demo-flaky", flaky, range(3), factory, None, version=1,
                         cache_dir=tmp_path)
    assert [i.ok for i in first.items] == [True, False, True]
    second = run_campaign("demo-flaky", flaky, range(3), factory, None, version=1,
                          cache_dir=tmp_path)
    assert all(i.ok for i in second.items) and CALLS == [0, 1, 2, 1]


COUNTING = """
from counting_calls import CALLS
from pytest_mlpval.potentials import load_potential


def pytest_mlpval_load_potential(config, spec):
    if spec != "counting":
        return None
    calc = load_potential("sw").calculator
    inner = calc.calculate

    def calculate(*args, **kwargs):
        CALLS[0] += 1
        return inner(*args, **kwargs)

    calc.calculate = calculate
    return calc
"""

TWO_TESTS = """
from counting_calls import CALLS
from pytest_mlpval.protocols.rss import RssSettings, run_rss

PARAMS = RssSettings(n_structures=2, atoms_per_cell=(2, 2), max_steps=30, seed=0,
                     references=("diamond",))
SEEN = {}


def test_first(mlpval):
    assert CALLS[0] == 0
    result = mlpval.run(run_rss, PARAMS)
    SEEN["calls"] = CALLS[0]
    assert SEEN["calls"] > 0 and result.n_from_cache == 0


def test_second(mlpval):
    result = mlpval.run(run_rss, PARAMS)
    assert CALLS[0] == SEEN["calls"]  # no calculator call: search and references
    assert result.n_from_cache == 2 and result.references["diamond"]["volume_per_atom_A3"] > 19
"""


def test_two_tests_of_a_run_share_the_search_of_a_factory(pytester):
    """The issue's case: a potential without a content hash (here one that a
    pytest_mlpval_load_potential hook makes; a factory alike) ran the search (and relaxed
    its reference crystals) once per test."""
    pytester.syspathinsert()
    pytester.makeconftest(COUNTING)
    pytester.makepyfile(counting_calls="CALLS = [0]\n", test_two=TWO_TESTS)
    result = pytester.runpytest("-p", "no:benchmark", "--potential=counting")
    result.assert_outcomes(passed=2)


LOCKING = """
import os
import sys
import time

from pytest_mlpval.campaign import run_campaign
from pytest_mlpval.potentials import Potential, PotentialInfo

LOG = sys.argv[1]


def task(calc, item):
    with open(LOG, "a") as handle:
        handle.write(f"{os.getpid()} {item}\\n")
    time.sleep(1.0)
    return {"item": item}


if __name__ == "__main__":
    model = Potential(PotentialInfo("m", "m", "builtin", sha256="ab" * 32), object())
    result = run_campaign("demo-lock", task, range(3), model, None, version=1,
                          cache_dir=sys.argv[2])
    print("FROM_CACHE", result.n_from_cache, all(i.ok for i in result.items))
"""


def test_two_processes_compute_a_campaign_once(tmp_path):
    """Two xdist workers that need the same campaign at the same time: the second waits
    for the first (a lock beside the cache file) and reads what it computed."""
    import subprocess
    import sys
    import time

    script, log, cache = tmp_path / "locking.py", tmp_path / "log.txt", tmp_path / "cache"
    script.write_text(LOCKING)
    command = [sys.executable, str(script), str(log), str(cache)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the first is computing its first item
    second = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=120)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0]
    assert len(log.read_text().splitlines()) == 3  # each item once, by the first
    assert "FROM_CACHE 0 True" in outputs[0] and "FROM_CACHE 3 True" in outputs[1]
