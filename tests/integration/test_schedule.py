"""Up-front scheduling in pytest (pytest_mlpval.planning): campaigns declared with
@pytest.mark.mlpval_campaign start when collection ends, each once, on the run's one pool;
deselected and skipped tests launch nothing; results are those of the lazy run; -x
cancels; a failing job fails only its tests."""

from __future__ import annotations

import json

import pytest

from .conftest import read_json

# a protocol that logs when it starts (in the test's process) and when each item runs
# (in a worker); size 99 kills its worker, size -1 raises in the protocol itself
PROTOCOL = """
    import os, time
    from dataclasses import dataclass
    from pytest_mlpval.campaign import run_campaign
    from pytest_mlpval.protocols.base import CampaignOptions, Result, Settings, register


    def log(line, path=None):
        with open(path or os.environ["MLPVAL_TEST_LOG"], "a") as handle:
            handle.write(f"{line} {time.time()}\\n")


    def _energy(calc, item):  # the log and sleep travel with the item, not in its key
        from ase.build import bulk
        n, path, sleep = item
        if n == 99:
            os._exit(3)
        if path is not None:
            log(f"item {n}", path)
        time.sleep(sleep)
        atoms = bulk("Si", "diamond", a=5.43) * (n, 1, 1)
        atoms.calc = calc
        return {"e": atoms.get_potential_energy() / len(atoms)}


    @dataclass(frozen=True)
    class Energies:
        energies: tuple
        failed: tuple

        def metrics(self):
            return {"lowest_energy_per_atom_eV": min(self.energies)}

        def units(self):
            return {"lowest_energy_per_atom_eV": "eV/atom"}


    @dataclass(frozen=True)
    class Sizes(Settings):  # settings with a guessable cost: n_steps x 64 atoms
        sizes: tuple = (1,)
        n_steps: int = 1


    @dataclass(frozen=True)
    class ToySettings(Settings):
        n: int = 2


    @dataclass(frozen=True)
    class ToyResult(Result):
        energy_eV: float

        def metrics(self):
            return {"energy_eV": self.energy_eV}


    def toy(calc, settings):
        return ToyResult(_energy(calc, (settings.n, None, 0.0))["e"])


    register("sched-toy", toy, ToySettings, ToyResult)


    def run_energies(potential, sizes=(1, 2), *, options=None):
        options = options or CampaignOptions()
        sizes = getattr(sizes, "sizes", sizes)
        log(f"start {','.join(map(str, sizes))}")
        if -1 in sizes:
            raise ValueError("sizes must be positive")
        items = [(n, os.environ["MLPVAL_TEST_LOG"],
                  float(os.environ.get("MLPVAL_TEST_SLEEP", "0"))) for n in sizes]
        result = run_campaign("energies", _energy, items, potential,
                              {"sizes": list(sizes)}, version=1, **options.campaign_kwargs())
        if result.failures:
            raise RuntimeError("; ".join(item.error for item in result.failures))
        return Energies(tuple(i.value["e"] for i in result.items), ())
"""


@pytest.fixture
def log(pytester, monkeypatch):
    pytester.makepyfile(protocol_lib=PROTOCOL)
    pytester.syspathinsert()
    path = pytester.path / "log.txt"
    monkeypatch.setenv("MLPVAL_TEST_LOG", str(path))

    def read() -> list[tuple[str, float]]:
        if not path.exists():
            return []
        return [(line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1]))
                for line in path.read_text().splitlines()]

    return read


def _starts(lines):
    return sorted(what.split(" ", 1)[1] for what, _ in lines if what.startswith("start "))


