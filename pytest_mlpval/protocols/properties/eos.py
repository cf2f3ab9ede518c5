"""Equation of state (Birch–Murnaghan, through ASE), energies of polymorphs relative to
diamond, and transition pressures from the enthalpy crossing.

Plain library (no pytest).

The bulk modulus of a fitted equation of state depends on the span of strains it is
fitted over (for a machine-learned potential more than for DFT: one GAP gives 87 GPa from
±1 % in the lattice parameter and 92 GPa from ±5 %), so every result records its
``strain_span`` (fraction of the lattice parameter) and the fit's RMS residual.

Transition pressures (the enthalpy crossing of two fitted E(V)) are computed by
:mod:`.transitions`; :class:`TransitionResult`, :func:`transition_pressure` and
:func:`slug` are re-exported here.

:func:`assert_physical_eos` refuses what should not be compared with experiment: an E(V)
whose pressure derivative of the bulk modulus B' lies outside the range of real solids
(B' between about 3 and 7 for elements; 4.2 for diamond Si), which happens when a
potential extrapolates into compressions it was not trained on, and a transition whose
enthalpy minimum lies on the edge of the sampled volumes.
"""

from __future__ import annotations

import math
import operator
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.crystals import canonical_crystal
from pytest_mlpval.errors import ProtocolError, SettingsError
from pytest_mlpval.protocols.base import CostMeter, register, relax_keeping_symmetry
from pytest_mlpval.protocols.properties.common import DEFAULT_CRYSTAL, conventional_cell
from pytest_mlpval.protocols.properties.common import (FAMILY, MAX_AMPLITUDE_SPREAD,
                                                       PropertyResult, PropertySettings,
                                                       amplitude_spreads,
                                                       assert_amplitude_independent,
                                                       relative_spread, spreads_not_measured)
from pytest_mlpval.protocols.properties.figures import eos_figure
from pytest_mlpval.protocols.properties.transitions import (TransitionResult, slug,
                                                            transition_pressure)
from pytest_mlpval.threads import single_threaded
from pytest_mlpval.units import EV_PER_A3_TO_GPA

__all__ = ["EosSettings", "EosResult", "equation_of_state", "TransitionResult",
           "transition_pressure", "PolymorphSettings", "PolymorphResult",
           "polymorph_energies", "slug", "assert_physical_eos", "eos_figure",
           "PHYSICAL_B_PRIME"]

#: accepted range of B' = dB/dP (solids: about 3-7; outside 1-10 the E(V) is unphysical)
PHYSICAL_B_PRIME = (1.0, 10.0)


@dataclass(frozen=True)
class EosSettings(PropertySettings):
    """Settings of :func:`equation_of_state`.

    Attributes
    ----------
    crystal, symbol : str
    strain_span : float
        Largest strain of the lattice parameter (the points run over ``1 ± strain_span``
        times the relaxed lattice vectors); in (0, 0.3).
    n_points : int
        Volumes sampled (at least 5 for a 4-parameter fit).
    relax_shape : bool
        Relax positions and cell shape at each volume (symmetry kept).
    fmax_eV_A : float
    steps : int
    spread_spans : tuple of float
        Further spans, each in (0, 0.3), of E(V) fits (``n_points`` each, volumes
        computed once) for the spread of B and B' (the protocol uncertainty,
        ``bulk_modulus_amplitude_spread_GPa``); empty: none. B and B' are reported at
        ``strain_span``.
    max_amplitude_spread_fraction : float
        Largest accepted relative spread of B over the spans (above it the ready-made
        test fails on the roughness of the surface). B' is not judged: a fit over ±1 %
        determines it poorly even on a smooth surface (the bundled GAP: 4.6-5.7).
    """

    VERSION: ClassVar[int] = 2
    group: ClassVar[str] = "lattice"
    tiers: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"strain_span": 0.01}, "full": {"strain_span": 0.01, "n_points": 9}}

    crystal: str = DEFAULT_CRYSTAL
    strain_span: float = 0.01
    n_points: int = 7
    relax_shape: bool = True
    fmax_eV_A: float = 1e-3
    steps: int = 500
    spread_spans: tuple[float, ...] = (0.005, 0.02)
    max_amplitude_spread_fraction: float = MAX_AMPLITUDE_SPREAD

    def __post_init__(self) -> None:
        object.__setattr__(self, "spread_spans", tuple(float(x) for x in self.spread_spans))
        bad = [x for x in self.spread_spans if not 0 < x < 0.3]
        if bad:
            raise SettingsError(f"spread_spans must each be in (0, 0.3), got {bad}")
        if not self.max_amplitude_spread_fraction > 0:
            raise SettingsError(f"max_amplitude_spread_fraction must be > 0, got "
                                f"{self.max_amplitude_spread_fraction}")
        if not 0 < self.strain_span < 0.3:
            raise SettingsError(f"strain_span must be in (0, 0.3), got {self.strain_span}")
        if self.n_points < 5:
            raise SettingsError(f"n_points must be >= 5 for a 4-parameter fit, got "
                                f"{self.n_points}")


