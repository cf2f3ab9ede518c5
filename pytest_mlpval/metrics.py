"""Error metrics of predictions against reference labels (plain numpy, no pytest).

Every error is *predicted minus reference*. Each quantity is summarised by
:class:`ErrorStats` (RMSE, MAE, max |error|, median and 95th percentile of |error|, count);
medians and percentiles are shown beside RMSE/MAE/max, never alone.

Quantities and units (the metric names are ``<quantity>_<stat>``, e.g. ``force_rmse``):

===========================  ==============  ==================================================
quantity                     unit            definition
===========================  ==============  ==================================================
``energy``                   eV/atom         per-cell energy error divided by N
``energy_offset_removed``    eV/atom         the same, minus the per-element offsets fitted on
                                             the whole dataset (different energy zeros, e.g.
                                             isolated-atom references): see below
``energy_cell``              eV              per-cell energy error (grows with N)
``energy_sqrtn``             eV/atom^0.5     per-cell error divided by sqrt(N): size-independent
``force``                    eV/Å            Cartesian force components (3 per atom)
``force_magnitude``          eV/Å            |F_pred| - |F_ref| per atom
``force_angle``              degree          angle between F_pred and F_ref, for atoms with
                                             |F_ref| >= ``angle_min_force_eV_A``
``stress``                   GPa             the 6 Voigt components per structure
===========================  ==============  ==================================================

``energy_offset`` (eV/atom) is the mean signed per-atom energy error, reported on its own.

**Per-element offsets.** Models and references often differ by one energy per element
(their isolated-atom energies). :func:`fit_element_offsets` fits one offset mu_El per
element by least squares on the compositions: it minimises, over the structures with a
finite error, sum_s (e_s - sum_El x_s,El mu_El)^2, with e_s the per-atom energy error and
x_s,El = n_s,El / N_s the fraction of element El in structure s (each structure weighs the
same, as in the mean). ``energy_offset_removed`` is e_s minus that fit, so with one element
mu is the mean of the finite errors and the number is today's mean-removed one. Where the
compositions do not determine every offset (every structure of the same stoichiometry,
an element always with the same partner fraction), the fit is the minimum-norm solution
(``numpy.linalg.lstsq``): the residual is still the least-squares one, the split between
those elements is a convention (``ErrorReport.offsets_determined`` is false). With two or
more elements the fitted offsets are reported as ``energy_offset_<El>`` (eV/atom; NaN, like
``energy_offset``, when an energy error is not finite; with one element it would be
``energy_offset`` itself). A ``config_type`` subset keeps the dataset's offsets.

**Per element forces.** With two or more elements in the dataset, the force components of
each element's atoms are summarised too: ``force_rmse_<El>``, ``force_mae_<El>``,
``force_max_<El>`` (eV/Å).

Nothing is dropped from a sample except by an explicit, counted exclusion: the angles of
atoms whose reference force is below ``angle_min_force_eV_A`` (or whose predicted force is
zero) are not defined and are left out of ``force_angle`` (``ErrorStats.n_excluded``). Any
other NaN or inf error makes every statistic of its quantity NaN
(``ErrorStats.n_nonfinite`` > 0), which fails every threshold on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import math

import numpy as np

from pytest_mlpval.data import readonly_array
from pytest_mlpval.units import EV_PER_A3_TO_GPA

__all__ = [
    "ELEMENT_FORCE_STATS",
    "EV_PER_A3_TO_GPA",
    "ErrorReport",
    "ErrorStats",
    "QUANTITIES",
    "STATS",
    "compute_errors",
    "fit_element_offsets",
    "is_offset_metric",
    "metric_unit",
    "split_element",
]


QUANTITIES: dict[str, str] = {
    "energy": "eV/atom",
    "energy_offset_removed": "eV/atom",
    "energy_cell": "eV",
    "energy_sqrtn": "eV/atom^0.5",
    "force": "eV/Å",
    "force_magnitude": "eV/Å",
    "force_angle": "degree",
    "stress": "GPa",
}
STATS = ("rmse", "mae", "max", "median", "p95")
#: the statistics of the per-element force errors (``force_rmse_Si``)
ELEMENT_FORCE_STATS = ("rmse", "mae", "max")


def _is_element(symbol: str) -> bool:
    from ase.data import atomic_numbers

    return symbol in atomic_numbers and symbol != "X"


def split_element(name: str) -> tuple[str, str | None]:
    """``("force_rmse", "Si")`` for ``force_rmse_Si``, ``("energy_offset", "O")`` for
    ``energy_offset_O``; ``(name, None)`` for a metric of the whole sample."""
    head, _, tail = name.rpartition("_")
    if head and _is_element(tail) and (
            head == "energy_offset"
            or head in {f"force_{stat}" for stat in ELEMENT_FORCE_STATS}):
        return head, tail
    return name, None


def is_offset_metric(name: str) -> bool:
    """``energy_offset`` or ``energy_offset_<El>``: signed, compared by absolute value."""
    return split_element(name)[0] == "energy_offset"


def metric_unit(name: str) -> str:
    """Unit of a metric name such as ``force_rmse``, ``energy_offset``, ``force_mae_O``
    or ``energy_offset_Si``."""
    name = split_element(name)[0]
    if name == "energy_offset":
        return "eV/atom"
    quantity, _, stat = name.rpartition("_")
    if quantity in QUANTITIES and stat in STATS:
        return QUANTITIES[quantity]
    raise KeyError(name)


def fit_element_offsets(fractions: np.ndarray, energy_error: np.ndarray
                        ) -> tuple[np.ndarray, bool]:
    """Per-element energy offsets (eV/atom) fitted to per-atom energy errors.

    Parameters
    ----------
    fractions : ndarray, shape (n_structures, n_elements)
        Fraction of each element in each structure (rows sum to 1).
    energy_error : ndarray, shape (n_structures,), eV/atom
        Signed errors; the structures with a non-finite error are left out of the fit.

    Returns
    -------
    offsets : ndarray, shape (n_elements,), eV/atom
        The least-squares fit (minimum norm where it is not unique); NaN with no finite
        error to fit.
    determined : bool
        Whether the compositions of the fitted structures determine every offset (the
        fraction matrix has full column rank).
    """
    fractions = np.asarray(fractions, dtype=float)
    energy_error = np.asarray(energy_error, dtype=float)
    keep = np.isfinite(energy_error)
    n_elements = fractions.shape[1]
    if not keep.any():
        return np.full(n_elements, np.nan), False
    a, b = fractions[keep], energy_error[keep]
    offsets, _, rank, _ = np.linalg.lstsq(a, b, rcond=None)
    if n_elements == 1:  # the mean itself, not a round-off of it (today's number)
        offsets = np.array([float(np.mean(b))])
    return offsets, bool(rank == n_elements)


@dataclass(frozen=True)
class ErrorStats:
    """Summary of an error sample. ``max``, ``median`` and ``p95`` are of |error|.

    ``n`` counts the errors summarised, ``n_excluded`` those left out on purpose (the
    ``excluded`` mask of :meth:`of`), ``n_nonfinite`` the NaN or inf errors among the
    ``n``: when it is not 0 every statistic is NaN (a sample is never shrunk silently).
    """

    rmse: float
    mae: float
    max: float
    median: float
    p95: float
    n: int
    unit: str
    n_excluded: int = 0
    n_nonfinite: int = 0

    @classmethod
    def of(cls, errors: np.ndarray, unit: str, excluded: np.ndarray | None = None
           ) -> "ErrorStats":
        """Statistics of ``errors`` less the entries where ``excluded`` (a boolean mask
        of the same size) is true."""
        errors = np.asarray(errors, dtype=float).ravel()
        n_excluded = 0
        if excluded is not None:
            excluded = np.asarray(excluded, dtype=bool).ravel()
            n_excluded = int(excluded.sum())
            errors = errors[~excluded]
        n_nonfinite = int(np.sum(~np.isfinite(errors)))
        if errors.size == 0 or n_nonfinite:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, int(errors.size), unit, n_excluded,
                       n_nonfinite)
        absolute = np.abs(errors)
        return cls(
            rmse=float(np.sqrt(np.mean(errors**2))),
            mae=float(np.mean(absolute)),
            max=float(np.max(absolute)),
            median=float(np.median(absolute)),
            p95=float(np.percentile(absolute, 95)),
            n=int(errors.size),
            unit=unit,
            n_excluded=n_excluded,
        )


@dataclass(frozen=True)
class ErrorReport:
    """Errors of one potential on one dataset (or a config_type subset of it).

    Per-structure arrays are indexed like ``indices`` (positions in the dataset).

    Attributes
    ----------
    dataset, subset : str
        ``subset`` is ``"all"`` or a config_type.
    indices : ndarray of int, shape (n,)
    config_types : tuple of str, length n
    n_atoms : ndarray of int, shape (n,)
    energy_error : ndarray, shape (n,), eV/atom (signed), or None
    energy_offset : float
        Mean signed per-atom energy error over the **whole** dataset (eV/atom), NaN
        without energies; subsets keep the dataset's offset.
    force_error : tuple of ndarray (n_atoms_i, 3) in eV/Å, or None
    force_magnitude_error, force_angle_deg : tuple of ndarray (n_atoms_i,), or None
        ``force_angle_deg`` is NaN where the angle is excluded.
    stress_error_GPa : ndarray (n, 6), or None
    force_angle_excluded : tuple of bool ndarray (n_atoms_i,), or None
        Atoms left out of ``force_angle``: reference force below
        ``angle_min_force_eV_A`` or zero predicted force (both finite). Without it, NaN
        angles are taken as excluded.
    missing_labels : mapping label -> str
        Why ``energy``, ``forces`` or ``stress`` errors are absent (no labels under the
        key looked for, with the keys the file has; or not predicted).
    stats : mapping quantity -> ErrorStats
    numbers : tuple of int ndarray (n_atoms_i,), or None
        Atomic numbers of each structure's atoms (None: composition unknown, one offset).
    species : tuple of str
        The elements of the whole dataset, by atomic number; subsets keep them.
    element_offsets : mapping element -> float
        Per-element energy offsets (eV/atom) fitted on the whole dataset's finite energy
        errors (:func:`fit_element_offsets`); subsets keep them.
    offsets_determined : bool
        False where the compositions do not determine every offset (minimum-norm fit).
    force_by_element : mapping element -> ErrorStats
        Force-component errors of each element's atoms, with 2+ species in the dataset.
    """

    dataset: str
    subset: str
    indices: np.ndarray
    config_types: tuple[str, ...]
    n_atoms: np.ndarray
    energy_error: np.ndarray | None
    energy_offset: float
    force_error: tuple[np.ndarray, ...] | None
    force_magnitude_error: tuple[np.ndarray, ...] | None
    force_angle_deg: tuple[np.ndarray, ...] | None
    stress_error_GPa: np.ndarray | None
    angle_min_force_eV_A: float = 0.1
    force_angle_excluded: tuple[np.ndarray, ...] | None = None
    missing_labels: Mapping[str, str] = field(default_factory=dict)
    stats: Mapping[str, ErrorStats] = field(default_factory=dict)
    numbers: tuple[np.ndarray, ...] | None = None
    species: tuple[str, ...] = ()
    element_offsets: Mapping[str, float] = field(default_factory=dict)
    offsets_determined: bool = True
    force_by_element: Mapping[str, ErrorStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stats:
            object.__setattr__(self, "stats", self._compute_stats())
        if not self.force_by_element and len(self.species) > 1:
            object.__setattr__(self, "force_by_element", self._force_by_element())

    def _force_by_element(self) -> dict[str, ErrorStats]:
        if self.force_error is None or self.numbers is None:
            return {}
        from ase.data import atomic_numbers

        errors = _cat(self.force_error).reshape(-1, 3)
        numbers = _cat(self.numbers).astype(int)
        return {el: ErrorStats.of(errors[numbers == atomic_numbers[el]], "eV/Å")
                for el in self.species if np.any(numbers == atomic_numbers[el])}

    def _compute_stats(self) -> dict[str, ErrorStats]:
        stats: dict[str, ErrorStats] = {}
        if self.energy_error is not None:
            e = self.energy_error
            stats["energy"] = ErrorStats.of(e, QUANTITIES["energy"])
            stats["energy_offset_removed"] = ErrorStats.of(
                e - self._removed_offset(), QUANTITIES["energy_offset_removed"])
            stats["energy_cell"] = ErrorStats.of(e * self.n_atoms, QUANTITIES["energy_cell"])
            stats["energy_sqrtn"] = ErrorStats.of(
                e * np.sqrt(self.n_atoms), QUANTITIES["energy_sqrtn"])
        if self.force_error is not None:
            stats["force"] = ErrorStats.of(_cat(self.force_error), "eV/Å")
            stats["force_magnitude"] = ErrorStats.of(_cat(self.force_magnitude_error), "eV/Å")
            stats["force_angle"] = ErrorStats.of(_cat(self.force_angle_deg), "degree",
                                                 _cat(self._angle_excluded()))
        if self.stress_error_GPa is not None:
            stats["stress"] = ErrorStats.of(self.stress_error_GPa, "GPa")
        return stats

    def _angle_excluded(self) -> tuple[np.ndarray, ...] | None:
        if self.force_angle_deg is None:
            return None
        if self.force_angle_excluded is not None:
            return self.force_angle_excluded
        return tuple(np.isnan(a) for a in self.force_angle_deg)

    def _removed_offset(self) -> float | np.ndarray:
        """The offset removed by ``energy_offset_removed``, per structure: the fitted
        per-element offsets weighted by each structure's composition; without a
        composition ``energy_offset``, or where that is not finite the mean of the finite
        errors, so that only the structures with non-finite errors are non-finite there."""
        if self.element_offsets and self.numbers is not None:
            return _fractions(self.numbers, self.species) @ np.array(
                [self.element_offsets[el] for el in self.species])
        if math.isfinite(self.energy_offset) or self.energy_error is None:
            return self.energy_offset
        finite = self.energy_error[np.isfinite(self.energy_error)]
        return float(np.mean(finite)) if finite.size else float("nan")

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def config_type_names(self) -> list[str]:
        return sorted(set(self.config_types))

    def subset_by_config_type(self, config_type: str) -> "ErrorReport":
        """The errors of the structures of one config_type (KeyError if absent)."""
        keep = [i for i, c in enumerate(self.config_types) if c == config_type]
        if not keep:
            raise KeyError(
                f"config_type {config_type!r} not in dataset {self.dataset!r} "
                f"(has: {', '.join(self.config_type_names)})")
        return self._take(keep, config_type)

    @property
    def by_config_type(self) -> dict[str, "ErrorReport"]:
        return {c: self.subset_by_config_type(c) for c in self.config_type_names}

    def _take(self, keep: Sequence[int], subset: str) -> "ErrorReport":
        def pick(seq):
            return None if seq is None else tuple(seq[i] for i in keep)

        idx = np.asarray(keep, dtype=int)
        return replace(
            self,
            subset=subset,
            indices=self.indices[idx],
            config_types=tuple(self.config_types[i] for i in keep),
            n_atoms=self.n_atoms[idx],
            energy_error=None if self.energy_error is None else self.energy_error[idx],
            force_error=pick(self.force_error),
            force_magnitude_error=pick(self.force_magnitude_error),
            force_angle_deg=pick(self.force_angle_deg),
            force_angle_excluded=pick(self.force_angle_excluded),
            numbers=pick(self.numbers),
            force_by_element={},
            stress_error_GPa=None if self.stress_error_GPa is None
            else self.stress_error_GPa[idx],
            stats={},
        )

    def metrics(self) -> dict[str, float]:
        """Flat ``{metric name: value}`` in the units of :data:`QUANTITIES`."""
        out: dict[str, float] = {}
        for quantity, s in self.stats.items():
            for stat in STATS:
                out[f"{quantity}_{stat}"] = getattr(s, stat)
        if self.energy_error is not None:
            out["energy_offset"] = self.energy_offset
            if len(self.element_offsets) > 1:
                # NaN like energy_offset when an error is not finite: a fault shows
                nan = not math.isfinite(self.energy_offset)
                for el, mu in self.element_offsets.items():
                    out[f"energy_offset_{el}"] = float("nan") if nan else float(mu)
        for el, s in self.force_by_element.items():
            for stat in ELEMENT_FORCE_STATS:
                out[f"force_{stat}_{el}"] = getattr(s, stat)
        return out

    def not_measured(self) -> list[str]:
        """Metric names that are NaN because no error was counted (every force angle
        excluded), not because of a NaN or inf error: a gap, not a fault."""
        return [f"{quantity}_{stat}" for quantity, s in self.stats.items()
                if s.n == 0 and not s.n_nonfinite for stat in STATS]

    def _per_structure_errors(self, quantity: str) -> list[np.ndarray]:
        """The errors of each structure that count for ``quantity`` (exclusions removed)."""
        if quantity.startswith("energy"):
            if self.energy_error is None or quantity not in QUANTITIES:
                raise KeyError(quantity)
            scale = {"energy": 1.0, "energy_offset_removed": 1.0,
                     "energy_cell": self.n_atoms, "energy_sqrtn": np.sqrt(self.n_atoms)}
            shift = self._removed_offset() if quantity == "energy_offset_removed" else 0.0
            values = (self.energy_error - shift) * scale[quantity]
            return [np.atleast_1d(v) for v in values]
        if quantity == "force_angle" and self.force_angle_deg is not None:
            return [a[~x] for a, x in zip(self.force_angle_deg, self._angle_excluded())]
        source = {"force": self.force_error,
                  "force_magnitude": self.force_magnitude_error}.get(quantity)
        if source is not None:
            return list(source)
        if quantity == "stress" and self.stress_error_GPa is not None:
            return list(self.stress_error_GPa)
        raise KeyError(quantity)

    def per_structure(self, quantity: str) -> np.ndarray:
        """One error per structure for ranking the worst: |per-atom energy error|,
        force-component RMSE, stress RMSE (GPa) ... in the quantity's unit. NaN for a
        structure with NaN errors, or none counted (all its angles excluded)."""
        return np.array([np.sqrt(np.mean(np.square(a))) if a.size else np.nan
                         for a in self._per_structure_errors(quantity)])

    def nonfinite_structures(self, quantity: str) -> np.ndarray:
        """Dataset indices of the structures with a NaN or inf error of ``quantity``."""
        bad = [not np.all(np.isfinite(a)) for a in self._per_structure_errors(quantity)]
        return self.indices[np.asarray(bad, dtype=bool)]

    def worst(self, quantity: str, k: int = 5) -> list[tuple[int, str, int, float]]:
        """The ``k`` structures with the largest error: (dataset index, config_type,
        atoms, error); structures with NaN or inf errors first, those with no error
        counted (NaN, all angles excluded) last."""
        values = self.per_structure(quantity)
        bad = np.isin(self.indices, self.nonfinite_structures(quantity))
        rank = np.where(bad, np.inf, np.nan_to_num(values, nan=-np.inf, posinf=np.inf))
        order = np.lexsort((-rank, ~bad))[:k]
        return [(int(self.indices[i]), self.config_types[i], int(self.n_atoms[i]),
                 float(values[i])) for i in order]


def _cat(arrays: Sequence[np.ndarray] | None) -> np.ndarray:
    if not arrays:
        return np.empty(0)
    return np.concatenate([np.ravel(a) for a in arrays])


def _fractions(numbers: Sequence[np.ndarray], species: Sequence[str]) -> np.ndarray:
    """Fraction of each of ``species`` in each structure, shape (n_structures, n_species)."""
    from ase.data import atomic_numbers

    z = np.array([atomic_numbers[el] for el in species])
    return np.array([[np.mean(np.asarray(n) == zi) for zi in z] for n in numbers],
                    dtype=float).reshape(len(numbers), len(z))


def _composition(reference: Any) -> tuple[tuple[np.ndarray, ...] | None, tuple[str, ...]]:
    """Atomic numbers of each structure and the dataset's elements (by atomic number)."""
    from ase.data import chemical_symbols

    structures = getattr(reference, "structures", None)
    if structures is None:
        return None, ()
    numbers = []
    for atoms in structures:
        z = np.array(atoms.numbers, dtype=int)
        z.flags.writeable = False
        numbers.append(z)
    present = sorted(set(np.concatenate(numbers).tolist())) if numbers else []
    return tuple(numbers), tuple(chemical_symbols[z] for z in present)


