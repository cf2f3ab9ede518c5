"""Settings and records of the guarded MD runs (:func:`~pytest_mlpval.protocols.md.run_md`),
and :class:`MDProtocolSettings`, the base of every MD protocol's settings (MD stability,
melt-quench, compression).

Plain library (no pytest).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.base import Settings
from pytest_mlpval.units import is_chemical_symbol

__all__ = ["COMPLETED", "CUT_SHORT", "UNSTABLE", "INSTABILITIES", "MDParameterError",
           "MDLimits", "MDSegment", "MDSettings", "MDProtocolSettings", "MDFrame", "MDRecord",
           "start_key"]

#: run statuses
COMPLETED, UNSTABLE, CUT_SHORT = "completed", "unstable", "cut_short"

#: reasons of an unstable run
INSTABILITIES = {
    "nan": "the calculator returned NaN or inf (or positions became non-finite)",
    "force": "a force above MDLimits.max_force_eV_A",
    "energy": "the potential energy per atom moved more than "
              "MDLimits.max_energy_change_per_atom_eV from its start",
    "temperature": "the temperature exceeded the limit (MDLimits.max_temperature_K)",
    "overlap": "two atoms closer than the minimum distance (MDLimits.min_distance_A)",
    "error": "the calculator (or the integrator fed by it) raised an exception",
}


class MDParameterError(SettingsError):
    """An MD or protocol parameter is invalid; the message names it and its value."""


def start_key(start: Any) -> Any:
    """A JSON digest of a user's start structure (ase.Atoms with momenta) for cache keys;
    None for a generated start (``start=None``)."""
    if start is None:
        return None
    return {"numbers": np.asarray(start.numbers).tolist(),
            "positions": np.round(np.asarray(start.positions), 10).tolist(),
            "cell": np.round(np.asarray(start.cell), 10).tolist(),
            "pbc": np.asarray(start.pbc).tolist(),
            "momenta": np.round(start.get_momenta(), 12).tolist()}


def _positive(name: str, value: Any, allow_zero: bool = False, integer: bool = False) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if integer:
        ok = ok and int(value) == value
    if not ok:
        kind = "integer" if integer else "number"
        bound = ">= 0" if allow_zero else "> 0"
        raise MDParameterError(f"{name} must be a finite {kind} {bound}, got {value!r}")


@dataclass(frozen=True)
class MDLimits(Settings):
    """When an MD run is stopped as unstable, and how long it may take.

    Attributes
    ----------
    min_distance_A : float or None
        Two atoms closer than this (Å) are overlapping. ``None``: ``min_distance_fraction``
        x twice the smallest covalent radius of the species (Si: 0.6 x 2.22 = 1.33 Å,
        against a bond of 2.35 Å and closest approaches near 1.9 Å in the melt).
    min_distance_fraction : float
    max_temperature_K : float or None
        ``None``: max(3 x, 1000 K +) the highest of the run's target temperatures and the
        temperature it starts at.
    max_energy_change_per_atom_eV : float
        Largest change of the potential energy per atom from the start of the run (eV);
        3 eV/atom is several times what melting or compressing Si to 20 GPa costs.
    max_force_eV_A : float
        Largest force on any atom (eV/Å).
    wall_time_s : float or None
        Wall-time limit of the protocol (checked between MD steps; the run is then
        reported as cut short).
    """

    min_distance_A: float | None = None
    min_distance_fraction: float = 0.6
    max_temperature_K: float | None = None
    max_energy_change_per_atom_eV: float = 3.0
    max_force_eV_A: float = 100.0
    wall_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_distance_A", "max_temperature_K", "wall_time_s"):
            if getattr(self, name) is not None:
                _positive(f"MDLimits.{name}", getattr(self, name))
        for name in ("min_distance_fraction", "max_energy_change_per_atom_eV", "max_force_eV_A"):
            _positive(f"MDLimits.{name}", getattr(self, name))

    def resolved_min_distance(self, symbols: Any) -> float:
        if self.min_distance_A is not None:
            return float(self.min_distance_A)
        from ase.data import atomic_numbers, covalent_radii

        radius = min(covalent_radii[atomic_numbers[s]] for s in set(symbols))
        return float(self.min_distance_fraction * 2 * radius)

    def resolved_max_temperature(self, highest_K: float) -> float:
        if self.max_temperature_K is not None:
            return float(self.max_temperature_K)
        return float(max(3.0 * highest_K, highest_K + 1000.0))


@dataclass(frozen=True)
class MDSegment:
    """One phase of a run: ``n_steps`` steps with a (linearly ramped) temperature and
    pressure.

    No temperature: NVE (velocity Verlet). A temperature: NVT. A temperature and a
    pressure: NPT. ``*_end_*`` values ramp linearly from the start value over the segment.

    Attributes
    ----------
    phase : str
        Tag of the frames of this segment (``"crystal"``, ``"melt"``, ``"quench"`` ...).
    n_steps : int
    temperature_K, temperature_end_K : float or None
    pressure_GPa, pressure_end_GPa : float or None
    """

    phase: str
    n_steps: int
    temperature_K: float | None = None
    temperature_end_K: float | None = None
    pressure_GPa: float | None = None
    pressure_end_GPa: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.phase, str) or not self.phase.strip():
            raise MDParameterError(f"segment phase must be a non-empty string, got "
                                   f"{self.phase!r}")
        _positive(f"segment {self.phase!r}: n_steps", self.n_steps, True, True)
        object.__setattr__(self, "n_steps", int(self.n_steps))
        for name in ("temperature_K", "temperature_end_K"):
            if getattr(self, name) is not None:
                _positive(f"segment {self.phase!r}: {name}", getattr(self, name), True)
        for name in ("pressure_GPa", "pressure_end_GPa"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float))
                                          and math.isfinite(value)):
                raise MDParameterError(f"segment {self.phase!r}: {name} must be a finite "
                                       f"number, got {value!r}")
        if self.temperature_K is None and self.temperature_end_K is not None:
            raise MDParameterError(f"segment {self.phase!r}: temperature_end_K needs "
                                   "temperature_K")
        if self.pressure_GPa is None and self.pressure_end_GPa is not None:
            raise MDParameterError(f"segment {self.phase!r}: pressure_end_GPa needs "
                                   "pressure_GPa")
        if self.pressure_GPa is not None and self.temperature_K is None:
            raise MDParameterError(f"segment {self.phase!r}: a pressure needs a temperature "
                                   "(NPT); NPH is not offered")

    @property
    def ensemble(self) -> str:
        if self.temperature_K is None:
            return "nve"
        return "nvt" if self.pressure_GPa is None else "npt"

    @property
    def ramped(self) -> bool:
        return (self.temperature_end_K is not None
                and self.temperature_end_K != self.temperature_K) or (
            self.pressure_end_GPa is not None and self.pressure_end_GPa != self.pressure_GPa)

    def target(self, k: int) -> tuple[float | None, float | None]:
        """Target temperature (K) and pressure (GPa) at step ``k`` of the segment."""
        x = k / self.n_steps if self.n_steps else 1.0

        def ramp(a, b):
            return None if a is None else (a if b is None else a + (b - a) * x)

        return (ramp(self.temperature_K, self.temperature_end_K),
                ramp(self.pressure_GPa, self.pressure_end_GPa))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MDSettings(Settings):
    """How the equations of motion are integrated and sampled.

    Attributes
    ----------
    timestep_fs : float
    thermostat : str
        NVT: ``"langevin"`` (ASE ``Langevin``, ramps allowed) or ``"bussi"`` (ASE
        ``Bussi`` stochastic velocity rescaling; constant temperature; its conserved
        energy is recorded).
    friction_per_fs : float
        Langevin friction (1/fs).
    taut_fs : float
        Bussi / Berendsen / BAOAB temperature coupling time (fs).
    barostat : str
        NPT: ``"berendsen"`` (ASE ``Inhomogeneous_NPTBerendsen``: the three cell lengths
        relax independently, angles fixed; Berendsen velocity rescaling) or
        ``"langevin_baoab"`` (ASE ``LangevinBAOAB``, fully flexible cell).
    taup_fs : float
        Pressure coupling time (fs).
    bulk_modulus_GPa : float
        Bulk modulus assumed by the Berendsen barostat (its compressibility is 1/B);
        100 GPa is about silicon's.
    sample_every : int
        A frame (record, analysis, stored structure) every this many steps, and at the
        last step.
    store_structures : bool
        Keep the structure of every frame (for the trajectory file).
    """

    timestep_fs: float = 1.0
    thermostat: str = "langevin"
    friction_per_fs: float = 0.01
    taut_fs: float = 100.0
    barostat: str = "berendsen"
    taup_fs: float = 500.0
    bulk_modulus_GPa: float = 100.0
    sample_every: int = 10
    store_structures: bool = True

    def __post_init__(self) -> None:
        for name in ("timestep_fs", "friction_per_fs", "taut_fs", "taup_fs",
                     "bulk_modulus_GPa"):
            _positive(f"MDSettings.{name}", getattr(self, name))
        _positive("MDSettings.sample_every", self.sample_every, integer=True)
        if self.thermostat not in ("langevin", "bussi"):
            raise MDParameterError(f"MDSettings.thermostat must be 'langevin' or 'bussi', "
                                   f"got {self.thermostat!r}")
        if self.barostat not in ("berendsen", "langevin_baoab"):
            raise MDParameterError(f"MDSettings.barostat must be 'berendsen' or "
                                   f"'langevin_baoab', got {self.barostat!r}")


@dataclass(frozen=True)
class MDProtocolSettings(Settings):
    """Base of the settings of a protocol made of guarded MD runs (MD stability,
    melt-quench, compression): a frozen dataclass whose fields all key the cache, with
    ``as_dict``, ``from_dict`` and ``with_overrides`` from
    :class:`~pytest_mlpval.protocols.base.Settings`.

    Attributes
    ----------
    symbol : str
        Element of the generated start structures (default ``"Si"``, the example
        suite's; a start structure given to a protocol overrides it).
    limits : MDLimits
        Stability checks and the wall-time limit of the protocol's MD.

    A subclass adds its fields and gives :meth:`segments` and :meth:`md_settings`;
    construction checks ``symbol``, then the subclass's :meth:`validate`, then builds the
    segments and the MD settings, so that any invalid value raises
    :class:`MDParameterError` naming it when the settings are made, not when they run.
    """

    symbol: str = "Si"
    limits: MDLimits = MDLimits()

    def __post_init__(self) -> None:
        if not is_chemical_symbol(self.symbol):
            raise MDParameterError(f"symbol {self.symbol!r} is not a chemical symbol")
        self.validate()
        self.segments()
        self.md_settings()

    def validate(self) -> None:
        """Check the subclass's own fields (raise :class:`MDParameterError`)."""

    def segments(self) -> tuple[Any, ...]:
        """The :class:`MDSegment` of the protocol's MD, in order (a protocol with
        separate runs may group them in tuples)."""
        raise NotImplementedError(f"{type(self).__name__}.segments()")

    def md_settings(self) -> MDSettings:
        """How the protocol's MD is integrated and sampled."""
        raise NotImplementedError(f"{type(self).__name__}.md_settings()")


@dataclass(frozen=True)
class MDFrame:
    """What was measured at one sampled step. Energies per atom in eV, NaN where not
    defined (no target, no stress, no conserved quantity of the thermostat).

    ``conserved_energy_per_atom_eV`` is E_pot + E_kin in NVE and that minus the energy
    taken out by the thermostat for Bussi; NaN for Langevin and Berendsen. ``analysis``
    holds the protocol's values (coordination, SOAP similarities ...).
    """

    step: int
    time_fs: float
    phase: str
    temperature_K: float
    target_temperature_K: float
    pressure_GPa: float
    target_pressure_GPa: float
    volume_per_atom_A3: float
    potential_energy_per_atom_eV: float
    kinetic_energy_per_atom_eV: float
    conserved_energy_per_atom_eV: float
    min_distance_A: float
    analysis: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "analysis"},
                "analysis": dict(self.analysis)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MDFrame":
        return cls(**data)

    def info(self) -> dict[str, Any]:
        """Flat scalars for an extxyz comment line (nested analysis values left out)."""
        out = {k: v for k, v in self.as_dict().items() if k != "analysis"}
        out.update({k: v for k, v in self.analysis.items()
                    if isinstance(v, (int, float, str, bool, np.number))})
        return out


