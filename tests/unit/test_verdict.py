"""The verdict matrix as a library: outcomes of test phases, groups, subjects, cells with
the worst excess, the PASS/FAIL line per subject."""

from __future__ import annotations

import json
import math

import pytest

from pytest_mlpval.results import RunResults
from pytest_mlpval.verdict import (
    build_verdict,
    combine_outcome,
    failure_lines,
    group_of,
    threshold_excess,
    verdict_rows,
)


def _phases(*phases):
    outcome = None
    for when, result, wasxfail in phases:
        outcome = combine_outcome(outcome, when, result, wasxfail)
    return outcome


@pytest.mark.parametrize("phases, expected", [
    ([("setup", "passed", False), ("call", "passed", False), ("teardown", "passed", False)],
     "passed"),
    ([("setup", "passed", False), ("call", "failed", False), ("teardown", "passed", False)],
     "failed"),
    ([("setup", "failed", False), ("teardown", "passed", False)], "error"),
    ([("setup", "passed", False), ("call", "passed", False), ("teardown", "failed", False)],
     "error"),
    ([("setup", "passed", False), ("call", "failed", False), ("teardown", "failed", False)],
     "failed"),
    ([("setup", "skipped", False), ("teardown", "passed", False)], "skipped"),
    ([("setup", "passed", False), ("call", "skipped", False)], "skipped"),
    ([("setup", "passed", False), ("call", "skipped", True), ("teardown", "passed", False)],
     "xfailed"),
    ([("setup", "skipped", True)], "xfailed"),  # xfail(run=False)
    ([("setup", "passed", False), ("call", "passed", True)], "xpassed"),
], ids=["pass", "fail", "setup-error", "teardown-error", "fail-and-teardown", "skip-marker",
        "skip-in-body", "xfail", "xfail-not-run", "xpass"])
def test_combine_outcome(phases, expected):
    assert _phases(*phases) == expected


def _rec(kind="errors", potential="sw", dataset="ref", subset="all", thresholds=(),
         **extra):
    return {"kind": kind, "potential": {"name": potential, "sha256": "ab" * 32},
            "dataset": {"name": dataset}, "subset": subset, "n_structures": 1,
            "n_atoms": 8, "metrics": {}, "units": {}, "thresholds": list(thresholds),
            **extra}


def _t(metric, value, limit, passed="auto", **extra):
    if passed == "auto":
        passed = value <= limit if extra.get("bound") != "min" else value >= limit
    return {"metric": metric, "subset": "all", "value": value, "limit": limit, "unit": "u",
            "passed": passed, **extra}


@pytest.mark.parametrize("records, nodeid, group", [
    ([_rec()], "t.py::test_forces[sw-ref]", "errors"),
    ([_rec("checks", dataset="checks")], "t.py::test_x[sw]", "physics"),
    ([_rec("cost", dataset="cost")], "t.py::test_x[sw]", "cost"),
    ([_rec(), _rec("protocol", dataset="rss")], "t.py::test_x[sw]", "structures"),
    ([_rec("protocol", dataset="md_stability")], "t.py::test_x[sw]", "MD"),
    ([_rec("protocol", dataset="compression")], "t.py::test_x[sw]", "MD"),
    ([_rec("protocol", dataset="melt_quench")], "t.py::test_x[sw]", "MD"),
    ([_rec("protocol", dataset="elastic")], "t.py::test_x[sw]", "properties"),
    ([_rec("protocol", dataset="surface_100")], "t.py::test_x[sw]", "properties"),
    ([_rec("protocol", dataset="leakage")], "t.py::test_x[sw]", "data"),
    ([_rec("protocol", dataset="learning-curve")], "t.py::test_x[sw]", "errors"),
    ([_rec("protocol", dataset="my_thing")], "test_structure.py::test_y[sw]", "structures"),
    # no records: by function name, then module
    ([], "test_md.py::test_compression[sw]", "MD"),
    ([], "suite/test_md.py::test_a[sw]", "MD"),
    ([], "test_physics.py::test_a[sw]", "physics"),
    ([], "test_numerical_errors.py::test_a[sw]", "errors"),
    ([], "test_properties.py::test_a[sw]", "properties"),
    ([], "test_misc.py::test_a[sw]", "other"),
])
def test_group_of(records, nodeid, group):
    assert group_of(records, nodeid) == group


