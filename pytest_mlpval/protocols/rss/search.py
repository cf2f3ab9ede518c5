"""Random structure search (AIRSS-style) with a candidate potential.

Plain library (no pytest).

Following the *ab initio* random structure searching of Pickard and Needs (J. Phys.:
Condens. Matter 23, 053201 (2011)) as used for the tutorial's Fig. 8 (Morrow, Gardner and
Deringer, J. Chem. Phys. 158, 121501 (2023)): random cells of a random volume, random
positions kept apart by a minimum separation, relaxed (positions and cell) into local
minima with the candidate. The minima's energy-volume distribution, the presence of
basins (for Si: the low-volume, sh-like high-pressure basin) and the count of diamond-like
minima (mean SOAP similarity to the candidate's ideal diamond above 0.99) are the tests;
see :mod:`pytest_mlpval.protocols.rss.analysis` for the assertions and the plot.

Every structure is a pure function of ``(seed, index)``: the same minimum comes out in
any worker, in any order, from the cache or computed again. Each relaxation is one item
of a :func:`~pytest_mlpval.campaign.run_campaign` campaign (cached, parallel, resumable).
None is dropped: each appears in :class:`RssResult` with a status (:data:`STATUSES`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from pytest_mlpval.protocols.rss.generate import RssGenerationError, RssParameters, generate
from pytest_mlpval.descriptors import similarity_to_reference

__all__ = ["RssParameters", "RssGenerationError", "generate", "RssMinimum", "RssResult",
           "run_rss", "relax_structure", "relax_references", "classify", "STATUSES",
           "USABLE", "PROTOCOL", "RelaxationTimeout", "NonFiniteResult"]

#: ``converged``: forces below ``fmax_eV_A``; ``not_converged``: the step limit was hit;
#: ``failed``: the calculator raised or returned a non-finite energy, force or stress (the
#: relaxation stops at that step), the wall-time limit ``max_seconds_per_structure`` was
#: reached (error ``RelaxationTimeout: ...``; not cached), or the worker died;
#: ``exploded``: a relaxed structure outside the sanity bounds (energy below the floor,
#: volume collapsed or ballooned, atoms closer than the distance floor)
STATUSES = ("converged", "not_converged", "failed", "exploded")
#: statuses whose structures count as minima in the analyses
USABLE = ("converged", "not_converged")
#: campaign protocol name (part of the cache key)
PROTOCOL = "rss"
#: bump when the relaxation record changes meaning (part of the cache key)
TASK_VERSION = 1
#: a relaxation whose cell grows past this many times the sane volume stops as exploded
_BALLOONED = 10.0
#: what a cached relaxation record must hold
_RECORD_KEYS = ("status", "n_atoms", "energy_per_atom_eV", "volume_per_atom_A3",
                "enthalpy_per_atom_eV", "fmax_eV_A", "n_steps", "n_force_calls",
                "calculator_seconds", "total_seconds", "error", "initial", "final")



class RelaxationTimeout(RuntimeError):
    """A relaxation reached its wall-time limit (``max_seconds_per_structure``)."""


class NonFiniteResult(FloatingPointError):
    """The calculator returned a NaN or infinite energy, force or stress."""


# -- one relaxation (runs in a worker) ----------------------------------------------------

def _timed_calculator(inner: Any, deadline: float | None = None, limit_s: float | None = None,
                      max_volume_per_atom_A3: float = math.inf):
    """An ASE calculator delegating to ``inner`` that counts its calls and the seconds
    spent in ``inner``; everything else (optimiser, cell filter, this wrapper) is
    "outside the calculator". Every call checks that the structure and ``inner``'s
    energy, forces and stress are finite (:class:`NonFiniteResult`) and the cell not
    ballooned past ``max_volume_per_atom_A3``, and stops at ``deadline``
    (``time.monotonic()``; :class:`RelaxationTimeout`), so that an optimiser never steps
    on NaN (into a neighbour list that never ends)."""
    from ase.calculators.calculator import Calculator, all_changes

    class _Timed(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0
            self.seconds = 0.0

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            if deadline is not None and time.monotonic() > deadline:
                raise RelaxationTimeout(
                    f"wall-time limit of {limit_s:g} s per structure "
                    f"(max_seconds_per_structure) reached after {self.calls} calculator "
                    "calls")
            work = self.atoms
            if not (np.all(np.isfinite(work.positions)) and np.all(np.isfinite(work.cell))):
                raise NonFiniteResult(f"non-finite positions or cell before calculator "
                                      f"call {self.calls}")
            if all(work.pbc) and work.get_volume() > max_volume_per_atom_A3 * len(work):
                raise _Ballooned(f"the cell ballooned to {work.get_volume() / len(work):.4g} "
                                 f"Å^3/atom (stopped beyond {max_volume_per_atom_A3:.4g})")
            start = time.perf_counter()
            try:
                energy = inner.get_potential_energy(work)
                forces = np.array(inner.get_forces(work), dtype=float)
                stress = np.array(inner.get_stress(work), dtype=float)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1
            for name, value in (("energy", energy), ("forces", forces), ("stress", stress)):
                if not np.all(np.isfinite(value)):
                    raise NonFiniteResult(f"non-finite {name} at calculator call "
                                          f"{self.calls - 1}")
            self.results = {"energy": energy, "free_energy": energy, "forces": forces,
                            "stress": stress}

    return _Timed()


class _Ballooned(RuntimeError):
    """The cell grew far beyond the sane volume during the relaxation."""


def _one_blas_thread():
    """One BLAS thread during a relaxation (:mod:`pytest_mlpval.threads`)."""
    from pytest_mlpval.threads import one_blas_thread

    return one_blas_thread()


def _min_distance(atoms: Any, floor_A: float) -> float:
    """Shortest interatomic distance (periodic images included) if below ``floor_A``,
    else ``inf``."""
    from matscipy.neighbours import neighbour_list

    d = neighbour_list("d", atoms, float(floor_A))
    return float(d.min()) if len(d) else math.inf


def _explosion(params: RssParameters, energy: float, volume: float, atoms: Any) -> str | None:
    lo, hi = params.sane_volume_per_atom_A3
    if energy < params.energy_floor_eV:
        return (f"energy {energy:.4g} eV/atom below the sanity floor "
                f"{params.energy_floor_eV:g} eV/atom")
    if not lo <= volume <= hi:
        return (f"volume {volume:.4g} Å^3/atom outside the sane range {lo:.4g}-{hi:.4g} "
                "Å^3/atom")
    shortest = _min_distance(atoms, params.distance_floor_A)
    if shortest < params.distance_floor_A:
        return f"atoms {shortest:.3g} Å apart (floor {params.distance_floor_A:g} Å)"
    return None


def relax_structure(calc: Any, item: tuple[RssParameters, int]) -> dict[str, Any]:
    """Generate structure ``index`` of ``params`` and relax it with ``calc``; the
    campaign task (module level: pickled for workers). Returns a JSON-serialisable
    record (ASE Atoms inside are stored by the campaign cache as extxyz)."""
    from pytest_mlpval.crystals import RelaxationError, relax

    params, index = item
    start, cpu = time.perf_counter(), time.process_time()
    limit = params.max_seconds_per_structure
    deadline = None if limit is None else time.monotonic() + limit
    initial = generate(params, index)
    timed = _timed_calculator(calc, deadline, limit,
                              _BALLOONED * params.sane_volume_per_atom_A3[1])
    record: dict[str, Any] = {
        "index": index, "n_atoms": len(initial), "status": "failed", "error": None,
        "energy_per_atom_eV": math.nan, "volume_per_atom_A3": math.nan,
        "enthalpy_per_atom_eV": math.nan, "fmax_eV_A": math.nan, "n_steps": None,
        "initial": initial, "final": None}
    try:
        with _one_blas_thread():
            result = relax(initial, timed, pressure_GPa=params.pressure_GPa,
                           fmax_eV_A=params.fmax_eV_A, steps=params.max_steps,
                           optimizer=params.optimizer)
    except RelaxationError as exc:
        if isinstance(exc.__cause__, RelaxationTimeout):  # a failed item: never cached
            raise RelaxationTimeout(f"structure {index}: {exc.__cause__}") from None
        record["error"] = f"{type(exc).__name__}: {exc}"
        if isinstance(exc.__cause__, _Ballooned):
            record.update(status="exploded", error=str(exc.__cause__))
    else:
        final = result.atoms
        record.update(
            energy_per_atom_eV=result.energy_per_atom_eV,
            volume_per_atom_A3=result.volume_per_atom_A3,
            enthalpy_per_atom_eV=result.enthalpy_per_atom_eV,
            fmax_eV_A=result.fmax_eV_A, n_steps=result.steps, final=final,
            status="converged" if result.converged else "not_converged")
        why = _explosion(params, result.energy_per_atom_eV, result.volume_per_atom_A3,
                         final)
        if why is not None:
            record.update(status="exploded", error=why)
    record["n_force_calls"] = timed.calls
    record["calculator_seconds"] = timed.seconds
    record["total_seconds"] = time.perf_counter() - start
    record["cpu_seconds"] = time.process_time() - cpu
    return record


# -- results ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RssMinimum:
    """One relaxed random structure.

    Attributes
    ----------
    index : int
        Structure number; with the parameters' seed it defines the initial structure.
    status : str
        One of :data:`STATUSES`.
    n_atoms : int
    energy_per_atom_eV, volume_per_atom_A3, enthalpy_per_atom_eV : float
        Of the final structure (NaN when failed); enthalpy at the search pressure.
    fmax_eV_A : float
        Residual generalised force at the end (NaN when failed).
    n_steps : int or None
        Optimiser steps (None when failed).
    n_force_calls : int
        Calculator evaluations (energy, forces and stress together).
    calculator_seconds, total_seconds : float
        Wall time in the calculator, and of the whole item (generation and relaxation).
    cpu_seconds : float
        CPU time of the worker process during the item (below ``total_seconds`` when
        other processes took the core; NaN where not recorded).
    similarity : dict of str to float
        Mean per-atom SOAP similarity of the final structure to each reference crystal
        (relaxed with the candidate); empty for failed and exploded structures.
    error : str or None
        Why it failed or exploded.
    initial, final : Atoms or None
        The random structure and the relaxed one (None when failed).
    from_cache : bool
    """

    index: int
    status: str
    n_atoms: int
    energy_per_atom_eV: float = math.nan
    volume_per_atom_A3: float = math.nan
    enthalpy_per_atom_eV: float = math.nan
    fmax_eV_A: float = math.nan
    n_steps: int | None = None
    n_force_calls: int = 0
    calculator_seconds: float = 0.0
    total_seconds: float = 0.0
    cpu_seconds: float = math.nan
    similarity: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    initial: Any = field(default=None, repr=False)
    final: Any = field(default=None, repr=False)
    from_cache: bool = False

    @property
    def usable(self) -> bool:
        return self.status in USABLE


@dataclass(frozen=True)
class RssResult:
    """The minima of one random structure search and their classification.

    Attributes
    ----------
    parameters : RssParameters
    potential : str
        The candidate's name.
    potential_sha256 : str or None
    minima : tuple of RssMinimum
        Every structure, in index order, whatever its status.
    references : dict of str to dict
        Per reference crystal: ``energy_per_atom_eV``, ``enthalpy_per_atom_eV`` and
        ``volume_per_atom_A3`` after relaxation with the candidate at the search
        pressure, or ``error``.
    seconds : float
        Wall time of this run (campaign and classification).
    task_seconds : float
        Worker time of the relaxations computed in this run (0 when all came from the
        cache).
    workers : int
    executor : str
    cache_path : str or None
    """

    parameters: RssParameters
    potential: str
    potential_sha256: str | None
    minima: tuple[RssMinimum, ...]
    references: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    task_seconds: float = 0.0
    workers: int = 0
    executor: str = "local"
    cache_path: str | None = None

    def __len__(self) -> int:
        return len(self.minima)

    # arrays over all structures (NaN where failed)
    @property
    def energies_per_atom_eV(self) -> np.ndarray:
        return np.array([m.energy_per_atom_eV for m in self.minima], dtype=float)

    @property
    def volumes_per_atom_A3(self) -> np.ndarray:
        return np.array([m.volume_per_atom_A3 for m in self.minima], dtype=float)

    @property
    def statuses(self) -> tuple[str, ...]:
        return tuple(m.status for m in self.minima)

    @property
    def structures(self) -> list[Any]:
        """Final structures (None where failed)."""
        return [m.final for m in self.minima]

    @property
    def usable(self) -> tuple[RssMinimum, ...]:
        """Minima that count in the analyses (converged or at the step limit)."""
        return tuple(m for m in self.minima if m.usable)

    @property
    def counts(self) -> dict[str, int]:
        """Number of structures per status (every status listed)."""
        return {s: sum(m.status == s for m in self.minima) for s in STATUSES}

    @property
    def n_from_cache(self) -> int:
        return sum(m.from_cache for m in self.minima)

    def similarities(self, reference: str = "diamond") -> np.ndarray:
        """Mean SOAP similarity of every structure to ``reference`` (NaN where not
        computed)."""
        return np.array([m.similarity.get(reference, math.nan) for m in self.minima])

    def count_similar(self, reference: str = "diamond", cutoff: float | None = None) -> int:
        """Usable minima whose mean similarity to ``reference`` exceeds ``cutoff``
        (default: the parameters' ``diamond_cutoff``)."""
        cutoff = self.parameters.diamond_cutoff if cutoff is None else cutoff
        return sum(m.similarity.get(reference, -1.0) > cutoff for m in self.usable)

    @property
    def n_diamond_like(self) -> int:
        """Usable minima with mean SOAP similarity to the candidate's ideal diamond above
        ``diamond_cutoff`` (the tutorial's definition, cutoff 0.99)."""
        return self.count_similar("diamond")

    @property
    def diamond_like_fraction(self) -> float:
        """:attr:`n_diamond_like` over all structures (failed ones included, as "out of
        10,000" in the tutorial); NaN without a diamond reference."""
        if "diamond" not in self.references or "error" in self.references["diamond"]:
            return math.nan
        return self.n_diamond_like / len(self.minima)

    @property
    def lowest(self) -> RssMinimum | None:
        """The usable minimum of lowest enthalpy (energy at zero pressure)."""
        usable = self.usable
        return min(usable, key=lambda m: m.enthalpy_per_atom_eV) if usable else None

    def metrics(self) -> dict[str, float]:
        """Flat scalar metrics (units: :meth:`units`)."""
        counts = self.counts
        lowest = self.lowest
        diamond = self.references.get("diamond", {})
        # timings of every relaxation, whenever it ran (a cached record keeps its own)
        timed = [m for m in self.minima if m.total_seconds > 0]
        steps = sum(m.n_steps or 0 for m in timed)
        total = sum(m.total_seconds for m in timed)
        inside = sum(m.calculator_seconds for m in timed)
        usable_v = [m.volume_per_atom_A3 for m in self.usable]
        out = {
            "n_structures": float(len(self.minima)),
            **{f"n_{s}": float(c) for s, c in counts.items()},
            "n_diamond_like": float(self.n_diamond_like),
            "diamond_like_fraction": self.diamond_like_fraction,
            "lowest_energy_per_atom_eV": lowest.energy_per_atom_eV if lowest else math.nan,
            "lowest_volume_per_atom_A3": lowest.volume_per_atom_A3 if lowest else math.nan,
            "lowest_minus_diamond_eV": (lowest.enthalpy_per_atom_eV
                                        - diamond.get("enthalpy_per_atom_eV", math.nan))
            if lowest else math.nan,
            "median_volume_per_atom_A3": float(np.median(usable_v)) if usable_v else math.nan,
            "seconds": self.seconds,
            "seconds_per_structure": total / len(timed) if timed else math.nan,
            "calculator_fraction": inside / total if total > 0 else math.nan,
            "cpu_share": _cpu_share(timed),
            "seconds_outside_calculator_per_step": (total - inside) / steps
            if steps else math.nan,
        }
        return {k: float(v) for k, v in out.items()}

    def units(self) -> dict[str, str]:
        units = {k: "" for k in self.metrics()}
        units.update({
            "lowest_energy_per_atom_eV": "eV/atom", "lowest_minus_diamond_eV": "eV/atom",
            "lowest_volume_per_atom_A3": "Å^3/atom", "median_volume_per_atom_A3": "Å^3/atom",
            "seconds": "s", "seconds_per_structure": "s",
            "seconds_outside_calculator_per_step": "s"})
        return units

    def not_measured(self) -> set[str]:
        """Metrics NaN with nothing to count (:func:`~pytest_mlpval.protocols.rss.analysis.gaps`)."""
        from pytest_mlpval.protocols.rss.analysis import gaps

        return gaps(self)

    def report_data(self) -> dict[str, Any]:
        """Energies (relative to the candidate's diamond where it relaxed, else to the
        lowest minimum) and volumes of the usable minima, for the report's figure."""
        from pytest_mlpval.protocols.rss.analysis import energy_volume

        zero = "diamond" if "error" not in self.references.get("diamond", {"error": 1}) \
            else "lowest"
        de, v, _ = energy_volume(self, zero)
        return {"figure": "pytest_mlpval.protocols.rss.analysis:report_figure", "relative_to": zero,
                "energy_eV": [float(x) for x in de], "volume_A3": [float(x) for x in v],
                "n_diamond_like": int(self.n_diamond_like), "n_structures": len(self)}

    def write(self, path: str | Path) -> Path:
        """Write every structure (the final one, or the initial one where it failed) as
        extxyz, readable by ``ase.io.read``; see :mod:`pytest_mlpval.protocols.rss.io`."""
        from pytest_mlpval.protocols.rss.io import write_rss

        return write_rss(self, path)

    @classmethod
    def read(cls, path: str | Path) -> "RssResult":
        """Load a result written by :meth:`write`."""
        from pytest_mlpval.protocols.rss.io import read_rss

        return read_rss(path)


def _cpu_share(minima: list[RssMinimum]) -> float:
    """CPU time over wall time of the relaxations that recorded both (1: each had a core
    to itself)."""
    timed = [m for m in minima if math.isfinite(m.cpu_seconds)]
    wall = sum(m.total_seconds for m in timed)
    return sum(m.cpu_seconds for m in timed) / wall if wall > 0 else math.nan


# -- the search ------------------------------------------------------------------------

def _check_species(potential: Any, params: RssParameters) -> None:
    info = getattr(potential, "info", None)
    species = tuple(getattr(info, "species", ()) or ())
    if species:
        missing = [s for s in params.symbols if s not in species]
        if missing:
            raise ValueError(
                f"the composition {params.formula} has {', '.join(missing)}, which the "
                f"potential {info.name!r} does not cover (its species: "
                f"{', '.join(species)})")


def _check_record(value: Any) -> str | None:
    """Why a cached relaxation record is unusable (None: it is fine)."""
    if not isinstance(value, dict):
        return f"a {type(value).__name__}, not a relaxation record"
    missing = [key for key in _RECORD_KEYS if key not in value]
    if missing:
        return f"the record lacks {', '.join(missing)}"
    if value["status"] not in STATUSES:
        return f"status {value['status']!r} is not one of {', '.join(STATUSES)}"
    if value["status"] in USABLE and not hasattr(value["final"], "positions"):
        return f"a {value['status']} record without its final structure"
    return None


def _minimum(index: int, item: Any, params: RssParameters) -> RssMinimum:
    if not item.ok:  # the task raised outside the relaxation, or its worker died
        try:
            initial = generate(params, index)
        except RssGenerationError:
            initial = None
        return RssMinimum(index, "failed", len(initial) if initial is not None else 0,
                          error=item.error, initial=initial, total_seconds=item.seconds)
    r = item.value
    return RssMinimum(
        index, r["status"], r["n_atoms"], r["energy_per_atom_eV"], r["volume_per_atom_A3"],
        r["enthalpy_per_atom_eV"], r["fmax_eV_A"], r["n_steps"], r["n_force_calls"],
        r["calculator_seconds"], r["total_seconds"], r.get("cpu_seconds", math.nan), {},
        r["error"], r["initial"], r["final"], item.from_cache)


def _reference_task(calc: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    from pytest_mlpval.crystals import relaxed_crystal

    with _one_blas_thread():  # stops at the first non-finite result
        ref = relaxed_crystal(item["name"], _timed_calculator(calc), item["symbol"],
                              item["pressure_GPa"])
    return {"atoms": ref.atoms, "energy_per_atom_eV": float(ref.energy_per_atom_eV),
            "enthalpy_per_atom_eV": float(ref.enthalpy_per_atom_eV),
            "volume_per_atom_A3": float(ref.volume_per_atom_A3)}


def relax_references(potential: Any, params: RssParameters, *, cache_dir: Any = None
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The crystals of ``params.references`` relaxed with ``potential`` (a Potential or a
    calculator) at the search pressure (symmetry kept), in this process, cached in
    ``cache_dir`` like a campaign: ``({name: Atoms}, {name: {energy_per_atom_eV,
    enthalpy_per_atom_eV, volume_per_atom_A3} or {error}})``. A crystal that cannot be
    relaxed is reported, not raised."""
    from pytest_mlpval.campaign import run_campaign

    if len(params.symbols) != 1:  # the named crystals are elemental
        return {}, {name: {"error": f"not defined for the compound {params.formula}"}
                    for name in params.references}
    items = [{"name": n, "symbol": params.symbols[0], "pressure_GPa": params.pressure_GPa}
             for n in params.references]
    campaign = run_campaign(f"{PROTOCOL}-references", _reference_task, items, potential,
                            {"items": items}, version=1, cache_dir=cache_dir,
                            validate=lambda v: None if isinstance(v, dict) and {
                                "atoms", "volume_per_atom_A3"} <= set(v) else "incomplete")
    atoms, info = {}, {}
    for item, done in zip(items, campaign.items):
        if not done.ok:  # reported in the result, never hidden
            info[item["name"]] = {"error": done.error}
            continue
        atoms[item["name"]] = done.value["atoms"]
        info[item["name"]] = {k: v for k, v in done.value.items() if k != "atoms"}
    return atoms, info


def classify(minima: list[RssMinimum], references: Mapping[str, Any],
             params: RssParameters) -> list[RssMinimum]:
    """The minima with ``similarity`` filled in for the usable ones."""
    from dataclasses import replace

    usable = [i for i, m in enumerate(minima) if m.usable]
    if not usable or not references:
        return minima
    frames = [minima[i].final for i in usable]
    sims: dict[int, dict[str, float]] = {i: {} for i in usable}
    for name, crystal in references.items():
        per_atom = similarity_to_reference(frames, crystal, params.soap)
        for i, values in zip(usable, per_atom):
            sims[i][name] = float(values.mean())
    return [replace(m, similarity=sims[i]) if i in sims else m
            for i, m in enumerate(minima)]


def run_rss(potential: Any, params: RssParameters, *, workers: int = 0,
            scheduler: str | None = None, executor: Any = None,
            cache_dir: str | Path | None = None,
            progress: Callable[[Any], None] | None = None) -> RssResult:
    """Generate ``params.n_structures`` random structures, relax each with the candidate
    and classify the minima.

    Parameters
    ----------
    potential : Potential
        From :func:`~pytest_mlpval.potentials.load_potential` (or a bare ASE calculator:
        no cache, no species check).
    params : RssParameters
    workers, scheduler, executor, cache_dir, progress
        Where and how the relaxations run; see :func:`~pytest_mlpval.campaign.run_campaign`.
        The cache key holds the potential's content hash and the generation and
        relaxation parameters, but not ``n_structures`` (a longer search reuses the
        structures of a shorter one) nor the SOAP settings (the classification is
        recomputed on every run).

    Raises
    ------
    ValueError
        The composition has an element the potential does not cover, or no structure can
        be generated with the parameters (:class:`RssGenerationError`).
    """
    from pytest_mlpval.campaign import run_campaign

    if not isinstance(params, RssParameters):
        raise TypeError(f"params must be RssParameters, got {type(params).__name__}")
    _check_species(potential, params)
    generate(params, 0)  # impossible settings fail here, not in every worker
    start = time.perf_counter()
    campaign = run_campaign(
        PROTOCOL, relax_structure, [(params, i) for i in range(params.n_structures)],
        potential, params.relaxation_key(), version=TASK_VERSION, workers=workers,
        scheduler=scheduler, executor=executor, cache_dir=cache_dir, progress=progress,
        validate=_check_record)
    minima = [_minimum(i, item, params) for i, item in enumerate(campaign.items)]
    calc = getattr(potential, "calculator", potential)
    crystals, references = relax_references(potential, params, cache_dir=cache_dir)
    minima = classify(minima, crystals, params)
    info = getattr(potential, "info", None)
    return RssResult(
        params, getattr(info, "name", type(calc).__name__), getattr(info, "sha256", None),
        tuple(minima), references, time.perf_counter() - start, campaign.task_seconds,
        campaign.workers, campaign.executor, campaign.cache_path)
