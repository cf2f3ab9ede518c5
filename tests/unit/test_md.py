"""Guarded MD (pytest_mlpval.protocols.md: run, settings) and the MD stability protocol.

Small cells (8 atoms) for the failure modes, one 64-atom Stillinger-Weber run for the
stability metrics.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.base import CampaignOptions, Settings
from pytest_mlpval.protocols.md import (MDLimits, MDParameterError, MDProtocolSettings,
                                        MDSegment, MDSettings, MDStabilityResult,
                                        MeltQuenchSettings, StabilitySettings,
                                        assert_md_stable, assert_stable, diamond_start,
                                        melt_quench_segments, min_distance, random_start,
                                        run_md, run_md_stability, write_trajectory)


@pytest.fixture(scope="module")
def sw():
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw")


def _faulty(base, after: int, fault: str):
    """SW whose results go bad from call ``after`` on: ``raise``, huge ``forces``, huge
    ``energy``, or ``reverse`` (forces pointing uphill: the dynamics runs away)."""
    from ase.calculators.calculator import Calculator, all_changes

    class Faulty(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def __init__(self):
            super().__init__()
            self.calls = 0

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.calls += 1
            work = self.atoms.copy()
            work.calc = base
            energy, forces = work.get_potential_energy(), work.get_forces()
            stress = work.get_stress()
            if self.calls > after:
                if fault == "raise":
                    raise RuntimeError("model evaluation failed (injected)")
                if fault == "forces":
                    forces = forces * 1e5
                if fault == "energy":
                    energy = energy + 1e6 * len(work)
                if fault == "reverse":
                    forces = -20 * forces
            self.results = {"energy": energy, "free_energy": energy, "forces": forces,
                            "stress": stress}

    return Faulty()


SMALL = MDSettings(timestep_fs=1.0, sample_every=10)


def _small_run(calc, steps=60, seed=0, **kwargs):
    return run_md(diamond_start("Si", 1, seed=seed), calc, [MDSegment("nvt", steps, 800.0)],
                  settings=kwargs.pop("settings", SMALL), seed=seed, **kwargs)


# -- parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda: MDSegment("x", -1), "n_steps"),
    (lambda: MDSegment("x", 2.5), "n_steps"),
    (lambda: MDSegment("x", 10, -5.0), "temperature_K"),
    (lambda: MDSegment("x", 10, math.nan), "temperature_K"),
    (lambda: MDSegment("x", 10, None, 300.0), "temperature_end_K needs"),
    (lambda: MDSegment("x", 10, None, None, 5.0), "needs a temperature"),
    (lambda: MDSegment("", 10), "phase"),
    (lambda: MDSettings(timestep_fs=0), "timestep_fs"),
    (lambda: MDSettings(thermostat="nose"), "'nose'"),
    (lambda: MDSettings(barostat="mtk"), "'mtk'"),
    (lambda: MDSettings(sample_every=0), "sample_every"),
    (lambda: MDLimits(min_distance_A=-1.0), "min_distance_A"),
    (lambda: MDLimits(wall_time_s=0), "wall_time_s"),
    (lambda: StabilitySettings(temperature_K=-10), "temperature_K"),
    (lambda: StabilitySettings(nve_steps=1), "nve_steps"),
    (lambda: StabilitySettings(symbol="Xx"), "'Xx'"),
])
def test_invalid_parameters_name_the_value(make, words):
    with pytest.raises(MDParameterError, match=words):
        make()


@pytest.mark.parametrize("cls", [StabilitySettings, MeltQuenchSettings])
def test_md_protocol_settings_share_one_base(cls):
    """Every MD protocol's settings derive from MDProtocolSettings (itself a
    protocols.base.Settings): the same round trip through as_dict/from_dict (limits
    included), the same overrides, the same checks, MD parameter errors as
    SettingsError."""
    settings = cls(limits=MDLimits(wall_time_s=5.0)).with_overrides(timestep_fs=0.5)
    assert isinstance(settings, MDProtocolSettings) and isinstance(settings, Settings)
    again = cls.from_dict(json.loads(json.dumps(settings.as_dict())))
    assert again == settings and again.limits.wall_time_s == 5.0
    assert settings.md_settings().timestep_fs == 0.5 and settings.segments()
    with pytest.raises(SettingsError, match=f"unknown {cls.__name__} setting"):
        settings.with_overrides(nonesuch=1)
    with pytest.raises(MDParameterError, match="'Xx' is not a chemical symbol"):
        cls(symbol="Xx")
    assert issubclass(MDParameterError, SettingsError) and issubclass(MDParameterError,
                                                                       ValueError)


def test_segments_ramp_and_ensemble():
    seg = MDSegment("c", 10, 500.0, None, 0.0, 20.0)
    assert seg.ensemble == "npt" and seg.ramped
    assert seg.target(5) == (500.0, 10.0)
    assert MDSegment("q", 4, 3000.0, 1000.0).target(1) == (2500.0, None)
    assert MDSegment("e", 4).ensemble == "nve"
    assert [s.phase for s in melt_quench_segments(anneal_steps=5)] == ["melt", "quench", "anneal"]


def test_bad_run_requests_raise_clearly(sw):
    atoms = diamond_start("Si", 1)
    with pytest.raises(MDParameterError, match="no MD segments"):
        run_md(atoms, sw.calculator, [])
    with pytest.raises(MDParameterError, match="no temperature ramp"):
        run_md(atoms, sw.calculator, [MDSegment("q", 5, 900.0, 300.0)],
               settings=MDSettings(thermostat="bussi"), initial_temperature_K=300)
    no_stress = _faulty(sw.calculator, 10**9, "none")
    no_stress.implemented_properties = ["energy", "forces"]
    with pytest.raises(MDParameterError, match="does not implement 'stress'"):
        run_md(atoms, no_stress, [MDSegment("c", 5, 300.0, None, 1.0)])
    with pytest.raises(MDParameterError, match="could not place"):
        random_start("Si", 64, volume_per_atom_A3=2.0, max_attempts=200)
    with pytest.raises(SettingsError, match="unknown StabilitySettings setting"):
        run_md_stability(sw, temperature=300)


# -- the watch -----------------------------------------------------------------------------

@pytest.mark.parametrize("fault, reason", [("raise", "error"), ("forces", "force"),
                                           ("energy", "energy")])
def test_a_failing_potential_stops_the_run_with_the_reason(sw, fault, reason):
    record = _small_run(_faulty(sw.calculator, 20, fault))
    assert record.status == "unstable" and record.instability == reason
    assert 10 <= record.n_steps < 60 and record.n_steps_planned == 60
    assert f"step {record.n_steps}" in record.message
    if fault == "raise":
        assert "RuntimeError" in record.message and "injected" in record.message
    assert record.frames and record.frames[-1].step <= record.n_steps  # kept, not dropped


def test_nan_energy_is_reported(sw):
    from pytest_mlpval.testing import BrokenCalculator, PerturbedCalculator

    record = _small_run(PerturbedCalculator(sw.calculator, nan_after=15))
    assert record.instability == "nan" and "non-finite energy" in record.message
    # BrokenCalculator "nan": NaN once two atoms come closer than 2.3 Å (hot crystal)
    hot = run_md(diamond_start("Si", 1), BrokenCalculator(sw.calculator, "nan"),
                 [MDSegment("hot", 300, 3000.0)], settings=SMALL, seed=1)
    assert hot.status == "unstable" and hot.instability == "nan"


def test_runaway_dynamics_is_caught(sw):
    record = _small_run(_faulty(sw.calculator, 5, "reverse"), steps=300)
    assert record.status == "unstable"
    assert record.instability in ("overlap", "temperature", "force", "energy")


def test_overlapping_atoms_are_caught(sw):
    atoms = diamond_start("Si", 1)
    atoms.positions[1] = atoms.positions[0] + [0.9, 0.0, 0.0]
    record = run_md(atoms, sw.calculator, [MDSegment("nvt", 10, 300.0)], settings=SMALL,
                    limits=MDLimits(max_force_eV_A=1e9, max_energy_change_per_atom_eV=1e9))
    assert record.instability == "overlap" and record.n_steps == 0
    assert "0.900 Å apart" in record.message and min_distance(atoms) == pytest.approx(0.9)


def test_wall_time_limit_cuts_the_run_short_and_says_so(sw):
    start = time.monotonic()
    record = _small_run(sw.calculator, steps=100000, limits=MDLimits(wall_time_s=0.5))
    assert time.monotonic() - start < 30
    assert record.status == "cut_short" and record.instability is None
    assert 0 < record.n_steps < 100000 and "wall-time limit" in record.message


# -- reproducibility, records, trajectories --------------------------------------------------

def _frames_json(record) -> str:
    return json.dumps([f.as_dict() for f in record.frames])


def test_same_seed_same_run_other_seed_other_run(sw):
    a, b, c = (_small_run(sw.calculator, seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.final_atoms.positions, b.final_atoms.positions)
    assert _frames_json(a) == _frames_json(b)  # NaN fields compare equal as JSON
    assert not np.allclose(a.final_atoms.positions, c.final_atoms.positions)


def test_ramps_reach_the_frames_and_the_barostat_follows(sw):
    segments = [MDSegment("compress", 60, 300.0, None, 0.0, 15.0),
                MDSegment("hold", 40, 300.0, None, 15.0)]
    for barostat in ("langevin_baoab", "berendsen"):
        record = run_md(diamond_start("Si", 1), sw.calculator, segments, seed=0,
                        settings=MDSettings(sample_every=20, barostat=barostat, taup_fs=50))
        assert record.completed, record.message
        targets = [f.target_pressure_GPa for f in record.frames]
        assert targets == sorted(targets) and targets[-1] == 15.0
        volumes = [f.volume_per_atom_A3 for f in record.frames]
        assert volumes[-1] < volumes[0] - 0.5, (barostat, volumes)


def test_trajectory_is_readable_extxyz_with_frame_info(sw, tmp_path):
    import ase.io

    record = _small_run(sw.calculator, steps=30)
    path = tmp_path / "run.extxyz"
    write_trajectory(record.structures, path)
    frames = ase.io.read(path, ":")
    assert len(frames) == len(record.frames) == 4
    for atoms, frame in zip(frames, record.frames):
        for key in ("step", "time_fs", "temperature_K", "pressure_GPa", "phase"):
            assert key in atoms.info
        assert atoms.info["step"] == frame.step and atoms.info["phase"] == "nvt"
        assert atoms.get_potential_energy() / len(atoms) == pytest.approx(
            frame.potential_energy_per_atom_eV, abs=1e-6)
        assert atoms.get_forces().shape == (8, 3) and atoms.get_momenta().any()


def test_random_start_is_seeded_and_separated():
    a, b = random_start("Si", 16, seed=2), random_start("Si", 16, seed=2)
    assert np.array_equal(a.positions, b.positions)
    assert min_distance(a) >= 1.6 * 1.11 - 1e-9


# -- stability protocol ------------------------------------------------------------------------

QUICK = dict(nvt_steps=200, nve_steps=100)


@pytest.fixture(scope="module")
def stable(sw, tmp_path_factory):
    cache = tmp_path_factory.mktemp("md-cache")
    return cache, run_md_stability(sw, seed=0, options=CampaignOptions(cache_dir=cache),
                                   **QUICK)


def test_stillinger_weber_is_stable(stable):
    _, result = stable
    assert result.status == "completed" and result.record.n_steps == 300
    m = result.metrics()
    assert abs(m["energy_drift_per_atom_eV_ps"]) < 1e-3  # forces x 1.5: 3.8e-3
    assert m["min_distance_A"] > 1.8 and math.isfinite(m["nvt_conserved_drift_per_atom_eV_ps"])
    assert set(result.units()) == set(m)
    assert assert_md_stable(result) is result and assert_stable(result) is result


def test_stability_is_cached(sw, stable):
    cache, result = stable
    start = time.perf_counter()
    again = run_md_stability(sw, seed=0, options=CampaignOptions(cache_dir=cache), **QUICK)
    assert again.from_cache and time.perf_counter() - start < 5
    assert again.metrics() == result.metrics()
    other = run_md_stability(sw, seed=0, options=CampaignOptions(cache_dir=cache),
                             nvt_steps=3, nve_steps=3)
    assert not other.from_cache  # another setting is another cache entry


@pytest.mark.parametrize("change", ["seed", "start", "version"])
def test_stability_cache_key_is_the_protocol_recipe(sw, tmp_path, monkeypatch, change):
    """The cache key is base's recipe ({name, VERSION, settings}) plus the seed and the
    start structure: each of them, changed, is another entry."""
    options = CampaignOptions(cache_dir=tmp_path)
    small = dict(repeat=1, nvt_steps=3, nve_steps=3)
    first = run_md_stability(sw, options=options, **small)
    assert run_md_stability(sw, options=options, **small).from_cache
    kwargs = {"seed": 1} if change == "seed" else {}
    if change == "start":
        kwargs["start"] = diamond_start("Si", 1, seed=5)
    if change == "version":
        monkeypatch.setattr(StabilitySettings, "VERSION", 2)
    again = run_md_stability(sw, options=options, **small, **kwargs)
    assert not again.from_cache
    assert (again.metrics() == first.metrics()) == (change == "version")


def test_non_conservative_forces_fail_the_drift_check():
    from pytest_mlpval.testing import sw_forces_scaled

    result = run_md_stability(sw_forces_scaled(), repeat=1, nvt_steps=100, nve_steps=100)
    assert result.status == "completed"
    with pytest.raises(MlpvalAssertionError, match="MD not stable") as info:
        assert_md_stable(result, max_temperature_error_fraction=1.0)
    assert "energy_scatter_per_atom_eV" in str(info.value) and "FAIL" in str(info.value)


@pytest.mark.parametrize("fault", ["raise", "forces"])
def test_stability_of_a_failing_potential_fails_the_assertion(sw, fault):
    result = run_md_stability(_faulty(sw.calculator, 30, fault), repeat=1, **QUICK)
    assert result.status == "unstable"
    assert math.isnan(result.energy_drift_per_atom_eV_ps)
    with pytest.raises(MlpvalAssertionError, match="MD unstable after"):
        assert_md_stable(result)
    with pytest.raises(MlpvalAssertionError):
        assert_stable(result)


def test_stability_cut_short_is_reported(sw):
    result = run_md_stability(sw, repeat=1, nvt_steps=100000, nve_steps=10,
                              limits=MDLimits(wall_time_s=0.5))
    assert result.status == "cut_short" and result.metrics()["cut_short"] == 1.0
    with pytest.raises(MlpvalAssertionError, match="MD cut_short"):
        assert_md_stable(result)


def test_assertion_rejects_other_objects():
    with pytest.raises(TypeError, match="MDStabilityResult"):
        assert_md_stable(object())
    with pytest.raises(TypeError, match="MD result"):
        assert_stable(object())


def test_a_failing_analysis_is_not_blamed_on_the_potential(sw):
    def analyse(atoms, values):
        raise ValueError("unsupported structure")

    with pytest.raises(RuntimeError, match="frame analysis failed at step 0: ValueError"):
        _small_run(sw.calculator, steps=5, analyse=analyse)


def test_md_stability_is_a_registered_protocol_on_the_contract(sw):
    """md_stability is registered (protocols.base.register): run_protocol gives the
    MDStabilityResult of run_md_stability's default run (seed 0), a base.Result that
    comes back from its as_dict() whole, record and settings included."""
    from pytest_mlpval.protocols.base import PROTOCOLS, Result, result_from_dict, run_protocol

    assert PROTOCOLS["md_stability"].settings is StabilitySettings
    settings = StabilitySettings(repeat=1, nvt_steps=20, nve_steps=20, sample_every=10)
    result = run_protocol("md_stability", sw, settings)
    assert isinstance(result, MDStabilityResult) and isinstance(result, Result)
    direct = run_md_stability(sw, settings)
    assert result.metrics() == direct.metrics() and result.settings == settings
    again = result_from_dict(direct.as_dict())
    assert again.metrics() == direct.metrics() and again.settings == settings
    assert [f.step for f in again.record.frames] == [f.step for f in direct.record.frames]
