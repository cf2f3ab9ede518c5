"""Cross-validation, leakage, applicability and external test sets from pytest
(pytest_mlpval.domain_tests, the mlpval_cv marker), with fake fitting commands and
Stillinger-Weber-labelled data."""

from __future__ import annotations

import sys
import textwrap

import pytest

from pytest_mlpval.testing import make_reference_file

from .conftest import read_json, records_by_nodeid

KEYS = "energy=dft_energy,forces=dft_forces,stress=dft_stress"

# A 'fit' command: writes a model file the suite's conftest loads as SW, or fails.
FAKE_FIT = r'''
import pathlib, sys
mode, train, model = sys.argv[1:4]
n = pathlib.Path(train).read_text().count("Lattice")
if mode == "fail":
    sys.stderr.write(f"read {n} structures\nfatal: bad option default_sigma\n")
    sys.exit(3)
pathlib.Path(model).write_text(f"fitted on {n} structures")
'''

CONFTEST = '''
from pytest_mlpval.potentials import load_potential

def pytest_mlpval_load_potential(config, spec):
    if spec.endswith(".mdl"):  # the fake fit's models: Stillinger-Weber
        return load_potential("sw").calculator
    return None

def sw_label(atoms):
    atoms.calc = load_potential("sw").calculator
    return {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
            "stress": atoms.get_stress()}

def pytest_mlpval_labeller(config, name):
    return sw_label if name == "dft" else None
'''


@pytest.fixture
def suite(pytester):
    """train (6 SW-labelled cells), a held-out test set (4 rattled cells), a copy of train, the fake fit."""
    make_reference_file(pytester.path / "train.xyz", n_structures=6, seed=0)
    make_reference_file(pytester.path / "heldout.xyz", n_structures=4, seed=7,
                        config_types=("rattled",))
    make_reference_file(pytester.path / "copy.xyz", n_structures=6, seed=0)
    (pytester.path / "fake_fit.py").write_text(FAKE_FIT)
    pytester.makeconftest(CONFTEST)
    return pytester.path


def _ini(pytester, *lines):
    pytester.makeini("[pytest]\nmlpval_datasets =\n"
                     f"    train=train.xyz,{KEYS}\n    test=heldout.xyz,{KEYS}\n"
                     + "\n".join(lines) + "\n")


def _command(path, mode, model="{model}"):
    return f"{sys.executable} {path / 'fake_fit.py'} {mode} {{train}} {model}"


CV_TESTS = """
    import pytest
    from pytest_mlpval.domain_tests import mlpval_cv

    def fit_sw(frames, workdir):
        return "sw"

    def fit_scaled(frames, workdir):
        return "pytest_mlpval.testing:sw_forces_scaled"

    @pytest.mark.mlpval_cv(k=3, split="stratified", fit=fit_sw)
    @pytest.mark.mlpval_thresholds(force_rmse=0.01, energy_rmse=0.001)
    def test_cv_exact(mlpval_cv):
        result = mlpval_cv.run()
        assert result.metrics()["n_structures_evaluated"] == 6

    @pytest.mark.mlpval_cv(k=2, seed=1, fit=fit_scaled)
    @pytest.mark.mlpval_thresholds(force_rmse=0.01)
    def test_cv_too_strict(mlpval_cv):
        mlpval_cv.run()
"""


