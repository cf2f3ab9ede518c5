"""Threads: one BLAS thread for the protocols' own tiny linear algebra, the caller's
threads for the calculator, one thread per campaign worker process.

Plain library (no pytest); threadpoolctl is imported when first used. Cell filters and
barostats (3x3 ``expm``/``logm``), Hessian solves and small matrix products spend their
time waking a multi-threaded BLAS rather than computing. Measured on 2 busy cores:
relaxing sh with its cell took 23 s with two OpenBLAS threads and 1.6 s with one; an
8-atom random-search relaxation 41 s instead of 3.7 s; a 64x64 matrix product 30 ms
instead of 0.07 ms; a 9x9 LU solve 4 ms instead of microseconds, and an equation of state
2.9 s instead of 0.8 s. Calculators keep their own threads: :func:`single_threaded` lifts
the limit around each calculator call (:func:`calculator_threads`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from typing import Any, Callable

__all__ = ["one_blas_thread", "single_threaded", "calculator_threads",
           "single_threaded_worker", "THREAD_VARIABLES", "THREADS_ENV", "usable_cores", "free_cores",
           "default_threads", "set_threads", "configured_threads", "torch_threads", "limit_loaded",
           "restore_threads"]

#: environment variables that set the thread pools of a fresh process
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: the run's thread setting (--mlpval-threads), read by campaign workers and loaders
THREADS_ENV = "MLPVAL_THREADS"

_STATE = threading.local()
#: one frame per set_threads not yet undone: the environment before it and the
#: threadpoolctl limits made since
_FRAMES: list[tuple[dict[str, str | None], list[Any]]] = []


def one_blas_thread() -> Any:
    """A context manager (threadpoolctl's ``threadpool_limits``) holding BLAS to one
    thread inside its block."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def single_threaded(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run a protocol's own work (optimisers, filters, fits, phonopy) with one BLAS/OpenMP
    thread, while the calculator keeps the thread count it had: calls made inside
    :func:`calculator_threads` get it back. Nested uses keep the outer limit."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_STATE, "controller", None) is not None:
            return function(*args, **kwargs)
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return function(*args, **kwargs)
        controller = ThreadpoolController()
        threads = max([lib["num_threads"] for lib in controller.info()] or [1])
        with controller.limit(limits=1):
            _STATE.controller, _STATE.threads = controller, threads
            try:
                return function(*args, **kwargs)
            finally:
                _STATE.controller = None

    return wrapper


def calculator_threads() -> Any:
    """Context restoring the caller's thread count around a calculator call inside
    :func:`single_threaded` (a no-op outside it)."""
    controller = getattr(_STATE, "controller", None)
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=_STATE.threads)


def single_threaded_worker(threads: int | None = None) -> None:
    """Initializer of a campaign worker process: ``threads`` BLAS/OpenMP/torch threads
    (the run's --mlpval-threads; one when not given). Without it two workers on two cores
    each start a BLAS thread pool whose threads spin against each other (measured: a
    64-atom relaxation took 30 s instead of 0.8 s)."""
    set_threads(threads or 1)


# -- the run's thread setting (--mlpval-threads) -----------------------------------------

def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def free_cores() -> tuple[int, int, float]:
    """``(free, usable, load)``: the usable cores less the system's load average over the
    last minute (rounded; at least one), the usable cores and that load."""
    usable = usable_cores()
    try:
        load = float(os.getloadavg()[0])
    except (AttributeError, OSError):  # not Unix
        load = 0.0
    return max(1, usable - int(load + 0.5)), usable, load


def default_threads(processes: int = 1, parallel: bool = False) -> int:
    """What a shared CI box wants: one thread per process when work already runs in
    several processes (``parallel``: xdist workers or campaign workers, whose pools would
    otherwise spin against each other), else the free cores (:func:`free_cores`) shared
    by ``processes``: on a busy box one thread. Threads that wait for a busy core cost
    far more than a core left idle: CHGNet on 2 cores busy with other jobs took 23 min
    for the 7 error tests with torch's default threads and 16 s with one (issue 17), and
    a 64-atom energy and forces 2.7-3.4 s with two threads, 0.36 s with one
    (2026-12-06, load average 4.4)."""
    if parallel:
        return 1
    return max(1, free_cores()[0] // max(1, processes))


def torch_threads(threads: int | None = None) -> bool:
    """Set torch's intra-op threads to ``threads`` (default: the run's setting) if torch
    is already imported (it is never imported here); True if it was set."""
    threads = threads or configured_threads()
    torch = sys.modules.get("torch")
    if threads is None or torch is None or not hasattr(torch, "set_num_threads"):
        return False
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return True


def limit_loaded(threads: int | None = None) -> None:
    """Hold the BLAS/OpenMP pools loaded by now (a model's loader may have loaded more)
    and torch, if imported, to ``threads`` (default: the run's setting; nothing without
    one). :func:`restore_threads` undoes the pools' limits."""
    threads = threads or configured_threads()
    if threads is None:
        return
    if "numpy" in sys.modules or "torch" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            limits = threadpool_limits(threads)
            if _FRAMES:
                _FRAMES[-1][1].append(limits)
    torch_threads(threads)


def set_threads(threads: int) -> None:
    """Make ``threads`` the thread count of this process and of the processes it starts:
    the OpenMP/BLAS environment variables (read by libraries loaded later and by child
    processes), the BLAS and OpenMP pools already loaded (threadpoolctl) and torch's
    threads if torch is imported. :func:`restore_threads` undoes it (calls nest)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    names = (*THREAD_VARIABLES, THREADS_ENV)
    _FRAMES.append(({name: os.environ.get(name) for name in names}, []))
    for name in names:
        os.environ[name] = str(threads)
    limit_loaded(threads)


def configured_threads() -> int | None:
    """The run's thread setting in this process (:func:`set_threads`), None if unset."""
    value = os.environ.get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def restore_threads() -> None:
    """Undo the last :func:`set_threads`: the environment variables and the BLAS/OpenMP
    limits as they were before it (torch keeps its setting)."""
    if not _FRAMES:
        return
    environment, limits = _FRAMES.pop()
    while limits:
        limits.pop().restore_original_limits()
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
