"""Elastic constants from finite strains, with the ions relaxed at each strain, and the
Born stability criteria.

Plain library (no pytest).

The strained cells and the stress–strain regression are matscipy's
(``generate_strained_configs`` and ``fit_elastic_constants``, the protocol of the GAP-18
testing framework). At each strain the stress is taken twice: before the ions move
(clamped-ion constants, C^0) and after relaxing the positions at the fixed strained cell
(relaxed-ion constants, what experiment measures). In diamond-structure crystals the shear
constant C44 differs most: internal strain lowers it by ~40 % for a GAP (103 -> 73 GPa)
and by half for Stillinger–Weber (110 -> 56 GPa); C11 and C12 have no internal relaxation
by symmetry. Compare like with like: ``C44_GPa`` is relaxed-ion, ``C44_clamped_GPa`` is
clamped-ion.

Any crystal: the crystal class comes from spglib's space group of the relaxed crystal. A
cubic crystal whose cube axes are the Cartesian axes (the named phases, ASE's cubic
cells) is fitted with matscipy's cubic strain pattern (silicon's numbers); every other
crystal with the full 6x6 fit (each of the six strain components alone), rotated into
the crystal's standard setting (spglib's ``std_rotation_matrix``: c along z for a
hexagonal crystal). The constants reported are the independent ones of the crystal's
class (:data:`INDEPENDENT_CONSTANTS`): cubic C11, C12, C44; hexagonal C11, C12, C13, C33,
C44 and the derived C66 = (C11 - C12) / 2; tetragonal, trigonal and orthorhombic their
six to nine; monoclinic and triclinic all 21 of the upper triangle.

Born stability: for cubic crystals C11 > |C12|, C11 + 2 C12 > 0 and C44 > 0; for any
crystal, all eigenvalues of the 6x6 Voigt matrix positive (F. Mouhat and F.-X. Coudert,
Phys. Rev. B 90, 224104 (2014)).
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.crystals import space_group
from pytest_mlpval.errors import ProtocolError, SettingsError
from pytest_mlpval.protocols.base import CostMeter, register, relax_keeping_symmetry
from pytest_mlpval.protocols.properties.common import DEFAULT_CRYSTAL
from pytest_mlpval.protocols.properties.common import (FAMILY, MAX_AMPLITUDE_SPREAD,
                                                       PropertyResult, PropertySettings,
                                                       amplitude_spreads,
                                                       assert_amplitude_independent,
                                                       relative_spread)
from pytest_mlpval.threads import single_threaded
from pytest_mlpval.units import EV_PER_A3_TO_GPA

__all__ = ["ElasticSettings", "ElasticResult", "elastic_constants", "born_stability",
           "assert_born_stable", "matscipy_symmetry", "fit_patterns", "rotate_voigt",
           "INDEPENDENT_CONSTANTS"]


def matscipy_symmetry(spacegroup_number: int) -> str:
    """The crystal class name matscipy's strain patterns use for a space group."""
    n = int(spacegroup_number)
    for low, name in ((195, "cubic"), (168, "hexagonal"), (149, "trigonal_high"),
                      (143, "trigonal_low"), (89, "tetragonal_high"), (75, "tetragonal_low"),
                      (16, "orthorhombic"), (3, "monoclinic"), (1, "triclinic")):
        if n >= low:
            return name
    raise ValueError(f"not a space group number: {spacegroup_number}")


