"""What a compression run ended as, and assertions on it.

Plain library (no pytest). The outcomes the tutorial asks a test to tell apart (Morrow,
Gardner and Deringer, J. Chem. Phys. 158, 121501 (2023), Sec. V and Fig. 7):

=====================  ===============================================================
outcome                meaning
=====================  ===============================================================
``crystallised``       at the end, at least ``min_fraction`` of the atoms are similar
                       (SOAP similarity above the run's cutoff) to one reference crystal;
                       ``phase`` says which (for Si the expected one is sh)
``amorphous``          stayed low-density amorphous: mean coordination below
                       ``collapse_coordination`` (a "false maximum", e.g. Stillinger-Weber)
``dense_amorphous``    collapsed (mean coordination >= ``collapse_coordination``) but
                       neither crystallised nor reached ``high_coordination``: the very-
                       high-density amorphous state before crystallisation (a ramp too
                       fast or a cell too small to crystallise)
``high_coordination``  disordered with mean coordination >= ``high_coordination`` (10):
                       a "false minimum", unphysical
``unstable``           atoms overlapped, energy, force or temperature exploded, NaN, or the
                       calculator raised (:data:`~pytest_mlpval.protocols.md.INSTABILITIES`)
``incomplete``         cut short by the wall-time limit (or not run): nothing is claimed
=====================  ===============================================================
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.protocols.compression.settings import atom_key
from pytest_mlpval.protocols.md import COMPLETED, CUT_SHORT, UNSTABLE, MDParameterError

__all__ = ["OUTCOMES", "OutcomeThresholds", "CompressionOutcome", "classify_frames",
           "classify_result", "assert_crystallizes", "assert_no_false_minimum",
           "assert_no_false_maximum", "frames_table"]

OUTCOMES = ("crystallised", "amorphous", "dense_amorphous", "high_coordination", "unstable",
            "incomplete")


@dataclass(frozen=True)
class OutcomeThresholds:
    """Thresholds of the classification.

    Attributes
    ----------
    min_fraction : float
        Crystallised when the fraction of atoms like one reference reaches this (0.5).
    onset_fraction : float or None
        The onset is the first frame from which the expected phase's fraction stays at or
        above this; ``None``: half of ``min_fraction``.
    high_coordination : float
        Mean coordination of a false minimum (10; sh has 8, the liquid about 6).
    collapse_coordination : float
        Mean coordination above which the amorphous structure has collapsed (5.5: a-Si
        has 4, the dense amorphous and liquid states 6 and more).
    final_frames : int
        Frames at the end averaged for the final state.
    pressure_tolerance_GPa, pressure_tolerance_fraction : float
        The target pressure counts as reached when the mean measured pressure of the
        final frames is within max(tolerance, fraction x |target|) of it.
    adjusted : bool
        Use the pressure-adjusted references (else the ambient, fixed ones).
    """

    min_fraction: float = 0.5
    onset_fraction: float | None = None
    high_coordination: float = 10.0
    collapse_coordination: float = 5.5
    final_frames: int = 3
    pressure_tolerance_GPa: float = 2.0
    pressure_tolerance_fraction: float = 0.1
    adjusted: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.min_fraction <= 1:
            raise MDParameterError(f"min_fraction must be in (0, 1], got {self.min_fraction!r}")
        if self.onset_fraction is not None and not 0 < self.onset_fraction <= 1:
            raise MDParameterError(f"onset_fraction must be in (0, 1], got "
                                   f"{self.onset_fraction!r}")
        for name in ("high_coordination", "collapse_coordination", "pressure_tolerance_GPa",
                     "pressure_tolerance_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise MDParameterError(f"{name} must be a finite number >= 0, got {value!r}")
        if int(self.final_frames) != self.final_frames or self.final_frames < 1:
            raise MDParameterError(f"final_frames must be an integer >= 1, got "
                                   f"{self.final_frames!r}")

    @property
    def onset(self) -> float:
        return self.min_fraction / 2 if self.onset_fraction is None else self.onset_fraction


@dataclass(frozen=True)
class CompressionOutcome:
    """The classified end of a compression run. Pressures in GPa; NaN where undefined.

    Attributes
    ----------
    outcome : str
        One of :data:`OUTCOMES`.
    phase : str or None
        The crystal it crystallised into.
    expected_phase : str
    fraction : float
        Final fraction of atoms like the expected phase.
    fractions : mapping of str to float
        Final fraction per reference.
    onset_pressure_GPa : float
        Target pressure of the frame from which the expected phase's fraction stays at or
        above the onset fraction.
    collapse_pressure_GPa : float
        Target pressure of the frame from which the mean coordination stays at or above
        ``collapse_coordination``.
    mean_coordination : float
        Final mean coordination.
    final_pressure_GPa, target_pressure_GPa : float
    target_reached : bool
    final_volume_per_atom_A3 : float
    status : str
        Of the run: ``completed``, ``unstable`` or ``cut_short``.
    instability, message : str or None
    reason : str
        One sentence: why this outcome.
    thresholds : OutcomeThresholds
    """

    outcome: str
    phase: str | None
    expected_phase: str
    fraction: float
    fractions: Mapping[str, float]
    onset_pressure_GPa: float
    collapse_pressure_GPa: float
    mean_coordination: float
    final_pressure_GPa: float
    target_pressure_GPa: float
    target_reached: bool
    final_volume_per_atom_A3: float
    status: str
    instability: str | None
    message: str | None
    reason: str
    thresholds: OutcomeThresholds = field(default_factory=OutcomeThresholds)

    def metrics(self) -> dict[str, float]:
        out = {"crystalline_fraction": self.fraction,
               "onset_pressure_GPa": self.onset_pressure_GPa,
               "collapse_pressure_GPa": self.collapse_pressure_GPa,
               "mean_coordination": self.mean_coordination,
               "final_pressure_GPa": self.final_pressure_GPa,
               "final_volume_per_atom_A3": self.final_volume_per_atom_A3,
               "target_reached": float(self.target_reached),
               "crystallised": float(self.outcome == "crystallised"
                                     and self.phase == self.expected_phase),
               "unstable": float(self.outcome == "unstable"),
               "cut_short": float(self.status == CUT_SHORT)}
        out.update({f"{k}_fraction": v for k, v in self.fractions.items()})
        return out

    def not_measured(self) -> set[str]:
        """The onset and collapse pressures of a run that completed without reaching
        them (no onset of the expected phase, no collapse: what the outcome says). Every
        metric of an unstable or incomplete run, and a fraction that could not be
        measured (a reference the candidate could not relax), is a fault, not a gap."""
        if self.outcome in ("unstable", "incomplete") or self.status != COMPLETED:
            return set()
        return {name for name in ("onset_pressure_GPa", "collapse_pressure_GPa")
                if math.isnan(getattr(self, name))}

    def units(self) -> dict[str, str]:
        return {k: "GPa" if k.endswith("_GPa") else "Å^3/atom" if k.endswith("_A3") else ""
                for k in self.metrics()}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fractions"] = dict(self.fractions)
        return data


def _phase_keys(frames: Sequence[Any]) -> list[str]:
    keys = frames[0].analysis.keys() if frames else ()
    return [k[: -len("_fraction")] for k in keys
            if k.endswith("_fraction") and not k.startswith("coordination")]


def _fraction(frame: Any, key: str, adjusted: bool) -> float:
    value = frame.analysis.get(f"{key}_fraction", math.nan) if adjusted else math.nan
    if not math.isfinite(value):
        value = frame.analysis.get(f"{key}_fraction_fixed", math.nan)
    return float(value)


def _stays_from(values: Sequence[float], threshold: float) -> int | None:
    """First index from which every value is >= threshold."""
    first = None
    for i, v in enumerate(values):
        if v >= threshold:
            first = i if first is None else first
        else:
            first = None
    return first


def _pressure(frame: Any) -> float:
    return frame.target_pressure_GPa if math.isfinite(frame.target_pressure_GPa) \
        else frame.pressure_GPa


def classify_frames(frames: Sequence[Any], *, expected_phase: str = "sh",
                    status: str = COMPLETED, instability: str | None = None,
                    message: str | None = None, target_pressure_GPa: float | None = None,
                    thresholds: OutcomeThresholds | None = None, **overrides: Any
                    ) -> CompressionOutcome:
    """Classify a compression from its frames (:class:`~pytest_mlpval.protocols.md.MDFrame`
    with the analysis of :class:`~pytest_mlpval.protocols.compression.settings.
    CompressionAnalyser`: ``coordination_mean`` and ``<phase>_fraction`` /
    ``<phase>_fraction_fixed`` per reference).

    ``overrides`` replace fields of ``thresholds``.
    """
    t = replace(thresholds or OutcomeThresholds(), **overrides)
    nan = math.nan
    expected = atom_key(expected_phase)
    frames = list(frames)
    empty = dict(phase=None, expected_phase=expected_phase, fraction=nan, fractions={},
                 onset_pressure_GPa=nan, collapse_pressure_GPa=nan, mean_coordination=nan,
                 final_pressure_GPa=nan,
                 target_pressure_GPa=nan if target_pressure_GPa is None
                 else float(target_pressure_GPa),
                 target_reached=False, final_volume_per_atom_A3=nan, status=status,
                 instability=instability, message=message, thresholds=t)
    if status == UNSTABLE:
        return CompressionOutcome("unstable", **{**empty, "reason": f"unstable MD "
                                  f"({instability}): {message}"})
    if status == CUT_SHORT or not frames:
        why = message or "no frames were recorded"
        return CompressionOutcome("incomplete", **{**empty, "reason": f"incomplete: {why}"})
    phases = _phase_keys(frames)
    if expected not in phases:
        raise MDParameterError(f"expected_phase {expected_phase!r} has no similarity in the "
                               f"frames (references: {phases})")
    final = frames[-t.final_frames:]
    fractions = {k: float(np.mean([_fraction(f, k, t.adjusted) for f in final]))
                 for k in phases}
    coord = [f.analysis["coordination_mean"] for f in frames]
    mean_coord = float(np.mean(coord[-t.final_frames:]))
    final_p = float(np.nanmean([f.pressure_GPa for f in final]))
    target = float(_pressure(frames[-1]) if target_pressure_GPa is None else target_pressure_GPa)
    reached = bool(abs(final_p - target) <= max(t.pressure_tolerance_GPa,
                                                 t.pressure_tolerance_fraction * abs(target)))
    onset_i = _stays_from([_fraction(f, expected, t.adjusted) for f in frames], t.onset)
    collapse_i = _stays_from(coord, t.collapse_coordination)
    best = max(phases, key=lambda k: (np.nan_to_num(fractions[k], nan=-1.0), k == expected))
    values = dict(empty, fraction=fractions[expected], fractions=fractions,
                  onset_pressure_GPa=nan if onset_i is None else _pressure(frames[onset_i]),
                  collapse_pressure_GPa=nan if collapse_i is None
                  else _pressure(frames[collapse_i]),
                  mean_coordination=mean_coord, final_pressure_GPa=final_p,
                  target_pressure_GPa=target, target_reached=reached,
                  final_volume_per_atom_A3=float(np.mean([f.volume_per_atom_A3
                                                          for f in final])))
    at = f"at {final_p:.3g} GPa (target {target:.3g} GPa{'' if reached else ', NOT reached'})"
    if fractions[best] >= t.min_fraction:
        return CompressionOutcome("crystallised", **{
            **values, "phase": best,
            "reason": f"{fractions[best]:.0%} of the atoms are like {best} {at} "
                      f"(threshold {t.min_fraction:.0%})"})
    like = f"at most {fractions[best]:.0%} of the atoms like any reference ({best})"
    if mean_coord >= t.high_coordination:
        outcome, what = "high_coordination", (f"disordered with mean coordination "
                                              f"{mean_coord:.2f} >= {t.high_coordination:g}")
    elif mean_coord >= t.collapse_coordination:
        outcome, what = "dense_amorphous", (f"collapsed (mean coordination {mean_coord:.2f} "
                                            f">= {t.collapse_coordination:g}) but disordered")
    else:
        outcome, what = "amorphous", (f"low-density amorphous (mean coordination "
                                      f"{mean_coord:.2f} < {t.collapse_coordination:g})")
    return CompressionOutcome(outcome, **{**values, "reason": f"{what} {at}; {like}"})


def classify_result(result: Any, **thresholds: Any) -> CompressionOutcome:
    """Classify a :class:`~pytest_mlpval.protocols.compression.run.CompressionResult`
    (its settings, records and error)."""
    expected = result.settings.expected_phase
    prep, comp = result.preparation, result.compression
    if result.error is not None:
        unstable = result.error.startswith(UNSTABLE)
        return classify_frames([], expected_phase=expected,
                               status=UNSTABLE if unstable else CUT_SHORT,
                               instability="error" if unstable else None,
                               message=result.error, **thresholds)
    if prep is not None and not prep.completed:
        return classify_frames(prep.frames, expected_phase=expected, status=prep.status,
                               instability=prep.instability,
                               message=f"during the melt-quench: {prep.message}",
                               **thresholds)
    if comp is None:
        return classify_frames([], expected_phase=expected, status=CUT_SHORT,
                               message="no compression was run", **thresholds)
    return classify_frames(comp.frames, expected_phase=expected, status=comp.status,
                           instability=comp.instability, message=comp.message,
                           target_pressure_GPa=result.settings.pressure_end_GPa, **thresholds)


# -- assertions -----------------------------------------------------------------------------

def frames_table(frames: Sequence[Any], max_rows: int = 12) -> list[str]:
    """Evenly spaced frames (always the last) as table lines: pressures, volume,
    temperature, coordination and the fraction like each reference."""
    frames = list(frames)
    if not frames:
        return ["(no frames)"]
    idx = sorted(set(np.linspace(0, len(frames) - 1, min(max_rows, len(frames))).astype(int)))
    phases = _phase_keys(frames)
    rows = [[f.step, f.phase, _pressure(f), f.pressure_GPa, f.volume_per_atom_A3,
             f.temperature_K, f.analysis.get("coordination_mean", math.nan)]
            + [_fraction(f, k, True) for k in phases] for f in (frames[i] for i in idx)]
    return format_table(["step", "segment", "target GPa", "P GPa", "V Å^3/atom", "T K",
                         "coord"] + [f"{k} frac" for k in phases], rows)


def _outcome_of(result: Any, thresholds: Mapping[str, Any]) -> tuple[CompressionOutcome, Any]:
    if hasattr(result, "outcome") and hasattr(result, "settings"):
        outcome = result.classify(**thresholds) if thresholds else result.outcome
        return outcome, result.frames
    if isinstance(result, CompressionOutcome):
        if thresholds and replace(result.thresholds, **thresholds) != result.thresholds:
            raise ValueError(f"thresholds {thresholds} differ from those this outcome was "
                             "classified with: pass the CompressionResult (it re-classifies) "
                             "or classify the frames with these thresholds")
        return result, ()
    raise TypeError(f"expected a CompressionResult or CompressionOutcome, got "
                    f"{type(result).__name__}")


def _fail(first: str, outcome: CompressionOutcome, frames: Sequence[Any],
          potential: str | None) -> MlpvalAssertionError:
    who = f"potential {potential!r}: " if potential else ""
    lines = [f"{who}{first}", "", f"outcome: {outcome.outcome} ({outcome.reason})"]
    rows = [("outcome", outcome.outcome), ("phase", outcome.phase or "-"),
            ("expected phase", outcome.expected_phase),
            ("fraction like expected", outcome.fraction),
            ("onset pressure (GPa)", outcome.onset_pressure_GPa),
            ("collapse pressure (GPa)", outcome.collapse_pressure_GPa),
            ("final mean coordination", outcome.mean_coordination),
            ("final pressure (GPa)", outcome.final_pressure_GPa),
            ("target pressure (GPa)", outcome.target_pressure_GPa),
            ("target reached", outcome.target_reached), ("run status", outcome.status)]
    lines += [""] + format_table(["quantity", "value"], rows)
    if frames:
        lines += ["", "frames:"] + frames_table(frames)
    return MlpvalAssertionError("\n".join(lines))


def _usable(outcome: CompressionOutcome, require_target: bool) -> str | None:
    if outcome.outcome == "unstable":
        return f"the MD was unstable ({outcome.instability}): {outcome.message}"
    if outcome.outcome == "incomplete":
        return f"the run is incomplete: {outcome.message}"
    if require_target and not outcome.target_reached:
        return (f"the run reached {outcome.final_pressure_GPa:.3g} GPa, not the target "
                f"{outcome.target_pressure_GPa:.3g} GPa (a slower ramp, more hold steps or "
                "a shorter barostat time would reach it)")
    return None


def assert_crystallizes(result: Any, *, phase: str | None = None,
                        min_fraction: float | None = None,
                        max_onset_pressure_GPa: float | None = None,
                        require_target: bool = True, potential: str | None = None,
                        **thresholds: Any) -> CompressionOutcome:
    """Fail unless the run crystallised into ``phase`` (default: the expected phase)
    with at least ``min_fraction`` of its atoms (default: the thresholds' 0.5), by
    ``max_onset_pressure_GPa`` if given, at the target pressure."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if min_fraction is not None:
        thresholds["min_fraction"] = min_fraction
    outcome, frames = _outcome_of(result, thresholds)
    want = atom_key(phase or outcome.expected_phase)
    problem = _usable(outcome, require_target)
    if problem is None and (outcome.outcome != "crystallised" or outcome.phase != want):
        got = outcome.fractions.get(want, math.nan)
        problem = (f"did not crystallise into {want}: {got:.0%} of the atoms are like it "
                   f"(needs {outcome.thresholds.min_fraction:.0%}); outcome {outcome.outcome}"
                   + (f" ({outcome.phase})" if outcome.phase else ""))
    if problem is None and max_onset_pressure_GPa is not None and not (
            outcome.onset_pressure_GPa <= max_onset_pressure_GPa):
        problem = (f"crystallisation into {want} set in at {outcome.onset_pressure_GPa:.3g} GPa,"
                   f" above {max_onset_pressure_GPa:.3g} GPa")
    if problem is not None:
        raise _fail(problem, outcome, frames, potential)
    return outcome


def assert_no_false_minimum(result: Any, *, max_mean_coordination: float | None = None,
                            require_target: bool = True, potential: str | None = None,
                            **thresholds: Any) -> CompressionOutcome:
    """Fail when the run ended disordered with mean coordination >=
    ``max_mean_coordination`` (default: the thresholds' 10): a false minimum. An unstable
    or incomplete run fails too (nothing can be said)."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if max_mean_coordination is not None:
        thresholds["high_coordination"] = max_mean_coordination
    outcome, frames = _outcome_of(result, thresholds)
    problem = _usable(outcome, require_target)
    if problem is None and outcome.outcome == "high_coordination":
        problem = (f"false minimum: disordered with mean coordination "
                   f"{outcome.mean_coordination:.2f} >= {outcome.thresholds.high_coordination:g}")
    if problem is not None:
        raise _fail(problem, outcome, frames, potential)
    return outcome


def assert_no_false_maximum(result: Any, *, max_collapse_pressure_GPa: float | None = None,
                            require_target: bool = True, potential: str | None = None,
                            **thresholds: Any) -> CompressionOutcome:
    """Fail when the run stayed low-density amorphous (a false maximum: it never
    collapsed), or collapsed only above ``max_collapse_pressure_GPa``."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    outcome, frames = _outcome_of(result, thresholds)
    problem = _usable(outcome, require_target)
    if problem is None and outcome.outcome == "amorphous":
        problem = (f"false maximum: stayed low-density amorphous (mean coordination "
                   f"{outcome.mean_coordination:.2f} < "
                   f"{outcome.thresholds.collapse_coordination:g})")
    if problem is None and max_collapse_pressure_GPa is not None \
            and outcome.outcome != "crystallised" \
            and not outcome.collapse_pressure_GPa <= max_collapse_pressure_GPa:
        problem = (f"collapsed at {outcome.collapse_pressure_GPa:.3g} GPa, above "
                   f"{max_collapse_pressure_GPa:.3g} GPa")
    if problem is not None:
        raise _fail(problem, outcome, frames, potential)
    return outcome
