"""Ready-made tests of physical properties against experiment and DFT (the tutorial's
Table I), one per property group.

Switch them all on in a suite by importing them into a test module, with thresholds as
``mlpval_property`` markers on the module::

    from pytest_mlpval.property_tests import *  # noqa: F401,F403

    pytestmark = [pytest.mark.mlpval_property("C44_GPa", rel=0.15),
                  pytest.mark.mlpval_property("lattice_parameter_A", rel=0.005,
                                              against="PBE", training_level="PBE")]

Each module-level marker goes to the test of its property's group (``C44_GPa`` to
:func:`test_mlpval_elastic`); a marker whose property no test computes is a usage
error. To give one group its own markers (or an ``xfail``), subclass its class instead::

    @pytest.mark.mlpval_property("C12_GPa", rel=0.10, against="PBE")
    @pytest.mark.xfail(strict=True, reason="C12 73.5 vs 57.6 GPa (PBE)")
    class TestElasticVsPBE(ElasticTests):
        pass

Markers on a class or a test must name properties of that test's group. Every test
runs its protocols through :func:`~pytest_mlpval.protocols.properties.compute_properties`
with the campaign options (workers, Dask scheduler, the campaign cache: a rerun is read
back, not recomputed), records every protocol's metrics (summary, ``--mlpval-json``,
baselines; EoS and phonon figures in ``--mlpval-report``) and compares the marked
properties with the reference table (:mod:`pytest_mlpval.comparison`): a failure lists
candidate, reference, source, difference and tolerance, and flags a comparison across
DFT levels. The elastic and phonon tests also check Born and dynamical stability.

The elastic constants, the EoS and the phonons are computed at two or three finite
amplitudes (strains, strain spans, displacements; their settings' ``spread_*`` fields):
the values reported are those at the protocol's default amplitude, the spread over the
amplitudes is each property's protocol uncertainty (``C11_amplitude_spread_GPa``,
shown beside the value in a failure's table), and a relative spread above the
settings' ``max_amplitude_spread_fraction`` (default 5 %) fails the test on the
roughness of the potential energy surface (the result's
``assert_amplitude_independent()``), before any comparison.

The candidate's training level (``"PBE"``) comes from a marker's ``training_level=``,
the ini line ``mlpval_training_level`` (where the suite registers it) or the test
module's ``MLPVAL_TRAINING_LEVEL``; ``MLPVAL_REFERENCE_FILES`` (paths relative to the
test module) adds users' reference files, and ``MLPVAL_PROPERTY_PARAMS`` (protocol ->
fields of its settings, e.g. ``{"elastic": {"n_strains": 3}}``) overrides the protocols'
settings after the tier's. The liquid and vacancy-size tests are campaigns of the full
tier (``--mlpval-tier=full``).

The crystals: the tests run on silicon's crystals unless the module names its own.
``MLPVAL_CRYSTAL`` is the suite's crystal, a spec of
:func:`~pytest_mlpval.crystals.build_crystal` (``"bcc"``, ``"rocksalt:a=4.2"``,
``"file:Mo.cif"`` relative to the test module, ...): every protocol with a ``crystal``
setting runs on it (lattice, EoS, elastic constants of its symmetry, phonons, vacancy,
surfaces) and the polymorphs are compared with it; ``MLPVAL_POLYMORPHS`` lists the
polymorphs (default: the crystal alone, or bcc, fcc and hcp when it is one of them);
``MLPVAL_SURFACES`` the facets (``("100", "110", "111", "211")``; default the three
surface protocols' (100), (110), (111)); ``MLPVAL_SYMBOL`` the element or formula
(default: the potential's species; a compound's in their order, e.g. ``"SiC"``, which
is also the ``element`` of its reference file). The references are the packaged table
of the element (``reference_data/<element name>.json``: silicon, molybdenum) plus
``MLPVAL_REFERENCE_FILES``, keyed by the names of :mod:`pytest_mlpval.references`. A
molybdenum suite::

    MLPVAL_CRYSTAL = "bcc"
    MLPVAL_SURFACES = ("100", "110", "111")
    MLPVAL_PROPERTY_PARAMS = {"vacancy": {"supercell": 3}}

The groups come from the registry: a property protocol registered with
``family="properties"`` (:func:`~pytest_mlpval.protocols.base.register`) joins the
group its settings class names (``group``, else a group of its own) with the tier's
settings (``tiers``); the metric names its result class claims (``owns``, a regular
expression) route markers to that group, and the result's ``assert_physical()`` is its
physical check. :func:`check_group` runs any group, one without a ready-made test
included.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import fields
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_mlpval.assertions import MissingMetricError, MlpvalAssertionError
from pytest_mlpval.checks import perform_bounds_check
from pytest_mlpval.comparison import assert_properties, compare, compare_levels, level_table
from pytest_mlpval.crystals import UnknownCrystalError, crystal_spec
from pytest_mlpval.markers import PROPERTY, property_specs, training_level_of
from pytest_mlpval.planning import NOT_PLANNED, planned, properties_key
from pytest_mlpval.protocols.base import get_protocol
from pytest_mlpval.protocols.properties import (PropertyError, VacancyConvergence,
                                                compute_properties, facet_name,
                                                miller_indices, property_protocols)
from pytest_mlpval.references import (MissingReferenceError, ReferenceDataError,
                                      load_references)

__all__ = [
    "test_mlpval_lattice", "test_mlpval_elastic", "test_mlpval_phonons",
    "test_mlpval_vacancy", "test_mlpval_surfaces", "test_mlpval_polymorphs",
    "test_mlpval_liquid", "test_mlpval_vacancy_convergence",
    "LatticeTests", "ElasticTests", "PhononTests", "VacancyTests", "SurfaceTests",
    "PolymorphTests", "LiquidTests", "VacancyConvergenceTests",
]

#: the group of the vacancy size convergence: the vacancy protocol at each of
#: :data:`VACANCY_SIZES`
VACANCY_CONVERGENCE = "vacancy_convergence"

#: vacancy sizes of the full-tier convergence test
VACANCY_SIZES = (2, 3)


def protocol_group(name: str) -> str:
    """The group of property protocol ``name``: its settings class's ``group``, else its
    own name."""
    return getattr(get_protocol(name).settings, "group", "") or name


def groups() -> dict[str, tuple[str, ...]]:
    """Each group of the registered property protocols and the protocols its test runs
    (:func:`~pytest_mlpval.protocols.properties.property_protocols`, grouped by
    :func:`protocol_group`), and the vacancy size convergence."""
    out: dict[str, tuple[str, ...]] = {}
    for name in property_protocols():
        group = protocol_group(name)
        out[group] = out.get(group, ()) + (name,)
    out[VACANCY_CONVERGENCE] = ("vacancy",)
    return out


def _owners() -> list[tuple[str, re.Pattern[str]]]:
    """(group, pattern of the metric names it computes) from each protocol's result class
    (``owns``), in the order the protocols were registered."""
    out = []
    for name in property_protocols():
        pattern = getattr(get_protocol(name).result, "owns", "")
        if pattern:
            out.append((protocol_group(name), re.compile(f"^({pattern})$")))
    return out


def group_of(property: str) -> str | None:
    """The group whose test computes ``property`` (None: no ready-made test does)."""
    for group, pattern in _owners():
        if pattern.match(property):
            return group
    return None


def _accepts(group: str) -> set[str]:
    return {"vacancy"} if group == VACANCY_CONVERGENCE else {group}


def _element(request: pytest.FixtureRequest, species: tuple[str, ...]) -> str:
    """The element or formula of the properties: ``MLPVAL_SYMBOL``, else the potential's
    one species, else (a crystal given by ``MLPVAL_CRYSTAL``) its species as a formula."""
    symbol = _module_setting(request, "MLPVAL_SYMBOL", None)
    if symbol:
        return str(symbol)
    if len(species) == 1:
        return species[0]
    if species and _module_setting(request, "MLPVAL_CRYSTAL", None):
        return "".join(species)
    pytest.skip(f"the property tests compare one element (or the compound of "
                f"MLPVAL_SYMBOL / MLPVAL_CRYSTAL) with its reference table; this potential "
                f"has species {', '.join(species) or 'none'}")


def _module_setting(request: pytest.FixtureRequest, name: str, default: Any) -> Any:
    module = getattr(request.node, "module", None)
    return getattr(module, name, default) if module is not None else default


def _crystals(request: pytest.FixtureRequest) -> tuple[str | None, tuple[str, ...] | None]:
    """(the suite's crystal spec, its polymorphs' specs) from ``MLPVAL_CRYSTAL`` and
    ``MLPVAL_POLYMORPHS`` (``file:`` paths relative to the test module); None: the
    protocols' defaults (silicon's diamond and phases)."""
    crystal = _module_setting(request, "MLPVAL_CRYSTAL", None)
    polymorphs = _module_setting(request, "MLPVAL_POLYMORPHS", None)
    if crystal is None and polymorphs is None:
        return None, None
    base = Path(str(request.node.path)).parent
    try:
        crystal = crystal_spec(crystal, base) if crystal else None
        if polymorphs is not None:
            polymorphs = tuple(crystal_spec(p, base) for p in (
                [polymorphs] if isinstance(polymorphs, str) else polymorphs))
        elif crystal is not None:
            polymorphs = (crystal,) + tuple(
                n for n in METALLIC_POLYMORPHS if crystal in METALLIC_POLYMORPHS and
                n != crystal)
    except (UnknownCrystalError, ValueError) as exc:
        raise pytest.UsageError(f"{request.node.nodeid}: MLPVAL_CRYSTAL / "
                                f"MLPVAL_POLYMORPHS: {exc}") from None
    return crystal, polymorphs


#: the polymorphs compared when ``MLPVAL_CRYSTAL`` is one of them and
#: ``MLPVAL_POLYMORPHS`` is not given
METALLIC_POLYMORPHS = ("bcc", "fcc", "hcp")


def _surfaces(request: pytest.FixtureRequest) -> tuple[str, ...] | None:
    """The facets of ``MLPVAL_SURFACES`` (None: the protocols' (100), (110), (111))."""
    facets = _module_setting(request, "MLPVAL_SURFACES", None)
    if facets is None:
        return None
    if isinstance(facets, str):
        facets = [facets]
    try:
        return tuple(facet_name(miller_indices(f)) for f in facets)
    except ValueError as exc:
        raise pytest.UsageError(f"{request.node.nodeid}: MLPVAL_SURFACES: {exc}") from None


def _references(request: pytest.FixtureRequest, element: str) -> Any:
    files = _module_setting(request, "MLPVAL_REFERENCE_FILES", ())
    base = Path(str(request.node.path)).parent
    paths = [p if Path(p).is_absolute() else base / p for p in
             ([files] if isinstance(files, (str, Path)) else files)]
    try:
        return load_references(element, paths)
    except ReferenceDataError as exc:
        raise pytest.UsageError(f"{request.node.nodeid}: {exc}") from None


def _params(request: pytest.FixtureRequest, group: str, tier: str) -> dict[str, dict]:
    """The settings of the group's protocols that differ from their defaults: the
    tier's (the settings class's ``tiers``), the module's ``MLPVAL_CRYSTAL`` (every
    protocol's ``crystal``, the polymorphs' ``reference``) and ``MLPVAL_POLYMORPHS``,
    then the module's ``MLPVAL_PROPERTY_PARAMS``."""
    overrides = _module_setting(request, "MLPVAL_PROPERTY_PARAMS", {}) or {}
    tier = "full" if tier == "full" else "quick"
    crystal, polymorphs = _crystals(request)
    params = {}
    for name in groups()[group]:
        settings = get_protocol(name).settings
        tiers = getattr(settings, "tiers", {})
        chosen: dict[str, Any] = {}
        known = {f.name for f in fields(settings)}
        if crystal is not None and "crystal" in known:
            chosen["crystal"] = crystal
        if crystal is not None and {"names", "reference"} <= known:
            chosen.update(reference=crystal, names=polymorphs)
        elif polymorphs is not None and "names" in known:
            chosen["names"] = polymorphs
        params[name] = {**tiers.get(tier, {}), **chosen, **overrides.get(name, {})}
    return params


def _specs_for(item: pytest.Item, group: str) -> list[Any]:
    """This test's property markers, validated; module-wide ones of other groups are
    left to their tests, closer ones must belong to this group."""
    mine, seen = [], set()
    for spec in property_specs(item):
        owner = group_of(spec.metric or spec.name)
        if owner is None:
            raise pytest.UsageError(
                f"{item.nodeid}: {spec.text}: no ready-made property test computes "
                f"{spec.name!r}; groups: {', '.join(dict(_owners()))} (compare other "
                "properties with pytest_mlpval.comparison.assert_property in a test of "
                "your own)")
        if owner not in _accepts(group):
            if spec.scope == "module":
                continue
            raise pytest.UsageError(
                f"{item.nodeid}: {spec.text}: this test computes the {group} properties; "
                f"{spec.name!r} is computed by test_mlpval_{owner} (put the @pytest.mark."
                f"{PROPERTY} marker there or on the module)")
        key = (spec.name, spec.against)
        if key not in seen:  # closest first: a test's own marker wins over the module's
            seen.add(key)
            mine.append(spec)
    return mine


def _level_lines(candidate: Any, references: Any, names: list[str], level: str | None
                 ) -> list[str]:
    if not level or not level.startswith("DFT-"):
        return []
    rows = []
    for name in dict.fromkeys(names):
        try:
            rows += [r for r in compare_levels(candidate, references, name, level)
                     if r.dft is not None]  # without a number at its level: nothing to add
        except (MissingReferenceError, KeyError):
            continue
    if not rows:
        return []
    return ["", f"fit error (candidate vs {level}) and {level}'s own error (vs experiment):"
            ] + level_table(rows, level)


def _compare(mlpval: Any, item: pytest.Item, specs: list[Any], metrics: dict[str, float],
             records: dict[str, dict[str, Any]], references: Any, level: str | None
             ) -> list[str]:
    """Compare, record the comparisons on their protocols' records; failure messages."""
    def check(metrics: Any, units: Any, spec: Any, source: str) -> list[Any]:
        key = spec.metric or spec.name
        if key not in metrics:
            raise MissingMetricError(
                f"the protocols of this test gave no {key!r}; they gave "
                f"{', '.join(sorted(metrics))} (set their parameters with "
                "MLPVAL_PROPERTY_PARAMS in the test module)")
        return [compare(metrics, references, spec.name, spec.against, rel=spec.rel,
                        abs=spec.abs, training_level=level, metric=spec.metric)]

    def record(spec: Any, checked: list[Any]) -> None:
        (c,) = checked
        record = records[spec.metric or spec.name]
        name = f"|{spec.name} - {c.against}|"
        record["metrics"][name] = abs(c.difference)
        record["units"][name] = c.unit
        record["thresholds"].append({
            "metric": name, "subset": "max", "bound": "max", "value": abs(c.difference),
            "limit": c.tolerance, "unit": c.unit, "passed": c.passed,
            "property": c.property, "candidate": c.candidate, "against": c.against,
            "reference": c.reference.value, "source": c.reference.source,
            "level_mismatch": c.level_mismatch, "training_level": level,
            **({"amplitude_spread": c.amplitude_spread}
               if math.isfinite(c.amplitude_spread) else {})})

    def failures(checked: Any) -> list[str]:
        return _failures([(spec, c) for spec, _, (c,) in checked], metrics, references,
                         level, mlpval.potential.name, item.nodeid)

    try:
        perform_bounds_check(
            metrics, {}, [(spec, spec.text) for spec in specs],
            what=mlpval.potential.name, record=record, check=check, failures=failures,
            usage_errors=(MissingMetricError, MissingReferenceError),
            on_usage_error=lambda exc, source: pytest.UsageError(
                f"{item.nodeid}: {source}: {exc}"))
    except MlpvalAssertionError as exc:
        return [str(exc)]
    return []


def _failures(comparisons: list[tuple[Any, Any]], metrics: dict[str, float],
              references: Any, level: str | None, potential: str, nodeid: str
              ) -> list[str]:
    """Failure messages of the comparisons: a table per reference kind with a failure."""
    failed = [(s, c) for s, c in comparisons if not c.passed]
    if not failed:
        return []
    messages = []
    for kind in dict.fromkeys(c.against for _, c in comparisons):
        group = [(s, c) for s, c in comparisons if c.against == kind]
        if all(c.passed for _, c in group):
            continue
        tolerances = {s.name: {"rel": s.rel, "abs": s.abs, "metric": s.metric}
                      for s, _ in group}
        try:
            assert_properties(metrics, references, tolerances, kind, training_level=level)
        except MlpvalAssertionError as exc:
            messages.append(f"{potential}: {exc}")
    names = [s.name for s, _ in failed]
    if not messages:  # cannot happen: the same comparisons failed above
        messages = [f"{potential}: {', '.join(names)} outside tolerance"]
    messages[-1] += "\n" + "\n".join(_level_lines(metrics, references, names, level)
                              + ["", f"tolerances from {'; '.join(s.text for s, _ in failed)}"
                                 f" in {nodeid}; change them there"])
    return messages


def _stability(result: Any, check: str = "assert_physical") -> str | None:
    """The message of the result's physical check (``assert_physical``), or of another
    of its checks (``assert_amplitude_independent``), if it fails."""
    method = getattr(result, check, None)
    try:
        if method is not None:
            method()
    except MlpvalAssertionError as exc:
        return str(exc)
    return None


def _bound_amplitude_spread(record: dict[str, Any], result: Any) -> None:
    """The limit of the result's relative amplitude spread (``*_amplitude_spread_fraction``
    against its ``max_amplitude_spread_fraction``) as a bound of its record, so that the
    summary and the verdict name the roughness; none when not measured."""
    metrics = result.metrics()
    names = [k for k in metrics if k.endswith("_amplitude_spread_fraction")]
    if len(names) != 1 or not math.isfinite(metrics[names[0]]):
        return
    value, limit = float(metrics[names[0]]), float(result.max_amplitude_spread_fraction)
    record["thresholds"].append({"metric": names[0], "subset": "max", "bound": "max",
                                 "value": value, "limit": limit, "unit": "",
                                 "passed": value <= limit})


def property_calls(request: Any, species: tuple[str, ...], group: str, tier: str
                   ) -> tuple[str, list[tuple[str | None, list[str], dict[str, Any]]]]:
    """What ``test_mlpval_<group>`` computes for a candidate of ``species``: the element
    and its ``compute_properties`` calls ``(label, names, params)``. ``request`` needs
    only ``.node`` (the test): :mod:`pytest_mlpval.planning` plans them up front."""
    element = _element(request, tuple(species))
    params = _params(request, group, tier)
    facets = _surfaces(request) if group == "surfaces" else None
    if group == VACANCY_CONVERGENCE:
        calls = [(f"vacancy_{size}", ["vacancy"], {"vacancy": {**params["vacancy"],
                                                               "supercell": size}})
                 for size in VACANCY_SIZES]
    elif facets is not None:  # MLPVAL_SURFACES: the (100) protocol on each facet
        calls = [(f"surface_{facet}", ["surface_100"],
                  {"surface_100": {**params["surface_100"], "facet": facet}})
                 for facet in facets]
    else:
        calls = [(None, list(groups()[group]), params)]
    return element, calls


#: the groups whose ready-made test runs only with --mlpval-tier=full
FULL_TIER_GROUPS = ("liquid", VACANCY_CONVERGENCE)


def plan_properties(item: pytest.Item, potential: Any, species: tuple[str, ...], tier: str,
                    options: Any) -> list[tuple[Any, str, Any]]:
    """``(key, label, call)`` of each ``compute_properties`` call the ready-made property
    test ``item`` will make (its functions' ``mlpval_plan``, which
    :mod:`pytest_mlpval.planning` runs up front)."""
    group = item.function.__name__.removeprefix("test_mlpval_")
    if group in FULL_TIER_GROUPS and tier != "full":
        return []
    symbol, calls = property_calls(SimpleNamespace(node=item), species, group, tier)
    return [(properties_key(potential.name, names, params, symbol),
             f"{label or group} ({potential.name})",
             partial(compute_properties, potential, names, params, symbol=symbol,
                     options=options)) for label, names, params in calls]


def check_group(mlpval: Any, request: pytest.FixtureRequest, species: tuple[str, ...],
                group: str) -> dict[str, Any]:
    """Compute the protocols of ``group`` for the test's potential (cached campaign),
    record them, check stability and the test's ``mlpval_property`` markers. Returns
    the results by protocol name."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    item = request.node
    element, calls = property_calls(request, species, group, mlpval.tier)
    specs = _specs_for(item, group)
    level = training_level_of(item, specs,
                              _module_setting(request, "MLPVAL_TRAINING_LEVEL", None))
    references = _references(request, element)
    results: dict[str, Any] = {}
    for label, names, kwargs in calls:
        computed = planned(item.config, properties_key(mlpval.potential.name, names, kwargs,
                                                       element))
        if computed is NOT_PLANNED:
            computed = compute_properties(mlpval.potential, names, kwargs, symbol=element,
                                          options=mlpval.run_options())
        for name in names:
            try:
                results[label or name] = computed[name]
            except PropertyError as exc:
                raise MlpvalAssertionError(f"{mlpval.potential.name}: {exc}") from None
    if group == VACANCY_CONVERGENCE:
        ordered = tuple(results[f"vacancy_{s}"] for s in VACANCY_SIZES)
        results = {VACANCY_CONVERGENCE: VacancyConvergence(
            ordered, ordered[-1].formation_eV - ordered[-2].formation_eV)}
    metrics: dict[str, float] = {}
    records: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        record = mlpval.record_result(result, name)
        for key, value in result.metrics().items():
            metrics.setdefault(key, float(value))
            records.setdefault(key, record)
        _bound_amplitude_spread(record, result)
    # the PES roughness first: a property that moves with the finite amplitude also
    # makes the physical checks (B', stability) and the comparisons meaningless
    rough = [f"{mlpval.potential.name}: {m}" for m in
             (_stability(r, "assert_amplitude_independent") for r in results.values()) if m]
    messages = rough + [m for m in map(_stability, results.values()) if m]
    messages += _compare(mlpval, item, specs, metrics, records, references, level)
    if messages:
        raise MlpvalAssertionError("\n\n".join(messages))
    return results


def _full_tier_only(mlpval: Any, what: str) -> None:
    if mlpval.tier != "full":
        pytest.skip(f"{what} is a campaign of the full tier: run with --mlpval-tier=full")


# --- the ready-made tests ---------------------------------------------------------------

def test_mlpval_lattice(mlpval, mlpval_species, request):
    """Relaxed lattice (symmetry kept, spglib-checked) and Birch–Murnaghan EoS of the
    suite's crystal (diamond by default): a0 (Å), V0 (Å^3/atom), B (GPa), B'; the EoS
    strain span is recorded."""
    check_group(mlpval, request, mlpval_species, "lattice")


def test_mlpval_elastic(mlpval, mlpval_species, request):
    """Elastic constants (GPa) with the ions relaxed at each strain (the independent
    constants of the crystal's symmetry: C11, C12, C44 for cubic) and clamped
    (C.._clamped); fails when Born-unstable."""
    check_group(mlpval, request, mlpval_species, "elastic")


def test_mlpval_phonons(mlpval, mlpval_species, request):
    """phonopy phonons: branches at the special points (Gamma, X, L for diamond; THz);
    fails on imaginary modes beyond the tolerance (dynamical instability)."""
    check_group(mlpval, request, mlpval_species, "phonons")


def test_mlpval_vacancy(mlpval, mlpval_species, request):
    """Relaxed vacancy formation energy (eV) in a supercell of the conventional cell
    (64 atoms for diamond; size recorded)."""
    check_group(mlpval, request, mlpval_species, "vacancy")


def test_mlpval_surfaces(mlpval, mlpval_species, request):
    """Relaxed surface energies (J/m^2) on (100), (110), (111) or ``MLPVAL_SURFACES``
    (diamond: (100) 1x1 and (111) shuffle)."""
    check_group(mlpval, request, mlpval_species, "surfaces")


def test_mlpval_polymorphs(mlpval, mlpval_species, request):
    """E(V) of the polymorphs (diamond, beta-Sn, more in the full tier; or
    ``MLPVAL_POLYMORPHS``), energies relative to the suite's crystal (eV/atom) and the
    transition pressures from it (GPa)."""
    check_group(mlpval, request, mlpval_species, "polymorphs")


def test_mlpval_liquid(mlpval, mlpval_species, request):
    """Liquid at the experimental density from MD: g(r) and S(q) peaks, coordination
    (full tier)."""
    _full_tier_only(mlpval, "the liquid run")
    check_group(mlpval, request, mlpval_species, "liquid")


def test_mlpval_vacancy_convergence(mlpval, mlpval_species, request):
    """Vacancy formation energy in 64- and 216-atom cells and its change (full tier)."""
    _full_tier_only(mlpval, "the vacancy size convergence")
    check_group(mlpval, request, mlpval_species, "vacancy_convergence")


for _test in (test_mlpval_lattice, test_mlpval_elastic, test_mlpval_phonons,
              test_mlpval_vacancy, test_mlpval_surfaces, test_mlpval_polymorphs,
              test_mlpval_liquid, test_mlpval_vacancy_convergence):
    _test.mlpval_plan = plan_properties  # what it computes, planned up front


# --- the same, as classes to subclass with markers of their own ---------------------------

def _class(name: str, test: Any, what: str) -> type:
    doc = f"Subclass (Test...) to give the {what} test markers of its own."

    def method(self, mlpval, mlpval_species, request):
        __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
        test(mlpval, mlpval_species, request)

    method.__name__ = test.__name__
    method.mlpval_plan = plan_properties
    method.__doc__ = test.__doc__
    return type(name, (), {test.__name__: method, "__doc__": doc,
                           "__module__": __name__})


LatticeTests = _class("LatticeTests", test_mlpval_lattice, "lattice/EoS")
ElasticTests = _class("ElasticTests", test_mlpval_elastic, "elastic")
PhononTests = _class("PhononTests", test_mlpval_phonons, "phonon")
VacancyTests = _class("VacancyTests", test_mlpval_vacancy, "vacancy")
SurfaceTests = _class("SurfaceTests", test_mlpval_surfaces, "surface")
PolymorphTests = _class("PolymorphTests", test_mlpval_polymorphs, "polymorph")
LiquidTests = _class("LiquidTests", test_mlpval_liquid, "liquid")
VacancyConvergenceTests = _class("VacancyConvergenceTests", test_mlpval_vacancy_convergence,
                                 "vacancy size")
