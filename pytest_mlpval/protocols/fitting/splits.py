"""Labelled datasets and their k-fold splits for cross-validation.

Plain library (no pytest).

Split methods (all seeded: the same data, k, method and seed give the same folds):

``random``
    A seeded permutation cut into k folds of near-equal size.
``stratified``
    Every config_type is shuffled and dealt round-robin over the folds, so that each
    fold's held-out set holds about 1/k of every type. A type with fewer members than k
    cannot reach every fold: it is held out in as many folds as it has members, and a note
    says so (a type with a single member is absent from that fold's training set: its test
    is an extrapolation).
``grouped``
    Leave one config_type out: one fold per type (k is the number of types), so every
    model is tested on a kind of structure it has never seen.
``cluster``
    k-means (``scipy.cluster.vq.kmeans2``, k-means++ start, seeded) on the
    structure-averaged SOAP vectors (:func:`~pytest_mlpval.descriptors.structure_descriptors`):
    folds are clusters of similar structures, the tutorial's Fig. 5a (Morrow, Gardner and
    Deringer, J. Chem. Phys. 158, 121501 (2023)). Fold sizes follow the clusters.

Comparing the errors of a random split with those of a grouped or cluster split shows how
much a random split flatters a model: a random fold's test structures have close relatives
in its training set.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from pytest_mlpval.data import DatasetError, DatasetSpec, ReferenceSet, read_dataset, \
    readonly_array
from pytest_mlpval.descriptors import SI_SOAP, SoapSettings, structure_descriptors
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.potentials import sha256_file
from pytest_mlpval.protocols.base import Settings

__all__ = ["LabelledData", "labelled_data", "subset", "extxyz_text", "SplitSettings",
           "CVSplit", "make_split", "SPLIT_METHODS"]

SPLIT_METHODS = ("random", "stratified", "grouped", "cluster")


# -- labelled data ---------------------------------------------------------------------

@dataclass(frozen=True)
class LabelledData:
    """A labelled dataset ready to be split and fitted.

    Attributes
    ----------
    reference : ReferenceSet
        Labels as arrays (energy in eV, forces in eV/Å, stress in eV/Å³).
    frames : tuple of ase.Atoms
        The same structures with their labels in ``info``/``arrays`` under the dataset's
        keys (``reference.spec.key_map``) and every other key of the source kept; these
        are what a fitter gets.
    sha256 : str
        Digest of the extxyz text of ``frames``: the content the fits depend on.
    """

    reference: Any
    frames: tuple[Any, ...] = field(repr=False)
    sha256: str

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def name(self) -> str:
        return self.reference.name

    def training_frames(self, indices: Sequence[int]) -> list[Any]:
        return [self.frames[int(i)].copy() for i in indices]


def extxyz_text(frames: Sequence[Any]) -> str:
    """``frames`` (ASE Atoms with their info and arrays) as the text of an extxyz file."""
    import ase.io

    buffer = io.StringIO()
    ase.io.write(buffer, list(frames), format="extxyz")
    return buffer.getvalue()


def _with_labels(frame: Any, reference: Any, i: int) -> Any:
    """A copy of ``frame`` (no calculator) with the labels of structure ``i`` under the
    dataset's keys."""
    keys = reference.spec.key_map
    atoms = frame.copy()
    atoms.calc = None
    if reference.energy is not None:
        atoms.info[keys["energy"]] = float(reference.energy[i])
    if reference.forces is not None:
        atoms.arrays[keys["forces"]] = np.array(reference.forces[i], dtype=float)
    if reference.stress is not None:
        atoms.info[keys["stress"]] = np.array(reference.stress[i], dtype=float)
    atoms.info[keys["config_type"]] = reference.config_types[i]
    return atoms


def _originals(reference: Any) -> list[Any] | None:
    """The frames of the file a ReferenceSet was read from (all keys), if unchanged."""
    import ase.io

    path = Path(reference.spec.path)
    try:
        if not path.is_file() or sha256_file(path) != reference.sha256:
            return None
        frames = ase.io.read(path, index=reference.spec.index, format=reference.spec.format)
    except Exception:  # not a file ASE reads again: rebuild the frames from the arrays
        return None
    frames = frames if isinstance(frames, list) else [frames]
    if len(frames) != len(reference) or any(
            len(a) != n for a, n in zip(frames, reference.n_atoms)):
        return None
    return frames


