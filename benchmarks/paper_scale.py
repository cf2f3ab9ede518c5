"""Paper scale: the silicon suite's full-tier campaigns on a Dask cluster, measured, and
an estimate of the whole full tier's wall time on N workers.

Plain Python (no pytest)::

    # a LocalCluster of 1, then 2 worker processes (one thread each), a seed-fixed
    # prefix of the 10,000-structure search, JSON to paper_scale.json
    python benchmarks/paper_scale.py --structures 100 --workers 1 2

    # every full-tier campaign (compression: ~10 min, cross-validation: ~1 h on a core)
    python benchmarks/paper_scale.py --structures 10000 --campaigns rss compression cv

    # an existing cluster (dask scheduler + dask worker processes)
    python benchmarks/paper_scale.py --scheduler tcp://HOST:8786 --structures 1000

    # the full tier through pytest on a LocalCluster the script starts (or --scheduler)
    python benchmarks/paper_scale.py --pytest -- -k "structure or md"

What is measured, per campaign and per cluster size: the wall time of the campaign (its
items on the cluster) and of the work in this process around it (reference crystals, the
classification of the minima), the sum of the items' wall times in their workers, the CPU
seconds the worker processes used (psutil, read in each worker before and after: less
distorted than wall time on a loaded machine), structures (items) per second, and for the
search the 1 -> 2 worker speed-up and whether both runs found the same minima. Load
averages before and after are kept: on a shared machine they say how far to trust the
wall times.

The prefix is exact: structure ``i`` of the search depends only on ``(seed, i)``
(``numpy.random.default_rng([seed, i])`` in :func:`pytest_mlpval.protocols.rss.generate`)
and ``n_structures`` is not part of the campaign's cache key, so the first 100 of the
10,000 are the same 100 cells, and a cache filled here (``--cache-dir
example_suites/silicon/.pytest_cache/d/mlpval-campaigns``, the suite's campaign cache)
is read by the pytest run of the full tier for the same model.

The estimate (:func:`estimate_wall_s`) is stated in ``model`` of the JSON::

    T(N) = S + max(L, W / max(1, N * eta))

``W`` is the work of the campaigns' items (seconds of one worker: the measured mean per
item times the full tier's item count), ``L`` the longest item that cannot be split (the
compression run, one cross-validation fit), ``S`` the work in the main process (reference
crystals, classification of every minimum, scaled by the item count where it grows with
it) and ``eta`` the parallel efficiency measured from 1 to 2 workers (speed-up / 2, at
most 1; N workers are never slower than one), taken to hold for every N: Dask's per-task
cost (milliseconds) is small against items of seconds. ``estimate_idle_cores`` is the
same model with each item's CPU seconds for its wall time and ``eta = 1``: what idle
cores would give, the one to trust on a loaded machine. ``together`` is every campaign
submitted at once (the up-front scheduler: ``S`` summed, ``W`` summed, the largest
``L``); ``one_by_one`` is each campaign waiting for the one before (a pytest run that
starts each campaign when it reaches its test): the sum of the per-campaign ``T(N)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SILICON = ROOT / "example_suites" / "silicon"
GAP_SPEC = f"gap_si={SILICON / 'potential' / 'gap_si_mlearn.xml'}"
TRAIN = (f"train={SILICON / 'data' / 'mlearn_Si_training.xyz'},energy=dft_energy,"
         "forces=dft_forces,stress=dft_stress")

#: the JSON written by this script; bump when a field changes meaning
SCHEMA = "mlpval-paper-scale/1"
#: the full tier's item counts (example_suites/silicon: test_structure.py, test_md.py,
#: test_domain.py: 5 random folds and 4 grouped, one per config_type of the training set;
#: the script measures the random ones and takes their mean fit for all 9)
FULL_TIER_ITEMS = {"rss": 10000, "compression": 1, "cv": 9}
#: N for which the estimate is tabulated
ESTIMATE_WORKERS = (1, 2, 4, 8, 16, 32, 64, 128)
MODEL = ("T(N) = S + max(L, W / max(1, N * eta)); W: items' work in worker-seconds (mean per "
         "item x the full tier's item count), L: the longest indivisible item, S: work in "
         "the main process (its per-item part scaled by the item count), eta: parallel "
         "efficiency measured from 1 to 2 workers (speed-up / 2, at most 1), assumed for "
         "every N. together: all campaigns submitted at once (S and W summed, largest L); "
         "one_by_one: the sum of the campaigns' own T(N)")


# -- the estimate (pure arithmetic; tests/unit/test_paper_scale.py) ----------------------

def campaign_wall_s(work_s: float, longest_s: float, serial_s: float, n_workers: int,
                    efficiency: float = 1.0) -> float:
    """``S + max(L, W / max(1, N * eta))`` for one campaign (or for several submitted at
    once): N workers are never slower than one."""
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
    return serial_s + max(longest_s, work_s / max(1.0, n_workers * efficiency))


def scaled_campaign(measured: Mapping[str, float], full_items: int) -> dict[str, float]:
    """A campaign's ``W``, ``L`` and ``S`` at ``full_items`` items from a measured run
    (``items``, ``item_s``: mean item wall time on one worker, ``longest_item_s``,
    ``serial_fixed_s``, ``serial_per_item_s``)."""
    items = int(measured["items"])
    if items < 1 or full_items < 1:
        raise ValueError("a campaign needs at least one item")
    return {"items": full_items,
            "work_s": float(measured["item_s"]) * full_items,
            "longest_s": float(measured["longest_item_s"]),
            "serial_s": float(measured.get("serial_fixed_s", 0.0))
            + float(measured.get("serial_per_item_s", 0.0)) * full_items}


def estimate_wall_s(campaigns: Mapping[str, Mapping[str, float]], n_workers: int,
                    efficiency: float = 1.0, together: bool = True) -> float:
    """The wall time of ``campaigns`` (``{name: {work_s, longest_s, serial_s}}``, e.g.
    from :func:`scaled_campaign`) on ``n_workers``: submitted at once (``together``) or
    one after another."""
    if not campaigns:
        raise ValueError("no campaign to estimate")
    parts = list(campaigns.values())
    if together:
        return campaign_wall_s(sum(c["work_s"] for c in parts),
                               max(c["longest_s"] for c in parts),
                               sum(c["serial_s"] for c in parts), n_workers, efficiency)
    return sum(campaign_wall_s(c["work_s"], c["longest_s"], c["serial_s"], n_workers,
                               efficiency) for c in parts)


def efficiency_from(wall_1_s: float, wall_2_s: float) -> float:
    """Parallel efficiency of 2 workers from the items' wall times on 1 and 2: the
    speed-up over 2, capped at 1 (a faster second run is noise, not superlinearity)."""
    if wall_1_s <= 0 or wall_2_s <= 0:
        raise ValueError("wall times must be > 0")
    return min(1.0, wall_1_s / wall_2_s / 2.0)


def estimate(measured: Mapping[str, Mapping[str, float]], efficiency: float,
             workers: Iterable[int] = ESTIMATE_WORKERS,
             full_items: Mapping[str, int] = FULL_TIER_ITEMS) -> dict[str, Any]:
    """The JSON's ``estimate``: the full tier's campaigns scaled from ``measured``, and
    their wall time on each N of ``workers``, together and one by one. Campaigns not
    measured are listed under ``missing`` (the estimate then covers the others only)."""
    scaled = {name: scaled_campaign(m, full_items[name]) for name, m in measured.items()
              if name in full_items}
    workers = [int(n) for n in workers]
    return {"model": MODEL, "efficiency": efficiency, "campaigns": scaled,
            "missing": sorted(set(full_items) - set(scaled)), "workers": workers,
            "together_s": [estimate_wall_s(scaled, n, efficiency, True) for n in workers],
            "one_by_one_s": [estimate_wall_s(scaled, n, efficiency, False)
                             for n in workers]}


#: keys of the JSON and of each entry of its ``runs``
REPORT_KEYS = ("schema", "date_utc", "commit", "command", "machine", "potential", "runs",
               "scaling", "estimate", "estimate_idle_cores")
RUN_KEYS = ("campaign", "workers", "executor", "items", "wall_s", "items_wall_s",
            "serial_s", "item_seconds_sum", "item_s", "longest_item_s", "serial_fixed_s",
            "serial_per_item_s", "items_per_s", "cpu_seconds_workers", "cpu_seconds_per_item",
            "cpu_seconds_main", "failed", "details")


def check_report(report: Mapping[str, Any]) -> list[str]:
    """What is missing or wrong in a report (empty: it has the schema)."""
    problems = [f"missing {k}" for k in REPORT_KEYS if k not in report]
    if report.get("schema") != SCHEMA:
        problems.append(f"schema is {report.get('schema')!r}, not {SCHEMA!r}")
    for i, run in enumerate(report.get("runs", ())):
        problems += [f"runs[{i}] missing {k}" for k in RUN_KEYS if k not in run]
    for name in ("estimate", "estimate_idle_cores"):
        est = report.get(name) or {}
        for key in ("together_s", "one_by_one_s"):
            if len(est.get(key, ())) != len(est.get("workers", ())):
                problems.append(f"{name}.{key} does not match {name}.workers")
    return problems


# -- measuring ----------------------------------------------------------------------------

def _worker_cpu() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


class Cluster:
    """A Dask scheduler address: a LocalCluster of ``n_workers`` processes (one thread
    each) this script starts, or the ``address`` given."""

    def __init__(self, n_workers: int | None = None, address: str | None = None) -> None:
        self.cluster = None
        if address is None:
            from distributed import LocalCluster

            self.cluster = LocalCluster(host="127.0.0.1", n_workers=n_workers,
                                        threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            address = self.cluster.scheduler_address
        from distributed import Client

        self.address = address
        self.client = Client(address, set_as_default=False)
        self.client.wait_for_workers(1, timeout=120)

    @property
    def n_workers(self) -> int:
        return len(self.client.nthreads())

    def cpu_seconds(self) -> float:
        return sum(self.client.run(_worker_cpu).values())

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _run_entry(campaign: str, cluster: Cluster, items: int, wall_s: float,
               items_wall_s: float, item_seconds: Sequence[float], cpu_workers: float,
               cpu_main: float, serial_fixed_s: float, serial_per_item_s: float,
               failed: int, details: Mapping[str, Any]) -> dict[str, Any]:
    n = max(1, items)
    return {"campaign": campaign, "workers": cluster.n_workers, "executor": "dask",
            "items": items, "wall_s": wall_s, "items_wall_s": items_wall_s,
            "serial_s": wall_s - items_wall_s, "item_seconds_sum": float(sum(item_seconds)),
            "item_s": float(sum(item_seconds)) / n,
            "longest_item_s": float(max(item_seconds, default=0.0)),
            "serial_fixed_s": serial_fixed_s, "serial_per_item_s": serial_per_item_s,
            "items_per_s": items / items_wall_s if items_wall_s > 0 else math.nan,
            "cpu_seconds_workers": cpu_workers, "cpu_seconds_per_item": cpu_workers / n,
            "cpu_seconds_main": cpu_main, "failed": failed, "details": dict(details)}


class _Clock:
    """Wall time of a campaign's items, from its progress callback (which also writes a
    progress line to stderr every minute)."""

    def __init__(self) -> None:
        from pytest_mlpval.campaign import print_progress

        self.items_s = 0.0
        self.show = print_progress(every_s=60.0)

    def __call__(self, progress: Any) -> None:
        self.show(progress)
        if progress.done == progress.total:
            self.items_s = progress.elapsed_s


def _options(cluster: Cluster, clock: _Clock, cache_dir: str | None) -> Any:
    from pytest_mlpval.protocols.base import CampaignOptions

    return CampaignOptions(scheduler=cluster.address, cache_dir=cache_dir, progress=clock)


def measure_rss(potential: Any, cluster: Cluster, n_structures: int,
                cache_dir: str | None) -> tuple[dict[str, Any], list[tuple]]:
    """The full tier's search (test_structure.py's FULL) cut to ``n_structures``."""
    from dataclasses import replace

    from pytest_mlpval.protocols.rss import RssSettings, classify, relax_references, run_rss

    settings = RssSettings(n_structures=n_structures, atoms_per_cell=(2, 16), seed=0,
                           references=("diamond", "sh"))
    clock = _Clock()
    cpu0, main0, start = cluster.cpu_seconds(), time.process_time(), time.perf_counter()
    result = run_rss(potential, settings, options=_options(cluster, clock, cache_dir))
    wall = time.perf_counter() - start
    cpu_main, cpu_workers = time.process_time() - main0, cluster.cpu_seconds() - cpu0
    # the main process's part: the reference crystals (fixed) and the classification
    # (per minimum), timed again on their own
    began = time.perf_counter()
    crystals, _ = relax_references(potential, settings)
    fixed = time.perf_counter() - began
    began = time.perf_counter()
    classify([replace(m, similarity={}) for m in result.minima], crystals, settings)
    per_item = (time.perf_counter() - began) / n_structures
    statuses: dict[str, int] = {}
    for m in result.minima:
        statuses[m.status] = statuses.get(m.status, 0) + 1
    cpu_items = [m.cpu_seconds for m in result.minima if math.isfinite(m.cpu_seconds)]
    details = {"statuses": statuses, "n_from_cache": sum(m.from_cache for m in result.minima),
               "cpu_seconds_in_items": float(sum(cpu_items)),
               "atoms_per_cell": list(settings.atoms_per_cell), "seed": settings.seed,
               "n_steps": int(sum(m.n_steps or 0 for m in result.minima))}
    entry = _run_entry("rss", cluster, n_structures, wall, clock.items_s or wall,
                       [m.total_seconds for m in result.minima], cpu_workers, cpu_main,
                       fixed, per_item, sum(m.status == "failed" for m in result.minima),
                       details)
    fingerprint = [(m.status, round(m.energy_per_atom_eV, 9)) for m in result.minima]
    return entry, fingerprint


def measure_compression(potential: Any, cluster: Cluster, cache_dir: str | None
                        ) -> dict[str, Any]:
    """The full tier's compression (test_md.py's FULL: the protocol's defaults)."""
    from pytest_mlpval.protocols.compression import CompressionSettings, run_compression

    settings = CompressionSettings()
    clock = _Clock()
    cpu0, main0, start = cluster.cpu_seconds(), time.process_time(), time.perf_counter()
    result = run_compression(potential, settings, options=_options(cluster, clock, cache_dir))
    wall = time.perf_counter() - start
    steps = sum(r.n_steps for r in result.records)
    details = {"n_steps": steps, "status": [r.status for r in result.records],
               "outcome": result.outcome.outcome if result.outcome else None,
               "phase": result.outcome.phase if result.outcome else None,
               "steps_per_s": steps / result.seconds if result.seconds else math.nan}
    return _run_entry("compression", cluster, 1, wall, clock.items_s or wall,
                      [result.seconds], cluster.cpu_seconds() - cpu0,
                      time.process_time() - main0, wall - (clock.items_s or wall), 0.0,
                      int(result.error is not None), details)