@dataclass(frozen=True)
class MDRecord:
    """The outcome of :func:`~pytest_mlpval.protocols.md.run_md`.

    Attributes
    ----------
    frames : tuple of MDFrame
    structures : tuple of ase.Atoms
        One per frame where structures are stored (calculator results and frame info
        attached); empty otherwise.
    series : mapping of str to ndarray
        Per-step values (including step 0): ``time_fs``, ``potential_energy_per_atom_eV``,
        ``kinetic_energy_per_atom_eV``, ``conserved_energy_per_atom_eV``, ``temperature_K``.
    status : str
        ``"completed"``, ``"unstable"`` or ``"cut_short"`` (wall-time limit).
    instability : str or None
        Key of :data:`INSTABILITIES` for an unstable run.
    message : str or None
        What stopped the run, with the value and the step.
    n_steps, n_steps_planned : int
    seconds, analysis_seconds : float
        Wall time of the run and of its frame analysis.
    final_atoms : ase.Atoms
        The last state (with momenta), for continuing.
    seed : int
    """

    frames: tuple[MDFrame, ...]
    structures: tuple[Any, ...]
    series: Mapping[str, np.ndarray]
    status: str
    instability: str | None
    message: str | None
    n_steps: int
    n_steps_planned: int
    seconds: float
    analysis_seconds: float
    final_atoms: Any
    seed: int

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready except for the ASE Atoms, which :mod:`pytest_mlpval.campaign`
        stores as extxyz text."""
        return {"frames": [f.as_dict() for f in self.frames],
                "structures": list(self.structures),
                "series": {k: np.asarray(v).tolist() for k, v in self.series.items()},
                "status": self.status, "instability": self.instability,
                "message": self.message, "n_steps": self.n_steps,
                "n_steps_planned": self.n_steps_planned, "seconds": self.seconds,
                "analysis_seconds": self.analysis_seconds, "final_atoms": self.final_atoms,
                "seed": self.seed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MDRecord":
        values = dict(data)
        values["frames"] = tuple(MDFrame.from_dict(f) for f in data["frames"])
        values["structures"] = tuple(data["structures"])
        values["series"] = {k: np.asarray(v, dtype=float) for k, v in data["series"].items()}
        return cls(**values)
