"""Vacancy formation and surface energies, relaxed, with the cell sizes recorded.

Plain library (no pytest).

Vacancy: one atom removed from an n x n x n supercell of the relaxed conventional cell,
positions relaxed at fixed cell, E_f = E(N-1) - (N-1) e_bulk. Relaxation starts from
the ideal vacancy and from starts with its first neighbours moved towards the empty site
(``start_shifts_A``), each with a small seeded rattle to break symmetry; the lowest minimum
is reported. The second start matters for short-ranged potentials: in Stillinger–Weber the
four neighbours of the vacancy (3.84 Å apart) sit just outside the 3.77 Å cutoff, feel no
force, and reach the reconstructed vacancy (2.7–2.8 eV instead of 4.34 eV) only from a
start that brings them into range.

Surfaces: a slab from ``ase.build`` (``diamond100``, ``diamond111``, ``surface`` for (110))
of the relaxed lattice, with vacuum on both sides, positions relaxed at fixed cell;
gamma = (E_slab - N e_bulk) / (2 A). (111) is cut at the shuffle plane (atoms left with a
single bond are removed: one dangling bond per surface atom). (100) is relaxed in a 1x1
cell by default, where dimers cannot form (the "unreconstructed" value, like the PW91
reference of GAP-18); ``reconstruction="2x1"`` doubles the surface cell and starts from
paired surface atoms so that dimers can form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from pytest_mlpval.errors import ProtocolError, SettingsError
from pytest_mlpval.protocols.base import CostMeter, register, relax_keeping_symmetry
from pytest_mlpval.protocols.properties.common import (FAMILY, PropertyResult,
                                                       PropertySettings)
from pytest_mlpval.threads import single_threaded

__all__ = ["VacancySettings", "VacancyResult", "vacancy_formation", "VacancyConvergence",
           "vacancy_convergence", "SurfaceSettings", "Surface110Settings",
           "Surface111Settings", "SurfaceResult", "surface_energy", "EV_PER_A2_TO_J_PER_M2"]

#: 1 eV/Å^2 in J/m^2 (CODATA elementary charge)
EV_PER_A2_TO_J_PER_M2 = 16.02176634


def _optimise(atoms: Any, optimizer: str, fmax_eV_A: float, steps: int, what: str) -> int:
    import ase.optimize

    opt_class = getattr(ase.optimize, optimizer, None)
    if opt_class is None:
        raise SettingsError(f"unknown ASE optimizer {optimizer!r}")
    opt = opt_class(atoms, logfile=None)
    if not opt.run(fmax=fmax_eV_A, steps=steps):
        raise ProtocolError(f"{what} did not relax to fmax {fmax_eV_A:g} eV/Å in {steps} steps")
    return int(opt.nsteps)


@dataclass(frozen=True)
class VacancySettings(PropertySettings):
    """Settings of :func:`vacancy_formation`.

    Attributes
    ----------
    crystal, symbol : str
    supercell : int
        Repetitions of the relaxed conventional cell in each direction (>= 1).
    start_shifts_A : tuple of float
        Inward displacement of the first neighbours at each start (at least one).
    rattle_A : float
        Standard deviation of the seeded rattle of each start.
    seed : int
    fmax_eV_A : float
    steps : int
        Of each relaxation.
    optimizer : str
        An optimiser of ``ase.optimize``.
    """

    VERSION: ClassVar[int] = 1
    group: ClassVar[str] = "vacancy"
    tiers: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"supercell": 2},
                                                  "full": {"supercell": 2}}

    crystal: str = "diamond"
    supercell: int = 2
    start_shifts_A: tuple[float, ...] = (0.0, 0.4)
    rattle_A: float = 0.02
    seed: int = 0
    fmax_eV_A: float = 5e-3
    steps: int = 1000
    optimizer: str = "LBFGS"

    def __post_init__(self) -> None:
        if int(self.supercell) < 1:
            raise SettingsError(f"supercell must be >= 1, got {self.supercell}")
        if not self.start_shifts_A:
            raise SettingsError("give at least one start in start_shifts_A")
        object.__setattr__(self, "start_shifts_A", tuple(self.start_shifts_A))


@dataclass(frozen=True)
class VacancyResult(PropertyResult):
    """Formation energy of a vacancy.

    Attributes
    ----------
    crystal, symbol : str
    supercell : int
        Repetitions of the conventional cell in each direction.
    n_atoms : int
        Atoms of the perfect supercell.
    lattice_parameter_A : float
    bulk_energy_per_atom_eV : float
    formation_eV : float
        Relaxed formation energy (lowest over the starts).
    unrelaxed_formation_eV : float
    start_shifts_A : tuple of float
        Inward displacement of the first neighbours at each start.
    start_formation_eV : tuple of float
        Relaxed formation energy from each start.
    rattle_A : float
    seed : int
    max_displacement_A : float
        Largest displacement from the ideal site in the lowest minimum.
    steps : int
        Optimiser steps, all starts together.
    n_force_calls : int
    calculator_seconds, seconds : float
    """

    crystal: str
    symbol: str
    supercell: int
    n_atoms: int
    lattice_parameter_A: float
    bulk_energy_per_atom_eV: float
    formation_eV: float
    unrelaxed_formation_eV: float
    start_shifts_A: tuple[float, ...]
    start_formation_eV: tuple[float, ...]
    rattle_A: float
    seed: int
    max_displacement_A: float
    steps: int
    n_force_calls: int
    calculator_seconds: float
    seconds: float
    protocol = "vacancy"
    owns = r"vacancy_\w+|n_vacancy_supercell_atoms"

    def metrics(self) -> dict[str, float]:
        return {"vacancy_formation_eV": self.formation_eV,
                "vacancy_formation_unrelaxed_eV": self.unrelaxed_formation_eV,
                "n_vacancy_supercell_atoms": float(self.n_atoms), **self.cost_metrics()}


@single_threaded
def vacancy_formation(calc: Any, settings: VacancySettings | None = None,
                      **overrides: Any) -> VacancyResult:
    """Relaxed vacancy formation energy in an ``supercell``^3 repetition of the relaxed
    conventional cell (64 atoms for diamond with the default 2). ``overrides`` replace
    fields of ``settings`` (:class:`VacancySettings`)."""
    s = VacancySettings.of(settings, **overrides)
    crystal, supercell = s.crystal, s.supercell
    meter = CostMeter(calc)
    bulk = relax_keeping_symmetry(meter.calc, crystal, s.symbol, None, fmax_eV_A=1e-3,
                                  steps=500)[0]
    perfect = bulk.atoms.repeat(int(supercell))
    n = len(perfect)
    e_bulk = bulk.energy_per_atom_eV
    site = perfect.positions[0].copy()
    ideal = perfect.copy()
    del ideal[0]
    vectors = ideal.positions - site
    vectors -= np.round(vectors @ np.linalg.inv(ideal.cell)) @ np.asarray(ideal.cell)
    distance = np.linalg.norm(vectors, axis=1)
    first = distance < 1.2 * distance.min()
    ideal.calc = meter.calc
    unrelaxed = float(ideal.get_potential_energy()) - (n - 1) * e_bulk
    rng = np.random.default_rng(s.seed)
    energies, minima, total_steps = [], [], 0
    for shift in s.start_shifts_A:
        start = ideal.copy()
        start.positions[first] -= shift * vectors[first] / distance[first, None]
        start.positions += rng.normal(0.0, s.rattle_A, start.positions.shape)
        start.calc = meter.calc
        total_steps += _optimise(start, s.optimizer, s.fmax_eV_A, s.steps,
                                 f"vacancy in {n - 1} atoms (start shift {shift} Å)")
        energies.append(float(start.get_potential_energy()) - (n - 1) * e_bulk)
        minima.append(start)
    best = int(np.argmin(energies))
    moved = minima[best].positions - ideal.positions
    moved -= np.round(moved @ np.linalg.inv(ideal.cell)) @ np.asarray(ideal.cell)
    return VacancyResult(
        crystal, s.symbol, int(supercell), n, float(bulk.atoms.cell.lengths()[0]), e_bulk,
        energies[best], unrelaxed, tuple(map(float, s.start_shifts_A)), tuple(energies),
        float(s.rattle_A), int(s.seed), float(np.linalg.norm(moved, axis=1).max()),
        total_steps, **meter.cost())


@dataclass(frozen=True)
class VacancyConvergence(PropertyResult):
    """Vacancy formation energies over supercell sizes.

    Attributes
    ----------
    results : tuple of VacancyResult
        In increasing supercell size.
    change_eV : float
        Formation energy of the largest cell minus that of the one before.
    """

    results: tuple[VacancyResult, ...]
    change_eV: float
    protocol = "vacancy_convergence"

    def metrics(self) -> dict[str, float]:
        out = dict(self.results[-1].metrics())
        out["vacancy_size_change_eV"] = self.change_eV
        out["vacancy_force_calls"] = float(sum(r.n_force_calls for r in self.results))
        return out


def vacancy_convergence(calc: Any, sizes: Sequence[int] = (2, 3),
                        settings: VacancySettings | None = None, **overrides: Any
                        ) -> VacancyConvergence:
    """:func:`vacancy_formation` with ``settings`` (and ``overrides``) for each supercell
    size in ``sizes``."""
    sizes = sorted(int(s) for s in sizes)
    if len(sizes) < 2:
        raise SettingsError(f"give at least two supercell sizes, got {sizes}")
    settings = VacancySettings.of(settings, **overrides)
    results = tuple(vacancy_formation(calc, settings.with_overrides(supercell=s))
                    for s in sizes)
    return VacancyConvergence(results, results[-1].formation_eV - results[-2].formation_eV)


@dataclass(frozen=True)
class SurfaceSettings(PropertySettings):
    """Settings of :func:`surface_energy` (of diamond-structure ``symbol``).

    Attributes
    ----------
    facet : str
        ``"100"``, ``"110"`` or ``"111"`` (parentheses allowed).
    symbol : str
    layers : int or None
        Atomic layers of the slab (even, >= 4; None: 12).
    vacuum_A : float
        Vacuum on each side.
    reconstruction : str
        ``"1x1"``, or ``"2x1"`` for (100) (dimers).
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
    layers: int | None = None
    vacuum_A: float = 10.0
    reconstruction: str = "1x1"
    dimer_shift_A: float = 0.6
    fmax_eV_A: float = 5e-3
    steps: int = 2000
    optimizer: str = "BFGS"

    def __post_init__(self) -> None:
        facet = str(self.facet).strip("()")
        if facet not in ("100", "110", "111"):
            raise SettingsError(f"facet must be '100', '110' or '111', got {facet!r}")
        object.__setattr__(self, "facet", facet)
        if self.reconstruction not in ("1x1", "2x1") or \
                (self.reconstruction == "2x1" and facet != "100"):
            raise SettingsError(f"reconstruction {self.reconstruction!r} is not available "
                                f"for ({facet}); use '1x1', or '2x1' for (100)")
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
        ``"100"``, ``"110"`` or ``"111"``.
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