@dataclass(frozen=True)
class EosResult(PropertyResult):
    """A third-order Birch–Murnaghan fit (ASE ``EquationOfState``) to E(V).

    Attributes
    ----------
    crystal, symbol : str
    volumes_per_atom_A3, energies_per_atom_eV : tuple of float
        The points fitted (Å^3/atom, eV/atom).
    volume_per_atom_A3, energy_per_atom_eV : float
        V0 and E0 of the fit.
    bulk_modulus_GPa : float
        B0 of the fit.
    bulk_modulus_derivative : float
        B0' (dimensionless), a parameter of the fit.
    lattice_parameter_A : float
        The relaxed cell's first length scaled to V0.
    strain_span : float
        Largest strain of the lattice parameter sampled (the points run over
        ``1 ± strain_span`` times the relaxed lattice vectors).
    fit_rms_per_atom_meV : float
        RMS of the fit's residuals.
    relaxed_shape : bool
        Whether positions and cell shape were relaxed at each volume (symmetry kept).
    n_force_calls : int
    calculator_seconds, seconds : float
    amplitudes : tuple of float
        The strain spans of the fits: ``strain_span`` (B and B' reported) first, then
        ``spread_spans``.
    amplitude_values : mapping of str to tuple of float
        ``bulk_modulus_GPa`` and ``bulk_modulus_derivative`` at each of ``amplitudes``
        (NaN where the fit failed).
    max_amplitude_spread_fraction : float
        The limit of the settings.
    """

    crystal: str
    symbol: str
    volumes_per_atom_A3: tuple[float, ...]
    energies_per_atom_eV: tuple[float, ...]
    volume_per_atom_A3: float
    energy_per_atom_eV: float
    bulk_modulus_GPa: float
    bulk_modulus_derivative: float
    lattice_parameter_A: float
    strain_span: float
    fit_rms_per_atom_meV: float
    relaxed_shape: bool
    n_force_calls: int
    calculator_seconds: float
    seconds: float
    amplitudes: tuple[float, ...] = ()
    amplitude_values: dict[str, tuple[float, ...]] = field(default_factory=dict)
    max_amplitude_spread_fraction: float = MAX_AMPLITUDE_SPREAD
    protocol = "eos"
    owns = (r"bulk_modulus_GPa|bulk_modulus_derivative|bulk_modulus(_derivative)?"
            r"_amplitude_spread(_GPa)?|eos_\w+")
    figure = staticmethod(eos_figure)

    def metrics(self) -> dict[str, float]:
        out = {"bulk_modulus_GPa": self.bulk_modulus_GPa,
               "bulk_modulus_derivative": self.bulk_modulus_derivative,
               "eos_volume_per_atom_A3": self.volume_per_atom_A3,
               "eos_energy_per_atom_eV": self.energy_per_atom_eV,
               "eos_lattice_parameter_A": self.lattice_parameter_A,
               "eos_fit_rms_per_atom_meV": self.fit_rms_per_atom_meV,
               "eos_strain_span_fraction": self.strain_span}
        if len(self.amplitudes) > 1:
            out.update(amplitude_spreads(self.amplitude_values))
            out["eos_amplitude_spread_fraction"] = self.amplitude_spread[0]
        out.update(self.cost_metrics())
        return out

    def not_measured(self) -> set[str]:
        """The amplitude spreads when a fit over another span failed."""
        return spreads_not_measured(self.amplitude_values, "eos_amplitude_spread_fraction")

    @property
    def amplitude_spread(self) -> tuple[float, str]:
        """(relative spread of B over the strain spans, ``"bulk_modulus_GPa"``)."""
        return relative_spread(self.amplitude_values, ["bulk_modulus_GPa"])

    def assert_physical(self) -> None:
        assert_physical_eos(self)

    def assert_amplitude_independent(self) -> None:
        __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
        assert_amplitude_independent(self, *self.amplitude_spread, "strain span")

    def energy(self, volume_per_atom_A3: Any) -> Any:
        """The fitted E(V) in eV/atom (ASE's ``birchmurnaghan``)."""
        from ase.eos import birchmurnaghan

        return birchmurnaghan(np.asarray(volume_per_atom_A3, dtype=float),
                              self.energy_per_atom_eV, self.bulk_modulus_GPa / EV_PER_A3_TO_GPA,
                              self.bulk_modulus_derivative, self.volume_per_atom_A3)

    def curve_data(self) -> dict[str, Any]:
        """The sampled E(V) points and the fit's parameters (JSON-ready)."""
        return {"volumes_per_atom_A3": list(self.volumes_per_atom_A3),
                "energies_per_atom_eV": list(self.energies_per_atom_eV),
                "V0": self.volume_per_atom_A3, "E0": self.energy_per_atom_eV,
                "B_GPa": self.bulk_modulus_GPa, "Bp": self.bulk_modulus_derivative}

    def report_data(self) -> dict[str, Any]:
        """For the HTML report: the E(V) curve, drawn by :func:`eos_figure`."""
        return {"reference": self.crystal,
                "strain_span": self.strain_span, "curves": {self.crystal: self.curve_data()}}


