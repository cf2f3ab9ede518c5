"""External test sets built from a protocol's output, labelled, saved with provenance.

Plain library (no pytest).

The tutorial's external test sets (separate MD runs, RSS minima: structures the training
set did not come from) are made in three steps:

1. **Structures**: any list of ASE Atoms a protocol produced (RSS minima, MD snapshots;
   an object with a ``structures`` attribute, e.g. an ``RssResult``, gives its usable
   structures), and a provenance dict: which protocol, with which parameters.
2. **Labels** from a reference (:func:`label_structures`): a reference potential (a
   ``Potential``, a spec for :func:`~pytest_mlpval.potentials.load_potential`, or an ASE
   calculator) computes energy, forces and (for periodic cells) stress; labels already
   in a file (:func:`labels_from_file`, matched by geometry); or the user's function
   ``label(atoms) -> {"energy": eV, "forces": (N, 3) eV/Å, "stress": 6 Voigt eV/Å³}``
   (e.g. a DFT driver). Labelling runs through :func:`~pytest_mlpval.campaign.run_campaign`
   (parallel, cached on disk by the reference's identity and the structures). A structure
   whose labelling fails or gives NaN is an error naming it, unless ``skip_failed`` (then
   it is left out and listed in the provenance).
3. **File** (:func:`build_external_set`): an extxyz file whose frames carry the labels
   under ``ref_energy`` / ``ref_forces`` / ``ref_stress`` (stress only where every
   structure has one), the provenance as JSON in every frame (``mlpval_provenance``) plus
   ``mlpval_protocol``, ``mlpval_source_index`` and ``mlpval_reference_sha256``, and a
   sidecar ``<file>.json`` with the provenance and the file's sha256. The file reads back
   with :func:`~pytest_mlpval.data.read_dataset` through :attr:`ExternalSet.dataset_spec`,
   so the fixtures of ``--mlpval-dataset`` test candidates on it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

import pytest_mlpval
from pytest_mlpval.campaign import run_campaign
from pytest_mlpval.campaign_cache import canonical_json
from pytest_mlpval.data import frame_label, read_dataset, stress_voigt
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.fileio import atomic_write, write_json
from pytest_mlpval.potentials import (Potential, PotentialInfo, is_calculator,
                                      load_potential, sha256_file)
from pytest_mlpval.protocols.base import CampaignOptions, Result, Settings
from pytest_mlpval.protocols.domain.coverage import same_geometry
from pytest_mlpval.protocols.fitting import FitCampaignSource, FitIdentity, extxyz_text

__all__ = ["REF_KEYS", "ExternalSetError", "structures_of", "frames_sha256", "FileLabels",
           "labels_from_file", "LabelResult", "label_structures", "ExternalSet",
           "build_external_set", "read_external_set", "label_task", "PROTOCOL"]

PROTOCOL = "label"
TASK_VERSION = 1
#: label name -> key in the file
REF_KEYS = {"energy": "ref_energy", "forces": "ref_forces", "stress": "ref_stress"}
#: keys of a protocol's frames that are not copied (they would look like labels)
_LABEL_LIKE = {"energy", "forces", "stress", "free_energy", "virial", "magmoms", "charges"}


class ExternalSetError(MlpvalError, ValueError):
    """An external test set that cannot be built or read."""


def structures_of(frames: Any) -> list[Any]:
    """The ASE Atoms of ``frames``: a list of them, one Atoms, or an object with a
    ``structures`` attribute (its usable structures, None left out);
    :class:`ExternalSetError` for none, or for something else or an empty structure."""
    if hasattr(frames, "structures") and not hasattr(frames, "get_positions"):
        frames = [a for a in frames.structures if a is not None]
    frames = [frames] if hasattr(frames, "get_positions") else list(frames)
    if not frames:
        raise ExternalSetError("no structures to label")
    for i, atoms in enumerate(frames):
        if not hasattr(atoms, "get_positions"):
            raise ExternalSetError(f"structure {i} is {type(atoms).__name__}, not ASE Atoms")
        if len(atoms) == 0:
            raise ExternalSetError(f"structure {i} has no atoms")
    return frames


def _bare(atoms: Any) -> Any:
    import ase

    return ase.Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)


def frames_sha256(frames: Sequence[Any]) -> str:
    """Digest of the geometry of ``frames`` (atomic numbers, positions, cells,
    periodicity), in order."""
    digest = hashlib.sha256()
    for atoms in frames:
        for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# -- labels ----------------------------------------------------------------------------

def _check_labels(values: Mapping[str, Any], n_atoms: int, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"energy": None, "forces": None, "stress": None}
    unknown = set(values) - {"energy", "forces", "stress", "free_energy"}
    if unknown:
        raise ExternalSetError(f"{where}: unknown label(s) {sorted(unknown)}; give energy "
                               "(eV), forces ((N, 3) eV/Å), stress (6 Voigt, eV/Å³)")
    if values.get("energy") is not None:
        out["energy"] = float(values["energy"])
    if values.get("forces") is not None:
        forces = np.asarray(values["forces"], dtype=float)
        if forces.shape != (n_atoms, 3):
            raise ExternalSetError(f"{where}: forces of shape {forces.shape}, expected "
                                   f"({n_atoms}, 3)")
        out["forces"] = forces.tolist()
    if values.get("stress") is not None:
        out["stress"] = stress_voigt(values["stress"]).tolist()
    if all(v is None for v in out.values()):
        raise ExternalSetError(f"{where}: no energy, forces or stress")
    for name, value in out.items():
        if value is not None and not np.all(np.isfinite(value)):
            raise ExternalSetError(f"{where}: {name} is not finite (NaN or inf)")
    return out


def label_task(labeller: Any, atoms: Any) -> dict[str, Any]:
    """Campaign task: labels of one structure from an ASE calculator or a labelling
    function, checked (shapes, finite) and JSON-serialisable."""
    if is_calculator(labeller):
        work = _bare(atoms)
        work.calc = labeller
        values = {"energy": work.get_potential_energy(), "forces": work.get_forces()}
        implemented = getattr(labeller, "implemented_properties", ("stress",))
        if all(work.pbc) and "stress" in implemented:
            values["stress"] = work.get_stress(voigt=True)
    else:
        values = labeller(_bare(atoms))
        if not isinstance(values, Mapping):
            raise ExternalSetError(f"the labelling function returned {type(values).__name__},"
                                   " expected a dict with energy/forces/stress")
    return _check_labels(values, len(atoms), f"labels of a {len(atoms)}-atom structure")


@dataclass(frozen=True)
class FileLabels(Settings):
    """Labels already in a file, matched to structures by geometry (same elements, cell
    and positions within ``tol_A``; the frame with the same index is tried first): the
    settings of a reference that reads labels instead of computing them."""

    VERSION: ClassVar[int] = 1

    path: str
    keys: tuple[tuple[str, str], ...] = (("energy", "energy"), ("forces", "forces"),
                                         ("stress", "stress"))
    index: str = ":"
    tol_A: float = 1e-4

    def identity(self) -> dict[str, Any]:
        return {"name": Path(self.path).name, "spec": self.path, "loader": "file",
                "sha256": sha256_file(self.path), "keys": dict(self.keys)}

    def label(self, frames: Sequence[Any]) -> list[tuple[dict | None, str | None]]:
        import ase.io

        stored = ase.io.read(self.path, index=self.index)
        stored = stored if isinstance(stored, list) else [stored]
        keys = dict(self.keys)
        out = []
        for i, atoms in enumerate(frames):
            order = ([i] if i < len(stored) else []) + [j for j in range(len(stored)) if j != i]
            match = next((j for j in order if same_geometry(atoms, stored[j], self.tol_A)),
                         None)
            if match is None:
                out.append((None, f"no structure in {self.path} matches structure {i}"))
                continue
            s = stored[match]
            values = {name: frame_label(s, keys[name], "arrays" if name == "forces" else "info")
                      for name in ("energy", "forces", "stress") if name in keys}
            try:
                out.append((_check_labels({k: v for k, v in values.items() if v is not None},
                                          len(atoms), f"structure {match} of {self.path}"),
                            None))
            except ExternalSetError as exc:
                out.append((None, str(exc)))
        return out


def labels_from_file(path: str | os.PathLike[str], *, energy: str = "energy",
                     forces: str = "forces", stress: str = "stress", index: str = ":",
                     tol_A: float = 1e-4) -> FileLabels:
    """A reference that takes labels from ``path`` under the given keys."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ExternalSetError(f"labels file not found: {path}")
    return FileLabels(str(path), (("energy", energy), ("forces", forces),
                                  ("stress", stress)), index, tol_A)