def measure_cv(cluster: Cluster, cache_dir: str | None) -> dict[str, Any]:
    """The full tier's 5-fold random cross-validation of the bundled recipe
    (test_domain.py, ``fit_gap.py``)."""
    import importlib.util

    from pytest_mlpval.protocols.fitting import CrossValidationSettings, cross_validate

    recipe = SILICON / "potential" / "fit_gap.py"
    spec = importlib.util.spec_from_file_location("fit_gap", recipe)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    clock = _Clock()
    cpu0, main0, start = cluster.cpu_seconds(), time.process_time(), time.perf_counter()
    result = cross_validate(TRAIN, module.recipe_command(),
                            CrossValidationSettings(k=5, method="random"),
                            options=_options(cluster, clock, cache_dir))
    wall = time.perf_counter() - start
    seconds = [f.fit_seconds + f.predict_seconds for f in result.folds]
    return _run_entry("cv", cluster, len(result.folds), wall, clock.items_s or wall,
                      seconds, cluster.cpu_seconds() - cpu0, time.process_time() - main0,
                      wall - (clock.items_s or wall), 0.0,
                      sum(not f.ok for f in result.folds),
                      {"fit_seconds": [f.fit_seconds for f in result.folds]})


def run_pytest(address: str, extra: Sequence[str]) -> dict[str, Any]:
    """``pytest example_suites/silicon --mlpval-tier=full --mlpval-dask-scheduler=...``."""
    command = [sys.executable, "-m", "pytest", str(SILICON), "--mlpval-tier=full",
               f"--mlpval-dask-scheduler={address}", "-ra", *extra]
    start = time.perf_counter()
    rc = subprocess.call(command, cwd=ROOT)
    return {"command": command, "returncode": rc, "wall_s": time.perf_counter() - start}


