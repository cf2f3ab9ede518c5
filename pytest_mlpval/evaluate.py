"""Predictions of a candidate on a reference dataset, with an optional disk cache.

Plain library (no pytest). Calculators that offer batches are evaluated in batches
(:mod:`pytest_mlpval.batching`), any other one structure at a time. Every prediction is
checked as it is made (finite, forces of shape (n_atoms, 3), stress of shape (6,) or
(3, 3)) and every cached entry as it is read (the dataset's shapes, all finite); a bad
cache entry is discarded with a :class:`CacheWarning` and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pytest_mlpval.batching import DEFAULT_BATCH_SIZE, as_array, batch_function
from pytest_mlpval.data import ReferenceSet, readonly_array
from pytest_mlpval.errors import MlpvalError, MlpvalWarning, NonFiniteError
from pytest_mlpval.fileio import atomic_write

__all__ = ["CacheWarning", "NonFiniteError", "PredictionShapeError", "Predictions",
           "predict", "predict_cached", "cache_key"]

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
            batched: bool = True, batch_size: int | None = None) -> Predictions:
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
    structure (after its batch).
    """
    import time

    batch = batch_function(calc) if batched else None
    size = 1 if batch is None else max(1, int(batch_size or DEFAULT_BATCH_SIZE))
    energy: list[float] = []
    forces: list[np.ndarray] = []
    stress: list[np.ndarray] = []
    seconds = 0.0
    n = len(reference)
    for first in range(0, n, size):
        indices = range(first, min(first + size, n))
        structures = [reference.atoms(i) for i in indices]
        start = time.perf_counter()
        if batch is None:
            results = [_single(calc, structures[0], properties)]
        else:
            results = list(batch(structures, tuple(properties)))
        seconds += time.perf_counter() - start
        if len(results) != len(structures):
            raise PredictionShapeError(
                f"{len(results)} batch results for the {len(structures)} structures "
                f"{indices.start}-{indices.stop - 1} of dataset {reference.name!r}"
                + (f" from potential {potential!r}" if potential else ""))
        for i, atoms, result in zip(indices, structures, results):
            where = (f"structure {i} ({reference.config_types[i]}, {len(atoms)} atoms) "
                     f"of dataset {reference.name!r}"
                     + (f" from potential {potential!r}" if potential else ""))
            values = _checked(result, properties, len(atoms), where)
            for label, store in (("energy", energy), ("forces", forces),
                                 ("stress", stress)):
                if label in properties:
                    store.append(values[label])
            if progress is not None:
                progress(i + 1, n)
    return _build(reference.name, properties, energy, forces, stress, seconds)


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
                   batch_size: int | None = None) -> Predictions:
    """:func:`predict`, reading and writing ``cache_dir`` when the model has a content
    hash (a factory-defined model has none and is always recomputed). An entry that
    cannot be read, lacks a property, has other shapes than the dataset or holds NaN or
    inf is discarded with a :class:`CacheWarning` and recomputed. Batching does not
    change the results, so it is not part of the key (:func:`cache_key`)."""
    if cache_dir is None or potential_sha256 is None:
        return predict(calc, reference, properties, progress, potential,
                       batched=batched, batch_size=batch_size)
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
                     batch_size=batch_size)
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
