"""The ready-made physics tests (``from pytest_mlpval.physics_tests import *``) in a
pytester suite: they pass for a sound potential, fail for the right reason for a broken
one, and feed the "mlpval physics checks" / "mlpval cost" tables, the JSON file and the
plots.

Hypothesis runs with a profile of 5 examples and no shrinking, written into the suite's
conftest (a failing smoothness check shrinks for minutes otherwise); the rotation test
turns shrinking on to show that the failure is reported on a small structure.
"""

from __future__ import annotations

import json
import re
import sys

import pytest
from hypothesis import settings

from pytest_mlpval.cost import scaling_exponent

from .conftest import LABELS

SUITE = """
from pytest_mlpval.physics_tests import *  # noqa: F401,F403
"""

CONFTEST = """
import os

from hypothesis import Phase, settings

settings.register_profile("mlpval-fast", max_examples=5, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate])
settings.register_profile("mlpval-shrink", max_examples=5, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate, Phase.shrink])
settings.load_profile(os.environ.get("MLPVAL_TEST_PROFILE", "mlpval-fast"))
"""

CHECKS = ["extensivity", "finite", "force_gradient", "force_sum", "permutation", "rotation",
          "smoothness", "stress_gradient", "translation"]
XDIST_SKIP = ("pytest-benchmark is disabled (it turns itself off under pytest-xdist and "
              "with --benchmark-disable): run the cost tests without -n")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A suite that imports the physics tests, with a fast Hypothesis profile."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_physics=SUITE)
    # in-process runs import physics_tests afresh, so its settings take the suite's profile
    monkeypatch.delitem(sys.modules, "pytest_mlpval.physics_tests", raising=False)
    monkeypatch.delenv("MLPVAL_TEST_PROFILE", raising=False)
    # when this suite itself runs under xdist: pytest-benchmark reads PYTEST_XDIST_WORKER
    # and would turn itself off in the in-process runs
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    profile = settings.get_current_profile_name()
    yield pytester
    settings.load_profile(profile)  # the suite's conftest loaded its own in this process


def run(pytester: pytest.Pytester, *args, subprocess: bool = False) -> pytest.RunResult:
    argv = ["-p", "no:randomly", *map(str, args)]
    if subprocess or "-n" in argv:
        return pytester.runpytest_subprocess(*argv)
    return pytester.runpytest(*argv)


def only(*names: str) -> str:
    return "-k=" + " or ".join(names)


