"""Learning curves: errors on a fixed held-out set against the size of the training set.

Plain library (no pytest).

:func:`learning_curve` holds out a fixed test set (given, or a seeded fraction of the
data), then for every training-set size and every seed fits a model on a random subset of
the remaining structures and tests it on the held-out set, with the same machinery as
:func:`~pytest_mlpval.protocols.fitting.crossval.cross_validate` (fitting command or
function, campaign, cache). For one seed the subsets are nested (the first n structures
of one seeded permutation), so the curve of a seed is smooth; several seeds give the
spread. Errors are
the RMSE of the energy per atom (eV/atom) and of the Cartesian force components (eV/Å) on
the held-out set.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from pytest_mlpval.errors import SettingsError
from pytest_mlpval.metrics import compute_errors
from pytest_mlpval.protocols.base import CampaignOptions, Result, Settings
from pytest_mlpval.protocols.fitting.fit import as_fitter, predictions_from, run_fits
from pytest_mlpval.protocols.fitting.splits import labelled_data, subset

__all__ = ["LearningCurveSettings", "LearningPoint", "LearningCurveResult",
           "learning_curve", "plot_learning_curve", "report_figure", "PROTOCOL"]

PROTOCOL = "learning-curve"
_UNITS = {"energy": "eV/atom", "energy_offset_removed": "eV/atom", "force": "eV/Å",
          "stress": "GPa"}


@dataclass(frozen=True)
class LearningCurveSettings(Settings):
    """What a learning curve does.

    Attributes
    ----------
    sizes : tuple of float or int
        Training-set sizes: fractions (floats in (0, 1]) of the pool or counts (ints).
    seeds : tuple of int
        One subset and one fit per seed and size (distinct).
    test_fraction : float
        Held out of the data when no fixed test set is given, drawn with ``split_seed``.
    split_seed : int
    properties : tuple of str
        Labels predicted and compared.
    """

    VERSION: ClassVar[int] = 1

    sizes: tuple[float | int, ...] = (0.25, 0.5, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    test_fraction: float = 0.2
    split_seed: int = 0
    properties: tuple[str, ...] = ("energy", "forces", "stress")

    def __post_init__(self) -> None:
        seeds = [int(s) for s in self.seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise SettingsError(f"seeds must be distinct integers, got {seeds}")
        object.__setattr__(self, "seeds", tuple(seeds))
        object.__setattr__(self, "sizes", tuple(self.sizes))
        object.__setattr__(self, "properties", tuple(sorted(self.properties)))


def report_figure(per_potential: Mapping[str, Mapping[str, Any]]) -> Any:
    """Learning curves of :meth:`LearningCurveResult.report_data`, one line per run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for name, data in per_potential.items():
        for ax, metric in zip(axes, ("energy_rmse", "force_rmse")):
            curve = data.get(metric)
            if curve:
                ax.errorbar(curve["n_train"], curve["mean"], yerr=curve["std"], marker="o",
                            capsize=3, label=name)
    for ax, metric in zip(axes, ("energy_rmse", "force_rmse")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training structures")
        ax.set_ylabel(f"{metric} ({_UNITS[metric.partition('_rmse')[0]]})")
    axes[0].legend(fontsize=7)
    return fig


@dataclass(frozen=True)
class LearningPoint:
    """One fit of a learning curve.

    Attributes
    ----------
    n_train : int
        Training structures.
    seed : int
    ok : bool
    error : str or None
        Why the fit failed, with the tail of its output.
    metrics : mapping of str to float
        ``energy_rmse``, ``force_rmse``... on the held-out set (see
        :mod:`pytest_mlpval.metrics`).
    fit_seconds : float
    from_cache : bool
    """

    n_train: int
    seed: int
    ok: bool
    error: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    from_cache: bool = False


@dataclass(frozen=True)
class LearningCurveResult(Result):
    """Held-out errors against training-set size.

    Attributes
    ----------
    dataset, test : str
        Names of the training pool and of the held-out set.
    test_sha256 : str
        Digest of the held-out structures.
    n_pool : int
        Structures the training subsets were drawn from.
    sizes : tuple of int
        Training-set sizes, ascending.
    seeds : tuple of int
    points : tuple of LearningPoint
        One per (size, seed), sizes ascending.
    fitter : str
    seconds, task_seconds : float
    cache_path : str or None
    """

    dataset: str
    test: str
    test_sha256: str
    n_pool: int
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    points: tuple[LearningPoint, ...]
    fitter: str
    seconds: float = 0.0
    task_seconds: float = 0.0
    cache_path: str | None = None

    figure = staticmethod(report_figure)

    @property
    def failures(self) -> tuple[LearningPoint, ...]:
        return tuple(p for p in self.points if not p.ok)

    def curve(self, metric: str = "force_rmse") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sizes, mean and sample standard deviation (ddof=1; 0 for one seed) over seeds
        of ``metric`` (NaN where every fit of a size failed, and where any successful
        fit's value is not finite: never the mean of fewer seeds)."""
        means, stds = [], []
        for n in self.sizes:
            values = np.array([p.metrics.get(metric, math.nan) for p in self.points
                               if p.n_train == n and p.ok], dtype=float)
            if not np.all(np.isfinite(values)):
                values = np.zeros(0)
            means.append(values.mean() if values.size else math.nan)
            stds.append(values.std(ddof=1) if values.size > 1 else 0.0 if values.size
                        else math.nan)
        return np.array(self.sizes), np.array(means), np.array(stds)

    def slope(self, metric: str = "force_rmse") -> float:
        """Least-squares slope of log(error) against log(n_train): about -0.5 for a
        model still learning at the statistical rate, near 0 once it saturates."""
        sizes, means, _ = self.curve(metric)
        keep = np.isfinite(means) & (means > 0)
        if keep.sum() < 2:
            return math.nan
        return float(np.polyfit(np.log(sizes[keep]), np.log(means[keep]), 1)[0])

    def metrics(self) -> dict[str, float]:
        """``<q>_rmse_at_max_size`` and ``<q>_rmse_at_min_size`` (mean over seeds) and
        ``<q>_rmse_slope`` (log-log) for energy, force and stress; ``n_points``,
        ``n_failed``, ``max_n_train``."""
        out: dict[str, float] = {}
        for q in ("energy", "force", "stress"):
            _, means, _ = self.curve(f"{q}_rmse")
            out[f"{q}_rmse_at_max_size"] = float(means[-1])
            out[f"{q}_rmse_at_min_size"] = float(means[0])
            out[f"{q}_rmse_slope"] = self.slope(f"{q}_rmse")
        out["n_points"] = float(len(self.points))
        out["n_failed"] = float(len(self.failures))
        out["max_n_train"] = float(self.sizes[-1])
        return out

    def units(self) -> dict[str, str]:
        return {name: "" if name.endswith("_slope") or not name.partition("_rmse")[1]
                else _UNITS[name.partition("_rmse")[0]] for name in self.metrics()}

    def report_data(self) -> dict[str, Any]:
        """The mean curves (JSON-able), drawn by :attr:`figure`."""
        return dict(self.as_dict()["curves"])

    def as_dict(self) -> dict[str, Any]:
        curves = {}
        for metric in ("energy_rmse", "force_rmse", "stress_rmse"):
            sizes, mean, std = self.curve(metric)
            curves[metric] = {"n_train": sizes.tolist(), "mean": mean.tolist(),
                              "std": std.tolist()}
        return {"protocol": PROTOCOL, "dataset": self.dataset, "test": self.test,
                "test_sha256": self.test_sha256, "n_pool": self.n_pool,
                "sizes": list(self.sizes), "seeds": list(self.seeds), "fitter": self.fitter,
                "metrics": self.metrics(), "units": self.units(), "curves": curves,
                "points": [{"n_train": p.n_train, "seed": p.seed, "ok": p.ok,
                            "error": p.error, "metrics": dict(p.metrics),
                            "fit_seconds": p.fit_seconds} for p in self.points],
                "seconds": self.seconds, "task_seconds": self.task_seconds}

    def not_measured(self) -> set[str]:
        """Metrics of a quantity the held-out set has no label for (no fit that ran
        reports it), and a slope with fewer than two sizes of nonzero error to fit (a
        single size asked for, or exact predictions) while every size has its mean. NaN
        because the fits of a size failed, or a prediction was not finite, is a fault."""
        ran = [p for p in self.points if p.ok]
        gaps = set()
        for q in ("energy", "force", "stress"):
            if ran and not any(f"{q}_rmse" in p.metrics for p in ran):
                gaps |= {f"{q}_rmse_at_max_size", f"{q}_rmse_at_min_size", f"{q}_rmse_slope"}
                continue
            means = self.curve(f"{q}_rmse")[1]
            if np.all(np.isfinite(means)) and np.sum(means > 0) < 2:
                gaps.add(f"{q}_rmse_slope")
        return gaps


def _sizes(sizes: Sequence[float | int], n_pool: int) -> list[int]:
    out = []
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, float, np.integer,
                                                            np.floating)):
            raise ValueError(f"training-set size {size!r} is not a number")
        if isinstance(size, (float, np.floating)):
            if not 0 < size <= 1:
                raise ValueError(f"training-set fraction {size} must be in (0, 1]")
            n = max(1, int(round(size * n_pool)))
        else:
            n = int(size)
            if not 1 <= n <= n_pool:
                raise ValueError(f"training-set size {n} must be between 1 and the "
                                 f"{n_pool} structures available for training")
        out.append(n)
    if not out:
        raise ValueError("give at least one training-set size")
    return sorted(set(out))