def test_threshold_excess():
    assert threshold_excess(_t("force_rmse", 0.85, 0.2)) == pytest.approx(3.25)
    assert math.isnan(threshold_excess(_t("force_rmse", 0.1, 0.2)))
    assert threshold_excess(_t("fraction", 0.05, 0.1, bound="min")) == pytest.approx(0.5)
    assert threshold_excess(_t("energy_offset", -0.3, 0.1, passed=False)) == pytest.approx(2.0)
    assert threshold_excess(_t("n_failed", 2.0, 0.0)) == math.inf
    assert threshold_excess(_t("force_rmse", math.nan, 0.2, passed=False)) == math.inf
    assert math.isnan(threshold_excess(_t("x", None, 1e-5, passed=None, status="skipped")))


def _test(nodeid, outcome, *records, **extra):
    return {"nodeid": nodeid, "outcome": outcome, "records": list(records), **extra}


def test_build_verdict_two_candidates():
    tests = [
        _test("t.py::test_forces[sw-ref]", "passed",
              _rec(thresholds=[_t("force_rmse", 0.1, 0.2)])),
        _test("t.py::test_forces[scaled-ref]", "failed",
              _rec(potential="scaled", thresholds=[_t("force_rmse", 0.85, 0.2)])),
        _test("t.py::test_energy[scaled-ref]", "failed",
              _rec(potential="scaled", thresholds=[_t("energy_rmse", 0.02, 0.01),
                                                   _t("force_rmse", 0.85, 0.8)])),
        _test("t.py::test_rss[scaled]", "failed", _rec(
            "protocol", potential="scaled", dataset="rss",
            thresholds=[_t("n_failed", 2.0, 0.0, bound="max")])),
        _test("t.py::test_md[sw]", "xfailed", _rec(
            "protocol", dataset="md_stability", thresholds=[_t("unstable", 1.0, 0.0)])),
        _test("t.py::test_md[scaled]", "xpassed"),
        _test("t.py::test_phonons[sw]", "skipped"),  # no records: subject from the id
        _test("t.py::test_phonons[scaled]", "error"),
        _test("t.py::test_plain", "passed"),  # no subject: not in the matrix
        _test("t.py::test_leakage[ref]", "passed", subject={
            "kind": "dataset", "name": "ref", "identity": "cd" * 32}),
    ]
    verdict = build_verdict(tests, ["sw", "scaled"])
    assert json.loads(json.dumps(verdict, allow_nan=False)) == verdict  # strict JSON
    assert verdict["groups"] == ["errors", "physics", "structures", "MD", "properties",
                                 "data", "baseline"]
    names = [(r["kind"], r["name"]) for r in verdict["subjects"]]
    assert names == [("candidate", "sw"), ("candidate", "scaled"), ("dataset", "ref")]
    sw, scaled, ref = verdict["subjects"]
    assert sw["verdict"] == "PASS" and scaled["verdict"] == "FAIL"
    assert ref["verdict"] == "PASS" and ref["identity"] == "cd" * 32
    assert verdict["verdict"] == "FAIL"
    assert sw["cells"]["errors"]["text"] == "1 ok"
    assert sw["cells"]["MD"]["text"] == "1 xfail"
    assert sw["cells"]["properties"]["text"] == "1 skip"
    assert sw["counts"] == {"passed": 1, "xfailed": 1, "skipped": 1}
    errors = scaled["cells"]["errors"]
    assert errors["text"] == "2 FAIL +325%" and errors["status"] == "FAIL"
    assert errors["worst"]["metric"] == "force_rmse"
    assert errors["worst"]["test"] == "t.py::test_forces[scaled-ref]"
    assert scaled["cells"]["structures"]["text"] == "1 FAIL 2 > 0"
    assert scaled["cells"]["MD"]["text"] == "1 XPASS"
    assert scaled["cells"]["properties"]["text"] == "1 ERROR"
    # ref's test is grouped by its name
    assert ref["cells"]["data"]["text"] == "1 ok"
    headers, rows = verdict_rows(verdict)
    assert headers == ["subject", "kind", "errors", "physics", "structures", "MD",
                       "properties", "data", "baseline", "verdict"]
    assert rows[0] == ["sw", "candidate", "1 ok", "-", "-", "1 xfail", "1 skip", "-", "-",
                       "PASS"]
    assert rows[1][-1] == "FAIL"
    lines = failure_lines(verdict)
    assert lines == [
        "scaled FAIL errors: force_rmse on ref 0.85 u not <= 0.2 (+325%) in "
        "t.py::test_forces[scaled-ref]",
        "scaled FAIL structures: n_failed on rss 2 u not <= 0 (past a limit of 0) in "
        "t.py::test_rss[scaled]",
        "scaled FAIL properties: 1 test(s) failed or errored without a failed limit: "
        "t.py::test_phonons[scaled]"]