def _fit(volumes: np.ndarray, energies: np.ndarray, crystal: str) -> tuple[float, ...]:
    from ase.eos import EquationOfState
    from scipy.optimize import OptimizeWarning

    eos = EquationOfState(volumes, energies, eos="birchmurnaghan")
    try:
        with warnings.catch_warnings():  # covariance not estimable: we do not use it
            warnings.simplefilter("ignore", OptimizeWarning)
            eos.fit(warn=False)
    except (RuntimeError, ValueError) as exc:
        raise ProtocolError(f"Birch–Murnaghan fit for {crystal} failed: {exc}") from exc
    e0, b0, bp, v0 = (float(x) for x in eos.eos_parameters)
    if not all(map(math.isfinite, (e0, b0, bp, v0))) or b0 <= 0:
        raise ProtocolError(f"Birch–Murnaghan fit for {crystal} gave no minimum "
                            f"(E0={e0}, B0={b0 * EV_PER_A3_TO_GPA} GPa, V0={v0})")
    if not volumes.min() <= v0 <= volumes.max():
        raise ProtocolError(
            f"the E(V) minimum of {crystal} (V0 = {v0:.3f} Å^3/atom) lies outside the "
            f"sampled volumes {volumes.min():.3f}-{volumes.max():.3f}: the structure was not "
            "relaxed, or the strain span is too small for this potential")
    rms = float(np.sqrt(np.mean((eos.func(volumes, *eos.eos_parameters) - energies) ** 2)))
    return e0, b0, bp, v0, rms


def _energy_at_fixed_volume(atoms: Any, calc: Any, relax_shape: bool, fmax_eV_A: float,
                            steps: int) -> float:
    """Energy per atom at the volume of ``atoms``, after relaxing positions and cell shape
    at that volume with the symmetry kept (skipped when already converged: a cubic
    crystal without free coordinates)."""
    atoms = atoms.copy()
    atoms.calc = calc
    if relax_shape:
        from ase.filters import FrechetCellFilter

        with warnings.catch_warnings():
            # scipy's logm accuracy note on near-identity cells; FixSymmetry's note on large
            # cell steps (convergence and the space group are checked instead)
            warnings.filterwarnings("ignore", "logm result may be inaccurate")
            warnings.filterwarnings("ignore", "FixSymmetry adjust_cell may be ill behaved")
            forces = FrechetCellFilter(atoms, constant_volume=True).get_forces()
            if np.sqrt((forces ** 2).sum(axis=1)).max() > fmax_eV_A:
                from ase.constraints import FixSymmetry
                from ase.optimize import BFGS

                atoms.set_constraint(FixSymmetry(atoms))
                opt = BFGS(FrechetCellFilter(atoms, constant_volume=True), logfile=None)
                if not opt.run(fmax=fmax_eV_A, steps=steps):
                    raise ProtocolError(
                        f"constant-volume relaxation of {atoms.get_chemical_formula()} at "
                        f"{atoms.get_volume() / len(atoms):.3f} Å^3/atom did not reach fmax "
                        f"{fmax_eV_A:g} eV/Å in {steps} steps")
    return float(atoms.get_potential_energy()) / len(atoms)


