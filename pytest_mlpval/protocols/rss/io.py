"""Random structure search results as extxyz files (ASE), and back.

Plain library (no pytest). One frame per structure, in index order: the relaxed structure,
or the initial one where the relaxation failed. Each frame's ``info`` holds the record:
``rss_index``, ``rss_seed``, ``status``, ``structure`` (``"final"`` or ``"initial"``),
``energy_per_atom_eV``, ``volume_per_atom_A3``, ``enthalpy_per_atom_eV``, ``fmax_eV_A``,
``n_steps`` (-1 where unknown), ``n_force_calls``, ``calculator_seconds``,
``total_seconds``, ``cpu_seconds``, ``error`` (where there is one) and ``similarity_<crystal>`` (e.g.
``similarity_diamond``, the mean SOAP similarity to the candidate's ideal diamond). The
first frame also carries the run: ``rss_parameters``, ``rss_references`` (JSON),
``rss_potential``, ``rss_potential_sha256``.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["write_rss", "read_rss"]

_RECORD = ("energy_per_atom_eV", "volume_per_atom_A3", "enthalpy_per_atom_eV", "fmax_eV_A",
           "calculator_seconds", "total_seconds", "cpu_seconds")


def _clean_json(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _clean_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_clean_json(v) for v in data]
    if hasattr(data, "item"):  # numpy scalars
        return data.item()
    return data


def write_rss(result: Any, path: str | Path) -> Path:
    """Write :class:`~pytest_mlpval.protocols.rss.search.RssResult` ``result`` to ``path`` (extxyz)."""
    import ase.io

    from pytest_mlpval.fileio import atomic_write

    frames = []
    for number, m in enumerate(result.minima):
        source = m.final if m.final is not None else m.initial
        if source is None:
            raise ValueError(f"structure {m.index} has neither a final nor an initial "
                             "structure to write")
        atoms = source.copy()
        atoms.calc = None
        atoms.info = {
            "rss_index": int(m.index), "rss_seed": int(result.parameters.seed),
            "status": m.status, "structure": "final" if m.final is not None else "initial",
            **{key: float(getattr(m, key)) for key in _RECORD},
            "n_steps": -1 if m.n_steps is None else int(m.n_steps),
            "n_force_calls": int(m.n_force_calls)}
        if m.error:
            atoms.info["error"] = " ".join(str(m.error).split())
        for name, value in m.similarity.items():
            atoms.info[f"similarity_{name}"] = float(value)
        if number == 0:
            atoms.info.update(
                rss_parameters=json.dumps(result.parameters.as_dict(), sort_keys=True),
                rss_references=json.dumps(_clean_json(dict(result.references)),
                                          sort_keys=True),
                rss_potential=result.potential,
                rss_potential_sha256=result.potential_sha256 or "none")
        frames.append(atoms)
    buffer = io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    text = buffer.getvalue().encode("utf-8")
    return atomic_write(Path(path), lambda handle: handle.write(text))


def read_rss(path: str | Path) -> Any:
    """Load an :class:`~pytest_mlpval.protocols.rss.search.RssResult` written by :func:`write_rss`.
    Timing fields of the run (``seconds``, ``task_seconds``) are not stored: they read
    as 0; structures of failed relaxations come back as ``initial``, others as
    ``final``."""
    import ase.io

    from pytest_mlpval.protocols.rss.search import RssMinimum, RssResult
    from pytest_mlpval.protocols.rss.generate import RssParameters

    frames = ase.io.read(path, ":", format="extxyz")
    if not frames or "rss_parameters" not in frames[0].info:
        raise ValueError(f"{path} is not a random structure search written by write_rss "
                         "(no rss_parameters in its first frame)")
    first = frames[0].info
    params = RssParameters.from_dict(json.loads(first["rss_parameters"]))
    references = json.loads(first.get("rss_references", "{}"))
    sha = str(first.get("rss_potential_sha256", "none"))
    minima = []
    for atoms in frames:
        info = dict(atoms.info)
        structure = atoms.copy()
        structure.info = {"rss_seed": int(info["rss_seed"]), "rss_index": int(info["rss_index"])}
        final = info.get("structure") == "final"
        steps = int(info.get("n_steps", -1))
        minima.append(RssMinimum(
            index=int(info["rss_index"]), status=str(info["status"]), n_atoms=len(atoms),
            **{key: float(info.get(key, math.nan)) for key in _RECORD},
            n_steps=None if steps < 0 else steps, n_force_calls=int(info["n_force_calls"]),
            similarity={k[len("similarity_"):]: float(v) for k, v in info.items()
                        if k.startswith("similarity_")},
            error=str(info["error"]) if "error" in info else None,
            initial=None if final else structure, final=structure if final else None))
    return RssResult(params, str(first.get("rss_potential", "")),
                     None if sha == "none" else sha, tuple(minima), references)
