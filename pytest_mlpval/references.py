"""Reference values of physical properties (experiment and DFT), kept apart by kind.

Plain library (no pytest).

A reference table holds, per element, entries of the form::

    {"property": "C44_GPa", "value": 79.6, "unit": "GPa", "uncertainty": 0.5,
     "kind": "experiment", "conditions": {"temperature_K": 298, "pressure_GPa": 0},
     "source": "H. J. McSkimin & P. Andreatch, J. Appl. Phys. 35, 2161 (1964)",
     "confidence": "high", "provenance": "...", "note": "relaxed-ion constant"}

``kind`` is ``"experiment"`` or a DFT level written ``"DFT-<functional>"`` (``"DFT-PBE"``,
``"DFT-PW91"``); ``against="PBE"`` finds ``"DFT-PBE"``. Property names carry their unit
(``lattice_parameter_A``, ``bulk_modulus_GPa``, ``surface_energy_111_J_m2``; see
:func:`property_unit`), and every entry's ``unit`` must be that unit: a file that gives
``"kbar"`` for ``bulk_modulus_GPa`` is rejected, never converted silently.

The packaged tables live in ``pytest_mlpval/reference_data/<element name>.json``
(``silicon.json``, ``molybdenum.json``: the element's English name, lower case, with the
provenance in the README beside them), are found by name (:func:`packaged_elements`) and
read with :mod:`importlib.resources`. Users add their own files of the same schema for
any element or compound with ``load_references("Cu", extra_files=[...])`` (an element
with no packaged table needs them); their entries come first, so they become the
default entry for their (property, kind). A compound's table is keyed by its formula
as the suite names it (``"element": "SiC"``).

Property names are those the protocols compute (silicon.json shows them all): the
suite's ground-state crystal (its ``MLPVAL_CRYSTAL``, diamond for silicon) has the
plain names (``lattice_parameter_A``, ``bulk_modulus_GPa``, ``C11_GPa`` ... (the
independent constants of its symmetry: hexagonal adds ``C13_GPa``, ``C33_GPa``),
``vacancy_formation_eV``, ``surface_energy_<hkl>_J_m2`` such as
``surface_energy_110_J_m2``); the other crystals carry their label
(:func:`~pytest_mlpval.crystals.crystal_label`, lower case, ``-`` as ``_``):
``volume_<label>_per_atom_A3``, ``bulk_modulus_<label>_GPa``,
``energy_<label>_vs_<ground>_per_atom_eV``, ``<ground>_<label>_transition_GPa``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from pytest_mlpval.errors import MlpvalError

__all__ = [
    "SCHEMA", "ReferenceDataError", "ReferenceFileError", "ReferenceUnitError",
    "MissingReferenceError", "UnknownPropertyError", "ReferenceValue", "ReferenceTable",
    "load_references", "property_unit", "normalise_kind", "packaged_elements",
]

SCHEMA = "pytest-mlpval-references/1"

#: unit suffix of a property name -> unit (longest suffix wins)
UNIT_SUFFIXES: dict[str, str] = {
    "_per_atom_A3": "Å^3/atom", "_per_atom_eV": "eV/atom", "_per_atom_meV": "meV/atom",
    "_J_m2": "J/m^2", "_mJ_m2": "mJ/m^2", "_g_cm3": "g/cm^3", "_invA3": "1/Å^3",
    "_invA": "1/Å", "_per_K": "1/K", "_J_mol_K": "J/(mol K)", "_GPa": "GPa",
    "_THz": "THz", "_meV": "meV", "_eV": "eV", "_A2": "Å^2", "_A": "Å", "_K": "K",
    "_deg": "degree", "_s": "s",
}
#: names (or name endings / beginnings) of dimensionless properties
DIMENSIONLESS_SUFFIXES = ("_derivative", "coordination", "_calls", "_ratio", "_fraction",
                          "_stable", "_extrapolated", "_limit", "_count", "_points")
DIMENSIONLESS_PREFIXES = ("bulk_modulus_derivative", "n_")

#: spellings accepted in files for each canonical unit
UNIT_ALIASES: dict[str, str] = {
    "A": "Å", "Ang": "Å", "Angstrom": "Å", "angstrom": "Å",
    "A^3/atom": "Å^3/atom", "A3/atom": "Å^3/atom", "J/m2": "J/m^2", "mJ/m2": "mJ/m^2",
    "g/cm3": "g/cm^3", "1/A": "1/Å", "A^-1": "1/Å", "Å^-1": "1/Å", "1/A^3": "1/Å^3",
    "1/A3": "1/Å^3", "deg": "degree", "degrees": "degree", "J/mol/K": "J/(mol K)",
    "dimensionless": "", "-": "", "1": "",
}

#: packaged table per element: ``reference_data/<element's English name>.json``
#: (``silicon.json``, ``molybdenum.json``), found by :func:`packaged_elements`
_PACKAGED: dict[str, str] = {}


def _packaged() -> dict[str, str]:
    """Element symbol -> file name of each packaged table (read once)."""
    if not _PACKAGED:
        from importlib.resources import files

        from ase.data import atomic_names, chemical_symbols

        names = {name.lower(): symbol for name, symbol in zip(atomic_names, chemical_symbols)
                 if name}
        folder = files("pytest_mlpval").joinpath("reference_data")
        for entry in folder.iterdir():
            stem, dot, ext = entry.name.rpartition(".")
            if dot and ext == "json" and stem.lower() in names:
                _PACKAGED[names[stem.lower()]] = entry.name
    return _PACKAGED


class ReferenceDataError(MlpvalError, ValueError):
    """Base class of the reference-table errors."""


class ReferenceFileError(ReferenceDataError):
    """A reference file that cannot be used (unreadable, wrong schema, bad entry)."""


class ReferenceUnitError(ReferenceFileError):
    """An entry's unit is not the unit its property name carries."""