def test_data_column_appears_only_when_used():
    verdict = build_verdict([_test("t.py::test_a[sw]", "passed", _rec())], ["sw"])
    assert "data" not in verdict["groups"] and "cost" not in verdict["groups"]


def test_baseline_column():
    regressed = _rec(baseline="compared", comparison=[
        {"metric": "force_rmse", "now": 0.3, "baseline": 0.2, "change": 0.1, "unit": "eV/Å",
         "status": "regressed"},
        {"metric": "energy_rmse", "now": 0.02, "baseline": 0.01, "change": 0.01,
         "unit": "eV/atom", "status": "regressed"}])
    same = _rec(baseline="compared", comparison=[])
    new = _rec(baseline="missing", comparison=[])
    tests = [
        # limits held, the failure is the regression: errors ok, baseline FAIL
        _test("t.py::test_a[sw-ref]", "failed", regressed, regression=True),
        _test("t.py::test_b[sw-ref]", "passed", same),
        _test("t.py::test_c[sw-ref]", "passed", new),
        _test("t.py::test_d[sw-ref]", "passed", _rec(baseline="other data", comparison=[])),
    ]
    verdict = build_verdict(tests + [_test("t.py::test_e[sw-ref]", "xfailed", regressed)],
                            ["sw"])
    (sw,) = verdict["subjects"]
    assert sw["cells"]["errors"]["text"] == "1 xfail, 4 ok"
    assert sw["cells"]["baseline"]["text"] == "2 FAIL +100%, 1 xfail, 1 ok, 1 new"
    assert sw["cells"]["baseline"]["worst"]["metric"] == "energy_rmse"
    assert sw["verdict"] == "FAIL"
    (line,) = failure_lines(verdict)
    assert line == ("sw FAIL baseline: energy_rmse on ref 0.01 -> 0.02 eV/atom (+100% "
                    "against the baseline) in t.py::test_a[sw-ref]")


def test_subject_of_records_and_all_skipped():
    recipe = _rec(subject={"kind": "recipe", "name": "fit_gap.py", "identity": "x"})
    verdict = build_verdict([_test("t.py::test_cv[gap]", "passed", recipe),
                             _test("t.py::test_x[gap]", "skipped")], ["gap"])
    assert [(r["kind"], r["name"], r["verdict"]) for r in verdict["subjects"]] == [
        ("candidate", "gap", "SKIP"), ("recipe", "fit_gap.py", "PASS")]


def test_candidate_names_with_dashes_in_ids():
    verdict = build_verdict([_test("t.py::test_x[my-gap-ref]", "passed"),
                             _test("t.py::test_x[gap-ref]", "passed")], ["gap", "my-gap"])
    assert [r["name"] for r in verdict["subjects"]] == ["gap", "my-gap"]


def test_run_results_phases_and_json_document():
    results = RunResults()
    for when, outcome, wasxfail in (("setup", "passed", False), ("call", "skipped", True),
                                    ("teardown", "passed", False)):
        got = results.add_phase("t.py::test_md[sw]", when, outcome, wasxfail)
    assert got == "xfailed"
    rec = _rec("protocol", dataset="md", thresholds=[_t("unstable", 1.0, 0.0)])
    rec["metrics"] = {"unstable": 1.0, "failed": 0.0}
    results.add("t.py::test_md[sw]", "xfailed", "call", [rec])
    results.add_phase("t.py::test_skip[sw]", "setup", "skipped")
    document = results.json_document()
    assert document["tests"][0]["outcome"] == "xfailed"
    assert document["verdict"]["subjects"][0]["cells"]["MD"]["text"] == "1 xfail"
    assert document["verdict"]["subjects"][0]["cells"]["other"]["text"] == "1 skip"
    # the protocol table: the failed bound of an expected failure is no bare FAIL
    _, rows = results.protocol_rows()
    assert [r[3] for r in rows] == ["unstable", "failed"]
    assert rows[0][-2:] == ["<= 0", "xfail"] and rows[1][-2:] == ["-", "-"]


# --- the validation card is written from what the run did -------------------------------

