"""Reference crystals by name, built with ASE and relaxed with a candidate, optionally
under an external pressure.

Plain library (no pytest).

Geometries are the experimental (or, for st12, computed) structures of silicon, scaled to
another element by the ratio of covalent radii; a candidate then relaxes them. Sources of
the silicon geometries:

- diamond: a = 5.431 Å (experiment, 295 K; the reference data README).
- beta-Sn (I4_1/amd, Si on 4a): a = 4.686, c = 2.585 Å near 11 GPa (Jamieson, Science
  139, 762 (1963)).
- Imma (Si on 4e (0, 1/4, z)): a = 4.737, b = 4.502, c = 2.550 Å, z = -0.1939 at 13.2 GPa
  (McMahon and Nelmes, Phys. Rev. B 47, 8337 (1993)). In this setting z = 0.125 is
  beta-Sn and z = 0.25 simple hexagonal; Imma lies between (6 neighbours at 2.39-2.55 Å
  and 2 at 2.74 Å).
- sh (P6/mmm, 1 atom): a = 2.527, c = 2.373 Å near 16 GPa (Hu and Spain, Solid State
  Commun. 51, 263 (1984)).
- bc8 (Ia-3, 16c (x, x, x)): a = 6.636 Å, x = 0.1003 (Kasper and Richards, Acta Cryst. 17,
  752 (1964)).
- st12 (P4_32_12, 4a (x, x, 0) and 8b (x, y, z)): a = 5.61, c = 6.78 Å with the internal
  coordinates of Ge-st12 (Bundy and Kasper, Science 139, 340 (1963)).
- fcc / bcc / hcp: close-packed and body-centred reference metals at the volume per atom
  of sh (a dense, metallic reference for high-pressure phases).

Naming a crystal
----------------
Every protocol that takes a ``crystal`` (the property protocols' settings, the ready-made
property tests' ``MLPVAL_CRYSTAL``) takes one string, a *crystal spec*, resolved by
:func:`build_crystal` for the element (or compound formula) ``symbol``:

- a **named phase** of silicon's table :data:`CRYSTALS` (``diamond``, ``beta-Sn``,
  ``Imma``, ``sh``, ``bc8``, ``st12``, ``fcc``, ``bcc``, ``hcp``; aliases such as
  ``beta_sn``), scaled by covalent radii as above. For an element whose ASE reference
  state (``ase.data.reference_states``) is fcc, bcc or hcp, ``fcc``, ``bcc`` and ``hcp``
  start at that state's volume per atom instead (its experimental lattice constant for
  its own structure: ``bcc`` Mo is a = 3.15 Å, conventional cubic cell);
- an **ASE prototype**, ``<structure>[:key=value,...]`` with a structure of
  ``ase.build.bulk`` (``sc``, ``fcc``, ``bcc``, ``hcp``, ``diamond``, ``zincblende``,
  ``rocksalt``, ``cesiumchloride`` (alias ``B2``), ``fluorite``, ``wurtzite``,
  ``tetragonal``, ``bct``, ``rhombohedral``, ``orthorhombic``, ``mcl``) and keys ``a``,
  ``b``, ``c``, ``alpha``, ``covera``, ``u`` (numbers), ``cubic``, ``orthorhombic``
  (``true``/``false``), ``symbols`` (a formula overriding ``symbol``: ``SiC``, ``NaCl``,
  ``CuZn``) and ``name`` (the label in property names). ``rocksalt:a=4.2``,
  ``zincblende:symbols=SiC,a=4.36``, ``B2:symbols=CuZn``. Without ``a`` the cell is
  ASE's default for the element, else scaled to the element's reference volume per atom
  (one element) or to nearest neighbours at the sum of covalent radii (compounds): a
  start for the relaxation;
- ``spacegroup:<JSON>``: the arguments of ``ase.spacegroup.crystal`` as a JSON object
  (``{"symbols": ["Mg"], "basis": [[0.3333, 0.6667, 0.25]], "spacegroup": 194,
  "cellpar": [3.21, 3.21, 5.21, 90, 90, 120]}``, optional ``"name"``); build it with
  :func:`spacegroup_spec`;
- ``file:<path>``: a structure file read by ``ase.io.read`` (CIF, POSCAR, extxyz, ...;
  the last frame). :func:`crystal_spec` makes the path absolute and appends
  ``#sha256=<first 16 hex digits>`` of the content, so that a campaign cache keyed by the
  spec sees a changed file; a file whose content no longer matches is refused. A relative
  path is taken from the current directory (the ready-made tests: from the test module's
  directory). The file's elements must be ``symbol``'s;
- a **Python callable** ``builder(symbol) -> Atoms``: ``python:<module>:<function>``
  (importable in campaign worker processes too), or a name given to
  :func:`register_crystal` (this process only).

:func:`crystal_label` gives the name a crystal takes inside property names
(``volume_<label>_per_atom_A3``; :func:`~pytest_mlpval.protocols.properties.slug`): the
named phase, the prototype (``rocksalt``), the file's stem, the ``name`` key.
Multi-element crystals take a formula as ``symbol`` (``build_crystal("rocksalt",
"NaCl")``); the named phases are elemental. ``symbol`` defaults to ``"Si"`` throughout
this module (the package's first example): pass the suite's element.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pytest_mlpval.crystal_specs import (
    PROTOTYPES, REGISTERED, UnknownCrystalError, build_prototype, call_builder, elements_of,
    file_digest, file_parts, prototype_args, read_crystal_file, spacegroup_args,
    spacegroup_spec, spec_forms, split_spec,
)
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.threads import one_blas_thread
from pytest_mlpval.units import EV_PER_A3_TO_GPA, is_chemical_symbol

__all__ = ["CRYSTALS", "PROTOTYPES", "UnknownCrystalError", "build_crystal", "relax",
           "RelaxResult", "relaxed_crystal", "RelaxationError", "crystal_names",
           "canonical_crystal", "crystal_label", "crystal_spec", "spacegroup_spec",
           "register_crystal", "space_group"]


class RelaxationError(MlpvalError, RuntimeError):
    """A relaxation did not converge, or the calculator failed during it."""


def _diamond(sym: str, s: float):
    from ase.build import bulk
    return bulk(sym, "diamond", a=5.431 * s, cubic=True)


def _beta_sn(sym: str, s: float):
    from ase.spacegroup import crystal
    return crystal(sym, [(0, 0, 0)], spacegroup=141,
                   cellpar=[4.686 * s, 4.686 * s, 2.585 * s, 90, 90, 90])


def _imma(sym: str, s: float):
    from ase.spacegroup import crystal
    return crystal(sym, [(0, 0.25, -0.1939)], spacegroup=74,
                   cellpar=[4.737 * s, 4.502 * s, 2.550 * s, 90, 90, 90])


def _sh(sym: str, s: float):
    from ase import Atoms
    a, c = 2.527 * s, 2.373 * s
    return Atoms(sym, cell=[[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]], pbc=True)


def _bc8(sym: str, s: float):
    from ase.spacegroup import crystal
    return crystal(sym, [(0.1003, 0.1003, 0.1003)], spacegroup=206,
                   cellpar=[6.636 * s] * 3 + [90] * 3)


def _st12(sym: str, s: float):
    from ase.spacegroup import crystal
    return crystal([sym, sym], [(0.0912, 0.0912, 0.0), (0.1730, 0.3784, 0.2486)],
                   spacegroup=96,
                   cellpar=[5.61 * s, 5.61 * s, 6.78 * s, 90, 90, 90])


_SH_VOLUME = 2.527 ** 2 * np.sqrt(3) / 2 * 2.373  # Å^3/atom

#: ASE reference-state structures whose volume per atom starts fcc, bcc and hcp
_METALLIC_STATES = ("fcc", "bcc", "hcp")


def _reference_state(sym: str) -> dict:
    from ase.data import atomic_numbers, reference_states

    return reference_states[atomic_numbers[sym]] or {}


def _metallic_volume(sym: str) -> float | None:
    """Volume per atom of ``sym``'s ASE reference state when that is fcc, bcc or hcp
    (None otherwise: the sh volume of silicon, scaled by covalent radii, is used)."""
    state = _reference_state(sym)
    if state.get("symmetry") not in _METALLIC_STATES or not state.get("a"):
        return None
    from ase.build import bulk
    ref = bulk(sym)
    return float(ref.get_volume() / len(ref))


def _fcc(sym: str, s: float):
    from ase.build import bulk
    if _reference_state(sym).get("symmetry") == "fcc":
        return bulk(sym, "fcc", cubic=True)
    volume = _metallic_volume(sym)
    if volume is not None:
        return bulk(sym, "fcc", a=(4 * volume) ** (1 / 3), cubic=True)
    return bulk(sym, "fcc", a=(4 * _SH_VOLUME) ** (1 / 3) * s, cubic=True)


def _bcc(sym: str, s: float):
    from ase.build import bulk
    if _reference_state(sym).get("symmetry") == "bcc":
        return bulk(sym, "bcc", cubic=True)
    volume = _metallic_volume(sym)
    if volume is not None:
        return bulk(sym, "bcc", a=(2 * volume) ** (1 / 3), cubic=True)
    return bulk(sym, "bcc", a=(2 * _SH_VOLUME) ** (1 / 3) * s, cubic=True)


def _hcp(sym: str, s: float):
    from ase.build import bulk
    if _reference_state(sym).get("symmetry") == "hcp":
        return bulk(sym, "hcp")
    volume = _metallic_volume(sym)
    if volume is not None:
        a = (2 * volume / (np.sqrt(3) / 2 * np.sqrt(8 / 3))) ** (1 / 3)
    else:
        a = (2 * _SH_VOLUME / (np.sqrt(3) / 2 * np.sqrt(8 / 3))) ** (1 / 3) * s
    return bulk(sym, "hcp", a=a, c=a * np.sqrt(8 / 3))


#: name -> (builder, coordination of the ideal Si structure within 2.85 Å, space group)
CRYSTALS: dict[str, tuple[Callable[[str, float], Any], int, int]] = {
    "diamond": (_diamond, 4, 227),
    "beta-Sn": (_beta_sn, 6, 141),
    "Imma": (_imma, 8, 74),
    "sh": (_sh, 8, 191),
    "bc8": (_bc8, 4, 206),
    "st12": (_st12, 4, 96),
    "fcc": (_fcc, 12, 225),
    "bcc": (_bcc, 8, 229),
    "hcp": (_hcp, 12, 194),
}

_ALIASES = {name.lower(): name for name in CRYSTALS}
_ALIASES.update({"beta_sn": "beta-Sn", "betasn": "beta-Sn", "beta-tin": "beta-Sn",
                 "simple-hexagonal": "sh", "simple_hexagonal": "sh", "si-v": "sh"})


def space_group(atoms: Any, symprec: float = 1e-3) -> tuple[int, str]:
    """Space-group number and international symbol of ``atoms`` (spglib). Raises
    ``spglib.SpglibError`` when spglib cannot tell (spglib's new error handling: errors
    are raised rather than returned as None with a deprecation warning)."""
    import spglib
    import spglib.error

    spglib.error.OLD_ERROR_HANDLING = False
    cell = (np.asarray(atoms.cell[:]), atoms.get_scaled_positions(), atoms.numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    return int(dataset.number), str(dataset.international)


def crystal_names() -> list[str]:
    """The named phases (:data:`CRYSTALS`)."""
    return list(CRYSTALS)


def register_crystal(name: str, builder: Callable[[str], Any]) -> None:
    """Make ``name`` a crystal spec built by ``builder(symbol) -> Atoms`` in this process
    (campaign worker processes do not see it: use ``python:<module>:<function>`` there)."""
    if not isinstance(name, str) or not name or ":" in name or not callable(builder):
        raise ValueError("register_crystal takes a name without ':' and a callable")
    if name.lower() in _ALIASES:
        raise ValueError(f"{name!r} is a named phase already")
    REGISTERED[name] = builder


def _known() -> str:
    return f"known: {', '.join(CRYSTALS)}; or {spec_forms()}"


def canonical_crystal(name: str) -> str:
    """The canonical form of a crystal spec: the name under which :data:`CRYSTALS`
    knows a named phase (``"beta_sn"`` -> ``"beta-Sn"``), else the spec itself (checked
    for its syntax, nothing built). Raises :class:`UnknownCrystalError` naming the known
    crystals."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownCrystalError(f"unknown crystal {name!r}; {_known()}")
    if name.lower() in _ALIASES:
        return _ALIASES[name.lower()]
    if name in REGISTERED:
        return name
    head, rest = split_spec(name)
    kind = head.lower()
    if kind == "file" and rest:
        return name.strip()
    if kind == "spacegroup":
        spacegroup_args(rest)
        return name.strip()
    if kind == "python" and rest.count(":") == 1:
        return name.strip()
    try:
        prototype_args(head, rest)
    except UnknownCrystalError as exc:
        if str(exc).startswith("unknown crystal"):
            raise UnknownCrystalError(f"unknown crystal {name!r}; {_known()}") from None
        raise
    return name.strip()


