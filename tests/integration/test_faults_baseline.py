"""Faults around the regression gate that must never pass silently or end a finished run
in a traceback: damaged baseline values, a baseline measured on other data, output paths
that cannot be written, a forgotten dataset."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from pytest_mlpval.baseline import SCHEMA

from .conftest import LABELS, SCALED, read_json

SUITE = """
import pytest

@pytest.mark.mlpval_dataset("ref")
def test_whole_set(mlpval_errors):
    pass

def test_plain():
    pass
"""
WHOLE = "test_suite.py::test_whole_set[sw-ref]"


def _args(reference: Path, spec: str | None = None, extra: str = "") -> list[str]:
    return ["--potential=sw" if spec is None else f"--potential=sw={spec}",
            f"--mlpval-dataset=ref={reference},{LABELS}{extra}"]


def _labelled(path: Path, force_scale: float) -> Path:
    """Six structures labelled by Stillinger-Weber with forces scaled by ``force_scale``
    (the same structures whatever the scale)."""
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.testing import PerturbedCalculator, make_reference_file

    labeller = PerturbedCalculator(load_potential("sw").calculator, force_scale=force_scale)
    return make_reference_file(path, n_structures=6, labeller=labeller)


@pytest.fixture(scope="module")
def labels(tmp_path_factory) -> dict[float, Path]:
    folder = tmp_path_factory.mktemp("labels")
    return {scale: _labelled(folder / f"ref{scale}.xyz", scale) for scale in (1.2, 1.5)}


def _no_test_ran(result: pytest.RunResult) -> None:
    assert not re.search(r"\d+ (passed|failed|error)", result.stdout.str()), result.stdout.str()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- damaged baseline values ----------------------------------------------------------------



def _metric(document: dict) -> dict:
    entry = next(e for e in document["entries"] if e["nodeid"] == WHOLE)
    return entry["metrics"]["force_rmse"]


def _set_value(value):
    def damage(document):
        _metric(document)["value"] = value
    return damage


def _drop(key):
    def damage(document):
        entry = next(e for e in document["entries"] if e["nodeid"] == WHOLE)
        del entry[key]
    return damage


def _set_entry(key, value):
    def damage(document):
        entry = next(e for e in document["entries"] if e["nodeid"] == WHOLE)
        entry[key] = value
    return damage


def _entries(value):
    def damage(document):
        document["entries"] = value
    return damage


METRIC_AT_FAULT = ("{path}", WHOLE, "force_rmse")
ENTRY_AT_FAULT = ("{path}", WHOLE)

DAMAGE = {
    # name: (damage, what the message must name, words of the message)
    "null": (_set_value(None), METRIC_AT_FAULT, "value null is not a finite number"),
    "NaN": (_set_value(float("nan")), METRIC_AT_FAULT, "value NaN is not"),
    "Infinity": (_set_value(float("inf")), METRIC_AT_FAULT, "value Infinity is not"),
    "-Infinity": (_set_value(float("-inf")), METRIC_AT_FAULT, "value -Infinity is not"),
    "string": (_set_value("0.1"), METRIC_AT_FAULT, 'value "0.1" is not a finite number'),
    "list": (_set_value([0.1]), METRIC_AT_FAULT, "value [0.1] is not"),
    "dict": (_set_value({"value": 0.1}), METRIC_AT_FAULT, 'value {"value": 0.1} is not'),
    "bool": (_set_value(True), METRIC_AT_FAULT, "value true is not a finite number"),
    "no value": (lambda d: _metric(d).pop("value"), METRIC_AT_FAULT, "no 'value'"),
    "metric not an object": (
        lambda d: next(e for e in d["entries"] if e["nodeid"] == WHOLE)["metrics"].update(
            force_rmse=0.1), METRIC_AT_FAULT, "{value, unit}"),
    "missing metrics key": (_drop("metrics"), ENTRY_AT_FAULT, "'metrics'"),
    "metrics a list": (_set_entry("metrics", [0.1]), ENTRY_AT_FAULT, "metrics"),
    "missing identity": (_drop("identity"), ENTRY_AT_FAULT, "identity"),
    "entries a dict": (_entries({"a": 1}), ("{path}",), "'entries' must be a list"),
    "entry a string": (_entries(["x"]), ("{path}", "entry 0"), "malformed"),
}


@pytest.fixture
def good_document(pytester, run, reference_file) -> dict:
    """A real baseline of test_whole_set (sw on ref), as saved by the plugin."""
    pytester.makepyfile(test_suite=SUITE)
    saved = run(*_args(reference_file), "--mlpval-save-baseline=good.json")
    saved.assert_outcomes(passed=2)
    return read_json(pytester.path / "good.json")


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_baseline_is_a_usage_error(pytester, run, reference_file, good_document,
                                           case):
    """Every damaged value is found when the baseline is read, before any test runs: a
    null or NaN no longer switches the gate off, a string no longer fails mid-test."""
    damage, names, words = DAMAGE[case]
    document = json.loads(json.dumps(good_document))
    damage(document)
    path = pytester.path / "base.json"
    path.write_text(json.dumps(document, indent=1))  # allow_nan: NaN, Infinity tokens
    result = run(*_args(reference_file), "--mlpval-compare=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    err = result.stderr.str()
    assert err.startswith("ERROR: --mlpval-compare='base.json': "), err
    for name in names:
        assert name.format(path=path) in err, err
    assert words in err, err
    _no_test_ran(result)


def test_damaged_baseline_under_xdist(pytester, run, reference_file, good_document,
                                      plugin_args):
    _metric(good_document)["value"] = None
    path = pytester.path / "base.json"
    path.write_text(json.dumps(good_document))
    result = run(*plugin_args, *_args(reference_file), "--mlpval-compare=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --mlpval-compare='base.json': baseline {path}: "
                                 f"entry * ({WHOLE.replace('[', '[[]')}, *): metric "
                                 "'force_rmse': value null is not a finite number*"])


def test_damaged_baseline_is_not_overwritten_by_regen(pytester, run, reference_file,
                                                      good_document):
    """--mlpval-regen-baseline replaces a missing baseline or one of another schema
    version, not a damaged one (someone edited it: they must look)."""
    _metric(good_document)["value"] = "oops"
    path = pytester.path / "base.json"
    text = json.dumps(good_document)
    path.write_text(text)
    result = run(*_args(reference_file), "--mlpval-compare=base.json",
                 "--mlpval-regen-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert path.read_text() == text


# --- a baseline measured on other data --------------------------------------------------------

def test_relabelled_dataset_is_not_compared(pytester, run, labels, plugin_args):
    """The reference file is relabelled under the same name: a worse candidate would
    'improve' on it. The gated test fails, saying what changed and how to accept it;
    --mlpval-regen-baseline accepts it once, then the gate passes."""
    pytester.makepyfile(test_suite=SUITE)
    ref = pytester.path / "ref.xyz"
    shutil.copy(labels[1.2], ref)
    old = _sha(ref)
    saved = run(*_args(ref), "--mlpval-save-baseline=base.json")
    saved.assert_outcomes(passed=2)
    entry = next(e for e in read_json(pytester.path / "base.json")["entries"]
                 if e["nodeid"] == WHOLE)
    assert entry["identity"]["dataset"]["sha256"] == old

    shutil.copy(labels[1.5], ref)  # new labels, same name and path
    new = _sha(ref)
    compared = run(*plugin_args, *_args(ref, SCALED), "--mlpval-compare=base.json", "-rf")
    compared.assert_outcomes(passed=1, failed=1)
    out = compared.stdout.str()
    assert f"baseline {pytester.path / 'base.json'} was measured on other data" in out
    assert f"dataset.sha256: '{old}' (baseline) -> '{new}' (now)" in out
    assert "accept the new data with --mlpval-regen-baseline" in out
    assert ("0 regressed, 0 improved, 0 new, 0 compared records, 0 records without baseline "
            "entry, 1 records on other data (not compared)") in out

    regen = run(*_args(ref, SCALED), "--mlpval-compare=base.json",
                "--mlpval-regen-baseline")
    regen.assert_outcomes(passed=1, failed=1)  # fails once, like a changed metric
    after = run(*_args(ref, SCALED), "--mlpval-compare=base.json")
    after.assert_outcomes(passed=2)


@pytest.mark.parametrize("extra, change", [
    (",index=:4", "index: ':' (baseline) -> ':4' (now)"),
    (",config_type=other", "keys.config_type: 'config_type' (baseline) -> 'other' (now)"),
])
def test_other_dataset_selection_is_not_compared(pytester, run, reference_file, extra,
                                                 change):
    """Same file, other structures or labels: also other data."""
    pytester.makepyfile(test_suite=SUITE)
    run(*_args(reference_file), "--mlpval-save-baseline=base.json").assert_outcomes(passed=2)
    result = run(*_args(reference_file, extra=extra), "--mlpval-compare=base.json")
    result.assert_outcomes(passed=1, failed=1)
    assert change in result.stdout.str()


def test_old_schema_asks_for_regeneration(pytester, run, reference_file, good_document):
    """Baselines of schema 1 have no per-entry identity: a usage error asks to
    regenerate them, and --mlpval-regen-baseline replaces them."""
    assert SCHEMA == "pytest-mlpval-baseline/2"
    good_document["schema"] = "pytest-mlpval-baseline/1"
    for entry in good_document["entries"]:
        del entry["identity"]
    path = pytester.path / "base.json"
    path.write_text(json.dumps(good_document))
    result = run(*_args(reference_file), "--mlpval-compare=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "regenerate it with --mlpval-regen-baseline" in result.stderr.str()
    regen = run(*_args(reference_file), "--mlpval-compare=base.json",
                "--mlpval-regen-baseline")
    regen.assert_outcomes(passed=1, failed=1)
    assert read_json(path)["schema"] == SCHEMA


# --- output paths checked before the run -------------------------------------------------------

MARKER_SUITE = """
from pathlib import Path

