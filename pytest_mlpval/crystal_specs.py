"""The crystal specs beyond silicon's named phases: ASE prototypes, ``spacegroup:``,
``file:`` and ``python:`` specs, and crystals registered by name (the grammar is in
:mod:`pytest_mlpval.crystals`, which resolves every spec; use that module).

Plain library (no pytest).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.units import is_chemical_symbol

__all__ = ["UnknownCrystalError", "PROTOTYPES", "REGISTERED", "spec_forms", "split_spec",
           "prototype_args", "file_parts", "file_digest", "spacegroup_args",
           "spacegroup_spec", "elements_of", "scale_to_start", "build_prototype",
           "read_crystal_file", "call_builder"]


class UnknownCrystalError(MlpvalError, ValueError):
    """No crystal of that name, or a crystal spec that cannot be built."""


#: structures of ``ase.build.bulk`` (the prototypes), with aliases
PROTOTYPES = ("sc", "fcc", "bcc", "hcp", "diamond", "zincblende", "rocksalt",
              "cesiumchloride", "fluorite", "wurtzite", "tetragonal", "bct", "rhombohedral",
              "orthorhombic", "mcl")
_PROTOTYPE_ALIASES = {"b2": "cesiumchloride", "cscl": "cesiumchloride", "nacl": "rocksalt",
                      "zb": "zincblende", "b1": "rocksalt", "b3": "zincblende",
                      "a1": "fcc", "a2": "bcc", "a3": "hcp", "a4": "diamond"}
_FLOAT_KEYS = ("a", "b", "c", "alpha", "covera", "u")
_BOOL_KEYS = ("cubic", "orthorhombic")
_STR_KEYS = ("symbols", "name")

#: crystals registered by :func:`register_crystal` (this process only)
REGISTERED: dict[str, Callable[[str], Any]] = {}


def spec_forms() -> str:
    """The spec forms besides the named phases, for error messages."""
    return (f"a prototype <structure>[:key=value,...] of {', '.join(PROTOTYPES)}, "
            f"spacegroup:<JSON>, file:<path>, python:<module>:<function>"
            f"{', ' + ', '.join(REGISTERED) if REGISTERED else ''}")


def split_spec(spec: str) -> tuple[str, str]:
    head, _, rest = spec.strip().partition(":")
    return head.strip(), rest.strip()


def prototype_args(name: str, rest: str) -> tuple[str, dict[str, Any]]:
    """(ase.build.bulk structure, keyword arguments) of a prototype spec."""
    structure = _PROTOTYPE_ALIASES.get(name.lower(), name.lower())
    if structure not in PROTOTYPES:
        raise UnknownCrystalError(f"unknown crystal {name!r}; known: {spec_forms()}")
    args: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.replace(":", ",").split(","))):
        key, eq, value = (p.strip() for p in item.partition("="))
        if not eq:
            raise UnknownCrystalError(f"crystal {name}:{rest}: {item!r} is not key=value")
        if key not in _FLOAT_KEYS + _BOOL_KEYS + _STR_KEYS:
            raise UnknownCrystalError(
                f"crystal {name}:{rest}: unknown key {key!r}; keys: "
                f"{', '.join(_FLOAT_KEYS + _BOOL_KEYS + _STR_KEYS)}")
        if key in _STR_KEYS:
            args[key] = value
        elif key in _BOOL_KEYS and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            args[key] = value.lower() in ("true", "1", "yes")
        else:
            try:
                args[key] = float(value) if key in _FLOAT_KEYS else None
            except ValueError:
                pass
            if args.get(key) is None:
                raise UnknownCrystalError(f"crystal {name}:{rest}: bad value for {key!r}: "
                                          f"{value!r}")
    return structure, args


def file_parts(rest: str) -> tuple[str, str | None]:
    path, _, digest = rest.partition("#sha256=")
    return path, (digest or None)


def file_digest(path: str) -> str:
    import hashlib

    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()[:16]
    except OSError as exc:
        raise UnknownCrystalError(f"cannot read crystal file {path!r}: "
                                  f"{exc.strerror or exc}") from None


def spacegroup_args(rest: str) -> dict[str, Any]:
    import json

    try:
        args = json.loads(rest)
    except json.JSONDecodeError as exc:
        raise UnknownCrystalError(f"spacegroup:{rest}: not a JSON object ({exc})") from None
    if not isinstance(args, dict) or "spacegroup" not in args:
        raise UnknownCrystalError(f"spacegroup:{rest}: give a JSON object with the "
                                  "arguments of ase.spacegroup.crystal, 'spacegroup' among "
                                  "them")
    return args


def spacegroup_spec(symbols: Any, basis: Any, spacegroup: int, cellpar: Any,
                    name: str | None = None) -> str:
    """The crystal spec of ``ase.spacegroup.crystal(symbols, basis, spacegroup=...,
    cellpar=...)`` (``name``: its label in property names)."""
    import json

    args = {"symbols": list(symbols) if not isinstance(symbols, str) else symbols,
            "basis": np.asarray(basis, dtype=float).tolist(), "spacegroup": int(spacegroup),
            "cellpar": [float(x) for x in cellpar]}
    if name:
        args["name"] = name
    return "spacegroup:" + json.dumps(args, sort_keys=True, separators=(",", ":"))


def elements_of(symbol: str) -> list[str]:
    """The elements of ``symbol`` (an element or a formula such as ``"SiC"``)."""
    from ase.symbols import string2symbols

    if is_chemical_symbol(symbol):
        return [symbol]
    try:
        symbols = string2symbols(symbol)
    except (ValueError, KeyError, TypeError):
        symbols = []
    if not symbols or not all(map(is_chemical_symbol, symbols)):
        raise ValueError(f"{symbol!r} is not a chemical symbol or formula")
    return symbols


def scale_to_start(atoms: Any, symbols: list[str]) -> Any:
    """Scale a prototype built without a lattice constant: to the element's reference
    volume per atom (one element with an ASE reference state), else to nearest
    neighbours at the sum of covalent radii."""
    from ase.build import bulk
    from ase.data import atomic_numbers, covalent_radii
    from ase.neighborlist import neighbor_list

    elements = sorted(set(symbols))
    target = None
    if len(elements) == 1:
        try:
            ref = bulk(elements[0])
            target = ref.get_volume() / len(ref)
        except (ValueError, KeyError, RuntimeError):
            target = None
    if target is not None:
        factor = (target / (atoms.get_volume() / len(atoms))) ** (1 / 3)
    else:
        i, j, d = neighbor_list("ijd", atoms, 3.0 * max(1.0, atoms.cell.lengths().max()))
        k = int(np.argmin(d))
        bond = covalent_radii[atomic_numbers[atoms[i[k]].symbol]] \
            + covalent_radii[atomic_numbers[atoms[j[k]].symbol]]
        factor = bond / d[k]
    atoms.set_cell(np.asarray(atoms.cell) * factor, scale_atoms=True)
    return atoms


def build_prototype(head: str, rest: str, symbol: str) -> Any:
    """``ase.build.bulk`` of a prototype spec (``head:rest``) for ``symbol``."""
    from ase.build import bulk

    structure, args = prototype_args(head, rest)
    args.pop("name", None)
    formula = args.pop("symbols", None) or symbol
    symbols = elements_of(formula)
    if len(set(symbols)) > 1 and structure in ("sc", "fcc", "bcc", "hcp", "diamond"):
        raise UnknownCrystalError(f"prototype {structure!r} is elemental; {formula!r} has "
                                  f"several elements (rocksalt, zincblende, "
                                  f"cesiumchloride, fluorite, wurtzite are binary)")
    try:
        return bulk(formula, structure, **args)
    except (ValueError, KeyError, RuntimeError):
        if "a" in args:
            raise
    hexagonal = structure in ("hcp", "wurtzite")
    guess = {"a": 1.0, **({"c": args.pop("c", None) or
                          (args.get("covera") or np.sqrt(8 / 3))} if hexagonal else {})}
    if hexagonal:
        args.pop("covera", None)
    try:
        atoms = bulk(formula, structure, **guess, **args)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise UnknownCrystalError(f"cannot build {structure} {formula} without a lattice "
                                  f"constant ({exc}); give a=...") from None
    return scale_to_start(atoms, symbols)


def read_crystal_file(rest: str) -> Any:
    """The last frame of a ``file:`` spec's file, its digest checked."""
    import ase.io

    path, digest = file_parts(rest)
    if digest is not None and file_digest(path) != digest:
        raise UnknownCrystalError(f"crystal file {path!r} changed since its spec was made "
                                  f"(sha256 {file_digest(path)}..., spec {digest}...)")
    try:
        atoms = ase.io.read(path, index=-1)
    except FileNotFoundError:
        raise UnknownCrystalError(f"crystal file {path!r} does not exist") from None
    except Exception as exc:  # ase.io raises many kinds for a file it cannot parse
        raise UnknownCrystalError(f"cannot read crystal file {path!r} with ase.io.read: "
                                  f"{type(exc).__name__}: {exc}") from None
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise UnknownCrystalError(f"crystal file {path!r} holds no periodic 3D cell")
    return atoms


def call_builder(head: str, rest: str, symbol: str, spec: str) -> Any:
    """The crystal of a registered name (``head``) or of ``python:<module>:<function>``."""
    if head in REGISTERED:
        return REGISTERED[head](symbol)
    import importlib

    module, _, name = rest.partition(":")
    try:
        builder = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UnknownCrystalError(f"crystal {spec!r}: cannot import {name} from {module}: "
                                  f"{exc}") from None
    return builder(symbol)
