"""Vacancy formation energies, relaxed, with the cell sizes recorded (surface energies:
:mod:`.surfaces`).

Plain library (no pytest).

Vacancy: one atom removed from an n x n x n supercell of the relaxed conventional cell
(spglib's conventional cell when the crystal was built primitive), positions relaxed at
fixed cell, E_f = E(N-1) - (N-1) e_bulk for an element. Which atom: ``site`` (an index
of the relaxed cell: symmetry-inequivalent sites are different vacancies), or the first
atom of element ``species``. In a compound the vacancy of X costs
E_f = E(N-1) - E(N) + mu_X with the chemical potential ``chemical_potential_eV`` of X,
which the user gives (no default: it depends on the growth conditions; the X-rich limit
is the energy per atom of X's own crystal with the same potential); its metrics are
``vacancy_<X>_formation_eV``. Relaxation starts from
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

from pytest_mlpval.crystal_specs import elements_of
from pytest_mlpval.errors import ProtocolError, SettingsError
from pytest_mlpval.protocols.base import CostMeter, register, relax_keeping_symmetry
from pytest_mlpval.protocols.properties.common import DEFAULT_CRYSTAL
from pytest_mlpval.protocols.properties.common import (FAMILY, PropertyResult,
                                                       PropertySettings, conventional_cell,
                                                       optimise)
from pytest_mlpval.threads import single_threaded

__all__ = ["VacancySettings", "VacancyResult", "vacancy_formation", "VacancyConvergence",
           "vacancy_convergence"]


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
    site : int
        Index (in the relaxed cell) of the atom removed.
    species : str
        Remove the first atom of this element instead (a compound's sublattice).
    chemical_potential_eV : float or None
        mu of the removed element (required for a compound; None for an element: its
        bulk energy per atom).
    """

    VERSION: ClassVar[int] = 1
    group: ClassVar[str] = "vacancy"
    tiers: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"supercell": 2},
                                                  "full": {"supercell": 2}}

    crystal: str = DEFAULT_CRYSTAL
    supercell: int = 2
    start_shifts_A: tuple[float, ...] = (0.0, 0.4)
    rattle_A: float = 0.02
    seed: int = 0
    fmax_eV_A: float = 5e-3
    steps: int = 1000
    optimizer: str = "LBFGS"
    site: int = 0
    species: str = ""
    chemical_potential_eV: float | None = None

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
    species : str
        The element removed, when its name is in the metrics (a compound, or
        ``species`` given); empty for an element's plain ``vacancy_formation_eV``.
    chemical_potential_eV : float or None
        The mu used (None: the bulk energy per atom).
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
    species: str = ""
    chemical_potential_eV: float | None = None
    protocol = "vacancy"
    owns = r"vacancy_\w+|n_vacancy_supercell_atoms"

    def metrics(self) -> dict[str, float]:
        tag = f"vacancy_{self.species}_" if self.species else "vacancy_"
        return {f"{tag}formation_eV": self.formation_eV,
                f"{tag}formation_unrelaxed_eV": self.unrelaxed_formation_eV,
                "n_vacancy_supercell_atoms": float(self.n_atoms), **self.cost_metrics()}


@single_threaded
def vacancy_formation(calc: Any, settings: VacancySettings | None = None,
                      **overrides: Any) -> VacancyResult:
    """Relaxed vacancy formation energy in an ``supercell``^3 repetition of the relaxed
    conventional cell (64 atoms for diamond with the default 2). ``overrides`` replace
    fields of ``settings`` (:class:`VacancySettings`)."""
    s = VacancySettings.of(settings, **overrides)
    crystal, supercell = s.crystal, s.supercell
    if s.chemical_potential_eV is None and len(set(elements_of(s.symbol))) > 1:
        raise SettingsError(
            f"a vacancy in the compound {s.symbol} ({crystal}) needs its chemical "
            "potential: set chemical_potential_eV (e.g. the energy per atom of the removed "
            "element's own crystal with this potential, its rich limit)")
    meter = CostMeter(calc)
    bulk = relax_keeping_symmetry(meter.calc, crystal, s.symbol, None, fmax_eV_A=1e-3,
                                  steps=500)[0]
    cell = conventional_cell(bulk.atoms)
    perfect = cell.repeat(int(supercell))
    n = len(perfect)
    e_bulk = bulk.energy_per_atom_eV
    elements = sorted(set(perfect.get_chemical_symbols()))
    if s.species:
        if s.species not in elements:
            raise SettingsError(f"species {s.species!r} is not in {crystal} "
                                f"({', '.join(elements)})")
        index = perfect.get_chemical_symbols().index(s.species)
    else:
        index = int(s.site)
        if not 0 <= index < len(cell):
            raise SettingsError(f"site {index} is not an atom of the {len(cell)}-atom cell "
                                f"of {crystal}")
    removed = perfect[index].symbol
    mu = s.chemical_potential_eV
    if mu is None and len(elements) > 1:
        raise SettingsError(
            f"a vacancy of {removed} in the compound {crystal} ({', '.join(elements)}) needs "
            f"its chemical potential: set chemical_potential_eV (e.g. the energy per atom "
            f"of {removed}'s own crystal with this potential, the {removed}-rich limit)")
    tag = removed if (s.species or len(elements) > 1) else ""

    def formation(energy: float) -> float:
        if mu is None:
            return energy - (n - 1) * e_bulk
        return energy - n * e_bulk + float(mu)

    site = perfect.positions[index].copy()
    ideal = perfect.copy()
    del ideal[index]
    vectors = ideal.positions - site
    vectors -= np.round(vectors @ np.linalg.inv(ideal.cell)) @ np.asarray(ideal.cell)
    distance = np.linalg.norm(vectors, axis=1)
    first = distance < 1.2 * distance.min()
    ideal.calc = meter.calc
    unrelaxed = formation(float(ideal.get_potential_energy()))
    rng = np.random.default_rng(s.seed)
    energies, minima, total_steps = [], [], 0
    for shift in s.start_shifts_A:
        start = ideal.copy()
        start.positions[first] -= shift * vectors[first] / distance[first, None]
        start.positions += rng.normal(0.0, s.rattle_A, start.positions.shape)
        start.calc = meter.calc
        total_steps += optimise(start, s.optimizer, s.fmax_eV_A, s.steps,
                                f"vacancy in {n - 1} atoms (start shift {shift} Å)")
        energies.append(formation(float(start.get_potential_energy())))
        minima.append(start)
    best = int(np.argmin(energies))
    moved = minima[best].positions - ideal.positions
    moved -= np.round(moved @ np.linalg.inv(ideal.cell)) @ np.asarray(ideal.cell)
    return VacancyResult(
        crystal, s.symbol, int(supercell), n, float(cell.cell.lengths()[0]), e_bulk,
        energies[best], unrelaxed, tuple(map(float, s.start_shifts_A)), tuple(energies),
        float(s.rattle_A), int(s.seed), float(np.linalg.norm(moved, axis=1).max()),
        total_steps, **meter.cost(), species=tag,
        chemical_potential_eV=None if mu is None else float(mu))


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


register("vacancy", vacancy_formation, VacancySettings, VacancyResult, family=FAMILY)