def crystal_spec(value: Any, base_dir: Any = None) -> str:
    """A crystal spec string from ``value``: a spec string (a ``file:`` path made
    absolute against ``base_dir`` (default: the current directory) with the content's
    ``#sha256=``), a path object (a file), a mapping of ``ase.spacegroup.crystal``
    arguments, or a module-level function ``builder(symbol)`` (``python:module:name``)."""
    import os
    from pathlib import Path

    if isinstance(value, os.PathLike):
        value = f"file:{os.fspath(value)}"
    if isinstance(value, dict):
        return spacegroup_spec(value["symbols"], value["basis"], value["spacegroup"],
                               value["cellpar"], value.get("name"))
    if callable(value):
        module, qualname = getattr(value, "__module__", ""), getattr(value, "__qualname__", "")
        if not module or "<" in qualname or "." in qualname:
            raise UnknownCrystalError(
                f"{value!r} is not a module-level function: name it with "
                "register_crystal(name, builder), or define it at a module's top level")
        return f"python:{module}:{qualname}"
    spec = canonical_crystal(value)
    head, rest = split_spec(spec)
    if head.lower() != "file":
        return spec
    path, _ = file_parts(rest)
    full = Path(path).expanduser()
    if not full.is_absolute():
        full = Path(base_dir if base_dir is not None else os.getcwd()) / full
    full = full.resolve()
    return f"file:{full}#sha256={file_digest(str(full))}"


