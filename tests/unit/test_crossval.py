"""k-fold splits, fitting per fold (command templates and callables), cross-validation
errors, cache, learning curves."""

from __future__ import annotations

import functools
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.data import DatasetError, read_dataset
from pytest_mlpval.errors import MlpvalError, SettingsError
from pytest_mlpval.protocols.base import CampaignOptions
from pytest_mlpval.protocols.fitting import (CrossValidationSettings, FitCommand, FitError,
                                             FitSpecError, LearningCurveSettings,
                                             SplitSettings, as_fitter, assert_cv_errors,
                                             cross_validate, labelled_data, learning_curve,
                                             make_split, plot_cv_parity,
                                             plot_learning_curve)
from pytest_mlpval.testing import make_reference_file

CV = CrossValidationSettings

ROOT = Path(__file__).resolve().parents[2]
GAP_XML = ROOT / "example_suites" / "silicon" / "potential" / "gap_si_mlearn.xml"
KEYS = "energy=dft_energy,forces=dft_forces,stress=dft_stress"

FAKE_FIT = r'''
import pathlib, shutil, sys, time
mode, train, model = sys.argv[1:4]
workdir = pathlib.Path(model).parent
(workdir / "args.txt").write_text(" ".join(sys.argv[1:]))
text = pathlib.Path(train).read_text()
if mode == "fail":
    sys.stderr.write("reading " + str(text.count("Lattice")) + " structures\n")
    sys.stderr.write("fatal: bad option default_sigma\n")
    sys.exit(3)
if mode == "sleep":
    time.sleep(30)
if mode == "custom":
    pathlib.Path(model).write_text("a model in a format only the user's loader reads")
if mode == "gap":
    source = pathlib.Path(sys.argv[4])
    for f in source.parent.glob(source.name + ".sparseX.*"):
        shutil.copy(f, workdir / f.name)
    shutil.copy(source, model)
'''


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """12 SW-labelled diamond cells, 4 each of config_types bulk, rattled, hot."""
    path = make_reference_file(tmp_path_factory.mktemp("cv") / "ref.xyz", n_structures=12,
                               config_types=("bulk", "rattled", "hot"))
    return read_dataset(f"ref={path},{KEYS}")


