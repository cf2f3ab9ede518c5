"""The fixtures: mlpval_calculator, predictions computed once, several potentials,
mlpval.check and mlpval.errors with a suite-defined reference."""

from __future__ import annotations

import json
import shutil

from .conftest import LABELS, SCALED, read_json, records_by_nodeid

COUNTING_MODULE = """
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.testing import PerturbedCalculator

INSTANCES = []


def counting():
    calc = PerturbedCalculator(load_potential("sw").calculator)
    INSTANCES.append(calc)
    return calc
"""

COUNTING_CONFTEST = """
import json
import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    import counting_pots

    with open("counts.json", "w") as handle:
        json.dump({"instances": len(counting_pots.INSTANCES),
                   "calls": [c.calls for c in counting_pots.INSTANCES]}, handle)
"""


def test_calculator_is_an_ase_calculator(pytester, run):
    pytester.makepyfile(test_calc="""
        from ase.build import bulk
        from ase.calculators.calculator import Calculator

        def test_calculator(mlpval_calculator, mlpval_potential):
            assert isinstance(mlpval_calculator, Calculator)
            assert mlpval_potential.calculator is mlpval_calculator
            assert mlpval_potential.info.loader == "builtin"
            atoms = bulk("Si", "diamond", a=5.43)
            atoms.calc = mlpval_calculator
            # Stillinger-Weber diamond Si: cohesive energy 4.3366 eV/atom
            assert abs(atoms.get_potential_energy() / len(atoms) + 4.3366) < 1e-3
    """)
    result = run("--potential=sw")
    result.assert_outcomes(passed=1)


def test_predictions_are_computed_once_per_session(pytester, run, dataset_arg):
    pytester.makepyfile(counting_pots=COUNTING_MODULE)
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(test_many="""
        import pytest

        def test_errors(mlpval_errors):
            assert len(mlpval_errors) == 6

        @pytest.mark.mlpval_thresholds(force_rmse=1e-3)
        def test_thresholds(mlpval_errors):
            pass

        def test_predictions(mlpval_predictions, mlpval_calculator):
            assert mlpval_predictions.energy.shape == (6,)
            assert not mlpval_predictions.from_cache

        def test_check(mlpval, mlpval_dataset):
            mlpval.check(mlpval.errors(mlpval_dataset), energy_rmse=1e-3)

        @pytest.mark.parametrize("i", range(3))
        def test_again(mlpval_errors, i):
            pass
    """)
    result = run("--potential=counting=counting_pots:counting",
                 f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(passed=7)
    counts = json.loads((pytester.path / "counts.json").read_text())
    # one calculator; one calculation per structure of the 6-structure dataset
    assert counts == {"instances": 1, "calls": [6]}


def test_several_potentials_side_by_side(pytester, run, dataset_arg):
    pytester.makepyfile(test_side="""
        import pytest

        def test_offset(mlpval_potential, mlpval_errors):
            expected = {"sw": 0.0, "shifted": 0.010}[mlpval_potential.name]
            assert mlpval_errors.energy_offset == pytest.approx(expected, abs=1e-6)
            assert mlpval_errors.metrics()["energy_offset_removed_rmse"] < 1e-5
    """)
    result = run("--potential=sw", "--potential=shifted=pytest_mlpval.testing:sw_shifted",
                 f"--mlpval-dataset={dataset_arg}", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_offset[[]sw-ref[]] PASSED*",
                                 "*test_offset[[]shifted-ref[]] PASSED*"])