def table(result: pytest.RunResult, title: str) -> list[list[str]]:
    """Rows of a summary table (after its header and dashes), split on whitespace."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if f" {title} " in line
                 and line.startswith("="))
    rows = []
    for line in lines[start + 4:]:
        if not line.strip() or line.startswith(("=", "-", "mlpval:")):
            break
        rows.append(line.split())
    assert lines[start + 3].startswith("---"), lines[start:start + 4]
    return rows


# --- a sound potential -------------------------------------------------------------------

def test_sw_passes_every_physics_test(suite, plugin_args):
    result = run(suite, *plugin_args, "--potential=sw", "-rs", "--mlpval-json=out.json",
                 "--mlpval-plots=plots")
    xdist = bool(plugin_args)
    if xdist:
        # pytest-benchmark turns itself off under xdist: the cost tests say so and skip
        result.assert_outcomes(passed=9, skipped=3)
        result.stdout.fnmatch_lines([f"SKIPPED [[]3[]] *: {XDIST_SKIP}"])
    else:
        result.assert_outcomes(passed=12)
    assert result.ret == 0
    # one row per check, every one ok; each test recorded its structures
    rows = table(result, "mlpval physics checks")
    assert [row[1] for row in rows] == CHECKS
    for row in rows:
        assert row[0] == "sw" and row[-1] == "ok", row
        assert float(row[3]) <= float(row[4]), row
        assert int(row[2]) == (2 if row[1] == "smoothness" else 5), row
    result.stdout.fnmatch_lines(["*= mlpval physics checks =*",
                                 "worst value over the structures tried (ERROR: the "
                                 "calculator raised; skipped: the check does not apply)",
                                 "potential * check * structures * worst * tolerance * unit"
                                 " * status"])
    document = json.loads((suite.path / "out.json").read_text())
    kinds = {}
    for test in document["tests"]:
        for rec in test["records"]:
            kinds.setdefault(rec["kind"], []).append((test["nodeid"], rec))
    plot = suite.path / "plots" / "cost_scaling.png"
    if xdist:
        assert "= mlpval cost =" not in result.stdout.str()
        assert set(kinds) == {"checks"}
        assert not plot.exists()
    else:
        result.stdout.fnmatch_lines([
            "*= mlpval cost =*",
            "median wall time of an energy+forces call; exponent of time ~ N^x (1 = linear)",
            "potential * atoms * s/call * µs/atom/call * scaling exponent",
        ])
        cost = table(result, "mlpval cost")
        assert [(row[0], int(row[1])) for row in cost] == [("sw", 64), ("sw", 216),
                                                           ("sw", 512)]
        for row in cost:
            assert float(row[2]) > 0
            assert float(row[3]) == pytest.approx(1e6 * float(row[2]) / int(row[1]),
                                                  rel=1e-3)
        assert len({row[4] for row in cost}) == 1  # one exponent per potential
        # the exponent is the log-log fit of the table's own rows (a bound on the measured
        # value would test the machine's load, not the code: it failed under -n 2)
        assert float(cost[0][4]) == pytest.approx(scaling_exponent(
            [int(row[1]) for row in cost], [float(row[2]) for row in cost]), abs=2e-3)
        assert set(kinds) == {"checks", "cost"}
        sizes = sorted(rec["metrics"]["n_atoms"]["value"] for _, rec in kinds["cost"])
        assert sizes == [64, 216, 512]
        for _, rec in kinds["cost"]:
            assert rec["metrics"]["time_per_call_s"]["value"] > 0
            assert rec["metrics"]["time_per_atom_us"]["unit"] == "µs"
        assert plot.read_bytes().startswith(PNG)
        result.stdout.fnmatch_lines([f"mlpval: wrote {plot}"])
    # no errors dataset: no accuracy-cost plot
    assert not (suite.path / "plots" / "accuracy_cost.png").exists()
    checks = {rec["subset"]: rec for _, rec in kinds["checks"]}
    assert sorted(checks) == CHECKS
    for name, rec in checks.items():
        assert rec["potential"] == "sw"
        (threshold,) = rec["thresholds"]
        assert threshold["metric"] == name and threshold["passed"] is True


def test_accuracy_cost_plot_needs_an_errors_dataset(suite, reference_file):
    suite.makepyfile(test_errors="def test_errors(mlpval_errors):\n    pass\n")
    dataset = f"--mlpval-dataset=ref={reference_file},{LABELS}"
    result = run(suite, "--potential=sw", dataset, "--mlpval-plots=plots",
                 "--mlpval-json=out.json", only("test_mlpval_cost", "test_errors"))
    result.assert_outcomes(passed=4)
    plots = suite.path / "plots"
    for name in ("cost_scaling.png", "accuracy_cost.png"):
        assert (plots / name).read_bytes().startswith(PNG), name
        result.stdout.fnmatch_lines([f"mlpval: wrote {plots / name}"])
    document = json.loads((suite.path / "out.json").read_text())
    kinds = sorted({rec["kind"] for test in document["tests"] for rec in test["records"]})
    assert kinds == ["cost", "errors"]
    # --mlpval-cost-dataset names a dataset without errors recorded: no accuracy point
    (plots / "accuracy_cost.png").unlink()
    result = run(suite, "--potential=sw", dataset, "--mlpval-plots=plots",
                 "--mlpval-cost-dataset=elsewhere", only("test_mlpval_cost", "test_errors"))
    result.assert_outcomes(passed=4)
    assert (plots / "cost_scaling.png").exists()
    assert not (plots / "accuracy_cost.png").exists()


# --- broken potentials fail the check aimed at their fault --------------------------------

def test_broken_rotation_fails_rotation_only(suite, monkeypatch):
    import ase.io

    monkeypatch.setenv("MLPVAL_TEST_PROFILE", "mlpval-shrink")
    result = run(suite, "--potential=pytest_mlpval.testing:broken_rotation",
                 "--mlpval-species=Si",
                 only("test_mlpval_rotation_equivariance", "test_mlpval_translation_invariance"))
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "FAILED test_physics.py::test_mlpval_rotation_equivariance[[]broken_rotation[]]*"])
    result.stdout.fnmatch_lines([
        "E * rotation check failed for potential 'broken_rotation': * eV/atom > tolerance"
        " 1e-06 eV/atom",
        "E *structure written to *mlpval-failures*rotation-*.extxyz",
        "E *structure (1 atoms, extxyz):",
        "E *1",
        "E *Lattice=* Properties=species:S:1:pos:R:3 *",
        "E *Si *",
    ])
    assert "translation check failed" not in result.stdout.str()
    rows = {row[1]: row for row in table(result, "mlpval physics checks")}
    assert rows["rotation"][-1] == "FAIL" and rows["translation"][-1] == "ok"
    # the shrunk structure is written once, and reads back
    files = list((suite.path / ".pytest_cache" / "d" / "mlpval-failures").iterdir())
    assert [f.name.split("-")[0] for f in files] == ["rotation"]
    atoms = ase.io.read(files[0])
    assert len(atoms) == 1 and atoms.get_chemical_symbols() == ["Si"]
    assert atoms.get_volume() >= 16.0 - 1e-6


def test_broken_cutoff_fails_smoothness(suite):
    # seeded: the check moves one atom along the path that keeps clearest of the others,
    # which in a sparse cell may stay beyond the 3 Å cutoff (nothing to find)
    result = run(suite, "--potential=pytest_mlpval.testing:broken_cutoff",
                 "--mlpval-species=Si", "--hypothesis-seed=1",
                 only("test_mlpval_smooth_across_cutoff", "test_mlpval_rotation_equivariance"))
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "E * smoothness check failed for potential 'broken_cutoff': 0.05* eV > tolerance"
        " 0.002 eV",
        "FAILED test_physics.py::test_mlpval_smooth_across_cutoff[[]broken_cutoff[]]*",
    ])


# --- species -------------------------------------------------------------------------------

def test_factory_without_species_skips(suite):
    result = run(suite, "--potential=pytest_mlpval.testing:sw_shifted", "-rs")
    result.assert_outcomes(skipped=12)
    reason = ("species of potential 'sw_shifted' unknown: use --mlpval-species=Si,O or the "
              "ini key mlpval_species")
    skips = [re.match(r"SKIPPED \[(\d+)\] .*?\.py:\d+: (.*)$", line)
             for line in result.outlines if line.startswith("SKIPPED")]
    counts = [int(m.group(1)) for m in skips if m and m.group(2) == reason]
    assert sum(counts) == 12, result.outlines
    assert "mlpval physics checks" not in result.stdout.str()


def test_factory_species_from_ini_or_dataset(suite, reference_file):
    factory = "--potential=pytest_mlpval.testing:sw_shifted"
    suite.makeini("[pytest]\nmlpval_species = Si\n")
    result = run(suite, factory, only("test_mlpval_translation_invariance"))
    result.assert_outcomes(passed=1)
    suite.makeini("[pytest]\n")
    result = run(suite, factory, f"--mlpval-dataset=ref={reference_file},{LABELS}",
                 only("test_mlpval_translation_invariance"))
    result.assert_outcomes(passed=1)


def test_a_universal_model_is_tested_on_the_datas_species(suite, reference_file):
    """A model covering many elements (CHGNet declares 89) gets structures of the
    configured data's species, not of its first element (hydrogen)."""
    suite.makepyfile(universal="""
        from pytest_mlpval.potentials import load_potential

        def universal():
            calc = load_potential("sw").calculator
            calc.mlpval_species = ("H", "He", "Li", "Si", "Zr")
            return calc
    """)
    suite.makepyfile(test_species="""
        def test_species(mlpval_species):
            assert mlpval_species == ("Si",)
    """)
    result = run(suite, "--potential=universal:universal", "-p", "no:cacheprovider",
                 f"--mlpval-dataset=ref={reference_file},{LABELS}", "test_species.py")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("value, bad", [("Xx", "Xx"), ("Si,Qq,xx", "Qq, xx")])
