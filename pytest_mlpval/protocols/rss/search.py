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
None is dropped: each appears in :class:`~pytest_mlpval.protocols.rss.result.RssResult`
with a status (:data:`~pytest_mlpval.protocols.rss.result.STATUSES`).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np

from pytest_mlpval.campaign import run_campaign
from pytest_mlpval.crystals import RelaxationError, relax
from pytest_mlpval.descriptors import min_distance, similarity_to_reference
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.base import (CampaignOptions, CostMeter, NonFiniteResultError,
                                          ProtocolError)
from pytest_mlpval.protocols.rss.composition import ReferenceCrystal, relaxed_reference
from pytest_mlpval.protocols.rss.generate import RssGenerationError, RssSettings, generate
from pytest_mlpval.protocols.rss.result import STATUSES, USABLE, RssMinimum, RssResult
from pytest_mlpval.threads import one_blas_thread

__all__ = ["run_rss", "relax_structure", "relax_references", "classify", "PROTOCOL",
           "RelaxationTimeout", "NonFiniteResult"]

#: campaign protocol name (part of the cache key)
PROTOCOL = "rss"
#: a relaxation whose cell grows past this many times the sane volume stops as exploded
_BALLOONED = 10.0
#: what a cached relaxation record must hold
_RECORD_KEYS = ("status", "n_atoms", "energy_per_atom_eV", "volume_per_atom_A3",
                "enthalpy_per_atom_eV", "fmax_eV_A", "n_steps", "n_force_calls",
                "calculator_seconds", "total_seconds", "error", "initial", "final")
#: bump when the reference relaxations' record changes meaning (part of their cache key)
_REFERENCES_VERSION = 1


class RelaxationTimeout(ProtocolError):
    """A relaxation reached its wall-time limit (``max_seconds_per_structure``)."""


#: the calculator returned a NaN or infinite energy, force or stress, or the positions
#: became non-finite (:class:`~pytest_mlpval.protocols.base.NonFiniteResultError`)
NonFiniteResult = NonFiniteResultError


class _Ballooned(ProtocolError):
    """The cell grew far beyond the sane volume during the relaxation."""


# -- one relaxation (runs in a worker) ----------------------------------------------------

def _guard(limit_s: float | None = None, max_volume_per_atom_A3: float = math.inf
           ) -> Callable[[Any, int], None]:
    """The check a relaxation's :class:`~pytest_mlpval.protocols.base.CostMeter` runs
    before each calculator call: the wall-time limit ``limit_s`` from now
    (:class:`RelaxationTimeout`), finite positions and cell (:data:`NonFiniteResult`),
    so that an optimiser never steps on NaN (into a neighbour list that never ends), and
    a cell not ballooned past ``max_volume_per_atom_A3``."""
    deadline = None if limit_s is None else time.monotonic() + limit_s

    def guard(atoms: Any, n_calls: int) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise RelaxationTimeout(
                f"wall-time limit of {limit_s:g} s per structure "
                f"(max_seconds_per_structure) reached after {n_calls} calculator calls")
        if not (np.all(np.isfinite(atoms.positions)) and np.all(np.isfinite(atoms.cell))):
            raise NonFiniteResult(f"non-finite positions or cell before calculator call "
                                  f"{n_calls}")
        if all(atoms.pbc) and atoms.get_volume() > max_volume_per_atom_A3 * len(atoms):
            raise _Ballooned(f"the cell ballooned to {atoms.get_volume() / len(atoms):.4g} "
                             f"Å^3/atom (stopped beyond {max_volume_per_atom_A3:.4g})")

    return guard


def _explosion(settings: RssSettings, energy: float, volume: float, atoms: Any
               ) -> str | None:
    lo, hi = settings.sane_volume_per_atom_A3
    if energy < settings.energy_floor_eV:
        return (f"energy {energy:.4g} eV/atom below the sanity floor "
                f"{settings.energy_floor_eV:g} eV/atom")
    if not lo <= volume <= hi:
        return (f"volume {volume:.4g} Å^3/atom outside the sane range {lo:.4g}-{hi:.4g} "
                "Å^3/atom")
    # min_distance gives the floor itself when no pair is closer
    shortest = min_distance(atoms, cutoff_A=settings.distance_floor_A)
    if shortest < settings.distance_floor_A:
        return f"atoms {shortest:.3g} Å apart (floor {settings.distance_floor_A:g} Å)"
    return None


