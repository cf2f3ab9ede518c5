"""One BLAS thread for code that makes many tiny linear-algebra calls.

Plain library (no pytest). Cell filters and barostats (3x3 ``expm``/``logm``), Hessian
solves and small matrix products spend their time waking a multi-threaded BLAS rather
than computing. Measured on 2 busy cores: relaxing sh with its cell took 23 s with two
OpenBLAS threads and 1.6 s with one; an 8-atom random-search relaxation 41 s instead of
3.7 s; a 64x64 matrix product 30 ms instead of 0.07 ms. Calculators keep their own
threads: the limit applies to the caller's block only.
"""

from __future__ import annotations

from typing import Any

__all__ = ["one_blas_thread"]


def one_blas_thread() -> Any:
    """A context manager (threadpoolctl's ``threadpool_limits``) holding BLAS to one
    thread inside its block."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")
