"""Settings of the compression protocol, its reference crystals and its per-frame
analysis (see :mod:`pytest_mlpval.protocols.compression.run`).

Plain library (no pytest).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from pytest_mlpval.campaign import run_campaign
from pytest_mlpval.descriptors import (HIGH_COORDINATION, SI_BOND_CUTOFF_A, SoapSettings,
                                       SoapSpectra, coordination_numbers, max_kernel)
from pytest_mlpval.protocols.base import CampaignOptions
from pytest_mlpval.protocols.md import (MDParameterError, MDProtocolSettings, MDSegment,
                                        MDSettings)
from pytest_mlpval.protocols.rss import (ReferenceCrystal, normalise_references,
                                         parse_composition, reference_name,
                                         relaxed_reference)
from pytest_mlpval.threads import one_blas_thread

__all__ = ["CompressionSettings", "CompressionAnalyser", "reference_crystals", "atom_key"]

REFERENCE_PROTOCOL = "mlpval-md-reference-crystals"
#: bump when the reference task's record changes meaning (part of the cache key)
REFERENCE_TASK_VERSION = 1


def atom_key(name: str) -> str:
    """``name`` as an extxyz-safe key (``beta-Sn`` -> ``beta_Sn``)."""
    return re.sub(r"\W", "_", name)


@dataclass(frozen=True)
class CompressionSettings(MDProtocolSettings):
    """Every parameter of a compression run (all of them key the cache).

    The defaults are silicon's (Deringer et al.'s compression of a-Si into simple
    hexagonal). Another element or a compound gives its ``composition``, its reference
    crystals (crystal specs such as ``"zincblende"``, ASE Atoms or ``{name: Atoms}``: see
    :func:`~pytest_mlpval.protocols.rss.normalise_references`), its ``expected_phase``
    and, for a compound, its ``coordination_cutoff_A`` (silicon's 2.85 Å Si-Si cutoff is
    refused for a compound, saying so); the outcome's coordination thresholds
    (:class:`~pytest_mlpval.protocols.compression.outcome.OutcomeThresholds`: collapse
    5.5, false minimum 10) are silicon's too and are passed to the assertions.

    Attributes
    ----------
    symbol : str
        The element (when ``composition`` is None).
    composition : str, mapping or None
        The formula unit of the start (``"SiC"``, ``{"Si": 1, "C": 1}``); None: ``symbol``.
        A random start holds whole formula units (``n_atoms`` rounded down to them);
        ``start_cell="diamond"`` is for an element only.
    limits : MDLimits
        Stability checks and the wall-time limit (shared by the whole run).
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
    references : tuple of crystal specs, Atoms, or a mapping of them
        Reference crystals, the expected low- and high-pressure phases (Si: diamond and
        sh), kept as specs and
        :class:`~pytest_mlpval.protocols.rss.ReferenceCrystal` structures; named by
        :func:`~pytest_mlpval.protocols.rss.reference_name` (``zincblende``).
    expected_phase : str
        The phase the run should crystallise into (for the outcome).
    reference_grid_GPa : float
        Spacing of the pressures at which references are relaxed; a frame uses the
        grid point nearest to its target pressure.
    similarity_cutoff : float
        An atom is "like" a reference when its SOAP similarity
        (:data:`~pytest_mlpval.descriptors.SI_SOAP`, zeta 4) exceeds this: 0.99, the 5th percentile of the atoms
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
    """

    #: bump when the run's record changes meaning (part of the cache key)
    VERSION: ClassVar[int] = 1

    composition: Any = None
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

    def validate(self) -> None:
        """Checks of the compression's own fields (the base checks ``symbol`` before and
        builds the segments after, which validate steps, temperatures and pressures)."""
        if self.start_cell not in ("random", "diamond"):
            raise MDParameterError(f"start_cell must be 'random' or 'diamond', got "
                                   f"{self.start_cell!r}")
        if self.composition is not None:
            object.__setattr__(self, "composition",
                               parse_composition(self.composition, MDParameterError))
        if len(self.elements) > 1:
            if self.start_cell == "diamond":
                raise MDParameterError(
                    f"start_cell='diamond' is a rattled diamond of one element, not "
                    f"defined for the compound {self.formula}: use start_cell='random' or "
                    "pass a start structure")
            if self.coordination_cutoff_A == SI_BOND_CUTOFF_A:
                raise MDParameterError(
                    f"coordination_cutoff_A={SI_BOND_CUTOFF_A} Å is silicon's Si-Si bond "
                    f"cutoff; give the compound {self.formula}'s (e.g. the first minimum "
                    "of its g(r))")
        if not self.references:
            raise MDParameterError("give at least one reference crystal")
        object.__setattr__(self, "references", normalise_references(
            self.references, self.composition_pairs, MDParameterError))
        if self.expected_phase not in self.reference_names:
            raise MDParameterError(f"expected_phase {self.expected_phase!r} is not among "
                                   f"the references {list(self.reference_names)}")
        self.segments()  # steps, temperatures and pressures, before the other numbers
        for name in ("reference_grid_GPa", "coordination_cutoff_A", "high_coordination"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise MDParameterError(f"{name} must be a finite number > 0, got {value!r}")
        if not 0 < self.similarity_cutoff < 1:
            raise MDParameterError(f"similarity_cutoff must be in (0, 1), got "
                                   f"{self.similarity_cutoff!r}")
        if int(self.n_atoms) != self.n_atoms or self.n_atoms < 2:
            raise MDParameterError(f"n_atoms must be an integer >= 2, got {self.n_atoms!r}")

    @property
    def composition_pairs(self) -> tuple[tuple[str, int], ...]:
        """``((symbol, count), ...)`` of the formula unit (``((symbol, 1),)`` for an
        element)."""
        return ((self.symbol, 1),) if self.composition is None else self.composition

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.composition_pairs)

    @property
    def formula(self) -> str:
        """The element, or the compound's formula unit (``SiC``): what the reference
        crystals are built for."""
        return "".join(s + (str(c) if c > 1 else "") for s, c in self.composition_pairs)

    @property
    def reference_names(self) -> tuple[str, ...]:
        return tuple(reference_name(r) for r in self.references)

    def as_dict(self) -> dict[str, Any]:
        """The fields (the cache key); ``composition`` only where given, so that an
        element's runs keep the key they had before compositions."""
        data = super().as_dict()
        if data["composition"] is None:
            del data["composition"]
        return data

    def segments(self) -> tuple[tuple[MDSegment, ...], tuple[MDSegment, ...]]:
        """(preparation, compression) segments; empty steps are left out."""
        prep = [MDSegment("melt", self.melt_steps, self.melt_K),
                MDSegment("quench", self.quench_steps, self.melt_K, self.quench_to_K)]
        T, p0, p1 = self.temperature_K, self.pressure_start_GPa, self.pressure_end_GPa
        comp = [MDSegment("equilibrate", self.equilibrate_steps, T, None, p0),
                MDSegment("compress", self.ramp_steps, T, None, p0, p1),
                MDSegment("hold", self.hold_steps, T, None, p1)]
        return (tuple(s for s in prep if s.n_steps), tuple(s for s in comp if s.n_steps))

    def md_settings(self) -> MDSettings:
        """Time step, thermostat, barostat and sampling of every segment: :attr:`md`."""
        return self.md

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


