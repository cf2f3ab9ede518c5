"""Compression of an amorphous structure under a pressure ramp (the tutorial's Fig. 7;
Deringer et al., Nature 589, 59 (2021) for silicon).

Plain library (no pytest).

A run (one seed) is: a start (a random cell, or a rattled diamond cell, or the user's
structure), relaxed a little and melted and quenched with the candidate at constant
volume (ASE ``Langevin``), then an NPT pressure ramp at a set temperature (ASE
``LangevinBAOAB`` with a flexible cell by default, or ``Inhomogeneous_NPTBerendsen``),
optionally held at the final pressure. Every ``sample_every`` steps a frame records
pressure, volume, energies, temperature, the coordination distribution and, per
reference crystal (diamond and sh for Si), the per-atom SOAP similarity to the crystal
both at ambient pressure (``_fixed``) and relaxed at the frame's target pressure (the
pressure-adjusted reference: ``relaxed_crystal(name, calc, pressure_GPa=p)`` on a grid of
``reference_grid_GPa``, relaxed once per grid point and cached).

Runs go through :func:`~pytest_mlpval.campaign.run_campaign` (one item per seed): cached
under the potential's hash and every setting, in parallel over seeds with ``workers``.
The outcome of each run is classified by :mod:`pytest_mlpval.compression_outcome`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .mdtypes import MDLimits, MDParameterError, MDRecord, MDSegment, MDSettings
from .structure import HIGH_COORDINATION, SI_BOND_CUTOFF_A, SoapSettings

__all__ = ["CompressionSettings", "CompressionResult", "CompressionAnalyser", "run_compression",
           "run_compressions", "reference_crystals", "atom_key"]

PROTOCOL = "mlpval-md-compression"
REFERENCE_PROTOCOL = "mlpval-md-reference-crystals"


def atom_key(name: str) -> str:
    """``name`` as an extxyz-safe key (``beta-Sn`` -> ``beta_Sn``)."""
    return re.sub(r"\W", "_", name)


@dataclass(frozen=True)
class CompressionSettings:
    """Every parameter of a compression run (all of them key the cache).

    Attributes
    ----------
    symbol : str
    n_atoms : int
        Atoms of the random start (``start="diamond"``: rounded to 8 x n^3).
    start_cell : str
        ``"random"`` (random positions, no two closer than 0.8 x the covalent bond) or
        ``"diamond"`` (rattled diamond); ignored when a start structure is passed.
    prerelax_steps : int
        FIRE steps (positions only) on the start before melting (random starts are far
        from any minimum).
    melt_K, quench_to_K : float
        Melt temperature and the temperature the quench ends at.
    melt_steps, quench_steps : int
        Set ``melt_steps = quench_steps = 0`` to compress the start as it is.
    temperature_K : float
        Temperature of the compression.
    pressure_start_GPa, pressure_end_GPa : float
    equilibrate_steps, ramp_steps, hold_steps : int
        NPT at the start pressure, the linear ramp, NPT at the end pressure.
    references : tuple of str
        Reference crystals (names of :func:`~pytest_mlpval.crystals.build_crystal`);
        the expected low- and high-pressure phases. Si: diamond and sh.
    expected_phase : str
        The phase the run should crystallise into (for the outcome).
    reference_grid_GPa : float
        Spacing of the pressures at which references are relaxed; a frame uses the
        grid point nearest to its target pressure.
    similarity_cutoff : float
        An atom is "like" a reference when its SOAP similarity (:data:`~pytest_mlpval.
        structure.SI_SOAP`, zeta 4) exceeds this: 0.99, the 5th percentile of the atoms
        of a thermal crystal. Calibrated on silicon with the bundled GAP (64 atoms):
        thermal sh at 500 K and 15 GPa scores 0.990 / 0.996 / 0.998 (5th percentile /
        median / 95th percentile of the atoms) against sh relaxed at 15 GPa; thermal
        diamond at 500 K 0.998-1.0 against diamond; Stillinger-Weber a-Si at 18 GPa at
        most 0.964 (95th percentile) against sh relaxed at 20 GPa, but up to 0.986
        against sh at 0 GPa (the fixed reference drifts, as the tutorial warns); the
        GAP's dense amorphous state at 10-12 GPa 0.94-0.99 (5th-95th).
    coordination_cutoff_A, high_coordination : float
    soap : SoapSettings
    md : MDSettings
        Time step, thermostat, barostat, sampling.
    limits : MDLimits
        Stability checks and the wall-time limit (shared by the whole run).
    """

    symbol: str = "Si"
    n_atoms: int = 64
    start_cell: str = "random"
    prerelax_steps: int = 50
    melt_K: float = 3000.0
    quench_to_K: float = 500.0
    melt_steps: int = 500
    quench_steps: int = 1000
    temperature_K: float = 500.0
    pressure_start_GPa: float = 0.0
    pressure_end_GPa: float = 20.0
    equilibrate_steps: int = 0
    ramp_steps: int = 2000
    hold_steps: int = 0
    references: tuple[str, ...] = ("diamond", "sh")
    expected_phase: str = "sh"
    reference_grid_GPa: float = 2.5
    similarity_cutoff: float = 0.99
    coordination_cutoff_A: float = SI_BOND_CUTOFF_A
    high_coordination: float = HIGH_COORDINATION
    soap: SoapSettings = SoapSettings()
    md: MDSettings = MDSettings(timestep_fs=2.0, barostat="langevin_baoab", taup_fs=200.0,
                                sample_every=20)
    limits: MDLimits = MDLimits()

    def __post_init__(self) -> None:
        from .crystals import UnknownCrystalError, build_crystal
        from .units import is_chemical_symbol

        if not is_chemical_symbol(self.symbol):
            raise MDParameterError(f"symbol {self.symbol!r} is not a chemical symbol")
        if self.start_cell not in ("random", "diamond"):
            raise MDParameterError(f"start_cell must be 'random' or 'diamond', got "
                                   f"{self.start_cell!r}")
        object.__setattr__(self, "references", tuple(self.references))
        if not self.references:
            raise MDParameterError("give at least one reference crystal")
        for name in (*self.references, self.expected_phase):
            try:
                build_crystal(name, self.symbol)
            except UnknownCrystalError as exc:
                raise MDParameterError(f"reference crystal: {exc}") from None
        if self.expected_phase not in self.references:
            raise MDParameterError(f"expected_phase {self.expected_phase!r} is not among "
                                   f"the references {list(self.references)}")
        # the segments validate steps, temperatures and pressures
        self.segments()
        for name in ("reference_grid_GPa", "coordination_cutoff_A", "high_coordination"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise MDParameterError(f"{name} must be a finite number > 0, got {value!r}")
        if not 0 < self.similarity_cutoff < 1:
            raise MDParameterError(f"similarity_cutoff must be in (0, 1), got "
                                   f"{self.similarity_cutoff!r}")
        if int(self.n_atoms) != self.n_atoms or self.n_atoms < 2:
            raise MDParameterError(f"n_atoms must be an integer >= 2, got {self.n_atoms!r}")

    def segments(self) -> tuple[tuple[MDSegment, ...], tuple[MDSegment, ...]]:
        """(preparation, compression) segments; empty steps are left out."""
        prep = [MDSegment("melt", self.melt_steps, self.melt_K),
                MDSegment("quench", self.quench_steps, self.melt_K, self.quench_to_K)]
        T, p0, p1 = self.temperature_K, self.pressure_start_GPa, self.pressure_end_GPa
        comp = [MDSegment("equilibrate", self.equilibrate_steps, T, None, p0),
                MDSegment("compress", self.ramp_steps, T, None, p0, p1),
                MDSegment("hold", self.hold_steps, T, None, p1)]
        return (tuple(s for s in prep if s.n_steps), tuple(s for s in comp if s.n_steps))

    def pressure_grid(self) -> tuple[float, ...]:
        """Pressures (GPa) at which references are relaxed: grid points from the lowest
        to the highest pressure of the run, and 0 (the fixed reference)."""
        g = self.reference_grid_GPa
        lo, hi = sorted((self.pressure_start_GPa, self.pressure_end_GPa))
        points = {0.0} | {round(k * g, 9) for k in range(math.floor(lo / g),
                                                         math.ceil(hi / g) + 1)}
        return tuple(sorted(points))

    def grid_point(self, pressure: float) -> float:
        if not math.isfinite(pressure):
            return 0.0
        grid = np.asarray(self.pressure_grid())
        return float(grid[np.argmin(np.abs(grid - pressure))])

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["references"] = list(self.references)
        data["soap"] = self.soap.as_dict()
        data["md"] = self.md.as_dict()
        data["limits"] = self.limits.as_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CompressionSettings":
        values = dict(data)
        soap = dict(values["soap"])
        if soap.get("species") is not None:
            soap["species"] = tuple(soap["species"])
        values.update(references=tuple(values["references"]), soap=SoapSettings(**soap),
                      md=MDSettings(**values["md"]), limits=MDLimits(**values["limits"]))
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> "CompressionSettings":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise MDParameterError(f"unknown compression setting(s) {unknown}; known: "
                                   f"{', '.join(sorted(known))}")
        return replace(self, **overrides)


# -- references ---------------------------------------------------------------------------

def _reference_task(calc: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    from .crystals import relaxed_crystal
    from .md import single_threaded_blas

    with single_threaded_blas():
        result = relaxed_crystal(item["name"], calc, item["symbol"], item["pressure_GPa"])
    return {"atoms": result.atoms, "energy_per_atom_eV": result.energy_per_atom_eV,
            "volume_per_atom_A3": result.volume_per_atom_A3}


def reference_crystals(potential: Any, settings: CompressionSettings, *, workers: int = 0,
                       scheduler: str | None = None, cache_dir: Any = None,
                       progress: Callable[[Any], None] | None = None
                       ) -> tuple[dict[str, dict[float, Any]], dict[str, str]]:
    """Reference crystals relaxed with the candidate at every pressure of the grid:
    ``({name: {pressure_GPa: Atoms}}, {"name@p GPa": error})``. A relaxation that fails
    is reported, not raised: its frames get NaN adjusted similarities."""
    from .campaign import run_campaign

    items = [{"name": n, "symbol": settings.symbol, "pressure_GPa": p}
             for n in settings.references for p in settings.pressure_grid()]
    campaign = run_campaign(REFERENCE_PROTOCOL, _reference_task, items, potential,
                            {"items": items, "relax": "relaxed_crystal defaults"},
                            workers=workers, scheduler=scheduler, cache_dir=cache_dir,
                            progress=progress)
    crystals: dict[str, dict[float, Any]] = {n: {} for n in settings.references}
    errors: dict[str, str] = {}
    for item, outcome in zip(items, campaign.items):
        if outcome.ok:
            crystals[item["name"]][item["pressure_GPa"]] = outcome.value["atoms"]
        else:
            errors[f"{item['name']}@{item['pressure_GPa']:g} GPa"] = outcome.error or "failed"
    return crystals, errors


# -- per-frame analysis --------------------------------------------------------------------

class CompressionAnalyser:
    """Coordination and SOAP similarity of a frame to every reference, fixed and at the
    frame's pressure. Descriptors of the references are computed once."""

    def __init__(self, settings: CompressionSettings, crystals: Mapping[str, Mapping]):
        self.settings = settings
        self.crystals = crystals
        species = [settings.symbol]
        self.soap = settings.soap.descriptor(species, periodic=True)
        self._ref: dict[tuple[str, float], np.ndarray | None] = {}

    def _descriptor(self, atoms: Any) -> np.ndarray:
        p = np.atleast_2d(self.soap.create(atoms))
        return p / np.linalg.norm(p, axis=1, keepdims=True)

    def _reference(self, name: str, pressure: float) -> np.ndarray | None:
        key = (name, pressure)
        if key not in self._ref:
            atoms = self.crystals.get(name, {}).get(pressure)
            self._ref[key] = None if atoms is None else self._descriptor(atoms)
        return self._ref[key]

    def __call__(self, atoms: Any, values: Mapping[str, Any]):
        from .structure import coordination_numbers

        s = self.settings
        cn = coordination_numbers(atoms, s.coordination_cutoff_A)
        counts = np.bincount(cn)
        scalars: dict[str, Any] = {
            "coordination_mean": float(cn.mean()),
            "coordination_high_fraction": float(np.mean(cn >= s.high_coordination)),
            "coordination_histogram": {str(k): float(c) / len(cn)
                                       for k, c in enumerate(counts) if c},
            "reference_pressure_GPa": s.grid_point(values["target_pressure_GPa"]),
        }
        per_atom: dict[str, np.ndarray] = {"coordination": cn}
        p = self._descriptor(atoms)
        for name in s.references:
            key = atom_key(name)
            for suffix, pressure in (("_fixed", 0.0), ("", scalars["reference_pressure_GPa"])):
                ref = self._reference(name, pressure)
                if ref is None:
                    sims = np.full(len(atoms), np.nan)
                else:
                    sims = np.clip(p @ ref.T, 0.0, 1.0).max(axis=1) ** s.soap.zeta
                scalars[f"{key}_similarity{suffix}"] = float(sims.mean())
                scalars[f"{key}_fraction{suffix}"] = float(np.mean(sims > s.similarity_cutoff)
                                                           ) if ref is not None else math.nan
                per_atom[f"similarity_{key}{suffix}"] = sims
        return scalars, per_atom


