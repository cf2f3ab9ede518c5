"""Predictions of a candidate on a reference dataset, with an optional disk cache.

Plain library (no pytest).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data import ReferenceSet, readonly_array
from .fileio import atomic_write

__all__ = ["NonFiniteError", "Predictions", "predict", "predict_cached", "cache_key"]

#: bump when the meaning of cached predictions changes
CACHE_FORMAT = 1


class NonFiniteError(ArithmeticError):
    """The calculator returned NaN or inf."""


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
            progress: Any = None) -> Predictions:
    """Compute ``properties`` with ``calc`` for every structure of ``reference``.

    Raises :class:`NonFiniteError` naming the structure on NaN or inf.
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
            stress.append(np.array(atoms.get_stress(voigt=True), dtype=float))
        seconds += time.perf_counter() - start
        for label, values in (("energy", energy), ("forces", forces), ("stress", stress)):
            if label in properties and not np.all(np.isfinite(values[-1])):
                raise NonFiniteError(
                    f"{label} of structure {i} ({reference.config_types[i]}, "
                    f"{len(atoms)} atoms) of dataset {reference.name!r} is not finite: "
                    f"{values[-1] if label == 'energy' else 'NaN/inf in the array'}"
                )
        if progress is not None:
            progress(i + 1, len(reference))
    return _build(reference.name, properties, energy, forces, stress, seconds)


def _build(name, properties, energy, forces, stress, seconds, from_cache=False):
    return Predictions(
        dataset=name,
        energy=readonly_array(energy) if "energy" in properties else None,
        forces=tuple(readonly_array(f) for f in forces) if "forces" in properties else None,
        stress=readonly_array(stress) if "stress" in properties else None,
        seconds=seconds,
        from_cache=from_cache,
    )


def cache_key(potential_sha256: str, reference: ReferenceSet,
              properties: Sequence[str]) -> str:
    """Digest of everything the predictions depend on."""
    payload = json.dumps({
        "format": CACHE_FORMAT,
        "potential": potential_sha256,
        "dataset": reference.sha256,
        "index": reference.spec.index,
        "properties": sorted(properties),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def predict_cached(calc: Any, potential_sha256: str | None, reference: ReferenceSet,
                   properties: Sequence[str], cache_dir: str | os.PathLike[str] | None,
                   progress: Any = None) -> Predictions:
    """:func:`predict`, reading and writing ``cache_dir`` when the model has a content
    hash (a factory-defined model has none and is always recomputed)."""
    if cache_dir is None or potential_sha256 is None:
        return predict(calc, reference, properties, progress)
    path = Path(cache_dir) / f"{cache_key(potential_sha256, reference, properties)}.npz"
    if path.is_file():
        try:
            # np.load leaks its handle when a zip is corrupt: own the handle here
            with open(path, "rb") as handle, np.load(handle) as stored:
                n = len(reference)
                forces = []
                if "forces" in properties:
                    flat, splits = stored["forces"], np.cumsum(reference.n_atoms)[:-1]
                    forces = np.split(flat, splits)
                return _build(reference.name, properties,
                              stored["energy"] if "energy" in properties else [],
                              forces,
                              stored["stress"] if "stress" in properties else np.zeros((n, 6)),
                              0.0, from_cache=True)
        except (OSError, KeyError, ValueError, EOFError, TypeError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # unreadable entry: recompute
    result = predict(calc, reference, properties, progress)
    arrays = {}
    if result.energy is not None:
        arrays["energy"] = result.energy
    if result.forces is not None:
        arrays["forces"] = np.concatenate(result.forces)
    if result.stress is not None:
        arrays["stress"] = result.stress
    atomic_write(path, lambda handle: np.savez(handle, **arrays))  # safe under xdist
    return result
