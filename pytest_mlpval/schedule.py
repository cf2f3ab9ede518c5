"""Up-front scheduling: every campaign a run will need, started at once on one shared
executor, longest first, so that the short ones run beside the long one instead of after it.

Plain library (no pytest); the pytest layer (:mod:`pytest_mlpval.planning`) plans a run's
jobs from its tests' declarations.

- :class:`PriorityExecutor` is the run's one executor: a ``concurrent.futures.Executor``
  over a pool of local processes (made once; a pool broken by a dying worker is replaced
  by a fresh one for later work) or a Dask cluster. Each submitted task belongs to the
  :class:`Lane` of the thread that submits it (:func:`lane`); with local processes a task
  is handed to the pool only when a worker is free, the task of the lane with the highest
  priority first (ties: the earlier lane), so the order does not depend on thread races;
  on Dask every task is submitted at once with ``priority=``. Work submitted outside any
  lane (a test running a campaign nobody planned, and so waiting for it now) goes first.
- :class:`Scheduler` runs planned :class:`Job` s, each a plain call (the same call the
  test would make) in a thread of this process whose lane's priority is the job's
  estimated seconds; :meth:`Scheduler.wait` gives a test its job's result (or raises the
  job's exception).
  :meth:`Scheduler.cancel` cancels what has not started and stops the worker processes.
- :class:`Durations` keeps the seconds each campaign took (by protocol and settings, any
  candidate) for the next run's order; :func:`static_estimate` guesses from the settings
  (MD steps x atoms, structures) the first time.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import BrokenExecutor, CancelledError, Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Callable, Hashable, Iterator, Sequence

from pytest_mlpval.campaign import make_executor

__all__ = ["Lane", "lane", "PriorityExecutor", "Job", "Scheduler", "Durations",
           "static_estimate", "URGENT"]

_SEQ = itertools.count()
#: seconds per atom and MD (or relaxation) step in :func:`static_estimate`
_ATOM_STEP_S = 2.5e-3
#: steps of a relaxation when the settings name none
_RELAX_STEPS = 150


@dataclass(eq=False)
class Lane:
    """The priority of the tasks one job submits (higher first)."""

    priority: float
    seq: int = field(default_factory=lambda: next(_SEQ))
    submitted: int = 0
    first_dispatch: float | None = None  # perf_counter() when its first task was handed out
    #: a planned job's lane until its first task (or its end): work of lanes below it
    #: waits for it, so that the order does not depend on which thread submits first
    settling: bool = False
    #: a test waits for its job (:meth:`PriorityExecutor.promote`)
    promoted: bool = False

    def order(self) -> tuple[float, int]:
        return (self.priority, -self.seq)


#: the lane of work submitted outside any planned job: a test waits for it now
URGENT = Lane(math.inf, -1)
#: a context variable, so that threads a job starts with its context (run_protocols'
#: one thread per protocol) submit in the job's lane too
_LANE: contextvars.ContextVar[Lane | None] = contextvars.ContextVar("mlpval_lane",
                                                                    default=None)


@contextmanager
def lane(this: Lane) -> Iterator[Lane]:
    """Tasks submitted inside the block (by this thread, or a thread started with a
    copy of its context) belong to ``this`` lane."""
    token = _LANE.set(this)
    try:
        yield this
    finally:
        _LANE.reset(token)


def current_lane() -> Lane:
    return _LANE.get() or URGENT


class PriorityExecutor(Executor):
    """One executor for a whole run: ``workers`` local processes, or the Dask cluster
    at ``scheduler``; see the module docstring. ``closed`` is true once it was shut down
    (a campaign then gives up the items it lost instead of running them again)."""

    def __init__(self, workers: int = 0, scheduler: str | None = None, *,
                 timeout_s: float = 10.0, worker_timeout_s: float = 60.0) -> None:
        if not scheduler and workers < 1:
            raise ValueError("a PriorityExecutor needs workers >= 1 or a Dask scheduler")
        self.workers = workers
        self.address = scheduler
        self.closed = False
        self._dask: Any = None
        self._close_dask: Callable[[], None] | None = None
        if scheduler:
            self._dask, _, self._close_dask = make_executor(0, scheduler, timeout_s,
                                                            worker_timeout_s)
        self.mlpval_kind = "dask" if scheduler else "processes"
        self._pool: Executor | None = None
        self._shutdowns: list[Callable[[], None]] = []
        self._lanes: dict[Lane, deque] = {}
        self._running = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._expected: list[Lane] = []
        self._settle_until = 0.0
        self.dispatched: list[Lane] = []  # the lane of every task handed out, in order

    def n_workers(self) -> int:
        """Workers: the Dask cluster's now, or the local processes."""
        return self._dask.n_workers() if self._dask is not None else self.workers

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        this = current_lane()
        outer: Future = Future()
        with self._cond:
            if self.closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            this.submitted += 1
            this.settling = False
            if self._dask is not None:
                self.dispatched.append(this)
                this.first_dispatch = this.first_dispatch or time.perf_counter()
                priority = 2 ** 31 if this.priority > 2 ** 31 else int(this.priority)
                return self._dask.submit_with_priority(priority, fn, *args, **kwargs)
            self._lanes.setdefault(this, deque()).append((outer, fn, args, kwargs))
            if self._thread is None:
                self._thread = threading.Thread(target=self._dispatch, daemon=True,
                                                name="mlpval-dispatch")
                self._thread.start()
            self._cond.notify_all()
        return outer

    def expect(self, lanes: Sequence[Lane], settle_s: float = 5.0) -> None:
        """Lanes whose jobs are about to submit: for up to ``settle_s`` seconds, work of
        a lower lane is not handed out before each higher one has submitted its first
        task or ended (:meth:`settled`)."""
        with self._cond:
            for this in lanes:
                this.settling = True
            self._expected = [*self._expected, *lanes]
            self._settle_until = time.monotonic() + settle_s

    def promote(self, this: Lane) -> None:
        """A test waits for ``this`` lane's job now: once every worker has had its first
        task (the longest jobs start first whatever the tests wait for), its tasks not
        yet handed out go before those of jobs nobody waits for yet. On Dask the
        priority was given at submission."""
        with self._cond:
            this.promoted = True
            self._cond.notify_all()

    def _rank(self, this: Lane) -> tuple[bool, tuple[float, int]]:
        """Dispatch order: promoted lanes first after the first wave, then by priority."""
        return (this.promoted and len(self.dispatched) >= self.workers, this.order())

    def settled(self, this: Lane) -> None:
        """``this`` lane's job ended (it may never have submitted anything)."""
        with self._cond:
            this.settling = False
            self._cond.notify_all()

    def _waiting_for(self, best: Lane) -> bool:
        """A lane above ``best`` has yet to submit its first task."""
        if time.monotonic() > self._settle_until:
            return False
        return any(this.settling and this.order() > best.order() for this in self._expected)

    def _next(self) -> tuple[Future, Callable, tuple, dict] | None:
        """The next task to hand out, once a worker is free (None once closed)."""
        with self._cond:
            while True:
                while not self.closed and (self._running >= self.workers or not self._lanes
                                           or self._waiting_for(max(self._lanes,
                                                                    key=self._rank))):
                    self._cond.wait(0.05)
                if self.closed:
                    return None
                best = max(self._lanes, key=self._rank)
                queue = self._lanes[best]
                task = queue.popleft()
                if not queue:
                    del self._lanes[best]
                if task[0].set_running_or_notify_cancel():  # else cancelled: the next
                    self._running += 1
                    self.dispatched.append(best)
                    best.first_dispatch = best.first_dispatch or time.perf_counter()
                    return task

    def _dispatch(self) -> None:
        while True:
            task = self._next()
            if task is None:
                return
            outer, fn, args, kwargs = task
            for attempt in (0, 1):
                pool = self._current_pool()
                try:
                    inner = pool.submit(fn, *args, **kwargs)
                except BrokenExecutor as exc:  # broken since: a fresh pool, once
                    self._retire(pool)
                    if attempt:
                        self._finished(outer, pool, None, exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. shut down meanwhile
                    self._finished(outer, pool, None, exc)
                    break
                inner.add_done_callback(lambda f, o=outer, p=pool: self._finished(o, p, f))
                break

    def _current_pool(self) -> Executor:
        with self._cond:
            if self._pool is None:
                self._pool, _, shutdown = make_executor(self.workers)
                self._shutdowns.append(shutdown)
            return self._pool

    def _retire(self, pool: Executor) -> None:
        with self._cond:
            if self._pool is pool:
                self._pool = None

    def _finished(self, outer: Future, pool: Executor, inner: Future | None,
                  error: BaseException | None = None) -> None:
        if inner is not None:
            if inner.cancelled():
                error = CancelledError()
            else:
                error = inner.exception()
        if isinstance(error, BrokenExecutor):
            self._retire(pool)
        if error is not None:
            outer.set_exception(error)
        else:
            outer.set_result(inner.result())
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel what has not been handed out (``cancel_futures``; else let it run
        first), then stop the pools (``wait=False``: stop the worker processes at once,
        abandoning what they run)."""
        with self._cond:
            if not cancel_futures:
                while self._lanes and not self.closed:
                    self._cond.wait(0.1)
            self.closed = True
            queued = [task[0] for q in self._lanes.values() for task in q]
            self._lanes.clear()
            pool, self._pool = self._pool, None
            busy = self._running > 0
            self._cond.notify_all()
        for future in queued:
            future.cancel()
        if self._close_dask is not None:
            self._close_dask()
            return
        if pool is not None and not wait and busy:  # abandon what the workers run
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
        for shutdown in self._shutdowns:
            if wait:
                shutdown()
        if pool is not None and not wait:
            pool.shutdown(wait=False, cancel_futures=True)


@dataclass(eq=False)
class Job:
    """One planned call: ``call()`` computes what a test will ask for by ``key``.

    ``duration_key`` names it in :class:`Durations` (protocol and settings, not the
    candidate); ``label`` in the summary."""

    key: Hashable
    label: str
    call: Callable[[], Any]
    estimate_s: float
    duration_key: str | None = None
    future: Future = field(default_factory=Future)
    lane: Lane | None = None
    started: float | None = None
    seconds: float | None = None  # from its start to its end, waiting for workers included
    own_s: float | None = None  # from its first task handed to a worker (or its start)
    from_cache: bool | None = None  # what its value says (``from_cache``), if it says
    cut: bool = False  # unfinished when the run was cancelled (whatever came after)
    traceback: Any = None  # where the job's exception was raised, in the job's thread

    @property
    def computed(self) -> bool:
        """It did work (handed tasks to the workers, or its value says ``from_cache``
        False), rather than reading finished results."""
        return bool(self.lane and self.lane.submitted) or self.from_cache is False


class Scheduler:
    """Runs planned jobs at once, each in its own thread of this process, longest
    (highest ``estimate_s``) first; tests then :meth:`wait` for them."""

    def __init__(self, executor: Executor | None = None) -> None:
        self.executor = executor
        self.jobs: dict[Hashable, Job] = {}
        self.started_at: float | None = None
        self.cancelled = False

    def plan(self, jobs: Sequence[Job]) -> list[Job]:
        """Start ``jobs`` (one per key: a repeated key is planned once), longest first;
        returns the jobs started, in that order."""
        if self.started_at is None:
            self.started_at = time.perf_counter()
        new = []
        for job in sorted(jobs, key=lambda j: -j.estimate_s):
            if job.key in self.jobs:
                continue
            job.lane = Lane(job.estimate_s)
            self.jobs[job.key] = job
            new.append(job)
        expect = getattr(self.executor, "expect", None)
        if callable(expect):
            expect([job.lane for job in new])
        for job in new:
            threading.Thread(target=self._run, args=(job,), daemon=True,
                             name=f"mlpval-job {job.label}").start()
        return new

    def _ended(self, job: Job) -> None:
        end = time.perf_counter()
        job.seconds = end - job.started
        first = job.lane.first_dispatch if job.lane is not None else None
        job.own_s = end - (first if first is not None else job.started)

    def _run(self, job: Job) -> None:
        settled = getattr(self.executor, "settled", None)
        try:
            if self.cancelled or not job.future.set_running_or_notify_cancel():
                return
            job.started = time.perf_counter()
            try:
                with lane(job.lane):
                    value = job.call()
            except BaseException as exc:  # noqa: BLE001 - handed to the tests that wait
                self._ended(job)
                job.traceback = exc.__traceback__
                job.future.set_exception(exc)
            else:
                self._ended(job)
                flag = getattr(value, "from_cache", None)
                job.from_cache = flag if isinstance(flag, bool) else None
                job.future.set_result(value)
        finally:
            if callable(settled):
                settled(job.lane)

    def planned(self, key: Hashable) -> bool:
        return key in self.jobs

    def wait(self, key: Hashable) -> Any:
        """The result of the job planned under ``key`` (its exception raised again),
        waiting for it; KeyError if none was planned. A job waited for before it is done
        is promoted (:meth:`PriorityExecutor.promote`): a test that needs a short job
        queued behind long ones nobody waits for yet does not wait for them too; a job
        already running is not affected."""
        job = self.jobs[key]
        promote = getattr(self.executor, "promote", None)
        if not job.future.done() and job.lane is not None and callable(promote):
            promote(job.lane)
        error = job.future.exception()
        if error is None:
            return job.future.result()
        # each test that waits raises the one exception again: from the job's own
        # traceback, or every raise would add its frames to the next test's report
        raise error.with_traceback(job.traceback)

    def cancel(self) -> int:
        """Cancel the jobs not started and stop the executor's work; returns how many
        jobs were cancelled or abandoned unfinished."""
        self.cancelled = True
        unfinished = 0
        for job in self.jobs.values():
            if not job.future.done():
                unfinished += 1
                job.cut = True
                job.future.cancel()
        if self.executor is not None:  # stop the workers only where work is left
            self.executor.shutdown(wait=not unfinished, cancel_futures=True)
        return unfinished

    def summary(self) -> dict[str, Any]:
        """What the run planned and how long it took: counts, wall time since planning,
        the longest computed job (its own seconds: from its first task handed to a
        worker) and wall/longest."""
        jobs = list(self.jobs.values())
        finished = [j for j in jobs if j.seconds is not None and not j.cut]
        failed = [j for j in finished if j.future.done() and not j.future.cancelled()
                  and j.future.exception() is not None]
        computed = [j for j in finished if j.computed and j not in failed]
        wall = (time.perf_counter() - self.started_at) if self.started_at else 0.0
        longest = max(computed, key=lambda j: j.own_s, default=None)
        out: dict[str, Any] = {
            "planned": len(jobs), "computed": len(computed), "failed": len(failed),
            "from_cache": len(finished) - len(computed) - len(failed),
            "unfinished": len(jobs) - len(finished), "wall_s": round(wall, 3),
            "longest": None if longest is None else longest.label,
            "longest_s": None if longest is None else round(longest.own_s, 3),
            "jobs": [{"label": j.label, "estimate_s": round(j.estimate_s, 3),
                      "seconds": None if j.seconds is None else round(j.seconds, 3),
                      "own_s": None if j.own_s is None else round(j.own_s, 3),
                      "computed": j.computed if j.seconds is not None else None}
                     for j in sorted(jobs, key=lambda j: j.lane.seq if j.lane else 0)],
        }
        out["wall_over_longest"] = (round(wall / longest.own_s, 3)
                                    if longest is not None and longest.own_s > 0 else None)
        return out


def summary_line(summary: dict[str, Any]) -> str:
    """``mlpval schedule: 14 campaigns up front (12 computed, 2 from cache); wall 312 s;
    longest campaign compression (gap_si) 251 s; wall/longest 1.24``."""
    line = (f"mlpval schedule: {summary['planned']} campaigns up front "
            f"({summary['computed']} computed, {summary['from_cache']} from cache"
            + (f", {summary['failed']} failed" if summary.get("failed") else "")
            + (f", {summary['unfinished']} unfinished" if summary["unfinished"] else "")
            + f"); wall {summary['wall_s']:.0f} s")
    if summary["longest"] is not None:
        line += (f"; longest campaign {summary['longest']} {summary['longest_s']:.0f} s")
    if summary["wall_over_longest"] is not None:
        line += f"; wall/longest {summary['wall_over_longest']:.2f}"
    return line


class Durations:
    """Seconds each campaign took, by its duration key, kept in a JSON file (``path``
    None: in memory only). A damaged file counts as empty."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}
        if path is not None:
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
                self.seconds = {str(k): float(v) for k, v in data.items()
                                if isinstance(v, (int, float)) and math.isfinite(v)}
            except (OSError, ValueError, AttributeError):
                self.seconds = {}

    def get(self, key: str | None) -> float | None:
        return None if key is None else self.seconds.get(key)

    def record(self, jobs: Sequence[Job]) -> None:
        """Keep the own seconds of the jobs that computed (not those read from a cache)."""
        for job in jobs:
            if job.duration_key is not None and job.own_s is not None and job.computed \
                    and not job.future.cancelled() and job.future.exception() is None:
                self.seconds[job.duration_key] = round(job.own_s, 3)

    def save(self) -> None:
        if self.path is None:
            return
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.seconds, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def static_estimate(settings: Any) -> float:
    """A first guess of a campaign's seconds from its settings, before any run measured
    it: ``settings.estimate_s()`` where the settings provide it, else atoms x steps
    (fields ending in ``steps``; a relaxation's worth without any) x structures
    (``n_structures``)."""
    own = getattr(settings, "estimate_s", None)
    if callable(own):
        return float(own())
    if not is_dataclass(settings):
        return 1.0
    values = {f.name: getattr(settings, f.name, None) for f in fields(settings)}
    steps = sum(v for k, v in values.items() if k.endswith("steps") and isinstance(v, int)
                and not isinstance(v, bool))
    atoms = values.get("n_atoms")
    if not isinstance(atoms, (int, float)):
        per_cell = values.get("atoms_per_cell")
        atoms = (sum(per_cell) / len(per_cell) if isinstance(per_cell, (tuple, list))
                 and per_cell else 64)
    structures = values.get("n_structures")
    structures = structures if isinstance(structures, int) and structures > 0 else 1
    return _ATOM_STEP_S * float(atoms) * float(steps or _RELAX_STEPS) * structures
