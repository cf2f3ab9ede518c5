"""RunResults is ordered by the configured potentials, not by when xdist workers finish."""

from pytest_mlpval.results import RunResults


def _test(nodeid, *potentials):
    return {"nodeid": nodeid, "outcome": "passed", "when": "call",
            "records": [{"potential": {"name": p}, "dataset": {"name": "ref"},
                         "subset": "all", "metrics": {}} for p in potentials]}


def test_tests_follow_the_configured_potential_order():
    results = RunResults([_test("a[scaled]", "scaled"), _test("plain"),
                          _test("b[sw]", "sw"), _test("c[other]", "other"),
                          _test("d[scaled]", "scaled"), _test("e[sw]", "sw")])
    results.order_by_potential(["sw", "scaled"])
    assert [t["nodeid"] for t in results.tests] == [
        "b[sw]", "e[sw]", "a[scaled]", "d[scaled]", "plain", "c[other]"]
    assert list(results.identities()[0]) == ["sw", "scaled", "other"]