@pytest.fixture(scope="module")
def fake_fit(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "fake_fit.py"
    path.write_text(FAKE_FIT)
    return path


def _command(script, mode, *extra):
    return [sys.executable, str(script), mode, "{train}", "{model}", *extra]


def fit_sw(frames, workdir):
    """A 'fit' that ignores its data and returns Stillinger-Weber (the labeller)."""
    return "sw"


def fit_scaled_forces(frames, workdir):
    return "pytest_mlpval.testing:sw_forces_scaled"


def fit_counting(counter, frames, workdir, seed=None):
    with open(counter, "a") as handle:
        handle.write(f"{len(frames)} {seed}\n")
    return "sw"


def fit_checking_labels(frames, workdir):
    for atoms in frames:
        assert "dft_energy" in atoms.info and "dft_stress" in atoms.info
        assert atoms.arrays["dft_forces"].shape == (len(atoms), 3)
        assert atoms.info["config_type"] in ("bulk", "rattled", "hot")
        assert atoms.calc is None
    return "sw"


def load_custom(path):
    """A user's loader (like the pytest_mlpval_load_potential hook) for '.mdl' files."""
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw").calculator if str(path).endswith(".mdl") else None


def fit_raising(frames, workdir):
    raise RuntimeError("the optimiser diverged")


def fit_improving(frames, workdir):
    """A model whose force error falls with the training-set size: forces x (1 + 1/n)."""
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.testing import PerturbedCalculator

    return PerturbedCalculator(load_potential("sw").calculator, force_scale=1 + 1 / len(frames))


# -- splits ----------------------------------------------------------------------------

def test_random_split_is_seeded_and_partitions_the_data(ref):
    a, b = (make_split(ref, SplitSettings(3, "random", seed=4)),
            make_split(ref, SplitSettings(3, "random", seed=4)))
    c = make_split(ref, SplitSettings(3, "random", seed=5))
    assert a.test_folds == b.test_folds and a.digest == b.digest
    assert c.test_folds != a.test_folds and c.digest != a.digest
    assert sorted(i for fold in a.test_folds for i in fold) == list(range(len(ref)))
    for i in range(3):
        assert set(a.train_indices(i)) | set(a.test_indices(i)) == set(range(len(ref)))
        assert not set(a.train_indices(i)) & set(a.test_indices(i))


def test_stratified_split_puts_every_type_in_every_fold(ref):
    split = make_split(ref, SplitSettings(4, "stratified", seed=1))
    for fold in split.test_folds:
        assert {ref.config_types[i] for i in fold} == {"bulk", "rattled", "hot"}
    assert split.fold_sizes() == [3, 3, 3, 3]
    assert split.notes == ()


def test_stratified_split_notes_a_type_smaller_than_k(tmp_path):
    path = make_reference_file(tmp_path / "r.xyz", n_structures=8,
                               config_types=("bulk", "rattled", "rattled", "rattled"))
    split = make_split(read_dataset(f"r={path},{KEYS}"),
                       SplitSettings(3, "stratified", seed=0))
    assert len(split.notes) == 1 and "'bulk' has 2 structure(s), fewer than k=3" in split.notes[0]
    with_bulk = [f for f in split.test_folds if any(i % 4 == 0 for i in f)]
    assert len(with_bulk) == 2


def test_grouped_split_leaves_each_type_out(ref):
    split = make_split(ref, SplitSettings(None, "grouped"))
    assert split.k == 3 and split.labels == ("bulk", "hot", "rattled")
    for i, name in enumerate(split.labels):
        assert {ref.config_types[j] for j in split.test_indices(i)} == {name}
        assert name not in {ref.config_types[j] for j in split.train_indices(i)}
    with pytest.raises(ValueError, match="k must be 3"):
        make_split(ref, SplitSettings(5, "grouped"))


def test_grouped_split_of_one_type_is_an_error(tmp_path):
    path = make_reference_file(tmp_path / "r.xyz", n_structures=4, config_types=("bulk",))
    with pytest.raises(ValueError, match="at least 2 config_types"):
        make_split(read_dataset(f"r={path},{KEYS}"), SplitSettings(None, "grouped"))


def test_cluster_split_separates_dissimilar_structures(ref):
    split = make_split(ref, SplitSettings(2, "cluster", seed=0))
    assert split == make_split(ref, SplitSettings(2, "cluster", seed=0))
    # bulk cells are rattled by 0.01 Å, the others by 0.1 Å: one cluster is the bulk
    groups = [{ref.config_types[i] for i in fold} for fold in split.test_folds]
    assert {"bulk"} in groups
    assert any(label.startswith("cluster") and "bulk 4" in label for label in split.labels)


@pytest.mark.parametrize("k, message", [(13, "k=13 folds is more than the 12 structures"),
                                        (1, "k must be an integer >= 2"),
                                        (2.5, "k must be an integer")])
def test_bad_k_is_a_clear_error(ref, k, message):
    with pytest.raises(ValueError, match=message):
        make_split(ref, SplitSettings(k, "random"))


def test_unknown_split_method(ref):
    with pytest.raises(ValueError, match="unknown split method 'kfold'"):
        make_split(ref, SplitSettings(3, "kfold"))


def test_labelled_frames_keep_keys_and_need_labels(ref):
    data = labelled_data(ref)
    assert data.frames[0].info["dft_energy"] == pytest.approx(ref.energy[0])
    assert data.sha256 == labelled_data(ref).sha256
    import ase

    with pytest.raises(DatasetError, match="neither energy nor force labels"):
        labelled_data([ase.Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.3]])])