def labelled_data(data: Any, keys: Mapping[str, str] | None = None,
                  name: str = "data") -> LabelledData:
    """A :class:`LabelledData` from a :class:`~pytest_mlpval.data.ReferenceSet`, a dataset
    spec string (``NAME=PATH,energy=KEY,...``) or a sequence of ASE Atoms whose labels
    are under ``keys`` (label name -> key; default ``energy``, ``forces``, ``stress``,
    ``config_type``, as :func:`~pytest_mlpval.data.read_dataset`), never guessed.

    Raises :class:`~pytest_mlpval.data.DatasetError` for data without energy or force
    labels, or with labels on some structures only.
    """
    if isinstance(data, LabelledData):
        return data
    if isinstance(data, (str, DatasetSpec)):
        data = read_dataset(data)
    if isinstance(data, ReferenceSet):
        reference = data
        originals = _originals(reference) or list(reference.structures)
    else:
        frames = [data] if hasattr(data, "get_positions") else list(data)
        if not frames or not all(hasattr(a, "get_positions") for a in frames):
            raise DatasetError(f"expected a ReferenceSet, a dataset spec or ASE Atoms, got "
                               f"{type(data).__name__} "
                               + ("(empty)" if not frames else ""))
        reference = _reference_from_frames(frames, keys or {}, name)
        originals = frames
    if reference.energy is None and reference.forces is None:
        raise DatasetError(f"dataset {reference.name!r} has neither energy nor force labels "
                           f"(looked for keys {reference.spec.key_map['energy']!r} and "
                           f"{reference.spec.key_map['forces']!r}): nothing to fit or test")
    labelled = tuple(_with_labels(a, reference, i) for i, a in enumerate(originals))
    digest = hashlib.sha256(extxyz_text(labelled).encode()).hexdigest()
    return LabelledData(reference, labelled, digest)


def _reference_from_frames(frames: Sequence[Any], keys: Mapping[str, str], name: str):
    """Read labelled in-memory frames through :func:`read_dataset` (same rules, same
    errors) via an extxyz text in a temporary file."""
    unknown = set(keys) - {"energy", "forces", "stress", "virial", "config_type"}
    if unknown:
        raise ValueError(f"unknown label name(s) {sorted(unknown)} in keys; known: energy, "
                         "forces, stress, virial, config_type")
    frames = [_calc_to_keys(a) for a in frames]
    with tempfile.TemporaryDirectory(prefix="mlpval-data-") as tmp:
        path = Path(tmp) / "data.xyz"
        path.write_text(extxyz_text(frames))
        spec = DatasetSpec(name, str(path), tuple(sorted(keys.items())))
        reference = read_dataset(spec)
    return replace(reference, spec=replace(reference.spec, path=f"<memory:{name}>"))


def _calc_to_keys(atoms: Any) -> Any:
    """A copy whose SinglePointCalculator results (ASE moves ``energy``, ``forces``,
    ``stress`` of an extxyz there) are back in info/arrays under their own names."""
    copy = atoms.copy()
    results = getattr(atoms.calc, "results", None) or {}
    for key, value in results.items():
        if key in ("forces",):
            copy.arrays.setdefault(key, np.array(value))
        elif key in ("energy", "stress", "virial", "free_energy"):
            copy.info.setdefault(key, value)
    return copy


def subset(reference: Any, indices: Sequence[int], name: str | None = None) -> Any:
    """The structures ``indices`` of a ReferenceSet, as a ReferenceSet (labels sliced)."""
    idx = [int(i) for i in indices]
    n_atoms = np.array(reference.n_atoms)[idx] if idx else np.zeros(0, dtype=int)
    n_atoms.flags.writeable = False
    digest = hashlib.sha256(f"{reference.sha256}:{idx}".encode()).hexdigest()
    return replace(
        reference, name=name or reference.name, sha256=digest,
        structures=tuple(reference.structures[i] for i in idx), n_atoms=n_atoms,
        config_types=tuple(reference.config_types[i] for i in idx),
        energy=None if reference.energy is None else readonly_array(reference.energy[idx]),
        forces=None if reference.forces is None
        else tuple(reference.forces[i] for i in idx),
        stress=None if reference.stress is None else readonly_array(reference.stress[idx]))

