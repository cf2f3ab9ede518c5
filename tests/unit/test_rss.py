"""Random structure search (pytest_mlpval.protocols.rss): generator, relaxation statuses,
SOAP classification, cache, file round trip and the analysis assertions, with
Stillinger-Weber on small cells (2-6 atoms) so the whole file stays fast."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.potentials import Potential, load_potential
from pytest_mlpval.protocols.base import CampaignOptions
from pytest_mlpval.protocols.rss import (
    RssGenerationError,
    RssMinimum,
    RssResult,
    RssSettings,
    classify,
    generate,
    relax_references,
    run_rss,
    assert_basin,
    assert_diamond_like_fraction,
    assert_distributions_close,
    assert_failures_at_most,
    assert_no_basin,
    distribution_distance,
    energy_volume,
    energy_volume_figure,
    find_basin,
)

QUICK = RssSettings(n_structures=6, atoms_per_cell=(2, 6), seed=11, fmax_eV_A=0.05,
                      max_steps=300, references=("diamond", "sh"))


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw")


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """Campaign options with this module's cache."""
    return CampaignOptions(cache_dir=tmp_path_factory.mktemp("rss-cache"))


@pytest.fixture(scope="module")
def search(sw, cached):
    """Six SW minima, computed once (and cached)."""
    return run_rss(sw, QUICK, options=cached)