def test_cv_marker_thresholds_pass_or_fail_and_are_recorded(pytester, run, plugin_args,
                                                            suite):
    _ini(pytester)
    pytester.makepyfile(test_cv=CV_TESTS)
    result = run(*plugin_args, "--potential=sw", "--mlpval-json=out.json", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*force_rmse*FAIL*", "*mlpval_thresholds(force_rmse=0.01)*",
                                 "*mlpval summary*"])
    # the recipe's errors, once (not per candidate), under the recipe's name
    result.stdout.fnmatch_lines(["*recipe:test_cv.fit_sw*cv-stratified-k3*all*"])
    records = records_by_nodeid(read_json(suite / "out.json"))
    exact = records["test_cv.py::test_cv_exact"]
    errors = [r for r in exact if r["kind"] == "errors"]
    assert {r["dataset"] for r in errors} == {"cv-stratified-k3"}
    pooled = next(r for r in errors if r["subset"] == "all")
    assert pooled["n_structures"] == 6
    assert pooled["metrics"]["force_rmse"]["value"] < 1e-5  # labels stored to ~1e-8
    assert {t["metric"] for t in pooled["thresholds"]} == {"force_rmse", "energy_rmse"}
    folds = [r for r in exact if r["kind"] == "protocol" and r["subset"].startswith("fold")]
    assert [r["subset"] for r in folds] == ["fold 0", "fold 1", "fold 2"]
    assert sum(r["metrics"]["n_structures"]["value"] for r in folds) == 6
    strict = records["test_cv.py::test_cv_too_strict"]
    worse = next(r for r in strict if r["kind"] == "errors" and r["subset"] == "all")
    assert worse["dataset"] == "cv-random-k2"
    assert worse["metrics"]["force_rmse"]["value"] > 0.01
    assert [t["passed"] for t in worse["thresholds"]] == [False]


def test_fit_command_from_ini_failing_fold_shows_stderr(pytester, run, suite):
    _ini(pytester, f"mlpval_fit_command = {_command(suite, 'fail')}")
    pytester.makepyfile(test_cv="""
        import pytest
        from pytest_mlpval.domain_tests import mlpval_cv

        @pytest.mark.mlpval_cv(k=2)
        def test_cv(mlpval_cv):
            mlpval_cv.run()
    """)
    result = run("--potential=sw")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*n_failed_folds*2*0*FAIL*",
                                 "*fold 0 failed:*fit 0 exited with status 3*",
                                 "*stderr (last lines):*", "*fatal: bad option default_sigma*"])


def test_fit_command_option_with_the_load_hook_and_fixture_override(pytester, run, suite):
    """--mlpval-fit-command writes .mdl models loaded by the conftest's load hook; an
    mlpval_fit fixture wins over the option."""
    _ini(pytester)
    pytester.makepyfile(test_cv="""
        import pytest
        from pytest_mlpval.domain_tests import mlpval_cv

        @pytest.mark.mlpval_cv(k=3, model_name="model.mdl")
        @pytest.mark.mlpval_thresholds(force_rmse=1e-6)
        def test_cv(mlpval_cv):
            result = mlpval_cv.run()
            assert all(f.model.endswith("model.mdl") for f in result.folds)
    """, test_override="""
        import pytest
        from pytest_mlpval.domain_tests import mlpval_cv

        @pytest.fixture
        def mlpval_fit():
            return "{exe} {script} fail {{train}} {{model}}"

        @pytest.mark.mlpval_cv(k=2, model_name="model.mdl")
        def test_cv(mlpval_cv):
            mlpval_cv.run()
    """.format(exe=sys.executable, script=suite / "fake_fit.py"))
    result = run("--potential=sw", f"--mlpval-fit-command={_command(suite, 'ok')}", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["test_cv.py .*", "test_override.py F*",
                                 "*fit 0 exited with status 3*", "FAILED test_override.py*"])


def test_without_fit_command_skip_or_usage_error(pytester, run, suite):
    _ini(pytester)
    pytester.makepyfile(test_cv="""
        import pytest
        from pytest_mlpval.domain_tests import mlpval_cv

        @pytest.mark.mlpval_cv(k=3)
        def test_cv(mlpval_cv):
            mlpval_cv.run()

        @pytest.mark.mlpval_cv(k=3, required=True)
        def test_cv_required(mlpval_cv):
            mlpval_cv.run()

        @pytest.mark.mlpval_cv(k=3, split="alphabetical")
        def test_cv_bad_split(mlpval_cv):
            mlpval_cv.run()
    """)
    result = run("--potential=sw", "-rsf")
    result.assert_outcomes(skipped=1, failed=2)
    result.stdout.fnmatch_lines([
        "*UsageError*no fitting recipe for cross-validation*",
        "*UsageError*split='alphabetical'*expected one of random, stratified, grouped*",
        "SKIPPED*no fitting recipe for cross-validation: give --mlpval-fit-command=TEMPLATE*",
    ], consecutive=False)