# -- fitters ---------------------------------------------------------------------------

def test_command_template_placeholders():
    fitter = as_fitter("gap_fit at_file={train} gp_file={model} 'gap={soap l_max=4}' "
                       "'default_sigma={0.003 0.08}' rnd_seed={seed} tag={{fold}}-{fold}")
    argv = fitter.render({"train": "/w/t.xyz", "model": "/w/m.xml", "workdir": "/w",
                          "fold": 2, "seed": 7})
    assert argv == ["gap_fit", "at_file=/w/t.xyz", "gp_file=/w/m.xml", "gap={soap l_max=4}",
                    "default_sigma={0.003 0.08}", "rnd_seed=7", "tag={fold}-2"]


@pytest.mark.parametrize("template, message", [
    ("fit at={trian} out={model}", r"unknown placeholder \{trian\}"),
    ("fit out={model}", "neither {train} nor {workdir}"),
    ("fit in={train}", "neither {model} nor {workdir}"),
    ("fit 'unclosed {train} {model}", "cannot split"),
])
def test_bad_templates_are_clear_errors(template, message):
    with pytest.raises(FitSpecError, match=message):
        as_fitter(template)


def test_missing_executable_is_named_before_any_fit(ref):
    with pytest.raises(FitSpecError, match="'no_such_gap_fit_42' not found"):
        cross_validate(ref, "no_such_gap_fit_42 at_file={train} gp_file={model}", CV(k=2))


def test_a_lambda_cannot_go_to_worker_processes(ref):
    with pytest.raises(FitSpecError, match="cannot be sent to worker processes"):
        cross_validate(ref, lambda frames, workdir: "sw", CV(k=2),
                       options=CampaignOptions(workers=2))


# -- cross-validation ------------------------------------------------------------------

def test_cv_of_the_labeller_itself_has_no_error(ref):
    result = cross_validate(ref, fit_checking_labels, CV(k=3, method="stratified", seed=0))
    m = result.metrics()
    assert m["n_folds"] == 3 and m["n_failed_folds"] == 0
    assert m["n_structures_evaluated"] == len(ref)
    assert m["force_rmse"] < 1e-6 and m["energy_rmse"] < 1e-6 and m["stress_rmse"] < 1e-5
    assert set(result.units()) == set(m)
    assert result.units()["force_rmse_fold_mean"] == "eV/Å"
    assert result.units()["energy_rmse"] == "eV/atom" and result.units()["n_folds"] == ""
    assert sorted(result.pooled.indices.tolist()) == list(range(len(ref)))
    assert set(result.by_config_type) == {"bulk", "rattled", "hot"}
    text = result.describe()
    assert "Cartesian components" in text and "per atom" in text and "stratified" in text
    assert_cv_errors(result, force_rmse=0.01, energy_rmse=0.001)
    json.dumps(result.as_dict())


def test_cv_errors_of_a_wrong_model_fail_with_a_table(ref):
    result = cross_validate(ref, fit_scaled_forces, CV(k=3, seed=0))
    forces = np.concatenate([np.ravel(f) for f in ref.forces])
    expected = 0.5 * np.sqrt(np.mean(forces**2))  # forces are 1.5x too large
    assert result.metrics()["force_rmse"] == pytest.approx(expected, rel=1e-4)
    mean, std = result.fold_statistic("force_rmse")
    assert result.metrics()["force_rmse_fold_mean"] == pytest.approx(mean) and std > 0
    with pytest.raises(MlpvalAssertionError) as info:
        assert_cv_errors(result, force_rmse=0.01, energy_rmse=0.001)
    message = str(info.value)
    assert "1 of 3 limits not met" in message
    assert "pooled (out-of-fold)" in message and "fold mean ± std" in message
    assert message.count("FAIL") == 1
    with pytest.raises(ValueError, match="unknown metric 'force_rms'"):
        assert_cv_errors(result, force_rms=0.1)


