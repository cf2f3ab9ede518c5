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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.threads import one_blas_thread
from pytest_mlpval.units import EV_PER_A3_TO_GPA, is_chemical_symbol

__all__ = ["CRYSTALS", "UnknownCrystalError", "build_crystal", "relax", "RelaxResult",
           "relaxed_crystal", "RelaxationError", "crystal_names", "canonical_crystal",
           "space_group"]


class UnknownCrystalError(MlpvalError, ValueError):
    """No crystal of that name."""


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


def _fcc(sym: str, s: float):
    from ase.build import bulk
    return bulk(sym, "fcc", a=(4 * _SH_VOLUME) ** (1 / 3) * s, cubic=True)


def _bcc(sym: str, s: float):
    from ase.build import bulk
    return bulk(sym, "bcc", a=(2 * _SH_VOLUME) ** (1 / 3) * s, cubic=True)


def _hcp(sym: str, s: float):
    from ase.build import bulk
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
    return list(CRYSTALS)


def canonical_crystal(name: str) -> str:
    """The name under which :data:`CRYSTALS` knows ``name`` (``"beta_sn"`` ->
    ``"beta-Sn"``); raises :class:`UnknownCrystalError` naming the known crystals."""
    try:
        return _ALIASES[name.lower()]
    except (KeyError, AttributeError):
        raise UnknownCrystalError(
            f"unknown crystal {name!r}; known: {', '.join(CRYSTALS)}") from None


def build_crystal(name: str, symbol: str = "Si") -> Any:
    """The crystal ``name`` for element ``symbol`` as ASE Atoms (primitive or
    conventional cell as built), scaled from silicon by the ratio of covalent radii.

    Raises :class:`UnknownCrystalError` naming the known crystals.
    """
    from ase.data import atomic_numbers, covalent_radii

    canonical = canonical_crystal(name)
    if not is_chemical_symbol(symbol):
        raise ValueError(f"{symbol!r} is not a chemical symbol")
    scale = covalent_radii[atomic_numbers[symbol]] / covalent_radii[atomic_numbers["Si"]]
    atoms = CRYSTALS[canonical][0](symbol, float(scale))
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