# -- the command line --------------------------------------------------------------------

def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _potential_spec() -> str:
    import importlib.util

    return GAP_SPEC if importlib.util.find_spec("quippy") is not None else "sw"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=100,
                        help="structures of the search (a prefix of the 10,000). "
                             "Default: %(default)s")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="LocalCluster sizes to run in turn (repeat them, e.g. 1 2 2 "
                             "1, to undo a drift of the load). Default: %(default)s")
    parser.add_argument("--scheduler", default=None,
                        help="a Dask scheduler address (tcp://HOST:PORT) to use instead "
                             "of LocalClusters; --workers is then ignored")
    parser.add_argument("--campaigns", nargs="+", default=["rss"],
                        choices=sorted(FULL_TIER_ITEMS),
                        help="campaigns to measure. Default: %(default)s")
    parser.add_argument("--potential", default=None,
                        help="potential spec. Default: the bundled GAP (sw without quippy)")
    parser.add_argument("--cache-dir", default=None,
                        help="campaign cache (default: none, every item computed)")
    parser.add_argument("--merge", nargs="*", default=[],
                        help="earlier JSON reports whose runs join this estimate")
    parser.add_argument("--no-measure", action="store_true",
                        help="measure nothing: rebuild the report from --merge")
    parser.add_argument("--out", default="paper_scale.json", help="Default: %(default)s")
    parser.add_argument("--pytest", action="store_true",
                        help="run the full tier through pytest on the cluster instead; "
                             "the arguments after it (and an optional --) go to pytest")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--pytest" in argv:
        at = argv.index("--pytest")
        argv, extra = argv[:at + 1], argv[at + 1:]
        extra = extra[1:] if extra[:1] == ["--"] else extra
    args = parser.parse_args(argv)
    args.pytest_args = extra
    return args