@dataclass(frozen=True)
class LabelResult:
    """Labels of every structure, or why it has none.

    Attributes
    ----------
    reference : mapping
        The reference's identity (name, spec, loader, sha256).
    values : tuple of dict or None
        Per structure: ``energy`` (eV), ``forces`` (list (N, 3), eV/Å), ``stress`` (6,
        eV/Å³), each possibly None; None for a failed structure.
    errors : tuple of (int, str)
        Failed structures and why.
    seconds : float
    n_from_cache : int
    """

    reference: Mapping[str, Any]
    values: tuple[dict[str, Any] | None, ...] = field(repr=False)
    errors: tuple[tuple[int, str], ...] = ()
    seconds: float = 0.0
    n_from_cache: int = 0


def _label_source(reference: Any) -> tuple[Any, dict[str, Any]]:
    """(campaign potential, identity) of a reference potential or labelling function."""
    if isinstance(reference, (str, os.PathLike)):
        reference = load_potential(str(reference))
    if isinstance(reference, Potential):
        info = reference.info
        return reference, {"name": info.name, "spec": info.spec, "loader": info.loader,
                           "sha256": info.sha256}
    if is_calculator(reference):
        name = type(reference).__name__
        return (Potential(PotentialInfo(name, "", "calculator"), reference),
                {"name": name, "spec": "", "loader": "calculator", "sha256": None})
    if callable(reference):
        fn = getattr(reference, "func", reference)
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
        try:
            source = inspect.getsource(fn if inspect.isroutine(fn) else type(fn))
        except (OSError, TypeError):
            source = ""
        digest = hashlib.sha256(f"{name}\n{source}".encode()).hexdigest()
        return (FitCampaignSource(FitIdentity(name, name, digest, loader="label-function"),
                                  reference),
                {"name": name, "spec": name, "loader": "label-function", "sha256": digest})
    raise ExternalSetError(f"reference must be a Potential, a potential spec, an ASE "
                           f"calculator, labels_from_file(...) or a function label(atoms) -> "
                           f"dict; got {type(reference).__name__}")