def relax_structure(calc: Any, item: tuple[RssSettings, int]) -> dict[str, Any]:
    """Generate structure ``index`` of ``settings`` and relax it with ``calc``; the
    campaign task (module level: pickled for workers). Returns a JSON-serialisable
    record (ASE Atoms inside are stored by the campaign cache as extxyz)."""
    settings, index = item
    start, cpu = time.perf_counter(), time.process_time()
    guard = _guard(settings.max_seconds_per_structure,
                   _BALLOONED * settings.sane_volume_per_atom_A3[1])
    initial = generate(settings, index)
    meter = CostMeter(calc, guard, always=("stress",))
    record: dict[str, Any] = {
        "index": index, "n_atoms": len(initial), "status": "failed", "error": None,
        "energy_per_atom_eV": math.nan, "volume_per_atom_A3": math.nan,
        "enthalpy_per_atom_eV": math.nan, "fmax_eV_A": math.nan, "n_steps": None,
        "initial": initial, "final": None}
    try:
        with one_blas_thread():
            result = relax(initial, meter.calc, pressure_GPa=settings.pressure_GPa,
                           fmax_eV_A=settings.fmax_eV_A, steps=settings.max_steps,
                           optimizer=settings.optimizer)
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
        why = _explosion(settings, result.energy_per_atom_eV, result.volume_per_atom_A3,
                         final)
        if why is not None:
            record.update(status="exploded", error=why)
    cost = meter.cost()
    record["n_force_calls"] = cost["n_force_calls"]
    record["calculator_seconds"] = cost["calculator_seconds"]
    record["total_seconds"] = time.perf_counter() - start
    record["cpu_seconds"] = time.process_time() - cpu
    return record


# -- the search ------------------------------------------------------------------------

