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
under the potential's hash and every setting, in parallel over seeds as the
:class:`~pytest_mlpval.protocols.base.CampaignOptions` say. The outcome of each run is
classified by :mod:`pytest_mlpval.protocols.compression.outcome`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from pytest_mlpval.campaign import run_campaign
from pytest_mlpval.crystals import RelaxationError, relax
from pytest_mlpval.protocols.base import CampaignOptions, Result
from pytest_mlpval.protocols.compression.outcome import CompressionOutcome, classify_result
from pytest_mlpval.protocols.compression.settings import (CompressionAnalyser,
                                                          CompressionSettings, atom_key,
                                                          reference_crystals)
from pytest_mlpval.protocols.md import (UNSTABLE, MDParameterError, MDRecord, diamond_start,
                                        potential_name, random_start, run_md, start_key,
                                        write_trajectory)
from pytest_mlpval.protocols.rss import pair_separations, reference_atoms
from pytest_mlpval.threads import one_blas_thread

__all__ = ["CompressionResult", "run_compression", "run_compressions", "PROTOCOL",
           "compound_start"]

#: campaign protocol name (part of the cache key)
PROTOCOL = "mlpval-md-compression"


# -- one run -----------------------------------------------------------------------------

def _start(settings: CompressionSettings, seed: int) -> Any:
    if settings.composition is not None and len(settings.elements) > 1:
        return compound_start(settings, seed)
    symbol = settings.elements[0]
    if settings.start_cell == "diamond":
        repeat = max(1, round((settings.n_atoms / 8) ** (1 / 3)))
        return diamond_start(symbol, repeat, seed=seed)
    return random_start(symbol, settings.n_atoms, seed=seed)


def compound_start(settings: CompressionSettings, seed: int,
                   max_attempts: int = 10000) -> Any:
    """A cubic periodic cell of whole formula units of ``settings.composition`` (as many
    as fit ``n_atoms``) at random positions (seeded), at the volume per atom of the first
    reference crystal as built, no two atoms closer than silicon's 1.8 Å scaled by
    covalent radii (:func:`~pytest_mlpval.protocols.rss.pair_separations`); the elements
    in random order."""
    from ase import Atoms

    units = settings.n_atoms // sum(c for _, c in settings.composition_pairs)
    if units < 1:
        raise MDParameterError(f"n_atoms={settings.n_atoms} holds no formula unit of "
                               f"{settings.formula}")
    rng = np.random.default_rng(seed)
    symbols = [s for s, c in settings.composition_pairs for _ in range(c * units)]
    symbols = [symbols[i] for i in rng.permutation(len(symbols))]
    first = reference_atoms(settings.references[0], settings.formula)
    side = (len(symbols) * first.get_volume() / len(first)) ** (1 / 3)
    pairs = pair_separations(None, settings.elements)
    positions: list[np.ndarray] = []
    attempts = 0
    while len(positions) < len(symbols):
        attempts += 1
        if attempts > max_attempts:
            raise MDParameterError(
                f"could not place {len(symbols)} atoms of {settings.formula} in a cube of "
                f"{side:.3g} Å in {max_attempts} attempts")
        trial = rng.uniform(0, side, 3)
        me = symbols[len(positions)]
        if positions:
            d = np.asarray(positions) - trial
            d -= side * np.round(d / side)
            need = np.array([pairs[min(me, o), max(me, o)] for o in symbols[:len(positions)]])
            if np.any(np.einsum("ij,ij->i", d, d) < need ** 2):
                continue
        positions.append(trial)
    return Atoms(symbols, positions=positions, cell=[side] * 3, pbc=True)