def test_unknown_species_is_a_usage_error(suite, value, bad):
    result = run(suite, "--potential=sw", f"--mlpval-species={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--mlpval-species: not chemical symbols: {bad}"])


# --- precision -----------------------------------------------------------------------------

TOLERANCES = """
from pytest_mlpval.protocols.invariance import FLOAT32


def test_float32(mlpval_tolerances):
    assert mlpval_tolerances is FLOAT32
"""


def test_precision_float32(suite):
    suite.makepyfile(test_tolerances=TOLERANCES)
    result = run(suite, "--mlpval-precision=float32", "test_tolerances.py")
    result.assert_outcomes(passed=1)
    # the default is float64
    result = run(suite, "test_tolerances.py")
    result.assert_outcomes(failed=1)
    # the ini key
    suite.makeini("[pytest]\nmlpval_precision = float32\n")
    result = run(suite, "test_tolerances.py")
    result.assert_outcomes(passed=1)
    # and the physics tests use them
    result = run(suite, "--potential=sw", "--mlpval-json=out.json",
                 only("test_mlpval_forces_sum_to_zero"))
    result.assert_outcomes(passed=1)
    document = json.loads((suite.path / "out.json").read_text())
    (test,) = document["tests"]
    (threshold,) = test["records"][0]["thresholds"]
    assert threshold["metric"] == "force_sum" and threshold["limit"] == 1e-4