def test_ran():
    Path("ran.txt").write_text("ran")
"""


def _bad_paths(pytester) -> dict[str, str]:
    (pytester.path / "a_file").write_text("not a folder")
    (pytester.path / "a_dir").mkdir()
    return {"under a file": "a_file/out", "under /proc": "/proc/mlpval-nowhere/out",
            "a directory": "a_dir", "a file": "a_file"}


@pytest.mark.parametrize("option, where", [
    ("--mlpval-json", "under a file"), ("--mlpval-json", "under /proc"),
    ("--mlpval-json", "a directory"),
    ("--mlpval-save-baseline", "under a file"), ("--mlpval-save-baseline", "under /proc"),
    ("--mlpval-save-baseline", "a directory"),
    ("--mlpval-report", "under a file"), ("--mlpval-report", "under /proc"),
    ("--mlpval-report", "a file"), ("--mlpval-plots", "under a file"),
])
def test_unwritable_output_is_a_usage_error_before_the_run(pytester, run, option, where):
    pytester.makepyfile(test_suite=MARKER_SUITE)
    value = _bad_paths(pytester)[where]
    if option == "--mlpval-save-baseline":
        value += ".json"  # a path, not a NAME
        if where == "a directory":
            (pytester.path / value).mkdir()
    result = run(f"{option}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert not (pytester.path / "ran.txt").exists()
    result.stderr.fnmatch_lines([f"ERROR: {option}={value!r}: *"])


def test_unwritable_output_under_xdist(pytester, run, plugin_args):
    pytester.makepyfile(test_suite=MARKER_SUITE)
    _bad_paths(pytester)
    result = run(*plugin_args, "--mlpval-json=a_file/out.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not (pytester.path / "ran.txt").exists()
    result.stderr.fnmatch_lines(["ERROR: --mlpval-json='a_file/out.json': *a_file*"])


@pytest.mark.parametrize("content", [
    '{"schema": "pytest-mlpval/1", "tests": []}', "some notes\n", '{"a": 1}'])
def test_save_baseline_does_not_overwrite_another_file(pytester, run, content):
    pytester.makepyfile(test_suite=MARKER_SUITE)
    path = pytester.path / "notes.json"
    path.write_text(content)
    result = run("--mlpval-save-baseline=notes.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --mlpval-save-baseline='notes.json': {path} "
                                 "exists and is not a pytest-mlpval baseline*"])
    assert path.read_text() == content
    assert not (pytester.path / "ran.txt").exists()


def test_save_baseline_overwrites_a_baseline(pytester, run, reference_file):
    pytester.makepyfile(test_suite=SUITE)
    path = pytester.path / "base.json"
    path.write_text(json.dumps({"schema": "pytest-mlpval-baseline/1", "entries": []}))
    run(*_args(reference_file), "--mlpval-save-baseline=base.json").assert_outcomes(passed=2)
    assert read_json(path)["schema"] == SCHEMA


# --- a forgotten dataset -------------------------------------------------------------------------

DATA_SUITE = """
def test_errors(mlpval_errors):
    pass

