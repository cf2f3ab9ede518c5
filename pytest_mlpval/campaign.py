"""Campaigns: many independent tasks run with a candidate through a standard
``concurrent.futures.Executor``, cached on disk item by item, with progress.

Plain library (no pytest).

- **Where tasks run.** ``workers=0`` runs them in this process; ``workers=N`` in a pool of
  N local processes; ``scheduler="tcp://host:port"`` on a Dask distributed cluster
  (``Client.get_executor()``); or pass any ``concurrent.futures.Executor``.
- **How a worker gets the calculator.** A :class:`CalculatorSource` is sent instead of the
  calculator: it reloads the potential from its spec in the worker (once per process), or
  unpickles the calculator when the potential has no spec a worker can load.
- **Nothing is lost.** Every finished item is appended to the cache file as it arrives, keyed
  by the potential's content hash, the protocol and all its parameters; a rerun (or another
  test, or an interrupted run started again) reads the finished items and computes only
  the rest. A changed model has another hash, so it never reads stale results. A potential
  without a content hash (a code-defined factory) is not cached.
- **Nothing is dropped.** An item whose task raises is kept as a failed
  :class:`ItemResult` with the error. A local worker process that dies breaks its pool;
  the items it took down are run again one by one in fresh processes, so that only the
  item that kills its worker is marked failed ("worker died").
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import time
import traceback
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["CampaignError", "CalculatorSource", "calculator_source", "ItemResult",
           "CampaignResult", "run_campaign", "make_executor", "campaign_key", "Progress",
           "print_progress"]

#: bump when the meaning of cached campaign items changes
CACHE_FORMAT = 1


class CampaignError(RuntimeError):
    """The campaign could not run (no executor, a scheduler that does not answer, a
    calculator that cannot reach the workers)."""


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

    def load(self) -> Any:
        calc = _WORKER_CALCULATORS.get(self.key)
        if calc is None:
            for entry in self.sys_path:  # a factory module importable in the parent
                if entry not in sys.path:
                    sys.path.append(entry)
            if self.spec is not None:
                from .potentials import load_potential
                calc = load_potential(self.spec, self.base_dir).calculator
            else:
                calc = pickle.loads(self.pickled)
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
        return CalculatorSource(key=key, spec=spec, sys_path=tuple(sys.path))
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


# -- cache -----------------------------------------------------------------------------

def _canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def campaign_key(protocol: str, potential_sha256: str | None, parameters: Any) -> str | None:
    """The cache key: a digest of the protocol name, the potential's content hash and
    every parameter. ``None`` (no caching) for a potential without a content hash."""
    if potential_sha256 is None:
        return None
    text = _canonical_json({"format": CACHE_FORMAT, "protocol": protocol,
                            "potential": potential_sha256, "parameters": parameters})
    return hashlib.sha256(text.encode()).hexdigest()


def _encode(value: Any) -> Any:
    if hasattr(value, "get_positions") and hasattr(value, "cell"):
        import io

        import ase.io

        buffer = io.StringIO()
        ase.io.write(buffer, value, format="extxyz")
        return {"__extxyz__": buffer.getvalue()}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__extxyz__"}:
            import io

            import ase.io

            return ase.io.read(io.StringIO(value["__extxyz__"]), format="extxyz")
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class _Cache:
    """Append-only JSON-lines file of finished items, one per key."""

    def __init__(self, directory: str | os.PathLike[str] | None, key: str | None,
                 header: dict[str, Any]) -> None:
        self.path = None if directory is None or key is None \
            else Path(directory) / f"{key}.jsonl"
        self.header = header

    def read(self) -> dict[int, ItemResult]:
        if self.path is None or not self.path.exists():
            return {}
        found: dict[int, ItemResult] = {}
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash: recompute it
                    continue
                if number == 0 or "index" not in record:
                    continue
                if record.get("ok"):  # failed items are computed again
                    found[record["index"]] = ItemResult(
                        record["index"], True, _decode(record["value"]), None,
                        record.get("seconds", 0.0), from_cache=True)
        return found

    def append(self, item: ItemResult) -> None:
        if self.path is None or not item.ok:
            return
        line = _canonical_json({"index": item.index, "ok": True, "value": _encode(item.value),
                                "seconds": item.seconds})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        cut_short = False
        if not new:  # a crash may have cut the last line short: start a fresh line
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell():
                    handle.seek(-1, os.SEEK_END)
                    cut_short = handle.read(1) != b"\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            if new:
                handle.write(_canonical_json(self.header) + "\n")
            handle.write(("\n" if cut_short else "") + line + "\n")
            handle.flush()


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
    """Runs each task at submit time in this process."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: B036 - handed to the caller through the future
            future.set_exception(exc)
        return future


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _single_threaded() -> None:
    """Worker initializer: one BLAS/OpenMP thread per worker process. Without it two
    workers on two cores each start a BLAS thread pool whose threads spin against each
    other (measured: a 64-atom relaxation took 30 s instead of 0.8 s)."""
    for name in _THREAD_VARIABLES:
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy is not loaded yet in a fresh worker: the variables suffice
        return
    threadpool_limits(1)


