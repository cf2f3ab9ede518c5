"""Radial distribution function g(r), structure factor S(q) and coordination of liquid
and amorphous structures; a short liquid run; comparison with scalar facts and with
users' curves.

Plain library (no pytest).

g(r) is the histogram of pair distances (matscipy neighbour lists, periodic images
included) normalised by the ideal-gas count 4 pi r^2 rho dr, averaged over frames. S(q)
is its Fourier transform, S(q) = 1 + 4 pi rho int r^2 (g(r) - 1) sin(qr)/(qr) W(r) dr,
with the Lorch window W(r) = sin(pi r/R)/(pi r/R) against truncation ripples (R the
largest r). The coordination number integrates 4 pi rho r^2 g(r) up to the first minimum
of g(r) after its first peak (or a given cutoff): definitions differ, so the cutoff used
is recorded (liquid Si: 5.7-6.3 depending on the definition, Waseda et al., Jpn. J.
Appl. Phys. 34, 4124 (1995)).

Metric names follow the reference table: ``liquid_rdf_first_peak_A``,
``liquid_coordination``, ``liquid_sq_first_peak_invA``, ``liquid_density_g_cm3`` (and
``amorphous_...`` for ``label="amorphous"``). No experimental g(r) or S(q) curve is
packaged (none was found under a licence that allows it): :func:`compare_curve` takes a
user's two-column file.
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Sequence

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.descriptors import cell_widths
from pytest_mlpval.errors import ProtocolError
from pytest_mlpval.protocols.base import CostMeter, register
from pytest_mlpval.protocols.md import MDSegment, MDSettings, random_start, run_md
from pytest_mlpval.protocols.properties.common import (FAMILY, PropertyResult,
                                                       PropertySettings)
from pytest_mlpval.threads import single_threaded

__all__ = ["PairCorrelation", "pair_correlation", "LiquidSettings", "liquid_structure",
           "read_curve", "CurveComparison", "compare_curve", "assert_curve"]

#: g/cm^3 per (amu/Å^3)
_G_CM3_PER_AMU_A3 = 1.66053906660


@dataclass(frozen=True)
class PairCorrelation(PropertyResult):
    """g(r), S(q) and scalars of a set of frames.

    Attributes
    ----------
    label : str
        ``"liquid"`` or ``"amorphous"`` (prefix of the metric names).
    r_A, g_r : tuple of float
        Bin centres (Å) and g(r).
    q_invA, s_q : tuple of float
        S(q) on a q grid (1/Å).
    number_density_invA3, density_g_cm3 : float
    first_peak_A, first_peak_height, first_minimum_A, second_peak_A : float
    coordination : float
        Neighbours within ``coordination_cutoff_A``.
    coordination_cutoff_A : float
        The first minimum of g(r) unless a cutoff was given.
    sq_first_peak_invA : float
    n_frames, n_atoms : int
    temperature_K : float
        Mean temperature of the frames (NaN when not known).
    msd_A2 : float
        Mean-square displacement from the first to the last frame of a run (NaN for
        given frames).
    md_status : str
        How the run that made the frames ended (``""`` for given frames).
    n_force_calls : int
    calculator_seconds, seconds : float
    """

    label: str
    r_A: tuple[float, ...]
    g_r: tuple[float, ...]
    q_invA: tuple[float, ...]
    s_q: tuple[float, ...]
    number_density_invA3: float
    density_g_cm3: float
    first_peak_A: float
    first_peak_height: float
    first_minimum_A: float
    second_peak_A: float
    coordination: float
    coordination_cutoff_A: float
    sq_first_peak_invA: float
    n_frames: int
    n_atoms: int
    temperature_K: float = math.nan
    msd_A2: float = math.nan
    md_status: str = ""
    n_force_calls: int = 0
    calculator_seconds: float = 0.0
    seconds: float = 0.0
    protocol = "pair_correlation"
    owns = r"liquid_\w+"

    def metrics(self) -> dict[str, float]:
        p = self.label
        return {f"{p}_rdf_first_peak_A": self.first_peak_A,
                f"{p}_rdf_first_minimum_A": self.first_minimum_A,
                f"{p}_rdf_second_peak_A": self.second_peak_A,
                f"{p}_coordination": self.coordination,
                f"{p}_sq_first_peak_invA": self.sq_first_peak_invA,
                f"{p}_density_g_cm3": self.density_g_cm3,
                f"{p}_number_density_invA3": self.number_density_invA3,
                f"{p}_temperature_K": self.temperature_K,
                f"{p}_msd_A2": self.msd_A2,
                f"{p}_force_calls": float(self.n_force_calls)}

    def not_measured(self) -> set[str]:
        """Temperature and mean-square displacement of given frames (no run of this
        protocol made them, ``md_status`` empty): there is nothing to take them from."""
        return set() if self.md_status else {f"{self.label}_temperature_K",
                                             f"{self.label}_msd_A2"}


def _smooth(y: np.ndarray, width: int) -> np.ndarray:
    width = max(1, int(width) | 1)  # odd
    padded = np.pad(y, width // 2, mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def _first_extremum(y: np.ndarray, start: int, maximum: bool, floor: float = -np.inf) -> int:
    """First local maximum (above ``floor``) or minimum of ``y`` after ``start``; the
    global one after ``start`` when there is none."""
    sign = 1 if maximum else -1
    for i in range(max(start, 1), len(y) - 1):
        if sign * y[i] >= sign * y[i - 1] and sign * y[i] > sign * y[i + 1] and \
                (not maximum or y[i] > floor):
            return i
    rest = y[start:] if len(y) > start else y
    return int((np.argmax(rest) if maximum else np.argmin(rest)) + min(start, len(y) - 1))


def pair_correlation(frames: Sequence[Any], *, label: str = "liquid",
                     r_max_A: float | None = None, bin_A: float = 0.02,
                     coordination_cutoff_A: float | None = None, q_max_invA: float = 15.0,
                     dq_invA: float = 0.02, smoothing_A: float = 0.1) -> PairCorrelation:
    """g(r), S(q), peaks and coordination of ``frames`` (ASE Atoms, periodic, all with
    the same number of atoms). ``r_max_A`` defaults to half the smallest cell width of
    the first frame. Peaks are found on g(r) smoothed over ``smoothing_A``, the first
    minimum (the coordination cutoff unless ``coordination_cutoff_A`` is given) over three
    times that; the S(q) peak is the first above 1 beyond q = 1/Å. A dense liquid's first
    minimum is shallow and its position noisy: give a cutoff for coordinations that are
    compared (3.1 Å for liquid Si, near the experimental first minimum)."""
    from matscipy.neighbours import neighbour_list

    frames = list(frames)
    if not frames:
        raise ValueError("no frames to analyse")
    if label not in ("liquid", "amorphous"):
        raise ValueError(f"label must be 'liquid' or 'amorphous', got {label!r}")
    if any(not all(a.pbc) for a in frames):
        raise ValueError("pair correlations need periodic frames (pbc on all axes)")
    n = len(frames[0])
    if any(len(a) != n for a in frames):
        raise ValueError("all frames must have the same number of atoms")
    r_max = r_max_A or 0.5 * float(cell_widths(frames[0].cell).min())
    edges = np.arange(0.0, r_max + bin_A / 2, bin_A)
    counts = np.zeros(len(edges) - 1)
    density = 0.0
    for atoms in frames:
        counts += np.histogram(neighbour_list("d", atoms, r_max), bins=edges)[0]
        density += n / atoms.get_volume()
    density /= len(frames)
    r = 0.5 * (edges[1:] + edges[:-1])
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = counts / (len(frames) * n * density * shell)
    # peaks and minima of g smoothed over ~0.1 Å (one frame of a liquid is noisy)
    smooth = _smooth(g, round(smoothing_A / bin_A))
    first = _first_extremum(smooth, 0, True, floor=1.0)
    # the minimum of a dense liquid is shallow: look for it on a 3x smoother curve
    after = _first_extremum(_smooth(g, round(3 * smoothing_A / bin_A)), first + 1, False)
    cutoff = coordination_cutoff_A or float(r[after])
    inside = r <= cutoff
    coordination = float(np.sum(4 * np.pi * density * r[inside] ** 2 * g[inside] * bin_A))
    second = _first_extremum(smooth, after + 1, True, floor=1.0)
    q = np.arange(dq_invA, q_max_invA + dq_invA / 2, dq_invA)
    window = np.sinc(r / r_max)  # numpy's sinc(x) = sin(pi x)/(pi x): Lorch's window
    kernel = np.sinc(np.outer(q, r) / np.pi)  # sin(qr)/(qr)
    s = 1 + 4 * np.pi * density * (kernel * (r ** 2 * (g - 1) * window)).sum(axis=1) * bin_A
    mass = float(np.mean([a.get_masses().sum() / a.get_volume() for a in frames]))
    return PairCorrelation(
        label, tuple(map(float, r)), tuple(map(float, g)), tuple(map(float, q)),
        tuple(map(float, s)), float(density), mass * _G_CM3_PER_AMU_A3, float(r[first]),
        float(g[first]), float(r[after]), float(r[second]), coordination, float(cutoff),
        float(q[_first_extremum(_smooth(s, round(0.1 / dq_invA)), int(1.0 / dq_invA), True,
                                floor=1.0)]), len(frames), n)


@dataclass(frozen=True)
class LiquidSettings(PropertySettings):
    """Settings of :func:`liquid_structure`: the run, then the analysis of
    :func:`pair_correlation` (``r_max_A`` to ``smoothing_A``).

    Attributes
    ----------
    symbol : str
    temperature_K : float
        Of the equilibration and the sampling.
    density_g_cm3 : float
        Default: experimental liquid Si at its melting point.
    n_atoms : int
    melt_temperature_K : float
    melt_steps, equilibration_steps, sample_steps, sample_every : int
    timestep_fs : float
    seed : int
    prerelax_steps : int
        FIRE steps (to 0.5 eV/Å, fixed cell) on the random start; 0: none.
    r_max_A, bin_A, coordination_cutoff_A, q_max_invA, dq_invA, smoothing_A
        As in :func:`pair_correlation`.
    """

    VERSION: ClassVar[int] = 1
    group: ClassVar[str] = "liquid"

    temperature_K: float = 1800.0
    density_g_cm3: float = 2.56
    n_atoms: int = 64
    melt_temperature_K: float = 3000.0
    melt_steps: int = 1000
    equilibration_steps: int = 1000
    sample_steps: int = 2000
    sample_every: int = 20
    timestep_fs: float = 1.0
    seed: int = 0
    prerelax_steps: int = 200
    r_max_A: float | None = None
    bin_A: float = 0.02
    coordination_cutoff_A: float | None = None
    q_max_invA: float = 15.0
    dq_invA: float = 0.02
    smoothing_A: float = 0.1


@single_threaded
def liquid_structure(calc: Any, settings: LiquidSettings | None = None, **overrides: Any
                     ) -> PairCorrelation:
    """A liquid at ``density_g_cm3`` (default: experimental liquid Si at its melting
    point, 2.56 g/cm^3) of ``n_atoms`` placed at random: NVT (Langevin, ASE through
    :func:`~pytest_mlpval.protocols.md.run_md`) at ``melt_temperature_K``, then at
    ``temperature_K``, sampled every ``sample_every`` steps during the last
    ``sample_steps``; returns its :func:`pair_correlation` with the mean temperature and
    the mean-square displacement over the sampling (``msd_A2``: a liquid diffuses, about
    1 Å^2/ps for Si; a crystal or glass stays below ~0.5 Å^2). ``overrides`` replace
    fields of ``settings`` (:class:`LiquidSettings`). A run that does not complete raises
    :class:`~pytest_mlpval.errors.ProtocolError`.
    """
    from ase.data import atomic_masses, atomic_numbers, covalent_radii
    from ase.optimize import FIRE

    s = LiquidSettings.of(settings, **overrides)
    symbol, seed = s.symbol, s.seed
    mass = atomic_masses[atomic_numbers[symbol]]
    volume = mass / (s.density_g_cm3 / _G_CM3_PER_AMU_A3)
    # random positions (no memory of a crystal), then a short relaxation at fixed cell
    # (FIRE to 0.5 eV/Å, at most ``prerelax_steps``): a random start's close contacts
    # release enough energy to overheat the run to thousands of kelvin in a few steps
    start = random_start(symbol, s.n_atoms, volume_per_atom_A3=volume, seed=seed,
                         min_separation_A=1.8 * covalent_radii[atomic_numbers[symbol]])
    segments = [MDSegment("melt", s.melt_steps, s.melt_temperature_K),
                MDSegment("equilibrate", s.equilibration_steps, s.temperature_K),
                MDSegment("liquid", s.sample_steps, s.temperature_K)]
    meter = CostMeter(calc)
    if s.prerelax_steps:
        start.calc = meter.calc
        FIRE(start, logfile=None).run(fmax=0.5, steps=s.prerelax_steps)
        start.calc = None
    record = run_md(start, meter.calc, segments, seed=seed, record_series=False,
                    settings=MDSettings(timestep_fs=s.timestep_fs,
                                        sample_every=s.sample_every))
    if not record.completed:
        raise ProtocolError(f"the liquid run did not complete ({record.status}, "
                            f"{record.instability}): {record.message}")
    frames = [f_s for f_s, f in zip(record.structures, record.frames) if f.phase == "liquid"]
    temps = [f.temperature_K for f in record.frames if f.phase == "liquid"]
    result = pair_correlation(frames, label="liquid", r_max_A=s.r_max_A, bin_A=s.bin_A,
                              coordination_cutoff_A=s.coordination_cutoff_A,
                              q_max_invA=s.q_max_invA, dq_invA=s.dq_invA,
                              smoothing_A=s.smoothing_A)
    msd = float(np.mean(np.sum((frames[-1].positions - frames[0].positions) ** 2, axis=1)))
    return replace(result, temperature_K=float(np.mean(temps)), msd_A2=msd,
                   md_status=record.status, **meter.cost())


def read_curve(path: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two whitespace- or comma-separated columns (x, y), ``#`` comments; raises
    ``ValueError`` naming the file when it is not that."""
    try:
        data = np.loadtxt(path, comments="#", delimiter="," if str(path).endswith(".csv")
                          else None, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read a two-column curve from {os.fspath(path)!r}: {exc}") \
            from exc
    if data.shape[1] != 2 or len(data) < 3:
        raise ValueError(f"{os.fspath(path)!r}: expected two columns and at least 3 rows, "
                         f"got shape {data.shape}")
    if not np.all(np.diff(data[:, 0]) > 0):
        raise ValueError(f"{os.fspath(path)!r}: the first column must increase")
    return data[:, 0], data[:, 1]


@dataclass(frozen=True)
class CurveComparison:
    """A computed g(r) or S(q) against a user's curve on their common range.

    Attributes
    ----------
    curve : str
        ``"g_r"`` or ``"s_q"``.
    source : str
        The file compared with.
    x_min, x_max : float
        Common range (Å or 1/Å).
    rms_difference, max_difference : float
        Of the candidate minus the reference, on the reference's points.
    r_factor : float
        sqrt(sum (c - ref)^2 / sum ref^2) (dimensionless).
    n_points : int
    """

    curve: str
    source: str
    x_min: float
    x_max: float
    rms_difference: float
    max_difference: float
    r_factor: float
    n_points: int

    def metrics(self) -> dict[str, float]:
        return {f"{self.curve}_rms_difference": self.rms_difference,
                f"{self.curve}_max_difference": self.max_difference,
                f"{self.curve}_r_factor": self.r_factor}

    def units(self) -> dict[str, str]:
        return {k: "" for k in self.metrics()}


def compare_curve(result: PairCorrelation, path: Any, curve: str = "g_r", *,
                  x_min: float | None = None, x_max: float | None = None) -> CurveComparison:
    """Compare ``result``'s g(r) (``curve="g_r"``, r in Å) or S(q) (``"s_q"``, q in
    1/Å) with a user's two-column file, interpolating the candidate onto the file's
    points inside the common range."""
    if curve not in ("g_r", "s_q"):
        raise ValueError(f"curve must be 'g_r' or 's_q', got {curve!r}")
    x_ref, y_ref = read_curve(path)
    x, y = (result.r_A, result.g_r) if curve == "g_r" else (result.q_invA, result.s_q)
    lo = max(x[0], x_ref[0], x_min if x_min is not None else -np.inf)
    hi = min(x[-1], x_ref[-1], x_max if x_max is not None else np.inf)
    keep = (x_ref >= lo) & (x_ref <= hi)
    if keep.sum() < 3:
        raise ValueError(f"{path!s}: fewer than 3 points in the common range {lo:g}-{hi:g}")
    diff = np.interp(x_ref[keep], x, y) - y_ref[keep]
    return CurveComparison(curve, str(path), float(lo), float(hi),
                           float(np.sqrt(np.mean(diff ** 2))), float(np.abs(diff).max()),
                           float(np.sqrt(np.sum(diff ** 2) / np.sum(y_ref[keep] ** 2))),
                           int(keep.sum()))


def assert_curve(result: PairCorrelation, path: Any, curve: str = "g_r", *,
                 max_rms: float | None = None, max_r_factor: float | None = None,
                 **kwargs: Any) -> CurveComparison:
    """:func:`compare_curve` with limits; raises
    :class:`~pytest_mlpval.assertions.MlpvalAssertionError` with a table."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if max_rms is None and max_r_factor is None:
        raise ValueError("give max_rms and/or max_r_factor")
    check = compare_curve(result, path, curve, **kwargs)
    rows = [[name, value, limit, "ok" if value <= limit else "FAIL"]
            for name, value, limit in (("rms difference", check.rms_difference, max_rms),
                                       ("R factor", check.r_factor, max_r_factor))
            if limit is not None]
    if any(row[-1] == "FAIL" for row in rows):
        raise MlpvalAssertionError("\n".join(
            [f"{result.label} {curve} differs from {check.source} over "
             f"{check.x_min:.3g}-{check.x_max:.3g} ({check.n_points} points)", ""]
            + format_table(["measure", "value", "limit", "status"], rows)))
    return check


register("liquid", liquid_structure, LiquidSettings, PairCorrelation, family=FAMILY)
