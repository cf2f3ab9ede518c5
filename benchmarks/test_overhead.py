"""Overhead of pytest-mlpval's prediction and error path over the bare ASE calculator.

Both sides do the same work on the mlearn Si test set (25 cells, 1,525 atoms): energy,
forces and stress of every structure. The bare side is a plain loop over ``ase.Atoms``;
ours is ``predict`` + ``compute_errors`` (what the ``mlpval_errors`` fixture runs, with the
disk cache off). Rounds alternate between the two so drifts of the machine hit both; the
ratio of the medians is printed at the end of the run and stored in the benchmark JSON
(``extra_info["overhead_ratio"]``). Target: below 1.10.

Run: ``pytest benchmarks`` (add ``--benchmark-json=PATH`` to keep the numbers).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from conftest import RATIOS

SILICON = Path(__file__).resolve().parent.parent / "example_suites" / "silicon"
TEST_SET = (f"test={SILICON / 'data' / 'mlearn_Si_test.xyz'},energy=dft_energy,"
            "forces=dft_forces,stress=dft_stress")
ROUNDS = 7


def _candidates():
    specs = ["sw"]
    try:
        import quippy  # noqa: F401

        specs.append(f"gap={SILICON / 'potential' / 'gap_si_mlearn.xml'}")
    except ImportError:
        pass
    return specs


@pytest.fixture(scope="module")
def reference():
    from pytest_mlpval import read_dataset

    return read_dataset(TEST_SET)


def _bare(calc, frames):
    out = []
    for atoms in frames:
        atoms.calc = calc
        out.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    return out


def _ours(calc, reference):
    from pytest_mlpval.evaluate import predict
    from pytest_mlpval.metrics import compute_errors

    return compute_errors(reference, predict(calc, reference))


@pytest.mark.parametrize("spec", _candidates(), ids=lambda s: s.split("=")[0])
def test_prediction_overhead(benchmark, reference, spec):
    from pytest_mlpval import load_potential

    calc = load_potential(spec).calculator
    frames = [reference.atoms(i) for i in range(len(reference))]
    _bare(calc, frames)  # warm up both paths (neighbour lists, imports)
    _ours(calc, reference)
    bare_s, ours_s = [], []
    for _ in range(ROUNDS):
        frames = [reference.atoms(i) for i in range(len(reference))]
        start = time.perf_counter()
        _bare(calc, frames)
        bare_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        _ours(calc, reference)
        ours_s.append(time.perf_counter() - start)
    ratio = statistics.median(ours_s) / statistics.median(bare_s)
    name = spec.split("=")[0]
    RATIOS[name] = ratio
    benchmark.extra_info.update(overhead_ratio=ratio, bare_median_s=statistics.median(bare_s),
                                mlpval_median_s=statistics.median(ours_s))
    benchmark.pedantic(_ours, args=(calc, reference), rounds=3, iterations=1)
    assert ratio > 0
