"""Several property protocols for one potential, each as an item of a cached campaign
(:func:`~pytest_mlpval.protocols.base.run_protocols`): cached by the potential's content
hash, the protocol, its settings' ``VERSION`` and the settings, run in worker processes
or on a Dask cluster.

Plain library (no pytest). The protocols are those registered with
``family="properties"`` (:func:`~pytest_mlpval.protocols.base.register`), in the order
they were registered.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.base import (PROTOCOLS, CampaignOptions, Settings,
                                          get_protocol, run_protocols)
from pytest_mlpval.protocols.properties.common import (DEFAULT_SYMBOL, FAMILY, PropertyError,
                                                       PropertyResult)

__all__ = ["property_protocols", "property_settings", "PropertySet", "compute_properties"]


def property_protocols() -> list[str]:
    """Names of the registered property protocols (:func:`compute_properties` runs
    them), in the order they were registered."""
    return [name for name, spec in PROTOCOLS.items() if spec.family == FAMILY]


def property_settings(name: str, params: Settings | Mapping[str, Any] | None = None, *,
                      symbol: str = DEFAULT_SYMBOL) -> Settings:
    """The settings of protocol ``name``: ``params`` when it is a Settings object, else
    the protocol's defaults for element ``symbol`` with ``params`` (a mapping of field
    names to values, ``symbol`` among them if given) replacing fields. Raises
    :class:`~pytest_mlpval.errors.SettingsError` naming an unknown or invalid field."""
    spec = get_protocol(name)
    if isinstance(params, Settings):
        if not isinstance(params, spec.settings):
            raise SettingsError(f"protocol {name!r} takes {spec.settings.__name__}, got "
                                f"{type(params).__name__}")
        return params
    overrides = dict(params or {})
    if "symbol" in {f.name for f in fields(spec.settings)}:
        overrides.setdefault("symbol", symbol)
    return spec.settings().with_overrides(**overrides)


@dataclass(frozen=True)
class PropertySet:
    """Results of :func:`compute_properties`.

    Attributes
    ----------
    results : mapping of str to PropertyResult
        By protocol name, for those that succeeded.
    errors : mapping of str to str
        By protocol name, ``"ExceptionType: message"`` for those that failed.
    from_cache : tuple of str
        Protocols read from the campaign cache.
    seconds : float
    """

    results: Mapping[str, PropertyResult]
    errors: Mapping[str, str]
    from_cache: tuple[str, ...]
    seconds: float

    def __getitem__(self, name: str) -> PropertyResult:
        if name in self.results:
            return self.results[name]
        if name in self.errors:
            raise PropertyError(f"property protocol {name!r} failed: {self.errors[name]}")
        raise KeyError(f"no protocol {name!r} was run; ran {', '.join(self.results)}")

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for result in self.results.values():
            out.update(result.metrics())
        out["n_failed_protocols"] = float(len(self.errors))
        return out

    def not_measured(self) -> set[str]:
        """The gaps of the protocols that ran (a failed one is in ``errors``)."""
        return set().union(*(r.not_measured() for r in self.results.values()))

    def units(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for result in self.results.values():
            out.update(result.units())
        out["n_failed_protocols"] = ""
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"results": {k: v.as_dict() for k, v in self.results.items()},
                "errors": dict(self.errors), "from_cache": list(self.from_cache),
                "seconds": self.seconds}


def compute_properties(potential: Any, names: Sequence[str] = ("lattice", "eos", "elastic",
                       "phonons"),
                       params: Mapping[str, Settings | Mapping[str, Any]] | None = None, *,
                       symbol: str = DEFAULT_SYMBOL, options: CampaignOptions | None = None
                       ) -> PropertySet:
    """Run property protocols ``names`` (see :func:`property_protocols`) for
    ``potential`` (a :class:`~pytest_mlpval.potentials.Potential`; a bare calculator
    works uncached) under the campaign ``options`` (workers, Dask scheduler, cache).

    ``params[name]`` gives a protocol's settings: a Settings object, or a mapping of
    the fields that differ from its defaults (:func:`property_settings`). Each protocol
    is one campaign item with its own cache key (the potential's hash, the protocol, its
    ``VERSION`` and settings), so adding a protocol later does not recompute the others.
    With workers or a Dask scheduler the protocols run concurrently over one pool; a
    protocol whose worker process dies fails alone (the others' items it took down run
    again). A protocol that fails, or whose settings are invalid, is reported in
    ``errors``, not raised. Ctrl-C cancels what has not started.
    """
    params = dict(params or {})
    known = property_protocols()
    unknown = [n for n in list(names) + list(params) if n not in known]
    if unknown:
        raise ValueError(f"unknown property protocol(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(known)}")
    requests, refused = [], {}
    for name in names:
        try:
            requests.append((name, property_settings(name, params.get(name), symbol=symbol)))
        except SettingsError as exc:
            refused[name] = f"{type(exc).__name__}: {exc}"
    runs = run_protocols(requests, potential, options=options)
    errors = {**runs.errors, **refused}
    return PropertySet(dict(runs.results), {n: errors[n] for n in names if n in errors},
                       runs.from_cache, runs.seconds)