@single_threaded
def surface_energy(calc: Any, settings: SurfaceSettings | None = None, **overrides: Any
                   ) -> SurfaceResult:
    """Relaxed surface energy of diamond-structure ``symbol`` on ``facet`` (J/m^2).
    ``overrides`` replace fields of ``settings`` (:class:`SurfaceSettings`).

    ``layers``: atomic layers of the slab (even; 12 by default), recorded with the
    result with the slab's thickness in Å.
    """
    s = SurfaceSettings.of(settings, **overrides)
    facet, symbol, reconstruction = s.facet, s.symbol, s.reconstruction
    layers = int(s.layers or 12)
    meter = CostMeter(calc)
    bulk = relax_keeping_symmetry(meter.calc, "diamond", symbol, None, fmax_eV_A=1e-3,
                                  steps=500)[0]
    a = float(bulk.atoms.cell.lengths()[0])
    bond = a * np.sqrt(3) / 4
    slab = _slab(facet, symbol, a, layers + (2 if facet == "111" else 0), s.vacuum_A,
                 reconstruction)
    if facet == "111":  # glide-plane ends (one bond) -> shuffle-plane surface
        del slab[np.where(_coordination(slab, 1.15 * bond) < 2)[0]]
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    z = slab.positions[:, 2]
    n = len(slab)
    slab.calc = meter.calc
    unrelaxed = (float(slab.get_potential_energy()) - n * bulk.energy_per_atom_eV) / (2 * area)
    if reconstruction == "2x1":
        _dimerise(slab, 1.15 * bond, s.dimer_shift_A)
    steps_done = _optimise(slab, s.optimizer, s.fmax_eV_A, s.steps,
                           f"({facet}) slab of {n} atoms")
    relaxed = (float(slab.get_potential_energy()) - n * bulk.energy_per_atom_eV) / (2 * area)
    return SurfaceResult(facet, symbol, reconstruction, a, bulk.energy_per_atom_eV, n,
                         len(np.unique(np.round(z, 1))), float(z.max() - z.min()),
                         float(s.vacuum_A), area, relaxed * EV_PER_A2_TO_J_PER_M2,
                         unrelaxed * EV_PER_A2_TO_J_PER_M2, steps_done, **meter.cost())


register("vacancy", vacancy_formation, VacancySettings, VacancyResult, family=FAMILY)
register("surface_100", surface_energy, SurfaceSettings, SurfaceResult, family=FAMILY)
register("surface_110", surface_energy, Surface110Settings, SurfaceResult, family=FAMILY)
register("surface_111", surface_energy, Surface111Settings, SurfaceResult, family=FAMILY)