def _calculator(kind: str, n_atoms_bad: int = 3):
    """SW, except for cells of ``n_atoms_bad`` atoms: ``raise`` raises, ``nan`` gives a
    NaN energy (zero forces and stress, so the relaxation stops at once)."""
    from ase.calculators.calculator import Calculator, all_changes

    base = load_potential("sw").calculator

    class Faulty(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            if len(work) == n_atoms_bad and kind == "raise":
                raise RuntimeError(f"model cannot handle {len(work)} atoms")
            if len(work) == n_atoms_bad and kind == "nan":
                self.results = {"energy": math.nan, "free_energy": math.nan,
                                "forces": np.zeros((len(work), 3)), "stress": np.zeros(6)}
                return
            work.calc = base
            energy = work.get_potential_energy()
            self.results = {"energy": energy, "free_energy": energy,
                            "forces": work.get_forces(), "stress": work.get_stress()}

    return Faulty()


# -- parameters and generator ------------------------------------------------------------

def test_generation_is_reproducible_per_seed_and_index():
    params = dataclasses.replace(QUICK, n_structures=50)
    a, b = generate(params, 7), generate(dataclasses.replace(params, n_structures=3), 7)
    np.testing.assert_array_equal(a.positions, b.positions)  # n_structures plays no part
    np.testing.assert_array_equal(a.cell[:], b.cell[:])
    assert a.info["rss_index"] == 7 and a.info["rss_seed"] == 11
    other_seed = generate(dataclasses.replace(params, seed=12), 7)
    other_index = generate(params, 8)
    for other in (other_seed, other_index):
        assert len(other) != len(a) or not np.allclose(other.positions, a.positions)


@settings(max_examples=25, deadline=None)
@given(n=st.tuples(st.integers(1, 6), st.integers(0, 4)),
       vol=st.tuples(st.floats(12.0, 30.0), st.floats(0.0, 15.0)),
       sep=st.floats(0.3, 0.42), angle=st.floats(45.0, 89.0),
       ratio=st.floats(1.0, 2.5), seed=st.integers(0, 2**32), index=st.integers(0, 10**6))
def test_generator_respects_constraints(n, vol, sep, angle, ratio, seed, index):
    from ase.neighborlist import neighbor_list

    lo_n, hi_n = n[0], n[0] + n[1]
    vlo, vhi = vol[0], vol[0] + vol[1]
    d = sep * vlo ** (1 / 3)  # sparse enough that placement always succeeds
    params = RssSettings(atoms_per_cell=(lo_n, hi_n), volume_per_atom_A3=(vlo, vhi),
                           min_separation_A=d, min_angle_deg=angle,
                           max_angle_deg=180.0 - angle, max_length_ratio=ratio, seed=seed)
    atoms = generate(params, index)
    assert lo_n <= len(atoms) <= hi_n
    assert vlo * (1 - 1e-9) <= atoms.get_volume() / len(atoms) <= vhi * (1 + 1e-9)
    cellpar = atoms.cell.cellpar()
    assert np.all(cellpar[3:] >= angle - 1e-6) and np.all(cellpar[3:] <= 180 - angle + 1e-6)
    assert cellpar[:3].max() / cellpar[:3].min() <= ratio + 1e-9
    # ASE's neighbour list, independent of the generator's own check (images included)
    assert len(neighbor_list("d", atoms, d * (1 - 1e-9))) == 0
    assert set(atoms.get_chemical_symbols()) == {"Si"}


def test_compositions_hold_whole_formula_units():
    params = RssSettings(composition={"Si": 2, "O": 4}, atoms_per_cell=(3, 9),
                           volume_per_atom_A3=(12, 16), min_separation_A=1.5)
    assert params.composition == (("Si", 1), ("O", 2))  # ratios
    assert params.formula == "SiO2" and params.formula_units == (1, 2, 3)
    counts = {len(generate(params, i)) for i in range(12)}
    assert counts <= {3, 6, 9} and len(counts) > 1
    atoms = generate(params, 0)
    assert atoms.get_chemical_symbols().count("O") == 2 * atoms.get_chemical_symbols().count("Si")
    assert RssSettings(composition=["Si", "O", "O"]).composition == (("Si", 1), ("O", 2))
    assert RssSettings.from_dict(params.as_dict()) == params


@pytest.mark.parametrize("kwargs, match", [
    ({"volume_per_atom_A3": (26.0, 14.0)}, r"volume_per_atom_A3.*inverted"),
    ({"composition": "Xx"}, r"not a formula|unknown element"),
    ({"composition": {"Qq": 1}}, r"unknown element 'Qq'"),
    ({"atoms_per_cell": (4, 2)}, r"atoms_per_cell"),
    ({"composition": "SiO2", "atoms_per_cell": (4, 5)}, r"whole formula units of SiO2"),
    ({"min_separation_A": 4.0}, r"min_separation_A=4 Å is impossible"),
    ({"min_angle_deg": 95.0}, r"cell angles"),
    ({"max_length_ratio": 0.5}, r"max_length_ratio"),
    ({"n_structures": 0}, r"n_structures"),
    ({"seed": -1}, r"seed"),
    ({"optimizer": "Nope"}, r"optimizer 'Nope'"),
    ({"references": ("diamond", "nonsense")}, r"unknown crystal 'nonsense'"),
    ({"diamond_cutoff": 1.5}, r"diamond_cutoff"),
])
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RssSettings(**kwargs)


def test_crowded_settings_give_up_with_a_clear_error(sw):
    # passes the close-packing check (6.5 Å^3/atom) but random placement jams
    params = RssSettings(volume_per_atom_A3=(10.0, 10.0), min_separation_A=2.1,
                           atoms_per_cell=(8, 8), max_attempts=5)
    with pytest.raises(RssGenerationError, match=r"after max_attempts=5 cells .*too crowded"):
        run_rss(sw, params)


def test_composition_the_potential_does_not_cover(sw):
    params = RssSettings(composition="SiC", volume_per_atom_A3=(10, 20),
                           min_separation_A=1.5)
    with pytest.raises(ValueError, match=r"SiC has C, which the potential 'sw' does not"):
        run_rss(sw, params)


# -- relaxation, statuses, reproducibility ---------------------------------------------

def test_search_records_every_minimum(search):
    assert len(search) == 6 and [m.index for m in search.minima] == list(range(6))
    assert search.counts == {"converged": 6, "not_converged": 0, "failed": 0, "exploded": 0}
    for m in search.minima:
        assert m.final is not None and m.initial is not None and len(m.final) == m.n_atoms
        assert -4.4 < m.energy_per_atom_eV < -3.0  # SW diamond: -4.3366 eV/atom
        assert m.volume_per_atom_A3 == pytest.approx(m.final.get_volume() / m.n_atoms)
        assert m.fmax_eV_A <= 0.05 and m.n_force_calls >= m.n_steps > 0
        assert 0 < m.calculator_seconds < m.total_seconds and m.cpu_seconds > 0
        assert set(m.similarity) == {"diamond", "sh"}
    metrics, units = search.metrics(), search.units()
    assert set(metrics) == set(units) and all(isinstance(v, float) for v in metrics.values())
    assert metrics["n_converged"] == 6
    # seed 11 happens to relax one 2-atom cell into diamond (similarity 0.99999)
    assert metrics["n_diamond_like"] == 1 and metrics["diamond_like_fraction"] == 1 / 6
    assert search.minima[search.lowest.index].similarity["diamond"] > 0.999
    assert metrics["lowest_minus_diamond_eV"] > 0  # nothing below SW's diamond
    assert units["lowest_energy_per_atom_eV"] == "eV/atom"
    assert 0 < metrics["calculator_fraction"] < 1 and 0 < metrics["cpu_share"] <= 1.05
    assert metrics["seconds_outside_calculator_per_step"] > 0


def test_same_seed_same_minima_different_seed_differs(sw, search):
    again = run_rss(sw, dataclasses.replace(QUICK, n_structures=2))  # no cache: recomputed
    assert again.n_from_cache == 0
    for a, b in zip(again.minima, search.minima):
        assert a.energy_per_atom_eV == pytest.approx(b.energy_per_atom_eV, abs=1e-10)
        np.testing.assert_allclose(a.final.positions, b.final.positions, atol=1e-8)
    other = generate(dataclasses.replace(QUICK, seed=12), 0)
    assert not np.allclose(other.cell[:], search.minima[0].initial.cell[:])


def test_raising_calculator_fails_those_structures_only():
    params = RssSettings(n_structures=4, atoms_per_cell=(2, 4), seed=6)
    sizes = [len(generate(params, i)) for i in range(4)]
    assert 3 in sizes and set(sizes) != {3}
    result = run_rss(_calculator("raise"), params)
    for m, n in zip(result.minima, sizes):
        assert (m.status == "failed") == (n == 3)
    failed = [m for m in result.minima if m.status == "failed"]
    assert all("cannot handle 3 atoms" in m.error and m.final is None for m in failed)
    assert all(math.isnan(m.energy_per_atom_eV) for m in failed)
    assert result.counts["failed"] == sizes.count(3)
    with pytest.raises(MlpvalAssertionError) as info:
        assert_failures_at_most(result, max_failed=0)
    message = str(info.value)
    assert f"{sizes.count(3)} failed of 4 structures" in message
    assert "status" in message and "limit" in message and "cannot handle 3 atoms" in message
    assert assert_failures_at_most(result, max_failed=sizes.count(3))["failed"] == sizes.count(3)


def test_nan_calculator_is_failed_with_the_reason():
    params = RssSettings(n_structures=4, atoms_per_cell=(2, 4), seed=5, max_steps=20)
    result = run_rss(_calculator("nan", n_atoms_bad=2), params)
    sizes = [m.n_atoms for m in result.minima]
    assert 2 in sizes
    for m in result.minima:
        assert (m.status == "failed") == (m.n_atoms == 2)
        if m.status == "failed":
            assert "non-finite energy" in m.error


def test_step_limit_gives_not_converged(sw):
    result = run_rss(sw, RssSettings(n_structures=3, atoms_per_cell=(4, 6), max_steps=2))
    assert result.statuses == ("not_converged",) * 3
    assert all(m.n_steps == 2 and m.fmax_eV_A > 0.05 for m in result.minima)
    with pytest.raises(MlpvalAssertionError, match="3 not_converged of 3"):
        assert_failures_at_most(result, max_not_converged=0)


def test_energy_below_the_floor_is_exploded():
    from pytest_mlpval.testing import PerturbedCalculator

    calc = PerturbedCalculator(load_potential("sw").calculator, energy_shift_eV_atom=-100.0)
    result = run_rss(calc, RssSettings(n_structures=2, atoms_per_cell=(2, 4), max_steps=5))
    assert result.statuses == ("exploded", "exploded")
    assert "below the sanity floor -50" in result.minima[0].error
    assert result.usable == () and math.isnan(result.metrics()["lowest_energy_per_atom_eV"])
    with pytest.raises(MlpvalAssertionError, match="2 exploded of 2"):
        assert_failures_at_most(result)



def _expanding():
    """Energy falls with the volume (-1 eV per Å^3) and no force: the cell grows without
    end."""
    from ase.calculators.calculator import Calculator, all_changes

    class Expanding(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            volume = self.atoms.get_volume()
            self.results = {"energy": -volume, "free_energy": -volume,
                            "forces": np.zeros((len(self.atoms), 3)),
                            "stress": np.array([-1.0, -1.0, -1.0, 0.0, 0.0, 0.0])}

    return Expanding()


def test_a_ballooning_cell_is_stopped_as_exploded():
    settings = RssSettings(n_structures=2, atoms_per_cell=(2, 2), references=(),
                           sane_volume_per_atom_A3=(1.0, 30.0))
    result = run_rss(_expanding(), settings)
    assert result.statuses == ("exploded", "exploded")
    for m in result.minima:  # stopped at ten times the sane volume, long before max_steps
        assert "the cell ballooned to" in m.error and "(stopped beyond 300)" in m.error
        assert m.final is None and 0 < m.n_force_calls < 50

# -- cache -----------------------------------------------------------------------------

def test_second_run_comes_from_the_cache(sw, search, cached):
    calls = []
    again = run_rss(sw, QUICK, options=dataclasses.replace(cached, progress=calls.append))
    assert again.n_from_cache == 6 and again.task_seconds == 0.0
    assert again.executor == "cache" and again.cache_path == search.cache_path
    assert calls[-1].done == calls[-1].total == 6 and calls[-1].from_cache == 6
    np.testing.assert_array_equal(again.energies_per_atom_eV, search.energies_per_atom_eV)
    np.testing.assert_allclose(again.similarities("diamond"), search.similarities("diamond"))
    # a longer search reuses the structures of the shorter one
    longer = run_rss(sw, dataclasses.replace(QUICK, n_structures=7), options=cached)
    assert longer.n_from_cache == 6 and not longer.minima[6].from_cache
    # the classification is not part of the key: another cutoff reuses all relaxations
    cutoff = run_rss(sw, dataclasses.replace(QUICK, diamond_cutoff=0.5), options=cached)
    assert cutoff.n_from_cache == 6 and cutoff.n_diamond_like == 6  # all sims > 0.7


def test_changed_setting_or_potential_recomputes(sw, search, cached):
    short = dataclasses.replace(QUICK, n_structures=1)
    assert run_rss(sw, short, options=cached).n_from_cache == 1
    changed = run_rss(sw, dataclasses.replace(short, fmax_eV_A=0.04), options=cached)
    assert changed.n_from_cache == 0 and changed.cache_path != search.cache_path
    other = Potential(dataclasses.replace(sw.info, sha256="0" * 64), sw.calculator)
    recomputed = run_rss(other, short, options=cached)
    assert recomputed.n_from_cache == 0 and recomputed.task_seconds > 0


# -- SOAP classification ------------------------------------------------------------

def test_diamond_counts_as_diamond_like_rattled_sh_does_not(sw):
    from pytest_mlpval.crystals import build_crystal

    params = RssSettings(references=("diamond", "sh"))
    crystals, info = relax_references(sw.calculator, params)
    assert info["diamond"]["volume_per_atom_A3"] == pytest.approx(20.02, abs=0.05)
    diamond = crystals["diamond"].repeat((2, 1, 1))
    sh = build_crystal("sh").repeat((2, 2, 3))
    sh.rattle(0.1, seed=1)
    minima = [RssMinimum(i, "converged", len(a), -4.0 - i, a.get_volume() / len(a),
                         -4.0 - i, final=a) for i, a in enumerate((diamond, sh))]
    minima.append(RssMinimum(2, "failed", 2, error="x"))
    result = RssResult(params, "sw", None, tuple(classify(minima, crystals, params)), info)
    sims = result.similarities("diamond")
    assert sims[0] > 0.999 and sims[1] < 0.9 and math.isnan(sims[2])
    assert result.similarities("sh")[1] > 0.8
    assert result.n_diamond_like == 1 and result.diamond_like_fraction == pytest.approx(1 / 3)
    assert assert_diamond_like_fraction(result, min_fraction=0.3, min_count=1) == 1 / 3
    with pytest.raises(MlpvalAssertionError) as info_:
        assert_diamond_like_fraction(result, min_fraction=0.5)
    message = str(info_.value)
    assert "diamond-like minima: 1 of 3" in message and "FAIL" in message
    assert "sim diamond" in message and "index" in message


def test_diamond_fraction_needs_the_reference(search):
    broken = dataclasses.replace(search, references={"diamond": {"error": "did not relax"}})
    assert math.isnan(broken.diamond_like_fraction)
    with pytest.raises(MlpvalAssertionError, match="diamond reference is missing"):
        assert_diamond_like_fraction(broken, min_count=0)


# -- files -----------------------------------------------------------------------------

def test_write_read_round_trip(search, tmp_path):
    import ase.io

    path = search.write(tmp_path / "minima.xyz")
    frames = ase.io.read(path, ":")
    assert len(frames) == 6
    assert frames[0].info["status"] == "converged" and frames[0].info["rss_seed"] == 11
    assert frames[1].info["energy_per_atom_eV"] == pytest.approx(
        search.minima[1].energy_per_atom_eV)
    assert "similarity_diamond" in frames[2].info
    back = RssResult.read(path)
    assert back.settings == search.settings and back.potential == "sw"
    assert back.potential_sha256 == search.potential_sha256
    assert back.statuses == search.statuses and back.references == search.references
    np.testing.assert_allclose(back.energies_per_atom_eV, search.energies_per_atom_eV)
    np.testing.assert_allclose(back.similarities("sh"), search.similarities("sh"))
    np.testing.assert_allclose(back.minima[3].final.positions,
                               search.minima[3].final.positions, atol=1e-7)
    assert back.n_diamond_like == search.n_diamond_like


def test_failed_structures_round_trip_with_their_error(tmp_path):
    params = RssSettings(n_structures=2, atoms_per_cell=(3, 3), seed=2)
    result = run_rss(_calculator("raise"), params)
    back = RssResult.read(result.write(tmp_path / "failed.xyz"))
    assert back.statuses == ("failed", "failed")
    assert "cannot handle 3 atoms" in back.minima[0].error
    assert back.minima[0].final is None and len(back.minima[0].initial) == 3
    assert math.isnan(back.minima[0].energy_per_atom_eV)


def test_reading_a_foreign_file_is_an_error(tmp_path):
    import ase.io
    from ase.build import bulk

    ase.io.write(tmp_path / "x.xyz", bulk("Si"), format="extxyz")
    with pytest.raises(ValueError, match="not a random structure search"):
        RssResult.read(tmp_path / "x.xyz")



def test_search_follows_the_protocol_contract(search):
    import json

    from pytest_mlpval.errors import MlpvalError, NonFiniteError, SettingsError
    from pytest_mlpval.protocols.base import Result, Settings
    from pytest_mlpval.protocols.rss import NonFiniteResult, RelaxationTimeout, report_figure

    assert isinstance(search, Result) and isinstance(search.settings, Settings)
    assert RssSettings.from_dict(json.loads(json.dumps(QUICK.as_dict()))) == QUICK
    with pytest.raises(SettingsError, match="unknown RssSettings setting"):
        RssSettings.from_dict({**QUICK.as_dict(), "pressure": 1.0})
    with pytest.raises(SettingsError, match="unknown RssSettings setting"):
        QUICK.with_overrides(pressure=1.0)
    with pytest.raises(SettingsError, match="settings must be RssSettings"):
        run_rss(None, QUICK.as_dict())
    # the report draws the class's figure from report_data (no "module:function" string)
    assert type(search).figure is report_figure and "figure" not in search.report_data()
    assert report_figure({"sw": search.report_data()}).axes
    assert search.cost_metrics() == {
        "rss_force_calls": float(sum(m.n_force_calls for m in search.minima))}
    # one call per FIRE step and one at the start: the meter computes the stress the cell
    # filter asks for with the forces (CostMeter(..., always=("stress",)))
    assert all(m.n_force_calls == m.n_steps + 1 for m in search.minima)
    assert issubclass(RssGenerationError, SettingsError)
    assert issubclass(NonFiniteResult, NonFiniteError)
    assert issubclass(RelaxationTimeout, MlpvalError) and issubclass(RelaxationTimeout,
                                                                       RuntimeError)

# -- analysis ----------------------------------------------------------------------------

def test_basin_assertions_show_tables(search):
    de, v, _ = energy_volume(search)
    assert de.min() == 0.0 and len(v) == 6
    everything = (float(v.min()) - 1, float(v.max()) + 1)
    basin = assert_basin(search, volume_per_atom_A3=everything, energy_window_eV=10.0,
                         min_count=6)
    assert basin.count == 6 and basin.indices[0] == search.lowest.index
    with pytest.raises(MlpvalAssertionError) as info:
        assert_basin(search, volume_per_atom_A3=(5.0, 8.0))
    message = str(info.value)
    assert message.startswith("basin missing: 0 minima with 5-8 Å^3/atom")
    assert "minima per volume bin" in message and "lowest dE (eV/atom)" in message
    with pytest.raises(MlpvalAssertionError) as info:
        assert_no_basin(search, volume_per_atom_A3=everything, energy_window_eV=10.0)
    message = str(info.value)
    assert "unexpected basin: 6 minima" in message and "sim diamond" in message
    assert find_basin(search, everything, 0.0).count == 1  # only the lowest itself
    # relative to the candidate's diamond: the lowest minimum (diamond-like) is at ~0
    de_diamond, _, _ = energy_volume(search, relative_to="diamond")
    np.testing.assert_allclose(de_diamond - de, de_diamond.min(), atol=1e-12)
    assert abs(de_diamond.min()) < 1e-3
    assert find_basin(search, everything, -0.01, relative_to="diamond").count == 0
    with pytest.raises(ValueError, match="relative_to='bcc': not 'lowest' nor a reference"):
        find_basin(search, everything, relative_to="bcc")
    with pytest.raises(ValueError, match="inverted"):
        find_basin(search, (8.0, 5.0))


def test_distribution_distance_measures_a_volume_shift(search):
    assert distribution_distance(search, search).volume_A3 == 0.0
    shifted = dataclasses.replace(search, potential="shifted", minima=tuple(
        dataclasses.replace(m, volume_per_atom_A3=m.volume_per_atom_A3 + 3.0)
        for m in search.minima))
    dist = distribution_distance(shifted, search)
    assert dist.volume_A3 == pytest.approx(3.0) and dist.energy_eV == pytest.approx(0.0)
    assert assert_distributions_close(shifted, search, max_energy_eV=0.01).energy_eV == 0.0
    with pytest.raises(MlpvalAssertionError) as info:
        assert_distributions_close(shifted, search, max_volume_A3=1.0, max_energy_eV=0.1)
    message = str(info.value)
    assert "'shifted' vs 'sw'" in message and "FAIL" in message and "V p50" in message
    with pytest.raises(ValueError, match="give max_energy_eV"):
        assert_distributions_close(shifted, search)


def test_energy_volume_figure(search):
    fig = energy_volume_figure({"sw": search, "again": search})
    ax = fig.axes[0]
    assert len(fig.axes) == 3 and ax.get_xlabel().startswith("volume")
    assert [len(c.get_offsets()) for c in ax.collections] == [6, 6]
    assert "6 minima" in ax.get_legend().get_texts()[0].get_text()
