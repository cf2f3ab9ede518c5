"""Campaigns: many independent tasks run with a candidate through a standard
``concurrent.futures.Executor``, cached on disk item by item, with progress.

Plain library (no pytest).

- **Where tasks run.** ``workers=0`` runs them in this process; ``workers=N`` in a pool of
  N local processes; ``scheduler="tcp://host:port"`` on a Dask distributed cluster
  (``Client.get_executor()``); or pass any ``concurrent.futures.Executor``.
- **How a worker gets the calculator.** A :class:`CalculatorSource` is sent instead of the
  calculator: it reloads the potential from its spec in the worker (once per process), or
  unpickles the calculator when the potential has no spec a worker can load.
- **Nothing is lost.** Every finished item is appended to the cache file as it finishes,
  whatever the executor (in this process too), keyed by the potential's content hash and
  the versions of the libraries that loaded it, the protocol and its ``version`` (which
  every campaign must declare) and all its parameters; a rerun (or another test, or a run
  killed or interrupted and started again) reads the finished items and computes only the
  rest. Ctrl-C stops a campaign within one item; pending items are cancelled. A changed
  model has another hash, so it never reads stale results. A potential without a content
  hash (a code-defined factory) is not cached across runs: within a pytest run it is
  cached under its name in the run's store
  (:func:`~pytest_mlpval.campaign_cache.run_store`), which the run's processes (xdist
  workers) share and which is removed at its end.
- **Computed once per process.** Finished items are also kept in memory
  (:data:`~pytest_mlpval.campaign_cache.RESULT_MEMO`, whenever a ``cache_dir`` is given):
  a second call for the same campaign in this process, e.g. a second test of a pytest
  run, gets copies of them without reading the file, and a potential without a content
  hash is recognised by its calculator object (do not change a calculator's settings
  between calls). Two processes (xdist workers) that need the same cached campaign at
  once compute it once: the second waits on a lock beside the cache file, then reads it.
  A damaged cache file is repaired with a
  :class:`~pytest_mlpval.campaign_cache.CacheWarning` (:mod:`pytest_mlpval.campaign_cache`).
- **Nothing is dropped.** An item whose task raises is kept as a failed
  :class:`ItemResult` with the error. A local worker process that dies breaks its pool
  (one of this campaign's own, or one shared by several campaigns); the items it took
  down are run again one by one in fresh processes, so that only the item that kills its
  worker is marked failed ("worker died").
- **Nothing hangs.** A Dask cluster without workers (at the start, or once all have left)
  raises :class:`CampaignError` after ``worker_timeout_s``.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback
from contextlib import nullcontext
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pytest_mlpval.campaign_cache import (CACHE_FORMAT, RESULT_MEMO, Cache, CacheWarning,
                                          campaign_key, memo_key, run_identity, run_store)
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.threads import configured_threads, limit_loaded, single_threaded_worker

__all__ = ["CampaignError", "CalculatorSource", "calculator_source", "ItemResult",
           "CampaignResult", "run_campaign", "make_executor", "campaign_key", "Progress",
           "print_progress", "CacheWarning", "CACHE_FORMAT"]

#: how often (s) a waiting campaign checks that a Dask cluster still has workers
_POLL_S = 1.0


class CampaignError(MlpvalError, RuntimeError):
    """The campaign could not run (no executor, a scheduler that does not answer or has
    no worker, a calculator that cannot reach the workers)."""


# -- calculators in workers -------------------------------------------------------------

_WORKER_CALCULATORS: dict[str, Any] = {}


@dataclass(frozen=True)
class CalculatorSource:
    """How a worker obtains the candidate's calculator.

    ``spec`` (with ``base_dir``) is reloaded through :func:`~pytest_mlpval.potentials.
    load_potential`; otherwise ``pickled`` holds the pickled calculator. ``key`` names the
    potential (its content hash where it has one) for the per-process cache.
    """

    key: str
    spec: str | None = None
    base_dir: str | None = None
    pickled: bytes | None = field(default=None, repr=False)
    sys_path: tuple[str, ...] = ()
    device: str | None = None  # the device the potential was loaded on (--mlpval-device)

    def load(self) -> Any:
        calc = _WORKER_CALCULATORS.get(self.key)
        if calc is None:
            for entry in self.sys_path:  # a factory module importable in the parent
                if entry not in sys.path:
                    sys.path.append(entry)
            if self.spec is not None:
                device = {"device": self.device} if self.device else {}
                calc = load_potential(self.spec, self.base_dir, **device).calculator
            else:
                calc = pickle.loads(self.pickled)
            limit_loaded()  # what the loader loaded (BLAS, torch): the run's threads
            _WORKER_CALCULATORS[self.key] = calc
        return calc


def calculator_source(potential: Any, local: bool = False) -> CalculatorSource:
    """A :class:`CalculatorSource` for a loaded
    :class:`~pytest_mlpval.potentials.Potential` (or a bare calculator).

    Potentials loaded from a spec by a built-in loader (files, built-ins, factories,
    entry points) reload from it; others (a pytest hook's, a bare calculator) are pickled,
    and :class:`CampaignError` says so if that fails. ``local=True`` is for in-process
    runs: the calculator itself is used.
    """
    info = getattr(potential, "info", None)
    calc = getattr(potential, "calculator", potential)
    key = (info.sha256 or f"{info.loader}:{info.spec}") if info is not None \
        else f"calculator:{id(calc)}"
    if local:
        _WORKER_CALCULATORS[key] = calc
        return CalculatorSource(key=key, spec=None, pickled=None)
    if info is not None and info.loader in ("builtin", "gap", "factory") \
            or (info is not None and info.loader.startswith("entry-point")):
        spec = info.files[0] if info.loader == "gap" and info.files else info.spec
        return CalculatorSource(key=key, spec=spec, sys_path=tuple(sys.path),
                                device=getattr(info, "device", None))
    try:
        data = pickle.dumps(calc)
    except Exception as exc:
        raise CampaignError(
            f"the calculator {type(calc).__name__} cannot be sent to worker processes "
            f"({type(exc).__name__}: {exc}); run with workers=0 (in this process) or "
            "load it from a spec that a worker can load") from exc
    return CalculatorSource(key=key, pickled=data, sys_path=tuple(sys.path))


# -- results ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ItemResult:
    """One task's outcome.

    Attributes
    ----------
    index : int
        Position of the item in the campaign.
    ok : bool
        False when the task raised or its worker died.
    value : Any
        What the task returned (JSON-serialisable where the campaign is cached; ASE Atoms
        anywhere inside a dict or list are stored as extxyz text).
    error : str or None
        ``"ExceptionType: message"`` for a failed item.
    seconds : float
        Wall time of the task in its worker.
    from_cache : bool
    """

    index: int
    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    from_cache: bool = False


@dataclass(frozen=True)
class CampaignResult:
    """All items of a campaign, in item order.

    Attributes
    ----------
    items : tuple of ItemResult
    seconds : float
        Wall time of this run (0 when everything came from the cache).
    workers : int
        Worker processes used (0: this process).
    executor : str
        ``"local"``, ``"processes"``, ``"dask"`` or the executor's class name.
    cache_path : str or None
    """

    items: tuple[ItemResult, ...]
    seconds: float
    workers: int
    executor: str
    cache_path: str | None = None

    @property
    def failures(self) -> tuple[ItemResult, ...]:
        return tuple(item for item in self.items if not item.ok)

    @property
    def n_from_cache(self) -> int:
        return sum(item.from_cache for item in self.items)

    @property
    def task_seconds(self) -> float:
        return float(sum(item.seconds for item in self.items if not item.from_cache))


# -- progress --------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """Progress of a running campaign, passed to the ``progress`` callback."""

    protocol: str
    done: int
    total: int
    failed: int
    from_cache: int
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        computed = self.done - self.from_cache
        remaining = self.total - self.done
        if computed <= 0:
            return None
        return self.elapsed_s / computed * remaining


def print_progress(every_s: float = 5.0, stream: Any = None,
                   write: Callable[[str], None] | None = None,
                   quiet_below_s: float = 0.0) -> Callable[[Progress], None]:
    """A progress callback that writes a line at most every ``every_s`` seconds of the
    campaign (and at the end), with ``write`` or to ``stream`` (stderr by default). A
    campaign that ends within ``quiet_below_s`` seconds writes nothing."""
    last = [0.0]  # elapsed seconds of the campaign at the last line

    def report(p: Progress) -> None:
        if p.elapsed_s < last[0]:  # the callback serves a new campaign
            last[0] = 0.0
        if p.done < p.total and p.elapsed_s - last[0] < every_s:
            return
        if p.done == p.total and p.elapsed_s < quiet_below_s:
            return
        last[0] = p.elapsed_s
        eta = p.eta_s
        line = (f"[{p.protocol}] {p.done}/{p.total} done, {p.failed} failed, "
                f"{p.from_cache} from cache, {p.elapsed_s:.0f} s"
                + (f", ~{eta:.0f} s left" if eta is not None and p.done < p.total else ""))
        if write is not None:
            write(line)
        else:
            print(line, file=stream or sys.stderr, flush=True)

    return report


# -- executors -------------------------------------------------------------------------

class _LocalExecutor(Executor):
    """Runs each task at submit time in this process (:func:`run_campaign` runs the
    items of a local campaign one by one itself, caching each as it finishes)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


class _DaskExecutor(Executor):
    """A Dask ``Client``'s executor that can tell how many workers the cluster has."""

    def __init__(self, client: Any, address: str) -> None:
        self.client = client
        self.address = address
        self._inner = client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        return self._inner.submit(fn, *args, **kwargs)

    def submit_with_priority(self, priority: int, fn, /, *args, **kwargs) -> Future:
        """:meth:`submit` with Dask's ``priority`` (higher runs first)."""
        return self._inner.submit(fn, *args, priority=priority, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait and not cancel_futures)
        self.client.close()

    def n_workers(self) -> int:
        try:
            return len(self.client.nthreads())
        except Exception:  # noqa: BLE001 - a scheduler gone away has no workers
            return 0


def _process_pool(workers: int) -> Executor:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: no fork of a process with threads (OpenMP, Dask, pytest-timeout); each
    # worker gets the run's threads (--mlpval-threads; one without a setting)
    return ProcessPoolExecutor(max_workers=workers, initializer=single_threaded_worker,
                               initargs=(configured_threads(),),
                               mp_context=multiprocessing.get_context("forkserver"))


def make_executor(workers: int = 0, scheduler: str | None = None, timeout_s: float = 10.0,
                  worker_timeout_s: float = 60.0
                  ) -> tuple[Executor, str, Callable[[], None]]:
    """An executor, its kind, and a function that shuts it down (cancelling what has
    not started).

    ``scheduler`` (a Dask address such as ``tcp://127.0.0.1:8786``) wins over
    ``workers``; a scheduler that does not answer within ``timeout_s``, or has no worker
    within ``worker_timeout_s``, raises :class:`CampaignError`.
    """
    if scheduler:
        try:
            from distributed import Client
        except ImportError as exc:
            raise CampaignError(f"a Dask scheduler ({scheduler}) was given but "
                                "'distributed' is not installed: pip install distributed"
                                ) from exc
        try:
            client = Client(scheduler, timeout=timeout_s, set_as_default=False)
        except Exception as exc:
            raise CampaignError(f"the Dask scheduler at {scheduler} did not answer within "
                                f"{timeout_s:g} s ({type(exc).__name__}: {exc})") from exc
        try:
            client.wait_for_workers(1, timeout=worker_timeout_s)
        except Exception as exc:
            client.close()
            raise CampaignError(
                f"no Dask worker joined the scheduler at {scheduler} within "
                f"{worker_timeout_s:g} s (start workers with: dask worker {scheduler}; or "
                f"give worker_timeout_s more time)") from exc
        executor = _DaskExecutor(client, scheduler)
        return executor, "dask", lambda: executor.shutdown(cancel_futures=True)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        return _LocalExecutor(), "local", lambda: None
    pool = _process_pool(workers)
    return pool, "processes", lambda: pool.shutdown(wait=True, cancel_futures=True)


def _kind(executor: Executor) -> str:
    own = getattr(executor, "mlpval_kind", None)  # a run's shared executor says itself
    if isinstance(own, str):
        return own
    if isinstance(executor, _LocalExecutor):
        return "local"
    if isinstance(executor, _DaskExecutor):
        return "dask"
    if type(executor).__name__ == "ProcessPoolExecutor":
        return "processes"
    return type(executor).__name__


def _run_item(task: Callable[[Any, Any], Any], source: CalculatorSource, index: int,
              item: Any) -> tuple[int, bool, Any, str | None, float]:
    start = time.perf_counter()
    try:
        calc = source.load()
        value = task(calc, item)
        return index, True, value, None, time.perf_counter() - start
    except Exception as exc:
        tail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return index, False, None, tail, time.perf_counter() - start


Finish = Callable[[int, bool, Any, "str | None", float], None]


def _completed(futures: dict[Future, int], executor: Executor, worker_timeout_s: float):
    """Yield ``futures`` as they complete; on a Dask cluster that has had no worker for
    ``worker_timeout_s``, raise :class:`CampaignError`."""
    pending = set(futures)
    alone_since: float | None = None
    while pending:
        done, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
        yield from done
        count = getattr(executor, "n_workers", None)  # a Dask cluster's, or a shared one's
        workers = count() if callable(count) and not done else None
        if workers is None:
            continue
        if workers:
            alone_since = None
        elif alone_since is None:
            alone_since = time.monotonic()
        elif time.monotonic() - alone_since > worker_timeout_s:
            raise CampaignError(
                f"every Dask worker of the scheduler at {getattr(executor, 'address', '?')} "
                f"left and none joined within {worker_timeout_s:g} s; {len(pending)} items "
                "unfinished")


def _run_lost(task: Callable[[Any, Any], Any], source: CalculatorSource, lost: list[int],
              items: list[Any], finish: Finish) -> None:
    """Run the items a dead worker took down one at a time in a fresh one-process pool
    (a new one after each death): a death is then that item's fault alone."""
    pool = None
    try:
        for i in sorted(lost):
            pool = pool or _process_pool(1)
            try:
                result = pool.submit(_run_item, task, source, i, items[i]).result()
            except BrokenExecutor as exc:
                finish(i, False, None, f"worker died: {type(exc).__name__}: {exc}", 0.0)
                pool.shutdown(wait=True)
                pool = None
            else:
                finish(*result)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _run_pool(executor: Executor, task: Callable[[Any, Any], Any], source: CalculatorSource,
              items: list[Any], todo: list[int], finish: Finish, on_interrupt: Callable[[], None],
              worker_timeout_s: float) -> None:
    """Run ``todo`` on ``executor``. Items whose worker process died (the pool is broken:
    this campaign's or a shared one) run again one by one in a fresh process. On Ctrl-C
    (or any other error) the pending items are cancelled, ``on_interrupt`` runs (our own
    pool: shut down, waiting for the running items) and what finished is kept."""
    futures: dict[Future, int] = {}
    seen: set[int] = set()
    lost: list[int] = []
    try:
        for i in todo:
            try:
                futures[executor.submit(_run_item, task, source, i, items[i])] = i
            except BrokenExecutor:  # a shared pool already broken by another campaign
                lost.append(i)
        for future in _completed(futures, executor, worker_timeout_s):
            i = futures[future]
            seen.add(i)
            try:
                result = future.result()
            except BrokenExecutor:  # a worker died: maybe not this item's fault
                lost.append(i)
                continue
            except Exception as exc:  # noqa: BLE001 - Dask's KilledWorker, cancelled
                finish(i, False, None, f"worker died: {type(exc).__name__}: {exc}", 0.0)
                continue
            finish(*result)
    except BaseException:
        for future in futures:
            future.cancel()
        try:
            on_interrupt()
            for future, i in futures.items():  # keep what finished meanwhile
                if i not in seen and future.done() and not future.cancelled() \
                        and future.exception() is None:
                    finish(*future.result())
        except Exception:  # noqa: BLE001, S110 - never hide the interruption itself
            pass
        raise
    if getattr(executor, "closed", False):  # a run's shared executor, shut down (-x, ^C)
        for i in lost:
            finish(i, False, None, "cancelled: the run's executor was shut down", 0.0)
        return
    _run_lost(task, source, lost, items, finish)


def run_campaign(protocol: str, task: Callable[[Any, Any], Any], items: Sequence[Any],
                 potential: Any, parameters: Any = None, *, version: int | str,
                 workers: int = 0, scheduler: str | None = None,
                 executor: Executor | None = None,
                 cache_dir: str | os.PathLike[str] | None = None,
                 progress: Callable[[Progress], None] | None = None,
                 timeout_s: float = 10.0, worker_timeout_s: float = 60.0,
                 validate: Callable[[Any], str | None] | None = None) -> CampaignResult:
    """Run ``task(calculator, item)`` for every item and collect the results.

    ``task`` must be a module-level function (it is pickled for workers). ``version``
    (required: bump it when the task's results change meaning), ``parameters``
    (JSON-serialisable, everything that changes the results, including the items' seeds),
    the potential's content hash and its loader versions key the cache in ``cache_dir``;
    ``None`` disables it. ``validate(value)`` says why a cached value is unusable (then
    it is computed again, with a :class:`CacheWarning`), or returns None.
    ``timeout_s`` bounds the wait for a Dask scheduler to answer, ``worker_timeout_s``
    the time a Dask cluster may have no worker.
    """
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        raise TypeError(f"version must be an int or a str, got {version!r}")
    items = list(items)
    info = getattr(potential, "info", None)
    loaders = getattr(info, "loader_versions", None)
    # a candidate without a content hash: kept in the run store for this run only
    sha256, store = getattr(info, "sha256", None), run_store()
    if sha256 is None and store is not None and run_identity(info) is not None:
        sha256, cache_dir = run_identity(info), store
    key = campaign_key(protocol, sha256, parameters, version=version,
                       loader_versions=loaders) if cache_dir is not None else None
    header = {"format": CACHE_FORMAT, "protocol": protocol, "version": version,
              "parameters": parameters, "loader_versions": dict(loaders or {}),
              "potential": info.as_dict() if info is not None else None,
              "n_items": len(items)}
    cache = Cache(cache_dir, key, header, len(items), validate)
    # finished items: from this process's memo (also for a potential without a content
    # hash, by its calculator's identity), then from the cache file
    memo = memo_key(protocol, potential, parameters, version=version, cache_dir=cache_dir)
    found = {i: kept for i, kept in RESULT_MEMO.get(memo, cache.stamp()).items()
             if i < len(items)}
    if len(found) < len(items):
        found = {**cache.read(), **found}
    read_stamp = cache.stamp()
    done = {i: ItemResult(i, True, value, None, seconds, from_cache=True)
            for i, (value, seconds) in found.items()}
    start = time.perf_counter()
    n_failed = 0

    def tell() -> None:
        if progress is not None:
            progress(Progress(protocol, len(done), len(items), n_failed,
                              sum(r.from_cache for r in done.values()),
                              time.perf_counter() - start))

    def remember() -> None:
        RESULT_MEMO.put(memo, {i: (r.value, r.seconds) for i, r in done.items() if r.ok},
                        cache.stamp())

    # another process (an xdist worker) computing this campaign now: wait for it, then
    # take what it finished from the file
    with cache.locked() if len(done) < len(items) else nullcontext():
        if len(done) < len(items) and cache.stamp() != read_stamp:
            for i, (value, seconds) in cache.read().items():
                done.setdefault(i, ItemResult(i, True, value, None, seconds, from_cache=True))
        todo = [i for i in range(len(items)) if i not in done]
        tell()
        if not todo:
            remember()
            return CampaignResult(tuple(done[i] for i in range(len(items))), 0.0,
                                  0, "cache", str(cache.path) if cache.path else None)

        own = executor is None
        if own:
            executor, kind, shutdown = make_executor(workers, scheduler, timeout_s,
                                                     worker_timeout_s)
        else:
            kind, shutdown = _kind(executor), (lambda: None)
        source = calculator_source(potential, local=kind == "local")

        def finish(index: int, ok: bool, value: Any, error: str | None, seconds: float) -> None:
            nonlocal n_failed
            done[index] = ItemResult(index, ok, value, error, seconds)
            n_failed += not ok
            if ok:
                cache.append(index, value, seconds)
            tell()

        try:
            if kind == "local":  # one by one: each is cached as it finishes; Ctrl-C stops here
                for i in todo:
                    finish(*_run_item(task, source, i, items[i]))
            else:
                _run_pool(executor, task, source, items, todo, finish, shutdown, worker_timeout_s)
        finally:
            if own:
                shutdown()
        remember()
        return CampaignResult(tuple(done[i] for i in range(len(items))),
                              time.perf_counter() - start,
                              getattr(executor, "workers", workers) if kind != "local" else 0,
                              kind, str(cache.path) if cache.path else None)
