"""Tolerances (plain library, no pytest).

Baseline tolerances: ``METRIC:AMOUNT`` where METRIC is a metric name or ``*`` (all
metrics) and AMOUNT is a percentage (``5%``), a number in the metric's own unit
(``0.002``) or a number with a unit (``0.5meV``, ``0.01eV``, ``0.1GPa``, ``50MPa``,
``1e-3eV/Å``). Re-exported by :mod:`pytest_mlpval.baseline`.

A candidate's precision, which picks the physics checks' tolerances (float32 models get
the float32 ones): :func:`detect_precision` takes what the loader declares, else a
torch model's parameter dtype, else one cheap evaluation (float32 forces, or forces
that are all exactly float32 numbers).
"""

from __future__ import annotations

import copy
import re
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from pytest_mlpval.metrics import metric_unit

__all__ = ["DEFAULT_TOLERANCE", "PHYSICS_CHECKS", "Tolerance", "parse_tolerance",
           "resolve_tolerance", "declared_precision", "detect_precision", "probe_precision", "looks_float32"]

#: used for metrics that no tolerance names
DEFAULT_TOLERANCE = "*:1%"

#: the physics checks' names, which a tolerance may name as metrics (the keys of
#: :data:`pytest_mlpval.protocols.invariance.CHECKS`, which the core does not import; a
#: test keeps the two equal)
PHYSICS_CHECKS = ("translation", "rotation", "permutation", "force_gradient",
                  "stress_gradient", "extensivity", "force_sum", "smoothness", "finite")


_UNIT_SCALE = {
    # energy per atom or per cell, force, stress; the number is converted to the metric's
    # own unit (eV/..., GPa)
    "mev": 1e-3, "ev": 1.0, "mev/atom": 1e-3, "ev/atom": 1.0,
    "ev/å": 1.0, "ev/a": 1.0, "mev/å": 1e-3, "mev/a": 1e-3,
    "gpa": 1.0, "mpa": 1e-3, "kbar": 0.1,
    "deg": 1.0, "degree": 1.0,
}
_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%|[A-Za-zÅ/]+)?\s*$")


@dataclass(frozen=True)
class Tolerance:
    """How much a metric may grow: ``relative`` (fraction) or ``absolute`` (metric unit)."""

    metric: str
    relative: float | None = None
    absolute: float | None = None
    text: str = ""

    def allowed(self, baseline: float) -> float:
        if self.relative is not None:
            return abs(baseline) * self.relative
        return float(self.absolute or 0.0)


def parse_tolerance(text: str) -> Tolerance:
    """Parse ``METRIC:AMOUNT``; raises ``ValueError`` with the grammar on bad input."""
    metric, sep, amount = text.strip().partition(":")
    metric = metric.strip()
    match = _AMOUNT.match(amount)
    if not sep or not metric or match is None:
        raise ValueError(
            f"{text!r}: expected METRIC:AMOUNT, e.g. force_rmse:5%, energy_rmse:0.5meV, "
            "stress_rmse:0.1GPa, *:2%")
    if metric != "*" and not _known_metric(metric, metric_unit):
        raise ValueError(f"{text!r}: unknown metric {metric!r}")
    number, unit = float(match.group(1)), (match.group(2) or "")
    if unit == "%":
        return Tolerance(metric, relative=number / 100.0, text=text.strip())
    if unit:
        scale = _UNIT_SCALE.get(unit.lower())
        if scale is None:
            raise ValueError(f"{text!r}: unknown unit {unit!r}; use %, "
                             + ", ".join(sorted({'meV', 'eV', 'GPa', 'MPa', 'kbar'})))
        expected = _dimension_of_metric(metric, metric_unit)
        if metric == "*" or (expected is not None and expected != _UNIT_DIMENSION[unit.lower()]):
            raise ValueError(
                f"{text!r}: {_article(_UNIT_DIMENSION[unit.lower()])} unit does not fit "
                + ("every metric ('*' takes % or a plain number)" if metric == "*"
                   else f"{metric} ({expected}, {metric_unit(metric)})"))
        number *= scale
    return Tolerance(metric, absolute=number, text=text.strip())


_UNIT_DIMENSION = {
    **dict.fromkeys(("mev", "ev", "mev/atom", "ev/atom"), "energy"),
    **dict.fromkeys(("ev/å", "ev/a", "mev/å", "mev/a"), "force"),
    **dict.fromkeys(("gpa", "mpa", "kbar"), "stress"),
    **dict.fromkeys(("deg", "degree"), "angle"),
}


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _dimension_of_metric(metric: str, metric_unit) -> str | None:
    """energy / force / stress / angle for error metrics; None where the unit varies
    (physics checks) or is not one of these (cost)."""
    try:
        unit = metric_unit(metric)
    except KeyError:
        return None
    if unit.startswith("eV/Å"):
        return "force"
    if unit.startswith("eV"):
        return "energy"
    return {"GPa": "stress", "degree": "angle"}.get(unit)


