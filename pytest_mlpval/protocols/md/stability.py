"""MD stability of a candidate: a short NVT run (Bussi thermostat) followed by NVE
(velocity Verlet), watched step by step (:func:`~pytest_mlpval.protocols.md.run_md`).

Plain library (no pytest). What it measures:

- NVE energy drift: slope of a straight-line fit of the total energy per atom against
  time (eV/atom/ps), and the RMS scatter about it (eV/atom). Energy is conserved by exact
  dynamics; drift comes from forces that are not the gradient of the energy, from
  discontinuities (a cutoff without smoothing) or from a time step too long for the
  potential's stiffness.
- NVT temperature control: mean and spread of the temperature over the second half of
  the NVT part against the target, and the drift of Bussi's conserved energy (the energy
  plus what the thermostat took out), which exposes the same faults under a thermostat.
- The shortest interatomic distance and the highest temperature of the run; NaN,
  exploding forces or energies, overlapping atoms and calculator errors stop the run as
  unstable; the wall-time limit stops it as cut short
  (:class:`~pytest_mlpval.protocols.md.MDLimits`). Either is reported, never hidden.

The default start is a rattled supercell of ``settings.crystal`` (``"diamond"``, silicon's
structure, by default) of ``settings.symbol`` (``"Si"``); ``start=`` takes any structure.
A molecule or cluster (no periodic direction, no cell) runs as given: NVT and NVE need
no cell, it starts without momentum or spin, and its pressure is NaN. Its temperature
fluctuates by sqrt(2/3N) of the target: an 8-atom cluster's by 29%, so loosen
``max_temperature_error_fraction``.
"""

from __future__ import annotations

import math
import operator
import time
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.crystals import canonical_crystal
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.protocols.base import (CampaignOptions, Result, potential_name,
                                          register)
from pytest_mlpval.protocols.md.run import (crystal_start, run_md, run_md_campaign,
                                            write_trajectory)
from pytest_mlpval.protocols.md.settings import (COMPLETED, MDParameterError,
                                                 MDProtocolSettings, MDRecord, MDSegment,
                                                 MDSettings)
from pytest_mlpval.threads import one_blas_thread

__all__ = ["StabilitySettings", "MDStabilityResult", "run_md_stability", "md_stability",
           "analyse_stability", "assert_md_stable", "assert_stable"]

#: the protocol's name (registered, and its campaign cache)
PROTOCOL = "mlpval-md-stability"


@dataclass(frozen=True)
class StabilitySettings(MDProtocolSettings):
    """Parameters of :func:`run_md_stability` (all of them key the cache).

    Attributes
    ----------
    symbol : str
        Element of the default start (a rattled supercell of ``crystal``).
    crystal : str
        The default start's crystal (a spec of
        :func:`~pytest_mlpval.crystals.build_crystal`; ``"diamond"``, silicon's, by
        default: ``"bcc"`` for Mo, ``"fcc"`` for Cu ...).
    limits : MDLimits
    repeat : int
        The default start has at least 8 x repeat^3 atoms (2: 64 atoms), the crystal's
        cell repeated alike along its three vectors (:func:`.crystal_start`).
    temperature_K : float
    timestep_fs : float
    nvt_steps, nve_steps : int
    taut_fs : float
        Bussi coupling time (fs). Short (20 fs) so that a crystal started at the target
        temperature (which loses half its kinetic energy to equipartition) is back at it
        within the first half of the NVT part; Stillinger-Weber, 64 atoms, 1000 K: mean
        temperature within 1-8% of the target over seeds 0-2.
    sample_every : int
        Frames (stored structures) every this many steps; energies are kept every step.
    """

    VERSION: ClassVar[int] = 1

    repeat: int = 2
    crystal: str = "diamond"
    temperature_K: float = 1000.0
    timestep_fs: float = 1.0
    nvt_steps: int = 300
    nve_steps: int = 200
    taut_fs: float = 20.0
    sample_every: int = 20

    def validate(self) -> None:
        try:
            canonical_crystal(self.crystal)
        except MlpvalError as exc:  # an unknown crystal, said when the settings are made
            raise MDParameterError(f"crystal: {exc}") from None
        if not (isinstance(self.temperature_K, (int, float)) and self.temperature_K > 0
                and math.isfinite(self.temperature_K)):
            raise MDParameterError(f"temperature_K must be a finite number > 0, got "
                                   f"{self.temperature_K!r}")
        if self.nvt_steps < 2 or self.nve_steps < 2:
            raise MDParameterError(f"nvt_steps and nve_steps must be >= 2 (a drift needs "
                                   f"points), got {self.nvt_steps!r}, {self.nve_steps!r}")

    def segments(self) -> tuple[MDSegment, MDSegment]:
        return (MDSegment("nvt", self.nvt_steps, self.temperature_K),
                MDSegment("nve", self.nve_steps))

    def md_settings(self) -> MDSettings:
        return MDSettings(timestep_fs=self.timestep_fs, thermostat="bussi",
                          taut_fs=self.taut_fs, sample_every=self.sample_every)


