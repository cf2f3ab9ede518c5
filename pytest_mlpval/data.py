"""Reference datasets: labelled structures read with explicit label keys.

Molecules and clusters (no periodic direction, no cell) are read like crystals, with
energy and force labels. A stress or virial label on a structure that is not periodic in
all three directions is rejected (:class:`DatasetError` naming the structure): it has no
volume, and a silently ignored label would shrink the test; a dataset mixing periodic
structures with stresses and molecules without is rejected with the advice to split it.

Plain library (no pytest). ASE turns the standard extxyz keys (``energy``, ``forces``,
``stress``...) into a ``SinglePointCalculator`` and leaves any other key (``dft_energy``)
in ``atoms.info``/``atoms.arrays``; :func:`read_dataset` looks in both places, for the
key it is told, and never guesses.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.potentials import sha256_file

__all__ = [
    "DatasetError",
    "DatasetSpec",
    "ReferenceSet",
    "parse_dataset_spec",
    "read_dataset",
    "frame_label",
    "stress_voigt",
]

#: label name -> default key in the file
DEFAULT_KEYS = {
    "energy": "energy",
    "forces": "forces",
    "stress": "stress",
    "virial": "virial",
    "config_type": "config_type",
}
_SPEC_KEYS = {"energy", "forces", "stress", "virial", "config_type", "index", "format"}


class DatasetError(MlpvalError, ValueError):
    """A dataset that cannot be read or lacks the labels asked for."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset is and which keys hold its labels.

    ``path`` is absolute once resolved. ``keys`` maps label names (``energy``,
    ``forces``, ``stress``, ``virial``, ``config_type``) to the key in the file.
    ``index`` is an ASE index string (``":"``, ``"0:10"``).
    """

    name: str
    path: str
    keys: tuple[tuple[str, str], ...] = ()
    index: str = ":"
    format: str | None = None

    @property
    def key_map(self) -> dict[str, str]:
        return {**DEFAULT_KEYS, **dict(self.keys)}

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "keys": self.key_map,
                "index": self.index, "format": self.format}


_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


def parse_dataset_spec(text: str, base_dir: str | os.PathLike[str] | None = None,
                       **overrides: str) -> DatasetSpec:
    """Parse ``NAME=PATH[,label=key...]``, e.g. ``test=data/test.xyz,energy=dft_energy``.

    Label options: ``energy``, ``forces``, ``stress``, ``virial``, ``config_type``
    (keys in the file), ``index`` (ASE index string, default ``:``) and ``format``.
    Keyword ``overrides`` take the same names. A relative path is resolved against
    ``base_dir`` (default: the working directory).
    """
    name, sep, rest = text.strip().partition("=")
    if not sep or not _NAME.match(name.strip()) or not rest.strip():
        raise DatasetError(
            f"{text!r}: expected NAME=PATH[,energy=KEY,forces=KEY,stress=KEY,...]"
        )
    parts = [p.strip() for p in rest.split(",")]
    if not parts[0]:
        raise DatasetError(f"{text!r}: no PATH after '{name.strip()}='")
    options: dict[str, str] = {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in _SPEC_KEYS or not value.strip():
            raise DatasetError(
                f"{text!r}: bad option {part!r}; known: {', '.join(sorted(_SPEC_KEYS))}"
            )
        options[key.strip()] = value.strip()
    options.update(overrides)
    unknown = set(options) - _SPEC_KEYS
    if unknown:
        raise DatasetError(f"{text!r}: unknown option(s) {sorted(unknown)}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    path = (base / parts[0]).resolve()
    index = options.pop("index", ":")
    fmt = options.pop("format", None)
    return DatasetSpec(name.strip(), str(path), tuple(sorted(options.items())), index, fmt)


@dataclass(frozen=True)
class ReferenceSet:
    """Labelled reference structures (read-only arrays).

    Attributes
    ----------
    name : str
    spec : DatasetSpec
    sha256 : str
        Digest of the file's bytes.
    structures : tuple of ase.Atoms
        Positions, cell, species, pbc only (no labels, no calculator). Use
        :meth:`atoms` for a copy to hand to a calculator.
    n_atoms : ndarray of int, shape (n_structures,)
    config_types : tuple of str
        ``"default"`` where the file has none.
    energy : ndarray, shape (n_structures,) in eV, or None
    forces : tuple of ndarray, each shape (n_atoms_i, 3) in eV/Å, or None
    stress : ndarray, shape (n_structures, 6) in eV/Å³ (Voigt xx yy zz yz xz xy,
        ASE sign), or None. Taken from ``virial`` (eV) as ``-virial/volume`` where
        only a virial is given.
    file_keys : tuple of (str, tuple of str)
        The per-structure (``info``) and per-atom (``arrays``) keys found in the file,
        as ``(("info", keys), ("arrays", keys))``, to name them when a label key is
        wrong; empty for sets built in memory.
    """

    name: str
    spec: DatasetSpec
    sha256: str
    structures: tuple[Any, ...]
    n_atoms: np.ndarray
    config_types: tuple[str, ...]
    energy: np.ndarray | None
    forces: tuple[np.ndarray, ...] | None
    stress: np.ndarray | None
    file_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __len__(self) -> int:
        return len(self.structures)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(k for k in ("energy", "forces", "stress")
                     if getattr(self, k) is not None)

    def atoms(self, i: int):
        return self.structures[i].copy()

    def require(self, *labels: str) -> None:
        missing = [k for k in labels if getattr(self, k, None) is None]
        if missing:
            keys = self.spec.key_map
            raise DatasetError(
                f"dataset {self.name!r} ({self.spec.path}) has no "
                + ", ".join(f"{k} labels (looked for key {keys[k]!r})" for k in missing)
                + self.keys_hint()
            )

    def keys_hint(self) -> str:
        """``"; the file has info keys: ...; arrays keys: ..."`` (empty when unknown),
        to add to a message about a label key that was not found."""
        if not self.file_keys:
            return ""
        return "; the file has " + "; ".join(
            f"{where} keys: {', '.join(keys) or 'none'}" for where, keys in self.file_keys)

    def as_dict(self) -> dict[str, Any]:
        return {**self.spec.as_dict(), "sha256": self.sha256, "n_structures": len(self),
                "n_atoms": int(self.n_atoms.sum()), "labels": list(self.labels),
                "config_types": sorted(set(self.config_types))}


def readonly_array(array: Any) -> np.ndarray:
    """A float copy of ``array`` that cannot be written to (results are immutable)."""
    array = np.array(array, dtype=float)
    array.flags.writeable = False
    return array


def frame_label(atoms, key: str, where: str):
    """Value of ``key`` in info/arrays or in an attached SinglePointCalculator."""
    store = atoms.info if where == "info" else atoms.arrays
    if key in store:
        return store[key]
    calc = atoms.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    return None


def stress_voigt(value) -> np.ndarray:
    """A stress (or virial) as its 6 Voigt components (xx, yy, zz, yz, xz, xy), from 6, 9
    or 3x3 values; :class:`DatasetError` for another shape."""
    value = np.asarray(value, dtype=float)
    if value.shape == (3, 3):
        return value[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    if value.shape == (9,):
        return stress_voigt(value.reshape(3, 3))
    if value.shape == (6,):
        return value
    raise DatasetError(f"stress/virial of shape {value.shape}: expected 6, 9 or 3x3")


def read_dataset(spec: DatasetSpec | str, base_dir: str | os.PathLike[str] | None = None
                 ) -> ReferenceSet:
    """Read a dataset with ASE. Labels absent from **every** structure are ``None``;
    labels present on some structures only are an error (a partial label set would
    silently shrink the test)."""
    import ase
    import ase.io

    if isinstance(spec, str):
        spec = parse_dataset_spec(spec, base_dir)
    path = Path(spec.path)
    if not path.is_file():
        raise DatasetError(f"dataset {spec.name!r}: file not found: {path}")
    try:
        frames: Sequence[Any] = ase.io.read(path, index=spec.index, format=spec.format)
    except Exception as exc:
        raise DatasetError(f"dataset {spec.name!r}: cannot read {path}: {exc}") from exc
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise DatasetError(f"dataset {spec.name!r}: {path} holds no structures")
    keys = spec.key_map

    def collect(label: str, where: str):
        values = [frame_label(a, keys[label], where) for a in frames]
        present = [v is not None for v in values]
        if not any(present):
            return None
        if not all(present):
            missing = [i for i, p in enumerate(present) if not p]
            vacuum = [not all(frames[i].pbc) for i in missing]
            hint = ""
            if label in ("stress", "virial") and all(vacuum):
                hint = ("; those are not periodic (molecules, clusters: no stress), so "
                        "give them as a dataset of their own (or the periodic ones with "
                        "index=...), or leave the stress out (stress=none)")
            raise DatasetError(
                f"dataset {spec.name!r}: key {keys[label]!r} ({label}) is missing on "
                f"{len(missing)} of {len(frames)} structures (first: index {missing[0]})"
                + hint)
        return values

    energies = collect("energy", "info")
    forces = collect("forces", "arrays")
    stresses, stress_label = collect("stress", "info"), "stress"
    if stresses is None:
        virials, stress_label = collect("virial", "info"), "virial"
        if virials is not None:
            _check_labels(spec, frames, "virial", virials)
            stresses = [-stress_voigt(v) / a.get_volume() for v, a in zip(virials, frames)]
    for label, values in (("energy", energies), ("forces", forces), ("stress", stresses)):
        if values is not None and not (label == "stress" and stress_label == "virial"):
            _check_labels(spec, frames, label, values)
    config = [frame_label(a, keys["config_type"], "info") for a in frames]
    n_atoms = np.array([len(a) for a in frames], dtype=int)
    n_atoms.flags.writeable = False

    force_arrays = None
    if forces is not None:
        force_arrays = tuple(readonly_array(f) for f in forces)
        for i, (f, n) in enumerate(zip(force_arrays, n_atoms)):
            if f.shape != (n, 3):
                raise DatasetError(f"dataset {spec.name!r}: forces of structure {i} "
                                   f"have shape {f.shape}, expected ({n}, 3)")
    structures = [ase.Atoms(a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)
                  for a in frames]
    return ReferenceSet(
        name=spec.name,
        spec=spec,
        sha256=sha256_file(path),
        structures=tuple(structures),
        n_atoms=n_atoms,
        config_types=tuple(str(c) if c is not None else "default" for c in config),
        energy=None if energies is None else readonly_array([float(e) for e in energies]),
        forces=force_arrays,
        stress=None if stresses is None else readonly_array([stress_voigt(s) for s in stresses]),
        file_keys=_file_keys(frames),
    )


def _where(spec: DatasetSpec, frames: Sequence[Any], i: int) -> str:
    ctype = frames[i].info.get(spec.key_map["config_type"], "default")
    selection = "" if spec.index == ":" else f" of the selection index={spec.index}"
    return (f"dataset {spec.name!r} ({spec.path}): structure {i}{selection} (config_type "
            f"{str(ctype)!r}, {len(frames[i])} atoms)")


def _check_labels(spec: DatasetSpec, frames: Sequence[Any], label: str,
                  values: Sequence[Any]) -> None:
    """Every label finite; stress and virial only on cells periodic in 3 directions."""
    key = spec.key_map[label]
    for i, (atoms, value) in enumerate(zip(frames, values)):
        try:
            array = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise DatasetError(f"{_where(spec, frames, i)}: {label} label (key {key!r}) "
                               f"is not a number: {value!r}") from None
        if not np.all(np.isfinite(array)):
            kinds = sorted({"NaN" if np.isnan(x) else "inf"
                            for x in array.ravel() if not np.isfinite(x)})
            raise DatasetError(
                f"{_where(spec, frames, i)}: {label} label (key {key!r}) is not finite "
                f"({' and '.join(kinds)} in {int(np.sum(~np.isfinite(array)))} of "
                f"{array.size} values); fix or remove the structure")
        if label in ("stress", "virial") and not all(atoms.pbc):
            raise DatasetError(
                f"{_where(spec, frames, i)}: not periodic in all three directions (pbc "
                f"{''.join('T' if p else 'F' for p in atoms.pbc)}) but has a {label} label "
                f"(key {key!r}): a stress needs a periodic cell; drop the label or the "
                "structure")


def _file_keys(frames: Sequence[Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Keys present in the file: per structure (info, and a SinglePointCalculator's
    energy/stress...) and per atom (arrays, and its forces)."""
    info: set[str] = set()
    arrays: set[str] = set()
    for atoms in frames:
        info.update(atoms.info)
        arrays.update(k for k in atoms.arrays if k not in ("numbers", "positions"))
        results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
        for key, value in results.items():
            per_atom = np.ndim(value) == 2 and len(value) == len(atoms) and key != "stress"
            (arrays if per_atom else info).add(key)
    return (("info", tuple(sorted(info))), ("arrays", tuple(sorted(arrays))))
