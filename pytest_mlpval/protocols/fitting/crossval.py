"""k-fold cross-validation of the user's fitting recipe (the tutorial's internal test).

Plain library (no pytest).

:func:`cross_validate` splits a labelled dataset into k folds (:func:`~pytest_mlpval.
protocols.fitting.splits.make_split`: random, stratified by config_type, grouped by
config_type, or clusters of similar structures), fits one model per fold on the other
folds with the user's fitting command or function
(:mod:`pytest_mlpval.protocols.fitting.fit`), predicts the held-out fold and reports the
errors with the metrics of :mod:`pytest_mlpval.metrics`. The folds run through
:func:`~pytest_mlpval.campaign.run_campaign` (in this process, local processes or Dask),
cached on disk under the content hash of the data, the fitter, the split and its seed.

Error definitions (see :meth:`CrossValidationResult.describe`): energy errors are per atom
(per-cell error / N, eV/atom), force errors are of the Cartesian components (eV/Å), stress
errors of the 6 Voigt components (GPa); every error is predicted minus reference.
*Pooled* errors are over all out-of-fold predictions (each structure predicted once, by the
model that did not see it); *fold mean* and *fold std* are the mean and the sample standard
deviation (ddof=1) of the k per-fold RMSEs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Mapping

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.data import readonly_array
from pytest_mlpval.evaluate import Predictions
from pytest_mlpval.metrics import compute_errors
from pytest_mlpval.protocols.base import CampaignOptions, Result
from pytest_mlpval.protocols.fitting.fit import as_fitter, predictions_from, run_fits
from pytest_mlpval.protocols.fitting.splits import (CVSplit, SplitSettings, labelled_data,
                                                    make_split, subset)

__all__ = ["CrossValidationSettings", "FoldResult", "CrossValidationResult",
           "cross_validate", "assert_cv_errors", "plot_cv_parity", "report_figure",
           "PROTOCOL", "QUANTITY_UNITS"]

PROTOCOL = "crossval"

#: quantities reported, with their units (see pytest_mlpval.metrics)
QUANTITY_UNITS = {"energy": "eV/atom", "energy_offset_removed": "eV/atom", "force": "eV/Å",
                  "stress": "GPa"}
_POOLED_STATS = ("rmse", "mae", "max")
_FOLD_QUANTITIES = ("energy", "force", "stress")
_PROPERTIES = ("energy", "forces", "stress")


@dataclass(frozen=True)
class CrossValidationSettings(SplitSettings):
    """What a cross-validation does: the split (:class:`~pytest_mlpval.protocols.fitting.
    splits.SplitSettings`: ``k``, ``method``, ``seed``, ``soap``) and the labels to
    predict and compare (``properties``, where the data has them and the model implements
    them). The fitting recipe (its command's model file name, time limit, environment)
    is the :class:`~pytest_mlpval.protocols.fitting.fit.FitCommand`."""

    VERSION: ClassVar[int] = 1

    properties: tuple[str, ...] = _PROPERTIES

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "properties", tuple(sorted(self.properties)))


def report_figure(per_potential: Mapping[str, Mapping[str, Any]]) -> Any:
    """Out-of-fold parity plots of :meth:`CrossValidationResult.report_data`, one colour
    per run (the report's drawing function)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for name, data in per_potential.items():
        for ax, key in zip(axes, ("energy", "force")):
            if f"{key}_ref" in data:
                ax.scatter(data[f"{key}_ref"], data[f"{key}_pred"], s=5, alpha=0.5,
                           label=f"{name}: {data.get('title', '')}")
    for ax, label in zip(axes, ("energy per atom (eV/atom)", "force component (eV/Å)")):
        low, high = ax.get_xlim()
        ax.plot([low, high], [low, high], color="black", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"out-of-fold prediction, {label}")
    axes[0].legend(fontsize=7)
    return fig


@dataclass(frozen=True)
class FoldResult(Result):
    """One fold: a model fitted without the fold, tested on it.

    Attributes
    ----------
    fold : int
    label : str
        The fold's name in the split (``"fold 0"``, the held-out config_type ...).
    n_train, n_test : int
        Structures in the training and held-out sets.
    ok : bool
        False when the fit failed, wrote no model, or the model could not predict.
    error : str or None
        Why it failed, with the tail of the fit's stderr/stdout.
    errors : ErrorReport or None
        Errors on the held-out structures (``indices`` are dataset indices).
    fit_seconds, predict_seconds : float
    model : str or None
        The fitted model's spec (a path; gone when the fit ran in a temporary directory).
    model_sha256 : str or None
    from_cache : bool
    """

    fold: int
    label: str
    n_train: int
    n_test: int
    ok: bool
    error: str | None = None
    errors: Any = field(default=None, repr=False)
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    model: str | None = None
    model_sha256: str | None = None
    from_cache: bool = False

    def metrics(self) -> dict[str, float]:
        out = {}
        values = self.errors.metrics() if self.errors is not None else {}
        for q in _FOLD_QUANTITIES:
            for stat in ("rmse", "mae"):
                out[f"{q}_{stat}"] = float(values.get(f"{q}_{stat}", math.nan))
        return out

    def not_measured(self) -> set[str]:
        """The errors of a quantity the held-out structures have no label for; none of
        a fold that failed (its NaN is a fault)."""
        if not self.ok or self.errors is None:
            return set()
        have = self.errors.metrics()
        return {f"{q}_{stat}" for q in _FOLD_QUANTITIES for stat in ("rmse", "mae")
                if f"{q}_rmse" not in have}


@dataclass(frozen=True)
class CrossValidationResult(Result):
    """k-fold cross-validation errors of a fitting recipe on a dataset.

    Attributes
    ----------
    dataset : str
    dataset_sha256 : str
        Content digest of the labelled structures.
    split : CVSplit
    fitter : str
        The fit command or function.
    folds : tuple of FoldResult
    pooled : ErrorReport or None
        Errors of all out-of-fold predictions of the successful folds (``indices`` are
        dataset indices); None when every fold failed.
    reference, predictions : ReferenceSet, Predictions or None
        The structures of ``pooled`` and their out-of-fold predictions (parity plots).
    seconds, task_seconds : float
        Wall time of this run and worker time of the fits computed in it (s).
    workers : int
    executor : str
    cache_path : str or None
    """

    dataset: str
    dataset_sha256: str
    split: CVSplit
    fitter: str
    folds: tuple[FoldResult, ...]
    pooled: Any = field(default=None, repr=False)
    reference: Any = field(default=None, repr=False)
    predictions: Any = field(default=None, repr=False)
    seconds: float = 0.0
    task_seconds: float = 0.0
    workers: int = 0
    executor: str = "local"
    cache_path: str | None = None

    figure = staticmethod(report_figure)

    @property
    def failures(self) -> tuple[FoldResult, ...]:
        return tuple(f for f in self.folds if not f.ok)

    @property
    def n_failed_folds(self) -> int:
        return len(self.failures)

    @property
    def n_from_cache(self) -> int:
        return sum(f.from_cache for f in self.folds)

    @property
    def by_config_type(self) -> dict[str, Any]:
        """Pooled out-of-fold errors per config_type."""
        return {} if self.pooled is None else self.pooled.by_config_type

    def fold_statistic(self, metric: str) -> tuple[float, float]:
        """Mean and sample standard deviation (ddof=1; 0 for one fold) of a per-fold
        metric (``force_rmse``...) over the successful folds; NaN without any, and NaN
        when any of them is not finite (never the mean of fewer folds)."""
        values = np.array([f.metrics()[metric] for f in self.folds if f.ok], dtype=float)
        if values.size == 0 or not np.all(np.isfinite(values)):
            return math.nan, math.nan
        return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0

    def metrics(self) -> dict[str, float]:
        """Pooled ``<quantity>_<rmse|mae|max>`` (energy, energy_offset_removed, force,
        stress), ``<quantity>_rmse_fold_mean`` / ``_fold_std`` (energy, force, stress),
        ``n_folds``, ``n_failed_folds``, ``n_structures_evaluated``. NaN where a label or
        every fold is missing."""
        pooled = self.pooled.metrics() if self.pooled is not None else {}
        out: dict[str, float] = {}
        for q in QUANTITY_UNITS:
            for stat in _POOLED_STATS:
                out[f"{q}_{stat}"] = float(pooled.get(f"{q}_{stat}", math.nan))
        for q in _FOLD_QUANTITIES:
            mean, std = self.fold_statistic(f"{q}_rmse")
            out[f"{q}_rmse_fold_mean"], out[f"{q}_rmse_fold_std"] = mean, std
        out["n_folds"] = float(len(self.folds))
        out["n_failed_folds"] = float(self.n_failed_folds)
        out["n_structures_evaluated"] = float(0 if self.pooled is None else len(self.pooled))
        return out

    def units(self) -> dict[str, str]:
        out = {}
        for name in self.metrics():
            quantity = name.split("_rmse")[0] if "_fold_" in name \
                else name.rpartition("_")[0]
            out[name] = QUANTITY_UNITS.get(quantity, "")
        return out

    def parity(self) -> dict[str, np.ndarray]:
        """Out-of-fold parity data: ``energy_ref``/``energy_pred`` per atom (eV/atom),
        ``force_ref``/``force_pred`` components (eV/Å), ``config_types`` per structure and
        ``force_config_types`` per component. Empty without predictions."""
        if self.pooled is None:
            return {}
        ref, pred = self.reference, self.predictions
        out: dict[str, np.ndarray] = {"config_types": np.array(ref.config_types)}
        if ref.energy is not None and pred.energy is not None:
            out["energy_ref"] = np.asarray(ref.energy) / ref.n_atoms
            out["energy_pred"] = np.asarray(pred.energy) / ref.n_atoms
        if ref.forces is not None and pred.forces is not None:
            out["force_ref"] = np.concatenate([np.ravel(f) for f in ref.forces])
            out["force_pred"] = np.concatenate([np.ravel(f) for f in pred.forces])
            out["force_config_types"] = np.repeat(np.array(ref.config_types),
                                                  3 * np.asarray(ref.n_atoms))
        return out

    def describe(self) -> str:
        """The definitions behind the numbers, for a report or a README."""
        ok = len(self.folds) - self.n_failed_folds
        return (
            f"{self.split.describe()} of dataset {self.dataset!r} (content sha256 "
            f"{self.dataset_sha256[:16]}). For each fold a model was fitted with "
            f"`{self.fitter}` on the other folds and tested on the held-out fold "
            f"({ok} of {len(self.folds)} fits succeeded). Errors are predicted minus "
            "reference: the energy error is per atom (per-cell error divided by the number "
            "of atoms, eV/atom; 'offset removed' subtracts the mean signed error), the force "
            "error is of the Cartesian components (eV/Å), the stress error of the 6 Voigt "
            "components (GPa). Pooled: RMSE/MAE/max over all out-of-fold predictions, each "
            "structure predicted once by the model that did not see it. Fold mean ± std: "
            "mean and sample standard deviation (ddof=1) of the per-fold RMSEs."
            + ("" if not self.split.notes else " Split notes: " + "; ".join(self.split.notes)))

    def table(self) -> list[str]:
        """Per-fold and pooled errors as table lines."""
        rows = []
        for f in self.folds:
            m = f.metrics()
            name = f.label if f.label == f"fold {f.fold}" else f"{f.fold}: {f.label}"
            rows.append([name, f.n_train, f.n_test,
                         "ok" if f.ok else "FAILED", m["energy_rmse"], m["force_rmse"],
                         m["stress_rmse"], f.fit_seconds])
        pooled = self.metrics()
        rows.append(["pooled (out-of-fold)", "", int(pooled["n_structures_evaluated"]),
                     "", pooled["energy_rmse"], pooled["force_rmse"], pooled["stress_rmse"],
                     ""])
        rows.append(["fold mean ± std", "", "", "",
                     _pm(pooled["energy_rmse_fold_mean"], pooled["energy_rmse_fold_std"]),
                     _pm(pooled["force_rmse_fold_mean"], pooled["force_rmse_fold_std"]),
                     _pm(pooled["stress_rmse_fold_mean"], pooled["stress_rmse_fold_std"]),
                     ""])
        return format_table(["fold", "n_train", "n_test", "status", "E RMSE eV/atom",
                             "F RMSE eV/Å", "S RMSE GPa", "fit s"], rows)

    def report_data(self, max_points: int = 3000, seed: int = 0) -> dict[str, Any]:
        """Small JSON-able parity data for the report (all energies, a seeded sample of at
        most ``max_points`` force components), drawn by :attr:`figure`."""
        data = {k: v.tolist() for k, v in self.parity().items()
                if k in ("energy_ref", "energy_pred", "config_types")}
        parity = self.parity()
        if "force_ref" in parity:
            n = len(parity["force_ref"])
            keep = np.sort(np.random.default_rng(seed).permutation(n)[:max_points])
            data["force_ref"] = parity["force_ref"][keep].tolist()
            data["force_pred"] = parity["force_pred"][keep].tolist()
        return {"title": f"{self.split.k}-fold CV ({self.split.method})", **data}

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL, "dataset": self.dataset,
            "dataset_sha256": self.dataset_sha256, "split": self.split.as_dict(),
            "fitter": self.fitter, "metrics": self.metrics(), "units": self.units(),
            "folds": [{"fold": f.fold, "label": f.label, "n_train": f.n_train,
                       "n_test": f.n_test, "ok": f.ok, "error": f.error,
                       "metrics": f.metrics(), "fit_seconds": f.fit_seconds,
                       "predict_seconds": f.predict_seconds, "model": f.model,
                       "model_sha256": f.model_sha256, "from_cache": f.from_cache}
                      for f in self.folds],
            "by_config_type": {c: {k: v for k, v in r.metrics().items()
                                   if k.rpartition("_")[2] in _POOLED_STATS}
                               for c, r in self.by_config_type.items()},
            "description": self.describe(), "seconds": self.seconds,
            "task_seconds": self.task_seconds, "workers": self.workers,
            "executor": self.executor, "cache_path": self.cache_path,
        }

    def not_measured(self) -> set[str]:
        """Metrics of a quantity the dataset has no label for (no stress, say): its
        pooled statistics and fold mean and spread. NaN because a fold failed, or every
        fold did (no pooled errors), or a prediction was not finite, is a fault."""
        if self.pooled is None:
            return set()
        have = self.pooled.metrics()
        gaps = set()
        for q in QUANTITY_UNITS:
            if f"{q}_rmse" not in have:
                gaps |= {f"{q}_{stat}" for stat in _POOLED_STATS}
                if q in _FOLD_QUANTITIES:
                    gaps |= {f"{q}_rmse_fold_mean", f"{q}_rmse_fold_std"}
        return gaps


def _pm(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.4g} ± {std:.2g}"


def cross_validate(data: Any, fit: Any, settings: CrossValidationSettings | None = None, *,
                   split: CVSplit | None = None, keys: Mapping[str, str] | None = None,
                   options: CampaignOptions | None = None,
                   work_dir: str | os.PathLike[str] | None = None, loader: Any = None
                   ) -> CrossValidationResult:
    """k-fold cross-validation of the fitting recipe ``fit`` on ``data``.

    Parameters
    ----------
    data : ReferenceSet, dataset spec string, sequence of ASE Atoms or LabelledData
        Labelled structures (labels of Atoms under ``keys``; see
        :func:`~pytest_mlpval.protocols.fitting.splits.labelled_data`).
    fit : str, sequence of str, callable, FitCommand or FitCallable
        A fit command template or a function (:mod:`pytest_mlpval.protocols.fitting.fit`);
        :func:`~pytest_mlpval.protocols.fitting.fit.as_fitter` sets a command's model
        file name, time limit per fit (s) and extra environment variables.
    settings : CrossValidationSettings, optional
        The split (``k``, ``method``, ``seed``, ``soap``; ``seed`` also fills
        ``{seed}``) and the labels compared (default: 5 random folds, seed 0).
    split : CVSplit, optional
        A ready split of this data (from
        :func:`~pytest_mlpval.protocols.fitting.splits.make_split`), used instead of the
        settings' method, k and seed.
    options : CampaignOptions, optional
        Where the folds run and where they are cached; see
        :func:`~pytest_mlpval.campaign.run_campaign`.
    work_dir : path, optional
        Keep every fold's files (training file, model, logs) under this folder; by default
        each fit runs in a temporary directory.
    loader : callable, optional
        ``loader(model_path) -> calculator or None``, asked before the built-in loaders
        (e.g. for model formats only a ``pytest_mlpval_load_potential`` hook knows).

    Raises
    ------
    FitSpecError
        A bad fit template, an executable not found, a function that cannot reach worker
        processes.
    ValueError
        A bad split (see :func:`~pytest_mlpval.protocols.fitting.splits.make_split`).

    A fold whose fit fails is kept as a failed :class:`FoldResult` with the fit's output;
    check it with :func:`assert_cv_errors` (``max_failed_folds=0`` by default).
    """
    settings = CrossValidationSettings() if settings is None else settings
    labelled = labelled_data(data, keys)
    fitter = as_fitter(fit)
    if split is not None:
        if split.dataset_sha256 != labelled.sha256 or split.n_structures != len(labelled):
            raise ValueError(f"the split given ({split.describe()}) was made for other data "
                             f"(dataset sha256 {split.dataset_sha256[:16]}, this data "
                             f"{labelled.sha256[:16]})")
        the_split = split
        settings = settings.with_overrides(method=split.method, k=split.k, seed=split.seed)
    else:
        the_split = make_split(labelled, settings)
    reference = labelled.reference
    jobs = [{"train": the_split.train_indices(i),
             "test": subset(reference, the_split.test_indices(i),
                            f"{reference.name}[{the_split.labels[i]}]"),
             "fold": i, "seed": the_split.seed} for i in range(len(the_split))]
    campaign = run_fits(PROTOCOL, labelled, fitter, jobs, settings,
                        extra={"folds_digest": the_split.digest}, options=options,
                        work_dir=work_dir, loader=loader)
    folds, predicted = [], {}
    for i, item in enumerate(campaign.items):
        test = jobs[i]["test"]
        base = dict(fold=i, label=the_split.labels[i], n_train=len(jobs[i]["train"]),
                    n_test=len(test), from_cache=item.from_cache)
        if not item.ok:
            folds.append(FoldResult(ok=False, error=item.error, fit_seconds=item.seconds,
                                    **base))
            continue
        value = item.value
        predictions = predictions_from(value, test.name)
        try:
            report = compute_errors(test, predictions)
        except ValueError as exc:  # nothing predicted that the data has
            folds.append(FoldResult(ok=False, error=f"ValueError: {exc}", **base))
            continue
        predicted[i] = predictions
        folds.append(FoldResult(ok=True, errors=replace(report, indices=_readonly_int(
            the_split.test_indices(i))), fit_seconds=float(value.get("fit_seconds", 0.0)),
            predict_seconds=float(value.get("predict_seconds", 0.0)), model=value.get("model"),
            model_sha256=value.get("model_sha256"), **base))
    pooled, pooled_ref, pooled_pred = _pooled(reference, the_split, predicted)
    return CrossValidationResult(
        reference.name, labelled.sha256, the_split, fitter.describe(), tuple(folds), pooled,
        pooled_ref, pooled_pred, campaign.seconds, campaign.task_seconds, campaign.workers,
        campaign.executor, campaign.cache_path)


def _pooled(reference: Any, split: CVSplit, predicted: Mapping[int, Any]
            ) -> tuple[Any, Any, Any]:
    """Out-of-fold errors: the predictions of the successful folds, each structure by the
    model that did not see it, in dataset order. A label is pooled when every
    successful fold predicted it."""
    if not predicted:
        return None, None, None
    where = {int(index): (fold, j) for fold in predicted
             for j, index in enumerate(split.test_folds[fold])}
    evaluated = sorted(where)

    def gather(label: str) -> list | None:
        if any(getattr(p, label) is None for p in predicted.values()):
            return None
        return [getattr(predicted[where[i][0]], label)[where[i][1]] for i in evaluated]

    energy, forces, stress = gather("energy"), gather("forces"), gather("stress")
    pooled_ref = subset(reference, evaluated, reference.name)
    pooled_pred = Predictions(reference.name,
                              None if energy is None else readonly_array(energy),
                              None if forces is None else tuple(forces),
                              None if stress is None else readonly_array(stress))
    pooled = replace(compute_errors(pooled_ref, pooled_pred), indices=_readonly_int(evaluated))
    return pooled, pooled_ref, pooled_pred


def _readonly_int(values: Any) -> np.ndarray:
    array = np.array(values, dtype=int)
    array.flags.writeable = False
    return array


def assert_cv_errors(result: CrossValidationResult, *, max_failed_folds: int = 0,
                     **limits: float) -> None:
    """Check upper limits on the metrics of a cross-validation (``force_rmse=0.15``,
    ``energy_rmse=0.005``, ``force_rmse_fold_mean=...``; names of
    :meth:`CrossValidationResult.metrics`, in their units) and at most
    ``max_failed_folds`` failed folds.

    Raises :class:`~pytest_mlpval.assertions.MlpvalAssertionError` with the limits, a
    per-fold and pooled table and the output of failed fits; ``ValueError`` for an
    unknown metric or a bad limit. A NaN metric (a label no fold predicted) fails.
    """
    __tracebackhide__ = True
    metrics = result.metrics()
    checks = []
    for name, limit in limits.items():
        if name not in metrics:
            raise ValueError(f"assert_cv_errors: unknown metric {name!r}; known: "
                             f"{', '.join(sorted(metrics))}")
        try:
            limit = float(limit)
        except (TypeError, ValueError):
            raise ValueError(f"assert_cv_errors: {name}={limit!r} is not a number") from None
        if not limit >= 0:
            raise ValueError(f"assert_cv_errors: {name}={limit!r} must be >= 0")
        value = metrics[name]
        checks.append((name, value, limit, value <= limit))
    if isinstance(max_failed_folds, bool) or not isinstance(max_failed_folds, int) \
            or max_failed_folds < 0:
        raise ValueError(f"max_failed_folds must be an integer >= 0, got {max_failed_folds!r}")
    checks.append(("n_failed_folds", float(result.n_failed_folds), float(max_failed_folds),
                   result.n_failed_folds <= max_failed_folds))
    if all(passed for *_, passed in checks):
        return
    units = result.units()
    failed = [c for c in checks if not c[3]]
    lines = [f"cross-validation of dataset {result.dataset!r}: {len(failed)} of {len(checks)} "
             f"limits not met ({result.split.describe()}; fit: {result.fitter})", ""]
    lines += format_table(["metric", "value", "limit", "unit", "status"],
                          [(n, v, lim, units.get(n, "") or "-", "ok" if ok else "FAIL")
                           for n, v, lim, ok in checks])
    lines += ["", "per fold and pooled:"] + result.table()
    for f in result.failures:
        name = f"fold {f.fold}" + ("" if f.label == f"fold {f.fold}" else f" ({f.label})")
        lines += ["", f"{name} failed: {f.error}"]
    raise MlpvalAssertionError("\n".join(lines))


def plot_cv_parity(result: CrossValidationResult, axes: Any = None) -> Any:
    """Out-of-fold parity plots (energy per atom and force components), coloured by
    config_type, on two given matplotlib axes or a new ``Figure`` (no pyplot state).
    Returns the figure."""
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 4.2), layout="constrained")
        axes = fig.subplots(1, 2)
    else:
        fig = axes[0].figure
    data = result.parity()
    panels = (("energy", "energy per atom (eV/atom)", "config_types"),
              ("force", "force component (eV/Å)", "force_config_types"))
    for ax, (key, label, types_key) in zip(axes, panels):
        if f"{key}_ref" not in data:
            ax.set_axis_off()
            continue
        ref, pred, types = data[f"{key}_ref"], data[f"{key}_pred"], data[types_key]
        for name in sorted(set(types.tolist())):
            keep = types == name
            ax.scatter(ref[keep], pred[keep], s=6, alpha=0.6, label=name)
        low, high = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([low, high], [low, high], color="black", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{result.split.k}-fold CV ({result.split.method}), out-of-fold")
    return fig