# -- splits ----------------------------------------------------------------------------

def _whole(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


@dataclass(frozen=True)
class SplitSettings(Settings):
    """How :func:`make_split` splits data into folds (each field changes the folds).

    Attributes
    ----------
    k : int or None
        Number of folds (>= 2, at most the number of structures). ``grouped`` takes one
        fold per config_type: leave ``k`` None or give that number.
    method : str
        ``"random"``, ``"stratified"``, ``"grouped"`` or ``"cluster"`` (module docstring).
    seed : int
    soap : SoapSettings or None
        Descriptor of the ``cluster`` method (None: ``SI_SOAP``).

    A bad method, seed or k is a :class:`~pytest_mlpval.errors.SettingsError` (a
    ValueError).
    """

    VERSION: ClassVar[int] = 1

    k: int | None = 5
    method: str = "random"
    seed: int = 0
    soap: SoapSettings | None = None

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise SettingsError(f"unknown split method {self.method!r}; known: "
                                f"{', '.join(SPLIT_METHODS)}")
        if not _whole(self.seed):
            raise SettingsError(f"seed must be an integer, got {self.seed!r}")
        if self.k is not None and (not _whole(self.k) or self.k < 2):
            raise SettingsError(f"k must be an integer >= 2, got {self.k!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if self.k is not None:
            object.__setattr__(self, "k", int(self.k))


@dataclass(frozen=True)
class CVSplit:
    """The k folds of a cross-validation split.

    Attributes
    ----------
    method : str
        One of :data:`SPLIT_METHODS`.
    k : int
        Number of folds.
    seed : int
    n_structures : int
    test_folds : tuple of tuple of int
        Held-out structure indices of each fold (sorted); every structure is in exactly
        one fold.
    labels : tuple of str
        A name per fold (``"fold 0"``, the held-out config_type, ``"cluster 2"``).
    notes : tuple of str
        What the split could not do as asked (a config_type too small for k folds).
    dataset_sha256 : str
        Content digest of the data split.
    digest : str
        Digest of method, k, seed, data and folds.
    """

    method: str
    k: int
    seed: int
    n_structures: int
    test_folds: tuple[tuple[int, ...], ...]
    labels: tuple[str, ...]
    notes: tuple[str, ...] = ()
    dataset_sha256: str = ""
    digest: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        text = json.dumps([self.method, self.k, self.seed, self.dataset_sha256,
                           [list(f) for f in self.test_folds]])
        object.__setattr__(self, "digest", hashlib.sha256(text.encode()).hexdigest())

    def __len__(self) -> int:
        return len(self.test_folds)

    def test_indices(self, fold: int) -> np.ndarray:
        return np.array(self.test_folds[fold], dtype=int)

    def train_indices(self, fold: int) -> np.ndarray:
        held = set(self.test_folds[fold])
        return np.array([i for i in range(self.n_structures) if i not in held], dtype=int)

    def fold_sizes(self) -> list[int]:
        return [len(f) for f in self.test_folds]

    def describe(self) -> str:
        how = {"random": "random (seeded permutation)",
               "stratified": "stratified by config_type",
               "grouped": "grouped: leave one config_type out",
               "cluster": "clusters of similar structures (k-means on structure-averaged "
                          "SOAP)"}[self.method]
        return (f"{self.k}-fold split, {how}, seed {self.seed}, {self.n_structures} "
                f"structures, fold sizes {self.fold_sizes()}")

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "k": self.k, "seed": self.seed,
                "n_structures": self.n_structures,
                "test_folds": [list(f) for f in self.test_folds],
                "labels": list(self.labels), "notes": list(self.notes),
                "dataset_sha256": self.dataset_sha256, "digest": self.digest}


def make_split(data: Any, settings: SplitSettings | None = None, *,
               keys: Mapping[str, str] | None = None) -> CVSplit:
    """Split labelled ``data`` (see :func:`labelled_data`; labels of ASE Atoms under
    ``keys``) into folds as ``settings`` say (default :class:`SplitSettings`: 5 random
    folds, seed 0).

    Raises
    ------
    ValueError
        k larger than the dataset, a grouped split of data with a single config_type or
        a k other than its number of config_types, or fewer distinct structures than
        clusters (a bad method, k or seed is a SettingsError when the settings are made).
    """
    settings = SplitSettings() if settings is None else settings
    k, method, seed = settings.k, settings.method, settings.seed
    data = labelled_data(data, keys)
    n = len(data)
    types = list(data.reference.config_types)
    names = sorted(set(types))
    if method == "grouped":
        if len(names) < 2:
            raise ValueError(f"a grouped split needs at least 2 config_types; dataset "
                             f"{data.name!r} has only {names}")
        if k is not None and k != len(names):
            raise ValueError(f"a grouped split has one fold per config_type: k must be "
                             f"{len(names)} ({', '.join(names)}) or None, got {k}")
        folds = [[i for i, t in enumerate(types) if t == name] for name in names]
        return CVSplit(method, len(names), int(seed), n, _frozen(folds),
                       tuple(names), (), data.sha256)
    if k is None:
        raise SettingsError(f"k must be an integer >= 2, got {k!r}")
    if k > n:
        raise ValueError(f"k={k} folds is more than the {n} structures of dataset "
                         f"{data.name!r}: every fold needs at least one structure")
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    if method == "random":
        folds = [list(f) for f in np.array_split(rng.permutation(n), k)]
        labels = tuple(f"fold {i}" for i in range(k))
    elif method == "stratified":
        folds = [[] for _ in range(k)]
        offset = 0
        for name in names:
            members = [i for i, t in enumerate(types) if t == name]
            for j, index in enumerate(rng.permutation(members)):
                folds[(offset + j) % k].append(int(index))
            offset += len(members)
            if len(members) < k:
                notes.append(
                    f"config_type {name!r} has {len(members)} structure(s), fewer than k={k}:"
                    f" it is held out in {len(members)} of the {k} folds only"
                    + (" and is absent from that fold's training set" if len(members) == 1
                       else ""))
        labels = tuple(f"fold {i}" for i in range(k))
    else:
        folds, labels = _cluster_folds(data, k, rng, settings.soap)
    if any(not f for f in folds):
        raise ValueError(f"the {method} split of {n} structures into {k} folds left a fold "
                         "empty; use fewer folds")
    return CVSplit(method, int(k), int(seed), n, _frozen(folds), labels, tuple(notes),
                   data.sha256)


def _frozen(folds: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(sorted(int(i) for i in f)) for f in folds)


def _cluster_folds(data: LabelledData, k: int, rng: np.random.Generator, soap: Any
                   ) -> tuple[list[list[int]], tuple[str, ...]]:
    from scipy.cluster.vq import ClusterError, kmeans2

    vectors = structure_descriptors(list(data.reference.structures), soap or SI_SOAP)
    distinct = len(np.unique(np.round(vectors, 10), axis=0))
    if distinct < k:
        raise ValueError(f"cannot form {k} clusters: dataset {data.name!r} has only "
                         f"{distinct} distinct structure-averaged SOAP vectors")
    for _attempt in range(20):  # an empty cluster: start again from other seeds
        try:
            _, assignment = kmeans2(vectors, k, minit="++", missing="raise",
                                    seed=np.random.default_rng(rng.integers(2**32)))
        except ClusterError:
            continue
        if len(set(assignment.tolist())) == k:
            break
    else:
        raise ValueError(f"k-means found no {k} non-empty clusters in 20 tries on dataset "
                         f"{data.name!r}; use fewer folds")
    # order the clusters by their smallest member, so labels do not depend on k-means'
    order = sorted(range(k), key=lambda c: int(np.flatnonzero(assignment == c)[0]))
    folds, labels = [], []
    types = data.reference.config_types
    for number, c in enumerate(order):
        members = np.flatnonzero(assignment == c).tolist()
        counts: dict[str, int] = {}
        for i in members:
            counts[types[i]] = counts.get(types[i], 0) + 1
        folds.append(members)
        labels.append(f"cluster {number} (" + ", ".join(
            f"{t} {c}" for t, c in sorted(counts.items(), key=lambda x: -x[1])) + ")")
    return folds, tuple(labels)
