"""Melt-quench domain benchmark (pytest_mlpval.protocols.md.meltquench, meltquench_errors).

One short Stillinger-Weber melt-quench of a 63-atom defective crystal (about 300 MD
steps) serves every test; the candidates are SW with known faults.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.errors import NonFiniteError, SettingsError
from pytest_mlpval.protocols.base import CampaignOptions
from pytest_mlpval.protocols.md import (MDLimits, MDParameterError, MeltQuenchSettings,
                                        assert_phase_errors, compare_meltquench,
                                        meltquench_errors, meltquench_table, read_meltquench,
                                        relabel, run_meltquench)

SHORT = dict(crystal_steps=50, melt_steps=200, quench_steps=100, snapshot_every=25)


@pytest.fixture(scope="module")
def sw():
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw")


@pytest.fixture(scope="module")
def mq(sw, tmp_path_factory):
    cache = tmp_path_factory.mktemp("mq-cache")
    path = tmp_path_factory.mktemp("mq") / "meltquench.extxyz"
    return cache, run_meltquench(sw, options=CampaignOptions(cache_dir=cache),
                                 trajectory_path=path, **SHORT)


def test_snapshots_are_tagged_by_phase_and_labelled(mq):
    _, traj = mq
    ref = traj.reference
    assert traj.phases == ["crystal", "melt", "quench"]
    assert len(ref) == 15 and list(ref.config_types).count("melt") == 8
    assert set(ref.n_atoms) == {63} and ref.labels == ("energy", "forces", "stress")
    assert list(traj.steps) == list(range(0, 351, 25))
    assert traj.labelled_by == "sw" and traj.record.completed
    # the melt melts: the crystal-like fraction falls from ~1 (0.98, 0.13 at the end of
    # this short melt; the fast quench regrows some crystal on what was left)
    frames = traj.frames()
    assert frames[0].info["crystalline_fraction"] > 0.8
    assert min(a.info["crystalline_fraction"] for a in frames
               if a.info["phase"] == "melt") < 0.3


def test_reference_against_itself_has_zero_error(sw, mq):
    _, traj = mq
    errors = meltquench_errors(sw, traj)
    m = errors.metrics()
    assert m["force_rmse"] < 1e-9 and m["melt_energy_rmse"] < 1e-9
    assert assert_phase_errors(errors, phase="melt", force_rmse=0.01)


def test_wrong_forces_show_per_phase_and_fail_the_threshold(mq):
    from pytest_mlpval.testing import sw_forces_scaled

    _, traj = mq
    errors = meltquench_errors(sw_forces_scaled(), traj)
    m = errors.metrics()
    # forces scaled by 1.5: error = 0.5 |F|, larger where the forces are (the melt)
    assert m["melt_force_rmse"] > m["crystal_force_rmse"] > 0.05
    assert m["energy_rmse"] < 1e-9  # energies are right: only the forces reveal it
    assert errors.force_rmse_eV_A.shape == (15,) and np.all(errors.force_rmse_eV_A > 0)
    with pytest.raises(MlpvalAssertionError, match="config_type 'melt'") as info:
        assert_phase_errors(errors, phase="melt", force_rmse=0.3)
    message = str(info.value)
    assert "all phases:" in message and "quench" in message and "force_rmse" in message
    with pytest.raises(KeyError, match="'liquid' not in the benchmark"):
        assert_phase_errors(errors, phase="liquid", force_rmse=0.3)
    with pytest.raises(ValueError, match="unknown metric"):
        assert_phase_errors(errors, phase="melt", force_rsme=0.3)


def test_energy_offset_is_separated(mq):
    from pytest_mlpval.testing import sw_shifted

    _, traj = mq
    m = meltquench_errors(sw_shifted(), traj).metrics()
    assert m["energy_rmse"] == pytest.approx(0.010, abs=1e-6)
    assert m["energy_offset_removed_rmse"] < 1e-6


def test_nan_and_raising_candidates_are_reported(sw, mq):
    from pytest_mlpval.testing import PerturbedCalculator

    _, traj = mq
    with pytest.raises(NonFiniteError, match="structure 3 \\(melt"):
        meltquench_errors(PerturbedCalculator(sw.calculator, nan_after=3), traj)
    from ase.calculators.calculator import Calculator

    class Raising(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, *args, **kwargs):
            raise RuntimeError("candidate failed (injected)")

    with pytest.raises(RuntimeError, match="injected"):
        meltquench_errors(Raising(), traj)


def test_file_round_trip_and_user_trajectory(sw, mq, tmp_path):
    import ase.io

    _, traj = mq
    frames = ase.io.read(traj.path, ":")
    assert len(frames) == 15 and frames[5].info["phase"] == "melt"
    assert {"step", "time_fs", "temperature_K", "pressure_GPa"} <= set(frames[5].info)
    read = read_meltquench(traj.path)
    assert read.phases == traj.phases and read.labelled_by == "file"
    np.testing.assert_allclose(read.reference.energy, traj.reference.energy, atol=1e-6)
    # a user's file with other keys
    for atoms in frames:
        atoms.info["dft_energy"] = atoms.get_potential_energy()
        atoms.arrays["dft_forces"] = atoms.get_forces()
        atoms.info["stage"] = atoms.info.pop("phase")
        atoms.calc = None
    user = tmp_path / "user.extxyz"
    ase.io.write(user, frames)
    mine = read_meltquench(user, energy_key="dft_energy", forces_key="dft_forces",
                           phase_key="stage")
    assert mine.phases == ["crystal", "melt", "quench"]
    assert meltquench_errors(sw, mine).metrics()["force_rmse"] < 1e-5
    assert meltquench_errors(sw, str(traj.path)).metrics()["force_rmse"] < 1e-5
    with pytest.raises(MDParameterError, match="no 'phase' in the info"):
        read_meltquench(user)
    with pytest.raises(MDParameterError, match="not found"):
        read_meltquench(tmp_path / "missing.extxyz")


def test_relabel_and_compare(sw, mq):
    from pytest_mlpval.testing import sw_forces_scaled

    _, traj = mq
    other = relabel(traj, sw_forces_scaled())
    assert other.labelled_by == "_Perturbed"
    np.testing.assert_allclose(other.reference.forces[4], 1.5 * traj.reference.forces[4])
    results = compare_meltquench({"SW": sw, "SWx1.5": sw_forces_scaled()}, traj)
    assert results["SW"].metrics()["force_rmse"] < 1e-9
    lines = meltquench_table(results)
    assert len(lines) == 2 + 2 * 4 and lines[-1].startswith("SWx1.5")
    assert results["SWx1.5"].as_dict()["snapshots"][0]["phase"] == "crystal"


def test_errors_are_a_protocol_result_whose_summary_is_not_read_back(sw, mq):
    """MeltQuenchErrors is a protocols.base.Result; its as_dict() is a summary without
    the per-structure errors, which from_dict refuses rather than misreads."""
    from pytest_mlpval.protocols.base import Result, result_from_dict

    errors = meltquench_errors(sw, mq[1])
    assert isinstance(errors, Result) and errors.protocol == "meltquench"
    with pytest.raises(TypeError, match="summary"):
        type(errors).from_dict(errors.as_dict())
    with pytest.raises(ValueError, match="not a protocol result"):
        result_from_dict(errors.as_dict())


def test_cached_run_is_reused(sw, mq):
    cache, traj = mq
    start = time.perf_counter()
    again = run_meltquench(sw, options=CampaignOptions(cache_dir=cache), **SHORT)
    assert time.perf_counter() - start < 10
    np.testing.assert_allclose(again.reference.energy, traj.reference.energy, atol=1e-6)


def test_bad_settings_and_an_unstable_reference(sw):
    with pytest.raises(MDParameterError, match="vacancies"):
        MeltQuenchSettings(vacancies=-1)
    with pytest.raises(SettingsError, match="unknown MeltQuenchSettings setting"):
        run_meltquench(sw, melt_temperature=3000)
    from pytest_mlpval.testing import PerturbedCalculator

    with pytest.raises(MDParameterError, match="unstable after .* non-finite energy"):
        run_meltquench(PerturbedCalculator(sw.calculator, nan_after=10), repeat=1,
                       vacancies=0, crystal_steps=20, melt_steps=20, quench_steps=0)
    with pytest.raises(MDParameterError, match="cut_short"):
        run_meltquench(sw, repeat=1, vacancies=0, crystal_steps=10**6, melt_steps=0,
                       quench_steps=0, limits=MDLimits(wall_time_s=0.5))