@single_threaded
def equation_of_state(calc: Any, settings: EosSettings | None = None, *, atoms: Any = None,
                      **overrides: Any) -> EosResult:
    """Relax ``crystal`` (or the given ``atoms``; symmetry kept), scale its lattice vectors
    by ``1 + s`` for ``n_points`` values of s evenly spaced in ``[-strain_span,
    strain_span]``, relax positions and cell shape at each fixed volume (``relax_shape``;
    symmetry kept) and fit a Birch–Murnaghan E(V) with ASE. ``overrides`` replace fields
    of ``settings`` (:class:`EosSettings`).

    The E(V) is fitted again over each of ``spread_spans`` (volumes computed once) for
    the spread of B and B' (NaN where such a fit has no minimum).

    Raises :class:`~pytest_mlpval.errors.ProtocolError` when a relaxation fails or the
    fit has no minimum inside the sampled range.
    """
    s = EosSettings.of(settings, **overrides)
    crystal, strain_span, fmax_eV_A, steps = s.crystal, s.strain_span, s.fmax_eV_A, s.steps
    meter = CostMeter(calc)
    relaxed, _, _ = relax_keeping_symmetry(meter.calc, crystal, s.symbol, atoms,
                                           fmax_eV_A=fmax_eV_A, steps=steps)
    base = relaxed.atoms
    n = len(base)
    done: dict[float, tuple[float, float]] = {}

    def scan(span: float) -> Iterator[tuple[float, float]]:
        """Volumes and energies per atom at ``n_points`` strains over ``± span`` (a
        strain already computed is reused)."""
        for strain in np.linspace(-span, span, s.n_points):
            key = round(float(strain), 12)
            if key not in done:
                scaled = base.copy()
                scaled.set_cell(base.cell * (1 + strain), scale_atoms=True)
                done[key] = (scaled.get_volume() / n, _energy_at_fixed_volume(
                    scaled, meter.calc, s.relax_shape, fmax_eV_A, steps))
            yield done[key]

    v, e = (np.array(x) for x in zip(*scan(strain_span)))
    e0, b0, bp, v0, rms = _fit(v, e, crystal)
    values = [(b0 * EV_PER_A3_TO_GPA, bp)]
    for span in s.spread_spans:
        points = np.array(list(scan(span)))
        try:
            fit = _fit(points[:, 0], points[:, 1], crystal)
            values.append((fit[1] * EV_PER_A3_TO_GPA, fit[2]))
        except ProtocolError:  # no minimum inside that span: its spread is NaN
            values.append((math.nan, math.nan))
    conv = conventional_cell(base)  # a0 of the conventional cell (rocksalt: the cube's)
    a0 = float(conv.cell.lengths()[0] * (v0 / (conv.get_volume() / len(conv))) ** (1 / 3))
    return EosResult(crystal, s.symbol, tuple(map(float, v)), tuple(map(float, e)), v0, e0,
                     b0 * EV_PER_A3_TO_GPA, bp, a0, float(strain_span), rms * 1000,
                     bool(s.relax_shape), **meter.cost(),
                     amplitudes=(float(strain_span),) + s.spread_spans,
                     amplitude_values={"bulk_modulus_GPa": tuple(x[0] for x in values),
                                       "bulk_modulus_derivative": tuple(x[1] for x in values)},
                     max_amplitude_spread_fraction=s.max_amplitude_spread_fraction)


