"""Protocol results in pytest: mlpval.run, the mlpval_expect marker and mlpval.expect,
campaign options (--mlpval-workers, --mlpval-dask-scheduler, --mlpval-tier), the
protocol summary table, JSON and baselines."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import read_json, records_by_nodeid

# A protocol as the library writes them: potential first, campaign options as keywords.
# Its campaign relaxes nothing; it counts atoms with the real calculator, through
# run_campaign, so cache and workers are exercised.
PROTOCOL = """
    from dataclasses import dataclass
    from pytest_mlpval.campaign import run_campaign


    def _energy(calc, n):
        from ase.build import bulk
        atoms = bulk("Si", "diamond", a=5.43) * (n, 1, 1)
        atoms.calc = calc
        return {"energy_per_atom_eV": atoms.get_potential_energy() / len(atoms)}


    @dataclass(frozen=True)
    class Result:
        energies: tuple
        from_cache: int
        workers: int
        executor: str

        def metrics(self):
            return {"lowest_energy_per_atom_eV": min(self.energies),
                    "n_structures": len(self.energies), "n_from_cache": self.from_cache}

        def units(self):
            return {"lowest_energy_per_atom_eV": "eV/atom", "n_structures": "",
                    "n_from_cache": ""}


    def run_energies(potential, sizes=(1, 2, 3), *, workers=0, scheduler=None,
                     cache_dir=None, progress=None):
        result = run_campaign("energies", _energy, list(sizes), potential,
                              {"sizes": list(sizes)}, version=1, workers=workers,
                              scheduler=scheduler,
                              cache_dir=cache_dir, progress=progress)
        return Result(tuple(i.value["energy_per_atom_eV"] for i in result.items),
                      result.n_from_cache, result.workers, result.executor)
