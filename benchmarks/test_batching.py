"""Batched evaluation of a torch model: the plugin's path against the model's own batched
prediction, in the same run.

The mlearn Si test set (25 cells, 1,525 atoms), energy, forces and stress of every cell,
with CHGNet. The model's own side is what a user would write: the frames (``ase.Atoms``,
read beforehand) to pymatgen structures and one ``model.predict_structure(structures,
batch_size=16)``. Ours is ``predict`` + ``compute_errors`` (what the ``mlpval_errors``
fixture runs, with the disk cache off), which finds CHGNet's batch adapter
(:mod:`pytest_mlpval.batching`) and checks every result. For scale, the per-structure
ASE path (``predict(..., batched=False)``) is timed too. Rounds alternate between the
sides, each starting one round, so drifts of the machine hit all; the ratio of the
medians (ours / CHGNet's own) is printed at the end of the run and stored in the
benchmark JSON (``extra_info["batched_ratio"]``). Target: below 1.2. Torch runs on one
thread (:data:`TORCH_THREADS`), as on a shared CI box.

Measured 2026-12-06 (CHGNet 0.4.2, torch 2.13 CPU, one thread, 2 busy cores): CHGNet's
own 10.9 s, ours 11.3 s (ratio 1.03), the per-structure path 10.8 s: on a CPU thread
CHGNet gains nothing from batches; SevenNet does (5 cells: 4.7 s one by one, 2.8 s in
batches of two).

Run: ``pytest benchmarks/test_batching.py`` in an environment with chgnet (skipped
without it).
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from pathlib import Path

import pytest

from conftest import RATIOS

SILICON = Path(__file__).resolve().parent.parent / "example_suites" / "silicon"
TEST_SET = (f"test={SILICON / 'data' / 'mlearn_Si_test.xyz'},energy=dft_energy,"
            "forces=dft_forces,stress=dft_stress")
ROUNDS = 3
BATCH_SIZE = 16  # CHGNet's default, and pytest_mlpval.batching.DEFAULT_BATCH_SIZE
TORCH_THREADS = 1
TARGET = 1.2


@pytest.fixture(scope="module")
def chgnet():
    pytest.importorskip("chgnet", reason="chgnet is not installed (optional, heavy)")
    import torch
    from chgnet.model import CHGNet, CHGNetCalculator

    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its device
        calc = CHGNetCalculator(CHGNet.load(use_device="cpu", verbose=False),
                                use_device="cpu")
    yield calc
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference():
    from pytest_mlpval import read_dataset

    return read_dataset(TEST_SET)


def _own(model, frames):
    from pymatgen.io.ase import AseAtomsAdaptor

    structures = [AseAtomsAdaptor.get_structure(atoms) for atoms in frames]
    return model.predict_structure(structures, task="efs", batch_size=BATCH_SIZE)


def _ours(calc, reference, batched=True):
    from pytest_mlpval.evaluate import predict
    from pytest_mlpval.metrics import compute_errors

    return compute_errors(reference, predict(calc, reference, batched=batched,
                                             batch_size=BATCH_SIZE))


# CHGNet's graph batching warns on torch 2.13 (volumes with requires_grad)
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")
def test_batched_chgnet(benchmark, chgnet, reference):
    frames = [reference.atoms(i) for i in range(len(reference))]
    sides = {"own": lambda: _own(chgnet.model, frames),
             "ours": lambda: _ours(chgnet, reference),
             "per_structure": lambda: _ours(chgnet, reference, batched=False)}
    for run in sides.values():  # warm up (imports, torch's first calls)
        run()
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(ROUNDS):
        for name in names[r % len(names):] + names[:r % len(names)]:  # each first once
            start = time.perf_counter()
            sides[name]()
            seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    ratio = median["ours"] / median["own"]
    RATIOS[f"chgnet batched (target <{TARGET})"] = ratio
    benchmark.extra_info.update(
        batched_ratio=ratio, target=TARGET, torch_threads=TORCH_THREADS,
        own_median_s=median["own"], mlpval_median_s=median["ours"],
        per_structure_median_s=median["per_structure"],
        seconds={name: values for name, values in seconds.items()})
    benchmark.pedantic(_ours, args=(chgnet, reference), rounds=1, iterations=1)
    assert ratio > 0
