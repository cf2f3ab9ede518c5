"""MD-based evidence of the tutorial's Figs. 6 and 7 (Morrow, Gardner and Deringer,
J. Chem. Phys. 158, 121501 (2023)), with the bundled GAP (fitted to the mlearn PBE data)
as the reference model.

(a) Melt-quench domain benchmark: a GAP fitted only to the strained crystals ("Elastic")
    of the mlearn training set has small errors on crystals and large force errors on
    the melt and the quench; snapshots of a melt-quench run with the bundled GAP.
(b) Compression of amorphous Si to 20 GPa: Stillinger-Weber stays low-density amorphous
    (the paper's false maximum), the bundled GAP collapses.

The numbers are printed (run with ``-s``) and kept in ``record_property``. MD runs are
cached in pytest's cache folder (``.pytest_cache/d/mlpval-md``), so a second run only
refits the small GAP and recomputes errors. Cost of a first run on 2 shared cores: the
fit about 1 min, the GAP melt-quench (1,000 steps of 63 atoms) 3-5 min, the GAP
compression (2,500 steps of 64 atoms) 8-15 min, SW 1-2 min.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mlpval.protocols.base import CampaignOptions
from pytest_mlpval.protocols.compression import (assert_crystallizes, assert_no_false_maximum,
                                                 assert_no_false_minimum, frames_table,
                                                 run_compression)
from pytest_mlpval.protocols.md.meltquench import run_meltquench
from pytest_mlpval.protocols.md.meltquench_errors import (assert_phase_errors, compare_meltquench,
                                             meltquench_table)
from pytest_mlpval.potentials import load_potential

SILICON = Path(__file__).resolve().parents[2] / "example_suites" / "silicon"
GAP_XML = SILICON / "potential" / "gap_si_mlearn.xml"
TRAINING = SILICON / "data" / "mlearn_Si_training.xyz"
TEST_SET = (f"test={SILICON / 'data' / 'mlearn_Si_test.xyz'},energy=dft_energy,"
            "forces=dft_forces,stress=dft_stress")

#: the recipe of example_suites/silicon/potential/fit_gap.py with 100 instead of 300
#: SOAP sparse points (faster; the Elastic group has 55 cells of 64 atoms)
GAP_ARGS = [
    "gap={distance_2b cutoff=5.0 covariance_type=ard_se delta=1.0 theta_uniform=1.0 "
    "sparse_method=uniform n_sparse=20 add_species=T : "
    "soap l_max=4 n_max=8 cutoff=5.0 cutoff_transition_width=1.0 atom_sigma=0.5 zeta=4 "
    "delta=1.0 covariance_type=dot_product sparse_method=cur_points n_sparse=100 "
    "add_species=T}",
    "default_sigma={0.003 0.08 0.05 0.0}",
    "energy_parameter_name=dft_energy",
    "force_parameter_name=dft_forces",
    "e0_method=average",
    "rnd_seed=1",
    "sparse_jitter=1e-8",
]

MELTQUENCH = dict(crystal_steps=200, melt_steps=400, quench_steps=400, timestep_fs=2.0,
                  snapshot_every=50, melt_K=3500.0, quench_to_K=500.0)
COMPRESSION = dict(melt_steps=300, quench_steps=600, ramp_steps=1500, hold_steps=100,
                   reference_grid_GPa=2.5)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("quippy") is None,
                       reason="needs quippy-ase (the gap extra)"),
]


def _cache(request, tmp_path_factory) -> Path:
    cache = request.config.cache
    return Path(cache.mkdir("mlpval-md")) if cache is not None \
        else tmp_path_factory.mktemp("mlpval-md")


@pytest.fixture(scope="session")
def elastic_gap(tmp_path_factory):
    """A GAP fitted with gap_fit on the 55 "Elastic" cells of the mlearn training set."""
    import ase.io

    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")
    if not Path(gap_fit).exists():
        pytest.skip("gap_fit not found")
    folder = tmp_path_factory.mktemp("elastic-gap")
    frames = [a for a in ase.io.read(TRAINING, ":") if a.info.get("config_type") == "Elastic"]
    assert len(frames) == 55
    ase.io.write(folder / "train.xyz", frames)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    subprocess.run([gap_fit, "at_file=train.xyz", *GAP_ARGS, "gp_file=gap_elastic.xml"],
                   cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
    return load_potential(f"gap_elastic={folder / 'gap_elastic.xml'}")


@pytest.fixture(scope="module")
def reference_gap():
    return load_potential(f"gap={GAP_XML}")


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw")


def test_crystal_only_gap_fails_on_melt_snapshots(request, tmp_path_factory, elastic_gap,
                                                  reference_gap, sw, record_property):
    from pytest_mlpval import compute_errors, predict, read_dataset

    cache = _cache(request, tmp_path_factory)
    trajectory = run_meltquench(reference_gap, seed=0, options=CampaignOptions(cache_dir=cache),
                                trajectory_path=tmp_path_factory.mktemp("mq") / "mq.extxyz",
                                **MELTQUENCH)
    frames = trajectory.frames()
    print("\nmelt-quench with the bundled GAP (63 atoms):")
    for atoms in frames:
        print(f"  step {atoms.info['step']:5d} {atoms.info['phase']:8s} "
              f"T {atoms.info['temperature_K']:6.0f} K  crystal-like "
              f"{atoms.info['crystalline_fraction']:.2f}  coordination "
              f"{atoms.info['coordination_mean']:.2f}")
    # the melt melted and the quench did not recrystallise
    assert frames[0].info["crystalline_fraction"] > 0.8
    assert max(a.info["crystalline_fraction"] for a in frames
               if a.info["phase"] != "crystal" and a.info["step"] >= 600) < 0.3

    results = compare_meltquench({"GAP (Elastic only)": elastic_gap, "SW": sw}, trajectory)
    print("\n".join(["", "errors against the bundled GAP:"] + meltquench_table(results)))
    # the same model on the DFT test set: small on strained crystals, large elsewhere
    dft = read_dataset(TEST_SET)
    report = compute_errors(dft, predict(elastic_gap.calculator, dft))
    dft_rmse = {c: r.metrics()["force_rmse"] for c, r in report.by_config_type.items()}
    print("GAP (Elastic only) on the mlearn DFT test set, force RMSE eV/Å:", dft_rmse)

    elastic = results["GAP (Elastic only)"].metrics()
    for key, value in elastic.items():
        record_property(f"elastic_gap_{key}", value)
    record_property("elastic_gap_dft_force_rmse", dft_rmse)
    assert dft_rmse["Elastic"] < 0.05
    assert elastic["melt_force_rmse"] > 3 * elastic["crystal_force_rmse"]
    assert elastic["melt_force_rmse"] > 0.3
    with pytest.raises(AssertionError, match="config_type 'melt'"):
        assert_phase_errors(results["GAP (Elastic only)"], phase="melt", force_rmse=0.3)
    assert_phase_errors(results["GAP (Elastic only)"], phase="crystal",
                        force_rmse=elastic["melt_force_rmse"] / 3)


def test_sw_does_not_collapse_where_gap_does(request, tmp_path_factory, reference_gap, sw,
                                             record_property):
    cache = _cache(request, tmp_path_factory)
    trajectories = tmp_path_factory.mktemp("compression")
    results = {}
    for name, potential in (("SW", sw), ("GAP", reference_gap)):
        result = run_compression(potential, seed=0, options=CampaignOptions(cache_dir=cache),
                                 trajectory_dir=trajectories, **COMPRESSION)
        results[name] = result
        out = result.outcome
        print(f"\n{name}: {out.outcome} ({out.reason}); collapse at "
              f"{out.collapse_pressure_GPa} GPa; {result.seconds:.0f} s")
        print("\n".join(frames_table(result.frames, max_rows=16)))
        for key, value in result.metrics().items():
            record_property(f"{name}_{key}", value)
    sw_out, gap_out = results["SW"].outcome, results["GAP"].outcome
    assert sw_out.outcome == "amorphous"
    with pytest.raises(AssertionError, match="false maximum"):
        assert_no_false_maximum(results["SW"])
    assert gap_out.outcome in ("dense_amorphous", "crystallised"), gap_out.reason
    assert_no_false_maximum(results["GAP"])
    assert_no_false_minimum(results["GAP"])
    assert gap_out.mean_coordination > sw_out.mean_coordination + 1.5
    assert gap_out.final_volume_per_atom_A3 < sw_out.final_volume_per_atom_A3 - 2.0
    if gap_out.outcome == "crystallised":
        assert_crystallizes(results["GAP"], phase="sh")
