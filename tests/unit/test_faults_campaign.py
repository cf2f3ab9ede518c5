"""Fault injection in campaigns (pytest_mlpval.campaign): damaged cache files, runs
killed or interrupted at item k, worker processes that die (alone or in a pool shared by
several campaigns), a Dask cluster without workers, relaxations and MD fed NaN, and what
identifies a cached item (protocol version, loader versions)."""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pytest_mlpval import campaign
from pytest_mlpval.campaign import CacheWarning, CampaignError, run_campaign
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.protocols.base import CampaignOptions

N = 6
PARAMS = {"demo": 1}
CALLS: list[int] = []  # items computed in this process by the tasks below


def square_task(calc, item):
    """A cheap task (module level: pickled for workers); ``item`` is an int or a tuple
    ``(index, k, how, counter)``: at ``index == k`` do ``how``."""
    index, k, how, counter = item if isinstance(item, tuple) else (item, None, None, None)
    if counter is not None:  # count calls across processes
        with open(counter, "a", encoding="utf-8") as handle:
            handle.write(f"{index}\n")
        time.sleep(0.05)
    if index == k:
        if how == "interrupt":
            raise KeyboardInterrupt
        if how == "sigint":  # Ctrl-C: the signal, not the exception
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        if how == "die":
            os._exit(3)
    CALLS.append(index)
    return {"item": index, "square": index * index, "root": math.sqrt(index)}


def _plain(result):
    return [item.value for item in result.items]


def _counted(path):
    return [int(x) for x in Path(path).read_text("utf-8").split()] if Path(path).exists() \
        else []


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw")


@pytest.fixture
def calls():
    CALLS.clear()
    yield CALLS
    CALLS.clear()


def _run(sw, cache_dir, items=range(N), **kwargs):
    return run_campaign("fault-demo", square_task, list(items), sw, PARAMS, version=1,
                        cache_dir=cache_dir, **kwargs)


# -- damaged cache files -------------------------------------------------------------------