def test_a_declared_campaign_starts_before_its_test_and_runs_once(pytester, run, log):
    pytester.makepyfile(test_p="""
        import os, time
        import pytest
        from protocol_lib import log, run_energies

        def test_first():
            time.sleep(0.5)
            log("first test")

        @pytest.mark.mlpval_campaign(run_energies, (1, 2))
        def test_a(mlpval):
            log("test a")
            mlpval.run(run_energies, (1, 2))

        @pytest.mark.mlpval_campaign(run_energies, (1, 2))
        def test_b(mlpval):
            assert mlpval.run(run_energies, (1, 2)).energies[0] < -4
    """)
    result = run("--potential=sw", "--mlpval-workers=1", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    lines = log()
    assert _starts(lines) == ["1,2"]  # planned once for both tests, not again by them
    when = {what: t for what, t in lines}
    assert when["start 1,2"] < when["first test"] < when["test a"]
    result.stdout.fnmatch_lines([
        "mlpval: schedule: upfront (campaigns of the selected tests start when collection "
        "ends, longest first, on one pool of 1 processes)",
        "mlpval schedule: 1 campaigns up front (1 computed, 0 from cache); wall * s; "
        "longest campaign energies (sw) * s; wall/longest *"])


def test_deselected_and_skipped_tests_launch_nothing(pytester, run, log):
    pytester.makepyfile(test_p="""
        import sys
        import pytest
        from protocol_lib import run_energies

        @pytest.mark.mlpval_campaign(run_energies, (1,))
        def test_kept(mlpval):
            mlpval.run(run_energies, (1,))

        @pytest.mark.mlpval_campaign(run_energies, (2,))
        def test_deselected(mlpval):
            mlpval.run(run_energies, (2,))

        @pytest.mark.skip(reason="not today")
        @pytest.mark.mlpval_campaign(run_energies, (3,))
        def test_skipped(mlpval):
            mlpval.run(run_energies, (3,))

        @pytest.mark.skipif(sys.platform != "nowhere", reason="not here")
        @pytest.mark.mlpval_campaign(run_energies, (4,))
        def test_skipped_if(mlpval):
            mlpval.run(run_energies, (4,))
    """)
    result = run("--potential=sw", "--mlpval-workers=1", "-k", "not deselected")
    result.assert_outcomes(passed=1, skipped=2, deselected=1)
    assert _starts(log()) == ["1"]


def _metrics(document):
    return sorted((test["nodeid"], r["dataset"], json.dumps(r["metrics"], sort_keys=True))
                  for test in document["tests"] for r in test["records"])


def _cache_files(pytester, folder):
    campaigns = pytester.path / folder / "d" / "mlpval-campaigns"
    return sorted(p.name for p in campaigns.rglob("*") if p.is_file()
                  and not p.name.endswith(".lock"))


TWO_CAMPAIGNS = """
    import pytest
    from protocol_lib import run_energies

    pytestmark = pytest.mark.mlpval_campaign(run_energies, (1, 2))

    def test_a(mlpval):
        mlpval.run(run_energies, (1, 2))

    @pytest.mark.mlpval_campaign("sched-toy", n=3)
    def test_toy(mlpval):
        mlpval.run_protocol("sched-toy", n=3)
"""


def _same_as_lazy(pytester, run, *args, subprocess=None):
    """The JSON metrics and campaign cache files of a run with ``args`` and of a lazy
    run, each with its own cache."""
    pytester.makepyfile(test_p=TWO_CAMPAIGNS)
    out = {}
    for label, extra in (("lazy", ["--mlpval-schedule=lazy"]), ("other", list(args))):
        result = run("--potential=sw", "--mlpval-workers=1", f"--mlpval-json={label}.json",
                     "-o", f"cache_dir=cache-{label}", *extra, subprocess=subprocess)
        result.assert_outcomes(passed=2)
        out[label] = (_metrics(read_json(pytester.path / f"{label}.json")),
                      _cache_files(pytester, f"cache-{label}"))
    assert out["other"][0] == out["lazy"][0]
    assert out["other"][1] == out["lazy"][1] and len(out["lazy"][1]) == 2
    return out


def test_up_front_gives_the_lazy_runs_metrics_and_cache_keys(pytester, run, log):
    _same_as_lazy(pytester, run)


@pytest.mark.slow
def test_xdist_and_dask_give_the_lazy_runs_metrics_and_cache_keys(pytester, run, log):
    from distributed import LocalCluster

    _same_as_lazy(pytester, run, "-n", "2", subprocess=True)
    with LocalCluster(host="127.0.0.1", n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        _same_as_lazy(pytester, run, f"--mlpval-dask-scheduler={cluster.scheduler_address}",
                      subprocess=True)


def test_a_failing_job_fails_only_its_tests_with_its_error(pytester, run, log):
    pytester.makepyfile(test_p="""
        import pytest
        from protocol_lib import run_energies

        @pytest.mark.mlpval_campaign(run_energies, (-1,))
        def test_raises(mlpval):
            mlpval.run(run_energies, (-1,))

        @pytest.mark.mlpval_campaign(run_energies, (-1,))
        def test_raises_too(mlpval):
            mlpval.run(run_energies, (-1,))

        @pytest.mark.mlpval_campaign(run_energies, (1, 2))
        def test_fine(mlpval):
            mlpval.run(run_energies, (1, 2))
    """)
    result = run("--potential=sw", "--mlpval-workers=1", "-rf")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*test_raises*ValueError: sizes must be positive*",
                                 "*test_raises_too*ValueError: sizes must be positive*"])
    assert _starts(log()) == ["-1", "1,2"]  # each once: not again by its tests
    result.stdout.fnmatch_lines(["mlpval schedule: 2 campaigns up front (1 computed, "
                                 "0 from cache, 1 failed); *"])