def label_structures(frames: Any, reference: Any, *, options: CampaignOptions | None = None
                     ) -> LabelResult:
    """Label ``frames`` with ``reference`` (module docstring), where ``options`` say
    (default: in this process, uncached). Cached in ``options.cache_dir`` by the
    reference's content hash (a labelling function: its name and source) and the
    structures' geometry (the labelling has no settings); a bare calculator is not
    cached."""
    options = options or CampaignOptions()
    frames = structures_of(frames)
    start = time.perf_counter()
    if isinstance(reference, FileLabels):
        pairs = reference.label(frames)
        return LabelResult(reference.identity(), tuple(v for v, _ in pairs),
                           tuple((i, e) for i, (_, e) in enumerate(pairs) if e is not None),
                           time.perf_counter() - start)
    source, identity = _label_source(reference)
    campaign = run_campaign(PROTOCOL, label_task, [_bare(a) for a in frames], source,
                            {"frames_sha256": frames_sha256(frames)},
                            version=TASK_VERSION, **options.campaign_kwargs())
    return LabelResult(identity, tuple(item.value if item.ok else None
                                       for item in campaign.items),
                       tuple((item.index, item.error) for item in campaign.failures),
                       time.perf_counter() - start, campaign.n_from_cache)


# -- the file --------------------------------------------------------------------------

@dataclass(frozen=True)
class ExternalSet(Result):
    """A labelled external test set on disk.

    Attributes
    ----------
    name : str
    path, sidecar : str
        The extxyz file and its JSON sidecar.
    sha256 : str
        Digest of the extxyz file.
    n_structures : int
    keys : mapping
        Label name -> key in the file (only the labels written).
    provenance : mapping
        Protocol, parameters, reference identity, failures, notes, time of creation.
    """

    name: str
    path: str
    sidecar: str
    sha256: str
    n_structures: int
    keys: Mapping[str, str]
    provenance: Mapping[str, Any] = field(repr=False)

    @property
    def dataset_spec(self) -> str:
        """``NAME=PATH,energy=ref_energy,...`` for ``--mlpval-dataset`` and
        :func:`~pytest_mlpval.data.read_dataset`."""
        return ",".join([f"{self.name}={self.path}"]
                        + [f"{k}={v}" for k, v in sorted(self.keys.items())])

    def read(self) -> Any:
        return read_dataset(self.dataset_spec)

    def metrics(self) -> dict[str, float]:
        return {"n_structures": float(self.n_structures),
                "n_failed": float(len(self.provenance.get("failed", [])))}

    def units(self) -> dict[str, str]:
        return {"n_structures": "", "n_failed": ""}

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "sidecar": self.sidecar,
                "sha256": self.sha256, "n_structures": self.n_structures,
                "keys": dict(self.keys), "dataset_spec": self.dataset_spec,
                "provenance": dict(self.provenance)}


def _json_safe(value: Any) -> Any:
    return json.loads(canonical_json(value))


