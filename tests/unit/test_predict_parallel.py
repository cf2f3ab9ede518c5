"""Predictions of a dataset in chunks on an executor (evaluate.predict with ``executor=``):
the same arrays as the serial path, per structure and in batches, on a process pool and
on a Dask cluster; the same cache entry; the same first error; a worker that dies named
by its chunk; Ctrl-C cancels what has not started; chunks cover every structure once."""

from __future__ import annotations

import re
import time
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from hypothesis import given
from hypothesis import strategies as st

from pytest_mlpval.batching import BATCH_ADAPTERS, class_path
from pytest_mlpval.campaign import make_executor
from pytest_mlpval.data import read_dataset
from pytest_mlpval.evaluate import (
    CHUNKS_PER_WORKER,
    NonFiniteError,
    PredictionWorkerError,
    chunk_ranges,
    predict,
    predict_cached,
)
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.testing import make_reference_file
from unit.parallel_calculators import (AdaptedSW, BatchedSW, DiesAt24, NanAt24,
                                      adapted_batch, sw_results)

CUSTOM = "energy=dft_energy,forces=dft_forces,stress=dft_stress"
ALL = ("energy", "forces", "stress")
HASH = "e" * 64
BAD = (5, 10)  # the 24-atom structures of the dataset, where NanAt24 fails


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Twelve cells, 8 atoms each but structures 5 and 10 (24 atoms)."""
    sizes = tuple((3, 1, 1) if i in BAD else (1, 1, 1) for i in range(12))
    path = make_reference_file(tmp_path_factory.mktemp("par") / "ref.xyz", n_structures=12,
                               sizes=sizes)
    return read_dataset(f"ref={path},{CUSTOM}")


@pytest.fixture(scope="module")
def pool():
    executor, _, shutdown = make_executor(2)
    yield executor
    shutdown()


def same(a, b):
    """Bit-identical predictions."""
    assert a.dataset == b.dataset
    for label in ("energy", "stress"):
        x, y = getattr(a, label), getattr(b, label)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y)
    assert (a.forces is None) == (b.forces is None)
    if a.forces is not None:
        assert len(a.forces) == len(b.forces)
        assert all(np.array_equal(x, y) for x, y in zip(a.forces, b.forces))


class Recording(Executor):
    """Another executor's tasks, each future kept (and its number of workers told)."""

    def __init__(self, inner, workers):
        self.inner, self.workers, self.futures = inner, workers, []

    def n_workers(self):
        return self.workers

    def submit(self, fn, /, *args, **kwargs):
        future = self.inner.submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future


# -- the same results -----------------------------------------------------------------------

def test_a_process_pool_gives_the_serial_arrays_from_its_workers(reference, pool):
    candidate = load_potential("sw")
    calc = candidate.calculator
    serial = predict(load_potential("sw").calculator, reference, ALL)
    seen = []
    parallel = predict(calc, reference, ALL, progress=lambda d, n: seen.append((d, n)),
                       executor=pool, candidate=candidate)
    same(serial, parallel)
    assert calc.atoms is None  # this process's calculator computed nothing
    assert parallel.seconds > 0 and not parallel.from_cache
    assert seen[-1] == (12, 12) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert 2 <= len(seen) <= 2 * CHUNKS_PER_WORKER  # one call a chunk
    # a bare calculator (no candidate) is pickled to the workers
    same(serial, predict(load_potential("sw").calculator, reference, ALL, executor=pool))


@pytest.mark.parametrize("kind", [BatchedSW, AdaptedSW])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_batches_are_those_of_the_serial_path(reference, pool, monkeypatch, kind,
                                              batch_size):
    # registered here, not in the workers: the adapter travels with the chunks
    monkeypatch.setitem(BATCH_ADAPTERS, class_path(AdaptedSW), adapted_batch)
    calc = kind()
    serial = predict(calc, reference, ALL, batch_size=batch_size)
    seen = []
    same(serial, predict(calc, reference, ALL, batch_size=batch_size, executor=pool,
                         progress=lambda done, total: seen.append(done)))
    assert len(seen) == len(chunk_ranges(reference.n_atoms, 2, batch_size))  # chunks
    # the marks tell batches apart: other batches would give other energies
    other = predict(calc, reference, ALL, batch_size=batch_size + 1)
    assert not np.array_equal(serial.energy, other.energy)


def test_the_cache_entry_and_key_are_the_serial_ones(reference, pool, tmp_path):
    candidate = load_potential("sw")
    serial = predict_cached(candidate.calculator, HASH, reference, ALL, tmp_path / "serial")
    parallel = predict_cached(candidate.calculator, HASH, reference, ALL,
                              tmp_path / "parallel", executor=pool, candidate=candidate)
    same(serial, parallel)
    names = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "parallel").iterdir())
    assert (tmp_path / "serial" / names[0]).read_bytes() == \
        (tmp_path / "parallel" / names[0]).read_bytes()
    again = predict_cached(candidate.calculator, HASH, reference, ALL, tmp_path / "serial",
                           executor=pool, candidate=candidate)
    assert again.from_cache
    same(serial, again)


