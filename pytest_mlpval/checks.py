"""One bounds workflow for the pytest layer: check groups of bounds on a result's
metrics, record what was checked, fail the test with a table.

The fixture (``mlpval.expect`` and the ``mlpval_expect`` markers), the dataset and recipe
tests (:mod:`pytest_mlpval.domain_tests`) and the property tests
(:mod:`pytest_mlpval.property_tests`) all call :func:`perform_bounds_check`, passing what
differs between them as arguments (as pytest-regressions' ``perform_regression_check``
takes its check and dump functions): the metrics, the groups of bounds with where each
group comes from, how a group is checked, what is checked (for the message), where the
checked bounds are recorded, how a bad bound is reported, and what the failure message
adds.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pytest

from pytest_mlpval.assertions import (MissingMetricError, MlpvalAssertionError,
                                      bounds_message, check_bounds)

__all__ = ["perform_bounds_check", "min_max_bounds", "bounds_failures", "usage_error"]

#: ``check(metrics, units, bounds, source)``: the checked bounds of one group, each with
#: ``passed`` (and ``as_dict()`` when it is recorded by default)
Check = Callable[[Mapping[str, float], Mapping[str, str], Any, str], Sequence[Any]]
#: ``record(bounds, checked)``: store one group's checked bounds
Record = Callable[[Any, Sequence[Any]], None]
#: ``failures(checked)``: failure messages of ``[(bounds, source, checked), ...]``
Failures = Callable[[Sequence[tuple[Any, str, Sequence[Any]]]], list[str]]


def min_max_bounds(metrics: Mapping[str, float], units: Mapping[str, str],
                   bounds: Mapping[str, Any], source: str) -> list[Any]:
    """The default check: ``min_<metric>`` / ``max_<metric>`` bounds
    (:func:`~pytest_mlpval.assertions.check_bounds`)."""
    return check_bounds(metrics, units, bounds, source)


def bounds_failures(what: str) -> Failures:
    """The default failure messages: a table of every bound of each group that failed,
    ``"<what>: n of m bounds not met"``, ending ``bounds from <source>``."""
    def failures(checked: Sequence[tuple[Any, str, Sequence[Any]]]) -> list[str]:
        return [bounds_message(results, what, f"bounds from {source}")
                for _, source, results in checked if not all(r.passed for r in results)]

    return failures


def usage_error(prefix: str = "") -> Callable[[Exception, str], BaseException]:
    """The default report of a bad bound (unknown metric, not a number): a
    ``pytest.UsageError`` with the checker's message, after ``prefix`` (a node id)."""
    def make(exc: Exception, source: str) -> BaseException:
        return pytest.UsageError(f"{prefix}: {exc}" if prefix else str(exc))

    return make


def perform_bounds_check(
        metrics: Mapping[str, float], units: Mapping[str, str],
        groups: Sequence[tuple[Any, str]], *, what: str,
        record: Mapping[str, Any] | Record | None = None,
        check: Check = min_max_bounds,
        on_usage_error: Callable[[Exception, str], BaseException] = usage_error(),
        usage_errors: tuple[type[Exception], ...] = (MissingMetricError, ValueError),
        failures: Failures | None = None,
        details: Callable[[], Sequence[str]] | None = None) -> list[Any]:
    """Check every group of bounds on ``metrics`` and fail the test if any group fails.

    Parameters
    ----------
    metrics, units : mapping
        The result's metrics (name -> value) and their units (name -> unit).
    groups : sequence of (bounds, source)
        Each group of bounds with where it comes from (a marker's text, a call).
    what : str
        What is checked and whose, for the messages (``"rss of sw"``).
    record : record dict, callable or None
        Where the checked bounds go: a record (``as_dict()`` of each appended to its
        ``"thresholds"``), or ``record(bounds, checked)``; None: nowhere.
    check : callable
        ``check(metrics, units, bounds, source)`` -> checked bounds, each with
        ``passed`` (default: ``min_<metric>`` / ``max_<metric>`` bounds).
    on_usage_error : callable
        ``on_usage_error(exc, source)`` -> the exception raised for a bad bound (one of
        ``usage_errors``, raised by ``check``); default: ``pytest.UsageError``.
    failures : callable or None
        ``failures([(bounds, source, checked), ...])`` -> failure messages (default:
        a bounds table per failing group, :func:`bounds_failures`).
    details : callable or None
        Lines added as a last paragraph when something failed.

    Returns the checked bounds of every group; raises
    :class:`~pytest_mlpval.assertions.MlpvalAssertionError` with the messages (one
    paragraph each) when a bound is not met.
    """
    __tracebackhide__ = True
    checked_groups, checked = [], []
    for bounds, source in groups:
        try:
            results = list(check(metrics, units, bounds, source))
        except usage_errors as exc:
            raise on_usage_error(exc, source) from None
        if callable(record):
            record(bounds, results)
        elif record is not None:
            record["thresholds"].extend(r.as_dict() for r in results)
        checked_groups.append((bounds, source, results))
        checked.extend(results)
    if all(r.passed for r in checked):
        return checked
    messages = (failures or bounds_failures(what))(checked_groups)
    if details is not None:
        messages.append("\n".join(details()))
    raise MlpvalAssertionError("\n\n".join(messages))