@dataclass(frozen=True)
class PolymorphSettings(PropertySettings):
    """Settings of :func:`polymorph_energies`.

    Attributes
    ----------
    names : tuple of str
        Crystals of :func:`~pytest_mlpval.crystals.build_crystal` (``reference`` is added
        when missing).
    symbol, reference : str
    strain_span : float
        Of each equation of state; the default (±5 % in the lattice parameter, ±15 % in
        volume) covers diamond at the ~11 GPa of the diamond -> beta-Sn transition.
    n_points : int
    max_pressure_GPa : float
        Upper end of the search for transitions.
    fmax_eV_A : float
    steps : int
    pairs : tuple of (str, str)
        Further transitions (low-pressure crystal, high-pressure crystal), both among
        ``names``, besides those from ``reference`` to each other crystal.

    ``names`` and ``reference`` default to silicon's phases (documented defaults): any
    crystal specs work (``("bcc", "fcc", "hcp")``, ``"file:A15.cif"``); the ready-made
    tests set them from ``MLPVAL_CRYSTAL`` and ``MLPVAL_POLYMORPHS``.
    """

    VERSION: ClassVar[int] = 1
    group: ClassVar[str] = "polymorphs"
    tiers: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"names": ("diamond", "beta-Sn")},
        "full": {"names": ("diamond", "beta-Sn", "sh", "bcc", "fcc")}}

    names: tuple[str, ...] = ("diamond", "beta-Sn", "sh")
    reference: str = "diamond"
    strain_span: float = 0.05
    n_points: int = 11
    max_pressure_GPa: float = 60.0
    fmax_eV_A: float = 1e-3
    steps: int = 500
    pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.names, str):
            raise SettingsError(f"names must be a sequence of crystal names, got "
                                f"{self.names!r}")
        object.__setattr__(self, "names", tuple(self.names))
        pairs = tuple(tuple(p) for p in self.pairs)
        if any(len(p) != 2 or isinstance(p, str) for p in pairs):
            raise SettingsError(f"pairs must be (low, high) pairs of crystals, got "
                                f"{self.pairs!r}")
        object.__setattr__(self, "pairs", pairs)


@dataclass(frozen=True)
class PolymorphResult(PropertyResult):
    """Equations of state of several polymorphs, energies relative to ``reference`` and
    transition pressures from it.

    Attributes
    ----------
    symbol, reference : str
    eos : tuple of EosResult
        One per polymorph, in the order asked (the reference included).
    transitions : tuple of TransitionResult
        ``reference`` -> each other polymorph.
    n_force_calls : int
    calculator_seconds, seconds : float
    """

    symbol: str
    reference: str
    eos: tuple[EosResult, ...]
    transitions: tuple[TransitionResult, ...]
    n_force_calls: int
    calculator_seconds: float
    seconds: float
    protocol = "polymorphs"
    owns = (r"energy_\w+_vs_\w+_per_atom_eV|volume_[a-z]\w*_per_atom_A3"
            r"|bulk_modulus_(?!derivative$|GPa$)\w+|\w+_transition_GPa")
    figure = staticmethod(eos_figure)

    def get(self, crystal: str) -> EosResult:
        for result in self.eos:
            if slug(result.crystal) == slug(crystal):
                return result
        raise KeyError(f"no polymorph {crystal!r}; have {[e.crystal for e in self.eos]}")

    def energy_vs_reference_per_atom_eV(self, crystal: str) -> float:
        return self.get(crystal).energy_per_atom_eV - self.get(self.reference).energy_per_atom_eV

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        ref = slug(self.reference)
        for e in self.eos:
            s = slug(e.crystal)
            if s != ref:
                out[f"energy_{s}_vs_{ref}_per_atom_eV"] = \
                    self.energy_vs_reference_per_atom_eV(e.crystal)
            out[f"volume_{s}_per_atom_A3"] = e.volume_per_atom_A3
            out[f"bulk_modulus_{s}_GPa"] = e.bulk_modulus_GPa
            out[f"bulk_modulus_derivative_{s}"] = e.bulk_modulus_derivative
        for t in self.transitions:
            out.update(t.metrics())
        out.update(self.cost_metrics())
        return out

    def assert_physical(self) -> None:
        assert_physical_eos(self)

    def not_measured(self) -> set[str]:
        """The transition pressures of the transitions not found in the range searched."""
        return set().union(*(t.not_measured() for t in self.transitions))

    def report_data(self) -> dict[str, Any]:
        """For the HTML report: E(V) of every polymorph, drawn by :func:`eos_figure`."""
        return {"reference": self.reference,
                "curves": {e.crystal: e.curve_data() for e in self.eos},
                "transitions": {f"{t.low} -> {t.high}": t.pressure_GPa
                                for t in self.transitions}}


