"""The contract every validation protocol plugs into.

Plain library (no pytest). A protocol is a module-level function
``function(calc, settings) -> Result``, a :class:`Settings` subclass (a frozen dataclass
with a ``VERSION``) and a :class:`Result` subclass (a frozen dataclass with ``metrics()``),
made known by one line::

    register("toy", toy_protocol, ToySettings, ToyResult)

after which :func:`run_protocol` runs it for a candidate as a cached campaign item (keyed
by ``{name, VERSION, settings}`` and the candidate's identity, the same way for every
protocol), in this process, in worker processes or on a Dask cluster (the function and
its settings travel by reference, so a worker imports the module that registers them);
cached and worker results are read back through the registry of result types, which a
subclass joins by being defined. The pytest layer (``mlpval.run_protocol``), the report
(:attr:`Result.figure`) and baselines then take it as they take the built-in protocols.

Also here: :class:`CostMeter` (calculator calls and seconds, non-finite results refused)
and :func:`relax_keeping_symmetry`, which the protocols share.
"""

from __future__ import annotations

import contextvars
import time
import types
import typing
from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from pytest_mlpval.campaign import make_executor, run_campaign
from pytest_mlpval.crystals import RelaxationError, build_crystal, relax, space_group
from pytest_mlpval.errors import (NonFiniteError, ProtocolError, SettingsError,
                                  UnknownProtocolError)
from pytest_mlpval.references import property_unit
from pytest_mlpval.threads import calculator_threads

__all__ = ["Settings", "Result", "RESULT_TYPES", "result_from_dict", "CampaignOptions",
           "Protocol", "PROTOCOLS", "register", "get_protocol", "run_protocol",
           "run_protocols", "ProtocolRuns", "CostMeter", "counting", "NonFiniteResultError",
           "SymmetryChangedError", "relax_keeping_symmetry", "plain", "cache_parameters",
           "potential_name"]


class NonFiniteResultError(ProtocolError, NonFiniteError):
    """The calculator returned NaN or infinite energies, forces or stresses."""


class SymmetryChangedError(ProtocolError):
    """A symmetry-constrained relaxation ended in another space group."""


# -- plain values ----------------------------------------------------------------------