def test_pooled_errors_combine_the_folds(ref):
    result = cross_validate(ref, fit_scaled_forces, CV(k=4, method="random", seed=3))
    parity = result.parity()
    assert len(parity["force_ref"]) == 3 * int(ref.n_atoms.sum())
    assert np.allclose(parity["force_pred"], 1.5 * parity["force_ref"], atol=1e-6)
    mse = [f.errors.stats["force"].rmse ** 2 * f.errors.stats["force"].n for f in result.folds]
    n = sum(f.errors.stats["force"].n for f in result.folds)
    assert result.metrics()["force_rmse"] == pytest.approx(math.sqrt(sum(mse) / n))
    fig = plot_cv_parity(result)
    assert len(fig.axes) == 2
    data = result.report_data(max_points=100)
    assert len(data["force_ref"]) == 100 and len(data["energy_ref"]) == len(ref)
    from pytest_mlpval.report import figure_function, figure_reference

    assert "figure" not in data  # the figure is the result class's (Result.figure)
    draw = figure_function(figure_reference(type(result).figure))
    figure = draw({"sw-scaled": json.loads(json.dumps(data))})
    assert len(figure.axes) == 2


def test_failing_fit_command_reports_its_stderr(ref, fake_fit):
    result = cross_validate(ref, _command(fake_fit, "fail"), CV(k=2))
    assert result.n_failed_folds == 2 and result.pooled is None
    assert all("exited with status 3" in f.error and "bad option default_sigma" in f.error
               for f in result.folds)
    assert math.isnan(result.metrics()["force_rmse"])
    with pytest.raises(MlpvalAssertionError) as info:
        assert_cv_errors(result, force_rmse=1.0)
    message = str(info.value)
    assert "n_failed_folds" in message and "fatal: bad option default_sigma" in message
    assert "FAILED" in message


def test_fit_command_that_writes_no_model(ref, fake_fit):
    result = cross_validate(ref, _command(fake_fit, "nomodel"), CV(k=2))
    assert result.n_failed_folds == 2
    assert "exited 0 but wrote no model" in result.folds[0].error


def test_fit_command_timeout(ref, fake_fit):
    result = cross_validate(ref, as_fitter(_command(fake_fit, "sleep"), timeout_s=0.5),
                            CV(k=2))
    assert all("timed out after 0.5 s" in f.error for f in result.folds)


def test_fit_function_that_raises_fails_its_fold(ref):
    result = cross_validate(ref, fit_raising, CV(k=2))
    assert result.n_failed_folds == 2
    assert "RuntimeError: the optimiser diverged" in result.folds[1].error
    assert_cv_errors(result, max_failed_folds=2)
    with pytest.raises(MlpvalAssertionError, match="the optimiser diverged"):
        assert_cv_errors(result)


def test_fit_command_with_a_gap_model_in_kept_work_dirs(tmp_path, ref, fake_fit):
    pytest.importorskip("quippy")
    small = make_reference_file(tmp_path / "s.xyz", n_structures=4)
    data = read_dataset(f"s={small},{KEYS}")
    result = cross_validate(data, _command(fake_fit, "gap", str(GAP_XML)) + ["s={seed}"],
                            CV(k=2, seed=11), work_dir=tmp_path / "work")
    assert result.n_failed_folds == 0, result.folds[0].error
    assert 0.01 < result.metrics()["force_rmse"] < 2.0  # the mlearn GAP on SW labels
    folders = sorted((tmp_path / "work").glob("*/fit-*"))
    assert [f.name for f in folders] == ["fit-000", "fit-001"]
    args = (folders[1] / "args.txt").read_text()
    assert args.endswith("s=11") and str(folders[1] / "train.xyz") in args
    assert "dft_forces" in (folders[0] / "train.xyz").read_text()
    assert result.folds[0].model_sha256 is not None