def _known_metric(name: str, metric_unit) -> bool:
    try:
        metric_unit(name)
    except KeyError:
        return name in PHYSICS_CHECKS or name in ("time_per_atom_us", "time_per_call_s")
    return True


def resolve_tolerance(metric: str, tolerances: Sequence[Tolerance]) -> Tolerance:
    """The last tolerance naming ``metric``, else the last ``*`` one, else the default."""
    for tol in reversed(tolerances):
        if tol.metric == metric:
            return tol
    for tol in reversed(tolerances):
        if tol.metric == "*":
            return tol
    return parse_tolerance(DEFAULT_TOLERANCE)


# -- a candidate's precision -------------------------------------------------------------

#: loaders whose models are float64 whatever their info says
_FLOAT64_LOADERS = ("builtin", "gap")


def detect_precision(potential: Any, species: Sequence[str] = ("Si",)) -> tuple[str, str]:
    """``(precision, how)`` of a loaded candidate: ``"float32"`` or ``"float64"``, and
    ``"loader"`` (declared by its loader: ``PotentialInfo.precision``), ``"detected"``
    (a torch model's parameters, or one evaluation of a small structure of ``species``
    by a copy of its calculator) or ``"assumed"`` (the probe failed: float64)."""
    declared = declared_precision(getattr(potential, "info", None))
    if declared is not None:
        return declared, "loader"
    found = probe_precision(getattr(potential, "calculator", potential), species)
    return (found, "detected") if found is not None else ("float64", "assumed")


def declared_precision(info: Any) -> str | None:
    """The precision a candidate's loader declares (``PotentialInfo.precision``
    ``"float32"``, or any precision of a built-in or GAP), None when it must be detected
    (a factory's info says float64 by default)."""
    declared = getattr(info, "precision", None)
    loader = str(getattr(info, "loader", ""))
    if declared == "float32":
        return "float32"
    return (declared or "float64") if loader in _FLOAT64_LOADERS else None


def _torch_dtype(calc: Any) -> str | None:
    """The dtype of a torch model's first parameter (torch already imported), if the
    calculator holds one under a usual name."""
    if "torch" not in sys.modules:
        return None
    for name in ("model", "models", "potential", "net", "module"):
        model = getattr(calc, name, None)
        if isinstance(model, (list, tuple)) and model:
            model = model[0]
        parameters = getattr(model, "parameters", None)
        if callable(parameters):
            try:
                first = next(iter(parameters()), None)
            except Exception:  # noqa: BLE001 - not a torch module after all
                continue
            if first is not None and hasattr(first, "dtype"):
                return str(first.dtype)
    return None


def probe_structure(species: Sequence[str]) -> Any:
    """A small periodic structure of ``species`` (4 atoms on a rattled fcc lattice,
    nearest neighbours 2.8 Å): nonzero forces to look at."""
    import numpy as np
    from ase import Atoms

    symbols = [list(species or ("Si",))[i % len(species or ("Si",))] for i in range(4)]
    a = 4.0
    positions = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) * a
    positions += np.random.default_rng(17).normal(0.0, 0.05, positions.shape)
    return Atoms(symbols, positions=positions, cell=[a, a, a], pbc=True)


def looks_float32(values: Any) -> bool:
    """Every nonzero value (at least three) is exactly a float32 number: the output of a
    single-precision model (a float64 model's forces are so with probability ~1e-9 each)."""
    import numpy as np

    array = np.asarray(values)
    if array.dtype.kind == "f" and array.dtype.itemsize <= 4:
        return True
    flat = np.asarray(array, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat) & (flat != 0)]
    return len(flat) >= 3 and bool(np.all(flat.astype(np.float32).astype(np.float64) == flat))


def probe_precision(calc: Any, species: Sequence[str] = ("Si",)) -> str | None:
    """``"float32"`` or ``"float64"`` from a torch model's parameter dtype, else from the
    forces of one evaluation of :func:`probe_structure` by a copy of ``calc`` (the
    calculator itself when it cannot be copied); None when that evaluation fails."""
    dtype = _torch_dtype(calc)
    if dtype is not None:
        return "float64" if "float64" in dtype or "double" in dtype else "float32"
    try:
        probe = copy.deepcopy(calc)
    except Exception:  # noqa: BLE001 - an extension object: evaluate the calculator itself
        probe = calc
    atoms = probe_structure(species)
    atoms.calc = probe
    try:
        forces = atoms.get_forces()
    except Exception:  # noqa: BLE001 - these species or this cell do not suit the model
        return None
    return "float32" if looks_float32(forces) else "float64"
