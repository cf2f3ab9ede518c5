"""Cost of a potential: time per force call and how it scales with system size
(plain library, no pytest).

The pytest layer measures with pytest-benchmark (``physics_tests.test_mlpval_cost``);
:func:`time_force_calls` is the same measurement for scripts and notebooks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from pytest_mlpval.protocols.base import Result
# the report's cost figures, computed from records (re-exported here, where they were)
from pytest_mlpval.results import accuracy_cost_points, scaling_exponent

__all__ = ["CostResult", "accuracy_cost_points", "cost_structure", "force_call",
           "scaling_exponent", "time_force_calls"]


def cost_structure(species: Sequence[str], repeat: int, seed: int = 0):
    """A ``repeat``³ supercell of ASE's reference crystal of ``species[0]`` (conventional
    cubic cell where ASE has one), rattled by 0.01 Å; with several species, atoms are
    relabelled at random (seeded) so every species appears."""
    from ase.build import bulk

    if not species:
        raise ValueError("cost_structure: give at least one species")
    try:
        cell = bulk(species[0], cubic=True)
    except (ValueError, RuntimeError, KeyError):
        cell = bulk(species[0])
    atoms = cell.repeat((repeat, repeat, repeat))
    rng = np.random.default_rng(seed)
    if len(species) > 1:
        symbols = [species[i % len(species)] for i in range(len(atoms))]
        atoms.set_chemical_symbols(list(rng.permutation(symbols)))
    atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
    return atoms


def force_call(calc: Any, atoms: Any):
    """A function that makes ``calc`` compute energy and forces of ``atoms`` afresh at
    every call (positions alternate by 1e-6 Å, so no result is served from a cache)."""
    work = atoms.copy()
    work.calc = calc
    sign = [1.0]

    def call():
        work.positions[0, 0] += sign[0] * 1e-6
        work.positions = work.positions  # mark the change for the calculator
        sign[0] = -sign[0]
        work.get_potential_energy()
        return work.get_forces()

    return call


@dataclass(frozen=True)
class CostResult(Result):
    """Timing of force calls on one structure.

    Attributes
    ----------
    n_atoms : int
    seconds : tuple of float
        Wall time of each timed call (s).

    ``metrics()``: ``n_atoms``, ``time_per_call_s`` (the median) and
    ``time_per_atom_us``, as the cost tests record them.
    """

    protocol: ClassVar[str] = "cost"

    n_atoms: int
    seconds: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return float(np.median(self.seconds))

    @property
    def per_atom_us(self) -> float:
        """Median time per atom per force call, in µs."""
        return 1e6 * self.median_s / self.n_atoms

    def metrics(self) -> dict[str, float]:
        return {"n_atoms": float(self.n_atoms), "time_per_call_s": self.median_s,
                "time_per_atom_us": self.per_atom_us}

    def units(self) -> dict[str, str]:
        return {"n_atoms": "atoms", "time_per_call_s": "s", "time_per_atom_us": "µs"}


def time_force_calls(calc: Any, atoms: Any, rounds: int = 5, warmup: int = 1) -> CostResult:
    call = force_call(calc, atoms)
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return CostResult(len(atoms), tuple(seconds))
