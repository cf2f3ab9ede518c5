"""Errors of candidates on the melt-quench benchmark, per snapshot and per phase, and the
assertion on them (the tutorial's Fig. 6).

Plain library (no pytest). Predictions use :func:`~pytest_mlpval.evaluate.predict_cached`
(cached per candidate hash and snapshot set), errors :func:`~pytest_mlpval.metrics.
compute_errors` with the phase as config_type. Energies are compared per atom; since
models may use different energy zeros, ``energy_offset_removed`` (the error after
removing the mean offset over all snapshots) is reported beside the raw error. Forces are
Cartesian components (eV/Å).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, assert_errors_within, format_table
from pytest_mlpval.evaluate import predict_cached, properties_for
from pytest_mlpval.metrics import compute_errors
from pytest_mlpval.protocols.base import Result
from pytest_mlpval.protocols.md.meltquench import MeltQuenchTrajectory, read_meltquench

__all__ = ["MeltQuenchErrors", "meltquench_errors", "compare_meltquench",
           "meltquench_table", "assert_phase_errors", "PHASE_METRICS"]

#: metrics reported overall and per phase (``<phase>_<metric>``)
PHASE_METRICS = ("energy_rmse", "energy_mae", "energy_offset_removed_rmse", "force_rmse",
                 "force_mae", "force_max")


@dataclass(frozen=True)
class MeltQuenchErrors(Result):
    """One candidate's errors on the melt-quench snapshots.

    Attributes
    ----------
    candidate : str
    labelled_by : str
    report : ErrorReport
        All snapshots; ``report.subset_by_config_type(phase)`` for one phase.
    phases : tuple of str
        In trajectory order.
    snapshot_phase : tuple of str
    steps, time_fs, temperature_K : ndarray, shape (n_snapshots,)
    energy_error_per_atom_eV : ndarray, shape (n_snapshots,)
        Signed, predicted minus reference (NaN without energy labels).
    force_rmse_eV_A : ndarray, shape (n_snapshots,)
        RMSE of the force components of each snapshot (NaN without force labels).
    seconds : float
        Time spent in the candidate (0 when read from the cache).

    ``as_dict()`` is a summary (metrics and per-snapshot errors) for reports; the
    per-structure errors themselves are not stored, so it is not read back.
    """

    protocol: ClassVar[str] = "meltquench"

    candidate: str
    labelled_by: str
    report: Any
    phases: tuple[str, ...]
    snapshot_phase: tuple[str, ...]
    steps: np.ndarray
    time_fs: np.ndarray
    temperature_K: np.ndarray
    energy_error_per_atom_eV: np.ndarray
    force_rmse_eV_A: np.ndarray
    seconds: float = 0.0

    def per_phase(self) -> dict[str, Any]:
        """``{phase: ErrorReport}``."""
        return {p: self.report.subset_by_config_type(p) for p in self.phases}

    def metrics(self) -> dict[str, float]:
        """:data:`PHASE_METRICS` over all snapshots and as ``<phase>_<metric>``."""
        out: dict[str, float] = {}
        for prefix, report in [("", self.report)] + [(f"{p}_", r)
                                                     for p, r in self.per_phase().items()]:
            m = report.metrics()
            out.update({prefix + k: float(m.get(k, math.nan)) for k in PHASE_METRICS})
        return out

    def not_measured(self) -> set[str]:
        """The metrics of a label the snapshots do not have (no energy or no forces)."""
        parts = [("", self.report)] + [(f"{p}_", r) for p, r in self.per_phase().items()]
        return {prefix + k for prefix, report in parts for k in PHASE_METRICS
                if k not in report.metrics()}

    def units(self) -> dict[str, str]:
        return {k: "eV/Å" if "force" in k else "eV/atom" for k in self.metrics()}

    def as_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "labelled_by": self.labelled_by,
                "dataset": self.report.dataset, "phases": list(self.phases),
                "metrics": self.metrics(),
                "snapshots": [{"step": int(s), "time_fs": float(t), "phase": p,
                               "temperature_K": float(T), "energy_error_per_atom_eV": float(e),
                               "force_rmse_eV_A": float(f)}
                              for s, t, p, T, e, f in zip(
                                  self.steps, self.time_fs, self.snapshot_phase,
                                  self.temperature_K, self.energy_error_per_atom_eV,
                                  self.force_rmse_eV_A)],
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeltQuenchErrors:
        raise TypeError("MeltQuenchErrors.as_dict() is a summary without the errors of "
                        "each structure: compute the errors again with meltquench_errors()")


def _trajectory_of(benchmark: Any) -> Any:
    if isinstance(benchmark, MeltQuenchTrajectory):
        return benchmark
    if isinstance(benchmark, (str, bytes)) or hasattr(benchmark, "__fspath__"):
        return read_meltquench(benchmark)
    raise TypeError(f"expected a MeltQuenchTrajectory or the path of an extxyz file, got "
                    f"{type(benchmark).__name__}")


def meltquench_errors(potential: Any, benchmark: Any, *, cache_dir: Any = None,
                      properties: Sequence[str] = ("energy", "forces")) -> MeltQuenchErrors:
    """Errors of ``potential`` (a Potential or an ASE calculator) on ``benchmark`` (a
    :class:`~pytest_mlpval.protocols.md.meltquench.MeltQuenchTrajectory` or an extxyz path).

    Raises :class:`~pytest_mlpval.errors.NonFiniteError` naming the snapshot and its
    phase when the candidate returns NaN, and the candidate's own exception when it
    raises: a benchmark with silently missing snapshots would flatter it.
    """
    trajectory = _trajectory_of(benchmark)
    reference = trajectory.reference
    calc = getattr(potential, "calculator", potential)
    info = getattr(potential, "info", None)
    props = properties_for(calc, reference, properties)
    if not props:
        raise ValueError(f"nothing to compare: the snapshots have labels "
                         f"{reference.labels}, the candidate implements "
                         f"{getattr(calc, 'implemented_properties', '?')}")
    predictions = predict_cached(calc, getattr(info, "sha256", None), reference, props,
                                 cache_dir, potential=getattr(info, "name", None),
                                 loader_versions=getattr(info, "loader_versions", None))
    report = compute_errors(reference, predictions)
    nan = np.full(len(reference), math.nan)
    energy = report.energy_error if report.energy_error is not None else nan
    forces = report.per_structure("force") if report.force_error is not None else nan
    name = getattr(info, "name", type(calc).__name__)
    return MeltQuenchErrors(name, trajectory.labelled_by, report, tuple(trajectory.phases),
                            tuple(reference.config_types), trajectory.steps,
                            trajectory.time_fs, trajectory.temperature_K,
                            np.asarray(energy), np.asarray(forces), predictions.seconds)


def compare_meltquench(candidates: Mapping[str, Any], benchmark: Any, *,
                       cache_dir: Any = None) -> dict[str, MeltQuenchErrors]:
    """:func:`meltquench_errors` of several candidates (``{name: potential}``) on the
    same snapshots; the names given replace the potentials' own."""
    trajectory = _trajectory_of(benchmark)
    return {name: replace(meltquench_errors(pot, trajectory, cache_dir=cache_dir),
                          candidate=name) for name, pot in candidates.items()}


