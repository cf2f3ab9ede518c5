"""Compression protocol (pytest_mlpval.protocols.compression): the runs, their outcome
classification and the assertions.

The classification is tested on synthetic frame records (every outcome); one small
Stillinger-Weber run (64 atoms, about 350 MD steps) checks the protocol end to end;
the failure modes run on 8-atom cells.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.errors import MlpvalError, SettingsError
from pytest_mlpval.protocols.base import CampaignOptions, Settings
from pytest_mlpval.protocols.compression import (OUTCOMES, CompressionSettings,
                                                 OutcomeThresholds, assert_crystallizes,
                                                 assert_no_false_maximum,
                                                 assert_no_false_minimum, classify_frames,
                                                 frames_table, run_compression,
                                                 run_compressions)
from pytest_mlpval.protocols.md import (MDFrame, MDLimits, MDParameterError, MDSettings,
                                        diamond_start)


# -- synthetic frames -------------------------------------------------------------------------

def _frames(coordination, sh, diamond=None, pressure=None, n=None):
    """Frames of a 0 -> 20 GPa ramp with the given per-frame coordination and fractions
    (scalars are repeated)."""
    n = n or max(len(np.atleast_1d(v)) for v in (coordination, sh))
    pick = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n,))  # noqa: E731
    coordination, sh = pick(coordination), pick(sh)
    diamond = pick(0.0 if diamond is None else diamond)
    targets = np.linspace(0, 20, n)
    measured = targets if pressure is None else pick(pressure)
    return [MDFrame(step=10 * i, time_fs=20.0 * i, phase="compress", temperature_K=500.0,
                    target_temperature_K=500.0, pressure_GPa=float(measured[i]),
                    target_pressure_GPa=float(targets[i]),
                    volume_per_atom_A3=20.0 - 0.3 * i, potential_energy_per_atom_eV=-4.0,
                    kinetic_energy_per_atom_eV=0.06, conserved_energy_per_atom_eV=math.nan,
                    min_distance_A=2.2,
                    analysis={"coordination_mean": float(coordination[i]),
                              "sh_fraction": float(sh[i]), "sh_fraction_fixed": 0.0,
                              "diamond_fraction": float(diamond[i]),
                              "diamond_fraction_fixed": float(diamond[i])})
            for i in range(n)]


def test_crystallised_with_fraction_and_onset():
    sh = [0, 0, 0.3, 0.1, 0.3, 0.25, 0.4, 0.6, 0.8, 0.9, 0.9]
    out = classify_frames(_frames(np.linspace(4, 8, 11), sh), expected_phase="sh")
    assert out.outcome == "crystallised" and out.phase == "sh"
    assert out.fraction == pytest.approx((0.8 + 0.9 + 0.9) / 3)
    assert out.onset_pressure_GPa == pytest.approx(8.0)  # kept from 8 GPa on
    assert out.collapse_pressure_GPa == pytest.approx(8.0)  # coordination 5.6 >= 5.5 at 8 GPa
    assert out.target_reached and out.metrics()["crystallised"] == 1.0
    assert assert_crystallizes(out, phase="sh") is out
    assert assert_no_false_minimum(out) is out and assert_no_false_maximum(out) is out
    # the wrong phase is no success
    with pytest.raises(MlpvalAssertionError, match="did not crystallise into diamond"):
        assert_crystallizes(out, phase="diamond")
    with pytest.raises(MlpvalAssertionError, match="set in at 8 GPa"):
        assert_crystallizes(out, phase="sh", max_onset_pressure_GPa=5.0)


def test_amorphous_is_a_false_maximum():
    out = classify_frames(_frames(4.4, 0.05), expected_phase="sh")
    assert out.outcome == "amorphous" and out.phase is None
    assert math.isnan(out.collapse_pressure_GPa) and math.isnan(out.onset_pressure_GPa)
    with pytest.raises(MlpvalAssertionError, match="false maximum") as info:
        assert_no_false_maximum(out)
    assert "mean coordination 4.40 < 5.5" in str(info.value)
    with pytest.raises(MlpvalAssertionError, match="did not crystallise into sh: 5%"):
        assert_crystallizes(out)
    assert_no_false_minimum(out)


def test_dense_amorphous_and_high_coordination():
    dense = classify_frames(_frames(np.linspace(4, 8.5, 11), 0.2), expected_phase="sh")
    assert dense.outcome == "dense_amorphous" and dense.collapse_pressure_GPa == 8.0
    assert_no_false_maximum(dense, max_collapse_pressure_GPa=15.0)
    with pytest.raises(MlpvalAssertionError, match="collapsed at 8 GPa"):
        assert_no_false_maximum(dense, max_collapse_pressure_GPa=6.0)
    high = classify_frames(_frames(np.linspace(4, 11, 11), 0.1), expected_phase="sh")
    assert high.outcome == "high_coordination"
    with pytest.raises(MlpvalAssertionError, match="false minimum: .* 10.30 >= 10"):
        assert_no_false_minimum(high)
    # the threshold is a parameter; a bare outcome cannot be re-classified
    with pytest.raises(ValueError, match="pass the CompressionResult"):
        assert_no_false_minimum(high, max_mean_coordination=12)
    higher = classify_frames(_frames(np.linspace(4, 11, 11), 0.1), high_coordination=12)
    assert assert_no_false_minimum(higher).outcome == "dense_amorphous"


def test_unstable_and_incomplete_claim_nothing():
    frames = _frames(4.0, 0.0)
    bad = classify_frames(frames, status="unstable", instability="nan",
                          message="non-finite energy at step 40")
    assert bad.outcome == "unstable" and bad.metrics()["unstable"] == 1.0
    cut = classify_frames(frames, status="cut_short", message="wall-time limit reached")
    assert cut.outcome == "incomplete" and "wall-time" in cut.reason
    for outcome in (bad, cut):
        for check in (assert_crystallizes, assert_no_false_minimum, assert_no_false_maximum):
            with pytest.raises(MlpvalAssertionError, match="unstable|incomplete"):
                check(outcome)
    assert set(OUTCOMES) >= {"crystallised", "amorphous", "high_coordination", "unstable"}


def test_target_not_reached_is_reported_and_fails_assertions():
    frames = _frames(np.linspace(4, 8, 11), 0.9, pressure=np.linspace(0, 6, 11))
    out = classify_frames(frames, expected_phase="sh")
    assert out.outcome == "crystallised" and not out.target_reached
    assert "NOT reached" in out.reason and out.final_pressure_GPa == pytest.approx(5.4)
    with pytest.raises(MlpvalAssertionError, match="reached 5.4 GPa, not the target 20"):
        assert_crystallizes(out)
    assert assert_crystallizes(out, require_target=False) is out


def test_fixed_reference_and_thresholds():
    frames = _frames(6.0, 0.7, n=11)
    assert classify_frames(frames, expected_phase="sh").outcome == "crystallised"
    fixed = classify_frames(frames, expected_phase="sh", adjusted=False)
    assert fixed.outcome == "dense_amorphous" and fixed.fraction == 0.0
    assert classify_frames(frames, expected_phase="sh", min_fraction=0.8).outcome \
        == "dense_amorphous"
    with pytest.raises(MDParameterError, match="min_fraction"):
        OutcomeThresholds(min_fraction=1.5)
    with pytest.raises(MDParameterError, match="final_frames"):
        OutcomeThresholds(final_frames=0)
    with pytest.raises(MDParameterError, match="'bc8' has no similarity"):
        classify_frames(frames, expected_phase="bc8")
    lines = frames_table(frames, max_rows=4)
    assert len(lines) == 6 and "sh frac" in lines[0]


@pytest.mark.parametrize("overrides, words", [
    ({"expected_phase": "bc8"}, "not among the references"),
    ({"references": ("diamond", "nonsense")}, "unknown crystal"),
    ({"pressure_end_GPa": math.inf}, "pressure_end_GPa"),
    ({"ramp_steps": -5}, "n_steps"),
    ({"similarity_cutoff": 1.2}, "similarity_cutoff"),
    ({"start_cell": "fcc"}, "start_cell"),
    ({"n_atoms": 1}, "n_atoms"),
    ({"pressure": 5}, "unknown CompressionSettings setting"),
])
def test_invalid_settings_name_the_value(overrides, words):
    with pytest.raises(SettingsError, match=words):
        CompressionSettings().with_overrides(**overrides)


def test_settings_round_trip_through_json_and_key_the_cache_by_version():
    import json

    from pytest_mlpval.protocols.compression.run import cache_parameters

    settings = CompressionSettings(pressure_end_GPa=15.0, references=("diamond", "sh"),
                                   md=MDSettings(timestep_fs=1.0, sample_every=5),
                                   limits=MDLimits(wall_time_s=60.0))
    assert isinstance(settings, Settings) and settings.VERSION == 1
    back = CompressionSettings.from_dict(json.loads(json.dumps(settings.as_dict())))
    assert back == settings and back.md == settings.md and back.limits == settings.limits
    key = cache_parameters(settings, [0, 1])
    assert key["name"] == "mlpval-md-compression" and key["version"] == 1
    assert key["settings"] == settings.as_dict() and key["seeds"] == [0, 1]
    with pytest.raises(SettingsError, match="unknown CompressionSettings setting"):
        CompressionSettings.from_dict({**settings.as_dict(), "pressure": 1})
    with pytest.raises(SettingsError, match="workers"):  # campaign options are not settings
        run_compression(None, workers=2)
    assert issubclass(MDParameterError, MlpvalError)


def test_pressure_grid_snaps_to_points():
    s = CompressionSettings(pressure_start_GPa=1.0, pressure_end_GPa=9.0,
                            reference_grid_GPa=4.0)
    assert s.pressure_grid() == (0.0, 4.0, 8.0, 12.0)
    assert s.grid_point(5.9) == 4.0 and s.grid_point(math.nan) == 0.0


# -- real runs ----------------------------------------------------------------------------------

#: a short run of 64 atoms: 200 steps of melt-quench, 120 of compression to 20 GPa
SHORT = dict(melt_steps=100, quench_steps=100, ramp_steps=80, hold_steps=40,
             reference_grid_GPa=10.0, md=MDSettings(
                 timestep_fs=2.0, barostat="langevin_baoab", taup_fs=100.0, sample_every=20))


@pytest.fixture(scope="module")
def sw():
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw")


@pytest.fixture(scope="module")
def sw_run(sw, tmp_path_factory):
    cache = tmp_path_factory.mktemp("compression-cache")
    traj = tmp_path_factory.mktemp("trajectories")
    seen = []
    result = run_compression(sw, seed=0, trajectory_dir=traj,
                             options=CampaignOptions(cache_dir=cache, progress=seen.append),
                             **SHORT)
    return cache, result, seen


def test_stillinger_weber_stays_low_density_amorphous(sw_run):
    _, result, seen = sw_run
    assert result.error is None and result.compression.completed, result.outcome.reason
    out = result.outcome
    # the tutorial's false maximum: SW does not collapse (coordination stays near 4-5)
    assert out.outcome == "amorphous", out.reason
    assert 3.8 < out.mean_coordination < 5.5 and out.target_reached
    with pytest.raises(MlpvalAssertionError, match="false maximum"):
        assert_no_false_maximum(result)
    with pytest.raises(MlpvalAssertionError, match="did not crystallise into sh") as info:
        assert_crystallizes(result, phase="sh")
    assert "frames:" in str(info.value) and "target GPa" in str(info.value)
    assert assert_no_false_minimum(result).outcome == "amorphous"
    assert seen[-1].done == seen[-1].total == 1  # the progress callback was called
    m = result.metrics()
    assert {"crystalline_fraction", "sh_fraction", "diamond_fraction",
            "final_pressure_GPa"} <= set(m) and set(result.units()) == set(m)
    assert result.as_dict()["outcome"]["outcome"] == "amorphous"


def test_frames_record_pressure_volume_coordination_and_both_similarities(sw_run):
    _, result, _ = sw_run
    frames = result.frames
    assert len(frames) == 7 and [f.step for f in frames] == [0, 20, 40, 60, 80, 100, 120]
    targets = [f.target_pressure_GPa for f in frames]
    assert targets[0] == 0.0 and targets[-1] == 20.0
    assert frames[-1].volume_per_atom_A3 < frames[0].volume_per_atom_A3 - 1.5
    last = frames[-1].analysis
    assert last["reference_pressure_GPa"] == 20.0
    hist = last["coordination_histogram"]
    assert sum(hist.values()) == pytest.approx(1.0)
    for phase in ("sh", "diamond"):
        for key in (f"{phase}_similarity", f"{phase}_similarity_fixed", f"{phase}_fraction",
                    f"{phase}_fraction_fixed"):
            assert 0.0 <= last[key] <= 1.0
    # the fixed (ambient) sh reference differs from the one relaxed at 20 GPa
    assert last["sh_similarity"] != last["sh_similarity_fixed"]
    assert set(result.crystals["sh"]) == {0.0, 10.0, 20.0} and not result.reference_errors


def test_trajectory_opens_in_ase_with_info(sw_run):
    import ase.io

    _, result, _ = sw_run
    frames = ase.io.read(result.trajectory_path, ":")
    assert len(frames) == len(result.structures) == len(result.preparation.frames) + 7
    last = frames[-1]
    for key in ("step", "time_fs", "pressure_GPa", "temperature_K", "phase",
                "coordination_mean", "sh_fraction"):
        assert key in last.info
    assert last.info["phase"] == "hold" and frames[0].info["phase"] == "melt"
    assert np.isfinite(last.get_potential_energy())
    assert "similarity_sh" in last.arrays and "coordination" in last.arrays


def test_cached_run_is_reused(sw, sw_run):
    cache, result, _ = sw_run
    start = time.perf_counter()
    again = run_compression(sw, seed=0, options=CampaignOptions(cache_dir=cache), **SHORT)
    assert again.from_cache and time.perf_counter() - start < 10
    assert [f.as_dict()["analysis"] for f in again.frames] == \
        [f.as_dict()["analysis"] for f in result.frames]
    assert again.outcome.outcome == result.outcome.outcome


#: 8 atoms, 40 steps, one reference (relaxed at 0 and 20 GPa)
TINY = dict(n_atoms=8, start_cell="diamond", prerelax_steps=0, melt_steps=0, quench_steps=0,
            ramp_steps=40, hold_steps=0, reference_grid_GPa=20.0, references=("diamond",),
            expected_phase="diamond")


def test_same_seed_same_compression(sw):
    a, b = run_compressions(sw, seeds=(1,), **TINY)[0], run_compression(sw, seed=1, **TINY)
    c = run_compression(sw, seed=2, **TINY)
    pos = [r.compression.final_atoms.positions for r in (a, b, c)]
    assert np.array_equal(pos[0], pos[1]) and not np.allclose(pos[0], pos[2])
    with pytest.raises(MDParameterError, match="distinct"):
        run_compressions(sw, seeds=(1, 1), **TINY)


def test_unreachable_pressure_is_reported(sw):
    slow = MDSettings(timestep_fs=2.0, taup_fs=5000.0,
                      barostat="berendsen", sample_every=10)
    result = run_compression(sw, seed=0, **{**TINY, "ramp_steps": 20, "md": slow})
    out = result.outcome
    assert result.compression.completed and not out.target_reached
    assert out.final_pressure_GPa < 15
    with pytest.raises(MlpvalAssertionError, match="not the target 20 GPa"):
        assert_no_false_minimum(result)


def _raising(base, after):
    from ase.calculators.calculator import Calculator, all_changes

    class Raising(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]
        calls = 0

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            Raising.calls += 1
            if Raising.calls > after:
                raise RuntimeError("injected failure")
            work = self.atoms.copy()
            work.calc = base
            self.results = {"energy": work.get_potential_energy(),
                            "forces": work.get_forces(), "stress": work.get_stress()}
            self.results["free_energy"] = self.results["energy"]

    return Raising()


def test_failing_potentials_are_unstable_outcomes(sw):
    from pytest_mlpval.testing import PerturbedCalculator

    nan = run_compression(PerturbedCalculator(sw.calculator, nan_after=25), **TINY)
    assert nan.outcome.outcome == "unstable" and nan.outcome.instability == "nan"
    raising = run_compression(_raising(sw.calculator, 30), **TINY)
    assert raising.outcome.outcome == "unstable" and "injected" in raising.outcome.message
    with pytest.raises(MlpvalAssertionError, match="MD was unstable"):
        assert_no_false_minimum(raising)
    # a start that cannot even be relaxed
    broken = run_compression(_raising(sw.calculator, 0), **{**TINY, "prerelax_steps": 5,
                                                            "start_cell": "random"})
    assert broken.outcome.outcome == "unstable" and "relaxing the start" in broken.error


def test_wall_time_cut_is_incomplete(sw):
    result = run_compression(sw, **{**TINY, "ramp_steps": 100000,
                                    "limits": MDLimits(wall_time_s=1.0)})
    assert result.compression.status == "cut_short"
    assert result.outcome.outcome == "incomplete" and result.metrics()["cut_short"] == 1.0
    with pytest.raises(MlpvalAssertionError, match="incomplete"):
        assert_crystallizes(result)


def test_user_start_is_used(sw):
    start = diamond_start("Si", 1, seed=5)
    result = run_compression(sw, start=start, **{**TINY, "start_cell": "random"})
    assert len(result.compression.final_atoms) == 8 and result.preparation is None
    with pytest.raises(MDParameterError, match="no atoms"):
        run_compression(sw, start=start[:0], **TINY)
