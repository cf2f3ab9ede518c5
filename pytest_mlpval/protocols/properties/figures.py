"""The E(V) figure of the equation-of-state results (:class:`EosResult` and
:class:`PolymorphResult` of :mod:`.eos` draw it in the report).

Plain library (no pytest); matplotlib is imported inside the function.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pytest_mlpval.units import EV_PER_A3_TO_GPA

__all__ = ["eos_figure"]


def eos_figure(per_potential: dict[str, dict[str, Any]]):
    """E(V) curves (points and Birch–Murnaghan fit) of each potential side by side, from
    :meth:`EosResult.report_data` / :meth:`PolymorphResult.report_data`; energies
    relative to the minimum of the reference crystal (meV/atom)."""
    from ase.eos import birchmurnaghan
    from matplotlib.figure import Figure

    names = sorted(per_potential)
    fig = Figure(figsize=(4.2 * len(names), 3.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, pot in zip(axes, names):
        data = per_potential[pot]
        curves = data["curves"]
        e_ref = curves.get(data.get("reference"), next(iter(curves.values())))["E0"]
        for crystal, c in curves.items():
            v = np.asarray(c["volumes_per_atom_A3"])
            grid = np.linspace(v.min(), v.max(), 100)
            fit = birchmurnaghan(grid, c["E0"], c["B_GPa"] / EV_PER_A3_TO_GPA, c["Bp"], c["V0"])
            line, = ax.plot(grid, 1000 * (fit - e_ref), "-",
                            label=f"{crystal} (B = {c['B_GPa']:.0f} GPa)")
            ax.plot(v, 1000 * (np.asarray(c["energies_per_atom_eV"]) - e_ref), "o",
                    color=line.get_color(), markersize=3)
        title = pot
        for name, p in (data.get("transitions") or {}).items():
            title += f"\n{name}: {p:.1f} GPa" if math.isfinite(p) else f"\n{name}: none"
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("volume (Å$^3$/atom)")
        ax.legend(fontsize="x-small")
    axes[0].set_ylabel("energy (meV/atom)")
    return fig