def test_k_larger_than_the_dataset_is_a_usage_error(pytester, run, suite):
    _ini(pytester, f"mlpval_fit_command = {_command(suite, 'ok', '{workdir}/m.mdl')}")
    pytester.makepyfile(test_cv="""
        import pytest
        from pytest_mlpval.domain_tests import mlpval_cv

        @pytest.mark.mlpval_cv(k=7)
        def test_cv(mlpval_cv):
            mlpval_cv.run()
    """)
    result = run("--potential=sw")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*UsageError*mlpval_cv(k=7)*"])


def test_leakage_flags_training_frames_not_a_held_out_set(pytester, run, plugin_args, suite):
    pytester.makeini("[pytest]\nmlpval_datasets =\n"
                     f"    train=train.xyz,{KEYS}\n    test=heldout.xyz,{KEYS}\n"
                     f"    leaked=copy.xyz,{KEYS}\n")
    pytester.makepyfile(test_domain="from pytest_mlpval.domain_tests import *\n")
    result = run(*plugin_args, "--potential=sw", "--mlpval-json=out.json", "-rfs")
    result.assert_outcomes(passed=1, failed=1, skipped=3)  # train, applicability, CV
    result.stdout.fnmatch_lines([
        "*leakage of leaked: 2 of 2 bounds not met*",
        "*duplicate_fraction*1*<= 0.05*FAIL*",
        "*6 exact and 0 near duplicates among 6 test structures*",
        "*'train' is the training dataset*",
    ], consecutive=False)
    records = records_by_nodeid(read_json(suite / "out.json"))
    held = records["test_domain.py::test_mlpval_leakage[test]"]
    assert held[0]["dataset"] == "leakage" and held[0]["subset"] == "test"
    assert held[0]["metrics"]["duplicate_fraction"]["value"] == 0
    assert all(t["passed"] for t in held[0]["thresholds"])


def test_leakage_limits_from_mlpval_expect(pytester, run, suite):
    _ini(pytester)
    pytester.makepyfile(test_domain="""
        import pytest
        from pytest_mlpval.domain_tests import mlpval_domain

        @pytest.mark.mlpval_expect(max_duplicate_fraction=1.0,
                                   max_median_min_similarity=1.0)
        def test_loose(mlpval_domain):
            mlpval_domain.leakage(mlpval_domain.training())

        def test_default(mlpval_domain):
            mlpval_domain.leakage(mlpval_domain.training())
    """)
    result = run("--potential=sw")
    result.assert_outcomes(passed=1, failed=1)


def test_applicability_names_the_least_covered_structures(pytester, run, suite):
    import ase.io
    from ase.build import bulk

    inside = bulk("Si", "diamond", a=5.43, cubic=True)
    inside.rattle(0.005, seed=1)
    inside.info["config_type"] = "diamond"
    outside = bulk("Si", "sc", a=2.55) * (2, 2, 2)
    outside.info["config_type"] = "simple-cubic"
    ase.io.write(suite / "app.xyz", [inside, outside], format="extxyz")
    ase.io.write(suite / "near.xyz", [inside], format="extxyz")
    _ini(pytester)
    pytester.makepyfile(test_domain="from pytest_mlpval.domain_tests import *\n")
    result = run("--potential=sw", "--mlpval-application=app.xyz", "-k", "applicability")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*applicability of app.xyz: 1 of 1 bounds not met*",
        "*outside_fraction*<= 0.05*FAIL*",
        "*least covered structures:*",
        "*1*app.xyz[[]1[]] simple-cubic*8*1*",
    ], consecutive=False)
    again = run("--potential=sw", "--mlpval-application=near.xyz", "-k", "applicability")
    again.assert_outcomes(passed=1)
    skipped = run("--potential=sw", "-k", "applicability", "-rs")
    skipped.stdout.fnmatch_lines(["*no application structures: give "
                                  "--mlpval-application=PATH*"])


EXTERNAL_TEST = """
    import json
    from pathlib import Path

    from ase.build import bulk
    from pytest_mlpval.domain_tests import mlpval_external

    def test_external(mlpval, mlpval_external, mlpval_dataset):
        mlpval.errors(mlpval_dataset)
        frames = []
        for seed in range(3):
            atoms = bulk("Si", "diamond", a=5.43, cubic=True)
            atoms.rattle(0.05, seed=seed)
            frames.append(atoms)
        external = mlpval_external.build(frames, "dft", name="external-rss",
                                         protocol="rss", parameters={"n_structures": 3})
        assert json.loads(Path(external.sidecar).read_text())["provenance"]["reference"][
            "name"] == "conftest.sw_label"
        assert ".pytest_cache" in external.path
        report = mlpval_external.evaluate(external, force_rmse=1e-6)
        assert report.dataset == "external-rss" and len(report) == 3
"""


