"""Compositions, minimum distances per element pair and reference crystals of the
structure searches (random structure search, compression), for any element or compound.

Plain library (no pytest). The silicon defaults of the tutorial stay the defaults for
elemental Si and are scaled to other elements by covalent radii (ASE's, as
:func:`~pytest_mlpval.crystals.build_crystal` scales silicon's phases):

- the smallest initial distance between an atom of element A and one of B is silicon's
  1.8 Å times ``(r_A + r_B) / (2 r_Si)`` (Si-Si 1.8, C-C 1.23, Si-C 1.52 Å);
- the range of initial volumes per atom is silicon's 14-26 Å^3 times the composition's
  mean ``r^3 / r_Si^3`` (SiC: 9.2-17.2 Å^3/atom; zincblende SiC has 10.4).

Reference crystals are given by name (silicon's phases of
:data:`~pytest_mlpval.crystals.CRYSTALS`, for an element), as ASE Atoms, as a callable
returning Atoms, or as a mapping ``{name: Atoms or callable or crystal name}``; every one
becomes either its name or a :class:`ReferenceCrystal` (the structure as plain numbers, so
that settings holding it stay JSON-able and key caches). A named crystal of one element
for a compound is an error that says so: give the compound's crystals as structures.
"""

from __future__ import annotations

import math
import re
from dataclasses import astuple, dataclass
from typing import Any, Mapping

import numpy as np

from pytest_mlpval.crystals import (CRYSTALS, RelaxationError, RelaxResult,
                                    UnknownCrystalError, build_crystal, canonical_crystal,
                                    crystal_label, relax, relaxed_crystal)
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.units import is_chemical_symbol

__all__ = ["parse_composition", "formula_of", "SI_MIN_SEPARATION_A", "SI_VOLUME_PER_ATOM_A3",
           "pair_separations", "given_separations", "default_volume_range", "ReferenceCrystal",
           "normalise_references", "reference_name", "reference_atoms", "relaxed_reference"]

#: silicon's smallest initial distance (Å) of the random structure search
SI_MIN_SEPARATION_A = 1.8
#: silicon's range of initial volumes per atom (Å^3): around diamond's 20.0, down to the
#: high-pressure phases near 15
SI_VOLUME_PER_ATOM_A3 = (14.0, 26.0)


def _radius(symbol: str) -> float:
    from ase.data import atomic_numbers, covalent_radii

    return float(covalent_radii[atomic_numbers[symbol]])


