"""Predictions of a candidate on a reference dataset, with an optional disk cache.

Plain library (no pytest). Calculators that offer batches are evaluated in batches
(:mod:`pytest_mlpval.batching`), any other one structure at a time. Every prediction is
checked as it is made (finite, forces of shape (n_atoms, 3), stress of shape (6,) or
(3, 3)) and every cached entry as it is read (the dataset's shapes, all finite); a bad
cache entry is discarded with a :class:`CacheWarning` and recomputed. Given an executor (a
run's process pool or Dask cluster), a dataset is computed in chunks of contiguous
structures by the workers, with the same calls, arrays, cache entry and errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
import zipfile
from concurrent.futures import (FIRST_COMPLETED, BrokenExecutor, CancelledError,
                                Executor, Future, ProcessPoolExecutor, wait)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pytest_mlpval.batching import (DEFAULT_BATCH_SIZE, as_array, batch_adapter,
                                    batch_function, register_batch_adapter)
from pytest_mlpval.campaign import (CalculatorSource, CampaignError, calculator_source,
                                    make_executor)
from pytest_mlpval.data import ReferenceSet, readonly_array
from pytest_mlpval.errors import MlpvalError, MlpvalWarning, NonFiniteError
from pytest_mlpval.fileio import atomic_write

__all__ = ["CacheWarning", "NonFiniteError", "PredictionShapeError",
           "PredictionWorkerError", "Predictions", "predict", "predict_cached", "cache_key",
           "chunk_ranges", "CHUNKS_PER_WORKER"]

#: bump when the meaning of cached predictions changes (2: loader versions in the key,
#: entries validated on read)
CACHE_FORMAT = 2


class PredictionShapeError(MlpvalError, ValueError):
    """The calculator returned forces or a stress of the wrong shape."""


class CacheWarning(MlpvalWarning, RuntimeWarning):
    """A cached prediction was unreadable or invalid and was computed again."""


@dataclass(frozen=True)
class Predictions:
    """What a calculator predicts for every structure of a dataset.

    Attributes
    ----------
    dataset : str
        Name of the dataset.
    energy : ndarray, shape (n_structures,) in eV, or None
    forces : tuple of ndarray, each (n_atoms_i, 3) in eV/Å, or None
    stress : ndarray, shape (n_structures, 6) in eV/Å³ (ASE Voigt order), or None
    seconds : float
        Wall time spent in the calculator (0 when read from the cache).
    from_cache : bool
    """

    dataset: str
    energy: np.ndarray | None
    forces: tuple[np.ndarray, ...] | None
    stress: np.ndarray | None
    seconds: float = 0.0
    from_cache: bool = False


def _implemented(calc: Any) -> set[str] | None:
    props = getattr(calc, "implemented_properties", None)
    return None if props is None else set(props)


def properties_for(calc: Any, reference: ReferenceSet,
                   wanted: Sequence[str] = ("energy", "forces", "stress")) -> tuple[str, ...]:
    """The properties to compute: labelled in the dataset and implemented by ``calc``."""
    implemented = _implemented(calc)
    return tuple(p for p in wanted if p in reference.labels
                 and (implemented is None or p in implemented))


def predict(calc: Any, reference: ReferenceSet,
            properties: Sequence[str] = ("energy", "forces", "stress"),
            progress: Any = None, potential: str | None = None, *,
            batched: bool = True, batch_size: int | None = None,
            executor: Executor | None = None, candidate: Any = None) -> Predictions:
    """Compute ``properties`` with ``calc`` for every structure of ``reference``.

    A calculator that offers batches (:mod:`pytest_mlpval.batching`: its own
    ``calculate_batch`` or an adapter registered for its class, such as CHGNet's) is sent
    the structures in chunks of ``batch_size`` (default
    :data:`~pytest_mlpval.batching.DEFAULT_BATCH_SIZE`); any other, or any with
    ``batched=False``, is called once per structure through ASE. Both paths check every
    structure's results the same way: raises :class:`NonFiniteError` on NaN or inf and
    :class:`PredictionShapeError` on forces that are not (n_atoms, 3), a stress that is
    not (6,) or (3, 3) or a batch result that lacks a property, naming the structure and
    ``potential`` (a name for messages). ``progress(done, total)`` is called after each
    structure (after its batch; after its chunk on an executor).

    ``executor`` (a ``ProcessPoolExecutor`` or the Dask executor of
    :func:`~pytest_mlpval.campaign.make_executor`, e.g. a run's shared one) computes the
    dataset in chunks of contiguous structures (:func:`chunk_ranges`) in its workers, each
    with the worker's own calculator (:class:`~pytest_mlpval.campaign.CalculatorSource`:
    reloaded once per process from ``candidate``'s spec, the loaded
    :class:`~pytest_mlpval.potentials.Potential` whose calculator ``calc`` is, or
    unpickled). The same calls give the same arrays and the same errors (the first in
    dataset order), and ``seconds`` sums the chunks' calculator times; a worker that
    dies raises :class:`PredictionWorkerError` naming its chunk; Ctrl-C cancels the
    chunks not started. Any other executor (one running in this process or in threads),
    a dataset of one chunk, a ``candidate`` whose calculator is not ``calc``, or a
    calculator that cannot reach the workers (not loaded from a spec and not picklable)
    is computed here, as without an executor.
    """
    if executor is not None:
        parallel = _predict_parallel(calc, reference, properties, progress, potential,
                                     batched, batch_size, executor, candidate)
        if parallel is not None:
            return parallel
    batch = batch_function(calc) if batched else None
    size = 1 if batch is None else max(1, int(batch_size or DEFAULT_BATCH_SIZE))
    n = len(reference)
    done = None if progress is None else (lambda i: progress(i + 1, n))
    values, seconds = _compute(calc, batch, size, reference.atoms, range(n),
                               reference.config_types, reference.name, properties,
                               potential, done)
    return _collect(reference.name, properties, values, seconds)


def _compute(calc: Any, batch: Any, size: int, atoms_of: Callable[[int], Any],
             indices: range, config_types: Sequence[str], dataset: str,
             properties: Sequence[str], potential: str | None,
             done: Callable[[int], None] | None = None
             ) -> tuple[list[dict[str, Any]], float]:
    """The checked results of the structures ``indices`` (``config_types[j]`` is that of
    structure ``indices[j]``), in batches of ``size`` from ``indices.start``, and the
    seconds spent in the calculator; ``done(i)`` after each structure."""
    import time

    values: list[dict[str, Any]] = []
    seconds = 0.0
    for first in range(indices.start, indices.stop, size):
        group = range(first, min(first + size, indices.stop))
        structures = [atoms_of(i) for i in group]
        start = time.perf_counter()
        if batch is None:
            results = [_single(calc, structures[0], properties)]
        else:
            results = list(batch(structures, tuple(properties)))
        seconds += time.perf_counter() - start
        if len(results) != len(structures):
            raise PredictionShapeError(
                f"{len(results)} batch results for the {len(structures)} structures "
                f"{group.start}-{group.stop - 1} of dataset {dataset!r}"
                + (f" from potential {potential!r}" if potential else ""))
        for i, atoms, result in zip(group, structures, results):
            where = (f"structure {i} ({config_types[i - indices.start]}, {len(atoms)} "
                     f"atoms) of dataset {dataset!r}"
                     + (f" from potential {potential!r}" if potential else ""))
            values.append(_checked(result, properties, len(atoms), where))
            if done is not None:
                done(i)
    return values, seconds


def _collect(name: str, properties: Sequence[str], values: Sequence[Mapping[str, Any]],
             seconds: float) -> Predictions:
    energy, forces, stress = ([v[label] for v in values] if label in properties else []
                              for label in ("energy", "forces", "stress"))
    return _build(name, properties, energy, forces, stress, seconds)


def _single(calc: Any, atoms: Any, properties: Sequence[str]) -> dict[str, Any]:
    """One structure's results through ASE (the per-structure path)."""
    atoms.calc = calc
    result: dict[str, Any] = {}
    if "energy" in properties:
        result["energy"] = float(atoms.get_potential_energy())
    if "forces" in properties:
        result["forces"] = np.array(atoms.get_forces(), dtype=float)
    if "stress" in properties:
        # the calculator's own array: Atoms.get_stress asserts a shape (a bare
        # AssertionError, read as a test failure); the reference has no constraints
        result["stress"] = np.array(calc.get_stress(atoms), dtype=float)
    return result


def _checked(result: Mapping[str, Any], properties: Sequence[str], n_atoms: int,
             where: str) -> dict[str, Any]:
    """One structure's results as floats, checked: each property present, forces
    (n_atoms, 3), stress (6,) or (3, 3) made (6,), all finite."""
    values: dict[str, Any] = {}
    for label in properties:
        if label not in result:
            raise PredictionShapeError(f"no {label} in the batch result for {where}")
        values[label] = as_array(result[label])
    if "energy" in values:
        if values["energy"].size != 1:
            raise PredictionShapeError(f"energy of shape {values['energy'].shape} for "
                                       f"{where}: expected a number")
        values["energy"] = float(values["energy"].reshape(()))
    if "forces" in values and values["forces"].shape != (n_atoms, 3):
        raise PredictionShapeError(f"forces of shape {values['forces'].shape} for {where}: "
                                   f"expected ({n_atoms}, 3)")
    if "stress" in values:
        values["stress"] = _voigt(values["stress"], where)
    for label in ("energy", "forces", "stress"):
        if label in values and not np.all(np.isfinite(values[label])):
            raise NonFiniteError(
                f"{label} of {where} is not finite: "
                f"{values[label] if label == 'energy' else 'NaN/inf in the array'}"
            )
    return values


def _voigt(value: np.ndarray, where: str) -> np.ndarray:
    """A stress of shape (6,), from (6,) or (3, 3) (symmetrised, as ASE does)."""
    if value.shape == (6,):
        return value
    if value.shape == (3, 3):
        value = (value + value.T) / 2
        return value[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    raise PredictionShapeError(f"stress of shape {value.shape} for {where}: expected (6,) "
                               "or (3, 3)")


def _build(name, properties, energy, forces, stress, seconds, from_cache=False):
    return Predictions(
        dataset=name,
        energy=readonly_array(energy) if "energy" in properties else None,
        forces=tuple(readonly_array(f) for f in forces) if "forces" in properties else None,
        stress=readonly_array(stress) if "stress" in properties else None,
        seconds=seconds,
        from_cache=from_cache,
    )


def cache_key(potential_sha256: str, reference: ReferenceSet, properties: Sequence[str],
              loader_versions: Mapping[str, str] | None = None) -> str:
    """Digest of everything the predictions depend on: the cache format, the model's
    content, the versions of the libraries that load and run it (``loader_versions``,
    package -> version, e.g. ``PotentialInfo.loader_versions``), the dataset's content
    and index, and the properties."""
    payload = json.dumps({
        "format": CACHE_FORMAT,
        "potential": potential_sha256,
        "loaders": {str(k): str(v) for k, v in (loader_versions or {}).items()},
        "dataset": reference.sha256,
        "index": reference.spec.index,
        "properties": sorted(properties),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def predict_cached(calc: Any, potential_sha256: str | None, reference: ReferenceSet,
                   properties: Sequence[str], cache_dir: str | os.PathLike[str] | None,
                   progress: Any = None, *, loader_versions: Mapping[str, str] | None = None,
                   potential: str | None = None, batched: bool = True,
                   batch_size: int | None = None, executor: Executor | None = None,
                   candidate: Any = None) -> Predictions:
    """:func:`predict`, reading and writing ``cache_dir`` when the model has a content
    hash (a factory-defined model has none and is always recomputed). An entry that
    cannot be read, lacks a property, has other shapes than the dataset or holds NaN or
    inf is discarded with a :class:`CacheWarning` and recomputed. Batching and
    ``executor`` (with ``candidate``: see :func:`predict`) do not change the results, so
    they are not part of the key (:func:`cache_key`)."""
    if cache_dir is None or potential_sha256 is None:
        return predict(calc, reference, properties, progress, potential,
                       batched=batched, batch_size=batch_size, executor=executor,
                       candidate=candidate)
    key = cache_key(potential_sha256, reference, properties, loader_versions)
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        try:
            return _read_entry(path, reference, properties)
        except (OSError, KeyError, ValueError, EOFError, TypeError,
                zipfile.BadZipFile) as exc:
            # remove first: under filterwarnings=error the warning raises, and the next
            # run must not meet the same bad entry again
            path.unlink(missing_ok=True)
            warnings.warn(CacheWarning(
                f"cached predictions {path.name} for dataset {reference.name!r}"
                + (f" and potential {potential!r}" if potential else "")
                + f" discarded and recomputed: {exc}"), stacklevel=2)
    result = predict(calc, reference, properties, progress, potential, batched=batched,
                     batch_size=batch_size, executor=executor, candidate=candidate)
    arrays = {}
    if result.energy is not None:
        arrays["energy"] = result.energy
    if result.forces is not None:
        arrays["forces"] = np.concatenate(result.forces)
    if result.stress is not None:
        arrays["stress"] = result.stress
    atomic_write(path, lambda handle: np.savez(handle, **arrays))  # safe under xdist
    return result


def _read_entry(path: Path, reference: ReferenceSet, properties: Sequence[str]
                ) -> Predictions:
    """A cached entry, checked against the dataset: ValueError or KeyError if it does
    not fit it."""
    n = len(reference)
    arrays: dict[str, np.ndarray] = {}
    # np.load leaks its handle when a zip is corrupt: own the handle here
    with open(path, "rb") as handle:
        stored = np.load(handle, allow_pickle=False)
        if not isinstance(stored, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with stored:
            _check_entry(stored, reference, properties, arrays)
    forces = []
    if "forces" in properties:
        forces = np.split(arrays["forces"], np.cumsum(reference.n_atoms)[:-1])
    return _build(reference.name, properties, arrays.get("energy", []), forces,
                  arrays.get("stress", np.zeros((n, 6))), 0.0, from_cache=True)


def _check_entry(stored: Any, reference: ReferenceSet, properties: Sequence[str],
                 arrays: dict[str, np.ndarray]) -> None:
    """Fill ``arrays`` from ``stored`` (an open npz), label by label: each present, of
    the dataset's shape, numeric and finite (else KeyError or ValueError)."""
    n = len(reference)
    expected = {"energy": (n,), "forces": (int(np.sum(reference.n_atoms)), 3),
                "stress": (n, 6)}
    for label in properties:
        if label not in stored.files:
            raise ValueError(f"no {label} array in the entry")
        value = stored[label]
        if value.shape != expected[label] or value.dtype.kind not in "fiu":
            raise ValueError(f"{label} of shape {value.shape} ({value.dtype}), "
                             f"expected {expected[label]} (float)")
        value = value.astype(float)
        bad = ~np.isfinite(value)
        if np.any(bad):
            row = int(np.argwhere(bad)[0][0])
            first = (int(np.searchsorted(np.cumsum(reference.n_atoms), row, "right"))
                     if label == "forces" else row)
            raise ValueError(f"{label} is not finite ({int(bad.sum())} NaN/inf values, "
                             f"first in structure {first})")
        arrays[label] = value


# -- on an executor ------------------------------------------------------------------------

#: chunks per worker (a chunk is one task: enough for a balanced load, few enough that a
#: task's overhead stays small next to its structures)
CHUNKS_PER_WORKER = 4
#: how often (s) a waiting prediction checks that a Dask cluster still has workers, and
#: how long (s) a cluster may have none
_POLL_S = 1.0
_WORKER_TIMEOUT_S = 60.0


class PredictionWorkerError(MlpvalError, RuntimeError):
    """A worker computing a chunk of a dataset died (or its cluster lost every worker)."""


def chunk_ranges(n_atoms: Sequence[int], workers: int, batch_size: int = 1,
                 per_worker: int = CHUNKS_PER_WORKER) -> list[range]:
    """Contiguous index ranges that cover a dataset of structures with ``n_atoms`` atoms,
    each once and in order: at most ``per_worker`` per worker, of about equal numbers of
    atoms, each starting at a multiple of ``batch_size`` (so a chunk's batches are those
    of the whole dataset)."""
    n = len(n_atoms)
    size = max(1, int(batch_size))
    starts = list(range(0, n, size))  # the batches
    if not starts:
        return []
    k = max(1, min(len(starts), per_worker * max(1, int(workers))))
    weight = np.cumsum([sum(max(1, int(a)) for a in n_atoms[s:s + size]) for s in starts])
    bounds = [0]
    for j in range(1, k):  # after the batch whose running total is nearest j/k of all
        target = weight[-1] * j / k
        after = int(np.searchsorted(weight, target))  # weight[after] >= target
        if after == 0 or weight[after] - target < target - weight[after - 1]:
            after += 1
        bounds.append(min(max(after, bounds[-1] + 1), len(starts) - (k - j)))
    bounds.append(len(starts))
    return [range(starts[a], starts[b] if b < len(starts) else n)
            for a, b in zip(bounds, bounds[1:])]


@dataclass(frozen=True)
class _Chunk:
    """What a worker needs to compute one chunk: its structures and how to name them."""

    number: int
    of: int
    indices: range
    structures: tuple[Any, ...]
    config_types: tuple[str, ...]
    dataset: str
    potential: str | None
    properties: tuple[str, ...]
    batch_size: int  # 0: per structure
    adapter: tuple[str, Any] | None  # the batch adapter to register in the worker

    def describe(self) -> str:
        return (f"chunk {self.number + 1} of {self.of} (structures {self.indices.start}-"
                f"{self.indices.stop - 1}) of dataset {self.dataset!r}"
                + (f" from potential {self.potential!r}" if self.potential else ""))


def _predict_chunk(source: CalculatorSource, chunk: _Chunk
                   ) -> tuple[list[dict[str, Any]], float]:
    """A worker's task: one chunk's checked results with the worker's calculator."""
    calc = source.load()
    if chunk.adapter is not None and batch_adapter(calc) is None:
        register_batch_adapter(*chunk.adapter)
    batch = batch_function(calc) if chunk.batch_size else None
    if (batch is None) != (not chunk.batch_size):
        raise PredictionWorkerError(
            f"the worker's calculator {type(calc).__name__} "
            f"{'offers no' if batch is None else 'offers'} batches, unlike this process's: "
            f"{chunk.describe()}")
    return _compute(calc, batch, chunk.batch_size or 1,
                    lambda i: chunk.structures[i - chunk.indices.start], chunk.indices,
                    chunk.config_types, chunk.dataset, chunk.properties, chunk.potential)


def _pool_workers(executor: Executor) -> int | None:
    """Worker processes of ``executor``: a process pool's or a Dask cluster's (one at
    least); None for any other executor (in this process, threads: not for chunks)."""
    if isinstance(executor, ProcessPoolExecutor):
        return int(getattr(executor, "_max_workers", 0) or os.cpu_count() or 1)
    count = getattr(executor, "n_workers", None)
    return max(1, int(count())) if callable(count) else None


def _predict_parallel(calc: Any, reference: ReferenceSet, properties: Sequence[str],
                      progress: Any, potential: str | None, batched: bool,
                      batch_size: int | None, executor: Executor, candidate: Any
                      ) -> Predictions | None:
    """:func:`predict` on ``executor`` in chunks, or None where it cannot run there."""
    workers = _pool_workers(executor)
    if workers is None or (candidate is not None
                           and getattr(candidate, "calculator", calc) is not calc):
        return None
    batch = batch_function(calc) if batched else None
    size = 0 if batch is None else max(1, int(batch_size or DEFAULT_BATCH_SIZE))
    adapter = batch_adapter(calc) if batch is not None else None
    ranges = chunk_ranges(reference.n_atoms, workers, size or 1)
    if len(ranges) < 2:
        return None
    try:
        source = calculator_source(candidate if candidate is not None else calc)
        if adapter is not None:
            pickle.dumps(adapter)
    except (CampaignError, pickle.PicklingError, AttributeError, TypeError):
        return None  # cannot reach the workers: computed here
    chunks = [_Chunk(j, len(ranges), r, tuple(reference.atoms(i) for i in r),
                     tuple(reference.config_types[i] for i in r), reference.name,
                     potential, tuple(properties), size, adapter)
              for j, r in enumerate(ranges)]
    results = _run_chunks(executor, source, chunks, reference, progress)
    values = [value for j in range(len(chunks)) for value in results[j][0]]
    return _collect(reference.name, properties, values,
                    sum(seconds for _, seconds in results.values()))


def _run_chunks(executor: Executor, source: CalculatorSource, chunks: list[_Chunk],
                reference: ReferenceSet, progress: Any) -> dict[int, Any]:
    """Every chunk's results, by number. The first error in dataset order is raised (as
    the serial path would meet it), once every chunk before it is done; the chunks a
    broken process pool lost run again one by one in a fresh process, so that a worker
    that dies is named by its chunk. Ctrl-C (any exception) cancels what has not
    started."""
    futures: dict[Future, int] = {}
    results: dict[int, Any] = {}
    failed: dict[int, BaseException] = {}
    lost: list[int] = []
    total = len(reference)
    try:
        for chunk in chunks:
            try:
                futures[executor.submit(_predict_chunk, source, chunk)] = chunk.number
            except BrokenExecutor:  # a shared pool that a dead worker broke before
                lost.append(chunk.number)
        pending = set(futures)
        alone_since: float | None = None
        while pending and not (failed and all(j in results for j in range(min(failed)))):
            finished, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            for future in finished:
                j = futures[future]
                try:
                    results[j] = future.result()
                except BrokenExecutor:
                    lost.append(j)
                except Exception as exc:  # the calculator's error, or Dask's KilledWorker
                    failed[j] = exc
                else:
                    if progress is not None:
                        progress(sum(len(chunks[i].indices) for i in results), total)
            alone_since = _check_cluster(executor, finished, alone_since, len(pending))
    finally:
        for future in futures:
            future.cancel()
    lost = [j for j in sorted(lost) if not failed or j < min(failed)]
    if lost:
        _run_lost(source, [chunks[j] for j in lost], results, failed)
    if failed:
        j = min(failed)
        exc = failed[j]
        if isinstance(exc, CancelledError):  # the run's executor was shut down (-x)
            raise PredictionWorkerError(f"{chunks[j].describe()} was cancelled") from exc
        if type(exc).__name__ == "KilledWorker":  # Dask: its workers died, every try
            raise PredictionWorkerError(f"a worker died computing {chunks[j].describe()}: "
                                        f"{type(exc).__name__}: {exc}") from exc
        raise exc
    return results


def _check_cluster(executor: Executor, finished: Any, alone_since: float | None,
                   n_pending: int) -> float | None:
    """When the Dask cluster of ``executor`` lost its last worker (None while it has
    some); raises :class:`PredictionWorkerError` after :data:`_WORKER_TIMEOUT_S`."""
    import time

    count = getattr(executor, "n_workers", None)
    if finished or not n_pending or not callable(count) or count():
        return None
    now = time.monotonic()
    if alone_since is not None and now - alone_since > _WORKER_TIMEOUT_S:
        raise PredictionWorkerError(
            f"the Dask cluster has had no worker for {_WORKER_TIMEOUT_S:g} s; "
            f"{n_pending} chunks of predictions unfinished")
    return alone_since if alone_since is not None else now


def _run_lost(source: CalculatorSource, lost: list[_Chunk], results: dict[int, Any],
              failed: dict[int, BaseException]) -> None:
    """Run the chunks a dead worker took down one at a time in a fresh one-process pool:
    the first that kills it is named (:class:`PredictionWorkerError`)."""
    pool, _, shutdown = make_executor(1)
    try:
        for chunk in lost:
            try:
                results[chunk.number] = pool.submit(_predict_chunk, source, chunk).result()
            except BrokenExecutor as exc:
                raise PredictionWorkerError(
                    f"a worker process died computing {chunk.describe()} "
                    f"({type(exc).__name__}: {exc})") from exc
            except Exception as exc:  # the calculator's error: raised in dataset order
                failed[chunk.number] = exc
                return
    finally:
        shutdown()
