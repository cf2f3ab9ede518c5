"""Compare a candidate's property with a reference value, keeping levels of theory apart.

Plain library (no pytest).

The tutorial's rule (Morrow, Gardner and Deringer, J. Chem. Phys. 158, 121501 (2023),
Sec. V): validate a DFT-trained model against its own DFT level first; experiment is
context, and the DFT-vs-experiment difference (the ground truth's own error) is reported
apart from the fit error. Hence:

- :func:`compare` / :func:`assert_property` check one property against one kind of
  reference and flag a comparison across DFT levels (``level_mismatch``: a PBE-trained
  model judged on PW91 numbers) in the result and in the failure message;
- :func:`compare_levels` reports "candidate vs its DFT level" (fit error) and "that DFT
  level vs experiment" (ground-truth error) side by side.

A tolerance passes when ``|candidate - reference| <= max(abs, rel * |reference|)`` (the
rule of ``pytest.approx`` with both given). When the candidate is a result (or a mapping
of metrics) that holds the property's spread over the protocol's finite amplitudes
(``C11_amplitude_spread_GPa``, :func:`~pytest_mlpval.protocols.properties.spread_name`),
the comparison keeps it and its table shows it beside the candidate's value.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.protocols.properties import spread_name
from pytest_mlpval.references import (
    MissingReferenceError,
    ReferenceTable,
    ReferenceValue,
    normalise_kind,
    property_unit,
)

__all__ = ["PropertyComparison", "LevelComparison", "LevelMismatchError", "compare",
           "assert_property", "assert_properties", "compare_levels", "candidate_value",
           "comparison_table", "level_table"]


class LevelMismatchError(MlpvalError, ValueError):
    """``strict_level=True`` and the reference is another DFT level than the training."""


def candidate_value(candidate: Any, property: str, metric: str | None = None) -> float:
    """The candidate's number: ``candidate`` itself, ``candidate.metrics()[metric or
    property]`` for a result object, or ``candidate[metric or property]`` for a mapping of
    metrics. Raises ``KeyError`` naming the metrics available."""
    if hasattr(candidate, "metrics") or isinstance(candidate, Mapping):
        metrics = candidate.metrics() if hasattr(candidate, "metrics") else candidate
        key = metric or property
        if key not in metrics:
            raise KeyError(f"{type(candidate).__name__} has no metric {key!r}; it has "
                           f"{', '.join(sorted(metrics))} (pass metric=... to pick one)")
        return float(metrics[key])
    if isinstance(candidate, bool) or not isinstance(candidate, (int, float)):
        raise TypeError(f"candidate must be a number or a result with metrics(), got "
                        f"{type(candidate).__name__}")
    return float(candidate)


@dataclass(frozen=True)
class PropertyComparison:
    """A candidate's property against one reference value.

    Attributes
    ----------
    property : str
    candidate : float
        In ``unit``.
    reference : ReferenceValue
    unit : str
    difference : float
        ``candidate - reference.value`` in ``unit``.
    relative_difference : float
        ``difference / |reference.value|`` (NaN for a zero reference).
    tolerance : float
        The allowed ``|difference|`` in ``unit``: ``max(abs, rel * |reference|)``.
    rel, abs : float or None
        The tolerances as given.
    passed : bool
    training_level : str or None
        The candidate's training level (``"DFT-PBE"``), when given.
    level_mismatch : bool
        True when the reference is a DFT level other than ``training_level``: the
        difference then mixes the fit error with the difference between functionals.
    amplitude_spread : float
        The candidate's spread over its protocol's finite amplitudes (strains,
        displacements), in ``unit``: its protocol uncertainty; NaN when not measured.
    """

    property: str
    candidate: float
    reference: ReferenceValue
    unit: str
    difference: float
    relative_difference: float
    tolerance: float
    rel: float | None
    abs: float | None
    passed: bool
    training_level: str | None = None
    level_mismatch: bool = False
    amplitude_spread: float = math.nan

    @property
    def against(self) -> str:
        return self.reference.kind

    def metrics(self) -> dict[str, float]:
        """Candidate, reference and difference, in ``unit``."""
        return {self.property: self.candidate,
                f"{self.property}_reference": self.reference.value,
                f"{self.property}_difference": self.difference}

    def units(self) -> dict[str, str]:
        return {k: self.unit for k in self.metrics()}

    def as_dict(self) -> dict[str, Any]:
        return {"property": self.property, "candidate": self.candidate, "unit": self.unit,
                "reference": self.reference.as_dict(), "difference": self.difference,
                "relative_difference": self.relative_difference,
                "tolerance": self.tolerance, "rel": self.rel, "abs": self.abs,
                "passed": self.passed, "training_level": self.training_level,
                "level_mismatch": self.level_mismatch,
                "amplitude_spread": self.amplitude_spread}

    def row(self, spread: bool = False) -> list[Any]:
        """The table row; with ``spread``, the amplitude spread after the candidate."""
        rel = f"{100 * self.relative_difference:+.1f}%" \
            if math.isfinite(self.relative_difference) else "n/a"
        shown = [self.amplitude_spread if math.isfinite(self.amplitude_spread) else "-"] \
            if spread else []
        return [self.property, self.candidate, *shown, self.reference.value, self.unit,
                self.reference.kind + (" (LEVEL MISMATCH)" if self.level_mismatch else ""),
                self.difference, rel, self.tolerance, "ok" if self.passed else "FAIL"]


_HEADERS = ["property", "candidate", "reference", "unit", "against", "difference",
            "rel. diff", "tolerance", "status"]


def _level(kind: str | None) -> str | None:
    return normalise_kind(kind) if kind else None


def compare(candidate: Any, references: ReferenceTable, property: str,
            against: str = "experiment", *, rel: float | None = None,
            abs: float | None = None, training_level: str | None = None,
            metric: str | None = None, temperature_K: float | None = None,
            strict_level: bool = False) -> PropertyComparison:
    """Compare ``candidate`` (a number in the property's unit, or a result object whose
    ``metrics()`` holds ``metric or property``) with the ``against`` reference.

    Give ``rel`` (fraction) and/or ``abs`` (in the property's unit). ``training_level``
    (``"PBE"``) marks a comparison against another DFT level as ``level_mismatch``;
    ``strict_level=True`` refuses it with :class:`LevelMismatchError`. Raises
    :class:`~pytest_mlpval.references.MissingReferenceError` when there is no such
    reference.
    """
    if rel is None and abs is None:
        raise ValueError(f"compare {property!r}: give a tolerance, rel=... (fraction) "
                         f"and/or abs=... (in {property_unit(property) or 'no unit'})")
    for name, tol in (("rel", rel), ("abs", abs)):
        if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0
                                    and math.isfinite(tol)):
            raise ValueError(f"{name}={tol!r} must be a finite number >= 0")
    reference = references.get(property, against, temperature_K=temperature_K)
    level = _level(training_level)
    mismatch = bool(level and level.startswith("DFT-") and reference.kind.startswith("DFT-")
                    and reference.kind != level)
    if mismatch and strict_level:
        raise LevelMismatchError(
            f"{property}: the candidate was trained on {level} but the reference is "
            f"{reference.kind}; compare against {level} (kinds available: "
            f"{', '.join(references.kinds(property))})")
    value = candidate_value(candidate, property, metric)
    diff = value - reference.value
    relative = diff / math.fabs(reference.value) if reference.value != 0 else math.nan
    tolerance = max(abs or 0.0, (rel or 0.0) * math.fabs(reference.value))
    passed = math.isfinite(value) and math.fabs(diff) <= tolerance
    return PropertyComparison(property, value, reference, reference.unit, diff, relative,
                              tolerance, rel, abs, passed, level, mismatch,
                              _amplitude_spread(candidate, metric or property))


def _amplitude_spread(candidate: Any, name: str) -> float:
    """The spread of metric ``name`` over its protocol's amplitudes, when ``candidate``
    (a result or a mapping of metrics) holds it; else NaN."""
    if hasattr(candidate, "metrics") or isinstance(candidate, Mapping):
        metrics = candidate.metrics() if hasattr(candidate, "metrics") else candidate
        return float(metrics.get(spread_name(name), math.nan))
    return math.nan


def comparison_table(comparisons: Sequence[PropertyComparison]) -> list[str]:
    """Plain-text table of comparisons, then each distinct reference source once (with
    the properties it gives) and one line naming any comparison across DFT levels. When
    a candidate's amplitude spread is known, a column after the candidate shows it
    (its protocol uncertainty), with a line saying so."""
    spread = any(math.isfinite(c.amplitude_spread) for c in comparisons)
    headers = _HEADERS[:2] + ["± amplitude"] + _HEADERS[2:] if spread else _HEADERS
    lines = format_table(headers, [c.row(spread) for c in comparisons])
    sources: dict[tuple[str, str, str, str], list[str]] = {}
    for c in comparisons:
        ref = c.reference
        cond = ", ".join(f"{k}={v}" for k, v in ref.conditions.items())
        sources.setdefault((ref.kind, ref.source, cond, ref.confidence), []).append(c.property)
    lines.append("")
    for (kind, source, cond, confidence), names in sources.items():
        lines.append(f"{kind} for {', '.join(names)}: {source}"
                     + (f" [{cond}]" if cond else "")
                     + (f" (confidence {confidence})" if confidence else ""))
    if spread:
        lines.append("± amplitude: the candidate's spread over its protocol's finite "
                     "amplitudes (strains, displacements), in its unit: the protocol "
                     "uncertainty from the roughness of the potential energy surface")
    mismatched = [c for c in comparisons if c.level_mismatch]
    if mismatched:
        levels = sorted({c.reference.kind for c in mismatched})
        lines.append(f"LEVEL MISMATCH: candidate trained on {mismatched[0].training_level}, "
                     f"compared with {', '.join(levels)} for "
                     f"{', '.join(c.property for c in mismatched)}: the difference mixes "
                     "the fit error with the difference between the functionals")
    return lines


def _fail(comparisons: Sequence[PropertyComparison], hint: str | None) -> None:
    failed = [c for c in comparisons if not c.passed]
    first = failed[0]
    head = (f"{len(failed)} of {len(comparisons)} properties outside tolerance: "
            f"{first.property} = {first.candidate:.5g} {first.unit}, {first.reference.kind} "
            f"{first.reference.value:.5g} (difference {first.difference:+.4g}, tolerance "
            f"{first.tolerance:.4g})")
    lines = [head, ""] + comparison_table(comparisons)
    if hint:
        lines += ["", hint]
    raise MlpvalAssertionError("\n".join(lines))


def assert_property(candidate: Any, references: ReferenceTable, property: str,
                    against: str = "experiment", *, rel: float | None = None,
                    abs: float | None = None, training_level: str | None = None,
                    metric: str | None = None, temperature_K: float | None = None,
                    strict_level: bool = False, hint: str | None = None
                    ) -> PropertyComparison:
    """:func:`compare`, raising :class:`MlpvalAssertionError` (a table of candidate,
    reference, source, difference and tolerance) when outside tolerance."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    result = compare(candidate, references, property, against, rel=rel, abs=abs,
                     training_level=training_level, metric=metric,
                     temperature_K=temperature_K, strict_level=strict_level)
    if not result.passed:
        _fail([result], hint)
    return result


