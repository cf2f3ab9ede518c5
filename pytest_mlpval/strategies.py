"""Hypothesis strategies for atomic structures (``ase.Atoms``).

Periodic cells of bounded shape and volume (or clusters in vacuum), positions with a
minimum separation under periodic boundary conditions, compositions drawn from a
potential's species, and supercell repeats. Everything is drawn from Hypothesis' own
primitives, so failing examples shrink: fewer atoms, a more regular cell, positions
nearer the origin. The default volumes and separations are silicon's, scaled to other
species by their covalent radii.
(:func:`min_distance` is :func:`pytest_mlpval.descriptors.min_distance`, here for the
tests that check a drawn structure.)

Example::

    from hypothesis import given
    from pytest_mlpval import strategies as mst

    @given(mst.structures(species=("Si",), max_atoms=6))
    def test_finite(atoms): ...
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from pytest_mlpval.descriptors import min_distance

__all__ = ["cells", "repeats", "species_scale", "structures", "min_distance"]


@st.composite
def cells(draw, volume_A3: float | None = None, max_length_ratio: float = 2.0,
          min_angle_deg: float = 60.0, max_angle_deg: float = 120.0):
    """A 3x3 cell matrix (rows are vectors, Å) with edge lengths within a factor
    ``max_length_ratio`` of each other and angles in [min, max] degrees, scaled to
    ``volume_A3`` when given (else the shortest edge is 1 Å)."""
    from ase.geometry import cellpar_to_cell

    ratio = st.floats(1.0, max_length_ratio, allow_nan=False)
    angle = st.floats(min_angle_deg, max_angle_deg, allow_nan=False)
    lengths = [1.0, draw(ratio), draw(ratio)]
    alpha, beta, gamma = draw(angle), draw(angle), draw(angle)
    # angles of a real parallelepiped
    assume(alpha + beta + gamma < 360.0 - 1e-6)
    assume(abs(alpha - beta) < gamma < alpha + beta)
    cell = cellpar_to_cell([*lengths, alpha, beta, gamma])
    volume = abs(np.linalg.det(cell))
    assume(volume > 1e-3)
    if volume_A3 is not None:
        cell *= (volume_A3 / volume) ** (1.0 / 3.0)
    return cell


@st.composite
def structures(
    draw,
    species: Sequence[str] = ("Si",),
    min_atoms: int = 1,
    max_atoms: int = 8,
    volume_per_atom_A3: tuple[float, float] | None = None,
    min_separation_A: float | None = None,
    max_length_ratio: float = 2.0,
    min_angle_deg: float = 60.0,
    max_angle_deg: float = 120.0,
    periodic: bool = True,
):
    """Periodic ``ase.Atoms``: ``min_atoms..max_atoms`` atoms of ``species``, volume per
    atom in ``volume_per_atom_A3`` (Å³), every pair (images included) at least
    ``min_separation_A`` apart. With ``periodic=False``, a cluster: the atoms in a cube
    of that volume, no cell, ``pbc`` False (a molecule in vacuum).

    The defaults are silicon's, (16, 30) Å³ and 2.0 Å (diamond: 20 Å³/atom, 2.35 Å
    bonds), scaled for other species by the cube and the ratio of their mean covalent
    radius to silicon's (:func:`species_scale`)."""
    import ase

    if not species:
        raise ValueError("structures(): give at least one species")
    scale = species_scale(species)
    if volume_per_atom_A3 is None:
        volume_per_atom_A3 = (16.0 * scale ** 3, 30.0 * scale ** 3)
    if min_separation_A is None:
        min_separation_A = 2.0 * scale
    n = draw(st.integers(min_atoms, max_atoms))
    symbols = draw(st.lists(st.sampled_from(list(species)), min_size=n, max_size=n))
    volume = n * draw(st.floats(*volume_per_atom_A3, allow_nan=False))
    if not periodic:
        return draw(_cluster(symbols, volume ** (1.0 / 3.0), min_separation_A))
    cell = draw(cells(volume, max_length_ratio, min_angle_deg, max_angle_deg))
    heights = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    assume(heights.min() >= min_separation_A)  # an atom must clear its own images
    unit = st.floats(0.0, 1.0, allow_nan=False, exclude_max=True)
    point = st.tuples(unit, unit, unit)
    placed: list[np.ndarray] = []
    for _ in range(n):
        # sequential placement: up to 20 tries per atom keeps rejection rare
        for _attempt in range(20):
            candidate = np.array(draw(point)) @ cell
            if not placed or _closest(candidate, placed, cell) >= min_separation_A:
                placed.append(candidate)
                break
        else:
            assume(False)
    atoms = ase.Atoms(symbols, positions=np.array(placed), cell=cell, pbc=True)
    assume(min_distance(atoms, min_separation_A) >= min_separation_A)
    return atoms


def species_scale(species: Sequence[str]) -> float:
    """Mean covalent radius of ``species`` over silicon's (ASE's radii; 1.0 for Si)."""
    from ase.data import atomic_numbers, covalent_radii

    radii = [covalent_radii[atomic_numbers[s]] for s in set(species)]
    return float(np.mean(radii) / covalent_radii[atomic_numbers["Si"]])


@st.composite
def _cluster(draw, symbols: Sequence[str], side_A: float, min_separation_A: float):
    import ase

    coordinate = st.floats(0.0, side_A, allow_nan=False)
    placed: list[np.ndarray] = []
    for _ in symbols:
        for _attempt in range(20):
            candidate = np.array(draw(st.tuples(coordinate, coordinate, coordinate)))
            if not placed or np.min(np.linalg.norm(np.array(placed) - candidate, axis=1)
                                    ) >= min_separation_A:
                placed.append(candidate)
                break
        else:
            assume(False)
    return ase.Atoms(list(symbols), positions=np.array(placed), pbc=False)


def _closest(point: np.ndarray, placed: list[np.ndarray], cell: np.ndarray) -> float:
    from ase.geometry import get_distances

    _, dist = get_distances(point[None, :], np.array(placed), cell=cell, pbc=True)
    return float(dist.min())


def repeats(max_repeat: int = 2):
    """Supercell repeat tuples (n1, n2, n3), each 1..max_repeat, not all 1."""
    one = st.integers(1, max_repeat)
    return st.tuples(one, one, one).filter(lambda r: r != (1, 1, 1))
