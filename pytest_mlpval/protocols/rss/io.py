"""Random structure search results as extxyz files (ASE), and back.

Plain library (no pytest). One frame per structure, in index order: the relaxed structure,
or the initial one where the relaxation failed. Each frame's ``info`` holds the record:
``rss_index``, ``rss_seed``, ``status``, ``structure`` (``"final"`` or ``"initial"``),
``energy_per_atom_eV``, ``volume_per_atom_A3``, ``enthalpy_per_atom_eV``, ``fmax_eV_A``,
``n_steps`` (-1 where unknown), ``n_force_calls``, ``calculator_seconds``,
``total_seconds``, ``cpu_seconds``, ``error`` (where there is one) and ``similarity_<crystal>`` (e.g.
``similarity_diamond``, the mean SOAP similarity to the candidate's ideal diamond). The
first frame also carries the run: ``rss_parameters`` (the search's
:class:`~pytest_mlpval.protocols.rss.generate.RssSettings`), ``rss_references`` (JSON),
``rss_potential``, ``rss_potential_sha256``.

:func:`read_rss_data` reads such a file back as plain fields, from which
:meth:`RssResult.read <pytest_mlpval.protocols.rss.result.RssResult.read>` builds the
result (this module does not know the result classes, so that they can use it).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from pytest_mlpval.fileio import atomic_write
from pytest_mlpval.protocols.base import plain
from pytest_mlpval.protocols.rss.generate import RssSettings

__all__ = ["write_rss", "read_rss_data"]

_RECORD = ("energy_per_atom_eV", "volume_per_atom_A3", "enthalpy_per_atom_eV", "fmax_eV_A",
           "calculator_seconds", "total_seconds", "cpu_seconds")


def write_rss(result: Any, path: str | Path) -> Path:
    """Write :class:`~pytest_mlpval.protocols.rss.result.RssResult` ``result`` to
    ``path`` (extxyz)."""
    import ase.io

    frames = []
    for number, m in enumerate(result.minima):
        source = m.final if m.final is not None else m.initial
        if source is None:
            raise ValueError(f"structure {m.index} has neither a final nor an initial "
                             "structure to write")
        atoms = source.copy()
        atoms.calc = None
        atoms.info = {
            "rss_index": int(m.index), "rss_seed": int(result.settings.seed),
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
                rss_parameters=json.dumps(result.settings.as_dict(), sort_keys=True),
                rss_references=json.dumps(plain(dict(result.references)),
                                          sort_keys=True),
                rss_potential=result.potential,
                rss_potential_sha256=result.potential_sha256 or "none")
        frames.append(atoms)
    buffer = io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    text = buffer.getvalue().encode("utf-8")
    return atomic_write(Path(path), lambda handle: handle.write(text))


def read_rss_data(path: str | Path) -> dict[str, Any]:
    """The fields of a search written by :func:`write_rss`: ``settings``
    (:class:`~pytest_mlpval.protocols.rss.generate.RssSettings`), ``potential``,
    ``potential_sha256``, ``references`` and ``minima`` (one dict of
    :class:`~pytest_mlpval.protocols.rss.result.RssMinimum` fields per frame). Timing
    fields of the run are not stored; structures of failed relaxations come back as
    ``initial``, others as ``final``."""
    import ase.io

    frames = ase.io.read(path, ":", format="extxyz")
    if not frames or "rss_parameters" not in frames[0].info:
        raise ValueError(f"{path} is not a random structure search written by write_rss "
                         "(no rss_parameters in its first frame)")
    first = frames[0].info
    settings = RssSettings.from_dict(json.loads(first["rss_parameters"]))
    references = json.loads(first.get("rss_references", "{}"))
    sha = str(first.get("rss_potential_sha256", "none"))
    minima = []
    for atoms in frames:
        info = dict(atoms.info)
        structure = atoms.copy()
        structure.info = {"rss_seed": int(info["rss_seed"]),
                          "rss_index": int(info["rss_index"])}
        final = info.get("structure") == "final"
        steps = int(info.get("n_steps", -1))
        minima.append(dict(
            index=int(info["rss_index"]), status=str(info["status"]), n_atoms=len(atoms),
            **{key: float(info.get(key, math.nan)) for key in _RECORD},
            n_steps=None if steps < 0 else steps, n_force_calls=int(info["n_force_calls"]),
            similarity={k[len("similarity_"):]: float(v) for k, v in info.items()
                        if k.startswith("similarity_")},
            error=str(info["error"]) if "error" in info else None,
            initial=None if final else structure, final=structure if final else None))
    return {"settings": settings, "potential": str(first.get("rss_potential", "")),
            "potential_sha256": None if sha == "none" else sha, "references": references,
            "minima": minima}
