"""The relaxed lattice: a crystal relaxed with its space group kept, and its cell.

Plain library (no pytest). One protocol of the properties family
(:mod:`pytest_mlpval.protocols.properties`), registered as ``"lattice"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from pytest_mlpval.protocols.base import CostMeter, register, relax_keeping_symmetry
from pytest_mlpval.protocols.properties.common import DEFAULT_CRYSTAL, conventional_cell
from pytest_mlpval.protocols.properties.common import (FAMILY, PropertyResult,
                                                       PropertySettings)
from pytest_mlpval.threads import single_threaded

__all__ = ["LatticeSettings", "LatticeResult", "relaxed_lattice"]


@dataclass(frozen=True)
class LatticeSettings(PropertySettings):
    """Settings of :func:`relaxed_lattice`.

    Attributes
    ----------
    crystal : str
        A crystal of :func:`~pytest_mlpval.crystals.build_crystal`.
    symbol : str
    pressure_GPa : float
        Target pressure of the relaxation.
    fmax_eV_A : float
    steps : int
        Optimiser steps allowed.
    symprec : float
        spglib's tolerance (Å).
    """

    VERSION: ClassVar[int] = 1
    group: ClassVar[str] = "lattice"

    crystal: str = DEFAULT_CRYSTAL
    pressure_GPa: float = 0.0
    fmax_eV_A: float = 1e-3
    steps: int = 500
    symprec: float = 1e-3


@dataclass(frozen=True)
class LatticeResult(PropertyResult):
    """A crystal relaxed with its symmetry kept (ASE ``FixSymmetry``, checked by spglib).

    Attributes
    ----------
    crystal, symbol : str
    cellpar : tuple of float
        a, b, c (Å) and alpha, beta, gamma (degree) of the conventional cell (as built
        for the named phases; spglib's for a crystal built primitive).
    volume_per_atom_A3, energy_per_atom_eV : float
    pressure_GPa : float
        Target pressure of the relaxation.
    spacegroup_before, spacegroup_after : str
        spglib's symbol and number before and after (equal, or the run raised).
    steps : int
    n_force_calls : int
    calculator_seconds, seconds : float
    """

    crystal: str
    symbol: str
    cellpar: tuple[float, ...]
    volume_per_atom_A3: float
    energy_per_atom_eV: float
    pressure_GPa: float
    spacegroup_before: str
    spacegroup_after: str
    steps: int
    n_force_calls: int
    calculator_seconds: float
    seconds: float
    protocol = "lattice"
    owns = r"lattice_\w+|volume_per_atom_A3|energy_per_atom_eV"

    @property
    def lattice_parameter_A(self) -> float:
        return float(self.cellpar[0])

    def metrics(self) -> dict[str, float]:
        a, b, c = self.cellpar[:3]
        out = {"lattice_parameter_A": a, "volume_per_atom_A3": float(self.volume_per_atom_A3),
               "energy_per_atom_eV": float(self.energy_per_atom_eV)}
        if not (math.isclose(a, b, rel_tol=1e-6) and math.isclose(a, c, rel_tol=1e-6)):
            out.update(lattice_b_A=b, lattice_c_A=c)
        out.update(self.cost_metrics())
        return out


@single_threaded
def relaxed_lattice(calc: Any, settings: LatticeSettings | None = None, *, atoms: Any = None,
                    **overrides: Any) -> LatticeResult:
    """Relax ``settings.crystal`` (or the given ``atoms``) at ``pressure_GPa`` keeping its
    space group, and report the cell. ``overrides`` replace fields of ``settings``
    (:class:`LatticeSettings`).

    Raises :class:`~pytest_mlpval.errors.ProtocolError` when the relaxation does not
    converge within ``steps`` or the calculator fails,
    :class:`~pytest_mlpval.protocols.base.SymmetryChangedError` when spglib finds another
    space group afterwards.
    """
    s = LatticeSettings.of(settings, **overrides)
    meter = CostMeter(calc)
    result, before, after = relax_keeping_symmetry(
        meter.calc, s.crystal, s.symbol, atoms, pressure_GPa=s.pressure_GPa,
        fmax_eV_A=s.fmax_eV_A, steps=s.steps, symprec=s.symprec)
    name = atoms.info.get("crystal", s.crystal) if atoms is not None else s.crystal
    cell = conventional_cell(result.atoms)  # rocksalt built primitive: the cube's a
    return LatticeResult(name, s.symbol, tuple(float(x) for x in cell.cell.cellpar()),
                         float(result.volume_per_atom_A3), float(result.energy_per_atom_eV),
                         float(s.pressure_GPa), before, after, result.steps, **meter.cost())


register("lattice", relaxed_lattice, LatticeSettings, LatticeResult, family=FAMILY)