def crystal_label(spec: str) -> str:
    """The crystal's name inside property names (before :func:`~pytest_mlpval.protocols.
    properties.slug`): a named phase's canonical name, a prototype's structure as
    written (or its ``name`` key), a file's stem, a spacegroup spec's ``name`` (else
    ``sg<number>``), a function's name."""
    import os

    spec = canonical_crystal(spec)
    if spec in CRYSTALS or spec in REGISTERED:
        return spec
    head, rest = split_spec(spec)
    kind = head.lower()
    if kind == "file":
        stem = os.path.basename(file_parts(rest)[0])
        return stem.split(".")[0] or stem
    if kind == "spacegroup":
        args = spacegroup_args(rest)
        return str(args.get("name") or f"sg{args['spacegroup']}")
    if kind == "python":
        return rest.split(":")[1].split(".")[-1]
    return str(prototype_args(head, rest)[1].get("name") or head)


def build_crystal(name: str, symbol: str = "Si") -> Any:
    """The crystal of spec ``name`` (see the module docstring: a named phase, a
    prototype, ``spacegroup:``, ``file:``, ``python:`` or a registered name) for element
    or formula ``symbol`` (default silicon) as ASE Atoms (primitive or conventional cell
    as built). Named phases are scaled from silicon by the ratio of covalent radii.

    ``atoms.info["crystal"]`` is the canonical spec. Raises
    :class:`UnknownCrystalError` naming the known crystals, ``ValueError`` for a
    ``symbol`` that is no element (or formula), and :class:`UnknownCrystalError` when a
    file's or function's crystal holds other elements than ``symbol``.
    """
    from ase.data import atomic_numbers, covalent_radii

    canonical = canonical_crystal(name)
    if canonical in CRYSTALS:
        if not is_chemical_symbol(symbol):
            try:
                several = len(set(elements_of(symbol))) > 1
            except ValueError:
                several = False
            raise ValueError(f"the named phase {canonical!r} is elemental; give a prototype "
                             f"for {symbol!r} (rocksalt, zincblende, ...)" if several else
                             f"{symbol!r} is not a chemical symbol")
        scale = covalent_radii[atomic_numbers[symbol]] / covalent_radii[atomic_numbers["Si"]]
        atoms = CRYSTALS[canonical][0](symbol, float(scale))
    else:
        head, rest = split_spec(canonical)
        kind = head.lower()
        if kind == "file":
            atoms = read_crystal_file(rest)
        elif kind == "spacegroup":
            from ase.spacegroup import crystal
            args = spacegroup_args(rest)
            args.pop("name", None)
            args.setdefault("symbols", elements_of(symbol))
            atoms = crystal(**args)
        elif kind == "python" or canonical in REGISTERED:
            atoms = call_builder(canonical if canonical in REGISTERED else head, rest,
                                 symbol, canonical)
        else:
            atoms = build_prototype(head, rest, symbol)
        if kind in ("file", "python", "spacegroup") or canonical in REGISTERED:
            wanted, have = set(elements_of(symbol)), set(atoms.get_chemical_symbols())
            if wanted != have:
                raise UnknownCrystalError(
                    f"crystal {canonical!r} holds {', '.join(sorted(have))}, not "
                    f"{', '.join(sorted(wanted))} (the suite's element(s))")
    atoms.info["crystal"] = canonical
    return atoms