@single_threaded
def polymorph_energies(calc: Any, settings: PolymorphSettings | None = None,
                       **overrides: Any) -> PolymorphResult:
    """E(V) of each crystal of :func:`~pytest_mlpval.crystals.build_crystal` named in
    ``names`` (relaxed with symmetry kept, positions and cell shape relaxed at each
    volume), energies relative to ``reference`` and the transition pressures from it.
    ``overrides`` replace fields of ``settings`` (:class:`PolymorphSettings`).
    """
    s = PolymorphSettings.of(settings, **overrides)
    names = [canonical_crystal(n) for n in s.names]
    reference = canonical_crystal(s.reference)
    if reference not in names:
        names = [reference] + names
    pairs = [(canonical_crystal(low), canonical_crystal(high)) for low, high in s.pairs]
    for low, high in pairs:
        if low not in names or high not in names:
            raise SettingsError(f"pair ({low}, {high}): both must be among the polymorphs "
                                f"{', '.join(names)}")
    meter = CostMeter(calc)
    results = tuple(equation_of_state(meter.calc, EosSettings(
        crystal=name, symbol=s.symbol, strain_span=s.strain_span, n_points=s.n_points,
        fmax_eV_A=s.fmax_eV_A, steps=s.steps, spread_spans=())) for name in names)
    ref = next(r for r in results if r.crystal == reference)
    transitions = tuple(transition_pressure(ref, r, max_pressure_GPa=s.max_pressure_GPa)
                        for r in results if r.crystal != reference)
    by_name = {r.crystal: r for r in results}
    for low, high in pairs:
        transitions += (transition_pressure(by_name[low], by_name[high],
                                            max_pressure_GPa=s.max_pressure_GPa),)
    return PolymorphResult(s.symbol, reference, results, transitions, **meter.cost())


def assert_physical_eos(result: EosResult | PolymorphResult,
                        b_prime: tuple[float, float] = PHYSICAL_B_PRIME) -> None:
    """Raise :class:`~pytest_mlpval.assertions.MlpvalAssertionError` when an equation of
    state of ``result`` has B' outside ``b_prime`` or a transition pressure rests on an
    enthalpy minimum at the edge of the sampled volumes (an extrapolated fit)."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    curves = result.eos if isinstance(result, PolymorphResult) else (result,)
    transitions = result.transitions if isinstance(result, PolymorphResult) else ()
    lo, hi = b_prime
    bad = [e for e in curves if not lo <= e.bulk_modulus_derivative <= hi]
    cut = [t for t in transitions if t.found and t.extrapolated]
    if not bad and not cut:
        return
    lines = []
    if bad:
        lines += [f"unphysical equation of state: B' outside {lo:g}-{hi:g} for "
                  f"{', '.join(e.crystal for e in bad)} (real solids: about 3-7). The "
                  "fitted E(V) does not stiffen under compression as a solid's does "
                  "(B' too low) or does so far too fast (too high): the potential "
                  "extrapolates beyond its training data there, or the structure "
                  "changed during the volume scan.", ""]
        lines += format_table(
            ["crystal", "V0 (Å^3/atom)", "B (GPa)", "B'", "sampled V (Å^3/atom)",
             "fit RMS (meV/atom)"],
            [[e.crystal, e.volume_per_atom_A3, e.bulk_modulus_GPa, e.bulk_modulus_derivative,
              f"{min(e.volumes_per_atom_A3):.2f}-{max(e.volumes_per_atom_A3):.2f}",
              e.fit_rms_per_atom_meV] for e in curves])
        for e in bad:  # B' is a third derivative: a rough surface alone can spoil it
            spans = e.amplitude_values.get("bulk_modulus_derivative", ())
            if len(spans) > 1 and not e.amplitude_spread[0] <= e.max_amplitude_spread_fraction:
                lines += ["", f"B' of {e.crystal} moves with the strain span (" + ", ".join(
                    f"{b:.3g} at ±{a:g}" for b, a in zip(spans, e.amplitudes)) + f") and B "
                    f"by {100 * e.amplitude_spread[0]:.1f} %: the surface is rough on the "
                    "scale of the span, which alone can make B' unphysical."]
    if cut:
        if lines:
            lines.append("")
        lines += [f"{t.low} -> {t.high} at {t.pressure_GPa:.2f} GPa: a phase's enthalpy "
                  f"minimum lies on the edge of its sampled volumes (V = "
                  f"{t.volume_low_per_atom_A3:.2f} and {t.volume_high_per_atom_A3:.2f} "
                  "Å^3/atom); widen strain_span, the pressure is an extrapolation"
                  for t in cut]
    raise MlpvalAssertionError("\n".join(lines))


register("eos", equation_of_state, EosSettings, EosResult, family=FAMILY)
register("polymorphs", polymorph_energies, PolymorphSettings, PolymorphResult, family=FAMILY)