def test_cv_cache_reuse_and_invalidation(tmp_path, ref):
    counter = tmp_path / "calls.txt"
    fit = functools.partial(fit_counting, counter)
    cache = CampaignOptions(cache_dir=tmp_path / "cache")

    def calls():
        return len(counter.read_text().splitlines()) if counter.exists() else 0

    first = cross_validate(ref, fit, CV(k=3, seed=0), options=cache)
    assert calls() == 3 and first.n_from_cache == 0
    again = cross_validate(ref, fit, CV(k=3, seed=0), options=cache)
    assert calls() == 3 and again.n_from_cache == 3
    assert again.metrics() == pytest.approx(first.metrics(), nan_ok=True)
    cross_validate(ref, fit, CV(k=4, seed=0), options=cache)  # another k
    assert calls() == 7
    cross_validate(ref, fit, CV(k=3, seed=1), options=cache)  # another seed
    assert calls() == 10
    cross_validate(ref, fit, CV(k=3, seed=0, method="stratified"), options=cache)
    assert calls() == 13
    other = functools.partial(fit_counting, counter)  # the same function: same key
    assert cross_validate(ref, other, CV(k=3, seed=0), options=cache).n_from_cache == 3
    changed = make_reference_file(tmp_path / "other.xyz", n_structures=12, seed=1,
                                  config_types=("bulk", "rattled", "hot"))
    cross_validate(read_dataset(f"o={changed},{KEYS}"), fit, CV(k=3, seed=0), options=cache)
    assert calls() == 16  # other data
    assert "0 None" not in counter.read_text()  # the seed reached the function


def test_command_change_invalidates_the_cache(tmp_path, ref, fake_fit):
    cache = CampaignOptions(cache_dir=tmp_path / "cache")
    a = cross_validate(ref, _command(fake_fit, "nomodel"), CV(k=2), options=cache)
    b = cross_validate(ref, _command(fake_fit, "fail"), CV(k=2), options=cache)
    assert "wrote no model" in a.folds[0].error and "status 3" in b.folds[0].error


def test_split_for_other_data_is_rejected(tmp_path, ref):
    path = make_reference_file(tmp_path / "x.xyz", n_structures=12, seed=9)
    other = make_split(read_dataset(f"x={path},{KEYS}"), SplitSettings(3))
    with pytest.raises(ValueError, match="made for other data"):
        cross_validate(ref, fit_sw, split=other)


def test_folds_in_worker_processes_match_in_process(ref):
    local = cross_validate(ref, fit_scaled_forces, CV(k=2, seed=2))
    pooled = cross_validate(ref, fit_scaled_forces, CV(k=2, seed=2),
                            options=CampaignOptions(workers=2))
    assert pooled.executor == "processes"
    assert pooled.metrics()["force_rmse"] == pytest.approx(local.metrics()["force_rmse"])


# -- learning curve --------------------------------------------------------------------

def test_learning_curve_errors_fall_with_size(ref):
    result = learning_curve(ref, fit_improving, LearningCurveSettings(
        sizes=(2, 0.5, 1.0), seeds=(0, 1), test_fraction=0.25, split_seed=0))
    assert result.sizes == (2, 4, 9) and result.n_pool == 9 and len(result.points) == 6
    sizes, mean, std = result.curve("force_rmse")
    assert np.all(np.diff(mean) < 0) and np.allclose(std, 0.0)
    m = result.metrics()
    assert m["force_rmse_at_max_size"] < m["force_rmse_at_min_size"]
    assert m["force_rmse_slope"] < -0.5 and m["n_failed"] == 0
    assert result.units()["force_rmse_at_max_size"] == "eV/Å"
    assert result.units()["force_rmse_slope"] == ""
    assert len(plot_learning_curve(result).axes) == 2
    json.dumps(result.as_dict())
    from pytest_mlpval.protocols.fitting.learning_curve import report_figure

    data = json.loads(json.dumps(result.report_data()))
    assert data["force_rmse"]["n_train"] == [2, 4, 9]
    assert len(report_figure({"a": data, "b": data}).axes) == 2


