"""Three subjects, not one: a fitting recipe's cross-validation and the training set's
leakage and applicability checks run once per run, under their own identity, never under a
candidate; the accuracy-cost plot uses each candidate's own errors; a candidate sits beside
the recipe that fitted it only when the user links them (ini mlpval_fitted_by)."""

from __future__ import annotations

import json

import pytest

from pytest_mlpval.testing import make_reference_file

from .conftest import LABELS, SCALED, read_json, records_by_nodeid

POTENTIALS = ("--potential=sw", f"--potential=scaled={SCALED}")

# A recipe whose models are SW with forces x1.5: its CV force RMSE (~0.5 eV/Å on these
# cells) is neither candidate's (sw: 0 on SW labels; scaled: the same 1.5x, but measured
# on the test set, not by refitting).
CV_TEST = """
    import pytest
    from pytest_mlpval.domain_tests import mlpval_cv

    def fit_scaled(frames, workdir):
        return "pytest_mlpval.testing:sw_forces_scaled"

    @pytest.mark.mlpval_cv(k=2, seed=1, fit=fit_scaled, recipe="{recipe}")
    def test_recipe_cv(mlpval_cv):
        mlpval_cv.run()
"""

ERRORS_TEST = """
    import pytest

    @pytest.mark.mlpval_dataset("test")
    def test_errors(mlpval_errors):
        pass
"""

# a cost record as test_mlpval_cost makes it (without pytest-benchmark)
COST_TEST = """
    def test_cost(mlpval):
        mlpval.record_metrics("cost", "cost", "8 atoms",
                              {"n_atoms": 8, "time_per_call_s": 1e-3,
                               "time_per_atom_us": 125.0},
                              {"n_atoms": "atoms", "time_per_call_s": "s",
                               "time_per_atom_us": "µs"})
"""

# the accuracy-cost plot's points, as the plot function is given them
CAPTURE_PLOT = """
    import json
    from pytest_mlpval import plots

    _draw = plots.accuracy_cost

    def _capture(points, path):
        with open("points.json", "w") as handle:
            json.dump([list(p) for p in points], handle)
        return _draw(points, path)

    plots.accuracy_cost = _capture
"""


@pytest.fixture
def data(pytester):
    make_reference_file(pytester.path / "train.xyz", n_structures=6, seed=0)
    make_reference_file(pytester.path / "heldout.xyz", n_structures=4, seed=7,
                        config_types=("rattled",))
    return pytester.path


def _ini(pytester, *lines):
    pytester.makeini("[pytest]\nmlpval_datasets =\n"
                     f"    train=train.xyz,{LABELS}\n    test=heldout.xyz,{LABELS}\n"
                     + "\n".join(lines) + "\n")


def _candidate_records(document):
    return [(t["nodeid"], r) for t in document["tests"] for r in t["records"]
            if r["potential"] is not None]


def test_a_recipes_cv_runs_once_and_never_under_a_candidate(pytester, run, plugin_args,
                                                            data):
    _ini(pytester)
    pytester.makepyfile(test_cv=CV_TEST.format(recipe="scaled-recipe"),
                        test_errors=ERRORS_TEST)
    result = run(*plugin_args, *POTENTIALS, "--mlpval-json=out.json",
                 "--mlpval-save-baseline=base.json", "-v")
    result.assert_outcomes(passed=3)  # one CV, errors of sw and scaled
    out = result.stdout.str()
    assert "test_cv.py::test_recipe_cv" in out and "test_recipe_cv[" not in out
    document = read_json(data / "out.json")
    records = records_by_nodeid(document)
    cv = records["test_cv.py::test_recipe_cv"]
    assert {r["potential"] for r in cv} == {None}
    assert {r["subject"]["kind"] for r in cv} == {"recipe"}
    assert {r["subject"]["name"] for r in cv} == {"scaled-recipe"}
    identity = cv[0]["subject"]["identity"]
    assert identity["fitter"]["name"] == "test_cv.fit_scaled" and identity["sha256"]
    assert not [r for _, r in _candidate_records(document)
                if r["dataset"].startswith("cv-")]
    for line in result.stdout.lines:  # the summary tables: never a candidate's CV row
        assert not (line.startswith(("sw ", "scaled ")) and "cv-random-k2" in line), line
    entries = read_json(data / "base.json")["entries"]
    cv_entries = [e for e in entries if e["dataset"].startswith("cv-")]
    assert cv_entries and all(e["potential"] is None for e in cv_entries)
    assert {e["subject"]["name"] for e in cv_entries} == {"scaled-recipe"}
    assert {e["potential"] for e in entries} == {None, "sw", "scaled"}
    if not plugin_args:  # read back and compared under the recipe's name
        again = run(*POTENTIALS, "--mlpval-compare=base.json")
        again.assert_outcomes(passed=3)
        again.stdout.fnmatch_lines(["*base.json: 0 regressed, 0 improved, 0 new, "
                                    "3 compared records, 0 records without baseline*"])