def learning_curve(data: Any, fit: Any, settings: LearningCurveSettings | None = None, *,
                   test: Any = None, keys: Mapping[str, str] | None = None,
                   test_keys: Mapping[str, str] | None = None,
                   options: CampaignOptions | None = None,
                   work_dir: str | os.PathLike[str] | None = None, loader: Any = None
                   ) -> LearningCurveResult:
    """Held-out errors of the fitting recipe ``fit`` against training-set size.

    Parameters
    ----------
    data : ReferenceSet, dataset spec, sequence of ASE Atoms or LabelledData
        The pool the training subsets are drawn from.
    fit : str, sequence of str, callable, FitCommand or FitCallable
        Fit command template or function (:mod:`pytest_mlpval.protocols.fitting.fit`);
        ``{seed}`` is the point's seed, ``{fold}`` its number.
    settings : LearningCurveSettings, optional
        Sizes, seeds, the held-out fraction and its seed, the labels compared.
    test : dataset, optional
        The fixed held-out set; by default ``settings.test_fraction`` of ``data`` (drawn
        with ``settings.split_seed``) is held out and the rest is the pool.
    keys, test_keys
        Label keys of ASE Atoms given as ``data`` and ``test``.
    options, work_dir, loader
        As :func:`~pytest_mlpval.protocols.fitting.crossval.cross_validate`.
    """
    settings = LearningCurveSettings() if settings is None else settings
    test_fraction, split_seed = settings.test_fraction, settings.split_seed
    pool = labelled_data(data, keys)
    fitter = as_fitter(fit)
    if test is None:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        order = np.random.default_rng(split_seed).permutation(len(pool))
        n_test = max(1, int(round(test_fraction * len(pool))))
        if n_test >= len(pool):
            raise ValueError(f"holding out {n_test} of {len(pool)} structures leaves none "
                             "to train on")
        held, pool_indices = sorted(order[:n_test].tolist()), sorted(order[n_test:].tolist())
        test_ref = subset(pool.reference, held, f"{pool.name}[held out]")
    else:
        test_ref = labelled_data(test, test_keys or keys, "test").reference
        pool_indices = list(range(len(pool)))
    counts = _sizes(settings.sizes, len(pool_indices))
    seeds = list(settings.seeds)
    jobs, keys_of_jobs = [], []
    for n in counts:
        for seed in seeds:
            chosen = np.random.default_rng(seed).permutation(pool_indices)[:n]
            jobs.append({"train": sorted(int(i) for i in chosen), "test": test_ref,
                         "fold": len(jobs), "seed": seed})
            keys_of_jobs.append((n, seed))
    extra = {"counts": counts, "test": test_ref.sha256,
             "pool": pool_indices if test is None else "all"}
    campaign = run_fits(PROTOCOL, pool, fitter, jobs, settings, extra=extra,
                        options=options, work_dir=work_dir, loader=loader)
    points = []
    for (n, seed), item in zip(keys_of_jobs, campaign.items):
        if not item.ok:
            points.append(LearningPoint(n, seed, False, item.error, {}, item.seconds,
                                        item.from_cache))
            continue
        try:
            report = compute_errors(test_ref, predictions_from(item.value, test_ref.name))
        except ValueError as exc:
            points.append(LearningPoint(n, seed, False, f"ValueError: {exc}"))
            continue
        points.append(LearningPoint(n, seed, True, None, report.metrics(),
                                    float(item.value.get("fit_seconds", 0.0)),
                                    item.from_cache))
    return LearningCurveResult(pool.name, test_ref.name, test_ref.sha256,
                               len(pool_indices), tuple(counts), tuple(seeds), tuple(points),
                               fitter.describe(), campaign.seconds, campaign.task_seconds,
                               campaign.cache_path)


def plot_learning_curve(result: LearningCurveResult,
                        metrics: Sequence[str] = ("energy_rmse", "force_rmse"),
                        axes: Any = None) -> Any:
    """Log-log learning curves (mean ± std over seeds, every fit as a dot), one panel per
    metric, on given axes or a new matplotlib ``Figure``. Returns the figure."""
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    else:
        axes = np.atleast_1d(axes)
        fig = axes[0].figure
    for ax, metric in zip(axes, metrics):
        sizes, mean, std = result.curve(metric)
        ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3)
        for p in result.points:
            if p.ok:
                ax.plot(p.n_train, p.metrics.get(metric, math.nan), ".", color="grey",
                        alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training structures")
        ax.set_ylabel(f"{metric} ({_UNITS.get(metric.partition('_rmse')[0], '')})")
    fig.suptitle(f"learning curve on {result.test}")
    return fig

