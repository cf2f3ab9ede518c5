"""The result of a random structure search: every relaxed structure with its status.

Plain library (no pytest). :class:`RssResult` is what
:func:`~pytest_mlpval.protocols.rss.search.run_rss` returns; its minima are analysed by
:mod:`pytest_mlpval.protocols.rss.analysis` (which also draws the report's figure) and
written to and read from extxyz by :mod:`pytest_mlpval.protocols.rss.io`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from pytest_mlpval.protocols.base import Result
from pytest_mlpval.protocols.rss.analysis import energy_volume, gaps, report_figure
from pytest_mlpval.protocols.rss.generate import RssSettings
from pytest_mlpval.protocols.rss.io import read_rss_data, write_rss

__all__ = ["RssMinimum", "RssResult", "read_rss", "STATUSES", "USABLE"]

#: ``converged``: forces below ``fmax_eV_A``; ``not_converged``: the step limit was hit;
#: ``failed``: the calculator raised or returned a non-finite energy, force or stress (the
#: relaxation stops at that step), the wall-time limit ``max_seconds_per_structure`` was
#: reached (error ``RelaxationTimeout: ...``; not cached), or the worker died;
#: ``exploded``: a relaxed structure outside the sanity bounds (energy below the floor,
#: volume collapsed or ballooned, atoms closer than the distance floor)
STATUSES = ("converged", "not_converged", "failed", "exploded")
#: statuses whose structures count as minima in the analyses
USABLE = ("converged", "not_converged")


@dataclass(frozen=True)
class RssMinimum:
    """One relaxed random structure.

    Attributes
    ----------
    index : int
        Structure number; with the settings' seed it defines the initial structure.
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
class RssResult(Result):
    """The minima of one random structure search and their classification.

    Attributes
    ----------
    settings : RssSettings
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

    protocol: ClassVar[str] = "rss"
    #: the report's energy-volume figure, drawn from :meth:`report_data`
    figure = staticmethod(report_figure)

    settings: RssSettings
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

    @property
    def n_force_calls(self) -> int:
        """Calculator calls of every relaxation (cached ones included)."""
        return sum(m.n_force_calls for m in self.minima)

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
        (default: the settings' ``diamond_cutoff``)."""
        cutoff = self.settings.diamond_cutoff if cutoff is None else cutoff
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
        """Metrics NaN with nothing to count
        (:func:`~pytest_mlpval.protocols.rss.analysis.gaps`)."""
        return gaps(self)

    def report_data(self) -> dict[str, Any]:
        """Energies (relative to the candidate's diamond where it relaxed, else to the
        lowest minimum) and volumes of the usable minima, for the report's figure."""
        zero = "diamond" if "error" not in self.references.get("diamond", {"error": 1}) \
            else "lowest"
        de, v, _ = energy_volume(self, zero)
        return {"relative_to": zero,
                "energy_eV": [float(x) for x in de], "volume_A3": [float(x) for x in v],
                "n_diamond_like": int(self.n_diamond_like), "n_structures": len(self)}

    def write(self, path: str | Path) -> Path:
        """Write every structure (the final one, or the initial one where it failed) as
        extxyz, readable by ``ase.io.read``; see :mod:`pytest_mlpval.protocols.rss.io`."""
        return write_rss(self, path)

    @classmethod
    def read(cls, path: str | Path) -> "RssResult":
        """Load a result written by :meth:`write` (see :func:`read_rss`)."""
        data = read_rss_data(path)
        minima = tuple(RssMinimum(**m) for m in data.pop("minima"))
        return cls(minima=minima, **data)


def _cpu_share(minima: list[RssMinimum]) -> float:
    """CPU time over wall time of the relaxations that recorded both (1: each had a core
    to itself)."""
    timed = [m for m in minima if math.isfinite(m.cpu_seconds)]
    wall = sum(m.total_seconds for m in timed)
    return sum(m.cpu_seconds for m in timed) / wall if wall > 0 else math.nan



def read_rss(path: str | Path) -> RssResult:
    """Load an :class:`RssResult` written by
    :func:`~pytest_mlpval.protocols.rss.io.write_rss`. Timing fields of the run
    (``seconds``, ``task_seconds``) are not stored: they read as 0; structures of failed
    relaxations come back as ``initial``, others as ``final``."""
    return RssResult.read(path)
