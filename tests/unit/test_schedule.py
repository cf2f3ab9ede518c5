"""The up-front scheduler's core (pytest_mlpval.schedule), without pytest's plugin: the
priority executor's order, cancellation and broken pools; jobs, their results and errors;
durations and the first guesses."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import BrokenExecutor

import pytest

from pytest_mlpval.schedule import (URGENT, Durations, Job, Lane, PriorityExecutor,
                                    Scheduler, lane, static_estimate, summary_line)


@pytest.fixture
def pool():
    executor = PriorityExecutor(1)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def _submit(executor, this, n, seconds=0.0):
    with lane(this):
        return [executor.submit(time.sleep, seconds) for _ in range(n)]


def test_the_highest_lane_goes_first_whatever_the_order_of_submission(pool):
    blocker = pool.submit(time.sleep, 0.5)  # outside any lane: urgent, first
    low, high = Lane(1.0), Lane(10.0)
    futures = _submit(pool, low, 2) + _submit(pool, high, 2)
    for future in [blocker, *futures]:
        future.result(timeout=60)
    assert pool.dispatched == [URGENT, high, high, low, low]


def test_a_planned_lane_that_has_not_submitted_yet_holds_back_lower_ones(pool):
    low, high = Lane(1.0), Lane(10.0)
    pool.expect([high, low])
    late = threading.Timer(0.3, lambda: _submit(pool, high, 1))
    late.start()
    _submit(pool, low, 1)[0].result(timeout=60)
    late.join()
    assert pool.dispatched[:2] == [high, low]


def test_shutdown_cancels_what_waits_and_refuses_more(pool):
    running = pool.submit(time.sleep, 0.3)
    queued = _submit(pool, Lane(1.0), 3)
    time.sleep(0.1)
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued) and pool.closed
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(pow, 2, 3)
    assert running.done() or running.running()


def test_a_dying_worker_fails_its_task_and_a_fresh_pool_takes_the_next(pool):
    with pytest.raises(BrokenExecutor):
        pool.submit(os._exit, 3).result(timeout=60)
    assert pool.submit(pow, 2, 3).result(timeout=60) == 8


def _job(key, value=None, estimate=1.0, error=None, delay=0.0):
    def call():
        time.sleep(delay)
        if error is not None:
            raise error
        return value

    return Job(key, str(key), call, estimate, duration_key=f"d-{key}")


def test_jobs_run_once_per_key_longest_first_and_hand_back_results_and_errors():
    scheduler = Scheduler()
    started = scheduler.plan([_job("a", 1), _job("b", 2, estimate=5.0),
                              _job("c", error=ValueError("no good")), _job("a", 99)])
    assert [job.key for job in started] == ["b", "a", "c"]
    assert scheduler.wait("a") == 1 and scheduler.wait("b") == 2
    with pytest.raises(ValueError, match="no good"):
        scheduler.wait("c")
    with pytest.raises(KeyError):
        scheduler.wait("unplanned")
    assert scheduler.planned("a") and not scheduler.planned("unplanned")


def test_cancel_leaves_the_unfinished_jobs_and_the_summary_says_so():
    scheduler = Scheduler()
    scheduler.plan([_job("fast", 1), _job("slow", 2, delay=0.5, estimate=9.0)])
    scheduler.wait("fast")
    assert scheduler.cancel() == 1
    summary = scheduler.summary()
    assert (summary["planned"], summary["unfinished"]) == (2, 1)
    assert summary_line(summary).startswith(
        "mlpval schedule: 2 campaigns up front (0 computed, 1 from cache, 1 unfinished)")


def test_the_summary_line_names_the_longest_computed_campaign():
    line = summary_line({"planned": 14, "computed": 12, "from_cache": 2, "unfinished": 0,
                         "wall_s": 312.4, "longest": "compression (gap_si)",
                         "longest_s": 251.2, "wall_over_longest": 1.2436})
    assert line == ("mlpval schedule: 14 campaigns up front (12 computed, 2 from cache); "
                    "wall 312 s; longest campaign compression (gap_si) 251 s; "
                    "wall/longest 1.24")


def test_durations_keep_computed_jobs_and_survive_a_damaged_file(tmp_path):
    path = tmp_path / "durations.json"
    scheduler = Scheduler()
    scheduler.plan([_job("computed", Computed(False), delay=1.05), _job("read", 1)])
    scheduler.wait("computed"), scheduler.wait("read")
    durations = Durations(path)
    durations.record(list(scheduler.jobs.values()))
    durations.save()
    again = Durations(path)
    assert set(again.seconds) == {"d-computed"} and again.get("d-computed") >= 1.0
    assert again.get("d-read") is None and again.get(None) is None
    path.write_text("{not json")
    assert Durations(path).seconds == {}
    path.write_text(json.dumps({"x": "1", "y": float("nan"), "z": 2.0}))
    assert Durations(path).seconds == {"z": 2.0}


class Computed:
    def __init__(self, from_cache):
        self.from_cache = from_cache


def test_first_guesses_order_md_by_steps_and_atoms_and_searches_by_structures():
    from pytest_mlpval.protocols.compression import CompressionSettings
    from pytest_mlpval.protocols.md import StabilitySettings
    from pytest_mlpval.protocols.rss import RssSettings

    compression = static_estimate(CompressionSettings(melt_steps=250, quench_steps=400,
                                                      ramp_steps=750, hold_steps=100))
    stability = static_estimate(StabilitySettings())
    search = static_estimate(RssSettings(n_structures=8, atoms_per_cell=(4, 8), seed=0))
    assert compression > stability > search > 0
    assert static_estimate(RssSettings(n_structures=80, atoms_per_cell=(4, 8))) \
        == pytest.approx(10 * search)

    class Own:
        def estimate_s(self):
            return 42

    assert static_estimate(Own()) == 42.0 and static_estimate((1, 2)) == 1.0


def test_protocols_run_together_submit_in_the_lane_of_the_job_that_runs_them(pool):
    # run_protocols starts one thread per protocol: their tasks belong to the planned
    # job's lane (its priority, and the job counts as computed), not to the urgent lane
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.protocols.base import CampaignOptions, run_protocols
    from pytest_mlpval.protocols.properties import LatticeSettings  # noqa: F401 registers

    this = Lane(3.0)
    with lane(this):
        runs = run_protocols([("lattice", None)], load_potential("sw"),
                             options=CampaignOptions(executor=pool))
    assert runs.results and not runs.errors
    assert this.submitted and URGENT not in pool.dispatched


def test_a_job_a_test_waits_for_goes_before_longer_ones_nobody_waits_for_yet():
    # one worker busy with the longest job; behind it a long job and a short one: the
    # test waiting for the short one does not wait for the long one too
    executor = PriorityExecutor(1)
    try:
        def submits(seconds):
            return lambda: executor.submit(time.sleep, seconds).result(timeout=60)

        scheduler = Scheduler(executor)
        scheduler.plan([Job("longest", "longest", submits(0.6), 30.0),
                        Job("long", "long", submits(0.6), 20.0),
                        Job("short", "short", submits(0.0), 1.0)])
        deadline = time.monotonic() + 30  # every job has submitted; the longest one runs
        while time.monotonic() < deadline and not (
                executor.dispatched and all(j.lane.submitted for j in scheduler.jobs.values())):
            time.sleep(0.01)
        scheduler.wait("short")
        lanes = {key: job.lane for key, job in scheduler.jobs.items()}
        scheduler.wait("long")
        assert executor.dispatched == [lanes["longest"], lanes["short"], lanes["long"]]
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def test_every_test_that_waits_for_a_failed_job_gets_the_jobs_traceback_only():
    # one exception raised again for each waiting test: each report holds the job's
    # frames and its own, not those of every test that waited before it
    import traceback

    scheduler = Scheduler()
    scheduler.plan([_job("bad", error=ValueError("no good"))])
    depths = []
    for _ in range(4):
        try:
            scheduler.wait("bad")
        except ValueError as exc:
            depths.append(len(traceback.extract_tb(exc.__traceback__)))
    assert len(set(depths)) == 1, depths