"""


@pytest.fixture
def protocol(pytester):
    pytester.makepyfile(protocol_lib=PROTOCOL)
    pytester.syspathinsert()


def test_run_records_metrics_and_bounds_pass_or_fail(pytester, run, plugin_args, protocol):
    pytester.makepyfile(test_p="""
        import pytest
        from protocol_lib import run_energies

        @pytest.mark.mlpval_expect(max_lowest_energy_per_atom_eV=-4.0, min_n_structures=3)
        def test_low(mlpval):
            mlpval.run(run_energies)

        @pytest.mark.mlpval_expect(max_lowest_energy_per_atom_eV=-5.0)
        def test_too_strict(mlpval):
            mlpval.run(run_energies)
    """)
    result = run(*plugin_args, "--potential=sw", "--mlpval-json=out.json", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*energies of sw: 1 of 1 bounds not met*",
        "*metric*value*bound*unit*status*",
        "*lowest_energy_per_atom_eV*-4.33*<= -5*eV/atom*FAIL*",
        "*bounds from @pytest.mark.mlpval_expect(max_lowest_energy_per_atom_eV=-5.0)*",
        "*mlpval protocols*",
        "*sw*energies*all*lowest_energy_per_atom_eV*-4.33*eV/atom*<= -4*ok*",
    ])
    records = records_by_nodeid(read_json(pytester.path / "out.json"))
    (record,) = records["test_p.py::test_low[sw]"]
    assert record["kind"] == "protocol" and record["dataset"] == "energies"
    assert record["metrics"]["lowest_energy_per_atom_eV"]["unit"] == "eV/atom"
    assert record["n_structures"] == 3
    assert {t["metric"]: t["passed"] for t in record["thresholds"]} == {
        "lowest_energy_per_atom_eV": True, "n_structures": True}


def test_expect_in_the_test_and_unknown_metric(pytester, run, protocol):
    pytester.makepyfile(test_p="""
        import pytest
        from protocol_lib import run_energies

        def test_inline(mlpval):
            result = run_energies(mlpval.potential)
            mlpval.expect(result, "energies", min_n_structures=4)

        def test_typo(mlpval):
            result = run_energies(mlpval.potential)
            mlpval.expect(result, "energies", min_n_structructures=1)

        @pytest.mark.mlpval_expect(min_n_structures=1)
        def test_nothing_recorded(mlpval):
            pass

        @pytest.mark.mlpval_expect(n_structures=1)
        def test_bad_marker(mlpval):
            pass
    """)
    result = run("--potential=sw", "-rfE")
    result.assert_outcomes(failed=3, errors=1)
    result.stdout.fnmatch_lines_random([
        "*energies of sw: 1 of 1 bounds not met*",
        "*UsageError: mlpval.expect(min_n_structructures=1): no metric 'n_structructures' "
        "in this result; it has lowest_energy_per_atom_eV, n_from_cache, n_structures*",
        "*UsageError: test_p.py::test_nothing_recorded[[]sw[]]: @pytest.mark.mlpval_expect "
        "but the test recorded no protocol result*",
        "*'n_structures' is not min_<metric> or max_<metric>*",
    ])


def test_campaign_cache_reused_by_a_second_run_and_skipped_without_cache(pytester, run,
                                                                         protocol):
    pytester.makepyfile(test_p="""
        from protocol_lib import run_energies

        def test_cached(mlpval, record_property):
            result = mlpval.run(run_energies)
            print("FROM_CACHE", result.from_cache, "EXECUTOR", result.executor)
    """)
    first = run("--potential=sw", "-s")
    first.stdout.fnmatch_lines(["*FROM_CACHE 0 EXECUTOR local*"])
    second = run("--potential=sw", "-s")
    second.stdout.fnmatch_lines(["*FROM_CACHE 3 EXECUTOR cache*"])
    third = run("--potential=sw", "-s", "--mlpval-no-cache")
    third.stdout.fnmatch_lines(["*FROM_CACHE 0 EXECUTOR local*"])


def test_workers_option_runs_local_processes(pytester, run, protocol):
    pytester.makepyfile(test_p="""
        from protocol_lib import run_energies

        def test_workers(mlpval):
            result = mlpval.run(run_energies, cache_dir=None)
            assert (result.workers, result.executor) == (2, "processes")
            assert mlpval.tier == "full"
    """)
    run("--potential=sw", "--mlpval-workers=2", "--mlpval-tier=full").assert_outcomes(
        passed=1)


@pytest.mark.parametrize("args, message", [
    (["--mlpval-workers=-1"], "*--mlpval-workers: '-1': the number of workers must be >= 0*"),
    (["--mlpval-workers=two"], "*'two' is not a whole number*"),
    (["--mlpval-tier=huge"], "*--mlpval-tier: invalid choice: 'huge'*"),
    (["-o", "mlpval_workers=x"], "*ini mlpval_workers='x': expected a whole number >= 0*"),
    (["-o", "mlpval_tier=big"], "*ini mlpval_tier='big': expected one of quick, full*"),
])
def test_bad_campaign_options_are_usage_errors(pytester, run, args, message):
    pytester.makepyfile(test_p="def test_x(): pass")
    result = run("--potential=sw", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_unreachable_dask_scheduler_fails_the_test_clearly(pytester, run, protocol,
                                                           monkeypatch):
    pytester.makepyfile(test_p="""
        from protocol_lib import run_energies

        def test_dask(mlpval):
            mlpval.run(run_energies, cache_dir=None)
    """)
    monkeypatch.setenv("MLPVAL_DASK_SCHEDULER", "tcp://127.0.0.1:9")
    result = run("--potential=sw", "-o", "mlpval_dask_scheduler=tcp://127.0.0.1:1")
    result.assert_outcomes(failed=1)
    # the environment variable wins over the ini key
    result.stdout.fnmatch_lines(["*CampaignError: the Dask scheduler at tcp://127.0.0.1:9 "
                                 "did not answer within 10 s*"])


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_random_structure_search_in_pytest_with_report(pytester, run, plugin_args):
    pytester.makepyfile(test_rss="""
        import pytest
        from pytest_mlpval.protocols.rss import RssSettings, run_rss

        PARAMS = RssSettings(n_structures=3, atoms_per_cell=(2, 4), max_steps=60, seed=1)

        @pytest.mark.mlpval_expect(max_n_failed=0, min_n_structures=3)
        def test_search(mlpval):
            mlpval.run(run_rss, PARAMS)

        @pytest.mark.mlpval_expect(min_diamond_like_fraction=0.99)
        def test_too_demanding(mlpval):
            mlpval.run(run_rss, PARAMS)
    """)
    result = run(*plugin_args, "--potential=sw", "--mlpval-report=out", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*rss of sw: 1 of 1 bounds not met*",
                                 "*diamond_like_fraction*>= 0.99*FAIL*"])
    page = (pytester.path / "out" / "index.html").read_text(encoding="utf-8")
    assert "<h3>rss (all)</h3>" in page and 'alt="rss all"' in page
    assert "failed: " not in page  # no figure error placeholder
