"""Errors binned by similarity to the training set: do errors grow outside the domain?

Plain library (no pytest).

Force-component errors are binned per atom by the atom's similarity to the training set
(:func:`~pytest_mlpval.protocols.domain.coverage.similarity_to_training`); per-atom
energy errors per structure by the structure's mean similarity. Each bin reports its
count and the RMSE (eV/Å for force components, eV/atom for energies).
``inside``/``outside`` split the same errors at the applicability cutoff
(:data:`~pytest_mlpval.protocols.domain.coverage.OUTSIDE_CUTOFF`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from pytest_mlpval.assertions import format_table
from pytest_mlpval.metrics import compute_errors
from pytest_mlpval.protocols.base import Result
from pytest_mlpval.protocols.domain.coverage import OUTSIDE_CUTOFF

__all__ = ["DEFAULT_BINS", "BinnedErrors", "errors_by_similarity",
           "plot_errors_by_similarity", "plot_similarity_histogram"]

#: bin edges of the similarity (kernel) axis: most environments of a good test set are
#: above 0.99, an unknown phase lies between 0.5 and 0.95
DEFAULT_BINS = (0.0, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)


def _rmse(values: np.ndarray) -> float:
    """RMSE of every value (a NaN or inf one makes it non-finite); NaN for none."""
    return float(np.sqrt(np.mean(values**2))) if values.size else math.nan


@dataclass(frozen=True)
class BinnedErrors(Result):
    """Errors against similarity to the training set.

    Attributes
    ----------
    edges : ndarray
        Bin edges of the similarity (the last bin includes 1).
    force_counts : ndarray of int
        Atoms per bin.
    force_rmse : ndarray
        RMSE of the force components of the atoms in each bin (eV/Å); NaN for empty bins.
    energy_counts : ndarray of int
        Structures per bin (by mean similarity).
    energy_rmse : ndarray
        RMSE of the per-atom energy errors of the structures in each bin (eV/atom).
    cutoff : float
        Split of ``inside`` / ``outside`` in :meth:`metrics`.
    atom_similarity, atom_force_rmse : ndarray
        Per atom: similarity and RMSE of its three force components (for scatter plots).
    """

    edges: np.ndarray
    force_counts: np.ndarray
    force_rmse: np.ndarray
    energy_counts: np.ndarray
    energy_rmse: np.ndarray
    cutoff: float
    force_inside_outside: tuple[float, float, int, int] = (math.nan, math.nan, 0, 0)
    energy_inside_outside: tuple[float, float, int, int] = (math.nan, math.nan, 0, 0)
    atom_similarity: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    atom_force_rmse: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def metrics(self) -> dict[str, float]:
        """``force_rmse_inside`` / ``_outside`` (atoms at or above / below the cutoff),
        ``energy_rmse_inside`` / ``_outside`` (structures by mean similarity),
        ``n_atoms_outside``, ``n_structures_outside``, ``cutoff``."""
        fi, fo, _, n_fo = self.force_inside_outside
        ei, eo, _, n_eo = self.energy_inside_outside
        return {"force_rmse_inside": fi, "force_rmse_outside": fo,
                "energy_rmse_inside": ei, "energy_rmse_outside": eo,
                "n_atoms_outside": float(n_fo), "n_structures_outside": float(n_eo),
                "cutoff": self.cutoff}

    def not_measured(self) -> set[str]:
        """An RMSE inside or outside with no atom (structure) there, or no such label."""
        counts = {"force": self.force_inside_outside[2:],
                  "energy": self.energy_inside_outside[2:]}
        return {f"{q}_rmse_{side}" for q, (n_in, n_out) in counts.items()
                for side, n in (("inside", n_in), ("outside", n_out)) if n == 0}

    def units(self) -> dict[str, str]:
        return {"force_rmse_inside": "eV/Å", "force_rmse_outside": "eV/Å",
                "energy_rmse_inside": "eV/atom", "energy_rmse_outside": "eV/atom",
                "n_atoms_outside": "", "n_structures_outside": "", "cutoff": ""}

    def table(self) -> list[str]:
        rows = [[f"{lo:.3f}-{hi:.3f}", int(nf), fr, int(ne), er]
                for lo, hi, nf, fr, ne, er in zip(self.edges[:-1], self.edges[1:],
                                                  self.force_counts, self.force_rmse,
                                                  self.energy_counts, self.energy_rmse)]
        return format_table(["similarity", "atoms", "F RMSE eV/Å", "structures",
                             "E RMSE eV/atom"], rows)

    def as_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "force_counts": self.force_counts.tolist(),
                "force_rmse": self.force_rmse.tolist(),
                "energy_counts": self.energy_counts.tolist(),
                "energy_rmse": self.energy_rmse.tolist(), "metrics": self.metrics(),
                "units": self.units()}


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    index = np.searchsorted(edges, values, side="right") - 1
    return np.clip(index, 0, len(edges) - 2)


def errors_by_similarity(errors: Any, similarity: Any, bins: Sequence[float] = DEFAULT_BINS,
                         cutoff: float | None = None, reference: Any = None
                         ) -> BinnedErrors:
    """Bin the errors of a test set by its similarity to the training set.

    Parameters
    ----------
    errors : ErrorReport or Predictions
        From :func:`~pytest_mlpval.metrics.compute_errors` on the structures of
        ``similarity`` (its ``indices`` pick them, so a config_type subset works); a
        ``Predictions`` needs ``reference``.
    similarity : DomainSimilarity
        From :func:`~pytest_mlpval.protocols.domain.coverage.similarity_to_training` on
        the same structures.
    bins : sequence of float
        Increasing similarity edges.
    cutoff : float, optional
        Inside/outside split (default
        :data:`~pytest_mlpval.protocols.domain.coverage.OUTSIDE_CUTOFF`).
    """
    if reference is not None:
        errors = compute_errors(reference, errors)
    if not hasattr(errors, "force_error"):
        raise TypeError(f"errors must be an ErrorReport (or Predictions with reference=), "
                        f"got {type(errors).__name__}")
    cutoff = OUTSIDE_CUTOFF if cutoff is None else float(cutoff)
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins must be at least two increasing edges, got {list(bins)}")
    indices = np.asarray(errors.indices, dtype=int)
    if indices.size and indices.max() >= len(similarity):
        raise ValueError(f"the errors index structure {indices.max()} but the similarity "
                         f"covers {len(similarity)} structures: not the same test set")
    for i, n in zip(indices, errors.n_atoms):
        if len(similarity.per_atom[i]) != n:
            raise ValueError(f"structure {i} has {n} atoms in the errors but "
                             f"{len(similarity.per_atom[i])} in the similarity: not the same "
                             "test set")
    n_bins = len(edges) - 1
    force_counts, force_rmse = np.zeros(n_bins, dtype=int), np.full(n_bins, math.nan)
    atom_sim, atom_rmse = np.zeros(0), np.zeros(0)
    force_io = (math.nan, math.nan, 0, 0)
    if errors.force_error is not None:
        atom_sim = np.concatenate([similarity.per_atom[i] for i in indices])
        components = np.concatenate([np.asarray(f) for f in errors.force_error])
        atom_rmse = np.sqrt(np.mean(components**2, axis=1))
        which = _bin_index(atom_sim, edges)
        for b in range(n_bins):
            force_counts[b] = int(np.sum(which == b))
            force_rmse[b] = _rmse(components[which == b].ravel())
        inside = atom_sim >= cutoff
        force_io = (_rmse(components[inside].ravel()), _rmse(components[~inside].ravel()),
                    int(inside.sum()), int((~inside).sum()))
    energy_counts, energy_rmse = np.zeros(n_bins, dtype=int), np.full(n_bins, math.nan)
    energy_io = (math.nan, math.nan, 0, 0)
    if errors.energy_error is not None:
        mean_sim = np.asarray(similarity.mean)[indices]
        e = np.asarray(errors.energy_error, dtype=float)
        which = _bin_index(mean_sim, edges)
        for b in range(n_bins):
            energy_counts[b] = int(np.sum(which == b))
            energy_rmse[b] = _rmse(e[which == b])
        inside = mean_sim >= cutoff
        energy_io = (_rmse(e[inside]), _rmse(e[~inside]), int(inside.sum()),
                     int((~inside).sum()))
    return BinnedErrors(edges, force_counts, force_rmse, energy_counts, energy_rmse, cutoff,
                        force_io, energy_io, atom_sim, atom_rmse)


def plot_errors_by_similarity(binned: BinnedErrors, axes: Any = None) -> Any:
    """Force RMSE per atom against similarity (scatter) with the binned RMSE, and the
    binned energy RMSE; on two given axes or a new matplotlib ``Figure``."""
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.8), layout="constrained")
        axes = fig.subplots(1, 2)
    else:
        fig = axes[0].figure
    centres = 0.5 * (binned.edges[:-1] + binned.edges[1:])
    ax = axes[0]
    if binned.atom_similarity.size:
        ax.scatter(binned.atom_similarity, binned.atom_force_rmse, s=3, alpha=0.3,
                   color="grey", label="atoms")
    ax.plot(centres, binned.force_rmse, "o-", label="RMSE per bin")
    ax.axvline(binned.cutoff, color="red", lw=0.8, ls="--", label="cutoff")
    ax.set_xlabel("similarity to training set")
    ax.set_ylabel("force error (eV/Å)")
    ax.legend(fontsize=7)
    axes[1].plot(centres, binned.energy_rmse, "o-")
    axes[1].axvline(binned.cutoff, color="red", lw=0.8, ls="--")
    axes[1].set_xlabel("mean similarity of the structure")
    axes[1].set_ylabel("energy RMSE (eV/atom)")
    return fig


def plot_similarity_histogram(similarity: Any, cutoff: float | None = None,
                              ax: Any = None) -> Any:
    """Histogram of the per-atom similarity to the training set, with the cutoff."""
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3.6), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.hist(similarity.all_atoms(), bins=50, range=(0.0, 1.0))
    ax.axvline(OUTSIDE_CUTOFF if cutoff is None else cutoff, color="red", ls="--")
    ax.set_xlabel(f"per-atom similarity to {similarity.training}")
    ax.set_ylabel("atoms")
    return fig