# -- one run -----------------------------------------------------------------------------

def _start(settings: CompressionSettings, seed: int) -> Any:
    from .md import diamond_start, random_start

    if settings.start_cell == "diamond":
        repeat = max(1, round((settings.n_atoms / 8) ** (1 / 3)))
        return diamond_start(settings.symbol, repeat, seed=seed)
    return random_start(settings.symbol, settings.n_atoms, seed=seed)


def _compression_task(calc: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    from .md import single_threaded_blas

    with single_threaded_blas():
        return _compress(calc, item)


def _compress(calc: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    from .crystals import RelaxationError, relax
    from .md import run_md
    from .mdtypes import UNSTABLE

    settings = CompressionSettings.from_dict(item["settings"])
    seed = item["seed"]
    limits = settings.limits
    deadline = None if limits.wall_time_s is None else time.monotonic() + limits.wall_time_s
    analyse = CompressionAnalyser(settings, item["crystals"])
    prep_segments, comp_segments = settings.segments()
    atoms = item["start"] if item["start"] is not None else _start(settings, seed)
    out: dict[str, Any] = {"preparation": None, "compression": None, "prerelax_error": None}
    if item["start"] is None and settings.prerelax_steps:
        try:
            atoms = relax(atoms, calc, cell=False, steps=settings.prerelax_steps,
                          fmax_eV_A=0.1).atoms
        except RelaxationError as exc:
            out["prerelax_error"] = f"{UNSTABLE}: relaxing the start failed: {exc}"
            return out
    if prep_segments:
        prep = run_md(atoms, calc, prep_segments, settings=settings.md, seed=[seed, 0],
                      limits=limits, analyse=analyse, deadline=deadline)
        out["preparation"] = prep.as_dict()
        if not prep.completed:
            return out
        atoms = prep.final_atoms
    if comp_segments:
        comp = run_md(atoms, calc, comp_segments, settings=settings.md, seed=[seed, 1],
                      limits=limits, analyse=analyse, deadline=deadline)
        out["compression"] = comp.as_dict()
    return out


@dataclass(frozen=True)
class CompressionResult:
    """One compression run and its outcome.

    Attributes
    ----------
    potential : str
    seed : int
    settings : CompressionSettings
    preparation : MDRecord or None
        The melt-quench (None when none was run or the start could not be relaxed).
    compression : MDRecord or None
        The pressure ramp (None when the preparation failed).
    crystals : mapping
        Reference crystals: ``{name: {pressure_GPa: Atoms}}`` (relaxed with the
        candidate; pressure 0 is the fixed reference).
    reference_errors : mapping of str to str
        Reference relaxations that failed.
    outcome : CompressionOutcome
        Classified with the default thresholds; :meth:`classify` for others.
    seconds : float
        Wall time of the run (in its worker; 0 when read from the cache).
    from_cache : bool
    error : str or None
        Set when the run could not be made at all (its task raised).
    trajectory_path : str or None
    """

    potential: str
    seed: int
    settings: CompressionSettings
    preparation: MDRecord | None
    compression: MDRecord | None
    crystals: Mapping[str, Mapping[float, Any]] = field(repr=False)
    reference_errors: Mapping[str, str]
    outcome: Any
    seconds: float
    from_cache: bool
    error: str | None = None
    trajectory_path: str | None = None

    @property
    def records(self) -> tuple[MDRecord, ...]:
        return tuple(r for r in (self.preparation, self.compression) if r is not None)

    @property
    def frames(self) -> tuple:
        """Frames of the compression (the pressure ramp) only."""
        return self.compression.frames if self.compression is not None else ()

    @property
    def structures(self) -> tuple:
        """Stored structures of the preparation and the compression, in order."""
        return tuple(s for r in self.records for s in r.structures)

    def classify(self, **thresholds: Any):
        """The outcome with other thresholds (see
        :func:`~pytest_mlpval.compression_outcome.classify_run`)."""
        from .compression_outcome import classify_result

        return classify_result(self, **thresholds)

    def metrics(self) -> dict[str, float]:
        return self.outcome.metrics()

    def units(self) -> dict[str, str]:
        return self.outcome.units()

    def as_dict(self) -> dict[str, Any]:
        return {"potential": self.potential, "seed": self.seed,
                "settings": self.settings.as_dict(),
                "preparation": None if self.preparation is None else _summary(self.preparation),
                "compression": None if self.compression is None else _summary(self.compression),
                "frames": [f.as_dict() for f in self.frames],
                "reference_errors": dict(self.reference_errors),
                "outcome": self.outcome.as_dict(), "seconds": self.seconds,
                "from_cache": self.from_cache, "error": self.error,
                "trajectory_path": self.trajectory_path}


def _summary(record: MDRecord) -> dict[str, Any]:
    return {"status": record.status, "instability": record.instability,
            "message": record.message, "n_steps": record.n_steps,
            "n_steps_planned": record.n_steps_planned, "seconds": record.seconds,
            "analysis_seconds": record.analysis_seconds, "n_frames": len(record.frames)}


def run_compressions(potential: Any, settings: CompressionSettings | None = None, *,
                     seeds: Sequence[int] = (0,), start: Any = None, workers: int = 0,
                     scheduler: str | None = None, cache_dir: Any = None,
                     progress: Callable[[Any], None] | None = None,
                     trajectory_dir: Any = None, **overrides: Any
                     ) -> tuple[CompressionResult, ...]:
    """Compression runs of ``potential`` (a :class:`~pytest_mlpval.potentials.Potential`
    or a bare ASE calculator), one per seed, in parallel with ``workers`` and cached in
    ``cache_dir``.

    ``overrides`` replace fields of ``settings`` (default :class:`CompressionSettings`),
    e.g. ``pressure_end_GPa=15, ramp_steps=500``. ``start`` (ASE Atoms) replaces the
    generated start (its melt-quench still runs unless ``melt_steps=quench_steps=0``).
    ``trajectory_dir``: write ``<potential>-compression-seed<k>.extxyz`` there.
    """
    from .campaign import run_campaign
    from .compression_outcome import classify_result

    settings = (settings or CompressionSettings()).with_overrides(**overrides)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise MDParameterError(f"seeds must be distinct integers, got {seeds!r}")
    if start is not None and len(start) == 0:
        raise MDParameterError("the start structure has no atoms")
    crystals, ref_errors = reference_crystals(potential, settings, workers=workers,
                                              scheduler=scheduler, cache_dir=cache_dir)
    # the key holds the whole seed list (items are cached by position)
    parameters = {"settings": settings.as_dict(), "start": _start_key(start)}
    items = [{"settings": settings.as_dict(), "seed": s, "start": start,
              "crystals": crystals} for s in seeds]
    campaign = run_campaign(PROTOCOL, _compression_task, items, potential,
                            {**parameters, "seeds": seeds}, workers=workers,
                            scheduler=scheduler, cache_dir=cache_dir, progress=progress)
    name = getattr(getattr(potential, "info", None), "name", type(potential).__name__)
    results = []
    for seed, item in zip(seeds, campaign.items):
        value = item.value if item.ok else {}
        prep = value.get("preparation")
        comp = value.get("compression")
        error = item.error if not item.ok else value.get("prerelax_error")
        result = CompressionResult(
            name, seed, settings, None if prep is None else MDRecord.from_dict(prep),
            None if comp is None else MDRecord.from_dict(comp), crystals, ref_errors,
            None, item.seconds, item.from_cache, error)
        path = None
        if trajectory_dir is not None and result.structures:
            from pathlib import Path

            from .md import write_trajectory

            Path(trajectory_dir).mkdir(parents=True, exist_ok=True)
            path = str(Path(trajectory_dir) / f"{atom_key(name)}-compression-seed{seed}.extxyz")
            write_trajectory(result.structures, path)
        result = replace(result, outcome=classify_result(result), trajectory_path=path)
        results.append(result)
    return tuple(results)


def run_compression(potential: Any, settings: CompressionSettings | None = None, *,
                    seed: int = 0, **kwargs: Any) -> CompressionResult:
    """One compression run: :func:`run_compressions` with a single seed."""
    return run_compressions(potential, settings, seeds=(seed,), **kwargs)[0]


def _start_key(start: Any) -> Any:
    if start is None:
        return None
    return {"numbers": np.asarray(start.numbers).tolist(),
            "positions": np.round(np.asarray(start.positions), 10).tolist(),
            "cell": np.round(np.asarray(start.cell), 10).tolist(),
            "pbc": np.asarray(start.pbc).tolist(),
            "momenta": np.round(start.get_momenta(), 12).tolist()}