class UnknownPropertyError(ReferenceDataError, KeyError):
    """A property name without a recognised unit suffix."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingReferenceError(ReferenceDataError, LookupError):
    """No reference of the requested kind for a property."""


def property_unit(name: str) -> str:
    """The unit a property name carries (``"C44_GPa"`` -> ``"GPa"``; ``""`` for the
    dimensionless ones such as ``bulk_modulus_derivative``).

    Raises :class:`UnknownPropertyError` for a name that ends in no known unit suffix.
    """
    if not isinstance(name, str) or not name:
        raise UnknownPropertyError(f"a property name must be a non-empty string, got {name!r}")
    for suffix in sorted(UNIT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return UNIT_SUFFIXES[suffix]
    if name.endswith(DIMENSIONLESS_SUFFIXES) or name.startswith(DIMENSIONLESS_PREFIXES):
        return ""
    raise UnknownPropertyError(
        f"property {name!r} carries no unit: names end in a unit suffix "
        f"({', '.join(sorted(UNIT_SUFFIXES))}) or, when dimensionless, in one of "
        f"{', '.join(DIMENSIONLESS_SUFFIXES)}")


def canonical_unit(unit: str) -> str:
    unit = str(unit).strip()
    return UNIT_ALIASES.get(unit, unit)


def normalise_kind(kind: str) -> str:
    """``"experiment"`` or ``"DFT-<FUNCTIONAL>"`` (``"pbe"`` -> ``"DFT-PBE"``)."""
    text = str(kind).strip()
    if not text:
        raise ValueError("a reference kind must not be empty")
    if text.lower() in ("experiment", "exp", "expt", "experimental"):
        return "experiment"
    upper = text.upper()
    if upper.startswith("DFT-") or upper.startswith("DFT "):
        upper = upper[4:]
    return f"DFT-{upper}"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReferenceFileError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ReferenceFileError(f"{what} must be finite, got {value!r}")
    return value


@dataclass(frozen=True)
class ReferenceValue:
    """One reference number.

    Attributes
    ----------
    property : str
        Canonical name with its unit suffix (``"C44_GPa"``).
    value : float
        In ``unit``.
    unit : str
        The unit the property name carries.
    uncertainty : float or None
        One standard uncertainty (or the quoted error) in ``unit``; ``None`` if unknown.
    kind : str
        ``"experiment"`` or ``"DFT-<functional>"``.
    conditions : mapping
        ``temperature_K``, ``pressure_GPa`` and free-text notes (method, supercell).
    source : str
        Citation.
    confidence : str
        ``"high"``, ``"medium"``, ``"low"`` (with detail); build tight tolerances only on
        high-confidence values.
    provenance : str
        Where the number was taken from (file and key).
    note : str
    range : tuple of float or None
        Spread of literature values, where the source gives one.
    """

    property: str
    value: float
    unit: str
    uncertainty: float | None
    kind: str
    conditions: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    confidence: str = ""
    provenance: str = ""
    note: str = ""
    range: tuple[float, float] | None = None

    @property
    def temperature_K(self) -> float | None:
        value = self.conditions.get("temperature_K")
        return float(value) if isinstance(value, (int, float)) else None

    def describe(self) -> str:
        """One line: kind, value, conditions, source."""
        unc = f" ± {self.uncertainty:g}" if self.uncertainty is not None else ""
        cond = ", ".join(f"{k}={v}" for k, v in self.conditions.items())
        conf = f"; confidence {self.confidence}" if self.confidence else ""
        return (f"{self.kind} {self.value:g}{unc} {self.unit}"
                f"{f' ({cond})' if cond else ''}: {self.source}{conf}")

    def as_dict(self) -> dict[str, Any]:
        return {"property": self.property, "value": self.value, "unit": self.unit,
                "uncertainty": self.uncertainty, "kind": self.kind,
                "conditions": dict(self.conditions), "source": self.source,
                "confidence": self.confidence, "provenance": self.provenance,
                "note": self.note, "range": list(self.range) if self.range else None}

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], where: str = "entry") -> "ReferenceValue":
        """Validate one entry of a reference file; errors name ``where``."""
        if not isinstance(entry, Mapping):
            raise ReferenceFileError(f"{where}: an entry must be an object, got {entry!r}")
        missing = [k for k in ("property", "value", "unit", "kind", "source") if k not in entry]
        if missing:
            raise ReferenceFileError(f"{where}: missing field(s) {', '.join(missing)}")
        name = entry["property"]
        try:
            expected = property_unit(name)
        except UnknownPropertyError as exc:
            raise ReferenceFileError(f"{where}: {exc}") from None
        where = f"{where} ({name})"
        unit = canonical_unit(entry["unit"])
        if unit != expected:
            raise ReferenceUnitError(
                f"{where}: unit {entry['unit']!r} does not match the property, whose unit "
                f"is {expected or 'dimensionless'!r}; convert the value to {expected!r} "
                "(no unit conversion is done on reference files)")
        value = _number(entry["value"], f"{where}: value")
        unc = entry.get("uncertainty")
        if unc is not None:
            unc = _number(unc, f"{where}: uncertainty")
            if unc < 0:
                raise ReferenceFileError(f"{where}: uncertainty must be >= 0, got {unc}")
        conditions = entry.get("conditions") or {}
        if not isinstance(conditions, Mapping):
            raise ReferenceFileError(f"{where}: conditions must be an object")
        for key in ("temperature_K", "pressure_GPa"):
            if conditions.get(key) is not None and not isinstance(conditions[key], str):
                _number(conditions[key], f"{where}: conditions.{key}")
        span = entry.get("range")
        if span is not None:
            if not isinstance(span, (list, tuple)) or len(span) != 2:
                raise ReferenceFileError(f"{where}: range must be [low, high]")
            span = (_number(span[0], f"{where}: range"), _number(span[1], f"{where}: range"))
        try:
            kind = normalise_kind(entry["kind"])
        except ValueError as exc:
            raise ReferenceFileError(f"{where}: {exc}") from None
        return cls(name, value, expected, unc, kind, dict(conditions),
                   str(entry["source"]), str(entry.get("confidence", "")),
                   str(entry.get("provenance", "")), str(entry.get("note", "")), span)


@dataclass(frozen=True)
class ReferenceTable:
    """All reference values of one element, in priority order.

    Attributes
    ----------
    element : str
    entries : tuple of ReferenceValue
        The first entry of a (property, kind) is its default.
    files : tuple of str
        The files read, packaged first in the order given (users' files are listed
        first among entries, so they take precedence).
    """

    element: str
    entries: tuple[ReferenceValue, ...]
    files: tuple[str, ...] = ()

    def properties(self) -> list[str]:
        return sorted({e.property for e in self.entries})

    def kinds(self, property: str | None = None) -> list[str]:
        """Kinds present (for ``property`` if given), experiment first."""
        found = {e.kind for e in self.entries if property is None or e.property == property}
        return sorted(found, key=lambda k: (k != "experiment", k))

    def all(self, property: str, against: str | None = None) -> list[ReferenceValue]:
        kind = normalise_kind(against) if against is not None else None
        return [e for e in self.entries
                if e.property == property and (kind is None or e.kind == kind)]

    def get(self, property: str, against: str = "experiment", *,
            temperature_K: float | None = None) -> ReferenceValue:
        """The reference for ``property`` of kind ``against``.

        With ``temperature_K`` the entry whose temperature is closest is chosen;
        otherwise the first (default) entry. Raises :class:`MissingReferenceError`
        naming the property and the kinds that are available.
        """
        kind = normalise_kind(against)
        found = self.all(property, kind)
        if not found:
            raise MissingReferenceError(self._missing(property, kind))
        if temperature_K is not None:
            with_t = [e for e in found if e.temperature_K is not None]
            if with_t:
                return min(with_t, key=lambda e: abs(e.temperature_K - temperature_K))
        return found[0]

    def _missing(self, property: str, kind: str) -> str:
        kinds = self.kinds(property)
        if kinds:
            return (f"no {kind} reference for {property!r} in the {self.element} table; "
                    f"kinds available for it: {', '.join(kinds)}")
        close = difflib.get_close_matches(property, self.properties(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return (f"no reference at all for {property!r} in the {self.element} table{hint}; "
                f"add one with load_references({self.element!r}, extra_files=[...]); "
                f"properties with references: {', '.join(self.properties())}")

    def as_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "element": self.element, "files": list(self.files),
                "entries": [e.as_dict() for e in self.entries]}


def packaged_elements() -> list[str]:
    """The elements with a packaged table (``reference_data/<name>.json``)."""
    return sorted(_packaged())


def _read_packaged(element: str) -> tuple[dict[str, Any], str]:
    from importlib.resources import files

    name = _packaged()[element]
    resource = files("pytest_mlpval").joinpath("reference_data", name)
    return json.loads(resource.read_text(encoding="utf-8")), \
        f"pytest_mlpval/reference_data/{name}"


def _read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise ReferenceFileError(f"cannot read reference file {os.fspath(path)!r}: "
                                 f"{exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ReferenceFileError(f"reference file {os.fspath(path)!r} is not valid JSON: "
                                 f"{exc}") from exc


def _same_material(a: str, b: str) -> bool:
    """The same element, or the same compound whatever the order of its formula
    (``"SiC"`` and ``"CSi"``)."""
    if a == b:
        return True
    from ase.formula import Formula

    try:
        return Formula(a).count() == Formula(b).count()
    except ValueError:
        return False


def _entries(document: Any, element: str, name: str) -> list[ReferenceValue]:
    if not isinstance(document, Mapping) or not isinstance(document.get("entries"), list):
        raise ReferenceFileError(f"{name}: expected an object with an 'entries' list "
                                 f"(schema {SCHEMA!r})")
    schema = document.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise ReferenceFileError(f"{name}: schema {schema!r} is not {SCHEMA!r}")
    file_element = document.get("element")
    if file_element is not None and not _same_material(str(file_element), element):
        raise ReferenceFileError(f"{name}: holds references for element {file_element!r}, "
                                 f"not {element!r}")
    return [ReferenceValue.from_dict(entry, f"{name}: entry {i}")
            for i, entry in enumerate(document["entries"])]


def load_references(element: str = "Si", extra_files: Iterable[str | os.PathLike[str]] = (),
                    *, packaged: bool = True) -> ReferenceTable:
    """The reference table of ``element``: the packaged one (if any, and unless
    ``packaged=False``) plus users' files of the same schema.

    Entries of ``extra_files`` come first (in the order given), so a user's value becomes
    the default for its (property, kind). Raises :class:`ReferenceFileError` (or its
    subclass :class:`ReferenceUnitError`) naming the file and entry at fault.
    """
    if isinstance(extra_files, (str, os.PathLike)):
        extra_files = [extra_files]
    extra_files = list(extra_files)
    entries: list[ReferenceValue] = []
    names: list[str] = []
    for path in extra_files:
        entries += _entries(_read_file(path), element, os.fspath(path))
        names.append(os.fspath(path))
    if packaged and element in _packaged():
        document, name = _read_packaged(element)
        entries += _entries(document, element, name)
        names.append(name)
    elif not extra_files:
        raise MissingReferenceError(
            f"no packaged reference table for element {element!r} (packaged: "
            f"{', '.join(packaged_elements())}); pass your own with extra_files=[...]")
    return ReferenceTable(element, tuple(entries), tuple(names))
