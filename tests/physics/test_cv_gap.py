"""Cross-validation with the real fitting code: ``gap_fit`` (quippy-ase) on mlearn Si.

The default run fits three small GAPs (2-body + SOAP n_max=4 l_max=3, 50 sparse points) on
27 structures; the slow tier runs the bundled recipe (``fit_gap.py --train --model``) as a
5-fold cross-validation of the full mlearn training set, with a random and a grouped
(leave one config_type out) split.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

import pytest

from pytest_mlpval.data import read_dataset
from pytest_mlpval.protocols.base import CampaignOptions
from pytest_mlpval.protocols.fitting import (CrossValidationSettings, assert_cv_errors,
                                             cross_validate, subset)

SILICON = Path(__file__).resolve().parents[2] / "example_suites" / "silicon"
TRAIN = f"train={SILICON / 'data' / 'mlearn_Si_training.xyz'},energy=dft_energy," \
        "forces=dft_forces,stress=dft_stress"
GAP_FIT = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")

needs_gap_fit = pytest.mark.skipif(
    importlib.util.find_spec("quippy") is None or not Path(GAP_FIT).exists(),
    reason="needs quippy-ase and its gap_fit executable (the gap extra)")

SMALL_GAP = [
    "gap={distance_2b cutoff=5.0 covariance_type=ard_se delta=1.0 theta_uniform=1.0 "
    "sparse_method=uniform n_sparse=10 add_species=T : soap l_max=3 n_max=4 cutoff=5.0 "
    "cutoff_transition_width=1.0 atom_sigma=0.5 zeta=4 delta=1.0 "
    "covariance_type=dot_product sparse_method=cur_points n_sparse=50 add_species=T}",
    "default_sigma={0.003 0.08 0.05 0.0}", "energy_parameter_name=dft_energy",
    "force_parameter_name=dft_forces", "e0_method=average", "rnd_seed={seed}",
    "sparse_jitter=1e-8",
]


def _recipe():
    spec = importlib.util.spec_from_file_location("fit_gap", SILICON / "potential" /
                                                  "fit_gap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.recipe_command()


@needs_gap_fit
def test_small_gap_cross_validation(tmp_path):
    train = read_dataset(TRAIN)
    data = subset(train, range(0, len(train), 8), "mlearn-27")
    command = ["gap_fit", "at_file={train}", *SMALL_GAP, "gp_file={model}"]
    start = time.perf_counter()
    settings = CrossValidationSettings(k=3, method="stratified", seed=1)
    cached = CampaignOptions(cache_dir=tmp_path / "cache")
    result = cross_validate(data, command, settings, options=cached)
    seconds = time.perf_counter() - start
    print(f"\n3-fold CV of a small GAP on 27 mlearn structures: {seconds:.1f} s")
    print("\n".join(result.table()))
    assert result.n_failed_folds == 0, result.failures[0].error
    m = result.metrics()
    assert m["n_structures_evaluated"] == len(data)
    # 18 training structures per fold (measured: 0.16 eV/Å pooled); the force components
    # of these structures have an RMS of 0.84 eV/Å, so a model that learned nothing fails
    assert 0.05 < m["force_rmse"] < 0.4
    assert m["energy_rmse"] < 0.05
    assert_cv_errors(result, force_rmse=0.4, energy_rmse=0.05)
    assert all(f.model_sha256 for f in result.folds)
    again = cross_validate(data, command, settings, options=cached)
    assert again.n_from_cache == 3 and again.metrics() == pytest.approx(m, nan_ok=True)


@pytest.fixture(scope="module")
def random_cv():
    """5-fold random-split CV of the bundled recipe (5 fits of ~100 s on 2 cores)."""
    return _bundled_cv("random", 5)


def _bundled_cv(split, k):
    result = cross_validate(read_dataset(TRAIN), _recipe(),
                            CrossValidationSettings(k=k, method=split, seed=0))
    print(f"\n{result.describe()}\n" + "\n".join(result.table()))
    for name, report in result.by_config_type.items():
        m = report.metrics()
        print(f"{name:10s} E RMSE {1000 * m['energy_rmse']:.1f} meV/atom, "
              f"F RMSE {m['force_rmse']:.3f} eV/Å")
    assert result.n_failed_folds == 0, result.failures[0].error
    return result


@pytest.mark.slow
@needs_gap_fit
def test_bundled_recipe_cross_validation(random_cv):
    """The random split comes near the recipe's errors on the mlearn test set (4.9
    meV/atom, 0.128 eV/Å). Measured: 6.2 meV/atom, 0.115 eV/Å, 0.82 GPa pooled."""
    m = random_cv.metrics()
    assert m["force_rmse"] < 0.2 and m["energy_rmse"] < 0.02
    assert m["force_rmse_fold_std"] < 0.5 * m["force_rmse_fold_mean"]


@pytest.mark.slow
@needs_gap_fit
def test_a_random_split_flatters_the_recipe(random_cv):
    """Leaving a config_type out (4 fits) costs accuracy: measured 19 meV/atom and
    0.142 eV/Å pooled (random: 6.2 and 0.115); the strained crystals, never seen, 13.4
    meV/atom and 0.094 eV/Å (random: 0.8 and 0.010)."""
    grouped = _bundled_cv("grouped", None)
    g, r = grouped.metrics(), random_cv.metrics()
    assert g["energy_rmse"] > 2 * r["energy_rmse"]
    assert g["force_rmse"] > r["force_rmse"]
    elastic_g = grouped.by_config_type["Elastic"].metrics()
    elastic_r = random_cv.by_config_type["Elastic"].metrics()
    assert elastic_g["force_rmse"] > 5 * elastic_r["force_rmse"]
    assert elastic_g["energy_rmse"] > 5 * elastic_r["energy_rmse"]
