"""Physical properties of a candidate for comparison with experiment and DFT (the
tutorial's Table I): shared machinery and the relaxed lattice.

Plain library (no pytest). The protocols live in

- :mod:`.properties` (this module): :func:`relaxed_lattice`, the force-call counter and
  the result base class;
- :mod:`.property_campaign`: :func:`compute_properties`, which runs several protocols as
  items of a cached campaign (:func:`~pytest_mlpval.campaign.run_campaign`);
- :mod:`.eos`: Birch–Murnaghan equation of state, polymorph energies, transition pressure;
- :mod:`.elastic`: elastic constants (relaxed- and clamped-ion) and Born stability;
- :mod:`.phonons`: phonopy phonons, branches at high-symmetry points, dynamical stability;
- :mod:`.defects`: vacancy formation and surface energies;
- :mod:`.liquid`: g(r), S(q) and coordination of liquid and amorphous frames, a short
  liquid run, comparison with users' curves.

Every result is a frozen dataclass with ``metrics()`` (flat floats named like the
reference properties, e.g. ``C44_GPa``, so that :func:`~pytest_mlpval.comparison.compare`
finds them), ``units()``, ``as_dict()`` (JSON-ready) and ``from_dict()``; each records the
number of calculator calls it made (``n_force_calls``) and the time spent inside the
calculator (``calculator_seconds``) beside its wall time (``seconds``), so that a
benchmark can tell the protocol's overhead from the potential's cost.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["PropertyError", "NonFiniteResultError", "SymmetryChangedError", "counting",
           "PropertyResult", "LatticeResult", "relaxed_lattice", "spacegroup",
           "result_from_dict", "compute_properties", "single_threaded"]


class PropertyError(RuntimeError):
    """A property protocol could not produce a result (the message says why)."""


class NonFiniteResultError(PropertyError):
    """The calculator returned NaN or infinite energies, forces or stresses."""


class SymmetryChangedError(PropertyError):
    """A symmetry-constrained relaxation ended in another space group."""


# -- threads ---------------------------------------------------------------------------

_THREADS = threading.local()


def single_threaded(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run a protocol's own work (optimisers, filters, fits, phonopy) with one BLAS/OpenMP
    thread, while the calculator keeps the thread count it had (the counting wrapper lifts
    the limit around each call). The protocols' linear algebra is on 3x3 to 9x9 matrices,
    where thread pools only cost: on a loaded 2-core machine a 9x9 LU solve took 4 ms
    instead of microseconds, and an equation of state 2.9 s instead of 0.8 s."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_THREADS, "controller", None) is not None:
            return function(*args, **kwargs)
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return function(*args, **kwargs)
        controller = ThreadpoolController()
        threads = max([lib["num_threads"] for lib in controller.info()] or [1])
        with controller.limit(limits=1):
            _THREADS.controller, _THREADS.threads = controller, threads
            try:
                return function(*args, **kwargs)
            finally:
                _THREADS.controller = None

    return wrapper


def _calculator_threads() -> Any:
    """Context restoring the caller's thread count around a calculator call."""
    import contextlib

    controller = getattr(_THREADS, "controller", None)
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=_THREADS.threads)


# -- counting calls --------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _counting_class() -> type:
    from ase.calculators.calculator import Calculator, all_changes

    class CountingCalculator(Calculator):
        """Passes each calculation to ``base`` and counts it (one count per calculation
        of ``base``), with the seconds spent inside ``base``; non-finite results raise
        :class:`NonFiniteResultError`. Energy and forces are always computed, the stress
        from the first time it is asked for on."""

        def __init__(self, base: Any) -> None:
            super().__init__()
            self.base = base
            self.implemented_properties = list(
                getattr(base, "implemented_properties", ("energy", "forces", "stress")))
            self.n_calls = 0
            self.seconds = 0.0
            self.sticky: set[str] = set()

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            # once stress was asked for, keep computing it: cell filters ask for forces and
            # stress of each structure separately, which would otherwise cost two calls
            self.sticky |= {"stress"} & set(properties)
            wanted = ({"energy", "forces"} | set(properties) | self.sticky) \
                & set(self.implemented_properties)
            start = time.perf_counter()
            self.base.reset()  # as ASE does on a changed system: no reuse of old results
            with _calculator_threads():
                self.base.calculate(self.atoms, sorted(wanted), all_changes)
            self.seconds += time.perf_counter() - start
            self.n_calls += 1
            # only what was asked for: a base may keep stale entries it did not recompute
            # (quippy keeps the previous stress when asked for energy and forces only)
            self.results = {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                            for k, v in self.base.results.items()
                            if k in wanted or k == "free_energy"}
            for key in ("energy", "forces", "stress"):
                value = self.results.get(key)
                if value is not None and not np.all(np.isfinite(value)):
                    raise NonFiniteResultError(
                        f"the calculator returned a non-finite {key} for a "
                        f"{self.atoms.get_chemical_formula()} structure "
                        f"({len(self.atoms)} atoms) at call {self.n_calls}")

    return CountingCalculator