def born_stability(C_GPa: Any, symmetry: str = "triclinic") -> tuple[bool, tuple[str, ...]]:
    """(stable, failed criteria) for a 6x6 Voigt matrix in GPa."""
    C = np.asarray(C_GPa, dtype=float)
    failed = []
    if symmetry == "cubic":
        c11, c12, c44 = C[0, 0], C[0, 1], C[3, 3]
        for ok, text in ((c11 > abs(c12), f"C11 > |C12| ({c11:.4g} vs {abs(c12):.4g})"),
                         (c11 + 2 * c12 > 0, f"C11 + 2 C12 > 0 ({c11 + 2 * c12:.4g})"),
                         (c44 > 0, f"C44 > 0 ({c44:.4g})")):
            if not ok:
                failed.append(text)
    smallest = float(np.linalg.eigvalsh(0.5 * (C + C.T)).min())
    if smallest <= 0:
        failed.append(f"all eigenvalues of C > 0 (smallest {smallest:.4g} GPa)")
    return not failed, tuple(failed)


def _matrix(C: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in C)


@dataclass(frozen=True)
class ElasticSettings(PropertySettings):
    """Settings of :func:`elastic_constants`.

    Attributes
    ----------
    crystal, symbol : str
    max_strain : float
        Largest strain along each pattern, in (0, 0.05].
    n_strains : int
        Strains evenly spaced in ``[-max_strain, max_strain]`` (at least 3).
    relax_ions : bool
        Also relax the positions at each strained cell (relaxed-ion constants).
    fmax_eV_A : float
    steps : int
        Of each ionic relaxation.
    optimizer : str
        An optimiser of ``ase.optimize``.
    spread_strains : tuple of float
        Further largest strains, each in (0, 0.05], at which the constants are fitted
        again (three strains each: -s, 0, +s; a strained cell the main scan already has
        is reused) to measure how much they move with the strain amplitude (the
        protocol uncertainty, ``C11_amplitude_spread_GPa``); empty: none. The constants
        reported are those of ``max_strain``.
    max_amplitude_spread_fraction : float
        Largest accepted relative spread of a constant over the amplitudes (relative to
        the constant, or to a tenth of the largest constant if that is more); above it
        the ready-made test fails on the roughness of the potential energy surface.
    """

    VERSION: ClassVar[int] = 3
    group: ClassVar[str] = "elastic"
    tiers: ClassVar[dict[str, dict[str, Any]]] = {"full": {"n_strains": 7}}

    crystal: str = DEFAULT_CRYSTAL
    max_strain: float = 0.01
    n_strains: int = 5
    relax_ions: bool = True
    fmax_eV_A: float = 1e-4
    steps: int = 1000
    optimizer: str = "BFGS"
    spread_strains: tuple[float, ...] = (0.005, 0.0025)
    max_amplitude_spread_fraction: float = MAX_AMPLITUDE_SPREAD

    def __post_init__(self) -> None:
        object.__setattr__(self, "spread_strains",
                           tuple(float(x) for x in self.spread_strains))
        bad = [x for x in self.spread_strains if not 0 < x <= 0.05]
        if bad:
            raise SettingsError(f"spread_strains must each be in (0, 0.05], got {bad}")
        if not self.max_amplitude_spread_fraction > 0:
            raise SettingsError(f"max_amplitude_spread_fraction must be > 0, got "
                                f"{self.max_amplitude_spread_fraction}")
        if self.n_strains < 3:
            raise SettingsError(f"n_strains must be >= 3, got {self.n_strains}")
        if not 0 < self.max_strain <= 0.05:
            raise SettingsError(f"max_strain must be in (0, 0.05], got {self.max_strain}")


