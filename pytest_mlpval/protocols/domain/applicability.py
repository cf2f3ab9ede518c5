"""Applicability: how much of a user's structures lies inside a training set's domain.

Plain library (no pytest).

The fraction of atoms whose per-atom similarity to the training set
(:func:`~pytest_mlpval.protocols.domain.coverage.similarity_to_training`) is below a
cutoff (default :data:`~pytest_mlpval.protocols.domain.coverage.OUTSIDE_CUTOFF`, 0.95) is
*outside the training domain*; the calibration is in the docstring of
:mod:`pytest_mlpval.protocols.domain.coverage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.descriptors import SoapSettings
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.base import Result, Settings
from pytest_mlpval.protocols.domain.coverage import (OUTSIDE_CUTOFF, DomainSimilarity,
                                                     quantiles, report_figure,
                                                     similarity_to_training,
                                                     training_domain)

__all__ = ["ApplicabilitySettings", "ApplicabilityResult", "check_applicability",
           "assert_applicable"]


@dataclass(frozen=True)
class ApplicabilitySettings(Settings):
    """How :func:`check_applicability` measures coverage.

    Attributes
    ----------
    soap : SoapSettings or None
        The descriptor (None: ``SI_SOAP``; not used with a ready :class:`TrainingDomain`).
    cutoff : float
        Per-atom similarity in (0, 1] below which an atom is outside the training
        domain.
    """

    VERSION: ClassVar[int] = 1

    soap: SoapSettings | None = None
    cutoff: float = OUTSIDE_CUTOFF

    def __post_init__(self) -> None:
        if not 0 < self.cutoff <= 1:
            raise SettingsError(f"cutoff must be in (0, 1], got {self.cutoff}")
        object.__setattr__(self, "cutoff", float(self.cutoff))


@dataclass(frozen=True)
class ApplicabilityResult(Result):
    """How much of a set of structures lies inside a training set's domain.

    Attributes
    ----------
    training : str
    cutoff : float
        Per-atom similarity below which an atom is outside.
    similarity : DomainSimilarity
    names : tuple of str
        A name per structure (its config_type and index by default).
    """

    training: str
    cutoff: float
    similarity: DomainSimilarity = field(repr=False)
    names: tuple[str, ...] = ()

    figure = staticmethod(report_figure)

    @property
    def outside_fractions(self) -> np.ndarray:
        """Per structure, the fraction of atoms below ``cutoff``."""
        return np.array([float(np.mean(s < self.cutoff)) for s in self.similarity.per_atom])

    def least_covered(self, k: int = 5) -> list[tuple[int, str, int, float, float, float]]:
        """The ``k`` structures with the most atoms outside (then lowest mean):
        (index, name, atoms, outside fraction, mean and min similarity)."""
        out, mean = self.outside_fractions, self.similarity.mean
        order = sorted(range(len(out)), key=lambda i: (-out[i], mean[i]))[:k]
        return [(i, self.names[i], int(self.similarity.n_atoms[i]), float(out[i]),
                 float(mean[i]), float(self.similarity.min[i])) for i in order]

    def metrics(self) -> dict[str, float]:
        """``outside_fraction`` (of all atoms), ``n_atoms``, ``n_structures``,
        ``n_structures_with_outside_atoms``, ``max_structure_outside_fraction``,
        ``mean_similarity``, ``min_similarity``, ``p05_similarity`` (5th percentile of
        the per-atom similarity) and ``cutoff``."""
        sims = self.similarity.all_atoms()
        out = self.outside_fractions
        return {"outside_fraction": float(np.mean(sims < self.cutoff)),
                "n_atoms": float(sims.size), "n_structures": float(len(out)),
                "n_structures_with_outside_atoms": float(np.sum(out > 0)),
                "max_structure_outside_fraction": float(out.max()),
                "mean_similarity": float(sims.mean()), "min_similarity": float(sims.min()),
                "p05_similarity": float(np.percentile(sims, 5)), "cutoff": self.cutoff}

    def units(self) -> dict[str, str]:
        return {name: "" for name in self.metrics()}

    def report_data(self, max_points: int = 2000) -> dict[str, Any]:
        """Quantiles of the per-atom similarity (JSON-able), drawn by
        :attr:`figure`."""
        return {"title": f"similarity to {self.training}", "cutoff": self.cutoff,
                "similarity": quantiles(self.similarity.all_atoms(), max_points)}

    def as_dict(self) -> dict[str, Any]:
        return {"training": self.training, "cutoff": self.cutoff, "metrics": self.metrics(),
                "names": list(self.names),
                "outside_fractions": self.outside_fractions.tolist(),
                "mean_similarity": self.similarity.mean.tolist(),
                "min_similarity": self.similarity.min.tolist()}


def check_applicability(structures: Any, train: Any,
                        settings: ApplicabilitySettings | None = None, *,
                        names: Sequence[str] | None = None) -> ApplicabilityResult:
    """Per-atom similarity of a user's ``structures`` to the training set ``train`` (data
    or a :class:`TrainingDomain`) and the fraction of atoms below ``settings.cutoff``
    (default :class:`ApplicabilitySettings`); ``names``: one per structure."""
    settings = ApplicabilitySettings() if settings is None else settings
    domain = training_domain(train, settings.soap)
    similarity = similarity_to_training(structures, domain)
    if names is None:
        names = tuple(f"{i}: {c}" for i, c in enumerate(similarity.config_types))
    elif len(names) != len(similarity):
        raise ValueError(f"{len(names)} names for {len(similarity)} structures")
    return ApplicabilityResult(domain.name, settings.cutoff, similarity, tuple(names))


def assert_applicable(result: ApplicabilityResult, *, max_outside_fraction: float = 0.05,
                      rows: int = 5) -> None:
    """Fail when more than ``max_outside_fraction`` of the atoms are outside the training
    domain; the message names the least covered structures."""
    __tracebackhide__ = True
    if not 0 <= max_outside_fraction <= 1:
        raise ValueError(f"max_outside_fraction must be in [0, 1], got {max_outside_fraction}")
    m = result.metrics()
    if m["outside_fraction"] <= max_outside_fraction:
        return
    lines = [f"{m['outside_fraction']:.1%} of {int(m['n_atoms'])} atoms are outside the "
             f"domain of training set {result.training!r} (per-atom SOAP similarity < "
             f"{result.cutoff}); at most {max_outside_fraction:.1%} allowed", ""]
    lines += format_table(["metric", "value"], [(k, v) for k, v in m.items()])
    lines += ["", "least covered structures:"]
    lines += format_table(["index", "structure", "atoms", "outside", "mean sim", "min sim"],
                          result.least_covered(rows))
    raise MlpvalAssertionError("\n".join(lines))