def test_check_with_keyword_limits_and_config_type(pytester, run, dataset_arg):
    # sw_forces_scaled: force RMSE about 0.09 eV/Å on 'bulk', about 1.0 on 'rattled'
    pytester.makepyfile(test_check="""
        import pytest

        def test_bulk_passes(mlpval, mlpval_errors):
            results = mlpval.check(mlpval_errors, config_type="bulk", force_rmse=0.5)
            assert [(r.metric, r.subset, r.limit, r.passed) for r in results] == [
                ("force_rmse", "bulk", 0.5, True)]

        def test_rattled_fails(mlpval, mlpval_errors):
            mlpval.check(mlpval_errors, config_type="rattled", force_rmse=0.5)

        @pytest.mark.mlpval_thresholds(force_rmse=0.001)
        def test_keyword_overrides_marker(mlpval, mlpval_errors):
            mlpval.check(mlpval_errors, force_rmse=5.0)

        def test_check_without_limits(mlpval, mlpval_errors):
            mlpval.check(mlpval_errors)
    """)
    result = run(f"--potential={SCALED}", f"--mlpval-dataset={dataset_arg}", "-rfE")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "E *1 of 1 thresholds exceeded for potential 'sw_forces_scaled' on dataset 'ref', "
        "config_type 'rattled' (3 structures, 48 atoms): force_rmse * eV/Å > 0.5",
    ], consecutive=False)
    result.stdout.fnmatch_lines([
        "E *limits from mlpval.check(force_rmse=0.5) in "
        "test_check.py::test_rattled_fails[[]sw_forces_scaled-ref[]]; change them there",
    ], consecutive=False)
    result.stdout.fnmatch_lines([
        "E *UsageError: test_check.py::test_check_without_limits[[]sw_forces_scaled-ref[]]: "
        "mlpval.check() without limits, and the test has no @pytest.mark.mlpval_thresholds "
        "marker"], consecutive=False)
    result.stdout.fnmatch_lines([
        "FAILED test_check.py::test_rattled_fails*",
        "FAILED test_check.py::test_check_without_limits*",
    ])


def test_errors_of_a_suite_defined_reference(pytester, run, reference_file, tmp_path):
    shutil.copy(reference_file, pytester.path / "mine.xyz")
    pytester.makeconftest(f"""
        from pathlib import Path
        import pytest
        import pytest_mlpval

        @pytest.fixture(scope="session")
        def my_reference():
            return pytest_mlpval.read_dataset("mine=mine.xyz,{LABELS}",
                                              base_dir=Path(__file__).parent)
    """)
    pytester.makepyfile(test_own="""
        def test_own(mlpval, my_reference):
            report = mlpval.errors(my_reference)
            assert report.dataset == "mine" and len(report) == 6
            assert mlpval.errors(my_reference) is report
            mlpval.check(report, energy_rmse=1e-3, stress_rmse=1e-3)

        def test_own_failing(mlpval, my_reference):
            mlpval.check(mlpval.errors(my_reference), energy_rmse=0.001)
    """)
    out = tmp_path / "out.json"
    result = run("--potential=sw", "--potential=shifted=pytest_mlpval.testing:sw_shifted",
                 f"--mlpval-json={out}")
    # sw passes both; the 10 meV/atom shift fails the energy limits
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["FAILED test_own.py::test_own[[]shifted[]]*",
                                 "FAILED test_own.py::test_own_failing[[]shifted[]]*"])
    result.stdout.fnmatch_lines(["E *thresholds exceeded for potential 'shifted' on dataset "
                                 "'mine' (6 structures, 72 atoms): energy_rmse 0.01 eV/atom "
                                 "> 0.001"])
    # summary rows: sorted by potential name within a dataset
    result.stdout.re_match_lines([r"^shifted\s+mine\s+all\s+6\s+10\s.*\s1 ok, 2 FAIL$",
                                  r"^sw\s+mine\s+all\s+6\s.*\s3 ok$"])
    document = read_json(out)
    from pytest_mlpval.potentials import sha256_file

    assert document["datasets"]["mine"]["sha256"] == sha256_file(reference_file)
    assert document["datasets"]["mine"]["path"] == str(pytester.path / "mine.xyz")


# A protocol as one module plus one registration line (pytest_mlpval.protocols.base):
# the energy per atom of a silicon crystal; it fails on demand.
TOY_PROTOCOL = """
from dataclasses import dataclass

from pytest_mlpval.protocols.base import Result, Settings, register


@dataclass(frozen=True)
class FixtureToySettings(Settings):
    VERSION = 1
    lattice_A: float = 5.43
    fail: bool = False


@dataclass(frozen=True)
class FixtureToyResult(Result):
    protocol = "fixture_toy"
    energy_per_atom_eV: float
    lattice_A: float

    def metrics(self):
        return {"energy_per_atom_eV": self.energy_per_atom_eV}

    def units(self):
        return {"energy_per_atom_eV": "eV/atom"}


def fixture_toy(calc, settings):
    from ase.build import bulk

    if settings.fail:
        raise RuntimeError("the toy broke")
    atoms = bulk("Si", "diamond", a=settings.lattice_A)
    atoms.calc = calc
    return FixtureToyResult(atoms.get_potential_energy() / len(atoms), settings.lattice_A)


register("fixture-toy", fixture_toy, FixtureToySettings, FixtureToyResult)
"""


