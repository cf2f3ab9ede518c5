"""The contrast of the tutorial's Fig. 8 (Morrow, Gardner and Deringer, J. Chem. Phys. 158,
121501 (2023)) between Stillinger-Weber and a GAP, reproduced with the bundled GAP (fitted
to the mlearn PBE data) on a search of a few hundred structures instead of 10,000.

Claims tested, with thresholds fixed from DFT before looking at the searches:

- the GAP finds the low-volume (sh-like, high-pressure) basin, with more minima in it than
  SW, and SW has none (this last part does not hold at this size: xfail, see there). Basin:
  minima with at most 17.0 Å^3/atom, at most 0.5 eV/atom above the candidate's own
  relaxed diamond. DFT (PW91, the GAP-18 reference; ``shared/data/silicon/reference/
  dft_pw91_gap18.json``) puts beta-Sn at 15.38 and sh at 15.12 Å^3/atom, 0.32 and 0.34
  eV/atom above diamond (20.36 Å^3/atom); bc8 and st12, the next densest, are at 18.3-
  18.4. The 1.6 Å^3 and 0.15 eV allowances take in distorted and defective random
  minima. Energies are taken relative to diamond, not to the lowest minimum, because a
  potential with a spurious deep minimum would otherwise shift the window.
- the GAP finds more diamond-like minima (mean SOAP similarity > 0.99 to its ideal
  diamond) than SW (paper: 112 vs 55 out of 10,000).

- no false minimum: no minima far less dense than diamond and lower in energy. SW has
  none; both versions of the bundled GAP have them (strict xfail, see there).

Measured with the first version of the bundled GAP (seed 2023, 120 cells of 8 atoms per
potential, 2 workers on 2 cores shared with other jobs, load average 3.5-5): SW 6
diamond-like minima, 2 at <= 17 Å^3/atom; GAP 23 diamond-like, 27 at <= 17 Å^3/atom, 8
below diamond's energy near 54 Å^3/atom.
Time per relaxation per worker: SW 4.0 s (1.3 s in the calculator), GAP 24 s (20 s in
the calculator); wall 250 s (SW) and 1480 s (GAP). The numbers are printed (run with
``-s``) and kept in ``record_property``. The searches are cached in pytest's cache folder
(``.pytest_cache/d/mlpval-rss``), so a second run only classifies (about 20 s).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from pytest_mlpval.potentials import load_potential
from pytest_mlpval.protocols.base import CampaignOptions
from pytest_mlpval.protocols.rss import (
    RssSettings,
    run_rss,
    assert_basin,
    assert_no_basin,
    energy_volume_figure,
    find_basin,
)

GAP_XML = (Path(__file__).resolve().parents[2] / "example_suites" / "silicon" / "potential"
           / "gap_si_mlearn.xml")
N_STRUCTURES = 120
PARAMS = RssSettings(n_structures=N_STRUCTURES, atoms_per_cell=(8, 8), seed=2023,
                     references=("diamond", "sh", "beta-Sn"))
BASIN = {"volume_per_atom_A3": (0.0, 17.0), "energy_window_eV": 0.5,
         "relative_to": "diamond"}
WORKERS = 2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("quippy") is None,
                       reason="needs quippy-ase (the gap extra)"),
]


@pytest.fixture(scope="module")
def searches(request, tmp_path_factory):
    cache = request.config.cache
    folder = (cache.mkdir("mlpval-rss") if cache is not None
              else tmp_path_factory.mktemp("rss"))
    out = {}
    for name, spec in (("sw", "sw"), ("gap", str(GAP_XML))):
        start = time.perf_counter()
        out[name] = run_rss(load_potential(spec), PARAMS,
                            options=CampaignOptions(workers=WORKERS, cache_dir=folder))
        out[name + "_wall_s"] = time.perf_counter() - start
    return out


def _summary(result, wall_s):
    basin = find_basin(result, **BASIN)
    below = find_basin(result, (0.0, float("inf")), -0.01, "diamond")  # below diamond
    per_structure = sum(m.total_seconds for m in result.minima) / len(result)
    calc = sum(m.calculator_seconds for m in result.minima) / len(result)
    m = result.metrics()
    return {
        "structures": len(result), **{f"n_{s}": c for s, c in result.counts.items()},
        "n_diamond_like": result.n_diamond_like,
        "n_sh_like (sim > 0.99)": result.count_similar("sh", 0.99),
        "n_low_volume_basin": basin.count,
        "n_below_17_A3_any_energy": basin.n_in_volume,
        "n_below_diamond_energy": below.count,
        "lowest_minus_diamond_eV": m["lowest_minus_diamond_eV"],
        "lowest_volume_A3": m["lowest_volume_per_atom_A3"],
        "diamond_volume_A3": result.references["diamond"]["volume_per_atom_A3"],
        "sh_volume_A3": result.references["sh"].get("volume_per_atom_A3", float("nan")),
        "s_per_structure_per_worker": per_structure,
        "calculator_s_per_structure": calc,
        "wall_s_this_run": wall_s,
    }


def test_gap_finds_the_low_volume_basin(searches, record_property, tmp_path):
    sw, gap = searches["sw"], searches["gap"]
    rows = {"sw": _summary(sw, searches["sw_wall_s"]),
            "gap": _summary(gap, searches["gap_wall_s"])}
    print(f"\nRSS contrast ({N_STRUCTURES} 8-atom Si cells each, seed {PARAMS.seed}):")
    print(f"  {'':30s} {'SW':>12s} {'GAP':>12s}")
    for key in rows["sw"]:
        print(f"  {key:30s} {rows['sw'][key]:>12.4g} {rows['gap'][key]:>12.4g}")
    for name, row in rows.items():
        for key, value in row.items():
            record_property(f"{name}.{key}", value)
    energy_volume_figure({"SW": sw, "GAP (mlearn)": gap}, energy_max_eV=1.5,
                         relative_to="diamond").savefig(tmp_path / "rss_contrast.png")
    basin = assert_basin(gap, min_count=1, **BASIN)
    assert basin.count > find_basin(sw, **BASIN).count


@pytest.mark.xfail(strict=True, reason=(
    "measured (seed 2023, 120 cells): SW has 2 beta-Sn-like minima at 16.8 and 17.0 "
    "Å^3/atom (0.20-0.24 eV/atom above its diamond; its own beta-Sn relaxes to 17.2, sh "
    "to 18.1), against 27 for the GAP (15 of them below 16 Å^3/atom): SW's dense basin "
    "sits about 1.5-2 Å^3/atom above DFT's rather than being absent, and touches the "
    "17.0 Å^3/atom bound fixed beforehand"))
def test_sw_has_no_low_volume_basin(searches):
    assert_no_basin(searches["sw"], max_count=0, **BASIN)


def test_gap_finds_more_diamond_like_minima(searches):
    sw, gap = searches["sw"], searches["gap"]
    assert gap.n_diamond_like > sw.n_diamond_like, (
        f"diamond-like minima: GAP {gap.n_diamond_like}, SW {sw.n_diamond_like} of "
        f"{N_STRUCTURES} each")


SPURIOUS = {"volume_per_atom_A3": (25.0, float("inf")), "energy_window_eV": 0.0,
            "relative_to": "diamond"}


def test_sw_has_no_spurious_low_density_minima(searches):
    assert_no_basin(searches["sw"], **SPURIOUS)


@pytest.mark.xfail(strict=True, reason=(
    "measured (seed 2023, 120 cells): the refitted bundled GAP has 1 minimum at 52.1 "
    "Å^3/atom 1.55 eV/atom below its diamond (7 minima above 25 Å^3/atom in all); the "
    "first version had 8 near 54 Å^3/atom, 0.6 eV/atom below. Setting e0 from the "
    "cohesive energy did not remove them: the mlearn data hold nothing this open, and the "
    "fit extrapolates there (the suite's 8-cell quick search misses it)"))
def test_gap_has_no_spurious_low_density_minima(searches):
    """No minima far less dense than diamond and lower in energy: a false minimum."""
    assert_no_basin(searches["gap"], **SPURIOUS)
