"""The ``mlpval`` fixture object: compute errors for the test's potential, record them,
check them against thresholds (marker and keyword limits)."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.checks import perform_bounds_check
from pytest_mlpval.errors import (NonFiniteError, ProtocolError, SettingsError,
                                  UnknownProtocolError)
from pytest_mlpval.protocols.base import CampaignOptions, Result, get_protocol
from pytest_mlpval.protocols.base import run_protocol as run_registered
from pytest_mlpval.report import figure_reference
from pytest_mlpval.markers import EXPECT, THRESHOLDS, ThresholdSpec, expectations_of, thresholds_of
from pytest_mlpval.session import LINKS, PROPERTY, SESSION, SUBJECT_PROPERTY, MlpvalSession


@dataclass
class ItemState:
    """Per-test bookkeeping, kept in ``item.stash``."""

    records: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    checked: bool = False
    expected: bool = False  # mlpval.expect was called: markers were applied there
    subject: dict[str, Any] | None = None  # who the test judges (pytest_mlpval.subjects)


ITEM_STATE = pytest.StashKey[ItemState]()


def item_state(item: pytest.Item) -> ItemState:
    if ITEM_STATE not in item.stash:
        item.stash[ITEM_STATE] = ItemState()
    return item.stash[ITEM_STATE]


#: a test that judges several subjects is shown under the last of these it uses
_RANK = {"candidate": 0, "dataset": 1, "recipe": 2}


def set_subject(item: pytest.Item, subject: dict[str, Any]) -> None:
    """Make ``subject`` the test's subject, unless it already has one of a later kind
    (a test using a recipe fixture and ``mlpval`` is the recipe's)."""
    state = item_state(item)
    old = state.subject
    if old is None or _RANK[subject["kind"]] >= _RANK[old["kind"]]:
        state.subject = subject


def item_subject(item: pytest.Item) -> dict[str, Any] | None:
    """Who a test judges: what its mlpval fixtures said, else (a fixture that failed
    or never ran) what its fixtures and parameters tell; None for other tests."""
    state = item.stash.get(ITEM_STATE, None)
    if state is not None and state.subject is not None:
        return state.subject
    names = getattr(item, "fixturenames", ())
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "mlpval_cv" in names:
        mark = item.get_closest_marker("mlpval_cv")
        name = mark.kwargs.get("recipe") if mark is not None else None
        return {"kind": "recipe", "name": name if isinstance(name, str) else "no-recipe",
                "identity": {}}
    if "mlpval_domain" in names:
        training = item.config.stash[SESSION].settings.training_dataset
        return {"kind": "dataset", "name": training or "no-training-dataset",
                "identity": {}}
    if "mlpval_potential" in params:
        entry = params["mlpval_potential"]
        return {"kind": "candidate", "name": getattr(entry, "name", entry),
                "identity": {"sha256": getattr(entry, "sha256", None)}}
    if "mlpval_dataset" in params:
        spec = params["mlpval_dataset"]
        return {"kind": "dataset", "name": getattr(spec, "name", spec), "identity": {}}
    return None


def attach_subject(item: pytest.Item) -> None:
    """Put ``("mlpval_subject", {"kind", "name"})`` on ``user_properties`` (replacing an
    earlier one: a recipe is known by name once its test ran)."""
    from pytest_mlpval.subjects import subject_brief

    subject = item_subject(item)
    if subject is None:
        return
    item.user_properties[:] = [p for p in item.user_properties
                               if not (isinstance(p, tuple) and p[:1] == (SUBJECT_PROPERTY,))]
    item.user_properties.append((SUBJECT_PROPERTY, subject_brief(subject)))


def attach_records(item: pytest.Item) -> None:
    """Put the test's records and subject on ``user_properties`` (done once, before the
    call report)."""
    state = item.stash.get(ITEM_STATE, None)
    if state is not None and state.records:
        item.user_properties.append((PROPERTY, list(state.records.values())))
    attach_subject(item)


class MlpvalFixture:
    """What the ``mlpval`` fixture returns.

    ``mlpval.errors(reference)`` computes (once per session) the errors of the test's
    potential on a :class:`~pytest_mlpval.data.ReferenceSet`; ``mlpval.check(report,
    force_rmse=0.15)`` checks limits (plus the test's ``mlpval_thresholds`` markers) and
    records every metric for the summary and the JSON file.

    Records carry the ``subject`` they judge (:mod:`pytest_mlpval.subjects`): the
    candidate ``potential``, or for the dataset and recipe fixtures
    (``pytest_mlpval.domain_tests``) a ``subject`` given here, with ``potential`` None.
    """

    def __init__(self, item: pytest.Item, session: MlpvalSession, potential: Any,
                 subject: dict[str, Any] | None = None) -> None:
        self._item = item
        self._session = session
        self.potential = potential
        if subject is None:
            from pytest_mlpval.subjects import candidate_subject

            subject = candidate_subject(potential.info, fitted_by(item.config, potential))
        self.subject = subject

    @property
    def subject(self) -> dict[str, Any]:
        """Who this fixture's records judge; setting it updates the test's subject."""
        return self._subject

    @subject.setter
    def subject(self, subject: dict[str, Any]) -> None:
        self._subject = subject
        set_subject(self._item, subject)

    def _key(self) -> str:
        from pytest_mlpval.subjects import subject_label

        return subject_label(self.subject)

    def _potential_info(self) -> dict[str, Any] | None:
        return None if self.potential is None else self.potential.info.as_dict()

    @property
    def calculator(self) -> Any:
        return self.potential.calculator

    def errors(self, reference: Any) -> Any:
        report = self._session.errors(self.potential, reference)
        record = self._record(report, reference)
        arrays = self._session.report_arrays(self.potential, reference)
        if arrays is not None:  # only with --mlpval-report, once per process and pair
            record["arrays"] = arrays
        return report

    def record(self, report: Any, reference: Any = None) -> None:
        """Record every metric of ``report`` for the summary and JSON."""
        self._record(report, reference)

    def _record(self, report: Any, reference: Any = None) -> dict[str, Any]:
        from pytest_mlpval.metrics import metric_unit

        key = (self._key(), report.dataset, report.subset)
        state = item_state(self._item)
        if key not in state.records:
            metrics = report.metrics()
            state.records[key] = {
                "kind": "errors",
                "potential": self._potential_info(),
                "subject": self.subject,
                "dataset": reference.as_dict() if reference is not None
                else self._session.dataset_info(report.dataset),
                "subset": report.subset,
                "n_structures": len(report),
                "n_atoms": int(report.n_atoms.sum()),
                "metrics": metrics,
                "units": {name: metric_unit(name) for name in metrics},
                "thresholds": [],
                # NaN because nothing was counted (no reference force reaches the
                # angle threshold): a gap, not a fault
                "not_measured": sorted(getattr(report, "not_measured", list)()),
            }
        return state.records[key]

    def record_metrics(self, kind: str, group: str, subset: str, metrics: dict[str, float],
                       units: dict[str, str], thresholds: list[dict[str, Any]] = (),
                       reduce: str = "last") -> dict[str, Any]:
        """Record metrics other than errors (``kind`` e.g. ``"cost"``, ``"checks"``) for
        the summary and JSON. ``reduce="max"`` keeps the largest value of each metric
        over repeated calls (Hypothesis examples)."""
        key = (self._key(), f"{kind}:{group}", subset)
        state = item_state(self._item)
        record = state.records.get(key)
        if record is None:
            record = state.records[key] = {
                "kind": kind, "potential": self._potential_info(), "subject": self.subject,
                "dataset": {"name": group}, "subset": subset, "n_structures": 0,
                "n_atoms": 0, "metrics": {}, "units": {}, "thresholds": [],
            }
        for name, value in metrics.items():
            if reduce != "max" or name not in record["metrics"] or _worse(
                    value, record["metrics"][name]):
                record["metrics"][name] = value
        record["units"].update(units)
        if reduce == "max":
            from pytest_mlpval.results import worse_check

            by_metric = {t["metric"]: t for t in record["thresholds"]}
            for t in thresholds:
                old = by_metric.get(t["metric"])
                if old is None or worse_check(t, old):
                    by_metric[t["metric"]] = dict(t)
            record["thresholds"] = list(by_metric.values())
        else:
            record["thresholds"].extend(dict(t) for t in thresholds)
        record["n_structures"] += 1
        return record

    def record_check(self, result: Any) -> None:
        """Record an :class:`~pytest_mlpval.protocols.invariance.CheckResult`, keeping the worst
        over the structures a test tried: its value (a judged check), or its status
        ``ERROR`` (the calculator raised) or ``skipped`` (the check does not apply) with
        the reason, so that the physics table has a row for every check that ran."""
        status = getattr(result, "status", None) or ("ok" if result.passed else "FAIL")
        judged = status in ("ok", "FAIL")
        threshold = {"metric": result.check, "subset": result.check,
                     "value": result.value if judged else None, "limit": result.tolerance,
                     "unit": result.unit,
                     "passed": None if status == "skipped" else bool(result.passed),
                     "status": status}
        if not judged:
            threshold["reason"] = result.detail
        self.record_metrics("checks", "checks", result.check,
                            {result.check: result.value} if judged else {},
                            {result.check: result.unit}, [threshold], reduce="max")

    # --- campaigns and protocol results (RSS, MD, properties) ---------------------------

    @property
    def tier(self) -> str:
        """``"quick"`` or ``"full"`` (--mlpval-tier): the size a test should give its
        campaigns."""
        return self._session.settings.tier

    def run_options(self, **overrides: Any) -> CampaignOptions:
        """The :class:`~pytest_mlpval.protocols.base.CampaignOptions` of this run:
        ``workers``, ``scheduler`` (--mlpval-workers, --mlpval-dask-scheduler),
        ``cache_dir`` (pytest's cache, unless --mlpval-no-cache), a terminal
        ``progress`` callback and the run's one ``executor`` (with workers or a Dask
        scheduler: :mod:`pytest_mlpval.planning`); ``overrides`` replace fields by name."""
        from pytest_mlpval.planning import shared_executor

        settings = self._session.settings
        options = CampaignOptions(workers=settings.workers, scheduler=settings.scheduler,
                                  cache_dir=self._session.campaign_cache_dir(),
                                  progress=self._session.progress(),
                                  executor=shared_executor(self._item.config))
        return replace(options, **overrides) if overrides else options

    def campaign_options(self) -> dict[str, Any]:
        """:meth:`run_options` as keyword arguments (``workers``, ``scheduler``,
        ``cache_dir``, ``progress``), for protocols that take them one by one."""
        options = self.run_options()
        return {"workers": options.workers, "scheduler": options.scheduler,
                "cache_dir": options.cache_dir, "progress": options.progress}

    def run(self, protocol: Any, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        """Run a library protocol with this test's potential and the campaign options,
        record its ``metrics()``, and return its result:
        ``mlpval.run(run_rss, RssSettings(n_structures=20))``. ``kwargs`` override the
        campaign options; ``name`` is the protocol's name in the summary (default: the
        function's name without a ``run_`` prefix). A protocol that takes ``options``
        gets a CampaignOptions, others the options as keywords. A call planned up front
        (:mod:`pytest_mlpval.planning`) gets the planned job's result (or exception)."""
        from pytest_mlpval.planning import NOT_PLANNED, call_protocol, planned, run_key

        result = planned(self._item.config, run_key(self.potential.name, protocol, args,
                                                    kwargs))
        if result is NOT_PLANNED:
            result = call_protocol(protocol, self.potential, args, kwargs, self.run_options())
        label = name or getattr(protocol, "__name__", "protocol").removeprefix("run_")
        self.record_result(result, label)
        return result

    def run_protocol(self, name: str, settings: Any = None, **overrides: Any) -> Result:
        """Run the registered protocol ``name``
        (:func:`~pytest_mlpval.protocols.base.register`) for this test's potential with
        ``settings`` (default: the protocol's defaults) and ``overrides`` of their fields,
        as a cached campaign item under the run's campaign options; record its metrics
        under the protocol's name and return the result:
        ``mlpval.run_protocol("eos", points=9)``.

        An unknown protocol or setting is a usage error; a protocol that fails (a
        :class:`~pytest_mlpval.errors.ProtocolError`) fails the test, naming it."""
        __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
        where = f"{self._item.nodeid}: mlpval.run_protocol({name!r})"
        try:
            spec = get_protocol(name)
            settings = spec.settings() if settings is None else settings
            if overrides:
                settings = settings.with_overrides(**overrides)
        except (UnknownProtocolError, SettingsError) as exc:
            raise pytest.UsageError(f"{where}: {exc}") from None
        from pytest_mlpval.planning import NOT_PLANNED, planned, protocol_key

        try:
            result = planned(self._item.config,
                             protocol_key(self.potential.name, spec.name, settings))
            if result is NOT_PLANNED:
                result = run_registered(spec, self.potential, settings,
                                        options=self.run_options())
        except SettingsError as exc:  # settings of another protocol's type
            raise pytest.UsageError(f"{where}: {exc}") from None
        except ProtocolError as exc:
            raise ProtocolFailure(f"{_of(self.subject)}: {exc}") from None
        self.record_result(result, spec.name)
        return result

    def record_result(self, result: Any, protocol: str, group: str = "all") -> dict[str, Any]:
        """Record a protocol result's ``metrics()`` (with ``units()``) for the summary,
        the JSON file, the report and baselines."""
        metrics = {k: float(v) for k, v in result.metrics().items()}
        record = self.record_metrics("protocol", protocol, group, metrics,
                                     dict(result.units()))
        record["not_measured"] = sorted(not_measured(result, metrics))
        n = metrics.get("n_structures", record["n_structures"])
        record["n_structures"] = int(n) if math.isfinite(n) else record["n_structures"]
        if self._session.settings.report_dir is not None and hasattr(result, "report_data"):
            record["arrays"] = result.report_data()  # small, JSON-able; drawn in the report
            figure = getattr(type(result), "figure", None)  # Result.figure
            if figure is not None:
                record["figure"] = figure_reference(figure)
        return record

    def expect(self, result: Any, protocol: str | None = None, **bounds: float) -> list:
        """Check ``min_<metric>`` / ``max_<metric>`` bounds (and the test's
        ``mlpval_expect`` markers) on a protocol result now; raise
        :class:`~pytest_mlpval.assertions.MlpvalAssertionError` with a table on failure."""
        __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
        item_state(self._item).expected = True
        label = protocol or "result"
        record = self.record_result(result, label) if protocol else None
        specs = [s for s in expectations_of(self._item)
                 if s.protocol is None or s.protocol == protocol]
        groups = [(s.bounds, s.text) for s in specs]
        if bounds:
            groups.append((bounds, f"mlpval.expect({', '.join(f'{k}={v!r}' for k, v in bounds.items())})"))
        if not groups:
            raise pytest.UsageError(f"{self._item.nodeid}: mlpval.expect() without bounds, "
                                    f"and the test has no @pytest.mark.{EXPECT} marker")
        return perform_bounds_check(result.metrics(), result.units(), groups,
                                    what=f"{label} of {_of(self.subject)}", record=record)

    def failure_dir(self) -> Any:
        """Where failing structures are written: ``mlpval-failures`` in pytest's cache
        directory (None without the cache plugin)."""
        cache = getattr(self._item.config, "cache", None)
        return None if cache is None else cache.mkdir("mlpval-failures")

    def check(self, report: Any, *, config_type: str | None = None, **limits: float) -> list:
        """Check ``limits`` and the test's ``mlpval_thresholds`` markers on ``report``.

        Keyword limits override a marker's limit of the same name (for the same
        ``config_type``). Raises :class:`~pytest_mlpval.assertions.MlpvalAssertionError`
        with a table on failure; returns the checked results otherwise.
        """
        __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
        from pytest_mlpval.assertions import evaluate_thresholds, failure_message, validate_limits

        groups: dict[str | None, dict[str, float]] = {}
        sources: dict[str | None, list[str]] = {}
        # thresholds_of is closest first: apply farthest first so the closest marker wins
        for spec in reversed(thresholds_of(self._item)):
            groups.setdefault(spec.config_type, {}).update(spec.limits)
            sources.setdefault(spec.config_type, []).append(spec.text)
        if limits:
            groups.setdefault(config_type, {}).update(validate_limits(limits, "mlpval.check"))
            text = ", ".join(f"{k}={v!r}" for k, v in limits.items())
            sources.setdefault(config_type, []).append(f"mlpval.check({text})")
        elif config_type is not None:
            groups = {k: v for k, v in groups.items() if k == config_type}
        if not groups:
            raise pytest.UsageError(
                f"{self._item.nodeid}: mlpval.check() without limits, and the test has no "
                f"@pytest.mark.{THRESHOLDS} marker")
        item_state(self._item).checked = True
        self._record(report)
        messages, results = [], []
        for ctype, group_limits in groups.items():
            target = report if ctype is None else report.subset_by_config_type(ctype)
            checked = evaluate_thresholds(target, group_limits)
            record = self._record(target)
            record["thresholds"].extend(r.as_dict() for r in checked)
            results.extend(checked)
            if not all(r.passed for r in checked):
                hint = (f"limits from {'; '.join(sources[ctype])} in {self._item.nodeid}; "
                        "change them there")
                candidate = self.subject["kind"] == "candidate"
                message = failure_message(target, checked,
                                          self.potential.name if candidate else None, hint)
                messages.append(message if candidate else f"{_of(self.subject)}: {message}")
        if messages:
            raise MlpvalAssertionError("\n\n".join(messages))
        return results


class ProtocolFailure(MlpvalAssertionError):
    """A protocol run by ``mlpval.run_protocol`` could not produce a result for the
    test's subject; the message names the protocol and why."""


def not_measured(result: Any, metrics: dict[str, float]) -> set[str]:
    """Metrics of a protocol result that are NaN because they do not apply (a
    transition that does not occur in the sampled range, an onset never reached, a
    class with nothing in it): those its optional ``not_measured()`` method names, the
    library's results and anyone else's alike. Every other NaN metric is a fault that
    fails the test: one the calculator produced, a fit that broke down, a run that
    stopped (unstable, cut short) or a fold that did not run."""
    nan = {k for k, v in metrics.items() if v != v}
    declared = getattr(result, "not_measured", None)
    return nan & set(declared()) if callable(declared) and nan else set()


class NonFiniteMetricError(MlpvalAssertionError, NonFiniteError):
    """A test recorded a NaN or inf metric: a candidate's fault, never a pass."""


def nonfinite_failure(item: pytest.Item) -> NonFiniteMetricError | None:
    """The failure for the non-finite metrics the test recorded (None if there are
    none): each named with its potential, kind and protocol or dataset."""
    from pytest_mlpval.results import nonfinite_faults

    state = item.stash.get(ITEM_STATE, None)
    if state is None:
        return None
    lines = []
    for rec in state.records.values():
        kind = rec.get("kind", "errors")
        where = {"errors": f"dataset {rec['dataset']['name']!r}",
                 "protocol": f"protocol {rec['dataset']['name']!r}",
                 "checks": "physics check"}.get(kind, f"{kind} {rec['dataset']['name']!r}")
        if rec["subset"] not in ("all", rec["dataset"]["name"]) and kind != "checks":
            where += f" ({'config_type' if kind == 'errors' else 'group'} {rec['subset']!r})"
        for name, value in nonfinite_faults(rec):
            unit = rec["units"].get(name) or ""
            lines.append(f"  {name} = {value} {unit}".rstrip()
                         + f" for {_who(rec)}, {where}")
    if not lines:
        return None
    shown = lines[:12] + ([f"  ... and {len(lines) - 12} more (see the JSON's non_finite)"]
                          if len(lines) > 12 else [])
    return NonFiniteMetricError(
        f"{item.nodeid}: {len(lines)} non-finite metric value(s) recorded (NaN or inf is "
        "never a pass: the candidate produced it, or the measurement broke down):\n"
        + "\n".join(shown))


def _who(rec: dict[str, Any]) -> str:
    """A record's subject in messages: ``potential 'sw'``, ``recipe 'fit_gap.py'``."""
    from pytest_mlpval.subjects import subject_of

    subject = subject_of(rec)
    kind = "potential" if subject["kind"] == "candidate" else subject["kind"]
    return f"{kind} {subject['name']!r}"


def _of(subject: dict[str, Any]) -> str:
    """A subject after "of" in messages: a candidate's name (``rss of sw``), others
    with their kind (``cv-random-k5 of recipe 'fit_gap.py'``)."""
    if subject["kind"] == "candidate":
        return str(subject["name"])
    return f"{subject['kind']} {subject['name']!r}"


def fitted_by(config: pytest.Config, potential: Any) -> str | None:
    """The recipe a candidate is linked to (ini ``mlpval_fitted_by``, by the candidate's
    name or sha256), None if it is not."""
    from pytest_mlpval.subjects import linked_recipe

    return linked_recipe(config.stash.get(LINKS, {}), potential.name,
                         getattr(potential.info, "sha256", None))


def _worse(new: float, old: float) -> bool:
    """``new`` is a worse check value than ``old`` (larger, or NaN where old is not)."""
    if new != new:
        return old == old
    return old == old and new > old


def auto_check(item: pytest.Item, session: MlpvalSession) -> None:
    """After a passing test body: apply ``mlpval_thresholds`` markers nobody checked."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    if item.get_closest_marker(THRESHOLDS) is None:
        return
    state = item_state(item)
    specs: list[ThresholdSpec] = thresholds_of(item)
    if state.checked or not specs:
        return
    funcargs = getattr(item, "funcargs", {})
    if "mlpval_errors" not in funcargs:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.{THRESHOLDS} needs the mlpval_errors fixture or a "
            "call to mlpval.check(report); neither was used, so nothing was checked")
    fixture = MlpvalFixture(item, session, funcargs["mlpval_potential"])
    fixture.check(funcargs["mlpval_errors"])


def auto_expect(item: pytest.Item, session: MlpvalSession) -> None:
    """After a passing test body: apply ``mlpval_expect`` markers to the protocol results
    the test recorded (unless the test called mlpval.expect itself)."""
    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalAssertionError)
    specs = expectations_of(item) if item.get_closest_marker(EXPECT) else []
    state = item.stash.get(ITEM_STATE, None)
    if not specs or (state is not None and state.expected):
        return
    from pytest_mlpval.subjects import subject_of

    records = [] if state is None else [r for r in state.records.values()
                                        if r["kind"] == "protocol"]
    if not records:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{EXPECT} but the test recorded "
                                "no protocol result (use mlpval.run or mlpval.record_result)")
    failures = []
    for spec in specs:
        targets = [r for r in records
                   if spec.protocol is None or r["dataset"]["name"] == spec.protocol]
        if not targets:
            raise pytest.UsageError(f"{item.nodeid}: {spec.text}: no result of protocol "
                                    f"{spec.protocol!r} was recorded")
        if spec.protocol is None:  # bounds apply to the results that have the metric
            names = {key.split("_", 1)[1] for key in spec.bounds}
            targets = [r for r in targets if names & set(r["metrics"])] or targets
        for rec in targets:
            try:
                perform_bounds_check(rec["metrics"], rec["units"], [(spec.bounds, spec.text)],
                                     what=f"{rec['dataset']['name']} of {_of(subject_of(rec))}",
                                     record=rec)
            except MlpvalAssertionError as exc:
                failures.append(str(exc))
    if failures:
        raise MlpvalAssertionError("\n\n".join(failures))


def compare_with_baseline(item: pytest.Item, session: MlpvalSession) -> None:
    """After the test body: compare the test's records with the baseline; a regression
    (or, with --mlpval-regen-baseline, any change) fails this test with a table. A record
    measured on other data than its baseline entry (dataset sha256, label keys, index,
    protocol parameters) is not compared: it fails the test, naming what changed."""
    from pytest_mlpval.baseline import (COMPARED_KINDS, MlpvalRegressionError, compare_metrics,
                           entry_key, identity_changes, identity_message, record_identity,
                           regression_message)
    from pytest_mlpval.subjects import subject_label

    __tracebackhide__ = operator.methodcaller("errisinstance", MlpvalRegressionError)
    settings = session.settings
    state = item.stash.get(ITEM_STATE, None)
    if settings.baseline is None or state is None:
        return
    failing, other_data = [], []
    for rec in state.records.values():
        kind = rec.get("kind", "errors")
        if kind not in COMPARED_KINDS:
            continue
        entry = settings.baseline["entries"].get(entry_key(
            item.nodeid, subject_label(rec), rec["dataset"]["name"], rec["subset"], kind))
        changes = [] if entry is None else identity_changes(entry["identity"],
                                                            record_identity(rec))
        if changes:
            rec["baseline"], rec["comparison"] = "other data", []
            other_data.append((rec, changes))
            continue
        comparisons = compare_metrics(rec["metrics"], rec["units"],
                                      None if entry is None else entry["metrics"],
                                      settings.tolerances)
        rec["baseline"] = "missing" if entry is None else "compared"
        rec["comparison"] = [c.as_dict() for c in comparisons if c.status != "unchanged"]
        bad = [c for c in comparisons if c.status == "regressed"
               or (settings.regen_baseline and c.status != "unchanged")]
        if bad:
            failing.append((rec, bad))
    messages = []
    if other_data:
        messages.append(identity_message(other_data, str(settings.compare),
                                         settings.regen_baseline))
    if failing:
        messages.append(regression_message(failing, str(settings.compare),
                                           settings.regen_baseline))
    if messages:
        raise MlpvalRegressionError("\n\n".join(messages))
