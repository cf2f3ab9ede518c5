"""Cost of the compression protocol's frame analysis (coordination + SOAP similarity to
the fixed and the pressure-adjusted references, every ``sample_every`` steps as the
protocol does by default) over the same MD without it.

Stillinger-Weber, 64 atoms of a-Si-like random start, NPT ramp 0 -> 20 GPa with ASE's
LangevinBAOAB, 2 fs: the cheapest potential, so the worst case for the relative cost.
Rounds alternate between the two runs (same seed, same trajectory) so that drifts of
the machine hit both; the ratio of the medians (with / without) is printed at the end of
the run and stored in the benchmark JSON. Target: below 1.10 (analysis under 10% of the
run). The analysis' own share, timed inside the run, is stored as well.

Run: ``pytest benchmarks/test_md.py -p no:xdist``.
"""

from __future__ import annotations

import statistics
import time

import pytest

from conftest import RATIOS

STEPS = 200
ROUNDS = 3


@pytest.fixture(scope="module")
def setup():
    from pytest_mlpval.protocols.compression import (CompressionAnalyser, CompressionSettings,
                                                     reference_crystals)
    from pytest_mlpval.crystals import relax
    from pytest_mlpval.protocols.md import random_start
    from pytest_mlpval.potentials import load_potential

    potential = load_potential("sw")
    settings = CompressionSettings()
    crystals, errors = reference_crystals(potential, settings)
    assert not errors
    start = relax(random_start("Si", 64, seed=0), potential.calculator, cell=False,
                  steps=50, fmax_eV_A=0.1).atoms
    return potential.calculator, settings, CompressionAnalyser(settings, crystals), start


def _run(setup, analyse: bool):
    from pytest_mlpval.protocols.md import MDSegment, run_md

    calc, settings, analyser, start = setup
    segment = MDSegment("compress", STEPS, 500.0, None, 0.0, 20.0)
    return run_md(start, calc, [segment], settings=settings.md, seed=0,
                  analyse=analyser if analyse else None, initial_temperature_K=500.0)


def test_analysis_overhead(benchmark, setup):
    _run(setup, True)  # warm up: imports, descriptors of the references
    plain_s, with_s, shares = [], [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        plain = _run(setup, False)
        plain_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        analysed = _run(setup, True)
        with_s.append(time.perf_counter() - start)
        shares.append(analysed.analysis_seconds / analysed.seconds)
    assert plain.completed and analysed.completed
    assert plain.final_atoms.positions.tolist() == analysed.final_atoms.positions.tolist()
    ratio = statistics.median(with_s) / statistics.median(plain_s)
    RATIOS["md_analysis_sw_64"] = ratio
    benchmark.extra_info.update(
        analysis_ratio=ratio, analysis_share=statistics.median(shares),
        steps_per_s_plain=STEPS / statistics.median(plain_s),
        steps_per_s_analysed=STEPS / statistics.median(with_s),
        frames=len(analysed.frames))
    benchmark.pedantic(_run, args=(setup, True), rounds=1, iterations=1)
    assert ratio > 0