def parse_composition(raw: Any, error: type = SettingsError) -> tuple[tuple[str, int], ...]:
    """``((symbol, count), ...)`` of a formula unit given as ``"SiO2"``, ``{"Si": 1,
    "O": 2}``, ``["Si", "O", "O"]`` or ``[("Si", 1), ("O", 2)]``, reduced by the common
    divisor of the counts (Si2 is the same search as Si); ``error`` names what is wrong."""
    if isinstance(raw, str):
        text = raw.strip()
        parts = re.findall(r"([A-Z][a-z]?)(\d*)", text)
        if not parts or "".join(s + n for s, n in parts) != text:
            raise error(f"composition {raw!r} is not a formula such as 'Si' or 'SiO2'")
        pairs = [(s, int(n) if n else 1) for s, n in parts]
    elif isinstance(raw, Mapping):
        pairs = list(raw.items())
    else:  # a sequence of symbols, or of (symbol, count) pairs (as from as_dict)
        try:
            items = list(raw)
        except TypeError:
            raise error(f"composition {raw!r} is not a formula, a mapping or a sequence"
                        ) from None
        if items and all(isinstance(x, str) for x in items):
            pairs = [(s, items.count(s)) for s in dict.fromkeys(items)]
        else:
            pairs = [tuple(x) if isinstance(x, (list, tuple)) else (x,) for x in items]
    counts: dict[str, int] = {}
    for pair in pairs:
        if len(pair) != 2:
            raise error(f"composition entry {pair!r} is not (symbol, count)")
        symbol, count = pair
        if not isinstance(symbol, str) or not is_chemical_symbol(symbol):
            raise error(f"composition {raw!r}: unknown element {symbol!r}")
        if isinstance(count, bool) or not isinstance(count, (int, float, np.number)) \
                or not float(count).is_integer() or count < 1:
            raise error(f"composition {raw!r}: count of {symbol} must be a positive "
                        f"integer, got {count!r}")
        counts[symbol] = counts.get(symbol, 0) + int(count)
    if not counts:
        raise error("composition is empty")
    divisor = math.gcd(*counts.values())
    return tuple((s, c // divisor) for s, c in counts.items())


def formula_of(composition: tuple[tuple[str, int], ...]) -> str:
    """``"SiO2"`` of ``(("Si", 1), ("O", 2))``."""
    return "".join(s + (str(c) if c > 1 else "") for s, c in composition)


def _pair_key(key: Any, error: type) -> tuple[str, str]:
    parts = key.split("-") if isinstance(key, str) else list(key) \
        if isinstance(key, (tuple, list)) else []
    if len(parts) != 2 or not all(isinstance(p, str) and is_chemical_symbol(p)
                                  for p in parts):
        raise error(f"min_separation_A: {key!r} is not an element pair such as 'Si-C' or "
                    "('Si', 'C')")
    a, b = sorted(parts)
    return a, b


def pair_separations(value: Any, symbols: tuple[str, ...], error: type = SettingsError
                     ) -> dict[tuple[str, str], float]:
    """The smallest initial distance (Å) of every element pair ``(a, b)`` (``a <= b``)
    of ``symbols``: ``None`` scales silicon's 1.8 Å by covalent radii; a number applies
    to every pair; a mapping ``{"Si-C": 1.6, ...}`` (or ``(("C", "Si"), 1.6)`` pairs, as
    stored) gives some pairs, the others from the covalent-radius rule."""
    rule = {}
    for i, a in enumerate(sorted(symbols)):
        for b in sorted(symbols)[i:]:
            ratio = (_radius(a) + _radius(b)) / (2 * _radius("Si"))
            rule[(a, b)] = SI_MIN_SEPARATION_A * ratio
    if value is None:
        return rule
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return {pair: float(value) for pair in rule}
    try:
        items = list(value.items() if isinstance(value, Mapping) else value)
        distances = [float(v) for _, v in items]
    except (TypeError, ValueError):
        raise error(f"min_separation_A must be a distance in Å, a mapping of element pairs "
                    f"to distances, or None (covalent radii), got {value!r}") from None
    given = {_pair_key(k, error): d for (k, _), d in zip(items, distances)}
    extra = sorted(f"{a}-{b}" for a, b in given if (a, b) not in rule)
    if extra:
        raise error(f"min_separation_A names {', '.join(extra)}, not pairs of the "
                    f"composition's elements {', '.join(symbols)}")
    return {**rule, **given}


def given_separations(value: Any, symbols: tuple[str, ...], error: type = SettingsError
                      ) -> Any:
    """``min_separation_A`` as settings keep it: None, a number (float), or the given
    pairs as ``((("C", "Si"), 1.6), ...)`` (sorted; checked against ``symbols``)."""
    if value is None:
        return None
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    every = pair_separations(value, symbols, error)
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((key, every[key]) for key in (_pair_key(k, error) for k, _ in items)))


def default_volume_range(composition: tuple[tuple[str, int], ...]) -> tuple[float, float]:
    """Silicon's 14-26 Å^3/atom scaled by the composition's mean cubed covalent radius
    over silicon's (exactly silicon's range for Si)."""
    total = sum(c for _, c in composition)
    scale = sum(c * _radius(s) ** 3 for s, c in composition) / total / _radius("Si") ** 3
    lo, hi = SI_VOLUME_PER_ATOM_A3
    return (lo * scale, hi * scale) if scale != 1.0 else (lo, hi)


@dataclass(frozen=True)
class ReferenceCrystal:
    """A reference crystal given as a structure: its name and the structure as plain
    numbers (JSON-able; Atoms again with :meth:`atoms`).

    Attributes
    ----------
    name : str
    symbols : tuple of str
    cell : tuple of three 3-tuples (Å)
    scaled_positions : tuple of 3-tuples
    """

    name: str
    symbols: tuple[str, ...]
    cell: tuple[tuple[float, float, float], ...]
    scaled_positions: tuple[tuple[float, float, float], ...]

    @classmethod
    def from_atoms(cls, name: str, atoms: Any) -> "ReferenceCrystal":
        return cls(str(name), tuple(atoms.get_chemical_symbols()),
                   tuple(tuple(float(x) for x in row) for row in np.asarray(atoms.cell)),
                   tuple(tuple(float(x) for x in row)
                         for row in atoms.get_scaled_positions(wrap=False)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReferenceCrystal":
        return cls(str(data["name"]), tuple(data["symbols"]),
                   tuple(tuple(float(x) for x in row) for row in data["cell"]),
                   tuple(tuple(float(x) for x in row) for row in data["scaled_positions"]))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "symbols": list(self.symbols),
                "cell": [list(r) for r in self.cell],
                "scaled_positions": [list(r) for r in self.scaled_positions]}

    def atoms(self) -> Any:
        from ase import Atoms

        atoms = Atoms(list(self.symbols), cell=np.array(self.cell),
                      scaled_positions=np.array(self.scaled_positions), pbc=True)
        atoms.info["crystal"] = self.name
        return atoms


def _structure(name: Any, value: Any, formula: str, error: type) -> ReferenceCrystal:
    if callable(value) and not hasattr(value, "get_positions"):
        value = value(formula)
    if not hasattr(value, "get_scaled_positions") or len(value) == 0:
        raise error(f"reference crystal {name!r}: not ASE Atoms (nor a callable "
                    f"builder(formula) returning them), got {type(value).__name__}")
    if not all(value.pbc):
        raise error(f"reference crystal {name!r} is not periodic in three directions")
    return ReferenceCrystal.from_atoms(name, value)


def _spec(value: str, symbols: tuple[str, ...], formula: str, error: type) -> str:
    try:
        spec = canonical_crystal(value)
    except UnknownCrystalError as exc:
        raise error(f"references: {exc}") from None
    if spec in CRYSTALS and len(symbols) != 1:
        raise error(f"references: {spec!r} is one of silicon's elemental phases, not "
                    f"defined for the compound {formula}; give the compound's crystals as "
                    "prototypes ('zincblende', 'rocksalt:a=4.2'), files ('file:x.cif'), "
                    "ASE Atoms, a callable builder(formula), or {name: Atoms}")
    if spec not in CRYSTALS:  # built now: a file or builder of other elements is refused
        try:
            build_crystal(spec, formula)
        except (UnknownCrystalError, ValueError) as exc:
            raise error(f"references: {exc}") from None
    return spec


def _entry(name: Any, value: Any, symbols: tuple[str, ...], formula: str, error: type
           ) -> str | ReferenceCrystal:
    if isinstance(value, ReferenceCrystal):
        return value if name is None or name == value.name \
            else ReferenceCrystal(str(name), *astuple(value)[1:])
    if isinstance(value, Mapping) and {"symbols", "cell", "scaled_positions"} <= set(value):
        return ReferenceCrystal.from_dict({"name": name, **value})
    if isinstance(value, str):
        spec = _spec(value, symbols, formula, error)
        if name is not None and name != reference_name(spec):
            return ReferenceCrystal.from_atoms(name, build_crystal(spec, formula))
        return spec
    if hasattr(value, "get_scaled_positions"):
        name = name or value.info.get("crystal") or value.get_chemical_formula()
    elif callable(value):
        name = name or getattr(value, "__name__", "crystal")
    return _structure(name, value, formula, error)


def normalise_references(raw: Any, composition: tuple[tuple[str, int], ...],
                         error: type = SettingsError) -> tuple[str | ReferenceCrystal, ...]:
    """The reference crystals of a search of ``composition`` (from
    :func:`parse_composition`) as crystal specs (:func:`~pytest_mlpval.crystals.
    build_crystal`, built for the composition's formula) and :class:`ReferenceCrystal`
    structures, in the order given, each name (:func:`reference_name`) once."""
    symbols, formula = tuple(s for s, _ in composition), formula_of(composition)
    if isinstance(raw, str) or hasattr(raw, "get_positions") or callable(raw) \
            or isinstance(raw, ReferenceCrystal):
        raw = (raw,)
    if isinstance(raw, Mapping) and not {"symbols", "cell"} <= set(raw):
        entries = [_entry(str(k), v, symbols, formula, error) for k, v in raw.items()]
    else:
        entries = [_entry(v.get("name") if isinstance(v, Mapping) else None, v, symbols,
                          formula, error) for v in raw]
    out: dict[str, str | ReferenceCrystal] = {}
    for entry in entries:
        name = reference_name(entry)
        if name in out and out[name] != entry:
            raise error(f"references: two different crystals are named {name!r}")
        out[name] = entry
    for entry in out.values():
        if isinstance(entry, ReferenceCrystal):
            foreign = sorted(set(entry.symbols) - set(symbols))
            if foreign:
                raise error(f"reference crystal {entry.name!r} has {', '.join(foreign)}, "
                            f"not in the composition's elements {', '.join(symbols)}")
    return tuple(out.values())


def reference_name(entry: str | ReferenceCrystal) -> str:
    """The name a reference crystal has in results: a named phase's name, a spec's
    :func:`~pytest_mlpval.crystals.crystal_label` (``zincblende``), a structure's name."""
    return crystal_label(entry) if isinstance(entry, str) else entry.name


def reference_atoms(entry: str | ReferenceCrystal, symbol: str = "Si") -> Any:
    """The unrelaxed crystal as ASE Atoms (a spec built for the element or formula
    ``symbol``)."""
    return build_crystal(entry, symbol) if isinstance(entry, str) else entry.atoms()


def relaxed_reference(entry: str | ReferenceCrystal, calc: Any, symbol: str = "Si",
                      pressure_GPa: float = 0.0, fmax_eV_A: float = 0.005,
                      steps: int = 500) -> RelaxResult:
    """The crystal relaxed with ``calc`` at ``pressure_GPa`` keeping its symmetry: a
    spec (built for the element or formula ``symbol``) through
    :func:`~pytest_mlpval.crystals.relaxed_crystal` (unchanged), a structure the same
    way. Raises :class:`~pytest_mlpval.crystals.RelaxationError` if it
    does not converge."""
    if isinstance(entry, str):
        return relaxed_crystal(entry, calc, symbol, pressure_GPa)
    result = relax(entry.atoms(), calc, pressure_GPa=pressure_GPa, fmax_eV_A=fmax_eV_A,
                   steps=steps, keep_symmetry=True)
    if not result.converged:
        raise RelaxationError(
            f"{entry.name} did not relax to fmax {fmax_eV_A} eV/Å in {steps} steps at "
            f"{pressure_GPa} GPa (residual {result.fmax_eV_A:.3g} eV/Å)")
    result.atoms.info["crystal"] = entry.name
    result.atoms.info["pressure_GPa"] = float(pressure_GPa)
    return result
