"""Several property protocols for one potential, each as an item of a cached campaign
(:func:`~pytest_mlpval.campaign.run_campaign`): cached by the potential's content hash,
the protocol and its parameters, run in worker processes or on a Dask cluster.

Plain library (no pytest).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from pytest_mlpval.protocols.properties.lattice import PropertyError, PropertyResult, relaxed_lattice, result_from_dict

__all__ = ["PROTOCOLS", "PropertySet", "compute_properties", "property_task"]


def _protocols() -> dict[str, tuple[Callable[..., PropertyResult], dict[str, Any]]]:
    from pytest_mlpval.protocols.properties import defects
    from pytest_mlpval.protocols.properties import elastic
    from pytest_mlpval.protocols.properties import eos
    from pytest_mlpval.protocols.properties import liquid
    from pytest_mlpval.protocols.properties import phonons

    return {
        "lattice": (relaxed_lattice, {}),
        "eos": (eos.equation_of_state, {}),
        "polymorphs": (eos.polymorph_energies, {}),
        "elastic": (elastic.elastic_constants, {}),
        "phonons": (phonons.phonons, {}),
        "vacancy": (defects.vacancy_formation, {}),
        "surface_100": (defects.surface_energy, {"facet": "100"}),
        "surface_110": (defects.surface_energy, {"facet": "110"}),
        "surface_111": (defects.surface_energy, {"facet": "111"}),
        "liquid": (liquid.liquid_structure, {}),
    }


#: names :func:`compute_properties` accepts
PROTOCOLS = ("lattice", "eos", "polymorphs", "elastic", "phonons", "vacancy", "surface_100",
             "surface_110", "surface_111", "liquid")

#: bump when a protocol's results change meaning (part of the cache key)
PROPERTIES_VERSION = 2  # 2: enthalpies over the sampled volumes only


def property_task(calc: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    """Campaign task: run protocol ``item["name"]`` with ``item["kwargs"]``; returns the
    result's ``as_dict()``."""
    function, fixed = _protocols()[item["name"]]
    return function(calc, **{**fixed, **item["kwargs"]}).as_dict()


def _check_result(value: Any) -> str | None:
    """Why a cached protocol result is unusable (None: it is fine)."""
    result_from_dict(value)
    return None


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
                       "phonons"), params: Mapping[str, Mapping[str, Any]] | None = None, *,
                       symbol: str = "Si", workers: int = 0, scheduler: str | None = None,
                       cache_dir: Any = None, progress: Any = None) -> PropertySet:
    """Run property protocols ``names`` (see :data:`PROTOCOLS`) for ``potential`` (a
    :class:`~pytest_mlpval.potentials.Potential`; a bare calculator works uncached).

    Each protocol is one campaign item with its own cache key (the potential's hash,
    the protocol and its parameters ``params[name]``), so adding a protocol later does
    not recompute the others. With ``workers`` > 0 or a Dask ``scheduler`` the protocols
    run concurrently over one pool; a protocol whose worker process dies fails alone
    (the others' items it took down run again). A protocol that fails is reported in
    ``errors``, not raised. Ctrl-C cancels what has not started.
    """
    from concurrent.futures import ThreadPoolExecutor

    from pytest_mlpval.campaign import make_executor, run_campaign

    params = dict(params or {})
    unknown = [n for n in list(names) + list(params) if n not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown property protocol(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(PROTOCOLS)}")
    start = time.perf_counter()
    items = {name: {"name": name, "kwargs": {"symbol": symbol, **dict(params.get(name, {}))}}
             for name in names}
    parallel = bool(scheduler) or workers > 0
    executor, _, shutdown = make_executor(workers, scheduler) if parallel else (None, "", None)

    def one(name: str):
        return run_campaign(f"property:{name}", property_task, [items[name]], potential,
                            items[name], version=PROPERTIES_VERSION, executor=executor,
                            cache_dir=cache_dir, progress=progress, validate=_check_result)

    try:
        if parallel:
            threads = ThreadPoolExecutor(max_workers=max(1, len(items)))
            try:
                campaigns = dict(zip(items, threads.map(one, items)))
            finally:  # on Ctrl-C: do not wait for the threads, the pool cancels their items
                threads.shutdown(wait=False, cancel_futures=True)
        else:
            campaigns = {name: one(name) for name in items}
    finally:
        if shutdown is not None:
            shutdown()
    results, errors, cached = {}, {}, []
    for name, campaign in campaigns.items():
        item = campaign.items[0]
        if item.ok:
            results[name] = result_from_dict(item.value)
            if item.from_cache:
                cached.append(name)
        else:
            errors[name] = item.error or "failed"
    return PropertySet(results, errors, tuple(cached), time.perf_counter() - start)
