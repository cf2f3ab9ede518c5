"""What the property protocols share: the family's name, the bases of their settings
and results, and the family's name for a protocol failure.

Plain library (no pytest). A property protocol's settings subclass
:class:`PropertySettings` (the element, and the ready-made test's group and tier
settings), its result :class:`PropertyResult` (the metric names it owns, its physical
check); it is registered with ``register(name, function, Settings, Result,
family=FAMILY)`` (:func:`~pytest_mlpval.protocols.base.register`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import math
import operator
from typing import Sequence

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.errors import ProtocolError, SettingsError
from pytest_mlpval.protocols.base import Result, Settings
from pytest_mlpval.references import UNIT_SUFFIXES

__all__ = ["FAMILY", "DEFAULT_SYMBOL", "DEFAULT_CRYSTAL", "PropertyError", "PropertySettings",
           "PropertyResult",
           "MAX_AMPLITUDE_SPREAD", "spread_name", "amplitude_spreads",
           "relative_spread", "spreads_not_measured", "assert_amplitude_independent",
           "optimise", "conventional_cell"]

#: the family name the property protocols are registered under
FAMILY = "properties"

#: the family's old name of :class:`~pytest_mlpval.errors.ProtocolError`: ``except
#: PropertyError`` catches every protocol failure (non-finite results and symmetry
#: changes included)
PropertyError = ProtocolError


#: the element of the protocols' settings when none is given: silicon, the package's
#: first example (a documented default: pass ``symbol``, or let the ready-made tests take
#: the potential's species)
DEFAULT_SYMBOL = "Si"

#: the crystal of the protocols' settings when none is given: silicon's diamond (pass
#: ``crystal``, a spec of :func:`~pytest_mlpval.crystals.build_crystal`, or set
#: ``MLPVAL_CRYSTAL`` in a suite of the ready-made tests)
DEFAULT_CRYSTAL = "diamond"


@dataclass(frozen=True)
class PropertySettings(Settings):
    """Base of the property protocols' settings: the element, and what the ready-made
    tests (:mod:`pytest_mlpval.property_tests`) need to know of a protocol.

    ``symbol`` (the element, or a compound's formula) defaults to :data:`DEFAULT_SYMBOL`
    and each protocol's ``crystal`` to :data:`DEFAULT_CRYSTAL` (the polymorphs to
    silicon's phases): silicon's, documented defaults for every other material to
    override.

    Class attributes
    ----------------
    group : str
        The ready-made test that runs the protocol (``"lattice"`` runs ``lattice`` and
        ``eos``); empty: a group of its own, named like the protocol.
    tiers : mapping of str to mapping
        Overrides of the settings in each tier (``{"full": {"n_points": 9}}``).
    """

    group: ClassVar[str] = ""
    tiers: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    symbol: str = DEFAULT_SYMBOL


class PropertyResult(Result):
    """Base of the property results (:class:`~pytest_mlpval.protocols.base.Result`).

    Class attributes
    ----------------
    owns : str
        A regular expression matching the names of the metrics the ready-made tests take
        from this result (the properties it computes); empty: none.
    """

    protocol = "property"
    owns: ClassVar[str] = ""

    def assert_physical(self) -> None:
        """Raise :class:`~pytest_mlpval.assertions.MlpvalAssertionError` when the result
        describes no physical solid (Born- or dynamically unstable, an extrapolated
        equation of state); nothing to check by default."""

    def assert_amplitude_independent(self) -> None:
        """Raise :class:`~pytest_mlpval.assertions.MlpvalAssertionError` when the result
        moves with the protocol's finite amplitude (strain, displacement) by more than
        its settings allow (:func:`assert_amplitude_independent`); nothing to check by
        default."""


# -- protocol uncertainty: the spread of a property over finite amplitudes ----------------

#: default limit of a property's relative spread over the protocol's amplitudes (the
#: ``max_amplitude_spread_fraction`` setting of the elastic, EoS and phonon protocols).
#: Measured 2026-12-06 with the default amplitudes (elastic / EoS / phonons):
#: Stillinger-Weber 0.0005 / 0.0006 / 0.0003, the bundled GAP 0.0045 / 0.0026 / 0.0003,
#: CHGNet 0.4.2 0.22 / 0.16 / 0.21 (a universal model's rough surface).
MAX_AMPLITUDE_SPREAD = 0.05


def spread_name(metric: str) -> str:
    """The name of the amplitude spread of ``metric``, in its unit: ``"C11_GPa"`` ->
    ``"C11_amplitude_spread_GPa"``, ``"bulk_modulus_derivative"`` ->
    ``"bulk_modulus_derivative_amplitude_spread"``."""
    for suffix in sorted(UNIT_SUFFIXES, key=len, reverse=True):
        if metric.endswith(suffix) and len(metric) > len(suffix):
            return f"{metric[:-len(suffix)]}_amplitude_spread{suffix}"
    return f"{metric}_amplitude_spread"


def amplitude_spreads(values: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """``{spread_name(metric): max - min}`` of each metric's values over the amplitudes
    (in the metric's unit)."""
    return {spread_name(name): _spread(v) for name, v in values.items() if v}


def _spread(values: Sequence[float]) -> float:
    """``max - min``; NaN when a value is NaN."""
    if not all(map(math.isfinite, values)):
        return math.nan
    return float(max(values) - min(values))


def spreads_not_measured(values: Mapping[str, Sequence[float]], fraction: str
                         ) -> set[str]:
    """The spread metrics that are NaN because a value could not be computed at some
    amplitude (a fit that failed there), and ``fraction`` (the largest relative spread)
    with them."""
    gone = {spread_name(name) for name, v in values.items()
            if not all(map(math.isfinite, v))}
    return gone | ({fraction} if gone else set())


def relative_spread(values: Mapping[str, Sequence[float]], names: Sequence[str],
                    floor: float = 0.0) -> tuple[float, str]:
    """(largest ``(max - min) / max(|first|, floor)`` over ``names``, the metric it
    belongs to); the first value of each is the one reported. ``(0.0, "")`` when none
    was computed at several amplitudes."""
    worst, which = 0.0, ""
    for name in names:
        v = values.get(name, ())
        if len(v) < 2:
            continue
        scale = max(abs(v[0]), floor)
        spread = _spread(v) / scale if scale > 0 else math.inf
        if not spread <= worst:  # a NaN spread is the worst
            worst, which = spread, name
    return worst, which


def assert_amplitude_independent(result: Any, fraction: float, worst: str,
                                 amplitude: str) -> None:
    """Raise :class:`~pytest_mlpval.assertions.MlpvalAssertionError` when ``fraction``
    (the result's largest relative spread over its amplitudes, of metric ``worst``)
    exceeds the result's ``max_amplitude_spread_fraction``. ``amplitude`` names the
    amplitude and its unit (``"strain"``, ``"displacement (Å)"``). The message blames
    the potential energy surface's roughness, not the physics: a smooth PES gives the
    same number at every small amplitude."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    limit = result.max_amplitude_spread_fraction
    if fraction <= limit:
        return
    amplitudes = result.amplitudes
    rows = [[name, *values, _spread(values)]
            for name, values in result.amplitude_values.items()]
    failed = any(not math.isfinite(x) for row in rows for x in row[1:])
    raise MlpvalAssertionError("\n".join(
        [f"{worst} ({result.protocol}) moves by {100 * fraction:.1f} % with the finite "
         f"{amplitude} (limit {100 * limit:g} %, max_amplitude_spread_fraction): the "
         "potential energy surface is rough on the scale of the amplitudes, so the finite "
         "differences measure its roughness, not the physics; no single number describes "
         "this property for this potential (its protocol uncertainty is the spread). The "
         f"value reported is the one at {amplitudes[0]:g}."
         + (" NaN: the property could not be computed at that amplitude." if failed
            else ""), ""]
        + format_table(["property"] + [f"at {a:g}" for a in amplitudes]
                       + ["spread"], rows)))


def optimise(atoms: Any, optimizer: str, fmax_eV_A: float, steps: int, what: str) -> int:
    """Relax the positions of ``atoms`` (its calculator attached) with ASE optimiser
    ``optimizer`` to ``fmax_eV_A``; the steps taken. Raises
    :class:`~pytest_mlpval.errors.ProtocolError` naming ``what`` when it does not
    converge in ``steps``, :class:`~pytest_mlpval.errors.SettingsError` for an unknown
    optimiser."""
    import ase.optimize

    opt_class = getattr(ase.optimize, optimizer, None)
    if opt_class is None:
        raise SettingsError(f"unknown ASE optimizer {optimizer!r}")
    opt = opt_class(atoms, logfile=None)
    if not opt.run(fmax=fmax_eV_A, steps=steps):
        raise ProtocolError(f"{what} did not relax to fmax {fmax_eV_A:g} eV/Å in {steps} steps")
    return int(opt.nsteps)


def conventional_cell(atoms: Any, symprec: float = 1e-3) -> Any:
    """``atoms`` in spglib's conventional standard cell (not rotated: the same Cartesian
    frame) when that holds more atoms, i.e. when ``atoms`` is a primitive cell of a
    centred lattice (a rocksalt or bcc primitive cell); ``atoms`` itself otherwise (the
    named phases are built conventional). Miller indices and supercells refer to it."""
    import spglib
    from ase import Atoms

    cell = (np.asarray(atoms.cell[:]), atoms.get_scaled_positions(), atoms.numbers)
    found = spglib.standardize_cell(cell, to_primitive=False, no_idealize=True,
                                    symprec=symprec)
    if found is None or len(found[2]) <= len(atoms):
        return atoms
    lattice, positions, numbers = found
    return Atoms(numbers=numbers, cell=lattice, scaled_positions=positions, pbc=True)