def _damage(lines: list[str], case: str) -> tuple[list[str], set[int]]:
    """The cache file's lines (header first) damaged as ``case``, and the items that must
    be computed again."""
    records = [json.loads(line) for line in lines[1:]]
    if case == "truncated":
        return lines[:-1] + [lines[-1][:len(lines[-1]) // 2]], {N - 1}
    if case == "not_json":
        return lines[:2] + ["{this is not json\n"] + lines[3:], {1}
    if case == "json_list":
        return lines[:3] + [json.dumps([records[2]["index"], "x"]) + "\n"] + lines[4:], {2}
    if case == "index_string":
        records[3]["index"] = "3"
    elif case == "index_negative":
        records[3]["index"] = -3
    elif case == "index_float":
        records[3]["index"] = 3.0
    elif case == "duplicate_index":  # the same item twice with different values
        records.append({**records[3], "value": {"item": 3, "square": -1, "root": 0.0}})
    elif case == "value_missing":
        del records[3]["value"]
    elif case == "value_not_object":
        records[3]["value"] = [3, 9]
    elif case == "header_other_protocol":
        header = json.loads(lines[0])
        header["protocol"] = "another"
        return [json.dumps(header) + "\n"] + lines[1:], set(range(N))
    elif case == "header_not_object":
        return ["[1, 2]\n"] + lines[1:], set(range(N))
    else:
        raise AssertionError(case)
    return [lines[0]] + [json.dumps(r) + "\n" for r in records], {3}


DAMAGE = ("truncated", "not_json", "json_list", "index_string", "index_negative",
          "index_float", "duplicate_index", "value_missing", "value_not_object",
          "header_other_protocol", "header_not_object")


def _check_square(value):
    if not isinstance(value, dict) or set(value) != {"item", "square", "root"}:
        return f"expected the keys item, square, root, got {value!r}"
    return None


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_cache_is_recomputed_with_a_warning(sw, calls, tmp_path, case):
    clean = _run(sw, tmp_path)
    path = Path(clean.cache_path)
    damaged, redo = _damage(path.read_text("utf-8").splitlines(keepends=True), case)
    path.write_text("".join(damaged), "utf-8")
    calls.clear()
    with pytest.warns(CacheWarning, match=str(path.name)):
        again = _run(sw, tmp_path, validate=_check_square)
    assert _plain(again) == _plain(clean)
    assert sorted(calls) == sorted(redo)
    assert [not i.from_cache for i in again.items] == [i in redo for i in range(N)]
    # the file was repaired: the next run reads everything, without a warning
    calls.clear()
    third = _run(sw, tmp_path, validate=_check_square)
    assert calls == [] and _plain(third) == _plain(clean) and third.n_from_cache == N


def test_cached_rss_record_that_lacks_keys_is_recomputed(sw, tmp_path):
    from pytest_mlpval.protocols.rss import RssSettings, run_rss

    params = RssSettings(n_structures=2, atoms_per_cell=(2, 2), references=())
    first = run_rss(sw, params, options=CampaignOptions(cache_dir=tmp_path))
    path = Path(first.cache_path)
    lines = path.read_text("utf-8").splitlines(keepends=True)
    record = json.loads(lines[1])
    del record["value"]["status"]
    path.write_text(lines[0] + json.dumps(record) + "\n" + "".join(lines[2:]), "utf-8")
    with pytest.warns(CacheWarning, match="status"):
        again = run_rss(sw, params, options=CampaignOptions(cache_dir=tmp_path))
    assert again.statuses == first.statuses and again.n_from_cache == 1
    np.testing.assert_array_equal(again.energies_per_atom_eV, first.energies_per_atom_eV)


# -- what identifies a cached item ----------------------------------------------------------

def test_every_campaign_declares_a_version_and_loader_versions_key_the_cache(sw, tmp_path):
    signature = inspect.signature(run_campaign)
    assert signature.parameters["version"].default is inspect.Parameter.empty
    with pytest.raises(TypeError, match="version"):
        run_campaign("fault-demo", square_task, [0], sw, PARAMS)  # type: ignore[call-arg]

    def stand_in(loader_versions):
        info = types.SimpleNamespace(
            sha256=sw.info.sha256, loader="builtin", spec="sw", name="sw",
            loader_versions=loader_versions, as_dict=lambda: {"name": "sw"})
        return types.SimpleNamespace(info=info, calculator=sw.calculator)

    paths = {_run(sw, tmp_path).cache_path,
             run_campaign("fault-demo", square_task, range(N), sw, PARAMS, version=2,
                          cache_dir=tmp_path).cache_path,
             _run(stand_in({"quippy-ase": "0.9.14"}), tmp_path).cache_path,
             _run(stand_in({"quippy-ase": "0.9.15"}), tmp_path).cache_path}
    assert len(paths) == 4
    assert campaign.CACHE_FORMAT >= 2


# -- interrupted and killed runs ----------------------------------------------------------

@pytest.mark.parametrize("how", ["interrupt", "sigint"])
@pytest.mark.parametrize("k", [0, 2, N - 1])
def test_ctrl_c_in_process_stops_at_once_and_keeps_what_finished(sw, calls, tmp_path, how,
                                                                 k):
    with pytest.raises(KeyboardInterrupt):
        _run(sw, tmp_path, [(i, k, how, None) for i in range(N)])
    assert calls == list(range(k))  # nothing ran after the interrupted item
    calls.clear()
    resumed = _run(sw, tmp_path)
    assert calls == list(range(k, N))  # only the rest is computed
    assert [i.from_cache for i in resumed.items] == [i < k for i in range(N)]
    calls.clear()
    assert _plain(resumed) == _plain(_run(sw, None))


KILLED_RUN = """
import sys
sys.path[:0] = {paths!r}
from pytest_mlpval.campaign import run_campaign
from pytest_mlpval.potentials import load_potential
from unit.test_faults_campaign import PARAMS, square_task
run_campaign("fault-demo", square_task, [(i, {k}, "die", None) for i in range({n})],
             load_potential("sw"), PARAMS, version=1, cache_dir={cache!r})
"""


@pytest.mark.parametrize("k", [1, N - 1])
def test_run_killed_at_item_k_resumes_with_the_rest(sw, calls, tmp_path, k):
    """The whole process dies at item k (kill -9, out of memory): items before it are on
    disk."""
    here = str(Path(__file__).resolve().parents[1])
    script = KILLED_RUN.format(paths=[here, *sys.path], k=k, n=N, cache=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    resumed = _run(sw, tmp_path)
    assert calls == list(range(k, N))
    assert _plain(resumed) == _plain(_run(sw, None))


def test_ctrl_c_with_workers_cancels_the_rest_and_keeps_what_finished(sw, tmp_path):
    counter = tmp_path / "calls.txt"
    n, k = 12, 2
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        _run(sw, tmp_path / "cache", [(i, k, "interrupt", str(counter)) for i in range(n)],
             workers=2)
    assert time.perf_counter() - start < 30
    ran = _counted(counter)
    assert len(ran) < n  # the pool was shut down with the pending items cancelled
    counter.unlink()
    resumed = _run(sw, tmp_path / "cache", [(i, None, None, str(counter)) for i in range(n)])
    cached = {i.index for i in resumed.items if i.from_cache}
    assert sorted(_counted(counter)) == sorted(set(range(n)) - cached)
    assert [v["square"] for v in _plain(resumed)] == [i * i for i in range(n)]


# -- dying workers -------------------------------------------------------------------------

def test_worker_death_fails_only_its_item_and_a_rerun_computes_only_it(sw, calls, tmp_path):
    k = N - 2
    result = _run(sw, tmp_path, [(i, k, "die", None) for i in range(N)], workers=2)
    assert [i.ok for i in result.items] == [i != k for i in range(N)]
    assert result.items[k].error.startswith("worker died")
    assert [result.items[i].value["square"] for i in range(N) if i != k] == \
        [i * i for i in range(N) if i != k]
    rerun = _run(sw, tmp_path)
    assert calls == [k] and _plain(rerun) == _plain(_run(sw, None))


def test_worker_death_in_a_shared_pool_fails_only_that_campaigns_item(sw, tmp_path):
    """compute_properties runs one campaign per protocol in threads over one pool: a
    protocol that kills its worker must not take the others down."""
    import multiprocessing

    counter = str(tmp_path / "calls.txt")
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver"))
    others: dict[str, object] = {}

    def neighbour():
        others["result"] = run_campaign(
            "fault-neighbour", square_task, [(i, None, None, counter) for i in range(6)],
            sw, PARAMS, version=1, executor=pool)

    try:
        thread = threading.Thread(target=neighbour)
        thread.start()
        time.sleep(0.3)
        dying = run_campaign("fault-dying", square_task,
                             [(i, 1, "die", None) for i in range(3)], sw, PARAMS, version=1,
                             executor=pool)
        thread.join(120)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert [i.ok for i in dying.items] == [True, False, True]
    assert dying.items[1].error.startswith("worker died")
    neighbour_result = others["result"]
    assert all(i.ok for i in neighbour_result.items), neighbour_result.failures
    assert [v["square"] for v in _plain(neighbour_result)] == [i * i for i in range(6)]


# -- Dask without workers --------------------------------------------------------------------

def test_dask_cluster_without_workers_times_out(sw):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        start = time.perf_counter()
        with pytest.raises(CampaignError, match=r"no Dask worker .* within 1 s"):
            _run(sw, None, scheduler=cluster.scheduler_address, worker_timeout_s=1.0)
        assert time.perf_counter() - start < 15


# -- NaN in relaxations and MD -----------------------------------------------------------------

@pytest.mark.parametrize("fault,k", [("nan", 0), ("nan", 4), ("nan_forces", 3), ("inf", 6)])
def test_rss_relaxation_on_non_finite_results_fails_fast(sw, fault, k):
    from pytest_mlpval.protocols.rss import RssSettings, run_rss
    from pytest_mlpval.testing import FaultyCalculator

    calc = FaultyCalculator(sw.calculator, fault, at_call=k)
    start = time.perf_counter()
    result = run_rss(calc, RssSettings(n_structures=2, atoms_per_cell=(4, 4)))
    assert time.perf_counter() - start < 20
    assert result.statuses == ("failed", "failed")
    assert all("non-finite" in m.error for m in result.minima), [m.error for m in
                                                                 result.minima]
    assert "non-finite" in result.references["diamond"]["error"]


def _slow_calculator(base, seconds):
    from ase.calculators.calculator import Calculator, all_changes

    class Slow(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            time.sleep(seconds)
            work = self.atoms.copy()
            work.calc = base
            energy = work.get_potential_energy()
            self.results = {"energy": energy, "free_energy": energy,
                            "forces": work.get_forces(), "stress": work.get_stress()}

    return Slow()


def test_rss_relaxation_over_its_wall_time_limit_fails(sw):
    from pytest_mlpval.protocols.rss import RssSettings, run_rss

    params = RssSettings(n_structures=1, atoms_per_cell=(4, 4), references=(),
                         max_seconds_per_structure=0.3, fmax_eV_A=1e-6)
    assert "max_seconds_per_structure" not in params.relaxation_key()
    start = time.perf_counter()
    result = run_rss(_slow_calculator(sw.calculator, 0.05), params)
    assert time.perf_counter() - start < 5
    (minimum,) = result.minima
    assert minimum.status == "failed", minimum
    assert "RelaxationTimeout: structure 0: wall-time limit" in minimum.error, minimum.error
    assert "0.3 s" in minimum.error
    with pytest.raises(ValueError, match="max_seconds_per_structure"):
        RssSettings(max_seconds_per_structure=0)