@dataclass(frozen=True)
class ElasticResult(PropertyResult):
    """Elastic constants of a crystal (6x6 Voigt matrices, GPa).

    Attributes
    ----------
    crystal, symbol : str
    symmetry : str
        matscipy's crystal class, from spglib's space group.
    strains : tuple of float
        Strain amplitudes applied along each strain pattern (several magnitudes, both
        signs, zero included for an odd count).
    C_GPa : 6x6 tuple or None
        Relaxed-ion constants (None when ``relax_ions=False``).
    C_clamped_GPa : 6x6 tuple
        Clamped-ion constants from the same strained cells before the ions moved.
    stderr_GPa, stderr_clamped_GPa : 6x6 tuple
        Standard errors of the regression slopes (matscipy).
    fit_residual_GPa, fit_residual_clamped_GPa : float
        Largest RMS residual of the linear stress–strain fits (nonlinearity or noise).
    born_stable : bool
    born_failures : tuple of str
        The Born criteria that failed (of the relaxed-ion matrix when there is one).
    max_force_eV_A : float
        Largest residual force after the ionic relaxations.
    n_force_calls : int
    calculator_seconds, seconds : float
    amplitudes : tuple of float
        The largest strains of the fits: ``max_strain`` (the constants reported) first,
        then ``spread_strains``.
    amplitude_values : mapping of str to tuple of float
        Each constant of ``metrics()`` (``"C11_GPa"``) at each of ``amplitudes``.
    max_amplitude_spread_fraction : float
        The limit of the settings.
    """

    crystal: str
    symbol: str
    symmetry: str
    strains: tuple[float, ...]
    C_GPa: tuple[tuple[float, ...], ...] | None
    C_clamped_GPa: tuple[tuple[float, ...], ...]
    stderr_GPa: tuple[tuple[float, ...], ...] | None
    stderr_clamped_GPa: tuple[tuple[float, ...], ...]
    fit_residual_GPa: float
    fit_residual_clamped_GPa: float
    born_stable: bool
    born_failures: tuple[str, ...]
    max_force_eV_A: float
    n_force_calls: int
    calculator_seconds: float
    seconds: float
    amplitudes: tuple[float, ...] = ()
    amplitude_values: dict[str, tuple[float, ...]] = field(default_factory=dict)
    max_amplitude_spread_fraction: float = MAX_AMPLITUDE_SPREAD
    protocol = "elastic"
    owns = r"C\d\d(_clamped)?(_amplitude_spread)?_GPa|elastic_\w+|born_stable"

    def assert_physical(self) -> None:
        assert_born_stable(self)

    @property
    def amplitude_spread(self) -> tuple[float, str]:
        """(largest relative spread of a constant over the amplitudes, its name): the
        spread relative to the constant, or to a tenth of the largest constant if that
        is more (a constant near zero is not judged on its own scale)."""
        values = self.amplitude_values
        largest = max((abs(v[0]) for v in values.values() if v), default=0.0)
        return relative_spread(values, list(values), 0.1 * largest)

    def assert_amplitude_independent(self) -> None:
        __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
        assert_amplitude_independent(self, *self.amplitude_spread, "strain")

    @property
    def bulk_modulus_GPa(self) -> float:
        """Voigt bulk modulus, (C11 + C22 + C33 + 2 (C12 + C13 + C23)) / 9 (for cubic
        crystals (C11 + 2 C12) / 3)."""
        C = np.asarray(self.C_GPa if self.C_GPa is not None else self.C_clamped_GPa)
        return float((C[0, 0] + C[1, 1] + C[2, 2] + 2 * (C[0, 1] + C[0, 2] + C[1, 2])) / 9)

    def metrics(self) -> dict[str, float]:
        out = _constants(self.C_GPa, self.C_clamped_GPa, self.symmetry)
        if len(self.amplitudes) > 1:
            out.update(amplitude_spreads(self.amplitude_values))
            out["elastic_amplitude_spread_fraction"] = self.amplitude_spread[0]
        out.update(elastic_bulk_modulus_GPa=self.bulk_modulus_GPa,
                   elastic_fit_residual_GPa=self.fit_residual_GPa
                   if self.C_GPa is not None else self.fit_residual_clamped_GPa,
                   born_stable=float(self.born_stable))
        out.update(self.cost_metrics())
        return out


def _pairs(*names: str) -> tuple[tuple[int, int], ...]:
    return tuple((int(n[0]) - 1, int(n[1]) - 1) for n in names)