def make_executor(workers: int = 0, scheduler: str | None = None,
                  timeout_s: float = 10.0) -> tuple[Executor, str, Callable[[], None]]:
    """An executor, its kind, and a function that shuts it down.

    ``scheduler`` (a Dask address such as ``tcp://127.0.0.1:8786``) wins over
    ``workers``; a scheduler that does not answer within ``timeout_s`` raises
    :class:`CampaignError`.
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
        return client.get_executor(pure=False), "dask", client.close
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        executor = _LocalExecutor()
        return executor, "local", lambda: None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: no fork of a process with threads (OpenMP, Dask, pytest-timeout)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_single_threaded,
                               mp_context=multiprocessing.get_context("forkserver"))
    return pool, "processes", lambda: pool.shutdown(wait=True, cancel_futures=True)


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


def run_campaign(protocol: str, task: Callable[[Any, Any], Any], items: Sequence[Any],
                 potential: Any, parameters: Any = None, *, workers: int = 0,
                 scheduler: str | None = None, executor: Executor | None = None,
                 cache_dir: str | os.PathLike[str] | None = None,
                 progress: Callable[[Progress], None] | None = None,
                 timeout_s: float = 10.0) -> CampaignResult:
    """Run ``task(calculator, item)`` for every item and collect the results.

    ``task`` must be a module-level function (it is pickled for workers). ``parameters``
    (JSON-serialisable, everything that changes the results, including the items' seeds)
    and the potential's content hash key the cache in ``cache_dir``; ``None`` disables it.
    ``timeout_s`` bounds the wait for a Dask scheduler to answer.
    """
    items = list(items)
    info = getattr(potential, "info", None)
    key = campaign_key(protocol, getattr(info, "sha256", None),
                       parameters) if cache_dir is not None else None
    header = {"format": CACHE_FORMAT, "protocol": protocol, "parameters": parameters,
              "potential": info.as_dict() if info is not None else None,
              "n_items": len(items)}
    cache = _Cache(cache_dir, key, header)
    done: dict[int, ItemResult] = {i: r for i, r in cache.read().items() if i < len(items)}
    start = time.perf_counter()
    n_failed = 0

    def tell() -> None:
        if progress is not None:
            progress(Progress(protocol, len(done), len(items), n_failed,
                              sum(r.from_cache for r in done.values()),
                              time.perf_counter() - start))

    todo = [i for i in range(len(items)) if i not in done]
    tell()
    if not todo:
        return CampaignResult(tuple(done[i] for i in range(len(items))), 0.0,
                              0, "cache", str(cache.path) if cache.path else None)

    own = executor is None
    if own:
        executor, kind, shutdown = make_executor(workers, scheduler, timeout_s)
    else:
        kind, shutdown = type(executor).__name__, (lambda: None)
    local = kind == "local"
    source = calculator_source(potential, local=local)
    def finish(index: int, ok: bool, value: Any, error: str | None, seconds: float) -> None:
        nonlocal n_failed
        result = ItemResult(index, ok, value, error, seconds)
        done[index] = result
        n_failed += not ok
        cache.append(result)
        tell()

    lost: list[int] = []
    try:
        futures = {executor.submit(_run_item, task, source, i, items[i]): i for i in todo}
        for future in as_completed(futures):
            i = futures[future]
            try:
                finish(*future.result())
            except Exception as exc:  # the worker died (it may not be this item's fault)
                if own and kind == "processes":
                    lost.append(i)
                else:
                    finish(i, False, None, f"worker died: {type(exc).__name__}: {exc}", 0.0)
        # a dead process breaks the whole pool: run each lost item again, one at a time
        # in a fresh pool, so that only the item that kills its worker is marked failed
        for i in sorted(lost):
            shutdown()
            executor, kind, shutdown = make_executor(1, None)
            try:
                finish(*executor.submit(_run_item, task, source, i, items[i]).result())
            except Exception as exc:
                finish(i, False, None, f"worker died: {type(exc).__name__}: {exc}", 0.0)
    finally:
        if own:
            shutdown()
    return CampaignResult(tuple(done[i] for i in range(len(items))),
                          time.perf_counter() - start, workers if kind != "local" else 0,
                          kind, str(cache.path) if cache.path else None)

