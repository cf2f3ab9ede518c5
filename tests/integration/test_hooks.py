"""The plugin's hooks: pytest_mlpval_load_potential (custom model formats) and
pytest_mlpval_update_json (see test_summary_json.py)."""

from __future__ import annotations

import hashlib

import pytest

from .conftest import read_json

FAKE_LOADER = """
import json

from pytest_mlpval.potentials import load_potential
from pytest_mlpval.testing import PerturbedCalculator

SEEN = []


def pytest_mlpval_load_potential(config, spec):
    SEEN.append(spec)
    if not spec.endswith(".fake"):
        return None
    with open(spec) as handle:
        settings = json.load(handle)
    return PerturbedCalculator(load_potential("sw").calculator, **settings)


def pytest_sessionfinish(session):
    with open("seen.json", "w") as handle:
        json.dump(SEEN, handle)
"""


def test_load_potential_hook_for_a_custom_format(pytester, run, dataset_arg, tmp_path):
    pytester.makeconftest(FAKE_LOADER)
    models = pytester.mkdir("models")
    model = models / "scaled.fake"
    model.write_text('{"force_scale": 1.5}')
    pytester.makepyfile(test_fake="""
        import pytest

        @pytest.mark.mlpval_thresholds(force_rmse=0.2)
        def test_forces(mlpval_errors):
            pass

        def test_info(mlpval_potential):
            expected = {"scaled": "hook", "sw": "builtin"}[mlpval_potential.name]
            assert mlpval_potential.info.loader == expected
    """)
    out = tmp_path / "out.json"
    result = run("--potential=models/scaled.fake", "--potential=sw",
                 f"--mlpval-dataset={dataset_arg}", f"--mlpval-json={out}", "-rf")
    # the hook's calculator is used: its forces are 50% too large, sw's are exact
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "E *1 of 1 thresholds exceeded for potential 'scaled' on dataset 'ref' "
        "(6 structures, 72 atoms): force_rmse 0.852* eV/Å > 0.2"], consecutive=False)
    result.stdout.fnmatch_lines(["FAILED test_fake.py::test_forces[[]scaled-ref[]]*"])
    # the hook is asked about every spec; a file is handed over by its absolute path
    seen = read_json(pytester.path / "seen.json")
    assert str(model.resolve()) in seen
    assert "sw" in seen

    pots = read_json(out)["potentials"]
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert pots["scaled"]["loader"] == "hook"
    assert pots["scaled"]["spec"] == "models/scaled.fake"
    assert pots["scaled"]["files"] == [str(model.resolve())]
    assert pots["scaled"]["file_sha256"] == {"scaled.fake": digest}
    combined = hashlib.sha256(f"scaled.fake\0{digest}\n".encode()).hexdigest()
    assert pots["scaled"]["sha256"] == combined
    assert pots["sw"]["loader"] == "builtin"


def test_hooked_model_predictions_are_cached_by_content(pytester, run, dataset_arg):
    """A hashed hook model is cached; changing the file's content recomputes."""
    pytester.makeconftest(FAKE_LOADER)
    model = pytester.path / "m.fake"
    model.write_text('{"force_scale": 1.5}')
    pytester.makepyfile(test_cache="""
        def test_cache(mlpval_predictions):
            print("FROM_CACHE", mlpval_predictions.from_cache)
    """)
    args = ["--potential=m.fake", f"--mlpval-dataset={dataset_arg}", "-s"]
    first = run(*args)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*FROM_CACHE False*"])
    second = run(*args)
    second.stdout.fnmatch_lines(["*FROM_CACHE True*"])
    model.write_text('{"force_scale": 2.0}')
    third = run(*args)
    third.stdout.fnmatch_lines(["*FROM_CACHE False*"])
    no_cache = run(*args, "--mlpval-no-cache")
    no_cache.stdout.fnmatch_lines(["*FROM_CACHE False*"])


def test_hook_returning_none_for_an_unknown_file_is_an_error(pytester, run, dataset_arg):
    pytester.makeconftest(FAKE_LOADER)
    (pytester.path / "model.weird").write_text("?")
    pytester.makepyfile(test_x="def test_x(mlpval_errors):\n    pass\n")
    result = run("--potential=model.weird", f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E *PotentialLoadError: *'model.weird' exists but no loader accepted it*"])
    assert result.ret != pytest.ExitCode.OK