def potential_name(potential: Any) -> str:
    """The name of a loaded Potential, or the class name of a bare calculator."""
    return getattr(getattr(potential, "info", None), "name", type(potential).__name__)


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses with ``as_dict`` through it, mappings
    with string keys, sequences and arrays as lists, numpy scalars as Python numbers."""
    if is_dataclass(value) and not isinstance(value, type) and hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # a hint that cannot be resolved: take values as they are
        return {}


def _rebuild(hint: Any, value: Any) -> Any:
    """``value`` (JSON data) as the type ``hint`` asks for: nested settings or results,
    tuples of them, optional ones; anything else as it is (lists as tuples)."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            if arm is not type(None):
                return _rebuild(arm, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(_rebuild(inner, v) if inner is not None else _frozen(v) for v in value)
    if isinstance(hint, type) and is_dataclass(hint) and isinstance(value, Mapping):
        if hasattr(hint, "from_dict"):
            return hint.from_dict(value)
        return hint(**value)
    return _frozen(value)


def _frozen(value: Any) -> Any:
    """JSON data back as immutable values; embedded results (``{"type": ...}``) rebuilt."""
    if isinstance(value, Mapping):
        if value.get("type") in RESULT_TYPES:
            return result_from_dict(value)
        return {k: _frozen(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


# -- settings --------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """Base of a protocol's settings: a frozen dataclass of everything that changes its
    results. ``VERSION`` (bump it when the results change meaning) and ``as_dict()`` make
    the cache key; ``from_dict`` reads it back; ``with_overrides`` replaces fields by name.
    Subclasses validate their fields in ``__post_init__`` and raise
    :class:`~pytest_mlpval.errors.SettingsError` naming the field."""

    VERSION: ClassVar[int | str] = 1

    def as_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Settings from ``as_dict()`` output; an unknown key is a SettingsError."""
        if not isinstance(data, Mapping):
            raise SettingsError(f"{cls.__name__}: settings must be a mapping, got "
                                f"{type(data).__name__}")
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown {cls.__name__} setting(s) {unknown}; known: "
                                f"{', '.join(sorted(known))}")
        hints = _hints(cls)
        return cls(**{k: _rebuild(hints.get(k), v) for k, v in data.items()})

    @classmethod
    def of(cls, settings: Any = None, **overrides: Any) -> Any:
        """``settings`` (None: the defaults) with ``overrides`` of its fields: what a
        protocol function taking ``(calc, settings=None, **overrides)`` runs with. A
        SettingsError when ``settings`` is not a ``cls`` or a name is unknown."""
        settings = cls() if settings is None else settings
        if not isinstance(settings, cls):
            raise SettingsError(f"expected {cls.__name__} settings, got "
                                f"{type(settings).__name__}")
        return settings.with_overrides(**overrides) if overrides else settings

    def with_overrides(self, **overrides: Any) -> Any:
        """A copy with some fields replaced; an unknown name is a SettingsError listing the
        known ones."""
        known = [f.name for f in fields(self) if f.init]
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise SettingsError(f"unknown {type(self).__name__} setting(s) {unknown}; "
                                f"known: {', '.join(sorted(known))}")
        return replace(self, **overrides)


# -- results ---------------------------------------------------------------------------

#: result classes by type name (a subclass registers itself by being defined)
RESULT_TYPES: dict[str, type] = {}


class Result:
    """Base of a protocol's result (subclasses are frozen dataclasses).

    ``metrics()`` gives flat floats with units in their names (``C44_GPa``), which the
    thresholds, the summary, the report and baselines read; ``units()`` derives each unit
    from the name; ``as_dict``/``from_dict`` round-trip through JSON (``"type"`` names the
    class), so cached and worker results come back as the same object. ``figure``, when
    set, draws the result in the report from ``report_data()``.
    """

    #: prefix of the cost metrics (``<protocol>_force_calls``)
    protocol: ClassVar[str] = "protocol"
    #: ``figure(per_potential: {name: report_data}, title) -> matplotlib Figure``
    figure: ClassVar[Callable[..., Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        RESULT_TYPES[cls.__name__] = cls

    def metrics(self) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__}.metrics()")

    def units(self) -> dict[str, str]:
        """Unit of each metric, from the unit suffix of its name."""
        return {name: property_unit(name) for name in self.metrics()}

    def cost_metrics(self) -> dict[str, float]:
        return {f"{self.protocol}_force_calls": float(getattr(self, "n_force_calls", 0))}

    def not_measured(self) -> set[str]:
        """Metric names that are NaN because they do not apply to this result (none by
        default: any NaN metric is a fault). A result with a legitimate gap, such as a
        transition that does not occur in the sampled range, overrides this."""
        return set()

    def report_data(self) -> dict[str, Any] | None:
        """Small JSON-able data that :attr:`figure` draws (None: no figure)."""
        return None

    def as_dict(self) -> dict[str, Any]:
        out = {"type": type(self).__name__}
        out.update({f.name: plain(getattr(self, f.name)) for f in fields(self)})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        hints = _hints(cls)
        names = {f.name for f in fields(cls) if f.init}
        return cls(**{k: _rebuild(hints.get(k), v) for k, v in data.items() if k in names})


def result_from_dict(data: Mapping[str, Any]) -> Result:
    """Rebuild any registered result from its ``as_dict()``; a ValueError names the type
    when it is unknown."""
    try:
        cls = RESULT_TYPES[data["type"]]
    except (KeyError, TypeError):
        kind = data.get("type") if isinstance(data, Mapping) else data
        raise ValueError(f"not a protocol result: type {kind!r}; known: "
                         f"{', '.join(sorted(RESULT_TYPES))}") from None
    return cls.from_dict(data)


# -- campaign options ------------------------------------------------------------------

@dataclass(frozen=True)
class CampaignOptions:
    """Where and how a protocol's campaign runs (none of it changes results).

    Attributes
    ----------
    workers : int
        Worker processes (0: in this process).
    scheduler : str or None
        A Dask scheduler address (overrides ``workers``).
    cache_dir : path or None
        The campaign cache; None: no cache.
    progress : callable or None
        Called with a :class:`~pytest_mlpval.campaign.Progress` as items finish.
    executor : Executor or None
        An executor to share (then ``workers`` and ``scheduler`` are not used).
    """

    workers: int = 0
    scheduler: str | None = None
    cache_dir: Any = None
    progress: Callable[..., None] | None = None
    executor: Executor | None = None

    @property
    def parallel(self) -> bool:
        return self.executor is not None or bool(self.scheduler) or self.workers > 0

    def campaign_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~pytest_mlpval.campaign.run_campaign`."""
        out = {"cache_dir": self.cache_dir, "progress": self.progress}
        if self.executor is not None:
            return {**out, "executor": self.executor}
        return {**out, "workers": self.workers, "scheduler": self.scheduler}


# -- registry --------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    """A registered protocol: ``function(calc, settings) -> result``."""

    name: str
    function: Callable[[Any, Any], Result]
    settings: type
    result: type
    family: str = ""


#: registered protocols by name
PROTOCOLS: dict[str, Protocol] = {}


def register(name: str, function: Callable[[Any, Any], Result], settings: type,
             result: type, *, family: str = "") -> Protocol:
    """Make protocol ``name`` known to :func:`run_protocol` and the pytest layer. The
    function must be defined at module level (workers import it by reference)."""
    if not (isinstance(settings, type) and issubclass(settings, Settings)):
        raise TypeError(f"protocol {name!r}: settings must be a Settings subclass, got "
                        f"{settings!r}")
    if not (isinstance(result, type) and issubclass(result, Result)):
        raise TypeError(f"protocol {name!r}: result must be a Result subclass, got "
                        f"{result!r}")
    if "<locals>" in getattr(function, "__qualname__", "<locals>"):
        raise TypeError(f"protocol {name!r}: {function!r} is not a module-level function")
    old = PROTOCOLS.get(name)
    if old is not None and (old.function, old.settings, old.result) != (function, settings,
                                                                        result):
        if (old.function.__module__, old.function.__qualname__) != \
                (function.__module__, function.__qualname__):  # a reloaded module is fine
            raise ValueError(f"protocol {name!r} is already registered by "
                             f"{old.function.__module__}.{old.function.__qualname__}")
    spec = Protocol(name, function, settings, result, family)
    PROTOCOLS[name] = spec
    return spec


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UnknownProtocolError(f"unknown protocol {name!r}; registered: "
                                   f"{', '.join(sorted(PROTOCOLS)) or 'none'}") from None


def _protocol_task(calc: Any, item: tuple[Callable[[Any, Any], Result], Settings]) -> Any:
    """Campaign task of every protocol: ``function(calc, settings).as_dict()``."""
    function, settings = item
    return function(calc, settings).as_dict()


def _check_result(value: Any) -> str | None:
    """Why a cached or returned value is not a result (None: it is one)."""
    result_from_dict(value)
    return None


def cache_parameters(spec: Protocol | str, settings: Settings) -> dict[str, Any]:
    """What keys a protocol's cache entry besides the candidate's identity:
    ``{"name", "version", "settings"}`` (``spec`` a Protocol or a protocol's name, for
    campaigns of several items that build their own)."""
    name = spec if isinstance(spec, str) else spec.name
    return {"name": name, "version": settings.VERSION, "settings": settings.as_dict()}


def run_protocol(name: str | Protocol, potential: Any, settings: Settings | None = None, *,
                 options: CampaignOptions | None = None) -> Result:
    """Run protocol ``name`` for ``potential`` (a loaded
    :class:`~pytest_mlpval.potentials.Potential`, or a bare calculator, uncached) with
    ``settings`` (default: the protocol's defaults), as one cached campaign item.

    Raises :class:`~pytest_mlpval.errors.ProtocolError` naming the protocol when it
    fails (in a worker too); a cached result is validated when read.
    """
    spec = get_protocol(name)
    item = _run_item(spec, potential, settings, options or CampaignOptions())
    if not item.ok:
        raise ProtocolError(f"protocol {spec.name!r} failed: {item.error or 'no result'}")
    return result_from_dict(item.value)


def _run_item(spec: Protocol, potential: Any, settings: Settings | None,
              options: CampaignOptions) -> Any:
    """The campaign item (:class:`~pytest_mlpval.campaign.ItemResult`) of one run."""
    settings = spec.settings() if settings is None else settings
    if not isinstance(settings, spec.settings):
        raise SettingsError(f"protocol {spec.name!r} takes {spec.settings.__name__}, got "
                            f"{type(settings).__name__}")
    campaign = run_campaign(f"protocol:{spec.name}", _protocol_task,
                            [(spec.function, settings)], potential,
                            cache_parameters(spec, settings), version=settings.VERSION,
                            validate=_check_result, **options.campaign_kwargs())
    return campaign.items[0]


@dataclass(frozen=True)
class ProtocolRuns:
    """Results of :func:`run_protocols`: ``results`` and ``errors`` by protocol name,
    ``from_cache`` the names read back from the campaign cache."""

    results: Mapping[str, Result]
    errors: Mapping[str, str]
    seconds: float
    from_cache: tuple[str, ...] = ()


def run_protocols(requests: Sequence[tuple[str, Settings | None]], potential: Any, *,
                  options: CampaignOptions | None = None) -> ProtocolRuns:
    """Several protocols for one candidate over one pool (one worker pool or cluster
    for all when ``options`` is parallel); a protocol that fails is reported in
    ``errors`` (``"ExceptionType: message"`` of the protocol's own exception), not
    raised. Ctrl-C cancels what has not started."""
    options = options or CampaignOptions()
    start = time.perf_counter()
    shutdown = None
    if options.parallel and options.executor is None:
        executor, _, shutdown = make_executor(options.workers, options.scheduler)
        options = replace(options, executor=executor)
    results: dict[str, Result] = {}
    errors: dict[str, str] = {}
    cached: set[str] = set()

    def one(request: tuple[str, Settings | None]) -> None:
        name, settings = request
        item = _run_item(get_protocol(name), potential, settings, options)
        if not item.ok:
            errors[name] = item.error or "no result"
            return
        results[name] = result_from_dict(item.value)
        if item.from_cache:
            cached.add(name)

    try:
        if options.parallel:
            threads = ThreadPoolExecutor(max_workers=max(1, len(requests)))
            try:
                # each thread runs in a copy of this thread's context: the scheduling
                # lane of a planned job (pytest_mlpval.schedule) is a context variable
                contexts = [contextvars.copy_context() for _ in requests]
                list(threads.map(lambda ctx, request: ctx.run(one, request), contexts,
                                 requests))
            finally:  # on Ctrl-C: do not wait for the threads, the pool cancels their items
                threads.shutdown(wait=False, cancel_futures=True)
        else:
            for request in requests:
                one(request)
    finally:
        if shutdown is not None:
            shutdown()
    order = [name for name, _ in requests]
    return ProtocolRuns({n: results[n] for n in order if n in results},
                        {n: errors[n] for n in order if n in errors},
                        time.perf_counter() - start, tuple(n for n in order if n in cached))


# -- cost ------------------------------------------------------------------------------

def _meter_class() -> type:
    from ase.calculators.calculator import Calculator, all_changes

    class MeteredCalculator(Calculator):
        """Passes each calculation to ``base`` and counts it, with the seconds spent
        inside ``base``; non-finite results raise :class:`NonFiniteResultError`. Energy
        and forces are always computed, the stress from the first time it is asked for
        on (from the first call with ``always=("stress",)``). ``guard(atoms, n_calls)``,
        when given, runs before each call and may raise (a deadline, a ballooned cell)."""

        def __init__(self, base: Any, guard: Callable[[Any, int], None] | None = None,
                     always: Sequence[str] = ()) -> None:
            super().__init__()
            self.base = base
            self.guard = guard
            self.implemented_properties = list(
                getattr(base, "implemented_properties", ("energy", "forces", "stress")))
            self.n_calls = 0
            self.seconds = 0.0
            self.sticky: set[str] = set(always)

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            if self.guard is not None:
                self.guard(self.atoms, self.n_calls)
            # once stress was asked for, keep computing it: cell filters ask for forces and
            # stress of each structure separately, which would otherwise cost two calls
            self.sticky |= {"stress"} & set(properties)
            wanted = ({"energy", "forces"} | set(properties) | self.sticky) \
                & set(self.implemented_properties)
            start = time.perf_counter()
            try:
                self.base.reset()  # as ASE does on a changed system: no reuse of old results
                with calculator_threads():
                    self.base.calculate(self.atoms, sorted(wanted), all_changes)
            finally:
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

    return MeteredCalculator


_METER: list[type] = []


def counting(calc: Any, guard: Callable[[Any, int], None] | None = None,
             always: Sequence[str] = ()) -> Any:
    """A fresh metering wrapper around ``calc`` (an ASE calculator): ``n_calls`` and
    ``seconds`` accumulate. Wrapping a wrapper chains them, so a protocol that runs
    another one counts the inner protocol's calls too. ``always``: properties computed at
    every call besides energy and forces (``("stress",)`` for a cell relaxation, whose
    filter asks for the forces and then the stress of each structure)."""
    if not _METER:
        _METER.append(_meter_class())
    return _METER[0](calc, guard, always)


class CostMeter:
    """What a protocol spent: ``meter.calc`` is the calculator to use; ``cost()`` gives
    ``n_force_calls``, ``calculator_seconds`` and wall ``seconds`` since the meter was
    made, the fields every result records so that a benchmark can tell the protocol's
    overhead from the potential's cost."""

    def __init__(self, calc: Any, guard: Callable[[Any, int], None] | None = None,
                 always: Sequence[str] = ()) -> None:
        self.calc = counting(calc, guard, always)
        self.start = time.perf_counter()

    def cost(self) -> dict[str, Any]:
        return {"n_force_calls": int(self.calc.n_calls),
                "calculator_seconds": float(self.calc.seconds),
                "seconds": time.perf_counter() - self.start}


# -- relaxation keeping the symmetry ---------------------------------------------------

def relax_keeping_symmetry(calc: Any, crystal: str, symbol: str, atoms: Any = None, *,
                           pressure_GPa: float = 0.0, fmax_eV_A: float, steps: int,
                           symprec: float = 1e-3) -> tuple[Any, str, str]:
    """Relax ``atoms`` (default: ``crystal`` of ``symbol`` as built by
    :func:`~pytest_mlpval.crystals.build_crystal`) with its symmetry kept; raise
    :class:`~pytest_mlpval.errors.ProtocolError` unless converged, and
    :class:`SymmetryChangedError` unless spglib finds the same space group afterwards.
    Returns (RelaxResult, space group before, after) as ``"Fd-3m (227)"``."""
    def label(structure: Any) -> str:
        try:
            number, international = space_group(structure, symprec)
        except Exception as exc:  # spglib's SpglibError, without importing spglib here
            raise ProtocolError(f"spglib could not find the space group of {crystal}: "
                                f"{exc}") from exc
        return f"{international} ({number})"

    start = build_crystal(crystal, symbol) if atoms is None else atoms.copy()
    before = label(start)
    try:
        result = relax(start, calc, pressure_GPa=pressure_GPa, fmax_eV_A=fmax_eV_A,
                       steps=steps, keep_symmetry=True, optimizer="BFGS")
    except RelaxationError as exc:
        raise ProtocolError(f"relaxing {crystal}: {exc}") from exc
    if not result.converged:
        raise ProtocolError(
            f"{crystal} did not relax to fmax {fmax_eV_A:g} eV/Å within steps={steps} "
            f"(residual {result.fmax_eV_A:.3g} eV/Å): raise steps or check the potential")
    after = label(result.atoms)
    if after != before:
        raise SymmetryChangedError(f"{crystal} changed space group on relaxation: "
                                   f"{before} -> {after}")
    return result, before, after
