"""Predictions of a candidate on a reference dataset, with an optional disk cache.

Plain library (no pytest). Every prediction is checked as it is made (finite, forces of
shape (n_atoms, 3), stress of shape (6,) or (3, 3)) and every cached entry as it is read
(the dataset's shapes, all finite); a bad cache entry is discarded with a
:class:`CacheWarning` and recomputed.
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
            progress: Any = None, potential: str | None = None) -> Predictions:
    """Compute ``properties`` with ``calc`` for every structure of ``reference``.

    Raises :class:`NonFiniteError` on NaN or inf and :class:`PredictionShapeError` on
    forces that are not (n_atoms, 3) or a stress that is not (6,) or (3, 3), naming the
    structure and ``potential`` (a name for messages).
    """
    import time

    energy: list[float] = []
    forces: list[np.ndarray] = []
    stress: list[np.ndarray] = []
    seconds = 0.0
    for i in range(len(reference)):
        atoms = reference.atoms(i)
        atoms.calc = calc
        start = time.perf_counter()
        if "energy" in properties:
            energy.append(float(atoms.get_potential_energy()))
        if "forces" in properties:
            forces.append(np.array(atoms.get_forces(), dtype=float))
        if "stress" in properties:
            # the calculator's own array: Atoms.get_stress asserts a shape (a bare
            # AssertionError, read as a test failure); the reference has no constraints
            stress.append(np.array(calc.get_stress(atoms), dtype=float))
        seconds += time.perf_counter() - start
        where = (f"structure {i} ({reference.config_types[i]}, {len(atoms)} atoms) of "
                 f"dataset {reference.name!r}"
                 + (f" from potential {potential!r}" if potential else ""))
        if "forces" in properties and forces[-1].shape != (len(atoms), 3):
            raise PredictionShapeError(f"forces of shape {forces[-1].shape} for {where}: "
                                       f"expected ({len(atoms)}, 3)")
        if "stress" in properties:
            stress[-1] = _voigt(stress[-1], where)
        for label, values in (("energy", energy), ("forces", forces), ("stress", stress)):
            if label in properties and not np.all(np.isfinite(values[-1])):
                raise NonFiniteError(
                    f"{label} of {where} is not finite: "
                    f"{values[-1] if label == 'energy' else 'NaN/inf in the array'}"
                )
        if progress is not None:
            progress(i + 1, len(reference))
    return _build(reference.name, properties, energy, forces, stress, seconds)


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
                   potential: str | None = None) -> Predictions:
    """:func:`predict`, reading and writing ``cache_dir`` when the model has a content
    hash (a factory-defined model has none and is always recomputed). An entry that
    cannot be read, lacks a property, has other shapes than the dataset or holds NaN or
    inf is discarded with a :class:`CacheWarning` and recomputed."""
    if cache_dir is None or potential_sha256 is None:
        return predict(calc, reference, properties, progress, potential)
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
    result = predict(calc, reference, properties, progress, potential)
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
