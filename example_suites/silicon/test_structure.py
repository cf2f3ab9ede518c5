"""Structural validation (the tutorial's Figs. 7 and 8): does the candidate find the right
structures, not only the right numbers?

A random structure search (AIRSS-style: random cells and positions, relaxed with the
candidate) in two sizes: the quick tier (the default: 8 cells of 4-8 atoms, about a
minute with the bundled GAP on 2 cores; reruns read the campaign cache) and the full tier
(``--mlpval-tier=full``: the paper's 10,000 structures, the same code). Relaxations run on
``mlpval_workers`` local processes (pytest.ini) or a Dask cluster
(``--mlpval-dask-scheduler``); the search is declared (``mlpval_campaign``), so it starts
when collection ends, beside the suite's other campaigns.
"""

import math

import pytest

from pytest_mlpval.crystals import relaxed_crystal
from pytest_mlpval.protocols.rss import (RssSettings, assert_basin,
                                        assert_diamond_like_fraction,
                                        assert_failures_at_most, assert_no_basin, run_rss)
from pytest_mlpval.descriptors import coordination, similarity_to_reference

QUICK = RssSettings(n_structures=8, atoms_per_cell=(4, 8), seed=0, references=("diamond", "sh"))
FULL = RssSettings(n_structures=10000, atoms_per_cell=(2, 16), seed=0,
                   references=("diamond", "sh"))
SEARCH = pytest.mark.mlpval_campaign(run_rss, QUICK, full=FULL)


def search(mlpval):
    """The search of this tier (computed once per potential, then read from the cache)."""
    return mlpval.run(run_rss, FULL if mlpval.tier == "full" else QUICK)


@SEARCH
@pytest.mark.mlpval_expect(protocol="rss", max_n_failed=0, max_n_exploded=0)
def test_every_relaxation_finishes(mlpval):
    result = search(mlpval)
    assert_failures_at_most(result, max_failed=0)


@SEARCH
def test_no_spurious_low_density_minima(mlpval):
    """The first version of the bundled GAP failed this in the quick tier (isolated-atom
    energy at the training set's mean: open minima near 43 Å^3/atom, 0.26 eV/atom below
    its diamond). The refit passes the quick tier, but a 120-cell search still finds one
    at 52 Å^3/atom, 1.55 eV/atom below diamond (tests/physics/test_rss_contrast.py), so
    expect the full tier to fail for gap_si."""
    result = search(mlpval)
    # nothing more stable than diamond at a volume no silicon phase has (diamond 20.0)
    assert_no_basin(result, volume_per_atom_A3=(26.0, math.inf), energy_window_eV=0.0,
                    relative_to="diamond")


@SEARCH
def test_diamond_is_the_ground_state_of_the_search(mlpval):
    result = search(mlpval)
    # the lowest minimum is within 10 meV/atom of the candidate's own relaxed diamond
    assert result.metrics()["lowest_minus_diamond_eV"] > -0.010


@pytest.mark.slow
@SEARCH
def test_finds_diamond_and_the_high_pressure_basin(mlpval):
    """Fig. 8 of the tutorial: out of 10,000 searches GAP-18 finds 112 diamond-like
    minima and a low-volume sh-like basin; Stillinger-Weber finds 55 and no such basin."""
    result = search(mlpval)
    assert_diamond_like_fraction(result, min_fraction=0.008)
    assert_basin(result, volume_per_atom_A3=(12.0, 17.0), energy_window_eV=0.5,
                 relative_to="diamond", min_count=10)


@pytest.mark.parametrize("pressure_GPa", [0.0, 15.0])
def test_reference_crystals_keep_their_structure_under_pressure(mlpval, pressure_GPa):
    """The pressure-adjusted references of Fig. 7: diamond and sh relaxed with the
    candidate at the pressure; each stays most similar to itself, with its coordination."""
    from pytest_mlpval.crystals import build_crystal

    for name, cn in (("diamond", 4), ("sh", 8)):
        relaxed = relaxed_crystal(name, mlpval.calculator, pressure_GPa=pressure_GPa)
        assert coordination(relaxed.atoms).mean == cn, (name, pressure_GPa)
        similarity = similarity_to_reference(relaxed.atoms, build_crystal(name))[0]
        assert similarity.min() > 0.95, (name, pressure_GPa, similarity.min())