def test_leakage_and_applicability_run_once_under_the_training_set(pytester, run, data):
    import ase.io

    from pytest_mlpval.data import read_dataset

    ase.io.write(data / "app.xyz", ase.io.read(data / "heldout.xyz", ":2"),
                 format="extxyz")
    _ini(pytester, "mlpval_application = app.xyz")
    pytester.makepyfile(test_domain="""
        from pytest_mlpval.domain_tests import (mlpval_domain, test_mlpval_applicability,
                                                test_mlpval_leakage)
    """)
    result = run(*POTENTIALS, "--mlpval-json=out.json", "-v", "-k", "not train")
    result.assert_outcomes(passed=2)  # not once per candidate
    train = read_dataset(f"train={data / 'train.xyz'},{LABELS}")
    records = records_by_nodeid(read_json(data / "out.json"))
    assert set(records) == {"test_domain.py::test_mlpval_leakage[test]",
                            "test_domain.py::test_mlpval_applicability"}
    for recs in records.values():
        for rec in recs:
            assert rec["potential"] is None
            assert rec["subject"]["kind"] == "dataset"
            assert rec["subject"]["name"] == "train"
            assert rec["subject"]["identity"]["sha256"] == train.sha256


def test_accuracy_cost_uses_each_candidates_own_errors(pytester, run, data):
    """The CV test runs first (file order): the plot once took a candidate's first error
    record, the recipe's CV errors (GAP's 0.167 eV/Å for Stillinger-Weber in the suite)."""
    _ini(pytester)
    pytester.makeconftest(CAPTURE_PLOT)
    pytester.makepyfile(test_a_cv=CV_TEST.format(recipe="scaled-recipe"),
                        test_b_errors=ERRORS_TEST, test_c_cost=COST_TEST)
    result = run(*POTENTIALS, "--mlpval-json=out.json", "--mlpval-plots=plots")
    result.assert_outcomes(passed=5)
    assert (data / "plots" / "accuracy_cost.png").is_file()
    points = {p[0]: p for p in json.loads((data / "points.json").read_text())}
    own = {r["potential"]: r["metrics"]["force_rmse"]["value"]
           for _, r in _candidate_records(read_json(data / "out.json"))
           if r["dataset"] == "test" and r["subset"] == "all"}
    assert set(points) == {"sw", "scaled"}
    for name in ("sw", "scaled"):
        assert points[name][3] == "test"
        assert points[name][2] == pytest.approx(own[name])
    assert points["sw"][2] < 1e-5  # SW on SW labels, not the recipe's ~0.5 eV/Å