@pytest.mark.slow
def test_a_worker_death_fails_only_its_campaigns_tests(pytester, run, log):
    """The dying item's campaign fails its test ("worker died"); the campaign beside it
    on the same (broken, then replaced) pool passes."""
    pytester.makepyfile(test_p="""
        import pytest
        from protocol_lib import run_energies

        @pytest.mark.mlpval_campaign(run_energies, (1, 99))
        def test_worker_dies(mlpval):
            mlpval.run(run_energies, (1, 99))

        @pytest.mark.mlpval_campaign(run_energies, (1, 2, 3))
        def test_fine(mlpval):
            mlpval.run(run_energies, (1, 2, 3))
    """)
    result = run("--potential=sw", "--mlpval-workers=2", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_worker_dies*RuntimeError: worker died*"])
    assert _starts(log()) == ["1,2,3", "1,99"]


def test_exit_first_cancels_the_jobs_not_started(pytester, run, log, monkeypatch):
    monkeypatch.setenv("MLPVAL_TEST_SLEEP", "0.5")
    pytester.makepyfile(test_p="""
        import pytest
        from protocol_lib import run_energies

        def test_fails_first():
            assert False

        @pytest.mark.mlpval_campaign(run_energies, tuple(range(1, 21)))
        def test_long(mlpval):
            mlpval.run(run_energies, tuple(range(1, 21)))
    """)
    result = run("--potential=sw", "--mlpval-workers=1", "-x", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    items = [what for what, _ in log() if what.startswith("item ")]
    assert len(items) < 20  # 20 x 0.5 s were planned; the rest was cancelled
    result.stdout.fnmatch_lines(["mlpval schedule: 1 campaigns up front (* 1 unfinished)*"])


def test_longest_first_by_the_settings(pytester, run, log):
    """On one worker, the campaign guessed longest (more MD steps) runs first, although
    its test comes last; the registered protocol's overrides are planned as declared."""
    pytester.makepyfile(test_p="""
        import pytest
        from protocol_lib import Sizes, run_energies

        @pytest.mark.mlpval_campaign(run_energies, Sizes((2,), n_steps=1))
        def test_short(mlpval):
            mlpval.run(run_energies, Sizes((2,), n_steps=1))

        @pytest.mark.mlpval_campaign("sched-toy", n=4)
        def test_toy(mlpval):
            assert mlpval.run_protocol("sched-toy", n=4).energy_eV < -4

        @pytest.mark.mlpval_campaign(run_energies, Sizes((3,), n_steps=10 ** 6))
        def test_long(mlpval):
            mlpval.run(run_energies, Sizes((3,), n_steps=10 ** 6))
    """)
    result = run("--potential=sw", "--mlpval-workers=1", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    items = [what for what, _ in log() if what.startswith("item ")]
    assert items == ["item 3", "item 2"]


def test_lazy_under_xdist_and_without_workers(pytester, run, log):
    pytester.makepyfile(test_p="""
        import pytest
        from protocol_lib import run_energies

        @pytest.mark.mlpval_campaign(run_energies, (1,))
        def test_a(mlpval):
            mlpval.run(run_energies, (1,))
    """)
    result = run("--potential=sw")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mlpval: schedule: lazy (no campaign workers *)"])
    assert "mlpval schedule:" not in result.stdout.str()
    result = run("--potential=sw", "--mlpval-workers=1", "--mlpval-schedule=lazy")
    result.stdout.fnmatch_lines(["mlpval: schedule: lazy (--mlpval-schedule=lazy)"])


READY_MADE = """
    from pytest_mlpval.property_tests import test_mlpval_lattice  # noqa: F401

    def test_errors(mlpval_errors):
        assert mlpval_errors.metrics()["energy_rmse"] < 1e-9

    def test_predictions(mlpval_predictions):
        assert len(mlpval_predictions.energy) == 6
"""


def _ready_made(pytester, run, dataset_arg, mode):
    pytester.makepyfile(test_p=READY_MADE)
    result = run("--potential=sw", f"--mlpval-dataset={dataset_arg}", "--mlpval-workers=1",
                 f"--mlpval-schedule={mode}", f"--mlpval-json={mode}.json",
                 "-o", f"cache_dir=cache-{mode}")
    result.assert_outcomes(passed=3)
    return read_json(pytester.path / f"{mode}.json")


def test_predictions_and_ready_made_property_tests_are_planned_too(pytester, run, log,
                                                                    dataset_arg):
    """Without a declaration: a candidate's predictions on a dataset (mlpval_errors,
    mlpval_predictions) and the properties of a ready-made property test, each once."""
    document = _ready_made(pytester, run, dataset_arg, "upfront")
    jobs = sorted(job["label"] for job in document["schedule"]["jobs"])
    assert jobs == ["lattice (sw)", "predictions on ref (sw)"]


@pytest.mark.slow
def test_planned_predictions_and_properties_give_the_lazy_runs_metrics(pytester, run, log,
                                                                       dataset_arg):
    upfront = _ready_made(pytester, run, dataset_arg, "upfront")
    lazy = _ready_made(pytester, run, dataset_arg, "lazy")
    assert "schedule" not in lazy and _metrics(upfront) == _metrics(lazy)


def test_a_declaration_of_an_unknown_protocol_is_left_to_the_test(pytester, run, log):
    pytester.makepyfile(test_p="""
        import pytest

        @pytest.mark.mlpval_campaign("no-such-protocol")
        def test_unknown(mlpval):
            mlpval.run_protocol("no-such-protocol")
    """)
    result = run("--potential=sw", "--mlpval-workers=1")
    result.assert_outcomes(failed=1)  # as without the declaration: the call's usage error
    result.stdout.fnmatch_lines(["*unknown protocol 'no-such-protocol'*"])
