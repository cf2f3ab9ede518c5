"""Plots (matplotlib and numpy, imported inside each function, so that the run's results
can import this module when the plugin loads; no global rcParams are touched).

Each ``*_figure`` function takes plain data (as the run's records carry it) and returns a
matplotlib ``Figure``; :func:`save` writes a PNG file and :func:`png` returns PNG bytes
(for embedding in the HTML report).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import numpy as np

#: energy errors are plotted in meV/atom
MEV = 1000.0


def _figure(width: float = 5.0, height: float = 3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


# --- cost -------------------------------------------------------------------------------

def cost_scaling_figure(rows: Sequence[Sequence]):
    """Time per energy+forces call against atoms (log-log), one line per potential, with
    the fitted exponent in the legend. ``rows``: (potential, atoms, s/call, µs/atom,
    exponent)."""
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
    return fig


def accuracy_cost_figure(points: Sequence[tuple[str, float, float, str]]):
    """Force RMSE against time per atom per call for each potential (the accuracy-cost
    front of Zuo et al., J. Phys. Chem. A 124, 731 (2020)); ``points``: (potential,
    µs/atom/call, force RMSE in eV/Å, dataset), each candidate's own errors on the
    dataset named (:func:`pytest_mlpval.results.accuracy_cost_points`), never a fitting
    recipe's cross-validation errors."""
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
    return fig


def cost_scaling(rows: Sequence[Sequence], path: Path) -> Path:
    return save(cost_scaling_figure(rows), path)


def accuracy_cost(points: Sequence[tuple[str, float, float, str]], path: Path) -> Path:
    return save(accuracy_cost_figure(points), path)


# --- errors (paper Figs. 3 and 4) ---------------------------------------------------------

def error_violins_figure(groups: Mapping[str, Mapping[str, np.ndarray]], ylabel: str,
                         title: str):
    """Violins of signed errors per config_type, one panel per potential, each on its own
    y scale: on a shared axis a good candidate's violins flatten to a line next to a
    bad one's (the stats table beside the figure compares the numbers). ``groups``:
    potential -> config_type -> errors."""
    import numpy as np

    potentials = list(groups) or [""]
    config_types = sorted({c for per in groups.values() for c in per})
    panel = max(3.2, 0.9 * len(config_types) + 1.6)
    fig = _figure(max(5.0, panel * len(potentials)), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(potentials), squeeze=False)[0])
    for j, (pot, ax) in enumerate(zip(potentials, axes)):
        data, positions = [], []
        for i, ctype in enumerate(config_types):
            values = np.asarray(groups.get(pot, {}).get(ctype, []), dtype=float)
            values = values[np.isfinite(values)]
            if values.size >= 2:
                data.append(values)
                positions.append(i)
        if data:
            parts = ax.violinplot(data, positions=positions, widths=0.8,
                                  showmedians=True, showextrema=True)
            for body in parts["bodies"]:
                body.set_facecolor(f"C{j}")
                body.set_alpha(0.5)
            for lines in ("cbars", "cmins", "cmaxes", "cmedians"):
                if lines in parts:
                    parts[lines].set_color(f"C{j}")
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xticks(range(len(config_types)), config_types, rotation=20)
        ax.set_xlim(-0.6, max(len(config_types), 1) - 0.4)
        if len(potentials) > 1:
            ax.set_title(pot, color=f"C{j}", fontsize="medium")
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title + (" (each potential on its own scale)" if len(potentials) > 1
                          else ""), fontsize="medium")
    return fig


def parity_figure(points: Mapping[str, tuple[np.ndarray, np.ndarray]], unit: str,
                  title: str):
    """Predicted against reference, one colour per potential, with the y = x line."""
    import numpy as np

    fig = _figure(4.2, 4.0)
    ax = fig.add_subplot()
    low, high = np.inf, -np.inf
    for i, (pot, (ref, pred)) in enumerate(points.items()):
        ref, pred = np.asarray(ref, dtype=float), np.asarray(pred, dtype=float)
        ax.scatter(ref, pred, s=4, alpha=0.5, color=f"C{i}", label=pot, rasterized=True)
        if ref.size:
            low = min(low, np.nanmin(ref), np.nanmin(pred))
            high = max(high, np.nanmax(ref), np.nanmax(pred))
    if np.isfinite(low) and np.isfinite(high):
        ax.plot([low, high], [low, high], color="0.3", lw=0.8)
    ax.set_xlabel(f"reference ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title(title)
    ax.legend(fontsize="small", markerscale=3)
    return fig


def energy_error_vs_size_figure(data: Mapping[str, tuple[np.ndarray, np.ndarray]]):
    """|energy error| against atoms per cell with no scaling (eV per cell), divided by
    sqrt(N) and by N (paper Fig. 4). ``data``: potential -> (n_atoms, error per atom in
    eV)."""
    import numpy as np

    fig = _figure(10.5, 3.4)
    axes = fig.subplots(1, 3)
    labels = ("per cell (eV)", "per cell / √N (eV)", "per atom (meV)")
    positive = False
    for i, (pot, (n_atoms, per_atom)) in enumerate(data.items()):
        n = np.asarray(n_atoms, dtype=float)
        e = np.abs(np.asarray(per_atom, dtype=float))
        positive = positive or bool(np.any(e > 0))
        for ax, values in zip(axes, (e * n, e * np.sqrt(n), MEV * e)):
            ax.scatter(n, values, s=10, alpha=0.6, color=f"C{i}", label=pot)
    for ax, label in zip(axes, labels):
        ax.set_xlabel("atoms per cell")
        ax.set_ylabel(f"|energy error| {label}")
        if positive:  # all zero (e.g. one structure, offset removed): a log axis warns
            ax.set_yscale("log")
    axes[0].legend(fontsize="small")
    fig.suptitle("Energy error against cell size: three normalisations")
    return fig