def test_learning_curve_on_a_given_test_set_and_bad_sizes(tmp_path, ref):
    test = make_reference_file(tmp_path / "t.xyz", n_structures=3, seed=5)
    result = learning_curve(ref, fit_sw, LearningCurveSettings(sizes=(6, 12), seeds=(0,)),
                            test=read_dataset(f"t={test},{KEYS}"))
    assert result.n_pool == 12 and result.test == "t"
    assert result.metrics()["force_rmse_at_max_size"] < 1e-6
    with pytest.raises(ValueError, match="between 1 and the 12"):
        learning_curve(ref, fit_sw, LearningCurveSettings(sizes=(13,)),
                       test=read_dataset(f"t={test},{KEYS}"))
    with pytest.raises(ValueError, match=r"fraction 1.5 must be in \(0, 1\]"):
        learning_curve(ref, fit_sw, LearningCurveSettings(sizes=(1.5,)))


def test_fit_command_object_checks_model_name():
    with pytest.raises(FitSpecError, match="model_name must be a file name"):
        FitCommand(("fit", "{train}", "{model}"), model_name="a/b.xml")
    assert FitCommand(("sh", "{workdir}")).check() == shutil.which("sh")


def test_folds_on_a_dask_cluster(tmp_path, fake_fit):
    pytest.importorskip("quippy")
    distributed = pytest.importorskip("distributed")
    small = make_reference_file(tmp_path / "s.xyz", n_structures=4)
    data = read_dataset(f"s={small},{KEYS}")
    command = _command(fake_fit, "gap", str(GAP_XML))
    local = cross_validate(data, command, CV(k=2))
    with distributed.LocalCluster(host="127.0.0.1", n_workers=1, threads_per_worker=1,
                                  processes=True, dashboard_address=None) as cluster:
        dask = CampaignOptions(scheduler=cluster.scheduler_address)
        remote = cross_validate(data, command, CV(k=2), options=dask)
        failing = cross_validate(data, _command(fake_fit, "fail"), CV(k=2), options=dask)
    assert remote.executor == "dask" and remote.n_failed_folds == 0
    assert remote.metrics()["force_rmse"] == pytest.approx(local.metrics()["force_rmse"])
    assert "bad option default_sigma" in failing.folds[0].error


def test_fitted_model_in_a_format_only_the_users_loader_reads(ref, fake_fit):
    command = as_fitter(_command(fake_fit, "custom"), model_name="model.mdl")
    result = cross_validate(ref, command, CV(k=2), loader=load_custom)
    assert result.n_failed_folds == 0 and result.metrics()["force_rmse"] < 1e-6
    unread = cross_validate(ref, command, CV(k=2))
    assert unread.n_failed_folds == 2
    assert "loading the fitted model" in unread.folds[0].error
    assert "no loader accepted it" in unread.folds[0].error


def test_a_fold_with_a_non_finite_error_makes_the_fold_mean_non_finite(ref):
    """Never a smaller denominator: one successful fold whose errors are NaN (or inf)
    makes the fold mean and spread NaN, not the mean of the other folds."""
    from dataclasses import replace

    result = cross_validate(ref, fit_scaled_forces, CV(k=3, seed=0))
    mean, _ = result.fold_statistic("force_rmse")
    assert np.isfinite(mean)

    class _Errors:
        def __init__(self, bad):
            self.bad = bad

        def metrics(self):
            return {"force_rmse": self.bad, "force_mae": self.bad}

    for bad in (float("nan"), float("inf")):
        folds = list(result.folds)
        folds[1] = replace(folds[1], errors=_Errors(bad))
        damaged = replace(result, folds=tuple(folds))
        assert all(f.ok for f in damaged.folds)
        mean, std = damaged.fold_statistic("force_rmse")
        assert np.isnan(mean) and np.isnan(std)
        assert np.isnan(damaged.metrics()["force_rmse_fold_mean"])
        assert "force_rmse_fold_mean" not in damaged.not_measured()