def test_run_protocol_runs_records_and_fails_a_registered_protocol(pytester, run):
    pytester.makepyfile(fixture_toy=TOY_PROTOCOL)
    pytester.makeconftest("import fixture_toy  # registers the protocol\n")
    pytester.makepyfile(test_toy="""
        import pytest
        from fixture_toy import FixtureToyResult, FixtureToySettings

        @pytest.mark.mlpval_expect(max_energy_per_atom_eV=-4.3)
        def test_defaults(mlpval):
            result = mlpval.run_protocol("fixture-toy")
            assert isinstance(result, FixtureToyResult)
            assert result.lattice_A == 5.43

        def test_overrides(mlpval):
            result = mlpval.run_protocol("fixture-toy", FixtureToySettings(lattice_A=6.0),
                                         lattice_A=5.6)
            assert result.lattice_A == 5.6

        def test_unknown_protocol(mlpval):
            mlpval.run_protocol("no-such-protocol")

        def test_unknown_setting(mlpval):
            mlpval.run_protocol("fixture-toy", lattice=5.0)

        def test_failing(mlpval):
            mlpval.run_protocol("fixture-toy", fail=True)
    """)
    result = run("--potential=sw", "--mlpval-json=out.json", "-rf")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines_random([
        "*UsageError: test_toy.py::test_unknown_protocol?sw?: mlpval.run_protocol("
        "'no-such-protocol'): unknown protocol 'no-such-protocol'; registered: *fixture-toy*",
        "*UsageError: test_toy.py::test_unknown_setting?sw?: mlpval.run_protocol('fixture-toy'): "
        "unknown FixtureToySettings setting(s) ?'lattice'?; known: fail, lattice_A*",
        "*ProtocolFailure: sw: protocol 'fixture-toy' failed: *the toy broke*",
    ])
    records = records_by_nodeid(read_json(pytester.path / "out.json"))
    (record,) = records["test_toy.py::test_defaults[sw]"]
    assert (record["kind"], record["dataset"]) == ("protocol", "fixture-toy")
    energy = record["metrics"]["energy_per_atom_eV"]
    assert energy["unit"] == "eV/atom"
    assert abs(energy["value"] + 4.3366) < 1e-3
    assert [(t["metric"], t["passed"]) for t in record["thresholds"]] == [
        ("energy_per_atom_eV", True)]
    (stretched,) = records["test_toy.py::test_overrides[sw]"]
    assert stretched["metrics"]["energy_per_atom_eV"]["value"] > energy["value"]
    assert records.get("test_toy.py::test_failing[sw]", []) == []


def test_run_passes_campaign_options_to_a_protocol_that_takes_them(pytester, run):
    pytester.makepyfile(test_opts="""
        from dataclasses import dataclass

        from pytest_mlpval.protocols.base import CampaignOptions

        @dataclass(frozen=True)
        class Seen:
            options: CampaignOptions
            extra: int

            def metrics(self):
                return {"extra": float(self.extra)}

            def units(self):
                return {"extra": ""}

        def run_seen(potential, *, options=None, extra=0):
            return Seen(options, extra)

        def run_old(potential, *, workers=0, scheduler=None, cache_dir=None, progress=None):
            return Seen(CampaignOptions(workers, scheduler, cache_dir, progress), 0)

        def test_options(mlpval):
            seen = mlpval.run(run_seen, extra=3)
            assert isinstance(seen.options, CampaignOptions)
            assert seen.options.cache_dir.endswith("mlpval-campaigns")
            assert seen.extra == 3
            assert mlpval.run(run_seen, cache_dir=None).options.cache_dir is None
            old = mlpval.run(run_old).options
            assert (old.workers, old.cache_dir) == (0, mlpval.run_options().cache_dir)
    """)
    result = run("--potential=sw", "--mlpval-workers=0")
    result.assert_outcomes(passed=1)