def assert_properties(candidate: Any, references: ReferenceTable,
                      tolerances: Mapping[str, Mapping[str, float]],
                      against: str = "experiment", *, training_level: str | None = None,
                      strict_level: bool = False, hint: str | None = None
                      ) -> list[PropertyComparison]:
    """Several properties of one result at once: ``tolerances`` maps property ->
    ``{"rel": ..., "abs": ..., "metric": ...}``; one table lists them all on failure."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    results = [compare(candidate, references, name, against, rel=tol.get("rel"),
                       abs=tol.get("abs"), metric=tol.get("metric"),
                       training_level=training_level, strict_level=strict_level)
               for name, tol in tolerances.items()]
    if not all(r.passed for r in results):
        _fail(results, hint)
    return results


@dataclass(frozen=True)
class LevelComparison:
    """Fit error and ground-truth error of one property, kept apart.

    Attributes
    ----------
    property, unit : str
    candidate : float
    dft : ReferenceValue or None
        The reference at the candidate's training level (None if the table has none).
    experiment : ReferenceValue or None
    fit_error : float
        ``candidate - dft`` (NaN without a DFT reference).
    ground_truth_error : float
        ``dft - experiment``: the training level's own error (NaN if either is missing).
    total_error : float
        ``candidate - experiment`` = fit error + ground-truth error.
    """

    property: str
    unit: str
    candidate: float
    dft: ReferenceValue | None
    experiment: ReferenceValue | None
    fit_error: float
    ground_truth_error: float
    total_error: float

    def metrics(self) -> dict[str, float]:
        return {f"{self.property}_fit_error": self.fit_error,
                f"{self.property}_ground_truth_error": self.ground_truth_error,
                f"{self.property}_total_error": self.total_error}

    def not_measured(self) -> set[str]:
        """The errors that need a reference the table does not have (DFT, experiment)."""
        missing = {"fit_error": self.dft is None, "total_error": self.experiment is None,
                   "ground_truth_error": self.dft is None or self.experiment is None}
        return {f"{self.property}_{k}" for k, gone in missing.items() if gone}

    def units(self) -> dict[str, str]:
        return {k: self.unit for k in self.metrics()}

    def row(self) -> list[Any]:
        nan = math.nan
        return [self.property, self.candidate, self.dft.value if self.dft else nan,
                self.experiment.value if self.experiment else nan, self.unit,
                self.fit_error, self.ground_truth_error, self.total_error]

    def as_dict(self) -> dict[str, Any]:
        return {"property": self.property, "unit": self.unit, "candidate": self.candidate,
                "dft": self.dft.as_dict() if self.dft else None,
                "experiment": self.experiment.as_dict() if self.experiment else None,
                "fit_error": self.fit_error, "ground_truth_error": self.ground_truth_error,
                "total_error": self.total_error}


def compare_levels(candidate: Any, references: ReferenceTable, properties: str | Sequence[str],
                   training_level: str, *, metric: str | None = None
                   ) -> list[LevelComparison]:
    """For each property: candidate vs its DFT level (fit error) and that level vs
    experiment (ground-truth error). Missing references give NaN, not an error, but a
    property with neither reference raises :class:`MissingReferenceError`."""
    if isinstance(properties, str):
        properties = [properties]
    level = normalise_kind(training_level)
    out = []
    for name in properties:
        value = candidate_value(candidate, name, metric)
        found, missing = {}, {}
        for kind in (level, "experiment"):
            try:
                found[kind] = references.get(name, kind)
            except MissingReferenceError as exc:
                found[kind], missing[kind] = None, exc
        if found[level] is None and found["experiment"] is None:
            raise missing[level]
        dft, exp = found[level], found["experiment"]
        fit = value - dft.value if dft else math.nan
        truth = dft.value - exp.value if dft and exp else math.nan
        total = value - exp.value if exp else math.nan
        out.append(LevelComparison(name, property_unit(name), value, dft, exp, fit, truth,
                                   total))
    return out


def level_table(comparisons: Sequence[LevelComparison], training_level: str) -> list[str]:
    """Table: candidate, DFT level, experiment, fit error, ground-truth error."""
    level = normalise_kind(training_level)
    return format_table(["property", "candidate", level, "experiment", "unit",
                         f"fit error (cand-{level})", f"{level} error (vs exp)",
                         "total (cand-exp)"], [c.row() for c in comparisons])
