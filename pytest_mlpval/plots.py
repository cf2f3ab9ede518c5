"""Plots (matplotlib, imported inside each function; no global rcParams are touched).

Each function takes plain rows (as the session's summary builds them) and a path, writes
a PNG and returns the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def _figure(width: float = 5.0, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def cost_scaling(rows: Sequence[Sequence], path: Path) -> Path:
    """Time per energy+forces call against atoms (log-log), one line per potential, with
    the fitted exponent in the legend. ``rows``: (potential, atoms, s/call, ...)."""
    fig = _figure()
    ax = fig.add_subplot()
    by_pot: dict[str, list[tuple[int, float, float]]] = {}
    for pot, n, seconds, _per_atom, exponent in rows:
        by_pot.setdefault(pot, []).append((n, seconds, exponent))
    for pot, points in sorted(by_pot.items()):
        points.sort()
        exponent = points[0][2]
        label = f"{pot} (N^{exponent:.2f})" if exponent == exponent else pot
        ax.loglog([p[0] for p in points], [p[1] for p in points], "o-", label=label)
    ax.set_xlabel("atoms")
    ax.set_ylabel("time per energy+forces call (s)")
    ax.set_title("Cost scaling")
    ax.legend(fontsize="small")
    return _save(fig, path)


def accuracy_cost(points: Sequence[tuple[str, float, float, str]], path: Path) -> Path:
    """Force RMSE against time per atom per call for each potential (the accuracy-cost
    front of Zuo et al., J. Phys. Chem. A 124, 731 (2020)); ``points``: (potential,
    µs/atom/call, force RMSE in eV/Å, dataset)."""
    fig = _figure()
    ax = fig.add_subplot()
    for pot, per_atom_us, force_rmse, _dataset in points:
        ax.scatter([per_atom_us], [force_rmse])
        ax.annotate(pot, (per_atom_us, force_rmse), textcoords="offset points",
                    xytext=(4, 4), fontsize="small")
    ax.set_xscale("log")
    ax.set_xlabel("time per atom per energy+forces call (µs)")
    datasets = sorted({p[3] for p in points})
    ax.set_ylabel(f"force RMSE (eV/Å), {', '.join(datasets)}")
    ax.set_title("Accuracy vs cost")
    return _save(fig, path)
