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
import threading
from typing import Any, Callable

__all__ = ["one_blas_thread", "single_threaded", "calculator_threads",
           "single_threaded_worker", "THREAD_VARIABLES"]

#: environment variables that set the thread pools of a fresh process
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_STATE = threading.local()


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


def single_threaded_worker() -> None:
    """Initializer of a campaign worker process: one BLAS/OpenMP thread per worker.
    Without it two workers on two cores each start a BLAS thread pool whose threads spin
    against each other (measured: a 64-atom relaxation took 30 s instead of 0.8 s)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy is not loaded yet in a fresh worker: the variables suffice
        return
    threadpool_limits(1)
