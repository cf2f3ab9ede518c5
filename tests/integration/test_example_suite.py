"""The bundled silicon suite (example_suites/silicon), copied and run as a user would:
an empirical potential fails it with a table, the bundled GAP passes it."""

from __future__ import annotations

import re
import shutil

import pytest

from .conftest import GAP_XML_NAME, HAVE_QUIPPY, SILICON, read_json

SELECT = "silicon/test_numerical_errors.py::test_test_set"


@pytest.fixture
def suite(pytester):
    target = pytester.path / "silicon"
    shutil.copytree(SILICON, target, ignore=shutil.ignore_patterns(
        "__pycache__", ".pytest_cache"))
    return target


def test_stillinger_weber_fails_the_test_set(pytester, run, suite):
    result = run(SELECT, "--potential=sw", "--mlpval-json=sw.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*mlpval: potentials: sw (--potential/--mlpval-potential); datasets: test, train*",
        "E *3 of 3 thresholds exceeded for potential 'sw' on dataset 'test' "
        "(25 structures, * atoms): energy_offset_removed_rmse 0.30* eV/atom > 0.01",
    ])
    result.stdout.fnmatch_lines([
        "*energy_offset_removed_rmse * 0.30* * 0.01 * eV/atom * FAIL",
        "*force_rmse * 1.54 * 0.2 * eV/Å * FAIL",
        "*stress_rmse * 10.5* * 1.5 * GPa * FAIL",
        "*per config_type (limits apply to the whole set; shown to locate it):",
        "*worst structures by energy_offset_removed error (eV/atom):",
        "*limits from @pytest.mark.mlpval_thresholds(energy_offset_removed_rmse=0.01, "
        "force_rmse=0.2, stress_rmse=1.5) in "
        "test_numerical_errors.py::test_test_set[[]sw-test[]]; change them there",
    ], consecutive=False)
    result.stdout.re_match_lines([r"^sw\s+test\s+all\s+25\s+1381\s+307\.5\s.*\s0 ok, 3 FAIL$"])
    doc = read_json(pytester.path / "sw.json")
    (record,) = doc["tests"][0]["records"]
    assert record["metrics"]["force_rmse"]["value"] == pytest.approx(1.54, abs=0.005)
    assert doc["datasets"]["test"]["path"] == str(suite / "data" / "mlearn_Si_test.xyz")


@pytest.mark.skipif(not HAVE_QUIPPY, reason="needs quippy-ase (gap extra)")
def test_bundled_gap_passes_the_test_set(pytester, run, suite):
    out = pytester.path / "gap.json"
    result = run(SELECT, f"--mlpval-json={out}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*mlpval: potentials: gap_si (ini mlpval_potentials); datasets: test, train*"])
    result.stdout.re_match_lines([r"^gap_si\s+test\s+all\s+25\s+4\.1\d*\s.*\s3 ok$"])
    doc = read_json(out)
    gap = doc["potentials"]["gap_si"]
    assert gap["loader"] == "gap"
    assert re.fullmatch(r"[0-9a-f]{64}", gap["sha256"])
    names = sorted(gap["file_sha256"])
    assert names[0] == "gap_si_mlearn.xml" and len(names) == 3
    assert all(n.startswith("gap_si_mlearn.xml.sparseX.") for n in names[1:])
    assert gap["files"][0] == str(suite / "potential" / "gap_si_mlearn.xml")
    (record,) = doc["tests"][0]["records"]
    metrics = {k: v["value"] for k, v in record["metrics"].items()}
    assert metrics["energy_offset_removed_rmse"] == pytest.approx(0.0041, abs=0.0002)
    assert metrics["force_rmse"] == pytest.approx(0.125, abs=0.002)
    assert [t["passed"] for t in record["thresholds"]] == [True, True, True]


@pytest.mark.parametrize("potential, name", [
    ("--potential=sw", "sw"),
    pytest.param(None, "gap_si", marks=pytest.mark.skipif(
        not HAVE_QUIPPY, reason="needs quippy-ase (gap extra)")),
])
def test_suite_ids(pytester, run, suite, potential, name):
    """Node ids are relative to the suite's ini file (its rootdir); the ini potential
    is used unless --potential is given."""
    result = run("silicon/test_numerical_errors.py", "--collect-only", "-q",
                 *([potential] if potential else []))
    assert result.ret == pytest.ExitCode.OK
    ids = {line for line in result.outlines if "::" in line}
    assert ids == {
        f"test_numerical_errors.py::test_test_set[{name}-test]",
        f"test_numerical_errors.py::test_test_set_worst_case[{name}-test]",
        *(f"test_numerical_errors.py::test_test_set_per_config_type[{name}-test-{case}]"
          for case in ("Elastic-0.003-0.02", "AIMD-NVT-0.01-0.2", "Vacancy-0.01-0.2",
                       "Surface-0.03-0.3")),
        f"test_numerical_errors.py::test_training_set[{name}-train]",
    }