#: the independent constants reported for each crystal class (its Laue class), in the
#: standard setting (c along z; ASE's and spglib's cells); hexagonal C66 is derived,
#: (C11 - C12) / 2
INDEPENDENT_CONSTANTS: dict[str, tuple[tuple[int, int], ...]] = {
    "cubic": _pairs("11", "12", "44"),
    "hexagonal": _pairs("11", "12", "13", "33", "44", "66"),
    "trigonal_high": _pairs("11", "12", "13", "14", "33", "44"),
    "trigonal_low": _pairs("11", "12", "13", "14", "15", "33", "44"),
    "tetragonal_high": _pairs("11", "12", "13", "33", "44", "66"),
    "tetragonal_low": _pairs("11", "12", "13", "16", "33", "44", "66"),
    "orthorhombic": _pairs("11", "12", "13", "22", "23", "33", "44", "55", "66"),
    "monoclinic": tuple((i, j) for i in range(6) for j in range(i, 6)),
    "triclinic": tuple((i, j) for i in range(6) for j in range(i, 6)),
}


def fit_patterns(symmetry: str, rotation: Any = None) -> str:
    """The strain patterns fitted for a crystal class: matscipy's cubic ones (one
    pattern) for a cubic crystal whose cube axes are the Cartesian axes (``rotation``,
    spglib's ``std_rotation_matrix``, the identity or None), else the full 6x6 fit
    (``"triclinic"``: each of the six strain components alone), which holds in any
    orientation of the cell."""
    standard = rotation is None or np.allclose(rotation, np.eye(3), atol=1e-6)
    return "cubic" if symmetry == "cubic" and standard else "triclinic"


_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def rotate_voigt(C: Any, rotation: Any) -> np.ndarray:
    """The 6x6 Voigt matrix ``C`` of a crystal rotated by ``rotation`` (3x3: x' = R x),
    through the full 3x3x3x3 tensor."""
    C = np.asarray(C, dtype=float)
    tensor = np.zeros((3, 3, 3, 3))
    for p, (i, j) in enumerate(_VOIGT):
        for q, (k, m) in enumerate(_VOIGT):
            for a, b in {(i, j), (j, i)}:
                for c, d in {(k, m), (m, k)}:
                    tensor[a, b, c, d] = C[p, q]
    R = np.asarray(rotation, dtype=float)
    turned = np.einsum("ia,jb,kc,ld,abcd->ijkl", R, R, R, R, tensor)
    return np.array([[turned[i, j, k, m] for k, m in _VOIGT] for i, j in _VOIGT])


def _standard_rotation(atoms: Any, symprec: float = 1e-3) -> np.ndarray | None:
    """spglib's rotation of ``atoms``'s Cartesian frame to its standard setting (None when
    spglib cannot tell)."""
    import spglib

    cell = (np.asarray(atoms.cell[:]), atoms.get_scaled_positions(), atoms.numbers)
    try:
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception:  # spglib's SpglibError: keep the frame of the cell
        return None
    return None if dataset is None else np.asarray(dataset.std_rotation_matrix)


def _constants(C: Any, C0: Any, symmetry: str, every: bool = False) -> dict[str, float]:
    """The constants reported (``C11_GPa``, ``C44_clamped_GPa``, ...): the independent
    constants of the crystal's class (:data:`INDEPENDENT_CONSTANTS`: C11, C12, C44 of a
    cubic crystal; C11, C12, C13, C33, C44 and the derived C66 of a hexagonal one; all
    21 of a monoclinic or triclinic one). ``every`` is accepted for the callers'
    symmetry."""
    pairs = INDEPENDENT_CONSTANTS.get(symmetry, INDEPENDENT_CONSTANTS["triclinic"])
    out: dict[str, float] = {}
    for matrix, tail in ((C, ""), (C0, "_clamped")):
        if matrix is None:
            continue
        for i, j in pairs:
            value = matrix[i][j]
            if symmetry == "hexagonal" and (i, j) == (5, 5):
                value = 0.5 * (matrix[0][0] - matrix[0][1])
            out[f"C{i + 1}{j + 1}{tail}_GPa"] = float(value)
    return out