def test_a_non_finite_learning_point_makes_its_size_non_finite(ref):
    """Never a smaller denominator: a successful fit whose held-out error is NaN makes
    the mean at its size NaN, not the mean of the other seeds."""
    from dataclasses import replace

    result = learning_curve(ref, fit_improving, LearningCurveSettings(
        sizes=(2, 0.5, 1.0), seeds=(0, 1), test_fraction=0.25, split_seed=0))
    points = list(result.points)
    at = next(i for i, p in enumerate(points) if p.n_train == 4)
    points[at] = replace(points[at], metrics={**points[at].metrics, "force_rmse": math.nan})
    _, mean, _ = replace(result, points=tuple(points)).curve("force_rmse")
    assert np.isfinite(mean[0]) and np.isnan(mean[1]) and np.isfinite(mean[2])


# -- the protocol contract -------------------------------------------------------------

def test_fitting_settings_results_and_errors_follow_the_protocol_contract():
    from pytest_mlpval.protocols.base import Result, Settings
    from importlib import import_module

    from pytest_mlpval.protocols.fitting import (CrossValidationResult, LearningCurveResult,
                                                 crossval)

    lc = import_module("pytest_mlpval.protocols.fitting.learning_curve")

    for cls in (SplitSettings, CrossValidationSettings, LearningCurveSettings, FitCommand):
        assert issubclass(cls, Settings) and cls.VERSION == 1
    settings = CV(k=3, method="stratified", seed=2, properties=("stress", "forces"))
    assert settings.properties == ("forces", "stress")
    assert CV.from_dict(json.loads(json.dumps(settings.as_dict()))) == settings
    recipe = as_fitter("fit {train} {model}", timeout_s=5)
    assert FitCommand.from_dict(json.loads(json.dumps(recipe.as_dict()))) == recipe
    for bad, message in (({"method": "kfold"}, "unknown split method"),
                         ({"k": 1}, "k must be an integer >= 2"),
                         ({"seed": 1.5}, "seed must be an integer")):
        with pytest.raises(SettingsError, match=message):
            CV(**bad)
    with pytest.raises(SettingsError, match="seeds must be distinct"):
        LearningCurveSettings(seeds=(1, 1))
    assert CrossValidationResult.figure is crossval.report_figure
    assert LearningCurveResult.figure is lc.report_figure
    assert issubclass(CrossValidationResult, Result) and issubclass(LearningCurveResult, Result)
    for error, builtin in ((FitSpecError, ValueError), (FitError, RuntimeError)):
        assert issubclass(error, MlpvalError) and issubclass(error, builtin)


def test_fits_are_cached_under_the_protocol_recipe(ref, monkeypatch):
    """The cache parameters of a cross-validation are the protocol's recipe
    {name, version, settings} with the folds' digest, as every protocol's key."""
    from pytest_mlpval.protocols.base import cache_parameters
    from pytest_mlpval.protocols.fitting import fit as fit_module

    seen = []
    real = fit_module.run_campaign

    def spy(protocol, task, items, potential, parameters, **kwargs):
        seen.append(parameters)
        return real(protocol, task, items, potential, parameters, **kwargs)

    monkeypatch.setattr(fit_module, "run_campaign", spy)
    settings = CV(k=3, seed=4)
    result = cross_validate(ref, fit_sw, settings)
    assert seen[0] == {**cache_parameters("crossval", settings),
                       "folds_digest": result.split.digest}
    assert seen[0]["settings"]["k"] == 3 and seen[0]["version"] == 1
    ready = make_split(ref, SplitSettings(2, "stratified", seed=7))
    cross_validate(ref, fit_sw, settings, split=ready)
    assert seen[1]["settings"]["method"] == "stratified" and seen[1]["settings"]["k"] == 2
    assert seen[1]["folds_digest"] == ready.digest
