"""Campaigns (pytest_mlpval.campaign.run_campaign): in this process, in a local process
pool and on a real Dask cluster on loopback; the per-item disk cache (append, resume,
corrupted lines); failed items and dead workers; progress."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from pytest_mlpval import campaign
from pytest_mlpval.campaign import CampaignError, make_executor, print_progress, run_campaign
from pytest_mlpval.potentials import Potential, PotentialInfo, load_potential
from pytest_mlpval.protocols.base import CampaignOptions

PARAMS = {"rattle_A": 0.05}


def energy_task(calc, item):
    """SW energy of diamond Si rattled with seed ``item`` (module level: pickled)."""
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.positions += np.random.default_rng(item).normal(scale=PARAMS["rattle_A"],
                                                          size=atoms.positions.shape)
    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    atoms.calc = None
    return {"item": item, "energy_eV": energy, "pid": os.getpid(), "atoms": atoms}


def dying_task(calc, item):
    if item == 2:
        os._exit(3)  # the worker process dies without a word
    return energy_task(calc, item)


def raising_task(calc, item):
    if item == 1:
        raise ValueError(f"bad item {item}")
    return energy_task(calc, item)


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw")


@pytest.fixture(scope="module")
def expected(sw):
    """Energies of items 0-5 computed directly."""
    return [energy_task(sw.calculator, i)["energy_eV"] for i in range(6)]


def _energies(result):
    return [item.value["energy_eV"] for item in result.items]


def _records(path):
    return [json.loads(line) for line in Path(path).read_text("utf-8").splitlines()[1:]]


def test_in_process_and_two_workers_agree(sw, expected):
    local = run_campaign("demo", energy_task, range(6), sw, PARAMS, version=1)
    pool = run_campaign("demo", energy_task, range(6), sw, PARAMS, version=1, workers=2)
    assert (local.executor, local.workers, pool.executor, pool.workers) == (
        "local", 0, "processes", 2)
    assert _energies(local) == expected
    np.testing.assert_allclose(_energies(pool), expected, rtol=0, atol=1e-12)
    assert {item.value["pid"] for item in local.items} == {os.getpid()}
    assert os.getpid() not in {item.value["pid"] for item in pool.items}
    assert all(item.ok and item.seconds > 0 and not item.from_cache for item in pool.items)


def test_cache_appends_and_resumes(sw, expected, tmp_path):
    half = run_campaign("demo", energy_task, range(3), sw, PARAMS, version=1, cache_dir=tmp_path)
    assert half.n_from_cache == 0 and len(_records(half.cache_path)) == 3
    full = run_campaign("demo", energy_task, range(6), sw, PARAMS, version=1, cache_dir=tmp_path)
    assert full.cache_path == half.cache_path
    assert [i.from_cache for i in full.items] == [True] * 3 + [False] * 3
    assert _energies(full) == expected and len(_records(full.cache_path)) == 6
    again = run_campaign("demo", energy_task, range(6), sw, PARAMS, version=1, cache_dir=tmp_path)
    assert again.n_from_cache == 6 and again.task_seconds == 0.0
    assert again.executor == "cache" and again.seconds == 0.0
    assert _energies(again) == expected
    atoms = again.items[4].value["atoms"]  # ASE Atoms come back from extxyz text
    np.testing.assert_allclose(atoms.positions, full.items[4].value["atoms"].positions,
                               atol=1e-7)
    # an interrupted run: the file holds the header and two items
    lines = Path(full.cache_path).read_text("utf-8").splitlines(keepends=True)
    Path(full.cache_path).write_text("".join(lines[:3]), "utf-8")
    resumed = run_campaign("demo", energy_task, range(6), sw, PARAMS, version=1,
                           cache_dir=tmp_path)
    assert resumed.n_from_cache == 2 and _energies(resumed) == expected
    # other parameters, other key
    other = run_campaign("demo", energy_task, range(2), sw, {"rattle_A": 0.06}, version=1,
                         cache_dir=tmp_path)
    assert other.n_from_cache == 0 and other.cache_path != full.cache_path


def _cut_short(sw, tmp_path):
    first = run_campaign("demo", energy_task, range(5), sw, PARAMS, version=1,
                         cache_dir=tmp_path)
    with open(first.cache_path, "a", encoding="utf-8") as handle:
        handle.write('{"index": 5, "ok": tr')  # a crash in the middle of a line
    return first


def test_corrupted_last_line_is_tolerated(sw, expected, tmp_path):
    _cut_short(sw, tmp_path)
    with pytest.warns(campaign.CacheWarning, match="line 7 is not valid JSON"):
        rerun = run_campaign("demo", energy_task, range(6), sw, PARAMS, version=1,
                             cache_dir=tmp_path)
    assert rerun.n_from_cache == 5 and not rerun.items[5].from_cache
    assert _energies(rerun) == expected


def test_record_after_a_corrupted_line_is_kept(sw, tmp_path):
    _cut_short(sw, tmp_path)
    with pytest.warns(campaign.CacheWarning):
        run_campaign("demo", energy_task, range(6), sw, PARAMS, version=1, cache_dir=tmp_path)
    third = run_campaign("demo", energy_task, range(6), sw, PARAMS, version=1,
                         cache_dir=tmp_path)
    assert third.n_from_cache == 6


def test_failed_items_are_kept_and_not_cached(sw, expected, tmp_path):
    result = run_campaign("demo", raising_task, range(4), sw, PARAMS, version=1, cache_dir=tmp_path)
    assert [item.ok for item in result.items] == [True, False, True, True]
    assert result.failures[0].error == "ValueError: bad item 1"
    assert result.items[1].value is None
    assert sorted(r["index"] for r in _records(result.cache_path)) == [0, 2, 3]
    again = run_campaign("demo", raising_task, range(4), sw, PARAMS, version=1, cache_dir=tmp_path)
    assert [item.from_cache for item in again.items] == [True, False, True, True]


def test_worker_death_fails_only_that_item(sw, expected):
    result = run_campaign("demo", dying_task, range(5), sw, PARAMS, version=1, workers=2)
    assert [item.ok for item in result.items] == [True, True, False, True, True]
    assert result.items[2].error.startswith("worker died")
    np.testing.assert_allclose([result.items[i].value["energy_eV"] for i in (0, 1, 3, 4)],
                               [expected[i] for i in (0, 1, 3, 4)], rtol=0, atol=1e-12)


def test_progress_is_reported(sw, tmp_path):
    calls = []
    run_campaign("demo", raising_task, range(4), sw, PARAMS, version=1, progress=calls.append)
    assert [p.done for p in calls] == [0, 1, 2, 3, 4]
    assert calls[0].eta_s is None and calls[-1].total == 4 and calls[-1].failed == 1
    assert all(b.elapsed_s >= a.elapsed_s for a, b in zip(calls, calls[1:]))
    stream = io.StringIO()
    run_campaign("demo", energy_task, range(2), sw, PARAMS, version=1,
                 progress=print_progress(every_s=0.0, stream=stream))
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("[demo] 2/2 done, 0 failed, 0 from cache")


def test_potential_without_sha256_is_not_cached(sw, tmp_path):
    """Not on disk; in this process its calculator object is remembered (the memo, see
    tests/unit/test_run_once.py): another object of the same spec is computed again."""
    from pytest_mlpval.potentials import load_potential

    factory = Potential(PotentialInfo("made", "pkg:make", "factory"), sw.calculator)
    for k in range(2):
        result = run_campaign("demo", energy_task, range(2), factory, PARAMS, version=1,
                              cache_dir=tmp_path)
        assert result.cache_path is None and result.n_from_cache == 2 * k
    other = Potential(factory.info, load_potential("sw").calculator)
    result = run_campaign("demo", energy_task, range(2), other, PARAMS, version=1,
                          cache_dir=tmp_path)
    assert result.n_from_cache == 0
    assert list(tmp_path.iterdir()) == []


def _dead_address() -> str:
    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def test_dask_address_that_does_not_answer(sw, monkeypatch):
    address = _dead_address()
    start = time.perf_counter()
    with pytest.raises(CampaignError, match=rf"scheduler at {address} did not answer "
                       r"within 1 s"):
        make_executor(scheduler=address, timeout_s=1.0)
    assert time.perf_counter() - start < 10
    # through run_rss, with the connection timeout made small
    from pytest_mlpval.protocols.rss import RssSettings, run_rss

    original = campaign.make_executor
    monkeypatch.setattr(campaign, "make_executor",
                        lambda workers=0, scheduler=None, timeout_s=10.0,
                        worker_timeout_s=60.0: original(workers, scheduler, 1.0))
    with pytest.raises(CampaignError, match="did not answer"):
        run_rss(sw, RssSettings(n_structures=1), options=CampaignOptions(scheduler=address))


def test_real_dask_cluster_gives_the_same_results(sw, expected):
    from distributed import LocalCluster

    from pytest_mlpval.protocols.rss import RssSettings, run_rss

    params = RssSettings(n_structures=3, atoms_per_cell=(2, 4), seed=4)
    with LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        remote = run_campaign("demo", energy_task, range(4), sw, PARAMS, version=1,
                              scheduler=cluster.scheduler_address)
        rss_remote = run_rss(sw, params,
                             options=CampaignOptions(scheduler=cluster.scheduler_address))
    assert remote.executor == "dask" and rss_remote.executor == "dask"
    assert os.getpid() not in {item.value["pid"] for item in remote.items}
    np.testing.assert_allclose(_energies(remote), expected[:4], rtol=0, atol=1e-12)
    local = run_rss(sw, params)
    assert rss_remote.statuses == local.statuses
    np.testing.assert_allclose(rss_remote.energies_per_atom_eV, local.energies_per_atom_eV,
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(rss_remote.volumes_per_atom_A3, local.volumes_per_atom_A3,
                               rtol=0, atol=1e-7)
    for a, b in zip(rss_remote.minima, local.minima):
        np.testing.assert_allclose(a.final.positions, b.final.positions, atol=1e-6)
    assert dataclasses.asdict(rss_remote.settings) == dataclasses.asdict(local.settings)


def test_progress_lines_are_throttled_and_short_campaigns_can_stay_quiet():
    from pytest_mlpval.campaign import Progress

    lines: list[str] = []
    report = print_progress(every_s=10.0, write=lines.append, quiet_below_s=10.0)
    for done, elapsed in [(0, 0.0), (1, 3.0), (2, 12.0), (3, 15.0), (4, 16.0)]:
        report(Progress("long", done, 4, 0, 0, elapsed))
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    lines.clear()
    for done, elapsed in [(0, 0.0), (2, 1.0)]:  # the same callback, a new short campaign
        report(Progress("short", done, 2, 0, 0, elapsed))
    assert lines == []


def test_campaign_workers_take_the_runs_threads():
    """--mlpval-threads reaches the campaign workers (their initializer), as set in the
    main process; without a setting they keep one thread each."""
    from pytest_mlpval import threads

    names = (*threads.THREAD_VARIABLES, threads.THREADS_ENV)
    before = {name: os.environ.get(name) for name in names}
    threads.set_threads(3)
    try:
        executor, kind, shutdown = make_executor(workers=1)
        try:
            values = [executor.submit(os.getenv, name).result(timeout=60)
                      for name in names]
        finally:
            shutdown()
    finally:
        threads.restore_threads()
    assert kind == "processes" and values == ["3"] * 4
    assert {name: os.environ.get(name) for name in names} == before  # restored


def test_a_factory_is_reused_within_a_run_only(tmp_path, monkeypatch):
    """A candidate without a content hash is kept in the run store (under its name, for
    every process of the run, whatever its calculator object), never in the cache."""
    from pytest_mlpval.campaign_cache import RESULT_MEMO, RUN_STORE_ENV

    store = tmp_path / "run"
    store.mkdir()
    monkeypatch.setenv(RUN_STORE_ENV, str(store))
    info = PotentialInfo("made", "pkg:make", "factory")
    first = run_campaign("reuse", energy_task, [0, 1], Potential(info, load_potential("sw")
                                                                   .calculator),
                         PARAMS, version=1, cache_dir=tmp_path / "cache")
    RESULT_MEMO.clear()  # as in another process (an xdist worker): read from the store
    again = run_campaign("reuse", energy_task, [0, 1], Potential(info, load_potential("sw")
                                                                   .calculator),
                         PARAMS, version=1, cache_dir=None)
    assert first.n_from_cache == 0 and again.n_from_cache == 2
    assert len(list(store.glob("*.jsonl"))) == 1 and not (tmp_path / "cache").exists()
    # another run (another store) computes again
    monkeypatch.setenv(RUN_STORE_ENV, str(tmp_path / "gone"))
    RESULT_MEMO.clear()
    third = run_campaign("reuse", energy_task, [0, 1], Potential(info, load_potential("sw")
                                                                   .calculator),
                         PARAMS, version=1, cache_dir=None)
    assert third.n_from_cache == 0
