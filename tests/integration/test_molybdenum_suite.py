"""The molybdenum suite (example_suites/molybdenum), copied and run as a user would: it
collects with the bundled GAP and with a potential given by --potential, a Morse pair
potential (wrong for a metal) fails its test-set errors, the bundled GAP passes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import HAVE_QUIPPY, read_json

MOLYBDENUM = Path(__file__).resolve().parents[2] / "example_suites" / "molybdenum"
SELECT = "molybdenum/test_numerical_errors.py::test_test_set"
MORSE = "--potential=morse=wrong_for_mo:morse_mo"


@pytest.fixture
def suite(pytester):
    target = pytester.path / "molybdenum"
    shutil.copytree(MOLYBDENUM, target, ignore=shutil.ignore_patterns(
        "__pycache__", ".pytest_cache"))
    return target


@pytest.mark.parametrize("potential, name", [
    (MORSE, "morse"),
    pytest.param(None, "gap_mo", marks=pytest.mark.skipif(
        not HAVE_QUIPPY, reason="needs quippy-ase (gap extra)")),
])
def test_suite_collects(pytester, run, suite, potential, name):
    """Every group of the suite collects, under the ini potential or --potential (a
    factory in the suite's own directory)."""
    result = run("molybdenum", "--collect-only", "-q", *([potential] if potential else []))
    assert result.ret == pytest.ExitCode.OK
    ids = {line.split("::")[0] for line in result.outlines if "::" in line}
    assert ids == {"test_md.py", "test_numerical_errors.py", "test_physics.py",
                   "test_properties.py"}
    assert f"test_numerical_errors.py::test_test_set[{name}-test]" in result.outlines
    assert f"test_properties.py::TestElasticVsPBE::test_mlpval_elastic[{name}]" in \
        result.outlines


@pytest.mark.slow
def test_morse_fails_the_test_set(pytester, run, suite):
    result = run(SELECT, MORSE, "--mlpval-json=morse.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E *3 of 3 thresholds exceeded for potential 'morse' on dataset 'test' "
        "(23 structures, 1189 atoms): energy_offset_removed_rmse 0.409* eV/atom > 0.01",
    ])
    doc = read_json(pytester.path / "morse.json")
    (record,) = doc["tests"][0]["records"]
    assert record["metrics"]["force_rmse"]["value"] == pytest.approx(2.86, abs=0.01)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_QUIPPY, reason="needs quippy-ase (gap extra)")
def test_bundled_gap_passes_the_test_set(pytester, run, suite):
    out = pytester.path / "gap.json"
    result = run(SELECT, f"--mlpval-json={out}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*mlpval: potentials: gap_mo (ini mlpval_potentials); datasets: test, train*"])
    doc = read_json(out)
    assert doc["potentials"]["gap_mo"]["loader"] == "gap"
    (record,) = doc["tests"][0]["records"]
    assert [t["passed"] for t in record["thresholds"]] == [True, True, True]