def test_external_set_labelled_by_the_hook_side_by_side(pytester, run, suite):
    pytester.makeini("[pytest]\nmlpval_datasets =\n    test=heldout.xyz," + KEYS + "\n")
    pytester.makepyfile(test_external=EXTERNAL_TEST)
    result = run("--potential=sw", "--mlpval-json=out.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*mlpval summary*", "*sw*external-rss*all*3*",
                                 "*sw*test*all*4*"], consecutive=False)
    records = records_by_nodeid(read_json(suite / "out.json"))
    recs = records["test_external.py::test_external[sw-test]"]
    assert {r["dataset"] for r in recs if r["kind"] == "errors"} == {"test", "external-rss"}
    unknown = textwrap.dedent(EXTERNAL_TEST).replace('"dft"', '"nonesuch"')
    pytester.makepyfile(test_external=unknown)
    result = run("--potential=sw")
    result.stdout.fnmatch_lines(["*reference 'nonesuch': no pytest_mlpval_labeller hook*"])


def test_learning_curve_is_recorded_with_its_figure(pytester, run, suite):
    _ini(pytester)
    pytester.makepyfile(test_lc="""
        import pytest
        from pytest_mlpval.domain_tests import mlpval_cv

        def fit_scaled(frames, workdir):
            return "pytest_mlpval.testing:sw_forces_scaled"

        @pytest.mark.mlpval_cv(k=3, fit=fit_scaled)
        @pytest.mark.mlpval_expect(protocol="learning-curve", max_n_failed=0)
        def test_curve(mlpval_cv):
            result = mlpval_cv.learning_curve(sizes=(0.5, 1.0), seeds=(0, 1))
            assert result.metrics()["n_points"] == 4
    """)
    result = run("--potential=sw", "--mlpval-json=out.json", "--mlpval-report=rep", "-rf")
    result.assert_outcomes(passed=1)
    (record,) = [r for r in records_by_nodeid(read_json(pytester.path / "out.json"))[
        "test_lc.py::test_curve"] if r["dataset"] == "learning-curve"]
    # forces scaled by 1.5 against SW labels: the error does not shrink with more data
    assert record["metrics"]["force_rmse_at_max_size"]["value"] > 0.1
    page = (pytester.path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "<h3>learning-curve (all)</h3>" in page


def test_cv_leakage_and_applicability_figures_come_from_their_result_classes(pytester, run,
                                                                            suite):
    """The report draws the CV parity, leakage and applicability figures through the
    figure of each result's class (the record's reference), with no "figure" key in the
    results' report data."""
    from ase.build import bulk

    crystal = bulk("Si", "diamond", a=5.43, cubic=True)
    crystal.rattle(0.005, seed=1)
    crystal.write(suite / "near.xyz", format="extxyz")
    _ini(pytester)
    pytester.makepyfile(test_figures="""
        import pytest
        from pytest_mlpval.domain_tests import mlpval_cv, mlpval_domain

        def fit_sw(frames, workdir):
            return "sw"

        @pytest.mark.mlpval_cv(k=3, split="stratified", fit=fit_sw)
        def test_cv(mlpval_cv):
            mlpval_cv.run()

        @pytest.mark.mlpval_expect(max_outside_fraction=1.0)
        def test_domain(mlpval_domain):
            mlpval_domain.applicability("near.xyz")
            mlpval_domain.leakage(mlpval_domain.training())
    """)
    result = run("--potential=sw", "--mlpval-report=rep", "-rf")
    result.assert_outcomes(passed=1, failed=1)  # the training set leaks into itself
    page = (suite / "rep" / "index.html").read_text(encoding="utf-8")
    for heading in ("cv-stratified-k3 (all)", "applicability (near.xyz)", "leakage (train)"):
        assert f"<h3>{heading}</h3>" in page
    assert "failed: " not in page
