"""Harmonic phonons with phonopy: frequencies at high-symmetry points sorted into branches,
a band path, the density of states and a dynamical-stability check.

Plain library (no pytest).

phonopy (finite displacements in a supercell, Python API) does the physics; ASE gives the
special points and band path of the primitive cell's Bravais lattice (FCC for diamond:
Gamma, X, L, ...). For a primitive cell of two atoms (diamond, zincblende) the modes at
each special point are labelled from their eigenvectors: a mode is longitudinal when most
of its displacement lies along q; the lower transverse pair is TA and the upper TO, the
lower longitudinal mode LA and the upper LO; degenerate pairs are reported as one value
(``phonon_X_LA_LO_THz``; ``phonon_gamma_LTO_THz`` for the triply degenerate optical mode
at Gamma). Names follow the reference table (Nilsson and Nelin, Phys. Rev. B 6, 3777
(1972) for silicon). For one atom (fcc, bcc metals) the three acoustic modes are labelled
LA and TA (``phonon_X_LA_THz``, ``phonon_X_TA_THz``; ``phonon_N_TA1_THz``,
``phonon_N_TA2_THz`` when the transverse pair splits; ``phonon_H_LA_TA_THz`` when all
three coincide). Any crystal works (phonopy finds its primitive cell); larger cells get
the frequencies, the band path of their lattice and the stability check, unlabelled.

Imaginary frequencies are negative numbers (phonopy's convention). A crystal is
dynamically stable when no frequency on the mesh or the band path is below
``-imaginary_tol_THz``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.crystals import build_crystal
from pytest_mlpval.descriptors import cell_widths
from pytest_mlpval.errors import ProtocolError, SettingsError
from pytest_mlpval.protocols.base import CostMeter, register, relax_keeping_symmetry
from pytest_mlpval.protocols.properties.common import DEFAULT_CRYSTAL
from pytest_mlpval.protocols.properties.common import (FAMILY, MAX_AMPLITUDE_SPREAD,
                                                       PropertyResult, PropertySettings,
                                                       amplitude_spreads,
                                                       assert_amplitude_independent,
                                                       relative_spread, spreads_not_measured)
from pytest_mlpval.references import MissingReferenceError, load_references
from pytest_mlpval.threads import single_threaded

__all__ = ["PhononSettings", "PhononResult", "phonons", "assert_dynamically_stable",
           "branch_labels", "acoustic_labels", "band_figure"]


def _experimental_points(symbol: str) -> dict[str, list[float]]:
    """Experimental frequencies (THz) at each special point from the reference table."""
    try:
        table = load_references(symbol)
    except MissingReferenceError:
        return {}
    points: dict[str, list[float]] = {}
    for name in table.properties():
        parts = name.split("_")
        if parts[0] != "phonon" or not name.endswith("_THz") or len(parts) < 4:
            continue
        try:
            value = table.get(name, "experiment").value
        except MissingReferenceError:
            continue
        point = "G" if parts[1] == "gamma" else parts[1]
        points.setdefault(point, []).append(value)
    return points


def band_figure(per_potential: dict[str, dict[str, Any]]):
    """Phonon bands of each potential side by side (:meth:`PhononResult.report_data`),
    with the experimental frequencies of the reference table at the special points."""
    from matplotlib.figure import Figure

    names = sorted(per_potential)
    fig = Figure(figsize=(4.2 * len(names), 3.6), layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, pot in zip(axes, names):
        data = per_potential[pot]
        x = np.asarray(data["distances"])
        ax.plot(x, np.asarray(data["frequencies_THz"]), color="tab:blue", linewidth=1)
        experiment = _experimental_points(data["symbol"])
        labelled = False
        for position, label in data.get("special_points", []):
            ax.axvline(position, color="0.8", linewidth=0.5)
            values = experiment.get(label, [])
            ax.plot([position] * len(values), values, "o", color="tab:red", markersize=4,
                    label=None if labelled or not values else "experiment")
            labelled = labelled or bool(values)
        ticks = data.get("special_points", [])
        ax.set_xticks([t[0] for t in ticks],
                      [r"$\Gamma$" if t[1] == "G" else t[1] for t in ticks])
        ax.axhline(0, color="0.5", linewidth=0.5)
        ax.set_xlim(x.min(), x.max())
        ax.set_title(pot + ("" if data.get("stable", True) else " (unstable)"),
                     fontsize="small")
        if labelled:
            ax.legend(fontsize="x-small", loc="lower right")
    axes[0].set_ylabel("frequency (THz)")
    return fig


@dataclass(frozen=True)
class PhononSettings(PropertySettings):
    """Settings of :func:`phonons`.

    Attributes
    ----------
    crystal, symbol : str
    supercell : int, three ints or None
        Repetitions of the unit cell (an int for all three directions); None: the
        smallest with every face-to-face width at least ``min_length_A``.
    min_length_A : float
    displacement_A : float
        Finite displacement (> 0).
    mesh : three ints
        Gamma-centred mesh of the DOS and the stability check.
    band_path : str or None
        An ASE path string (ASE's default path of the lattice if None).
    band_npoints : int
    imaginary_tol_THz : float
        Frequencies down to ``-imaginary_tol_THz`` count as stable.
    relax : bool
        Relax the crystal first (symmetry kept).
    fmax_eV_A : float
    steps : int
        Of that relaxation.
    dos_pitch_THz, degenerate_tol_THz : float
    label_points : tuple of str
        Special points whose branches are labelled (one- and two-atom primitive cells);
        all special points of the lattice when none but Gamma is one of its (bcc).
    spread_displacements_A : tuple of float
        Further finite displacements (each > 0) at which the force constants are taken
        again, to measure how much the labelled branches and the highest frequency move
        with the displacement (the protocol uncertainty,
        ``phonon_gamma_LTO_amplitude_spread_THz``); empty: none. The frequencies
        reported are those of ``displacement_A``.
    max_amplitude_spread_fraction : float
        Largest accepted relative spread of a branch over the displacements (relative
        to the branch, or to a tenth of the highest frequency if that is more); above it
        the ready-made test fails on the roughness of the potential energy surface.
    """

    VERSION: ClassVar[int] = 2
    group: ClassVar[str] = "phonons"
    tiers: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"mesh": (8, 8, 8)}}

    crystal: str = DEFAULT_CRYSTAL
    supercell: int | tuple[int, ...] | None = None
    min_length_A: float = 10.0
    displacement_A: float = 0.01
    mesh: tuple[int, ...] = (12, 12, 12)
    band_path: str | None = None
    band_npoints: int = 101
    imaginary_tol_THz: float = 0.05
    relax: bool = True
    fmax_eV_A: float = 1e-3
    steps: int = 500
    dos_pitch_THz: float = 0.1
    degenerate_tol_THz: float = 0.05
    label_points: tuple[str, ...] = ("G", "X", "L")
    spread_displacements_A: tuple[float, ...] = (0.005, 0.02)
    max_amplitude_spread_fraction: float = MAX_AMPLITUDE_SPREAD

    def __post_init__(self) -> None:
        if self.displacement_A <= 0:
            raise SettingsError(f"displacement_A must be > 0, got {self.displacement_A}")
        object.__setattr__(self, "spread_displacements_A",
                           tuple(float(x) for x in self.spread_displacements_A))
        bad = [x for x in self.spread_displacements_A if not x > 0]
        if bad:
            raise SettingsError(f"spread_displacements_A must each be > 0, got {bad}")
        if not self.max_amplitude_spread_fraction > 0:
            raise SettingsError(f"max_amplitude_spread_fraction must be > 0, got "
                                f"{self.max_amplitude_spread_fraction}")
        for name in ("mesh", "label_points") + (
                ("supercell",) if isinstance(self.supercell, (list, tuple)) else ()):
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class PhononResult(PropertyResult):
    """Phonons of a crystal.

    Attributes
    ----------
    crystal, symbol : str
    lattice_parameter_A : float
        First cell length of the (relaxed) unit cell used.
    supercell_matrix : 3x3 tuple of int
        Supercell of the unit cell (conventional cell as built) in which forces were taken.
    n_supercell_atoms : int
    min_supercell_width_A : float
        Smallest distance between opposite faces of the supercell.
    displacement_A : float
    n_displacements : int
    special_points : mapping of str to tuple of float
        Reduced coordinates (primitive reciprocal basis) of the special points (ASE names,
        ``"G"`` is Gamma).
    frequencies_THz : mapping of str to tuple of float
        Sorted frequencies at each special point.
    branches_THz : mapping of str to float
        Labelled branches (``"gamma_LTO"``, ``"X_TA"``, ``"L_LA"``, ...); empty unless the
        primitive cell has two atoms.
    band_path : str
        ASE path string (``"GXWKGLUWLK,UX"`` for FCC).
    band_distances : tuple of float
        Path coordinate (1/Å) of each band point.
    band_frequencies_THz : tuple of tuple of float
        Frequencies at each band point.
    dos_frequencies_THz, dos : tuple of float
        Total density of states on the mesh (states/THz per primitive cell).
    mesh : tuple of int
        Gamma-centred mesh of the DOS and the stability check.
    min_frequency_THz : float
        Lowest frequency on the mesh and the band path (negative = imaginary).
    min_frequency_qpoint : tuple of float
    imaginary_tol_THz : float
    stable : bool
        ``min_frequency_THz >= -imaginary_tol_THz``.
    n_force_calls : int
    calculator_seconds, seconds : float
    amplitudes : tuple of float
        The finite displacements (Å): ``displacement_A`` (the frequencies reported)
        first, then ``spread_displacements_A``.
    amplitude_values : mapping of str to tuple of float
        Each labelled branch (``"phonon_gamma_LTO_THz"``) and
        ``phonon_max_frequency_THz`` at each of ``amplitudes`` (NaN where a branch
        could not be labelled).
    max_amplitude_spread_fraction : float
        The limit of the settings.
    """

    crystal: str
    symbol: str
    lattice_parameter_A: float
    supercell_matrix: tuple[tuple[int, ...], ...]
    n_supercell_atoms: int
    min_supercell_width_A: float
    displacement_A: float
    n_displacements: int
    special_points: dict[str, tuple[float, ...]]
    frequencies_THz: dict[str, tuple[float, ...]]
    branches_THz: dict[str, float]
    band_path: str
    band_distances: tuple[float, ...]
    band_frequencies_THz: tuple[tuple[float, ...], ...]
    dos_frequencies_THz: tuple[float, ...]
    dos: tuple[float, ...]
    mesh: tuple[int, ...]
    min_frequency_THz: float
    min_frequency_qpoint: tuple[float, ...]
    imaginary_tol_THz: float
    stable: bool
    n_force_calls: int
    calculator_seconds: float
    seconds: float
    amplitudes: tuple[float, ...] = ()
    amplitude_values: dict[str, tuple[float, ...]] = field(default_factory=dict)
    max_amplitude_spread_fraction: float = MAX_AMPLITUDE_SPREAD
    protocol = "phonons"
    owns = r"phonon_\w+"
    figure = staticmethod(band_figure)

    def assert_physical(self) -> None:
        assert_dynamically_stable(self)

    @property
    def amplitude_spread(self) -> tuple[float, str]:
        """(largest relative spread of a branch over the displacements, its name):
        relative to the branch, or to a tenth of the highest frequency if that is more
        (the acoustic branches near zero are not judged on their own scale)."""
        highest = self.amplitude_values.get("phonon_max_frequency_THz", (0.0,))[0]
        return relative_spread(self.amplitude_values, list(self.amplitude_values),
                               0.1 * abs(highest))

    def assert_amplitude_independent(self) -> None:
        __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
        assert_amplitude_independent(self, *self.amplitude_spread, "displacement (Å)")

    def metrics(self) -> dict[str, float]:
        out = {f"phonon_{name}_THz": value for name, value in self.branches_THz.items()}
        out.update(phonon_min_frequency_THz=self.min_frequency_THz,
                   phonon_max_frequency_THz=max(max(f) for f in self.band_frequencies_THz),
                   phonon_stable=float(self.stable))
        if len(self.amplitudes) > 1:
            out.update(amplitude_spreads(self.amplitude_values))
            out["phonon_amplitude_spread_fraction"] = self.amplitude_spread[0]
        out.update(self.cost_metrics())
        return out

    def not_measured(self) -> set[str]:
        """The amplitude spreads of branches that could not be labelled at some
        displacement."""
        return spreads_not_measured(self.amplitude_values,
                                    "phonon_amplitude_spread_fraction")

    def special_point_positions(self) -> list[tuple[float, str]]:
        """(path coordinate, label) of the special points on the band path, for the
        diamond-structure crystals whose path ASE rebuilds from the lattice parameter
        (empty otherwise)."""
        try:
            from ase.build import bulk

            path = bulk(self.symbol, self.crystal, a=self.lattice_parameter_A).cell.bandpath(
                self.band_path, npoints=len(self.band_distances))
            _, ticks, labels = path.get_linear_kpoint_axis()
        except Exception:  # another crystal: no labels rather than wrong ones
            return []
        if not np.allclose(path.get_linear_kpoint_axis()[0], self.band_distances, atol=1e-6):
            return []
        return [(float(x), str(label)) for x, label in zip(ticks, labels)]

    def report_data(self, max_points: int = 160) -> dict[str, Any]:
        """For the HTML report: the band structure (at most ``max_points`` path points),
        the special points and the labelled branches, drawn by :func:`band_figure` with
        the experimental frequencies at Gamma, X and L."""
        step = max(1, -(-len(self.band_distances) // max_points))
        return {"symbol": self.symbol,
                "crystal": self.crystal, "distances": list(self.band_distances[::step]),
                "frequencies_THz": [list(f) for f in self.band_frequencies_THz[::step]],
                "special_points": self.special_point_positions(),
                "branches_THz": dict(self.branches_THz), "stable": self.stable}


def branch_labels(point: str, frequencies: np.ndarray, eigenvectors: np.ndarray,
                  q_cart: np.ndarray, tol_THz: float = 0.05) -> dict[str, float]:
    """Labels for the six modes of a two-atom primitive cell at one special point.

    ``frequencies`` (6,), ``eigenvectors`` (6, 6) with modes as columns (phonopy),
    ``q_cart`` the point's Cartesian direction. Returns {} when the modes do not split
    into the expected longitudinal/transverse sets.
    """
    order = np.argsort(frequencies)
    f = np.asarray(frequencies)[order]
    name = "gamma" if point in ("G", "Gamma") else point
    if np.linalg.norm(q_cart) < 1e-12:
        optical = f[3:]
        if optical.max() - optical.min() < tol_THz:
            return {f"{name}_LTO": float(optical.mean())}
        return {f"{name}_TO": float(optical[:2].mean()), f"{name}_LO": float(optical[2])}
    direction = q_cart / np.linalg.norm(q_cart)
    vectors = eigenvectors[:, order].T.reshape(6, 2, 3)
    longitudinal = np.array([np.sum(np.abs(v @ direction) ** 2) / np.sum(np.abs(v) ** 2)
                             for v in vectors])
    is_long = longitudinal > 0.5
    if is_long.sum() != 2:
        return {}
    trans, lon = f[~is_long], f[is_long]
    out = {f"{name}_TA": float(trans[:2].mean()), f"{name}_TO": float(trans[2:].mean())}
    if lon[1] - lon[0] < tol_THz:
        out[f"{name}_LA_LO"] = float(lon.mean())
    else:
        out[f"{name}_LA"], out[f"{name}_LO"] = float(lon[0]), float(lon[1])
    return out


def _phonopy(unit: Any, supercell: np.ndarray):
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms
    from phonopy.structure.cells import guess_primitive_matrix

    cell = PhonopyAtoms(symbols=unit.get_chemical_symbols(), cell=np.asarray(unit.cell),
                        scaled_positions=unit.get_scaled_positions())
    return Phonopy(cell, supercell_matrix=supercell,
                   primitive_matrix=guess_primitive_matrix(cell))


@single_threaded
def phonons(calc: Any, settings: PhononSettings | None = None, *, atoms: Any = None,
            **overrides: Any) -> PhononResult:
    """Phonons of ``crystal`` (or ``atoms``), relaxed first unless ``relax=False``.
    ``overrides`` replace fields of ``settings`` (:class:`PhononSettings`).

    ``supercell``: repetitions of the unit cell (an int for all three directions, or
    three ints); by default the smallest with every face-to-face width at least
    ``min_length_A``. ``band_path`` is an ASE path string (ASE's default path of the
    lattice if None). Branches are labelled at ``label_points`` (two-atom primitive
    cells only), where symmetry separates longitudinal from transverse modes. The force
    constants are taken again at each of ``spread_displacements_A`` for the spread of
    the branches and the highest frequency over the displacements.
    """
    from ase.cell import Cell

    s = PhononSettings.of(settings, **overrides)
    crystal, supercell, displacement_A = s.crystal, s.supercell, s.displacement_A
    meter = CostMeter(calc)
    if s.relax:
        unit = relax_keeping_symmetry(meter.calc, crystal, s.symbol, atoms,
                                      fmax_eV_A=s.fmax_eV_A, steps=s.steps)[0].atoms
    else:
        unit = (build_crystal(crystal, s.symbol) if atoms is None else atoms).copy()
    if supercell is None:
        reps = np.ceil(s.min_length_A / cell_widths(np.asarray(unit.cell)) - 1e-9).astype(int)
    else:
        reps = np.broadcast_to(np.asarray(supercell, dtype=int), (3,))
    if (reps < 1).any():
        raise SettingsError(f"supercell repetitions must be >= 1, got {reps.tolist()}")
    matrix = np.diag(reps)
    phonon = _phonopy(unit, matrix)  # one symmetry search serves every displacement
    prim_cell = Cell(np.asarray(phonon.primitive.cell))
    path = prim_cell.bandpath(s.band_path, npoints=s.band_npoints)
    special = {k: tuple(float(x) for x in v) for k, v in path.special_points.items()}
    values = []
    for amplitude in s.spread_displacements_A + (displacement_A,):  # the reported last
        _force_constants(phonon, amplitude, meter.calc)
        frequencies, branches = _special_points(phonon, special, prim_cell, s)
        phonon.run_qpoints(path.kpts)
        band = np.asarray(phonon.qpoints.frequencies)
        values.append(_amplitude_values(branches, band))
    values.insert(0, values.pop())
    distances = path.get_linear_kpoint_axis()[0]
    phonon.run_mesh(list(s.mesh), is_gamma_center=True)
    mesh_freqs = np.asarray(phonon.mesh.frequencies)
    mesh_q = np.asarray(phonon.mesh.qpoints)
    phonon.run_total_dos(freq_pitch=s.dos_pitch_THz)
    dos = phonon.total_dos
    candidates = [(float(band.min()), tuple(map(float, path.kpts[np.argmin(band.min(1))]))),
                  (float(mesh_freqs.min()),
                   tuple(map(float, mesh_q[np.argmin(mesh_freqs.min(1))])))]
    fmin, qmin = min(candidates)
    if not math.isfinite(fmin):
        raise ProtocolError(f"phonon frequencies of {crystal} are not finite")
    return PhononResult(
        crystal, s.symbol, float(unit.cell.lengths()[0]),
        tuple(tuple(int(x) for x in row) for row in matrix),
        int(len(unit) * np.prod(reps)),
        float(cell_widths(np.asarray(unit.cell) * reps[:, None]).min()),
        float(displacement_A), len(phonon.forces), special, frequencies, branches, path.path,
        tuple(map(float, distances)), tuple(tuple(map(float, f)) for f in band),
        tuple(map(float, dos.frequency_points)), tuple(map(float, dos.dos)),
        tuple(int(m) for m in s.mesh), fmin, qmin, float(s.imaginary_tol_THz),
        fmin >= -s.imaginary_tol_THz, **meter.cost(),
        amplitudes=(float(displacement_A),) + s.spread_displacements_A,
        amplitude_values={name: tuple(v.get(name, math.nan) for v in values)
                          for name in values[0]},
        max_amplitude_spread_fraction=s.max_amplitude_spread_fraction)


def _force_constants(phonon: Any, displacement_A: float, calc: Any) -> None:
    """Set the force constants of ``phonon`` (a Phonopy object) from displacements of
    ``displacement_A`` (one calculator call each)."""
    from ase import Atoms

    phonon.generate_displacements(distance=displacement_A)
    forces = []
    for displaced in phonon.supercells_with_displacements:
        cell = Atoms(displaced.symbols, cell=displaced.cell,
                     scaled_positions=displaced.scaled_positions, pbc=True)
        cell.calc = calc
        forces.append(np.array(cell.get_forces()))
    phonon.forces = forces
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()


def _special_points(phonon: Any, special: dict[str, tuple[float, ...]], prim_cell: Any,
                    s: PhononSettings) -> tuple[dict[str, tuple[float, ...]], dict[str, float]]:
    """(sorted frequencies at each special point, labelled branches) in THz."""
    names = list(special)
    phonon.run_qpoints([special[k] for k in names], with_eigenvectors=True)
    freqs = np.asarray(phonon.qpoints.frequencies)
    vecs = np.asarray(phonon.qpoints.eigenvectors)
    reciprocal = np.asarray(prim_cell.reciprocal())
    frequencies = {k: tuple(float(x) for x in np.sort(freqs[i])) for i, k in enumerate(names)}
    branches: dict[str, float] = {}
    points = [k for k in names if k in s.label_points]
    if not [k for k in points if k not in ("G", "Gamma")]:
        points = names  # none of label_points is on this lattice (bcc: G, H, N, P)
    labeller = {1: acoustic_labels, 2: branch_labels}.get(len(phonon.primitive))
    if labeller is not None:
        for i, k in enumerate(names):
            if k not in points:
                continue
            branches.update(labeller(k, freqs[i], vecs[i],
                                     np.asarray(special[k]) @ reciprocal,
                                     s.degenerate_tol_THz))
    return frequencies, branches


def acoustic_labels(point: str, frequencies: np.ndarray, eigenvectors: np.ndarray,
                    q_cart: np.ndarray, tol_THz: float = 0.05) -> dict[str, float]:
    """Labels for the three modes of a one-atom primitive cell (fcc, bcc metals) at one
    special point: the longitudinal ``LA`` and the transverse ``TA`` (``TA1``, ``TA2``
    when they split); ``<point>_LA_TA`` when all three are degenerate (bcc H). Nothing at
    Gamma (all zero) or when the modes do not split into one longitudinal and two
    transverse."""
    if np.linalg.norm(q_cart) < 1e-12:
        return {}
    order = np.argsort(frequencies)
    f = np.asarray(frequencies)[order]
    if f.max() - f.min() < tol_THz:
        return {f"{point}_LA_TA": float(f.mean())}
    direction = q_cart / np.linalg.norm(q_cart)
    vectors = np.asarray(eigenvectors)[:, order].T.reshape(3, 3)
    longitudinal = np.abs(vectors @ direction) ** 2 / np.sum(np.abs(vectors) ** 2, axis=1)
    is_long = longitudinal > 0.5
    if is_long.sum() != 1:
        return {}
    trans, lon = f[~is_long], f[is_long]
    out = {f"{point}_LA": float(lon[0])}
    if trans[1] - trans[0] < tol_THz:
        out[f"{point}_TA"] = float(trans.mean())
    else:
        out[f"{point}_TA1"], out[f"{point}_TA2"] = float(trans[0]), float(trans[1])
    return out


def _amplitude_values(branches: dict[str, float], band: np.ndarray) -> dict[str, float]:
    """The metrics whose spread over the displacements is recorded."""
    return {**{f"phonon_{name}_THz": value for name, value in branches.items()},
            "phonon_max_frequency_THz": float(band.max())}


def assert_dynamically_stable(result: PhononResult) -> None:
    """Raise :class:`~pytest_mlpval.assertions.MlpvalAssertionError` when the crystal has
    imaginary modes beyond the tolerance."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if result.stable:
        return
    rows = [[k, min(v)] for k, v in result.frequencies_THz.items()]
    raise MlpvalAssertionError("\n".join(
        [f"{result.crystal} is dynamically unstable: lowest frequency "
         f"{result.min_frequency_THz:.3f} THz at q = {np.round(result.min_frequency_qpoint, 3)}"
         f" (tolerance -{result.imaginary_tol_THz} THz; negative = imaginary)",
         f"supercell {result.n_supercell_atoms} atoms, displacement "
         f"{result.displacement_A} Å", ""]
        + format_table(["special point", "lowest THz"], rows)))


register("phonons", phonons, PhononSettings, PhononResult, family=FAMILY)