# -- references ---------------------------------------------------------------------------

def _reference_task(calc: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    crystal = item.get("crystal")
    entry = item["name"] if crystal is None else ReferenceCrystal.from_dict(crystal)
    with one_blas_thread():
        result = relaxed_reference(entry, calc, item["symbol"], item["pressure_GPa"])
    return {"atoms": result.atoms, "energy_per_atom_eV": result.energy_per_atom_eV,
            "volume_per_atom_A3": result.volume_per_atom_A3}


def _check_reference(value: Any) -> str | None:
    if not isinstance(value, dict) or not hasattr(value.get("atoms"), "positions"):
        return "no relaxed crystal (atoms) in the record"
    return None


def reference_crystals(potential: Any, settings: CompressionSettings, *,
                       options: CampaignOptions | None = None
                       ) -> tuple[dict[str, dict[float, Any]], dict[str, str]]:
    """Reference crystals relaxed with the candidate at every pressure of the grid:
    ``({name: {pressure_GPa: Atoms}}, {"name@p GPa": error})``, one campaign item per
    crystal and pressure (run and cached as ``options`` says; keyed by the crystals, the
    element and the grid only, so that runs with other MD settings share them). A
    relaxation that fails is reported, not raised: its frames get NaN adjusted
    similarities."""
    options = options or CampaignOptions()
    # a spec keeps the item it always had (an element's runs keep their cache key)
    items = [{"name": e, "symbol": settings.formula, "pressure_GPa": p}
             if isinstance(e, str) else
             {"name": e.name, "crystal": e.as_dict(), "symbol": settings.formula,
              "pressure_GPa": p}
             for e in settings.references for p in settings.pressure_grid()]
    names = [reference_name(e) for e in settings.references
             for _ in settings.pressure_grid()]
    key = {"name": REFERENCE_PROTOCOL, "version": REFERENCE_TASK_VERSION,
           "settings": {"items": items, "relax": "relaxed_crystal defaults"}}
    campaign = run_campaign(REFERENCE_PROTOCOL, _reference_task, items, potential, key,
                            version=REFERENCE_TASK_VERSION, validate=_check_reference,
                            **options.campaign_kwargs())
    crystals: dict[str, dict[float, Any]] = {n: {} for n in settings.reference_names}
    errors: dict[str, str] = {}
    for name, item, outcome in zip(names, items, campaign.items):
        if outcome.ok:
            crystals[name][item["pressure_GPa"]] = outcome.value["atoms"]
        else:
            errors[f"{name}@{item['pressure_GPa']:g} GPa"] = outcome.error or "failed"
    return crystals, errors


# -- per-frame analysis --------------------------------------------------------------------

class CompressionAnalyser:
    """Coordination and SOAP similarity of a frame to every reference, fixed and at the
    frame's pressure. Descriptors of the references are computed once."""

    def __init__(self, settings: CompressionSettings, crystals: Mapping[str, Mapping]):
        self.settings = settings
        self.crystals = crystals
        self._descriptor = SoapSpectra(settings.soap, settings.elements)
        self._ref: dict[tuple[str, float], np.ndarray | None] = {}

    def _reference(self, name: str, pressure: float) -> np.ndarray | None:
        key = (name, pressure)
        if key not in self._ref:
            atoms = self.crystals.get(name, {}).get(pressure)
            self._ref[key] = None if atoms is None else self._descriptor(atoms)
        return self._ref[key]

    def __call__(self, atoms: Any, values: Mapping[str, Any]):
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
        for name in s.reference_names:
            key = atom_key(name)
            for suffix, pressure in (("_fixed", 0.0), ("", scalars["reference_pressure_GPa"])):
                ref = self._reference(name, pressure)
                if ref is None:
                    sims = np.full(len(atoms), np.nan)
                else:
                    sims = max_kernel(p, ref, s.soap.zeta)
                scalars[f"{key}_similarity{suffix}"] = float(sims.mean())
                scalars[f"{key}_fraction{suffix}"] = float(np.mean(sims > s.similarity_cutoff)
                                                           ) if ref is not None else math.nan
                per_atom[f"similarity_{key}{suffix}"] = sims
        return scalars, per_atom