def _stability_record(calc: Any, settings: StabilitySettings, seed: int, start: Any
                      ) -> MDRecord:
    if start is None:
        start = crystal_start(settings.crystal, settings.symbol, 8 * settings.repeat ** 3,
                              seed=seed)
    with one_blas_thread():
        return run_md(start, calc, settings.segments(), settings=settings.md_settings(),
                      seed=seed, limits=settings.limits,
                      initial_temperature_K=settings.temperature_K)


def _stability_task(calc: Any, item: tuple[StabilitySettings, int, Any]) -> dict[str, Any]:
    """Campaign task (module level: workers import it): the run's record as a dict."""
    settings, seed, start = item
    return _stability_record(calc, settings, seed, start).as_dict()


def _slope_per_ps(time_fs: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Slope (per ps) of a least-squares line and the RMS scatter about it."""
    ok = np.isfinite(values)
    if ok.sum() < 2:
        return math.nan, math.nan
    t, v = time_fs[ok] / 1000.0, values[ok]
    slope, intercept = np.polyfit(t, v, 1)
    return float(slope), float(np.sqrt(np.mean((v - (slope * t + intercept)) ** 2)))


@dataclass(frozen=True)
class MDStabilityResult(Result):
    """A stability run and what it measured (NaN where the run did not get there).

    Attributes
    ----------
    potential : str
    settings : StabilitySettings
    seed : int
    record : MDRecord
    energy_drift_per_atom_eV_ps : float
        NVE: slope of the total energy per atom (eV/atom/ps).
    energy_scatter_per_atom_eV : float
        NVE: RMS of the total energy per atom about the fitted line (eV/atom).
    nvt_conserved_drift_per_atom_eV_ps : float
        NVT: slope of Bussi's conserved energy per atom (eV/atom/ps).
    mean_temperature_K, temperature_std_K : float
        Over the second half of the NVT part.
    temperature_error_K : float
        ``mean_temperature_K`` minus the target.
    min_distance_A : float
        Shortest interatomic distance over the recorded frames (Å).
    max_temperature_K : float
    seconds : float
    from_cache : bool
    trajectory_path : str or None
    """

    protocol: ClassVar[str] = "md_stability"

    potential: str
    settings: StabilitySettings
    seed: int
    record: MDRecord
    energy_drift_per_atom_eV_ps: float
    energy_scatter_per_atom_eV: float
    nvt_conserved_drift_per_atom_eV_ps: float
    mean_temperature_K: float
    temperature_std_K: float
    temperature_error_K: float
    min_distance_A: float
    max_temperature_K: float
    seconds: float
    from_cache: bool
    trajectory_path: str | None = None

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def message(self) -> str | None:
        return self.record.message

    def metrics(self) -> dict[str, float]:
        return {"energy_drift_per_atom_eV_ps": self.energy_drift_per_atom_eV_ps,
                "energy_scatter_per_atom_eV": self.energy_scatter_per_atom_eV,
                "nvt_conserved_drift_per_atom_eV_ps": self.nvt_conserved_drift_per_atom_eV_ps,
                "mean_temperature_K": self.mean_temperature_K,
                "temperature_std_K": self.temperature_std_K,
                "temperature_error_K": self.temperature_error_K,
                "min_distance_A": self.min_distance_A,
                "max_temperature_K": self.max_temperature_K,
                "n_steps": float(self.record.n_steps),
                "unstable": float(self.record.status == "unstable"),
                "cut_short": float(self.record.status == "cut_short")}

    def units(self) -> dict[str, str]:
        units = {"energy_drift_per_atom_eV_ps": "eV/atom/ps",
                 "energy_scatter_per_atom_eV": "eV/atom",
                 "nvt_conserved_drift_per_atom_eV_ps": "eV/atom/ps", "min_distance_A": "Å"}
        return {k: units.get(k, "K" if k.endswith("_K") else "") for k in self.metrics()}

    def not_measured(self) -> set[str]:
        """None: a completed run measures every metric, and a NaN left by a run that
        stopped (unstable: NaN, overlapping atoms, exploding energies, a calculator
        error; or cut short by the wall-time limit) is a fault of the run, not a gap."""
        return set()

def analyse_stability(potential: str, settings: StabilitySettings, seed: int,
                      record: MDRecord, seconds: float = 0.0, from_cache: bool = False
                      ) -> MDStabilityResult:
    """The metrics of a stability run from its record."""
    s = record.series
    t = np.asarray(s["time_fs"])
    n_nvt = settings.nvt_steps + 1  # step 0 and the NVT steps
    nvt, nve = slice(0, min(n_nvt, len(t))), slice(n_nvt, len(t))
    late = slice(n_nvt // 2, min(n_nvt, len(t)))
    temps = np.asarray(s["temperature_K"])
    nan = math.nan
    nve_ok = len(t) > settings.nvt_steps + 2
    drift, scatter = (_slope_per_ps(t[nve], np.asarray(s["conserved_energy_per_atom_eV"])[nve])
                      if nve_ok else (nan, nan))
    nvt_drift = _slope_per_ps(t[nvt], np.asarray(s["conserved_energy_per_atom_eV"])[nvt])[0] \
        if len(t) > 2 else nan
    mean_T = float(np.mean(temps[late])) if len(temps[late]) else nan
    return MDStabilityResult(
        potential, settings, seed, record, drift, scatter, nvt_drift, mean_T,
        float(np.std(temps[late])) if len(temps[late]) else nan,
        mean_T - settings.temperature_K,
        min((f.min_distance_A for f in record.frames), default=nan),
        float(np.max(temps)) if len(temps) else nan, seconds, from_cache)


def run_md_stability(potential: Any, settings: StabilitySettings | None = None, *,
                     seed: int = 0, start: Any = None, options: CampaignOptions | None = None,
                     trajectory_path: Any = None, **overrides: Any) -> MDStabilityResult:
    """NVT then NVE with ``potential`` (a loaded Potential or a bare ASE calculator)
    from ``start`` (default: a rattled ``settings.crystal`` of ``settings.symbol``), as a
    campaign item (``options``: workers, cache; cached under the potential's hash, every
    setting, the seed and the start). ``overrides`` replace fields of ``settings``, e.g.
    ``temperature_K=1500, timestep_fs=2``."""
    settings = (settings or StabilitySettings()).with_overrides(**overrides)
    if start is not None and len(start) == 0:
        raise MDParameterError("the start structure has no atoms")
    record, done = run_md_campaign(PROTOCOL, _stability_task, potential, settings,
                                   seed=seed, start=start, options=options,
                                   failure="the stability run could not be made")
    result = analyse_stability(potential_name(potential), settings, int(seed), record,
                               done.seconds, done.from_cache)
    if trajectory_path is not None and record.structures:
        write_trajectory(record.structures, trajectory_path)
        result = replace(result, trajectory_path=str(trajectory_path))
    return result


def md_stability(calc: Any, settings: StabilitySettings) -> MDStabilityResult:
    """The protocol as registered (``mlpval.run_protocol("md_stability", settings)``,
    :func:`~pytest_mlpval.protocols.base.run_protocol`): :func:`run_md_stability`'s run
    from the default start with seed 0, in this process."""
    began = time.perf_counter()
    record = _stability_record(calc, settings, 0, None)
    return analyse_stability(potential_name(calc), settings, 0, record,
                             time.perf_counter() - began)


def assert_md_stable(result: Any, *, max_energy_drift_per_atom_eV_ps: float = 1e-3,
                     max_energy_scatter_per_atom_eV: float = 1e-3,
                     max_temperature_error_fraction: float = 0.15,
                     max_nvt_conserved_drift_per_atom_eV_ps: float | None = 1e-3,
                     min_distance_A: float | None = None, potential: str | None = None
                     ) -> MDStabilityResult:
    """Fail when the run did not complete (unstable, cut short), when the NVE drift
    (|slope|) or scatter, the NVT conserved-energy drift or the relative error of the mean
    NVT temperature exceeds its limit, or the shortest distance fell below
    ``min_distance_A``.

    Defaults, against what Stillinger-Weber does with the default settings (64 atoms,
    1000 K, 1 fs; seeds 0-2): drifts 1 meV/atom/ps (SW: 0.8-2e-5 NVE, 3-8e-5 NVT; its
    forces scaled by 1.5: 3.8e-3 and 6.6e-3), scatter 1 meV/atom (SW: 3e-5; forces x1.5:
    8.6e-3), temperature 15% (SW: 1-8%; a 64-atom cell's temperature fluctuates by
    sqrt(2/3N) = 10% about its mean). Short runs catch blatant faults only: a drift of
    1 meV/atom/ps is 1 eV/atom/ns.
    """
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if not isinstance(result, MDStabilityResult):
        raise TypeError(f"expected an MDStabilityResult, got {type(result).__name__}")
    m = result.metrics()
    target = result.settings.temperature_K
    checks = [("energy_drift_per_atom_eV_ps (|value|)", abs(m["energy_drift_per_atom_eV_ps"]),
               max_energy_drift_per_atom_eV_ps, "<=", "eV/atom/ps"),
              ("energy_scatter_per_atom_eV", m["energy_scatter_per_atom_eV"],
               max_energy_scatter_per_atom_eV, "<=", "eV/atom"),
              ("temperature_error_fraction (|value|)", abs(m["temperature_error_K"]) / target,
               max_temperature_error_fraction, "<=", "")]
    if max_nvt_conserved_drift_per_atom_eV_ps is not None:
        checks.append(("nvt_conserved_drift_per_atom_eV_ps (|value|)",
                       abs(m["nvt_conserved_drift_per_atom_eV_ps"]),
                       max_nvt_conserved_drift_per_atom_eV_ps, "<=", "eV/atom/ps"))
    if min_distance_A is not None:
        checks.append(("min_distance_A", m["min_distance_A"], min_distance_A, ">=", "Å"))
    rows, failed = [], []
    for name, value, limit, op, unit in checks:
        ok = value <= limit if op == "<=" else value >= limit
        rows.append([name, value, f"{op} {limit:g}", unit, "ok" if ok else "FAIL"])
        if not ok:
            failed.append(f"{name.split(' ')[0]} {value:.4g} {unit} (limit {op} {limit:g})")
    record = result.record
    who = f"potential {potential or result.potential!r}: "
    if record.status != COMPLETED:
        first = (f"{who}MD {record.status} after {record.n_steps} of "
                 f"{record.n_steps_planned} steps: {record.message}")
    elif failed:
        first = f"{who}MD not stable: " + "; ".join(failed)
    else:
        return result
    lines = [first, ""] + format_table(["check", "value", "limit", "unit", "status"], rows)
    frames = record.frames[-6:]
    if frames:
        lines += ["", "last frames:"] + format_table(
            ["step", "segment", "T K", "E_pot eV/atom", "E_cons eV/atom", "d_min Å"],
            [[f.step, f.phase, f.temperature_K, f.potential_energy_per_atom_eV,
              f.conserved_energy_per_atom_eV, f.min_distance_A] for f in frames])
    raise MlpvalAssertionError("\n".join(lines))


def assert_stable(result: Any, **limits: Any) -> Any:
    """:func:`assert_md_stable` for a stability result; for a compression result, fail
    when any of its MD was unstable or cut short."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if isinstance(result, MDStabilityResult):
        return assert_md_stable(result, **limits)
    records = getattr(result, "records", None)
    if records is None:
        raise TypeError(f"expected an MD result, got {type(result).__name__}")
    error = getattr(result, "error", None)
    bad = [r for r in records if r.status != COMPLETED]
    if error or bad or not records:
        rows = [[i, r.status, r.instability or "-", r.n_steps, r.n_steps_planned]
                for i, r in enumerate(records)]
        why = error or (bad[0].message if bad else "no MD was run")
        raise MlpvalAssertionError("\n".join(
            [f"potential {getattr(result, 'potential', '?')!r}: MD not completed: {why}", ""]
            + format_table(["run", "status", "instability", "steps", "planned"], rows)))
    return result


register("md_stability", md_stability, StabilitySettings, MDStabilityResult, family="md")