def _fit(configs: list, symmetry: str, n_strains: int, delta: float):
    """matscipy's regression with the strain patterns ``symmetry`` (:func:`fit_patterns`),
    and the largest RMS residual of its linear fits (GPa)."""
    from matscipy.elasticity import (
        fit_elastic_constants,
        full_3x3_to_Voigt_6_strain,
        strain_patterns,
    )

    C, C_err = fit_elastic_constants(configs, symmetry=symmetry, N_steps=n_strains,
                                     delta=delta, optimizer=None, verbose=False)
    worst = 0.0
    for p, (_, pairs) in enumerate(strain_patterns[symmetry]):
        block = configs[p * n_strains:(p + 1) * n_strains]
        strain = np.array([full_3x3_to_Voigt_6_strain(a.info["strain"]) for a in block])
        stress = np.array([a.get_stress() for a in block]) * EV_PER_A3_TO_GPA
        for i, j in pairs:
            fit = np.polyfit(strain[:, j], stress[:, i], 1)
            residual = stress[:, i] - np.polyval(fit, strain[:, j])
            worst = max(worst, float(np.sqrt(np.mean(residual ** 2))))
    return C * EV_PER_A3_TO_GPA, C_err * EV_PER_A3_TO_GPA, worst


def _frozen_copy(atoms: Any) -> Any:
    from ase.calculators.singlepoint import SinglePointCalculator

    stress = atoms.get_stress()  # first: one calculation gives energy and forces too
    copy = atoms.copy()
    copy.calc = SinglePointCalculator(copy, energy=atoms.get_potential_energy(),
                                      forces=atoms.get_forces(), stress=stress)
    return copy