def test_calc(mlpval_calculator):
    pass

def test_plain():
    pass
"""


def test_require_dataset_fails_tests_that_find_no_data(pytester, run, plugin_args,
                                                       reference_file):
    pytester.makepyfile(test_data=DATA_SUITE)
    args = ["--potential=sw", "-rfE", "--mlpval-require-dataset"]
    result = run(*plugin_args, *args)
    result.assert_outcomes(passed=2, errors=1)  # the dataset-less tests are unaffected
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_errors[[]sw-no-dataset[]]*",
        "no dataset given: use --mlpval-dataset=NAME=PATH*(--mlpval-require-dataset or ini "
        "mlpval_require_dataset is set)",
        "*ERROR test_data.py::test_errors[[]sw-no-dataset[]]*"])
    # with a dataset the same settings pass
    result = run(*args, f"--mlpval-dataset=ref={reference_file},{LABELS}")
    result.assert_outcomes(passed=3)


def test_require_dataset_from_the_ini(pytester, run):
    pytester.makepyfile(test_data=DATA_SUITE)
    pytester.makeini("[pytest]\nmlpval_require_dataset = true\n")
    run("--potential=sw").assert_outcomes(passed=2, errors=1)
    run("--potential=sw", "-o", "mlpval_require_dataset=false").assert_outcomes(
        passed=2, skipped=1)


def test_without_require_dataset_it_is_still_a_skip(pytester, run):
    pytester.makepyfile(test_data=DATA_SUITE)
    run("--potential=sw").assert_outcomes(passed=2, skipped=1)


def test_require_dataset_fails_a_missing_training_set(pytester, run, reference_file):
    """The domain tests ask for the training set: without one they fail too."""
    pytester.makepyfile(test_domain="from pytest_mlpval.domain_tests import mlpval_domain\n\n"
                                    "def test_domain(mlpval_domain):\n"
                                    "    mlpval_domain.training()\n")
    args = ["--potential=sw", f"--mlpval-dataset=ref={reference_file},{LABELS}"]
    run(*args).assert_outcomes(skipped=1)
    result = run(*args, "--mlpval-require-dataset")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no training dataset*"])