@dataclass(frozen=True)
class RelaxResult:
    """A relaxed structure and how the relaxation went.

    Attributes
    ----------
    atoms : Atoms
        The relaxed structure (no calculator attached).
    energy_per_atom_eV, volume_per_atom_A3 : float
    enthalpy_per_atom_eV : float
        E + pV per atom at the target pressure.
    pressure_GPa : float
        Target pressure.
    converged : bool
    steps : int
    fmax_eV_A : float
        Largest residual generalised force at the end.
    """

    atoms: Any
    energy_per_atom_eV: float
    volume_per_atom_A3: float
    enthalpy_per_atom_eV: float
    pressure_GPa: float
    converged: bool
    steps: int
    fmax_eV_A: float


def relax(atoms: Any, calc: Any, *, pressure_GPa: float = 0.0, fmax_eV_A: float = 0.01,
          steps: int = 500, cell: bool = True, hydrostatic: bool = False,
          optimizer: str = "FIRE", keep_symmetry: bool = False) -> RelaxResult:
    """Relax positions (and, with ``cell=True``, the cell through ASE's
    ``FrechetCellFilter`` at ``pressure_GPa``) with ``calc``.

    Does not raise when the step limit is reached: ``converged`` says so. Raises
    :class:`RelaxationError` when the calculator raises or returns NaN.
    """
    import ase.optimize
    from ase.filters import FrechetCellFilter
    from ase.units import GPa

    atoms = atoms.copy()
    atoms.calc = calc
    if keep_symmetry:
        from ase.constraints import FixSymmetry
        atoms.set_constraint(FixSymmetry(atoms))
    target = atoms
    if cell:
        target = FrechetCellFilter(atoms, scalar_pressure=pressure_GPa * GPa,
                                   hydrostatic_strain=hydrostatic)
    opt_class = getattr(ase.optimize, optimizer, None)
    if opt_class is None:
        raise ValueError(f"unknown ASE optimizer {optimizer!r}")
    opt = opt_class(target, logfile=None)
    try:
        with warnings.catch_warnings(), one_blas_thread():
            # scipy's logm accuracy note on near-identity cells
            warnings.filterwarnings("ignore", "logm result may be inaccurate")
            converged = bool(opt.run(fmax=fmax_eV_A, steps=steps))
        energy = float(atoms.get_potential_energy())
        fmax = float(np.sqrt((target.get_forces() ** 2).sum(axis=1).max()))
    except Exception as exc:
        raise RelaxationError(f"relaxation failed after {opt.nsteps} steps: "
                              f"{type(exc).__name__}: {exc}") from exc
    if not np.isfinite(energy) or not np.isfinite(fmax):
        raise RelaxationError(f"relaxation gave a non-finite energy or force after "
                              f"{opt.nsteps} steps")
    atoms.set_constraint()
    n = len(atoms)
    volume = atoms.get_volume() / n
    result = atoms.copy()
    result.calc = None
    return RelaxResult(result, energy / n, volume, energy / n + pressure_GPa * volume
                       / EV_PER_A3_TO_GPA, pressure_GPa, converged, int(opt.nsteps), fmax)


def relaxed_crystal(name: str, calc: Any, symbol: str = "Si", pressure_GPa: float = 0.0,
                    fmax_eV_A: float = 0.005, steps: int = 500,
                    keep_symmetry: bool = True) -> RelaxResult:
    """Build crystal ``name`` and relax it with ``calc`` at ``pressure_GPa``, keeping its
    symmetry (ASE's ``FixSymmetry``): the pressure-adjusted reference of the tutorial's
    Fig. 7. Raises :class:`RelaxationError` if it does not converge."""
    result = relax(build_crystal(name, symbol), calc, pressure_GPa=pressure_GPa,
                   fmax_eV_A=fmax_eV_A, steps=steps, keep_symmetry=keep_symmetry)
    if not result.converged:
        raise RelaxationError(
            f"{name} did not relax to fmax {fmax_eV_A} eV/Å in {steps} steps at "
            f"{pressure_GPa} GPa (residual {result.fmax_eV_A:.3g} eV/Å)")
    result.atoms.info["crystal"] = canonical_crystal(name)
    result.atoms.info["pressure_GPa"] = float(pressure_GPa)
    return result
