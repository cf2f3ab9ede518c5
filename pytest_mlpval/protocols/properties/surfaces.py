"""Surface energies of any crystal on given Miller indices, relaxed, with the slab sizes
recorded.

Plain library (no pytest).

gamma = (E_slab - N e_bulk) / (2 A) for a slab of the relaxed crystal with vacuum on both
sides, positions relaxed at fixed cell (the mean of its two faces when they differ; a
compound's slab must keep the bulk composition, else the surface energy needs chemical
potentials and the protocol refuses it).

Diamond on (100), (110), (111) keeps silicon's slabs from ``ase.build`` (``diamond100``,
``diamond111``, ``surface`` for (110)). (111) is cut at the shuffle plane (atoms left
with a single bond are removed: one dangling bond per surface atom). (100) is relaxed in
a 1x1 cell by default, where dimers cannot form (the "unreconstructed" value, like the
PW91 reference of GAP-18); ``reconstruction="2x1"`` doubles the surface cell and starts
from paired surface atoms so that dimers can form.

Any other crystal (``crystal``: a spec of :func:`~pytest_mlpval.crystals.build_crystal`)
or facet: ``ase.build.surface`` of the relaxed conventional cell (spglib's, when the
crystal was built primitive; Miller indices refer to it: bcc (100), (110), (111) are
the cube's), repeated until the slab has at least ``layers`` atomic planes. The facet is
written as its indices (``"110"``, ``"211"``, ``"1,-1,0"``); property names carry it
(``surface_energy_110_J_m2``; a negative index as ``m1``: ``surface_energy_1m10_J_m2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pytest_mlpval.crystals import canonical_crystal
from pytest_mlpval.errors import ProtocolError, SettingsError
from pytest_mlpval.protocols.base import CostMeter, register, relax_keeping_symmetry
from pytest_mlpval.protocols.properties.common import DEFAULT_CRYSTAL
from pytest_mlpval.protocols.properties.common import (FAMILY, PropertyResult,
                                                       PropertySettings, conventional_cell,
                                                       optimise)
from pytest_mlpval.threads import single_threaded

__all__ = ["SurfaceSettings", "Surface110Settings", "Surface111Settings", "SurfaceResult",
           "surface_energy", "miller_indices", "facet_name", "EV_PER_A2_TO_J_PER_M2"]

#: 1 eV/Å^2 in J/m^2 (CODATA elementary charge)
EV_PER_A2_TO_J_PER_M2 = 16.02176634

#: the facets of diamond built by silicon's own slabs
DIAMOND_FACETS = ("100", "110", "111")


def miller_indices(facet: Any) -> tuple[int, int, int]:
    """Three Miller indices from ``"110"``, ``"(1-10)"``, ``"1,-1,0"``, ``"1 -1 0"`` or a
    sequence of three integers; SettingsError otherwise."""
    if isinstance(facet, (tuple, list)):
        parts = list(facet)
    else:
        text = str(facet).strip().strip("()").strip()
        if "," in text or " " in text:
            parts = [p for p in text.replace(",", " ").split() if p]
        else:
            parts, sign = [], 1
            for char in text.replace("m", "-"):
                if char == "-":
                    sign = -1
                    continue
                parts.append(sign * int(char) if char.isdigit() else char)
                sign = 1
    try:
        indices = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        indices = ()
    if len(indices) != 3 or not any(indices):
        raise SettingsError(f"facet must be three Miller indices, not all zero ('110', "
                            f"'1,-1,0'), got {facet!r}")
    return indices  # type: ignore[return-value]


def facet_name(indices: tuple[int, int, int]) -> str:
    """``(1, 1, 0)`` -> ``"110"``, ``(1, -1, 0)`` -> ``"1m10"``, ``(1, 10, 0)`` ->
    ``"1_10_0"``: the facet inside property names."""
    parts = [str(i) if i >= 0 else f"m{-i}" for i in indices]
    return ("_" if any(abs(i) > 9 for i in indices) else "").join(parts)


@dataclass(frozen=True)
class SurfaceSettings(PropertySettings):
    """Settings of :func:`surface_energy`.

    Attributes
    ----------
    facet : str
        Miller indices (:func:`miller_indices`: ``"100"``, ``"(110)"``, ``"1,-1,0"``),
        kept as :func:`facet_name` writes them.
    crystal : str
        A crystal spec (:func:`~pytest_mlpval.crystals.build_crystal`).
    symbol : str
    layers : int or None
        Atomic layers of the slab (even, >= 4; None: 12).
    vacuum_A : float
        Vacuum on each side.
    reconstruction : str
        ``"1x1"``, or ``"2x1"`` for diamond (100) (dimers).
    dimer_shift_A : float
        Pairing shift of the surface atoms of a 2x1 start.
    fmax_eV_A : float
    steps : int
    optimizer : str
        An optimiser of ``ase.optimize``.
    """

    VERSION: ClassVar[int] = 1
    group: ClassVar[str] = "surfaces"

    facet: str = "100"
    crystal: str = DEFAULT_CRYSTAL
    layers: int | None = None
    vacuum_A: float = 10.0
    reconstruction: str = "1x1"
    dimer_shift_A: float = 0.6
    fmax_eV_A: float = 5e-3
    steps: int = 2000
    optimizer: str = "BFGS"

    def __post_init__(self) -> None:
        facet = facet_name(miller_indices(self.facet))
        object.__setattr__(self, "facet", facet)
        if self.reconstruction not in ("1x1", "2x1") or \
                (self.reconstruction == "2x1" and (facet != "100" or
                                                   _crystal(self.crystal) != "diamond")):
            raise SettingsError(f"reconstruction {self.reconstruction!r} is not available "
                                f"for ({facet}) of {self.crystal}; use '1x1', or '2x1' for "
                                "diamond (100)")
        layers = int(self.layers or 12)
        if layers < 4 or layers % 2:
            raise SettingsError(f"layers must be an even number >= 4, got {layers}")


@dataclass(frozen=True)
class Surface110Settings(SurfaceSettings):
    """:class:`SurfaceSettings` of the (110) surface (protocol ``surface_110``)."""

    facet: str = "110"


@dataclass(frozen=True)
class Surface111Settings(SurfaceSettings):
    """:class:`SurfaceSettings` of the (111) surface (protocol ``surface_111``)."""

    facet: str = "111"


@dataclass(frozen=True)
class SurfaceResult(PropertyResult):
    """Energy of a relaxed surface.

    Attributes
    ----------
    facet : str
        As :func:`facet_name` writes it (``"110"``).
    symbol, reconstruction : str
    lattice_parameter_A, bulk_energy_per_atom_eV : float
    n_atoms, n_layers : int
        Atoms and atomic layers of the slab.
    thickness_A, vacuum_A, area_A2 : float
        Slab thickness (outermost atoms), vacuum on each side, area of one face.
    energy_J_m2, unrelaxed_energy_J_m2 : float
    steps : int
    n_force_calls : int
    calculator_seconds, seconds : float
    crystal : str
        The crystal spec.
    """

    facet: str
    symbol: str
    reconstruction: str
    lattice_parameter_A: float
    bulk_energy_per_atom_eV: float
    n_atoms: int
    n_layers: int
    thickness_A: float
    vacuum_A: float
    area_A2: float
    energy_J_m2: float
    unrelaxed_energy_J_m2: float
    steps: int
    n_force_calls: int
    calculator_seconds: float
    seconds: float
    crystal: str = DEFAULT_CRYSTAL
    protocol = "surface"
    owns = r"surface_\w+"

    def metrics(self) -> dict[str, float]:
        tag = self.facet if self.reconstruction == "1x1" else \
            f"{self.facet}_{self.reconstruction}"
        return {f"surface_energy_{tag}_J_m2": self.energy_J_m2,
                f"surface_energy_{tag}_unrelaxed_J_m2": self.unrelaxed_energy_J_m2,
                f"surface_{tag}_force_calls": float(self.n_force_calls)}


def _coordination(atoms: Any, cutoff_A: float) -> np.ndarray:
    from matscipy.neighbours import neighbour_list

    return np.bincount(neighbour_list("i", atoms, cutoff_A), minlength=len(atoms))


def _dimerise(slab: Any, cutoff_A: float, shift_A: float) -> None:
    """Move the surface atoms of each face pairwise towards each other along the
    direction of their dangling bonds (in-plane, perpendicular to the back bonds)."""
    from matscipy.neighbours import neighbour_list

    i, vec = neighbour_list("iD", slab, cutoff_A)
    z = slab.positions[:, 2]
    for face in (z > z.mean(), z < z.mean()):
        surface = np.where(face & (np.bincount(i, minlength=len(slab)) < 4))[0]
        back = vec[i == surface[0]][0, :2]  # in-plane part of one back bond
        direction = np.array([-back[1], back[0], 0.0]) / np.linalg.norm(back)
        along = slab.positions[surface] @ direction
        across = np.round(slab.positions[surface] @ np.cross([0, 0, 1], direction), 1)
        for row in np.unique(across):
            members = surface[across == row][np.argsort(along[across == row])]
            for a, b in zip(members[0::2], members[1::2]):
                slab.positions[a] += shift_A * direction
                slab.positions[b] -= shift_A * direction


def _slab(facet: str, symbol: str, a: float, layers: int, vacuum_A: float,
          reconstruction: str) -> Any:
    from ase.build import bulk as ase_bulk
    from ase.build import diamond100, diamond111, surface

    size = (2, 2, layers) if reconstruction == "2x1" else (1, 1, layers)
    if facet == "100":
        slab = diamond100(symbol, size=size, a=a, vacuum=vacuum_A, orthogonal=True)
    elif facet == "111":
        slab = diamond111(symbol, size=size, a=a, vacuum=vacuum_A, orthogonal=False)
    else:
        # ase.build.surface stacks repeats of two (110) atomic planes each
        slab = surface(ase_bulk(symbol, "diamond", a=a, cubic=True), (1, 1, 0), layers // 2,
                       vacuum=vacuum_A)
    slab.pbc = True
    return slab


def _crystal(spec: str) -> str:
    try:
        return canonical_crystal(spec)
    except ValueError:  # an invalid spec fails when the protocol builds it
        return spec


def _general_slab(cell: Any, indices: tuple[int, int, int], layers: int,
                  vacuum_A: float) -> Any:
    """``ase.build.surface`` of ``cell`` on ``indices``, repeated until it has at least
    ``layers`` atomic planes (at most 60 repeats)."""
    from ase.build import surface

    for repeats in range(1, 61):
        slab = surface(cell, indices, repeats, vacuum=vacuum_A)
        planes = len(np.unique(np.round(slab.positions[:, 2], 2)))
        if planes >= layers:
            slab.pbc = True
            return slab
    raise ProtocolError(f"no slab of {layers} planes on {indices} within 60 repeats")


def _check_stoichiometry(slab: Any, bulk: Any, what: str) -> None:
    def fractions(atoms: Any) -> dict[str, float]:
        symbols = atoms.get_chemical_symbols()
        return {e: symbols.count(e) / len(symbols) for e in set(symbols)}

    want, have = fractions(bulk), fractions(slab)
    if want.keys() != have.keys() or any(abs(want[e] - have[e]) > 1e-9 for e in want):
        raise ProtocolError(f"the {what} slab is not stoichiometric ({slab.get_chemical_formula()} "
                            f"vs bulk {bulk.get_chemical_formula()}): its surface energy needs "
                            "chemical potentials; choose a facet with stoichiometric planes")


@single_threaded
def surface_energy(calc: Any, settings: SurfaceSettings | None = None, **overrides: Any
                   ) -> SurfaceResult:
    """Relaxed surface energy of ``crystal`` (for ``symbol``) on ``facet`` (J/m^2).
    ``overrides`` replace fields of ``settings`` (:class:`SurfaceSettings`).

    ``layers``: atomic layers of the slab (even; 12 by default), recorded with the
    result with the slab's thickness in Å. Diamond's (100), (110), (111) are silicon's
    slabs; other crystals and facets are cut by ``ase.build.surface`` (module docstring).
    """
    s = SurfaceSettings.of(settings, **overrides)
    facet, symbol, reconstruction = s.facet, s.symbol, s.reconstruction
    layers = int(s.layers or 12)
    crystal = _crystal(s.crystal)
    meter = CostMeter(calc)
    bulk = relax_keeping_symmetry(meter.calc, crystal, symbol, None, fmax_eV_A=1e-3,
                                  steps=500)[0]
    if crystal == "diamond" and facet in DIAMOND_FACETS:
        a = float(bulk.atoms.cell.lengths()[0])
        bond = a * np.sqrt(3) / 4
        slab = _slab(facet, symbol, a, layers + (2 if facet == "111" else 0), s.vacuum_A,
                     reconstruction)
        if facet == "111":  # glide-plane ends (one bond) -> shuffle-plane surface
            del slab[np.where(_coordination(slab, 1.15 * bond) < 2)[0]]
    else:
        cell = conventional_cell(bulk.atoms)
        a = float(cell.cell.lengths()[0])
        slab = _general_slab(cell, miller_indices(facet), layers, s.vacuum_A)
        _check_stoichiometry(slab, cell, f"({facet}) {crystal}")
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    z = slab.positions[:, 2]
    n = len(slab)
    slab.calc = meter.calc
    unrelaxed = (float(slab.get_potential_energy()) - n * bulk.energy_per_atom_eV) / (2 * area)
    if reconstruction == "2x1":
        _dimerise(slab, 1.15 * bond, s.dimer_shift_A)
    steps_done = optimise(slab, s.optimizer, s.fmax_eV_A, s.steps,
                          f"({facet}) slab of {n} atoms")
    relaxed = (float(slab.get_potential_energy()) - n * bulk.energy_per_atom_eV) / (2 * area)
    return SurfaceResult(facet, symbol, reconstruction, a, bulk.energy_per_atom_eV, n,
                         len(np.unique(np.round(z, 1))), float(z.max() - z.min()),
                         float(s.vacuum_A), area, relaxed * EV_PER_A2_TO_J_PER_M2,
                         unrelaxed * EV_PER_A2_TO_J_PER_M2, steps_done, **meter.cost(),
                         crystal=crystal)


register("surface_100", surface_energy, SurfaceSettings, SurfaceResult, family=FAMILY)
register("surface_110", surface_energy, Surface110Settings, SurfaceResult, family=FAMILY)
register("surface_111", surface_energy, Surface111Settings, SurfaceResult, family=FAMILY)