def build_external_set(frames: Any, path: str | os.PathLike[str], reference: Any, *,
                       protocol: str, parameters: Mapping[str, Any] | None = None,
                       name: str | None = None, config_type: str | None = None,
                       skip_failed: bool = False, options: CampaignOptions | None = None
                       ) -> ExternalSet:
    """Label a protocol's structures with ``reference`` and save them as an external
    test set (module docstring).

    Parameters
    ----------
    frames : sequence of ase.Atoms or an object with ``structures``
    path : path
        The extxyz file to write (its folder is created); the sidecar is
        ``<path>.json``.
    reference : Potential, spec, ASE calculator, FileLabels or callable
    protocol : str
        What made the structures (``"rss"``, ``"md"``...).
    parameters : mapping, optional
        The protocol's parameters (JSON-serialisable), stored in the provenance.
    name : str, optional
        Dataset name (default: the file's stem).
    config_type : str, optional
        For structures without one (default: ``protocol``).
    skip_failed : bool
        Leave out structures whose labelling failed (listed in the provenance) instead
        of raising :class:`ExternalSetError`.
    options : CampaignOptions, optional
        Where the labelling runs and where it is cached (:func:`label_structures`).
    """
    if not protocol or not isinstance(protocol, str):
        raise ExternalSetError(f"protocol must be a non-empty string, got {protocol!r}")
    frames = structures_of(frames)
    path = Path(path).resolve()
    name = name or path.stem
    if "," in str(path) or "=" in name:
        raise ExternalSetError(f"{path}: a dataset path may not contain ',' (nor the name "
                               "'='): it could not be given as NAME=PATH")
    labels = label_structures(frames, reference, options=options)
    if labels.errors and not skip_failed:
        lines = [f"{len(labels.errors)} of {len(frames)} structures could not be labelled "
                 f"by {labels.reference.get('name')!r}:"]
        lines += [f"  structure {i}: {e}" for i, e in labels.errors[:10]]
        raise ExternalSetError("\n".join(lines + ["(skip_failed=True leaves them out)"]))
    kept = [i for i, v in enumerate(labels.values) if v is not None]
    if not kept:
        raise ExternalSetError(f"no structure could be labelled by "
                               f"{labels.reference.get('name')!r}")
    notes, keys = [], {}
    for label in ("energy", "forces", "stress"):
        have = sum(labels.values[i][label] is not None for i in kept)
        if have == len(kept):
            keys[label] = REF_KEYS[label]
        elif have:
            notes.append(f"{label} left out: only {have} of {len(kept)} structures have it")
    provenance = _json_safe({
        "protocol": protocol, "parameters": dict(parameters or {}),
        "reference": dict(labels.reference), "n_source_structures": len(frames),
        "n_structures": len(kept), "source_indices": kept,
        "source_sha256": frames_sha256(frames),
        "failed": [{"index": i, "error": e} for i, e in labels.errors],
        "labels": keys, "notes": notes, "pytest_mlpval_version": pytest_mlpval.__version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    compact = json.dumps(provenance, sort_keys=True, separators=(",", ":"))
    out = []
    for i in kept:
        atoms, values = frames[i], labels.values[i]
        frame = _bare(atoms)
        for key, value in atoms.info.items():
            if key not in _LABEL_LIKE and isinstance(value, (str, int, float, bool)) \
                    and not key.startswith("mlpval_"):
                frame.info[key] = value
        frame.info["config_type"] = str(atoms.info.get("config_type") or config_type
                                        or protocol)
        for label, key in keys.items():
            target = frame.arrays if label == "forces" else frame.info
            target[key] = np.array(values[label], dtype=float) if label != "energy" \
                else float(values[label])
        frame.info.update({"mlpval_protocol": protocol, "mlpval_source_index": i,
                           "mlpval_reference": str(labels.reference.get("name")),
                           "mlpval_reference_sha256": str(labels.reference.get("sha256")),
                           "mlpval_provenance": compact})
        out.append(frame)
    text = extxyz_text(out)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    sha = sha256_file(path)
    sidecar = Path(f"{path}.json")
    result = ExternalSet(name, str(path), str(sidecar), sha, len(out), keys, provenance)
    write_json(sidecar, {"format": 1, **result.as_dict()})
    return result


def read_external_set(path: str | os.PathLike[str], verify: bool = True) -> ExternalSet:
    """The :class:`ExternalSet` of ``path`` from its sidecar; with ``verify`` an
    :class:`ExternalSetError` if the file changed since it was written."""
    path = Path(path).resolve()
    sidecar = Path(f"{path}.json")
    if not path.is_file():
        raise ExternalSetError(f"external test set not found: {path}")
    if not sidecar.is_file():
        raise ExternalSetError(f"{path} has no sidecar {sidecar.name} (not written by "
                               "build_external_set?)")
    try:
        doc = json.loads(sidecar.read_text())
        keys, provenance, name = doc["keys"], doc["provenance"], doc["name"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ExternalSetError(f"cannot read {sidecar}: {exc}") from exc
    sha = sha256_file(path)
    if verify and sha != doc.get("sha256"):
        raise ExternalSetError(f"{path} changed since it was labelled (sha256 {sha[:16]}, "
                               f"sidecar says {str(doc.get('sha256'))[:16]})")
    return ExternalSet(name, str(path), str(sidecar), sha, int(doc.get("n_structures", 0)),
                       keys, provenance)