def counting(calc: Any) -> Any:
    """A fresh counting wrapper around ``calc``: ``wrapper.n_calls`` and
    ``wrapper.seconds`` accumulate. Wrapping a wrapper chains them, so a protocol that
    runs another one counts the inner protocol's calls too."""
    return _counting_class()(calc)


class _Clock:
    def __init__(self, calc: Any) -> None:
        self.calc = counting(calc)
        self.start = time.perf_counter()

    def cost(self) -> dict[str, Any]:
        return {"n_force_calls": int(self.calc.n_calls),
                "calculator_seconds": float(self.calc.seconds),
                "seconds": time.perf_counter() - self.start}


# -- results ---------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if is_dataclass(value) and hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        if "type" in value and value["type"] in RESULT_TYPES:
            return result_from_dict(value)
        return {k: _frozen(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


RESULT_TYPES: dict[str, type] = {}


class PropertyResult:
    """Base of the property results: JSON round trip and units from metric names."""

    #: prefix of the cost metrics (``<prefix>_force_calls``)
    protocol = "property"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        RESULT_TYPES[cls.__name__] = cls

    def metrics(self) -> dict[str, float]:
        raise NotImplementedError

    def units(self) -> dict[str, str]:
        """Unit of each metric, from the unit suffix of its name."""
        from pytest_mlpval.references import property_unit

        return {name: property_unit(name) for name in self.metrics()}

    def cost_metrics(self) -> dict[str, float]:
        return {f"{self.protocol}_force_calls": float(getattr(self, "n_force_calls", 0))}

    def not_measured(self) -> set[str]:
        """Metric names that are NaN because they do not apply to this result (none
        here: a non-finite calculator result raises, and any NaN metric of a property
        is a fault). Results with a legitimate gap, such as a transition that does not
        occur in the sampled range, override this."""
        return set()

    def as_dict(self) -> dict[str, Any]:
        out = {"type": type(self).__name__}
        out.update({f.name: _plain(getattr(self, f.name)) for f in fields(self)})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PropertyResult":
        names = {f.name for f in fields(cls)}
        return cls(**{k: _frozen(v) for k, v in data.items() if k in names})


def result_from_dict(data: Mapping[str, Any]) -> PropertyResult:
    """Rebuild any property result from its ``as_dict()``."""
    if isinstance(data, Mapping) and data.get("type") not in RESULT_TYPES:
        from importlib import import_module

        for module in ("defects", "elastic", "eos", "liquid", "phonons"):  # registers types
            import_module(f".{module}", __package__)
    try:
        cls = RESULT_TYPES[data["type"]]
    except (KeyError, TypeError):
        kind = data.get("type") if isinstance(data, Mapping) else data
        raise ValueError(f"not a property result: type {kind!r}; known: "
                         f"{', '.join(sorted(RESULT_TYPES))}") from None
    return cls.from_dict(data)


# -- relaxed lattice -------------------------------------------------------------------

def spacegroup(atoms: Any, symprec: float = 1e-3) -> str:
    """International symbol and number from spglib, e.g. ``"Fd-3m (227)"``."""
    import spglib
    from ase.utils import atoms_to_spglib_cell, spglib_new_errorhandling

    # ASE's wrapper selects spglib's exception-raising error handling (no warning)
    get = spglib_new_errorhandling(spglib.get_spacegroup)
    try:
        return get(atoms_to_spglib_cell(atoms), symprec=symprec) or "unknown"
    except spglib.error.SpglibError as exc:
        raise PropertyError(f"spglib could not find the space group: {exc}") from exc


def _relaxed(calc: Any, crystal: str, symbol: str, atoms: Any, *, pressure_GPa: float = 0.0,
             fmax_eV_A: float, steps: int, symprec: float = 1e-3):
    """Relax with the symmetry kept; raise unless converged and in the same space group.
    Returns (RelaxResult, space group before, after)."""
    from pytest_mlpval.crystals import RelaxationError, build_crystal, relax

    start = build_crystal(crystal, symbol) if atoms is None else atoms.copy()
    before = spacegroup(start, symprec)
    try:
        result = relax(start, calc, pressure_GPa=pressure_GPa, fmax_eV_A=fmax_eV_A,
                       steps=steps, keep_symmetry=True, optimizer="BFGS")
    except RelaxationError as exc:
        raise PropertyError(f"relaxing {crystal}: {exc}") from exc
    if not result.converged:
        raise PropertyError(
            f"{crystal} did not relax to fmax {fmax_eV_A:g} eV/Å within steps={steps} "
            f"(residual {result.fmax_eV_A:.3g} eV/Å): raise steps or check the potential")
    after = spacegroup(result.atoms, symprec)
    if after != before:
        raise SymmetryChangedError(f"{crystal} changed space group on relaxation: "
                                   f"{before} -> {after}")
    return result, before, after


@dataclass(frozen=True)
class LatticeResult(PropertyResult):
    """A crystal relaxed with its symmetry kept (ASE ``FixSymmetry``, checked by spglib).

    Attributes
    ----------
    crystal, symbol : str
    cellpar : tuple of float
        a, b, c (Å) and alpha, beta, gamma (degree) of the cell as built (conventional
        cubic for diamond).
    volume_per_atom_A3, energy_per_atom_eV : float
    pressure_GPa : float
        Target pressure of the relaxation.
    spacegroup_before, spacegroup_after : str
        spglib's symbol and number before and after (equal, or the run raised).
    steps : int
    n_force_calls : int
    calculator_seconds, seconds : float
    """

    crystal: str
    symbol: str
    cellpar: tuple[float, ...]
    volume_per_atom_A3: float
    energy_per_atom_eV: float
    pressure_GPa: float
    spacegroup_before: str
    spacegroup_after: str
    steps: int
    n_force_calls: int
    calculator_seconds: float
    seconds: float
    protocol = "lattice"

    @property
    def lattice_parameter_A(self) -> float:
        return float(self.cellpar[0])

    def metrics(self) -> dict[str, float]:
        a, b, c = self.cellpar[:3]
        out = {"lattice_parameter_A": a, "volume_per_atom_A3": float(self.volume_per_atom_A3),
               "energy_per_atom_eV": float(self.energy_per_atom_eV)}
        if not (math.isclose(a, b, rel_tol=1e-6) and math.isclose(a, c, rel_tol=1e-6)):
            out.update(lattice_b_A=b, lattice_c_A=c)
        out.update(self.cost_metrics())
        return out


@single_threaded
def relaxed_lattice(calc: Any, crystal: str = "diamond", symbol: str = "Si", *,
                    atoms: Any = None, pressure_GPa: float = 0.0, fmax_eV_A: float = 1e-3,
                    steps: int = 500, symprec: float = 1e-3) -> LatticeResult:
    """Relax ``crystal`` (or the given ``atoms``) at ``pressure_GPa`` keeping its space
    group, and report the cell.

    Raises :class:`PropertyError` when the relaxation does not converge within ``steps``
    or the calculator fails, :class:`SymmetryChangedError` when spglib finds another
    space group afterwards.
    """
    clock = _Clock(calc)
    result, before, after = _relaxed(clock.calc, crystal, symbol, atoms,
                                     pressure_GPa=pressure_GPa, fmax_eV_A=fmax_eV_A,
                                     steps=steps, symprec=symprec)
    name = atoms.info.get("crystal", crystal) if atoms is not None else crystal
    return LatticeResult(name, symbol, tuple(float(x) for x in result.atoms.cell.cellpar()),
                         float(result.volume_per_atom_A3), float(result.energy_per_atom_eV),
                         float(pressure_GPa), before, after, result.steps, **clock.cost())


# -- several properties as a cached campaign -------------------------------------------

def compute_properties(*args: Any, **kwargs: Any) -> Any:
    """Several protocols as one cached campaign: see
    :func:`pytest_mlpval.protocols.properties.campaign.compute_properties`."""
    from pytest_mlpval.protocols.properties.campaign import compute_properties as run

    return run(*args, **kwargs)
