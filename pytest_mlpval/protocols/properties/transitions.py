"""Transition pressures from the enthalpy crossing of two fitted equations of state
(:class:`~pytest_mlpval.protocols.properties.eos.EosResult`).

Plain library (no pytest).

A transition pressure is where the enthalpies H(P) = E(V) + PV of two phases cross, each
H(P) being the minimum over V of the fitted E(V) + PV (equivalent to the common tangent
of the two E(V) curves). Static lattice: no zero-point or thermal terms. The result says
when the crossing lies outside a sampled volume range (an extrapolation of a fit).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_mlpval.crystals import UnknownCrystalError, crystal_label
from pytest_mlpval.errors import ProtocolError
from pytest_mlpval.protocols.properties.common import PropertyResult
from pytest_mlpval.units import EV_PER_A3_TO_GPA

__all__ = ["TransitionResult", "transition_pressure", "slug"]


def slug(name: str) -> str:
    """Crystal name as used inside property names: ``"beta-Sn"`` -> ``"beta_sn"``; a
    crystal spec by its label (:func:`~pytest_mlpval.crystals.crystal_label`:
    ``"file:/x/Mo_A15.cif#sha256=..."`` -> ``"mo_a15"``, ``"rocksalt:a=4.2"`` ->
    ``"rocksalt"``)."""
    try:
        name = crystal_label(name)
    except UnknownCrystalError:
        pass
    return re.sub(r"\W+", "_", name.lower().replace("-", "_")).strip("_")


@dataclass(frozen=True)
class TransitionResult(PropertyResult):
    """Pressure at which phase ``high`` becomes more stable than ``low`` (static
    enthalpy crossing of their Birch–Murnaghan fits).

    Attributes
    ----------
    low, high : str
        The low- and high-pressure phases.
    pressure_GPa : float
        NaN when the enthalpies do not cross between ``-10`` and ``max_pressure_GPa``.
    volume_low_per_atom_A3, volume_high_per_atom_A3 : float
        Volumes of the two phases at the transition (the volume change is their difference).
    enthalpy_per_atom_eV : float
    extrapolated : bool
        True when a volume at the transition lies on the edge of its phase's sampled
        range (the enthalpy minimum was cut off there: an extrapolation).
    """

    low: str
    high: str
    pressure_GPa: float
    volume_low_per_atom_A3: float
    volume_high_per_atom_A3: float
    enthalpy_per_atom_eV: float
    extrapolated: bool
    protocol = "transition"

    @property
    def found(self) -> bool:
        return math.isfinite(self.pressure_GPa)

    def metrics(self) -> dict[str, float]:
        name = f"{slug(self.low)}_{slug(self.high)}_transition"
        return {f"{name}_GPa": self.pressure_GPa,
                f"{name}_extrapolated": float(self.extrapolated)}

    def not_measured(self) -> set[str]:
        """The transition pressure when the enthalpies do not cross in the pressure range
        searched (the search itself refuses a non-finite enthalpy difference)."""
        return set() if self.found else {f"{slug(self.low)}_{slug(self.high)}_transition_GPa"}


def _enthalpy(eos: Any, pressure_GPa: float) -> tuple[float, float]:
    """(H, V) per atom at ``pressure_GPa``: the minimum of E(V) + PV over the sampled
    volumes (a Birch–Murnaghan fit is not trusted beyond them: with B' < 0 it turns down
    under strong compression and would hand the phase a spurious low enthalpy). A volume
    on the edge of the sampled range means the true minimum lies outside it."""
    from scipy.optimize import minimize_scalar

    p = pressure_GPa / EV_PER_A3_TO_GPA
    found = minimize_scalar(lambda v: float(eos.energy(v)) + p * v,
                            bounds=(min(eos.volumes_per_atom_A3), max(eos.volumes_per_atom_A3)),
                            method="bounded", options={"xatol": 1e-8})
    return float(found.fun), float(found.x)


def transition_pressure(low: Any, high: Any, *, max_pressure_GPa: float = 60.0
                        ) -> TransitionResult:
    """Pressure where ``high`` takes over from ``low`` (enthalpy crossing)."""
    from scipy.optimize import brentq

    def delta(p: float) -> float:
        return _enthalpy(high, p)[0] - _enthalpy(low, p)[0]

    grid = np.linspace(-10.0, max_pressure_GPa, int(max_pressure_GPa + 10) * 2 + 1)
    values = [delta(p) for p in grid]
    broken = [float(p) for p, d in zip(grid, values) if not math.isfinite(d)]
    if broken:  # a NaN compares as no crossing: never report it as "none found"
        raise ProtocolError(
            f"the enthalpy difference {high.crystal} - {low.crystal} is not finite at "
            f"{len(broken)} of {len(grid)} pressures (first at {broken[0]:g} GPa): the "
            "Birch–Murnaghan fits cannot be compared")
    pressure = math.nan
    for p0, p1, d0, d1 in zip(grid, grid[1:], values, values[1:]):
        if d0 > 0 >= d1:
            pressure = float(brentq(delta, p0, p1, xtol=1e-6))
            break
    if not math.isfinite(pressure):
        return TransitionResult(low.crystal, high.crystal, math.nan, math.nan, math.nan,
                                math.nan, False)
    h, v_low = _enthalpy(low, pressure)
    _, v_high = _enthalpy(high, pressure)
    # on (or within 0.1 % of) the edge of a sampled range: the enthalpy minimum was cut off
    outside = any(not 1.001 * min(e.volumes_per_atom_A3) < v < 0.999 * max(e.volumes_per_atom_A3)
                  for e, v in ((low, v_low), (high, v_high)))
    return TransitionResult(low.crystal, high.crystal, pressure, v_low, v_high, h, outside)