def _compression_task(calc: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    with one_blas_thread():
        return _compress(calc, item)


def _compress(calc: Any, item: Mapping[str, Any]) -> dict[str, Any]:
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
class CompressionResult(Result):
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
        Classified with the default thresholds; :meth:`classify` for others (None only
        while :func:`run_compressions` builds the result).
    seconds : float
        Wall time of the run (in its worker; 0 when read from the cache).
    from_cache : bool
    error : str or None
        Set when the run could not be made at all (its task raised).
    trajectory_path : str or None
    """

    protocol: ClassVar[str] = "compression"

    potential: str
    seed: int
    settings: CompressionSettings
    preparation: MDRecord | None
    compression: MDRecord | None
    crystals: Mapping[str, Mapping[float, Any]] = field(repr=False)
    reference_errors: Mapping[str, str]
    outcome: CompressionOutcome | None
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

    def classify(self, **thresholds: Any) -> CompressionOutcome:
        """The outcome with other thresholds (see
        :func:`~pytest_mlpval.protocols.compression.outcome.classify_result`)."""
        return classify_result(self, **thresholds)

    def metrics(self) -> dict[str, float]:
        return self.outcome.metrics()

    def not_measured(self) -> set[str]:
        """The outcome's gaps (:meth:`CompressionOutcome.not_measured`)."""
        return self.outcome.not_measured()

    def units(self) -> dict[str, str]:
        return self.outcome.units()

    def cost_metrics(self) -> dict[str, float]:
        """No calculator count is kept: MD costs one call per step."""
        return {}

    def as_dict(self) -> dict[str, Any]:
        """A summary (the records without their frames' structures); not read back."""
        return {"potential": self.potential, "seed": self.seed,
                "settings": self.settings.as_dict(),
                "preparation": None if self.preparation is None else _summary(self.preparation),
                "compression": None if self.compression is None else _summary(self.compression),
                "frames": [f.as_dict() for f in self.frames],
                "reference_errors": dict(self.reference_errors),
                "outcome": self.outcome.as_dict(), "seconds": self.seconds,
                "from_cache": self.from_cache, "error": self.error,
                "trajectory_path": self.trajectory_path}


def _check_record(value: Any) -> str | None:
    """Why a cached compression record is unusable (None: it is fine)."""
    if not isinstance(value, dict):
        return f"a {type(value).__name__}, not a record"
    for key in ("preparation", "compression"):
        if value.get(key) is not None:
            MDRecord.from_dict(value[key])
    return None


def _summary(record: MDRecord) -> dict[str, Any]:
    return {"status": record.status, "instability": record.instability,
            "message": record.message, "n_steps": record.n_steps,
            "n_steps_planned": record.n_steps_planned, "seconds": record.seconds,
            "analysis_seconds": record.analysis_seconds, "n_frames": len(record.frames)}


def cache_parameters(settings: CompressionSettings, seeds: Sequence[int],
                     start: Any = None) -> dict[str, Any]:
    """What keys a campaign of compression runs besides the candidate's identity: the
    recipe of :func:`~pytest_mlpval.protocols.base.run_protocol` (``name``, ``version``,
    ``settings``) with the user's start structure and the whole seed list (the items
    are cached by position)."""
    return {"name": PROTOCOL, "version": settings.VERSION, "settings": settings.as_dict(),
            "start": start_key(start), "seeds": list(seeds)}


def run_compressions(potential: Any, settings: CompressionSettings | None = None, *,
                     seeds: Sequence[int] = (0,), start: Any = None,
                     options: CampaignOptions | None = None, trajectory_dir: Any = None,
                     **overrides: Any) -> tuple[CompressionResult, ...]:
    """Compression runs of ``potential`` (a :class:`~pytest_mlpval.potentials.Potential`
    or a bare ASE calculator), one per seed, run and cached as ``options`` say (in
    parallel over seeds with workers); the reference crystals first, the same way.

    ``overrides`` replace fields of ``settings`` (default :class:`CompressionSettings`),
    e.g. ``pressure_end_GPa=15, ramp_steps=500``. ``start`` (ASE Atoms) replaces the
    generated start (its melt-quench still runs unless ``melt_steps=quench_steps=0``).
    ``trajectory_dir``: write ``<potential>-compression-seed<k>.extxyz`` there.
    """
    settings = CompressionSettings.of(settings, **overrides)
    options = options or CampaignOptions()
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise MDParameterError(f"seeds must be distinct integers, got {seeds!r}")
    if start is not None and len(start) == 0:
        raise MDParameterError("the start structure has no atoms")
    crystals, ref_errors = reference_crystals(potential, settings,
                                              options=replace(options, progress=None))
    items = [{"settings": settings.as_dict(), "seed": s, "start": start,
              "crystals": crystals} for s in seeds]
    campaign = run_campaign(PROTOCOL, _compression_task, items, potential,
                            cache_parameters(settings, seeds, start),
                            version=settings.VERSION,
                            validate=_check_record, **options.campaign_kwargs())
    name = potential_name(potential)
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
            Path(trajectory_dir).mkdir(parents=True, exist_ok=True)
            path = str(Path(trajectory_dir)
                       / f"{atom_key(name)}-compression-seed{seed}.extxyz")
            write_trajectory(result.structures, path)
        result = replace(result, outcome=classify_result(result), trajectory_path=path)
        results.append(result)
    return tuple(results)


def run_compression(potential: Any, settings: CompressionSettings | None = None, *,
                    seed: int = 0, start: Any = None, options: CampaignOptions | None = None,
                    trajectory_dir: Any = None, **overrides: Any) -> CompressionResult:
    """One compression run: :func:`run_compressions` with a single seed."""
    return run_compressions(potential, settings, seeds=(seed,), start=start,
                            options=options, trajectory_dir=trajectory_dir,
                            **overrides)[0]