def build_report(runs: Sequence[Mapping[str, Any]], potential: Mapping[str, Any],
                 machine: Mapping[str, Any], command: str) -> dict[str, Any]:
    """The JSON: the runs, the 1 -> 2 scaling of each campaign, and the estimate from
    each campaign's run on the fewest workers."""
    grouped: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    for run in runs:
        grouped.setdefault(run["campaign"], {}).setdefault(int(run["workers"]),
                                                           []).append(run)
    by_campaign = {name: {n: combine(same) for n, same in sizes.items()}
                   for name, sizes in grouped.items()}
    scaling = {}
    for name, sizes in by_campaign.items():
        if 1 in sizes and 2 in sizes:
            one, two = sizes[1], sizes[2]
            scaling[name] = {
                "speedup_1_to_2": one["items_wall_s"] / two["items_wall_s"],
                "efficiency": efficiency_from(one["items_wall_s"], two["items_wall_s"]),
                "cpu_seconds_per_item_1": one["cpu_seconds_per_item"],
                "cpu_seconds_per_item_2": two["cpu_seconds_per_item"]}
    efficiencies = [s["efficiency"] for s in scaling.values()]
    eta = min(efficiencies) if efficiencies else 1.0
    measured = {name: sizes[min(sizes)] for name, sizes in by_campaign.items()}
    return {"schema": SCHEMA, "date_utc": datetime.now(timezone.utc).isoformat(
                timespec="seconds"),
            "commit": _commit(), "command": command, "machine": dict(machine),
            "potential": dict(potential), "runs": list(runs), "scaling": scaling,
            "estimate": estimate(measured, eta),
            "estimate_idle_cores": estimate({n: cpu_bound(m) for n, m in measured.items()},
                                            1.0)}