def test_a_candidate_is_beside_its_recipe_only_when_linked(pytester, run, data):
    pytester.makepyfile(test_cv=CV_TEST.format(recipe="scaled-recipe"),
                        test_errors=ERRORS_TEST)
    _ini(pytester)
    alone = run(*POTENTIALS, "--mlpval-json=out.json", "--mlpval-report=alone")
    alone.assert_outcomes(passed=3)
    assert "mlpval fitted by" not in alone.stdout.str()
    assert read_json(data / "out.json")["links"] == []
    side_by_side = "Candidates beside the recipes that fitted them"
    assert side_by_side not in (data / "alone" / "index.html").read_text(encoding="utf-8")

    _ini(pytester, "mlpval_fitted_by = scaled=scaled-recipe")
    linked = run(*POTENTIALS, "--mlpval-json=out.json", "--mlpval-report=linked")
    linked.assert_outcomes(passed=3)
    linked.stdout.fnmatch_lines([
        "*= mlpval fitted by =*", "*candidate*fitted by*subject*dataset*",
        "scaled*scaled-recipe*scaled*test*4*", "scaled*scaled-recipe*recipe:scaled-recipe"
        "*cv-random-k2*6*"])
    section = linked.stdout.str().split("mlpval fitted by")[1]
    assert "\nsw " not in section  # sw is not linked
    document = read_json(data / "out.json")
    assert document["links"] == [{"candidate": "scaled", "recipe": "scaled-recipe"}]
    subjects = {(s["kind"], s["name"]): s for s in document["subjects"]}
    assert subjects[("candidate", "scaled")]["fitted_by"] == "scaled-recipe"
    assert "fitted_by" not in subjects[("candidate", "sw")]
    assert subjects[("recipe", "scaled-recipe")]["fits"] == ["scaled"]
    page = (data / "linked" / "index.html").read_text(encoding="utf-8")
    assert side_by_side in page
    table = page.split(side_by_side)[1].split("</table>")[0]
    assert "recipe:scaled-recipe" in table and ">sw<" not in table

    bad = run(*POTENTIALS, "--mlpval-fitted-by=scaled")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--mlpval-fitted-by: 'scaled': expected CANDIDATE=RECIPE*"])


def test_every_mlpval_report_names_its_subject(pytester, data, monkeypatch):
    """("mlpval_subject", {"kind", "name"}) on the reports of every test using an mlpval
    fixture, on a skipped one (no fit recipe) and one without records too."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(name, raising=False)
    _ini(pytester)
    pytester.makepyfile(test_cv=CV_TEST.format(recipe="scaled-recipe") + """
    def test_no_recipe(mlpval_cv):
        mlpval_cv.run()

    def test_nothing_recorded(mlpval_potential):
        pass
""", test_domain="from pytest_mlpval.domain_tests import mlpval_domain, "
                  "test_mlpval_leakage\n")
    reprec = pytester.inline_run("-p", "no:benchmark", *POTENTIALS)
    subjects = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        for key, value in report.user_properties:
            if key == "mlpval_subject":
                subjects.setdefault(report.nodeid, set()).add(
                    (report.when, value["kind"], value["name"]))
    assert subjects["test_cv.py::test_recipe_cv"] >= {
        ("setup", "recipe", "scaled-recipe"), ("call", "recipe", "scaled-recipe")}
    assert ("setup", "recipe", "no-recipe") in subjects["test_cv.py::test_no_recipe"]
    assert ("call", "candidate", "scaled") in subjects[
        "test_cv.py::test_nothing_recorded[scaled]"]
    assert ("call", "dataset", "train") in subjects[
        "test_domain.py::test_mlpval_leakage[test]"]


def test_links_name_a_candidate_by_name_or_content_hash():
    from pytest_mlpval.subjects import linked_recipe, parse_links

    links = parse_links(["gap_si=fit_gap.py", "06535ff0f7d12452 = fit_gap.py",
                         "# a comment", ""], "ini mlpval_fitted_by")
    gap = "06535ff0f7d124525cda462cb5d70e2dcd57c641dd6e24f19a41e191ce89dce2"
    assert linked_recipe(links, "gap_si", None) == "fit_gap.py"
    assert linked_recipe(links, "gap", gap) == "fit_gap.py"  # the model under any name
    assert linked_recipe(links, "gap", "0" * 64) is None
    assert linked_recipe(links, "sw", None) is None
    assert linked_recipe({"0653": "fit_gap.py"}, "gap", gap) is None  # prefix too short
    with pytest.raises(ValueError, match="linked to two recipes"):
        parse_links(["gap_si=a", "gap_si=b"], "ini mlpval_fitted_by")
