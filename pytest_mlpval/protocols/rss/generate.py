"""Settings and the random structure generator of the random structure search.

Plain library (no pytest); see :mod:`pytest_mlpval.protocols.rss.search`. An invalid
setting is a :class:`~pytest_mlpval.errors.SettingsError` naming it.

The generator follows the recipe of AIRSS (Pickard and Needs, J. Phys.: Condens. Matter
23, 053201 (2011)): a random number of formula units, a random volume per atom in a range,
a random cell (three angles and three lengths, within shape limits) scaled to that volume,
and atoms placed one by one at random positions at least a minimum separation away from
every atom placed before and from all periodic images. A cell or a placement that fails is
drawn again, up to ``max_attempts`` times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from pytest_mlpval.descriptors import SI_SOAP, SoapSettings, cell_widths
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.base import Settings
from pytest_mlpval.protocols.rss.composition import (ReferenceCrystal, default_volume_range,
                                                     formula_of, given_separations,
                                                     normalise_references, pair_separations,
                                                     parse_composition, reference_name)

__all__ = ["RssSettings", "RssGenerationError", "generate",
           "MIN_VOLUME_FACTOR"]

#: cells whose volume is below this fraction of a*b*c (nearly flat cells: e.g. all three
#: angles near 120 degrees) are drawn again; a cube has 1, any single angle of 60 or 120
#: degrees with the others at 90 gives 0.87
MIN_VOLUME_FACTOR = 0.5
#: candidate positions tried per atom before the structure is drawn again
TRIES_PER_ATOM = 256
_BATCH = 32


class RssGenerationError(SettingsError):
    """No structure satisfies the settings (minimum separation too large for the
    volume, or cell-shape limits that leave no room)."""


def _pair(value: Any, name: str, kind: type) -> tuple:
    try:
        lo, hi = value
        return kind(lo), kind(hi)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a (min, max) pair, got {value!r}") from None


@dataclass(frozen=True)
class RssSettings(Settings):
    """What a random structure search generates and how it relaxes it.

    The defaults are silicon's (diamond: 20.0 Å^3/atom, 2.35 Å bonds; sh near 16 Å^3),
    scaled to any other composition by covalent radii
    (:mod:`~pytest_mlpval.protocols.rss.composition`), e.g. for SiC::

        RssSettings(composition="SiC", atoms_per_cell=(2, 8),
                    references={"zincblende": bulk("SiC", "zincblende", a=4.36)})

    Attributes
    ----------
    composition : str, mapping or sequence
        The formula unit, e.g. ``"Si"``, ``"SiO2"``, ``{"Si": 1}`` or ``["Si", "O", "O"]``;
        kept as ratios (reduced by their common divisor) in ``((symbol, count), ...)``.
        Every cell holds whole formula units.
    atoms_per_cell : (int, int)
        Inclusive range of atoms per cell; the number of formula units is drawn uniformly
        among those that fit.
    volume_per_atom_A3 : (float, float) or None
        Range of the initial volume per atom in Å^3 (drawn uniformly). None: silicon's
        14-26 Å^3/atom scaled by the composition's mean cubed covalent radius
        (:attr:`volume_range`).
    min_separation_A : float, mapping or None
        Smallest initial distance between atoms (periodic images included) in Å: one
        number for every element pair, or per pair (``{"Si-C": 1.5, "C-C": 1.2}``; pairs
        not given follow the default). None: silicon's 1.8 Å scaled by covalent radii,
        ``1.8 (r_A + r_B) / (2 r_Si)`` (:attr:`pair_separations`).
    min_angle_deg, max_angle_deg : float
        Range of the three cell angles in degrees (must contain 90).
    max_length_ratio : float
        Largest ratio of two cell lengths.
    n_structures : int
    seed : int
        Structure ``i`` depends only on ``(seed, i)``.
    fmax_eV_A : float
        Force convergence criterion of the relaxation in eV/Å (cell included).
    max_steps : int
        Optimiser step limit; a relaxation stopped by it is ``not_converged``.
    optimizer : str
        An ASE optimiser class name (``FIRE``, ``BFGS``, ``LBFGS``, ...).
    pressure_GPa : float
        External pressure of the cell relaxation in GPa (enthalpy minima).
    soap : SoapSettings
        SOAP settings of the similarity to the reference crystals; without ``species``
        the composition's elements (one SOAP over every element of the search).
    diamond_cutoff : float
        A minimum is like a reference crystal (:meth:`RssResult.count_similar`), and
        diamond-like, when its mean SOAP similarity to the candidate's relaxed crystal
        exceeds this (0.99: the tutorial's definition).
    references : names, Atoms, callables, a mapping of them, or None
        Crystals relaxed with the candidate at ``pressure_GPa`` (symmetry kept) to which
        every minimum is compared: names of :func:`~pytest_mlpval.crystals.build_crystal`
        (silicon's phases, scaled to an element; an error for a compound), ASE Atoms, a
        callable returning Atoms, or ``{name: Atoms or callable or name}``; kept as
        names and :class:`~pytest_mlpval.protocols.rss.composition.ReferenceCrystal`
        (:func:`~pytest_mlpval.protocols.rss.composition.normalise_references`). None:
        diamond for an element, none for a compound (:attr:`crystals`).
    energy_floor_eV : float
        A relaxed structure with a lower energy per atom (eV/atom) has ``exploded``.
    sane_volume_per_atom_A3 : (float, float) or None
        A relaxed structure with a volume per atom (Å^3) outside has ``exploded``;
        default: a third of the smallest to three times the largest initial volume.
    distance_floor_A : float
        A relaxed structure with two atoms closer (Å) has ``exploded``.
    max_attempts : int
        Cells drawn per structure before :class:`RssGenerationError`.
    max_seconds_per_structure : float or None
        Wall-time limit of one structure's generation and relaxation in seconds (checked
        at every calculator call); a relaxation that reaches it is ``failed`` with a
        ``RelaxationTimeout`` error and is not cached (a rerun tries again). None: no
        limit. Not part of the cache key.
    units_per_cell : (int, int) or None
        Inclusive range of formula units per cell instead of ``atoms_per_cell`` (which it
        then sets: ``SiO2`` with ``(1, 3)`` gives 3-9 atoms).
    """

    #: bump when the relaxation record changes meaning (part of the cache key)
    VERSION: ClassVar[int] = 1

    composition: Any = "Si"
    atoms_per_cell: tuple[int, int] = (2, 8)
    volume_per_atom_A3: tuple[float, float] | None = None
    min_separation_A: Any = None
    min_angle_deg: float = 60.0
    max_angle_deg: float = 120.0
    max_length_ratio: float = 2.0
    n_structures: int = 10
    seed: int = 0
    fmax_eV_A: float = 0.05
    max_steps: int = 300
    optimizer: str = "FIRE"
    pressure_GPa: float = 0.0
    soap: SoapSettings = field(default=SI_SOAP)
    diamond_cutoff: float = 0.99
    references: Any = None
    energy_floor_eV: float = -50.0
    sane_volume_per_atom_A3: tuple[float, float] | None = None
    distance_floor_A: float = 0.5
    max_attempts: int = 200
    max_seconds_per_structure: float | None = 600.0
    units_per_cell: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "composition", parse_composition(self.composition))
        if self.units_per_cell is not None:
            ulo, uhi = _pair(self.units_per_cell, "units_per_cell", int)
            if not 1 <= ulo <= uhi:
                raise SettingsError(f"units_per_cell must be (min, max) with 1 <= min <= "
                                    f"max, got {self.units_per_cell!r}")
            set_(self, "units_per_cell", (ulo, uhi))
            size = sum(c for _, c in self.composition)
            set_(self, "atoms_per_cell", (ulo * size, uhi * size))
        lo, hi = _pair(self.atoms_per_cell, "atoms_per_cell", int)
        if not 1 <= lo <= hi:
            raise SettingsError(f"atoms_per_cell must be (min, max) with 1 <= min <= max, "
                                f"got {self.atoms_per_cell!r}")
        set_(self, "atoms_per_cell", (lo, hi))
        if not self.formula_units:
            raise SettingsError(f"no cell of {lo}-{hi} atoms holds whole formula units of "
                                f"{self.formula} ({self.formula_size} atoms)")
        if self.volume_per_atom_A3 is not None:
            vlo, vhi = _pair(self.volume_per_atom_A3, "volume_per_atom_A3", float)
            if not (0 < vlo <= vhi < math.inf):
                raise SettingsError(f"volume_per_atom_A3 must be (min, max) with 0 < min <= "
                                    f"max, got {self.volume_per_atom_A3!r}"
                                    + (" (inverted)" if vlo > vhi > 0 else ""))
            set_(self, "volume_per_atom_A3", (vlo, vhi))
        vlo, vhi = self.volume_range
        set_(self, "min_separation_A", given_separations(self.min_separation_A,
                                                         self.symbols))
        pairs = self.pair_separations
        bad = {f"{a}-{b}": v for (a, b), v in pairs.items() if not 0 < v < math.inf}
        if bad:
            raise SettingsError(f"min_separation_A must be > 0, got "
                                f"{self.min_separation_A!r}")
        d = min(pairs.values())
        densest = d ** 3 / math.sqrt(2)  # close packing of spheres of diameter d
        if vhi < densest:
            raise RssGenerationError(
                f"min_separation_A={d:g} Å is impossible in volume_per_atom_A3 up to "
                f"{vhi:g} Å^3/atom: even close-packed spheres {d:g} Å apart need "
                f"{densest:.3g} Å^3/atom")
        if not 0 < self.min_angle_deg <= 90 <= self.max_angle_deg < 180:
            raise SettingsError(f"cell angles must satisfy 0 < min_angle_deg <= 90 <= "
                                f"max_angle_deg < 180, got {self.min_angle_deg!r}, "
                                f"{self.max_angle_deg!r}")
        if not 1 <= self.max_length_ratio < math.inf:
            raise SettingsError(f"max_length_ratio must be >= 1, got "
                                f"{self.max_length_ratio!r}")
        for name in ("n_structures", "max_steps", "max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or value < 1:
                raise SettingsError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise SettingsError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not 0 < self.fmax_eV_A < math.inf:
            raise SettingsError(f"fmax_eV_A must be > 0, got {self.fmax_eV_A!r}")
        if not math.isfinite(self.pressure_GPa):
            raise SettingsError(f"pressure_GPa must be finite, got {self.pressure_GPa!r}")
        if not 0 < self.diamond_cutoff <= 1:
            raise SettingsError(f"diamond_cutoff must be in (0, 1], got "
                                f"{self.diamond_cutoff!r}")
        if not isinstance(self.soap, SoapSettings):
            raise SettingsError(f"soap must be SoapSettings, got {type(self.soap).__name__}")
        if self.references is not None:
            set_(self, "references", normalise_references(self.references, self.composition))
        sane = self.sane_volume_per_atom_A3 or (vlo / 3, vhi * 3)
        slo, shi = _pair(sane, "sane_volume_per_atom_A3", float)
        if not 0 <= slo < shi:
            raise SettingsError(f"sane_volume_per_atom_A3 must be (min, max) with 0 <= min < "
                                f"max, got {self.sane_volume_per_atom_A3!r}")
        set_(self, "sane_volume_per_atom_A3", (slo, shi))
        if not self.distance_floor_A >= 0:
            raise SettingsError(f"distance_floor_A must be >= 0, got "
                                f"{self.distance_floor_A!r}")
        _check_optimizer(self.optimizer)
        limit = self.max_seconds_per_structure
        if limit is not None and (isinstance(limit, bool)
                                  or not isinstance(limit, (int, float, np.number))
                                  or not 0 < limit < math.inf):
            raise SettingsError(f"max_seconds_per_structure must be a number of seconds > 0 "
                                f"(or None: no limit), got {limit!r}")

    # -- derived ------------------------------------------------------------------------
    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.composition)

    @property
    def formula(self) -> str:
        return formula_of(self.composition)

    @property
    def volume_range(self) -> tuple[float, float]:
        """``volume_per_atom_A3``, or by default silicon's 14-26 Å^3/atom scaled by
        covalent radii (:func:`~pytest_mlpval.protocols.rss.composition.
        default_volume_range`)."""
        if self.volume_per_atom_A3 is not None:
            return self.volume_per_atom_A3
        return default_volume_range(self.composition)

    @property
    def pair_separations(self) -> dict[tuple[str, str], float]:
        """Smallest initial distance (Å) per element pair ``(a, b)``, ``a <= b``
        (:func:`~pytest_mlpval.protocols.rss.composition.pair_separations`)."""
        return pair_separations(self.min_separation_A, self.symbols)

    @property
    def crystals(self) -> tuple[str | ReferenceCrystal, ...]:
        """The reference crystals: ``references``, or by default silicon's diamond for an
        element and none for a compound."""
        if self.references is not None:
            return self.references
        return ("diamond",) if len(self.composition) == 1 else ()

    @property
    def reference_names(self) -> tuple[str, ...]:
        return tuple(reference_name(r) for r in self.crystals)

    @property
    def formula_size(self) -> int:
        return sum(c for _, c in self.composition)

    @property
    def formula_units(self) -> tuple[int, ...]:
        """Numbers of formula units that fit ``atoms_per_cell``."""
        size = sum(c for _, c in self.composition)
        lo, hi = self.atoms_per_cell
        return tuple(k for k in range(max(1, -(-lo // size)), hi // size + 1))

    def relaxation_key(self) -> dict[str, Any]:
        """The parameters that change the relaxed structures (the campaign's cache key):
        all but ``n_structures``, the classification settings and the wall-time limit
        (a relaxation stopped by it is not cached)."""
        data = self.as_dict()
        for key in ("n_structures", "soap", "diamond_cutoff", "references",
                    "max_seconds_per_structure", "units_per_cell"):  # (atoms_per_cell)
            del data[key]
        # the defaults as the distances and volumes they resolve to (silicon: 1.8 Å and
        # 14-26 Å^3/atom, the keys of the searches made before they were defaults)
        pairs = self.pair_separations
        values = set(pairs.values())
        data["min_separation_A"] = values.pop() if len(values) == 1 else {
            f"{a}-{b}": v for (a, b), v in sorted(pairs.items())}
        data["volume_per_atom_A3"] = list(self.volume_range)
        return data


def _separations_text(pairs: Mapping[tuple[str, str], float]) -> str:
    values = set(pairs.values())
    if len(values) == 1:
        return f"{values.pop():g} Å"
    return "(" + ", ".join(f"{a}-{b} {v:.3g}" for (a, b), v in sorted(pairs.items())) + ") Å"


def _check_optimizer(name: str) -> None:
    import ase.optimize

    opt = getattr(ase.optimize, name, None) if isinstance(name, str) else None
    if not isinstance(opt, type) or not hasattr(opt, "run"):
        raise SettingsError(f"optimizer {name!r} is not an ASE optimizer class (e.g. FIRE, "
                            "BFGS, LBFGS)")


# -- the generator -----------------------------------------------------------------------

def _translations(cell: np.ndarray, d: float) -> np.ndarray:
    """Cartesian lattice translations that can bring the image of an atom of the cell
    within ``d`` of another atom (fractional differences lie in (-1, 1))."""
    reach = [int(math.ceil(d / h)) + 1 for h in cell_widths(cell)]
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"),
                    axis=-1).reshape(-1, 3)
    return grid @ cell


def _place(rng: np.random.Generator, cell: np.ndarray, d2: np.ndarray
           ) -> np.ndarray | None:
    """Fractional positions of ``n`` atoms, atoms ``i`` and ``j`` at least
    ``sqrt(d2[i, j])`` apart (images included; an atom from its own images too), or None
    when an atom finds no room in :data:`TRIES_PER_ATOM` tries."""
    n = len(d2)
    d = float(np.sqrt(d2.max()))
    shifts = _translations(cell, d)
    lengths = np.linalg.norm(shifts, axis=1)
    if np.any((lengths > 0) & (lengths < np.sqrt(d2.diagonal().max()))):
        return None  # an atom would touch its own image
    frac = np.empty((n, 3))
    for k in range(n):
        for _ in range(TRIES_PER_ATOM // _BATCH):
            trial = rng.random((_BATCH, 3))
            if k == 0:
                frac[0] = trial[0]
                break
            diff = (trial @ cell)[:, None, None, :] - (frac[:k] @ cell)[None, :, None, :] \
                - shifts[None, None, :, :]
            ok = (np.einsum("abcx,abcx->abc", diff, diff)
                  >= d2[k, :k][None, :, None]).all(axis=(1, 2))
            if ok.any():
                frac[k] = trial[int(np.argmax(ok))]
                break
        else:
            return None
    return frac


def generate(settings: RssSettings, index: int) -> Any:
    """Random structure ``index`` of the search: ASE Atoms, periodic, with
    ``info["rss_seed"]`` and ``info["rss_index"]``. Depends only on ``(settings.seed,
    index)`` and the generation settings (numpy's ``default_rng([seed, index])``).

    Raises :class:`RssGenerationError` when ``settings.max_attempts`` cells give no room
    for the atoms.
    """
    from ase import Atoms
    from ase.geometry import cellpar_to_cell

    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be an integer >= 0, got {index!r}")
    rng = np.random.default_rng([int(settings.seed), int(index)])
    units = settings.formula_units
    vlo, vhi = settings.volume_range
    pairs = settings.pair_separations
    flat = crowded = 0
    for _ in range(settings.max_attempts):
        k = int(units[rng.integers(len(units))])
        n = k * settings.formula_size
        volume = n * rng.uniform(vlo, vhi)
        angles = rng.uniform(settings.min_angle_deg, settings.max_angle_deg, 3)
        cos = np.cos(np.radians(angles))
        factor2 = 1.0 - float(cos @ cos) + 2.0 * float(cos.prod())
        if factor2 < MIN_VOLUME_FACTOR ** 2:
            flat += 1
            continue
        ratios = rng.uniform(1.0, settings.max_length_ratio, 3)
        scale = (volume / (ratios.prod() * math.sqrt(factor2))) ** (1 / 3)
        cell = cellpar_to_cell([*(ratios * scale), *angles])
        symbols = [s for s, c in settings.composition for _ in range(c * k)]
        d2 = np.array([[pairs[min(a, b), max(a, b)] ** 2 for b in symbols]
                       for a in symbols])
        frac = _place(rng, cell, d2)
        if frac is None:
            crowded += 1
            continue
        atoms = Atoms(symbols, scaled_positions=frac, cell=cell, pbc=True)
        atoms.info["rss_seed"] = int(settings.seed)
        atoms.info["rss_index"] = int(index)
        return atoms
    raise RssGenerationError(
        f"structure {index} (seed {settings.seed}): no room for {settings.atoms_per_cell[0]}-"
        f"{settings.atoms_per_cell[1]} atoms of {settings.formula} at min_separation_A="
        f"{_separations_text(pairs)} in {vlo:g}-{vhi:g} Å^3/atom after max_attempts="
        f"{settings.max_attempts} cells ({crowded} too crowded, {flat} too flat); lower "
        "min_separation_A, raise volume_per_atom_A3 or widen the cell-shape limits")