@single_threaded
def elastic_constants(calc: Any, settings: ElasticSettings | None = None, *,
                      atoms: Any = None, **overrides: Any) -> ElasticResult:
    """Elastic constants of ``crystal`` (or ``atoms``; relaxed first, symmetry kept).
    ``overrides`` replace fields of ``settings`` (:class:`ElasticSettings`).

    ``n_strains`` strains evenly spaced in ``[-max_strain, max_strain]`` are applied along
    each strain pattern matscipy needs for the crystal class (one for cubic). At each,
    the stress is read with the ions clamped and, with ``relax_ions``, again after the
    positions are relaxed at the fixed strained cell (to ``fmax_eV_A``; a relaxation that
    does not converge in ``steps`` raises :class:`~pytest_mlpval.errors.ProtocolError`).
    The constants are fitted again from three strains (-s, 0, +s) at each of
    ``spread_strains`` (cells of the main scan reused) for their amplitude spread.
    """
    import ase.optimize
    from matscipy.elasticity import generate_strained_configs

    s = ElasticSettings.of(settings, **overrides)
    crystal, n_strains, relax_ions = s.crystal, s.n_strains, s.relax_ions
    opt_class = getattr(ase.optimize, s.optimizer, None)
    if opt_class is None:
        raise SettingsError(f"unknown ASE optimizer {s.optimizer!r}")
    meter = CostMeter(calc)
    relaxed = relax_keeping_symmetry(meter.calc, crystal, s.symbol, atoms,
                                     fmax_eV_A=min(s.fmax_eV_A * 10, 1e-3), steps=500)[0]
    base = relaxed.atoms
    number, _ = space_group(base)
    symmetry = matscipy_symmetry(number)
    rotation = _standard_rotation(base)
    patterns = fit_patterns(symmetry, rotation)
    if rotation is not None and np.allclose(rotation, np.eye(3), atol=1e-6):
        rotation = None  # the standard frame already

    def fit(configs: list, n: int, step: float) -> tuple:
        C, C_err, residual = _fit(configs, patterns, n, step)
        if rotation is not None:  # report in the crystal's standard frame
            C, C_err = rotate_voigt(C, rotation), np.abs(rotate_voigt(C_err, rotation))
        return C, C_err, residual

    delta = 2 * s.max_strain / (n_strains - 1)
    done: dict[tuple[float, ...], tuple[Any, Any]] = {}

    def scan(n: int, step: float) -> tuple[list, list]:
        """Clamped and relaxed copies of the strained cells of ``n`` strains ``step``
        apart along each pattern (a strain already computed is reused)."""
        clamped, relaxed = [], []
        for strained in generate_strained_configs(base, patterns, n, step):
            key = tuple(np.round(np.asarray(strained.info["strain"]), 12).ravel())
            if key not in done:
                done[key] = _strain(strained, meter.calc, relax_ions, opt_class, s)
            clamped.append(done[key][0])
            relaxed.append(done[key][1])
        return clamped, relaxed

    clamped, relaxed_configs = scan(n_strains, delta)
    extra = [(amplitude, *scan(3, amplitude)) for amplitude in s.spread_strains]
    max_force = max((float(np.abs(r.get_forces()).max()) for _, r in done.values()
                     if r is not None), default=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # linregress on exactly zero stress
        C0, C0_err, res0 = fit(clamped, n_strains, delta)
        C, C_err, res = fit(relaxed_configs, n_strains, delta) if relax_ions \
            else (None, None, float("nan"))
        reported = _constants(C, C0, symmetry)
        per_amplitude = [reported]
        for amplitude, c0, c in extra:
            per_amplitude.append(_constants(
                fit(c, 3, amplitude)[0] if relax_ions else None,
                fit(c0, 3, amplitude)[0], symmetry, every=True))
    stable, failures = born_stability(C if C is not None else C0, symmetry)
    strains = tuple(float(delta * (k + 1 - (n_strains + 1) / 2)) for k in range(n_strains))
    return ElasticResult(crystal, s.symbol, symmetry, strains,
                         _matrix(C) if C is not None else None, _matrix(C0),
                         _matrix(C_err) if C_err is not None else None, _matrix(C0_err),
                         res, res0, stable, failures, max_force, **meter.cost(),
                         amplitudes=(float(s.max_strain),) + s.spread_strains,
                         amplitude_values={name: tuple(m[name] for m in per_amplitude)
                                           for name in reported},
                         max_amplitude_spread_fraction=s.max_amplitude_spread_fraction)


def _strain(strained: Any, calc: Any, relax_ions: bool, opt_class: Any,
            s: ElasticSettings) -> tuple[Any, Any]:
    """(clamped, relaxed or None) frozen copies of one strained cell."""
    strained.calc = calc
    clamped = _frozen_copy(strained)
    if not relax_ions:
        return clamped, None
    opt = opt_class(strained, logfile=None)
    if not opt.run(fmax=s.fmax_eV_A, steps=s.steps):
        raise ProtocolError(
            f"ionic relaxation of {s.crystal} at strain "
            f"{np.round(strained.info['strain'], 5).tolist()} did not reach fmax "
            f"{s.fmax_eV_A:g} eV/Å in {s.steps} steps")
    return clamped, _frozen_copy(strained)


def assert_born_stable(result: ElasticResult) -> None:
    """Raise :class:`~pytest_mlpval.assertions.MlpvalAssertionError` listing the failed
    Born criteria."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if result.born_stable:
        return
    rows = [[name, value] for name, value in result.metrics().items()
            if name.startswith("C") and name.endswith("_GPa")]
    raise MlpvalAssertionError("\n".join(
        [f"{result.crystal} is mechanically unstable (Born criteria failed: "
         f"{'; '.join(result.born_failures)})", ""] + format_table(["constant", "GPa"], rows)))


register("elastic", elastic_constants, ElasticSettings, ElasticResult, family=FAMILY)