def test_card_ticks_cross_validation_and_experiment_when_they_ran():
    from pytest_mlpval.card import validation_card

    recipe = {"kind": "recipe", "name": "fit_gap.py", "identity": {"sha256": "ef" * 32}}
    cv = _rec(dataset="cv-random-k5", subject=recipe, potential=None)
    cv["potential"] = None
    cv["metrics"] = {"force_rmse": 0.17}
    elastic = _rec("protocol", dataset="elastic", thresholds=[{
        "metric": "|C11_GPa - experiment|", "subset": "max", "bound": "max", "value": 10.0,
        "limit": 20.0, "unit": "GPa", "passed": True, "property": "C11_GPa",
        "candidate": 161.0, "against": "experiment", "reference": 167.5,
        "source": "Hall 1967"}])
    results = RunResults()
    results.add("t.py::test_cv[fit_gap.py]", "passed", "call", [cv])
    results.add("t.py::test_errors[sw-test]", "passed", "call", [_rec(dataset="test")])
    results.add("t.py::test_elastic[sw]", "passed", "call", [elastic])
    lines = validation_card(results, {"version": "9", "datetime": "now"}).splitlines()
    assert ("- [x] Internal k-fold cross-validation errors: recipe:fit_gap.py "
            "cv-random-k5") in lines
    assert any(line.startswith("- [x] Comparison with experiment") and
               line.endswith(": C11_GPa") for line in lines)
    assert "| sw | C11_GPa | 161 | 167.5 | GPa | Hall 1967 | ok |" in lines
    # the recipe is no second potential, its CV no held-out test set of its own
    assert "- [ ] Comparison of several potentials on the same data" in lines
    assert not any(line.startswith("| cv-random-k5 |") for line in lines)  # test sets


def test_card_opens_with_the_verdict():
    from pytest_mlpval.card import validation_card

    results = RunResults()
    results.add("t.py::test_f[sw-ref]", "passed", "call", [_rec()])
    results.add("t.py::test_f[scaled-ref]", "failed", "call", [
        _rec(potential="scaled", thresholds=[_t("force_rmse", 0.85, 0.2)])])
    text = validation_card(results, {"version": "9", "datetime": "now"})
    assert text.index("## Verdict") < text.index("## Potentials")
    lines = text.splitlines()
    assert "| sw | candidate | 1 ok | - | - | - | - | - | PASS |" in lines
    assert "| scaled | candidate | 1 FAIL +325% | - | - | - | - | - | FAIL |" in lines
    assert any(line.startswith("- scaled FAIL errors: force_rmse on ref 0.85") for line in lines)


def test_report_tables_draw_only_statuses_and_faults_in_red():
    from pytest_mlpval.report import _table

    page = _table(["potential", "protocol", "metric", "value", "status"], [
        ["sw", "cv-random-k3", "failed", 0.0, "ok"],
        ["sw", "md", "n_failed", 1.0, "xfail"],
        ["sw", "rss", "n_failed", "NaN", "FAIL"]])
    assert "<td>failed</td>" in page  # a metric's name, value 0: no failure
    assert '<td class="xfail">xfail</td>' in page
    assert '<td class="fail">NaN</td>' in page and '<td class="fail">FAIL</td>' in page
    assert page.count('class="fail"') == 2
    tests = _table(["test", "outcome"], [["t[sw]", "xfailed"], ["t[gap]", "failed"]])
    assert '<td class="xfail">xfailed</td>' in tests and '<td class="fail">failed</td>' in tests


@pytest.mark.parametrize("order", ["inf-first", "inf-last"])
def test_a_cell_with_an_infinite_and_a_finite_excess(order):
    """Two failing tests of one cell, one past a limit by a NaN value (excess inf, stored
    as None) and one by 300%: the matrix is built (it raised TypeError comparing None),
    and the cell's worst is the non-finite one, whatever the order."""
    nan_test = _test("test_physics.py::test_a[nan]", "failed",
                     _rec("checks", potential="nan", dataset="checks",
                          thresholds=[_t("translation", math.nan, 1e-6, passed=False)]))
    big_test = _test("test_physics.py::test_b[nan]", "failed",
                     _rec("checks", potential="nan", dataset="checks",
                          thresholds=[_t("stress_gradient", 0.04, 0.01)]))
    tests = [nan_test, big_test] if order == "inf-first" else [big_test, nan_test]
    verdict = build_verdict(tests, ["nan"])
    (row,) = verdict["subjects"]
    cell = row["cells"]["physics"]
    assert cell["counts"] == {"failed": 2}
    assert cell["worst"]["metric"] == "translation" and cell["worst"]["excess"] is None
    assert row["verdict"] == "FAIL"