def test_executors_that_cannot_take_chunks_leave_the_work_here(reference, pool):
    serial = predict(load_potential("sw").calculator, reference, ALL)
    candidate = load_potential("sw")
    with ThreadPoolExecutor(2) as threads:  # one calculator shared by threads: no
        same(serial, predict(candidate.calculator, reference, ALL, executor=threads,
                             candidate=candidate))
    assert candidate.calculator.atoms is not None  # computed in this process
    local, _, _ = make_executor(0)
    same(serial, predict(load_potential("sw").calculator, reference, ALL, executor=local))

    sw = load_potential("sw").calculator

    class Unpicklable(Calculator):  # a class local to a function cannot be pickled
        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results = sw_results(self.atoms)

    calc = Unpicklable()
    same(serial, predict(calc, reference, ALL, executor=pool))
    assert calc.atoms is not None


@pytest.mark.slow
def test_a_dask_cluster_gives_the_serial_arrays(reference):
    from distributed import LocalCluster

    calc = BatchedSW()
    serial = predict(calc, reference, ALL, batch_size=2)
    with LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        executor, kind, shutdown = make_executor(scheduler=cluster.scheduler_address)
        try:
            assert kind == "dask"
            seen = []
            parallel = predict(calc, reference, ALL, batch_size=2, executor=executor,
                               progress=lambda done, total: seen.append(done))
        finally:
            shutdown()
    same(serial, parallel)
    assert seen[-1] == 12 and len(seen) == 6  # one call a chunk (of one batch each)


# -- errors ---------------------------------------------------------------------------------

def test_the_first_non_finite_structure_fails_as_in_the_serial_path(reference, pool):
    calc = NanAt24()
    with pytest.raises(NonFiniteError) as serial:
        predict(calc, reference, ALL, potential="nan24")
    calc = NanAt24()
    with pytest.raises(NonFiniteError) as parallel:
        predict(calc, reference, ALL, potential="nan24", executor=pool)
    assert str(parallel.value) == str(serial.value)
    assert f"structure {BAD[0]} (" in str(serial.value)
    assert calc.atoms is None  # computed in the workers


def test_a_worker_that_dies_is_named_by_its_chunk(reference):
    executor, _, shutdown = make_executor(1)  # its own pool: a death breaks it
    start = time.perf_counter()
    try:
        with pytest.raises(PredictionWorkerError,
                           match=r"a worker process died computing chunk (\d+) of 4 "
                                 r"\(structures (\d+)-(\d+)\) of dataset 'ref' from "
                                 r"potential 'dies'") as info:
            predict(DiesAt24(), reference, ALL, potential="dies", executor=executor)
    finally:
        shutdown()
    assert time.perf_counter() - start < 60
    # the chunks run again one by one in a fresh process: the first that dies is named
    first, last = map(int, re.search(r"structures (\d+)-(\d+)", str(info.value)).groups())
    assert first <= BAD[0] <= last


def test_an_interrupt_cancels_the_chunks_not_started(reference, pool):
    candidate = load_potential("sw")
    recording = Recording(pool, 2)

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict(candidate.calculator, reference, ALL, progress=interrupt,
                executor=recording, candidate=candidate)
    assert len(recording.futures) == 2 * CHUNKS_PER_WORKER
    assert any(future.cancelled() for future in recording.futures)
    assert all(future.done() or future.running() for future in recording.futures)


# -- chunks ---------------------------------------------------------------------------------

@given(n_atoms=st.lists(st.integers(0, 200), max_size=60), workers=st.integers(1, 9),
       batch=st.integers(1, 20), per_worker=st.integers(1, 6))
def test_chunks_cover_every_structure_once_on_batch_bounds(n_atoms, workers, batch,
                                                           per_worker):
    chunks = chunk_ranges(n_atoms, workers, batch, per_worker)
    assert [i for chunk in chunks for i in chunk] == list(range(len(n_atoms)))
    assert all(len(chunk) > 0 and chunk.start % batch == 0 for chunk in chunks)
    n_batches = -(-len(n_atoms) // batch)
    assert len(chunks) == min(n_batches, workers * per_worker)


def test_chunks_hold_about_equal_numbers_of_atoms():
    sizes = [8] * 30 + [64] * 10
    chunks = chunk_ranges(sizes, workers=2)
    weights = [sum(sizes[i] for i in chunk) for chunk in chunks]
    assert len(chunks) == 8
    assert all(abs(w - sum(sizes) / 8) <= 64 for w in weights), weights
