"""Throughput of the random structure search with Stillinger-Weber.

The same 24 random 8-atom Si cells (one seed) are relaxed with 1 and with 2 local worker
processes (``CampaignOptions(workers=N)``, no cache), alternating 1, 2, 2, 1 so that a
change of the machine's load hits both; the speed-up is the ratio of the median wall
times (pool start-up included, amortised over the structures; the target on 2 idle cores
is >= 1.8, reported, not asserted). ``cpu_share_per_worker_N`` is the CPU time the
workers got per second of their relaxations' wall time: below 1, other processes took
their cores; ``speedup_cpu_normalised`` scales the speed-up by the two shares (the
speed-up the workers would show with a core each). The records split each relaxation's
time into the calculator and the rest (the optimiser, ASE's FrechetCellFilter with its
matrix exponentials and logarithms, our wrapper): both are reported per optimiser step.
Load averages before and after are kept in ``extra_info``: on a shared machine other
processes take CPU time from the workers.

Run: ``pytest benchmarks/test_rss.py -p no:xdist`` (``-s`` shows the numbers).
"""

from __future__ import annotations

import os
import statistics
import time

from conftest import RATIOS

N_STRUCTURES = 24
ATOMS = 8


def _params():
    from pytest_mlpval.protocols.rss import RssSettings

    return RssSettings(n_structures=N_STRUCTURES, atoms_per_cell=(ATOMS, ATOMS), seed=2024,
                       references=())


def test_rss_worker_scaling(benchmark):
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.protocols.base import CampaignOptions
    from pytest_mlpval.protocols.rss import relax_structure, run_rss

    sw = load_potential("sw")
    params = _params()
    load_before = os.getloadavg()
    walls: dict[int, list[float]] = {1: [], 2: []}
    shares: dict[int, list[float]] = {1: [], 2: []}
    results = {}
    for workers in (1, 2, 2, 1):
        start = time.perf_counter()
        results[workers] = run_rss(sw, params, options=CampaignOptions(workers=workers))
        walls[workers].append(time.perf_counter() - start)
        minima = results[workers].minima
        shares[workers].append(sum(m.cpu_seconds for m in minima)
                               / sum(m.total_seconds for m in minima))
    load_after = os.getloadavg()
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    speedup = one / two
    share1, share2 = statistics.median(shares[1]), statistics.median(shares[2])
    # what the speed-up would be if every worker had had a core to itself
    speedup_per_cpu = speedup * share1 / share2
    minima = results[1].minima
    steps = sum(m.n_steps for m in minima)
    calls = sum(m.n_force_calls for m in minima)
    inside = sum(m.calculator_seconds for m in minima)
    outside = sum(m.total_seconds - m.calculator_seconds for m in minima)
    numbers = {
        "structures": N_STRUCTURES, "atoms": ATOMS,
        "wall_1_worker_s": one, "wall_2_workers_s": two, "speedup_1_to_2": speedup,
        "relaxations_per_s_per_worker_1": N_STRUCTURES / one,
        "relaxations_per_s_per_worker_2": N_STRUCTURES / two / 2,
        "steps_per_relaxation": steps / N_STRUCTURES,
        "calculator_ms_per_step": 1e3 * inside / steps,
        "outside_calculator_ms_per_step": 1e3 * outside / steps,
        "calculator_ms_per_call": 1e3 * inside / calls,
        "cpu_share_per_worker_1": share1, "cpu_share_per_worker_2": share2,
        "speedup_cpu_normalised": speedup_per_cpu,
        "loadavg_before": load_before[0], "loadavg_after": load_after[0],
    }
    RATIOS["rss speed-up 1->2 workers"] = speedup
    RATIOS["rss speed-up 1->2, CPU-normalised"] = speedup_per_cpu
    RATIOS["rss outside/inside calculator"] = outside / inside
    benchmark.extra_info.update(numbers)
    print("\n" + "\n".join(f"{k:34s} {v:10.4g}" for k, v in numbers.items()))
    # the same structures and minima whatever the number of workers
    assert results[1].statuses == results[2].statuses
    assert max(abs(a.energy_per_atom_eV - b.energy_per_atom_eV)
               for a, b in zip(results[1].minima, results[2].minima)
               if a.usable) < 1e-9
    # one in-process relaxation, timed by pytest-benchmark
    benchmark.pedantic(relax_structure, args=(sw.calculator, (params, 0)), rounds=3,
                       iterations=1)
    # reported, not asserted against the 1.8 target: on a shared machine the second worker
    # may get no free core (see cpu_share_per_worker_2)
    assert speedup > 0