def test_bad_precision_is_a_usage_error(suite):
    result = run(suite, "--mlpval-precision=float16")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mlpval-precision*invalid choice: 'float16'*"])
    suite.makeini("[pytest]\nmlpval_precision = half\n")
    result = run(suite)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini mlpval_precision='half': expected one of float64, float32*"])


# --- the physics-checks table over several records ----------------------------------------

RECORDS = """
import math

import pytest
from pytest_mlpval.protocols.invariance import CheckResult


@pytest.mark.parametrize("value", [0.5, 0.2, 0.01, 0.3])
def test_rotation(mlpval, value):
    for _ in range(2):  # two structures per test, the same value
        mlpval.record_check(CheckResult("rotation", value, 0.1, "eV/atom", ""))


@pytest.mark.parametrize("value", [0.001, 0.004, 0.002])
def test_finite(mlpval, value):
    mlpval.record_check(CheckResult("force_sum", value, 0.01, "eV/Å", ""))


@pytest.mark.parametrize("value", [0.5, math.nan, 0.7])
def test_nan(mlpval, value):
    mlpval.record_check(CheckResult("smoothness", value, 0.1, "eV", ""))
"""


def test_check_table_counts_every_structure_and_keeps_the_worst(suite):
    suite.makepyfile(test_records=RECORDS)
    result = run(suite, "--potential=sw", "test_records.py")
    # a NaN recorded (and not judged by the test) fails the test that recorded it
    result.assert_outcomes(passed=9, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_records.py::test_nan[[]sw-nan[]] - *"])
    rows = {row[1]: row[2:] for row in table(result, "mlpval physics checks")}
    # worst of the failures (not the last one), counted over all 4 tests x 2 structures
    assert rows["rotation"] == ["8", "0.5", "0.1", "eV/atom", "FAIL"]
    # all passing: the largest, and every structure counted (not only the largest's)
    assert rows["force_sum"] == ["3", "0.004", "0.01", "eV/Å", "ok"]
    # NaN is the worst value of all (shown as NaN: recorded, not missing)
    assert rows["smoothness"][0] == "3" and rows["smoothness"][1] == "NaN"
    assert rows["smoothness"][-1] == "FAIL"


def test_physics_tests_imported_twice_count_both(suite):
    suite.makepyfile(test_physics_again=SUITE)
    result = run(suite, "--potential=sw",
                 only("test_mlpval_finite_outputs", "test_mlpval_forces_sum_to_zero"))
    result.assert_outcomes(passed=4)
    rows = {row[1]: row for row in table(result, "mlpval physics checks")}
    assert int(rows["finite"][2]) == 10 and int(rows["force_sum"][2]) == 10


RECORDING = """
from pathlib import Path

from ase.calculators.calculator import Calculator, all_changes
from pytest_mlpval import load_potential

SW = load_potential("sw").calculator
LOG = Path(__file__).with_name("sizes.txt")


class Recording(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        with LOG.open("a") as log:
            log.write(f"{len(self.atoms)}\\n")
        work = self.atoms.copy()
        work.calc = SW
        self.results = {"energy": work.get_potential_energy(), "forces": work.get_forces(),
                        "stress": work.get_stress()}
        self.results["free_energy"] = self.results["energy"]


def calc():
    return Recording()
"""


def test_smoothness_moves_an_atom_among_others(suite):
    """A lone atom moving in its cell drags its images along: the smoothness test draws
    at least two atoms."""
    suite.makepyfile(recording=RECORDING)
    suite.syspathinsert()
    result = run(suite, "--potential=recording:calc", "--mlpval-species=Si",
                 only("test_mlpval_smooth_across_cutoff"))
    result.assert_outcomes(passed=1)
    sizes = [int(n) for n in (suite.path / "sizes.txt").read_text().split()]
    assert len(sizes) >= 2 * 301  # two structures, 301 points of the path each
    assert min(sizes) >= 2


# --- derivative tests over a step sequence ---------------------------------------------------

ROUGH = """
import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from pytest_mlpval import load_potential

SW = load_potential("sw").calculator


class Rough(Calculator):
    '''SW plus 0.004 eV sum sin(200/Å x) + N B sin(1500/Å³ V/N) (B q = 3 GPa), with
    exact forces and stress: a smooth surface too rough for one central difference at
    the float64 steps.'''

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = SW
        x, n = work.positions, len(work)
        per_atom, q = work.get_volume() / n, 1500.0
        b = 3.0 / 160.21766208 / q
        energy = (work.get_potential_energy() + 0.004 * np.sin(200 * x).sum()
                  + n * b * np.sin(q * per_atom))
        gradient = 0.004 * 200 * np.cos(200 * x)
        virial = gradient.T @ x
        sigma = (0.5 * (virial + virial.T) / (n * per_atom)
                 + b * q * np.cos(q * per_atom) * np.eye(3))
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": work.get_forces() - gradient,
                        "stress": work.get_stress() + sigma.flat[[0, 4, 8, 5, 2, 1]]}


def calc():
    return Rough()
"""

ONE_STEP = """
import pytest

from pytest_mlpval.physics_tests import *  # noqa: F401,F403


@pytest.fixture
def mlpval_tolerances():
    '''The float64 tolerances with a sequence of one step: the checks as they were.'''
    from pytest_mlpval.protocols.invariance import FLOAT64

    return FLOAT64.with_overrides(fd_min_step_A=FLOAT64.fd_step_A,
                                  fd_min_strain=FLOAT64.fd_strain)
"""

DERIVATIVES = only("test_mlpval_forces_are_energy_gradient",
                   "test_mlpval_stress_is_strain_derivative")


def test_rough_surface_passes_the_derivative_tests_one_step_failed(suite):
    """Exact derivatives of a rough surface: the step sequence passes both derivative
    tests; one step at the float64 step (the tests as they were) fails both."""
    suite.makepyfile(rough=ROUGH)
    suite.syspathinsert()
    result = run(suite, "--potential=rough:calc", "--mlpval-species=Si", DERIVATIVES,
                 "test_physics.py")
    result.assert_outcomes(passed=2)
    suite.makepyfile(test_one_step=ONE_STEP)
    result = run(suite, "--potential=rough:calc", "--mlpval-species=Si", DERIVATIVES,
                 "test_one_step.py")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["E * force_gradient check failed for potential 'calc': *",
                                 "E * step (Å) * discrepancy (eV/Å) * extrapolated (eV/Å) "
                                 "* order"])


def test_scaled_forces_fail_with_the_step_table(suite):
    result = run(suite, "--potential=pytest_mlpval.testing:sw_forces_scaled",
                 "--mlpval-species=Si", DERIVATIVES)
    result.assert_outcomes(failed=1, passed=1)  # forces x1.5; the stress is sound
    result.stdout.fnmatch_lines([
        "E * force_gradient check failed for potential 'sw_forces_scaled': * eV/Å > "
        "tolerance 0.001 eV/Å",
        "E *stays at a floor as the step shrinks (order *",
        "E * step (Å) * discrepancy (eV/Å) * extrapolated (eV/Å) * order",
        "E * 0.001 * -*",
        "E * 0.0005 *",
        "E * 0.00025 *",
    ])