def combine(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """Runs of one campaign on one cluster size (``--workers 1 2 2 1``: the order undoes a
    drift of the machine's load) as one: times, items and CPU seconds summed, the means
    per item taken from the sums, the longest item the longest of all."""
    if len(runs) == 1:
        return runs[0]
    total = {k: sum(float(r[k]) for r in runs)
             for k in ("items", "wall_s", "items_wall_s", "serial_s", "item_seconds_sum",
                       "cpu_seconds_workers", "cpu_seconds_main", "failed")}
    n = total["items"]
    return {**runs[0], **total, "items": int(n), "failed": int(total["failed"]),
            "item_s": total["item_seconds_sum"] / n,
            "longest_item_s": max(float(r["longest_item_s"]) for r in runs),
            "serial_fixed_s": sum(float(r["serial_fixed_s"]) for r in runs) / len(runs),
            "serial_per_item_s": sum(float(r["serial_per_item_s"]) * r["items"]
                                     for r in runs) / n,
            "items_per_s": n / total["items_wall_s"],
            "cpu_seconds_per_item": total["cpu_seconds_workers"] / n,
            "details": {"combined_runs": len(runs)}}


def cpu_bound(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's numbers as on idle cores: each item's wall time replaced by its share of
    the workers' CPU seconds (the longest item scaled by the same ratio), efficiency 1.
    On a loaded machine this is the estimate to trust more; wall times are upper bounds."""
    ratio = run["cpu_seconds_per_item"] / run["item_s"] if run["item_s"] > 0 else 1.0
    return {**run, "item_s": run["cpu_seconds_per_item"],
            "longest_item_s": run["longest_item_s"] * min(1.0, ratio)}


def measure(args: argparse.Namespace, runs: list[dict[str, Any]],
            machine: dict[str, Any]) -> dict[str, Any]:
    """Run the campaigns of ``args`` on each cluster size, appending to ``runs``;
    return the potential's identity."""
    from pytest_mlpval.potentials import load_potential

    spec = args.potential or _potential_spec()
    potential = load_potential(spec)
    fingerprints = {}
    sizes = [None] if args.scheduler else args.workers
    for k, n in enumerate(sizes):
        cluster = Cluster(n, args.scheduler)
        try:
            if "rss" in args.campaigns:
                entry, fingerprints[cluster.n_workers] = measure_rss(
                    potential, cluster, args.structures, args.cache_dir)
                runs.append(entry)
                print(json.dumps(entry), flush=True)
            if "compression" in args.campaigns and k == 0:  # one item: once
                runs.append(measure_compression(potential, cluster, args.cache_dir))
                print(json.dumps(runs[-1]), flush=True)
            if "cv" in args.campaigns:
                runs.append(measure_cv(cluster, args.cache_dir))
                print(json.dumps(runs[-1]), flush=True)
        finally:
            cluster.close()
    if len(fingerprints) > 1:  # the search's statuses and energies, per cluster size
        machine["same_minima_for_every_cluster_size"] = \
            len({json.dumps(f) for f in fingerprints.values()}) == 1
    info = potential.info
    return {"spec": spec, "name": info.name, "sha256": info.sha256}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pytest:
        cluster = Cluster(args.workers[-1], args.scheduler)
        try:
            print(json.dumps(run_pytest(cluster.address, args.pytest_args), indent=1))
        finally:
            cluster.close()
        return 0
    machine: dict[str, Any] = {
        "cpus": os.cpu_count(), "loadavg_before": list(os.getloadavg()),
        "note": "wall times on a loaded machine are upper bounds; cpu_seconds_per_item "
                "is less distorted"}
    runs: list[dict[str, Any]] = []
    merged = [json.loads(Path(path).read_text()) for path in args.merge]
    for old in merged:
        runs += old["runs"]
        machine.setdefault("merged", []).append(
            {k: old[k] for k in ("date_utc", "commit", "command", "machine")})
    if args.no_measure:
        if not merged:
            raise SystemExit("--no-measure needs --merge FILE ...")
        potential = merged[0]["potential"]
    else:
        potential = measure(args, runs, machine)
    machine["loadavg_after"] = list(os.getloadavg())
    report = build_report(runs, potential, machine,
                          " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    problems = check_report(report)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out}", *problems, sep="\n")
    for name in ("estimate", "estimate_idle_cores"):
        est = report[name]
        print(f"{name} (missing: {', '.join(est['missing']) or 'none'})")
        for n, t1, t2 in zip(est["workers"], est["together_s"], est["one_by_one_s"]):
            print(f"  N={n:4d}  together {t1 / 3600:8.2f} h   one by one {t2 / 3600:8.2f} h")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
