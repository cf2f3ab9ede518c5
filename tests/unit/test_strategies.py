"""Property tests of pytest_mlpval.strategies: generated structures respect every bound,
and failing examples shrink to small structures."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from pytest_mlpval import strategies as mst

FAST = settings(max_examples=15, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
#: for find(): generate and shrink only (the explain phase re-runs the strategy thousands
#: of times, about 35 ms a draw)
SHRINK = settings(max_examples=100, deadline=None, database=None,
                  phases=[Phase.generate, Phase.shrink])


def _cellpar(cell):
    from ase.geometry import cell_to_cellpar

    return cell_to_cellpar(np.asarray(cell))


@FAST
@given(mst.structures())
def test_default_structures(atoms):
    assert 1 <= len(atoms) <= 8
    assert set(atoms.get_chemical_symbols()) == {"Si"}
    assert all(atoms.pbc)
    assert 16.0 - 1e-6 <= atoms.get_volume() / len(atoms) <= 30.0 + 1e-6
    assert mst.min_distance(atoms) >= 2.0
    # positions inside the cell
    scaled = atoms.get_scaled_positions(wrap=False)
    assert np.all(scaled > -1e-9) and np.all(scaled < 1 + 1e-9)


@FAST
@given(mst.structures(species=("Si", "Ge", "C"), min_atoms=2, max_atoms=5,
                      volume_per_atom_A3=(20.0, 24.0), min_separation_A=2.2,
                      max_length_ratio=1.5, min_angle_deg=70.0, max_angle_deg=110.0))
def test_structures_respect_every_bound(atoms):
    assert 2 <= len(atoms) <= 5
    assert set(atoms.get_chemical_symbols()) <= {"Si", "Ge", "C"}
    assert 20.0 - 1e-6 <= atoms.get_volume() / len(atoms) <= 24.0 + 1e-6
    assert mst.min_distance(atoms) >= 2.2
    lengths, angles = _cellpar(atoms.cell)[:3], _cellpar(atoms.cell)[3:]
    assert lengths.max() / lengths.min() <= 1.5 + 1e-9
    assert np.all(angles >= 70.0 - 1e-6) and np.all(angles <= 110.0 + 1e-6)


@FAST
@given(mst.structures(species=("Si", "O"), min_atoms=6, max_atoms=6))
def test_structures_with_fixed_count(atoms):
    assert len(atoms) == 6
    assert set(atoms.get_chemical_symbols()) <= {"Si", "O"}


def test_structures_draw_every_species_eventually():
    """Compositions are drawn from the species: a structure with both appears."""
    found = find(mst.structures(species=("Si", "Ge"), max_atoms=4),
                 lambda a: {"Si", "Ge"} <= set(a.get_chemical_symbols()),
                 settings=SHRINK, random=random.Random(0))
    assert {"Si", "Ge"} <= set(found.get_chemical_symbols())
    assert 2 <= len(found) <= 4  # usually shrunk to two atoms


def test_structures_need_species():
    with pytest.raises(ValueError, match="at least one species"):
        find(mst.structures(species=()), lambda atoms: True, settings=SHRINK)


@FAST
@given(mst.cells(volume_A3=50.0, max_length_ratio=1.8, min_angle_deg=75.0,
                 max_angle_deg=105.0))
def test_cells_respect_bounds(cell):
    assert cell.shape == (3, 3)
    assert abs(np.linalg.det(cell)) == pytest.approx(50.0, rel=1e-9)
    par = _cellpar(cell)
    assert par[:3].max() / par[:3].min() <= 1.8 + 1e-9
    assert np.all(par[3:] >= 75.0 - 1e-6) and np.all(par[3:] <= 105.0 + 1e-6)


@FAST
@given(mst.cells())
def test_cells_without_volume_have_a_unit_edge(cell):
    par = _cellpar(cell)
    assert par[0] == pytest.approx(1.0)
    assert par[:3].min() == pytest.approx(1.0)
    assert np.linalg.det(cell) > 0


def test_failing_property_shrinks_to_three_atoms():
    """A property that fails for >= 3 atoms: Hypothesis shrinks the counterexample to
    exactly 3 atoms (a small structure to look at).

    Shrinking is a heuristic search: fewer atoms means a smaller cell (the volume is per
    atom), which can push the remaining atoms too close, so from some starting points it
    stops at 4-6 atoms (about 1 run in 8 at the default density, 1 in 30 at 25-30 Å³ per
    atom). Hypothesis' generation also depends on the modules loaded (it mines them for
    constants), so a seed does not pin the outcome: up to three independent searches."""
    sizes = []
    for seed in range(3):
        smallest = find(mst.structures(max_atoms=8, volume_per_atom_A3=(25.0, 30.0)),
                        lambda atoms: len(atoms) >= 3, settings=SHRINK,
                        random=random.Random(seed))
        assert 3 <= len(smallest) <= 8
        assert mst.min_distance(smallest) >= 2.0
        sizes.append(len(smallest))
        if len(smallest) == 3:
            break
    assert sizes[-1] == 3, f"shrinking stopped at {sizes} atoms"


def test_min_distance_counts_periodic_images():
    import ase
    from ase.build import bulk

    si = bulk("Si", "diamond", a=5.43)
    assert mst.min_distance(si) == pytest.approx(5.43 * math.sqrt(3) / 4)
    # one atom: the distance to its own images, i.e. the shortest lattice vector
    one = ase.Atoms("Si", positions=[[0, 0, 0]], cell=[2.5, 3.0, 4.0], pbc=True)
    assert mst.min_distance(one) == pytest.approx(2.5)
    # an open box: no images
    assert mst.min_distance(ase.Atoms("Si", positions=[[0, 0, 0]])) == math.inf
    assert mst.min_distance(ase.Atoms()) == math.inf


@settings(max_examples=30, database=None, deadline=None)
@given(mst.repeats(3))
def test_repeats_are_never_one(repeat):
    assert repeat != (1, 1, 1)
    assert len(repeat) == 3 and all(1 <= r <= 3 for r in repeat)


@settings(max_examples=20, database=None, deadline=None)
@given(st.data())
def test_repeats_default_max(data):
    repeat = data.draw(mst.repeats())
    assert repeat != (1, 1, 1) and all(r in (1, 2) for r in repeat)