PERTURBED = """
from pathlib import Path

from pytest_mlpval import load_potential
from pytest_mlpval.testing import PerturbedCalculator


def gap_forces_10pc():
    \"\"\"The bundled GAP with forces 10% too large: still within the suite's limits.\"\"\"
    xml = Path(__file__).parent / "silicon" / "potential" / "gap_si_mlearn.xml"
    return PerturbedCalculator(load_potential(str(xml)).calculator, force_scale=1.1)
"""


@pytest.mark.skipif(not HAVE_QUIPPY, reason="needs quippy-ase (gap extra)")
def test_suite_baseline_gates_a_worse_refit(pytester, run, suite):
    """The suite compares gap_si with its committed baseline (.mlpval/gap_si.json): the
    bundled GAP passes; a 'refit' with 10% larger forces stays within the whole-set
    thresholds but fails those tests against the baseline, on force metrics only."""
    result = run(SELECT)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*baseline */silicon/.mlpval/gap_si.json: 0 regressed, "
                                 "0 improved, 0 new, 1 compared records*"])
    pytester.makepyfile(perturbed=PERTURBED)
    pytester.syspathinsert()
    worse = run("silicon/test_numerical_errors.py", "-k", "test_test_set and not per",
                "--potential=gap_si=perturbed:gap_forces_10pc", "-rf")
    worse.assert_outcomes(failed=2)
    worse.stdout.fnmatch_lines([
        "E *metrics regressed against baseline */gap_si.json for potential 'gap_si' on "
        "'test'*",
        "*force_rmse * 0.124* * *:1% * regressed",
    ], consecutive=False)
    # within every threshold: only the baseline fails them
    assert "thresholds exceeded" not in worse.stdout.str()
    assert "energy_offset_removed_rmse" not in worse.stdout.str()  # energies unchanged
    failed = {line.split()[1] for line in worse.stdout.lines if line.startswith("FAILED")}
    assert failed == {"silicon/test_numerical_errors.py::test_test_set[gap_si-test]",
                      "silicon/test_numerical_errors.py::test_test_set_worst_case[gap_si-test]"}


@pytest.mark.skipif(not HAVE_QUIPPY, reason="needs quippy-ase (gap extra)")
def test_known_failures_follow_the_bundled_gap_under_any_name(pytester, run, suite):
    """The suite's known failures (mlpval_known_failure keyed by the bundled GAP's sha256,
    test_properties.py) apply to that model under the README's name ``gap`` and not to
    Stillinger-Weber named ``gap_si``."""
    (suite / "test_known.py").write_text(
        "from test_properties import known_failure_of_gap_si\n\n"
        "@known_failure_of_gap_si('measured: misses this')\n"
        "def test_fails(mlpval):\n"
        "    assert mlpval.potential.name == 'nobody'\n")
    result = run("silicon/test_known.py", f"--potential=gap={suite / 'potential' / GAP_XML_NAME}",
                 "--potential=gap_si=sw", "-rxf")
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*XFAIL silicon/test_known.py::test_fails[[]gap[]]*known "
                                 "failure of gap (sha256 *): measured: misses this*"],
                                consecutive=False)
    result.stdout.fnmatch_lines(["*FAILED silicon/test_known.py::test_fails[[]gap_si[]]*"],
                                consecutive=False)


def test_meltquench_benchmark_fails_a_potential_wrong_on_the_melt(pytester, run, suite):
    """The suite's melt-quench benchmark (test_meltquench.py, DFT snapshots of the test
    set tagged crystal / melt), selected by keyword: Stillinger-Weber fails it, worst on
    the melt, and the message shows every phase."""
    result = run("silicon", "-k", "melt or quench", "--potential=sw")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*thresholds exceeded for potential 'sw' on dataset 'mlearn-test-aimd', config_type "
        "'crystal' (8 structures, * atoms): force_rmse 0.37* eV/Å > 0.15*",
        "*thresholds exceeded for potential 'sw' on dataset 'mlearn-test-aimd', config_type "
        "'melt' (9 structures, * atoms): force_rmse 2.47* eV/Å > 0.3*",
    ], consecutive=False)
    result.stdout.fnmatch_lines(["*sw * melt * 9 * 2.47*"], consecutive=False)