def compute_errors(reference: Any, predictions: Any, angle_min_force_eV_A: float = 0.1
                   ) -> ErrorReport:
    """Errors of ``predictions`` (:class:`~pytest_mlpval.evaluate.Predictions`) against
    ``reference`` (:class:`~pytest_mlpval.data.ReferenceSet`), for every label both have.
    """
    n_atoms = np.asarray(reference.n_atoms, dtype=int)
    energy_error = None
    offset = float("nan")
    if predictions.energy is not None and reference.energy is not None:
        energy_error = readonly_array((predictions.energy - reference.energy) / n_atoms)
        offset = float(np.mean(energy_error))
    force_error = magnitude = angle = excluded = None
    if predictions.forces is not None and reference.forces is not None:
        force_error, magnitude, angle, excluded = [], [], [], []
        for pred, ref in zip(predictions.forces, reference.forces):
            with np.errstate(invalid="ignore"):  # inf forces: NaN errors, counted
                force_error.append(readonly_array(pred - ref))
                p_norm, r_norm = np.linalg.norm(pred, axis=1), np.linalg.norm(ref, axis=1)
                magnitude.append(readonly_array(p_norm - r_norm))
                # atan2(|p x r|, p.r): exact for nearly parallel forces, where arccos of
                # the cosine is float noise (~1e-6 degree), which baselines would compare
                deg = np.degrees(np.arctan2(np.linalg.norm(np.cross(pred, ref), axis=1),
                                            np.einsum("ij,ij->i", pred, ref)))
            # undefined angles, excluded and counted; a NaN or inf force never is
            skip = ((r_norm < angle_min_force_eV_A) | (p_norm == 0.0)) & np.isfinite(
                p_norm) & np.isfinite(r_norm)
            deg[skip] = np.nan
            skip.flags.writeable = False
            angle.append(readonly_array(deg))
            excluded.append(skip)
        force_error, magnitude, angle = tuple(force_error), tuple(magnitude), tuple(angle)
        excluded = tuple(excluded)
    stress_error = None
    if predictions.stress is not None and reference.stress is not None:
        stress_error = readonly_array((predictions.stress - reference.stress) * EV_PER_A3_TO_GPA)
    missing = _missing_labels(reference, predictions)
    if energy_error is None and force_error is None and stress_error is None:
        raise ValueError(
            f"no label of dataset {reference.name!r} ({', '.join(reference.labels) or 'none'}) "
            "was predicted: nothing to compare"
            + "".join(f"\n  {label}: {why}" for label, why in missing.items()))
    indices = np.arange(len(n_atoms))
    indices.flags.writeable = False
    numbers, species = _composition(reference)
    if numbers is not None and len(numbers) != len(n_atoms):
        numbers, species = None, ()
    element_offsets: dict[str, float] = {}
    determined = True
    if energy_error is not None and numbers is not None and species:
        fitted, determined = fit_element_offsets(_fractions(numbers, species), energy_error)
        element_offsets = {el: float(mu) for el, mu in zip(species, fitted)}
    return ErrorReport(
        dataset=reference.name, subset="all", indices=indices,
        config_types=tuple(reference.config_types), n_atoms=n_atoms,
        energy_error=energy_error, energy_offset=offset, force_error=force_error,
        force_magnitude_error=magnitude, force_angle_deg=angle,
        stress_error_GPa=stress_error, angle_min_force_eV_A=angle_min_force_eV_A,
        force_angle_excluded=excluded, missing_labels=missing, numbers=numbers,
        species=species, element_offsets=element_offsets, offsets_determined=determined,
    )


def _missing_labels(reference: Any, predictions: Any) -> dict[str, str]:
    """Why each of energy, forces, stress has no errors (absent labels or predictions)."""
    spec = getattr(reference, "spec", None)
    keys = spec.key_map if spec is not None else {}
    hint = reference.keys_hint() if hasattr(reference, "keys_hint") else ""
    missing = {}
    for label in ("energy", "forces", "stress"):
        if getattr(reference, label, None) is None:
            where = (f"key {keys[label]!r}" if label != "stress" else
                     f"keys {keys['stress']!r} and {keys['virial']!r} (virial)") if keys else ""
            missing[label] = (f"dataset {reference.name!r} has no {label} labels"
                              + (f" under {where}" if where else "") + hint)
        elif getattr(predictions, label, None) is None:
            missing[label] = f"no {label} was predicted (not implemented by the potential?)"
    return missing
