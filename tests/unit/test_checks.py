"""The one bounds workflow (pytest_mlpval.checks.perform_bounds_check): groups checked and
recorded, one failure message per failing group, usage errors, the varying parts."""

from __future__ import annotations

import pytest

from pytest_mlpval.assertions import MissingMetricError, MlpvalAssertionError
from pytest_mlpval.checks import perform_bounds_check, usage_error

METRICS = {"n_failed": 2.0, "fraction": 0.5}
UNITS = {"n_failed": "", "fraction": ""}


def _record():
    return {"thresholds": []}


def test_passing_groups_are_recorded_and_returned():
    record = _record()
    checked = perform_bounds_check(METRICS, UNITS, [({"max_n_failed": 2}, "marker"),
                                                    ({"min_fraction": 0.1}, "call")],
                                   what="rss of sw", record=record)
    assert [(r.metric, r.passed) for r in checked] == [("n_failed", True), ("fraction", True)]
    assert [t["metric"] for t in record["thresholds"]] == ["n_failed", "fraction"]


def test_each_failing_group_has_its_table_and_details_come_last():
    record = _record()
    with pytest.raises(MlpvalAssertionError) as info:
        perform_bounds_check(METRICS, UNITS, [({"max_n_failed": 0}, "marker A"),
                                              ({"min_fraction": 0.1}, "marker B"),
                                              ({"min_fraction": 0.9}, "call C")],
                             what="rss of sw", record=record,
                             details=lambda: ["least covered:", "  1 Si8"])
    paragraphs = str(info.value).split("\n\n")
    assert len(paragraphs) == 3
    assert paragraphs[0].startswith("rss of sw: 1 of 1 bounds not met")
    assert paragraphs[0].endswith("bounds from marker A")
    assert "FAIL" in paragraphs[0]
    assert paragraphs[1].endswith("bounds from call C")
    assert paragraphs[2] == "least covered:\n  1 Si8"
    # every group is recorded, the passing one too
    assert [t["passed"] for t in record["thresholds"]] == [False, True, False]


def test_a_nan_metric_fails_its_bound():
    with pytest.raises(MlpvalAssertionError, match="1 of 1 bounds not met"):
        perform_bounds_check({"x": float("nan")}, {}, [({"max_x": 1.0}, "m")], what="p of q")


@pytest.mark.parametrize("bounds, message", [
    ({"max_missing": 1}, "m: no metric 'missing' in this result; it has fraction, n_failed"),
    ({"most_x": 1}, "m: 'most_x' is not min_<metric> or max_<metric>"),
])
def test_a_bad_bound_is_a_usage_error(bounds, message):
    with pytest.raises(pytest.UsageError) as info:
        perform_bounds_check(METRICS, UNITS, [(bounds, "m")], what="p of q")
    assert str(info.value) == message
    with pytest.raises(pytest.UsageError) as info:
        perform_bounds_check(METRICS, UNITS, [(bounds, "m")], what="p of q",
                             on_usage_error=usage_error("t.py::test_x"))
    assert str(info.value) == f"t.py::test_x: {message}"


def test_the_check_the_record_and_the_messages_can_be_given():
    """As the property tests use it: one comparison per group, recorded by a function,
    messages made from all checked groups at once, their own usage errors."""
    class Compared:
        def __init__(self, name, passed):
            self.name, self.passed = name, passed

    def check(metrics, units, spec, source):
        if spec not in metrics:
            raise MissingMetricError(f"no {spec!r}")
        return [Compared(spec, metrics[spec] < 1.0)]

    recorded = []
    failures = lambda checked: [" + ".join(c.name for _, _, (c,) in checked  # noqa: E731
                                           if not c.passed)]
    with pytest.raises(MlpvalAssertionError) as info:
        perform_bounds_check(METRICS, {}, [("n_failed", "a"), ("fraction", "b")],
                             what="-", check=check, failures=failures,
                             record=lambda spec, checked: recorded.append(spec))
    assert str(info.value) == "n_failed"
    assert recorded == ["n_failed", "fraction"]
    with pytest.raises(pytest.UsageError, match=r"^a: no 'x'$"):
        perform_bounds_check(METRICS, {}, [("x", "a")], what="-", check=check,
                             on_usage_error=lambda exc, source: pytest.UsageError(
                                 f"{source}: {exc}"))
    with pytest.raises(MissingMetricError):  # not a usage error unless listed
        perform_bounds_check(METRICS, {}, [("x", "a")], what="-", check=check,
                             usage_errors=(ValueError,))


def test_the_pytest_layers_errors_derive_from_the_root():
    from pytest_mlpval.errors import MlpvalError, NonFiniteError
    from pytest_mlpval.fixture import NonFiniteMetricError, ProtocolFailure
    from pytest_mlpval.report import ReportError

    assert ReportError.__mro__[1] is MlpvalError
    # failed validations stay ordinary test failures (AssertionError)
    for cls in (NonFiniteMetricError, ProtocolFailure):
        assert issubclass(cls, MlpvalError) and issubclass(cls, AssertionError)
    assert issubclass(NonFiniteMetricError, NonFiniteError)