def meltquench_table(results: Mapping[str, MeltQuenchErrors] | Sequence[MeltQuenchErrors]
                     ) -> list[str]:
    """Per candidate and phase: snapshots, energy RMSE (meV/atom, raw and offset removed)
    and force-component RMSE and MAE (eV/Å), as table lines."""
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    rows = []
    for r in items:
        for phase, report in [("all", r.report), *r.per_phase().items()]:
            m = report.metrics()
            rows.append([r.candidate, phase, len(report),
                         1000 * m.get("energy_rmse", math.nan),
                         1000 * m.get("energy_offset_removed_rmse", math.nan),
                         m.get("force_rmse", math.nan), m.get("force_mae", math.nan)])
    return format_table(["candidate", "phase", "n", "E RMSE meV/atom",
                         "E RMSE offset removed", "F RMSE eV/Å", "F MAE eV/Å"], rows)


def assert_phase_errors(result: MeltQuenchErrors, *, phase: str, potential: str | None = None,
                        **limits: float) -> list[Any]:
    """Fail when a metric of one phase exceeds its limit, e.g.
    ``assert_phase_errors(errors, phase="melt", force_rmse=0.3)``. Limits are upper
    bounds in the metric's unit (``force_*`` eV/Å, ``energy_*`` eV/atom; the names of
    :func:`~pytest_mlpval.metrics.metric_unit`). The message shows every phase."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if not isinstance(result, MeltQuenchErrors):
        raise TypeError(f"expected MeltQuenchErrors, got {type(result).__name__}")
    if phase not in result.phases:
        raise KeyError(f"phase {phase!r} not in the benchmark (phases: "
                       f"{', '.join(result.phases)})")
    hint = "\n".join(["all phases:"] + meltquench_table([result]))
    return assert_errors_within(result.report, config_type=phase,
                                potential=potential or result.candidate, hint=hint, **limits)