def _check_species(potential: Any, settings: RssSettings) -> None:
    info = getattr(potential, "info", None)
    species = tuple(getattr(info, "species", ()) or ())
    if species:
        missing = [s for s in settings.symbols if s not in species]
        if missing:
            raise SettingsError(
                f"the composition {settings.formula} has {', '.join(missing)}, which the "
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


def _minimum(index: int, item: Any, settings: RssSettings) -> RssMinimum:
    if not item.ok:  # the task raised outside the relaxation, or its worker died
        try:
            initial = generate(settings, index)
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
    meter = CostMeter(calc, _guard(), always=("stress",))
    with one_blas_thread():  # stops at the first non-finite result
        crystal = item.get("crystal")
        entry = item["name"] if crystal is None else ReferenceCrystal.from_dict(crystal)
        ref = relaxed_reference(entry, meter.calc, item["symbol"], item["pressure_GPa"])
    return {"atoms": ref.atoms, "energy_per_atom_eV": float(ref.energy_per_atom_eV),
            "enthalpy_per_atom_eV": float(ref.enthalpy_per_atom_eV),
            "volume_per_atom_A3": float(ref.volume_per_atom_A3)}


def _check_reference(value: Any) -> str | None:
    """Why a cached reference record is unusable (None: it is fine)."""
    if isinstance(value, dict) and {"atoms", "volume_per_atom_A3"} <= set(value):
        return None
    return "incomplete"


def relax_references(potential: Any, settings: RssSettings, *,
                     options: CampaignOptions | None = None
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The crystals of ``settings.crystals`` (names and structures) relaxed with
    ``potential`` (a Potential or a calculator) at the search pressure (symmetry kept),
    cached in ``options.cache_dir`` like a campaign: ``({name: Atoms}, {name:
    {energy_per_atom_eV, enthalpy_per_atom_eV, volume_per_atom_A3} or {error}})``, keyed
    by :func:`~pytest_mlpval.protocols.rss.reference_name`. A crystal that cannot be
    relaxed is reported, not raised. They run in this process whatever ``options`` says
    (a few small relaxations)."""
    options = options or CampaignOptions()
    # a named crystal keeps the item it always had (and so its cache key)
    items = [{"name": entry, "symbol": settings.formula,
              "pressure_GPa": settings.pressure_GPa} if isinstance(entry, str) else
             {"name": entry.name, "crystal": entry.as_dict(),
              "symbol": settings.formula, "pressure_GPa": settings.pressure_GPa}
             for entry in settings.crystals]
    if not items:
        return {}, {}
    name = f"{PROTOCOL}-references"
    campaign = run_campaign(name, _reference_task, items, potential,
                            {"name": name, "version": _REFERENCES_VERSION,
                             "settings": {"items": items}},
                            version=_REFERENCES_VERSION, cache_dir=options.cache_dir,
                            validate=_check_reference)
    atoms, info = {}, {}
    for key, done in zip(settings.reference_names, campaign.items):
        if not done.ok:  # reported in the result, never hidden
            info[key] = {"error": done.error}
            continue
        atoms[key] = done.value["atoms"]
        info[key] = {k: v for k, v in done.value.items() if k != "atoms"}
    return atoms, info


def classify(minima: list[RssMinimum], references: Mapping[str, Any],
             settings: RssSettings) -> list[RssMinimum]:
    """The minima with ``similarity`` filled in for the usable ones: one SOAP over the
    composition's elements (``settings.soap.species`` when given)."""
    usable = [i for i, m in enumerate(minima) if m.usable]
    if not usable or not references:
        return minima
    frames = [minima[i].final for i in usable]
    soap = settings.soap if settings.soap.species is not None \
        else replace(settings.soap, species=settings.symbols)
    sims: dict[int, dict[str, float]] = {i: {} for i in usable}
    for name, crystal in references.items():
        per_atom = similarity_to_reference(frames, crystal, soap)
        for i, values in zip(usable, per_atom):
            sims[i][name] = float(values.mean())
    return [replace(m, similarity=sims[i]) if i in sims else m
            for i, m in enumerate(minima)]


def cache_parameters(settings: RssSettings) -> dict[str, Any]:
    """What keys the relaxations' cache besides the candidate's identity: the recipe of
    :func:`~pytest_mlpval.protocols.base.run_protocol` with the settings that change the
    relaxed structures (:meth:`RssSettings.relaxation_key`: a longer search reuses the
    structures of a shorter one, and the classification is recomputed on every run)."""
    return {"name": PROTOCOL, "version": settings.VERSION,
            "settings": settings.relaxation_key()}


def run_rss(potential: Any, settings: RssSettings, *,
            options: CampaignOptions | None = None) -> RssResult:
    """Generate ``settings.n_structures`` random structures, relax each with the
    candidate and classify the minima.

    Parameters
    ----------
    potential : Potential
        From :func:`~pytest_mlpval.potentials.load_potential` (or a bare ASE calculator:
        no cache, no species check).
    settings : RssSettings
    options : CampaignOptions, optional
        Where and how the relaxations run (workers, a Dask scheduler or an executor, the
        cache, progress). The cache key (:func:`cache_parameters`) holds the potential's
        content hash and the generation and relaxation settings, but not
        ``n_structures`` (a longer search reuses the structures of a shorter one) nor the
        SOAP settings (the classification is recomputed on every run).

    Raises
    ------
    SettingsError
        The composition has an element the potential does not cover, or no structure
        can be generated with the settings (:class:`RssGenerationError`).
    """
    if not isinstance(settings, RssSettings):
        raise SettingsError(f"settings must be RssSettings, got {type(settings).__name__}")
    options = options or CampaignOptions()
    _check_species(potential, settings)
    generate(settings, 0)  # impossible settings fail here, not in every worker
    start = time.perf_counter()
    campaign = run_campaign(
        PROTOCOL, relax_structure, [(settings, i) for i in range(settings.n_structures)],
        potential, cache_parameters(settings), version=settings.VERSION,
        validate=_check_record, **options.campaign_kwargs())
    minima = [_minimum(i, item, settings) for i, item in enumerate(campaign.items)]
    calc = getattr(potential, "calculator", potential)
    crystals, references = relax_references(potential, settings, options=options)
    minima = classify(minima, crystals, settings)
    info = getattr(potential, "info", None)
    return RssResult(
        settings, getattr(info, "name", type(calc).__name__), getattr(info, "sha256", None),
        tuple(minima), references, time.perf_counter() - start, campaign.task_seconds,
        campaign.workers, campaign.executor, campaign.cache_path)
