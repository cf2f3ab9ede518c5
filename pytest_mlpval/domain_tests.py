"""Ready-made tests and fixtures: cross-validation, leakage, applicability, external sets.

Switch them on in a suite by importing them into a test module::

    from pytest_mlpval.domain_tests import *  # noqa: F401,F403

or import only the fixtures (``mlpval_cv``, ``mlpval_domain``, ``mlpval_external``) and
write your own tests with them.

The fixtures judge subjects other than a candidate potential
(:mod:`pytest_mlpval.subjects`): ``mlpval_cv`` a fitting *recipe*, ``mlpval_domain`` the
training *dataset*. Tests using only them are not parametrised over ``--potential``: they
run once per run, and their records carry the recipe's or the dataset's identity, with
``potential`` None.

- ``mlpval_cv``: k-fold cross-validation of your fitting recipe, configured by the test's
  ``@pytest.mark.mlpval_cv(k=5, split="stratified", seed=0)`` marker
  (:func:`~pytest_mlpval.markers.parse_cv_marker`). ``mlpval_cv.run()`` fits one model
  per fold on the training dataset (``--mlpval-training-dataset``, default the dataset
  named ``train``) with the fitter of the marker's ``fit=``, else of an ``mlpval_fit``
  fixture you define, else of ``--mlpval-fit-command`` / ini ``mlpval_fit_command``;
  without any the test is skipped (``required=True``: a usage error). The recipe's name
  is the marker's ``recipe=`` (default: the command's script or program, the callable's
  name); ini ``mlpval_fitted_by = CANDIDATE=RECIPE`` links a candidate to it. The pooled
  out-of-fold errors are recorded as dataset ``cv-<split>-k<k>`` and checked against the
  test's ``mlpval_thresholds`` exactly like test-set errors; a failed fold fails the test
  with the tail of the fit's stderr.
- ``mlpval_domain``: leakage of a test set into the training set and applicability of
  your structures (SOAP similarity, :mod:`pytest_mlpval.protocols.domain.coverage`). Default limits
  (:data:`LEAKAGE_BOUNDS`, :data:`APPLICABILITY_BOUNDS`) give way to ``mlpval_expect``
  bounds of the same metric.
- ``mlpval_external``: an external test set from a protocol's structures, labelled by a
  reference named like ``"dft"`` (the ``pytest_mlpval_labeller`` hook) or a potential
  spec, saved with provenance in pytest's cache, and the candidate's errors on it.

Tests: ``test_mlpval_leakage`` (every configured dataset except the training one),
``test_mlpval_applicability`` (``--mlpval-application`` files), and
``test_mlpval_cross_validation`` (``--mlpval-tier=full`` unless it carries an
``mlpval_cv`` marker: it refits your model k times).
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_mlpval import options
from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.external_tests import ExternalSets, mlpval_external
from pytest_mlpval.fixture import MlpvalFixture
from pytest_mlpval.markers import CV, parse_cv_marker, thresholds_of
from pytest_mlpval.plugin import LINKS, SESSION
from pytest_mlpval.protocols.domain import (OUTSIDE_CUTOFF, ApplicabilitySettings,
                                            check_applicability, check_leakage,
                                            duplicate_table, training_domain)
from pytest_mlpval.protocols.fitting import (CrossValidationResult, CrossValidationSettings,
                                             FitSpecError, LearningCurveSettings, as_fitter,
                                             assert_cv_errors, cross_validate,
                                             learning_curve, subset)
from pytest_mlpval.subjects import dataset_subject, default_recipe_name, recipe_subject

__all__ = ["mlpval_cv", "mlpval_domain", "mlpval_external", "test_mlpval_leakage",
           "test_mlpval_applicability", "test_mlpval_cross_validation", "LEAKAGE_BOUNDS",
           "APPLICABILITY_BOUNDS", "CrossValidation", "DomainChecks", "ExternalSets",
           "cv_dataset_name"]

#: default limits of the leakage check (pytest_mlpval.protocols.domain.assert_no_leakage)
LEAKAGE_BOUNDS = {"max_duplicate_fraction": 0.05, "max_median_min_similarity": 0.9999}
#: default limit of the applicability check (pytest_mlpval.protocols.domain.assert_applicable)
APPLICABILITY_BOUNDS = {"max_outside_fraction": 0.05}

_DOMAINS: dict[str, Any] = {}  # training-set sha256 -> TrainingDomain (per process)


def _session(config: pytest.Config) -> Any:
    return config.stash[SESSION]


def _recorder(request: pytest.FixtureRequest, subject: dict[str, Any]) -> Any:
    """An ``mlpval`` fixture object recording under ``subject`` (no candidate)."""
    return MlpvalFixture(request.node, _session(request.config), None, subject)


def _recipe(config: pytest.Config, fit: Any, spec: Any) -> dict[str, Any]:
    """The recipe subject of ``fit`` under ``spec`` (its name, model file name, time
    limit), with the candidates linked to it; FitSpecError for a bad fitter."""
    fitter = as_fitter(fit, spec.model_name, spec.timeout_s)
    name = spec.recipe or default_recipe_name(fitter)
    fits = sorted(c for c, r in config.stash.get(LINKS, {}).items() if r == name)
    return recipe_subject(fitter, name, fits)


def cv_dataset_name(result: Any) -> str:
    """``cv-<split>-k<k>``: the dataset name of a cross-validation's pooled errors."""
    return f"cv-{result.split.method}-k{result.split.k}"


class _Info:
    """Dataset identity of a record that is not a file (CV errors)."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def as_dict(self) -> dict[str, Any]:
        return dict(self.fields)


class _Metrics:
    """metrics()/units() of a part of a result, for mlpval.record_result."""

    def __init__(self, metrics: dict[str, float], units: dict[str, str],
                 report_data: Any = None) -> None:
        self._metrics, self._units = metrics, units
        if report_data is not None:
            self.report_data = report_data

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def units(self) -> dict[str, str]:
        return dict(self._units)


class _CrossValidationSummary(_Metrics):
    """The fold statistics of a cross-validation with its ``report_data``, drawn in the
    report by the figure of :class:`CrossValidationResult` (the parity plot)."""

    figure = staticmethod(CrossValidationResult.figure)


def _check_bounds(mlpval: Any, item: pytest.Item, result: Any, protocol: str, group: str,
                  defaults: dict[str, float], explicit: dict[str, float],
                  details: Any) -> None:
    """Record ``result`` and check bounds: the test's ``mlpval_expect`` markers (for
    ``protocol`` or without one), ``defaults`` where no marker bounds the same metric,
    and ``explicit``. On failure the message ends with ``details()`` lines."""
    __tracebackhide__ = True
    from pytest_mlpval.checks import perform_bounds_check, usage_error
    from pytest_mlpval.fixture import item_state
    from pytest_mlpval.markers import expectations_of

    metrics, units = result.metrics(), result.units()
    specs = [s for s in expectations_of(item)
             if s.protocol == protocol or (s.protocol is None and {
                 k.split("_", 1)[1] for k in s.bounds} <= set(metrics))]
    named = {k for s in specs for k in s.bounds}
    own = {**{k: v for k, v in defaults.items() if k not in named}, **explicit}
    groups = [(s.bounds, s.text) for s in specs]
    if own:
        groups.append((own, ", ".join(f"{k}={v!r}" for k, v in own.items())
                       + " (defaults of pytest_mlpval.domain_tests unless given)"))
    record = mlpval.record_result(result, protocol, group)
    if specs:
        item_state(item).expected = True  # the markers are applied here
    perform_bounds_check(metrics, units, groups, what=f"{protocol} of {group}",
                         record=record, on_usage_error=usage_error(item.nodeid),
                         details=details)


# --- the training set ------------------------------------------------------------------

def _training(config: pytest.Config, name: str | None = None) -> Any:
    """The configured training dataset (a ReferenceSet); skip when there is none (fail
    with --mlpval-require-dataset)."""
    session = _session(config)
    name = name or session.settings.training_dataset
    configured = {d.name: d for d in session.settings.datasets}
    if name is None:
        message = (f"no training dataset: configure a dataset named 'train' "
                   f"({options.DATASET_OPTION} / ini {options.DATASETS_INI}) or name one "
                   f"with {options.TRAINING_OPTION}")
        if session.settings.require_dataset:
            pytest.fail(f"{message} ({options.REQUIRE_DATASET_OPTION} is set)", pytrace=False)
        pytest.skip(message)
    if name not in configured:
        raise pytest.UsageError(f"training dataset {name!r} is not configured (configured: "
                                f"{', '.join(configured) or 'none'})")
    return session.dataset(configured[name])


def _domain_of(reference: Any) -> Any:
    if reference.sha256 not in _DOMAINS:
        _DOMAINS[reference.sha256] = training_domain(reference)
    return _DOMAINS[reference.sha256]


# --- cross-validation --------------------------------------------------------------------

class CrossValidation:
    """What the ``mlpval_cv`` fixture returns; :meth:`run` does the work."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._mlpval = _recorder(request, self._provisional())

    def _provisional(self) -> dict[str, Any]:
        """The recipe as the marker and configuration name it, before :meth:`run`
        (which may be given another ``fit``); ``no-recipe`` where there is none yet."""
        try:
            spec = self.spec()
            return _recipe(self._request.config, self.fitter(spec, skip=False), spec)
        except (pytest.UsageError, FitSpecError, TypeError, ValueError):
            return {"kind": "recipe", "name": "no-recipe", "identity": {}}

    @property
    def subject(self) -> dict[str, Any]:
        """The recipe this fixture's records judge (:mod:`pytest_mlpval.subjects`)."""
        return self._mlpval.subject

    def _use(self, fit: Any, spec: Any) -> None:
        try:
            self._mlpval.subject = _recipe(self._request.config, fit, spec)
        except FitSpecError as exc:
            raise pytest.UsageError(f"{self._request.node.nodeid}: {spec.text}: "
                                    f"{type(exc).__name__}: {exc}") from None

    def spec(self, **overrides: Any) -> Any:
        """The test's ``mlpval_cv`` marker (defaults without one) with ``overrides``."""
        item = self._request.node
        mark = item.get_closest_marker(CV)
        kwargs = {**(dict(mark.kwargs) if mark else {}), **overrides}
        return parse_cv_marker(mark.args if mark else (), kwargs, item.nodeid)

    def fitter(self, spec: Any, skip: bool = True) -> Any:
        """The marker's ``fit``, else the ``mlpval_fit`` fixture's value, else the
        configured fit command; skip (or UsageError with ``required=True``) without
        (``skip=False``: None)."""
        if spec.fit is not None:
            return spec.fit
        try:
            fit = self._request.getfixturevalue("mlpval_fit")
        except pytest.FixtureLookupError:
            fit = None
        fit = fit if fit is not None else _session(self._request.config).settings.fit_command
        if fit is None and not skip:
            return None
        if fit is None:
            message = (f"no fitting recipe for cross-validation: give "
                       f"{options.FIT_COMMAND_OPTION}=TEMPLATE, the ini key "
                       f"{options.FIT_COMMAND_INI}, a fit= argument of "
                       "@pytest.mark.mlpval_cv or an mlpval_fit fixture")
            if spec.required:
                raise pytest.UsageError(f"{self._request.node.nodeid}: {message}")
            pytest.skip(message)
        return fit

    def data(self, spec: Any) -> Any:
        """The dataset to cross-validate (``max_structures``: evenly spaced in file
        order)."""
        reference = _training(self._request.config, spec.dataset)
        n = len(reference)
        if spec.max_structures is None or spec.max_structures >= n:
            return reference
        keep = np.unique(np.linspace(0, n - 1, spec.max_structures).round().astype(int))
        return subset(reference, keep, f"{reference.name}[{len(keep)} of {n}]")

    def run(self, **overrides: Any) -> Any:
        """Cross-validate (marker arguments, replaced by ``overrides``), record, check.

        Records the pooled out-of-fold ErrorReport as dataset ``cv-<split>-k<k>`` (checked
        against ``mlpval_thresholds`` markers with ``mlpval.check``), the fold mean/std
        and counts as protocol ``cv-...`` group ``all`` (with the parity plot for the
        report) and every fold's RMSEs as group ``fold <i>``. Raises
        MlpvalAssertionError for a failed fold (with the fit's output) or a limit not met.
        """
        __tracebackhide__ = True
        spec = self.spec(**overrides)
        fit = self.fitter(spec)
        self._use(fit, spec)
        data = self.data(spec)
        mlpval, config = self._mlpval, self._request.config
        run_options = mlpval.run_options()
        in_process = run_options.workers == 0 and run_options.scheduler is None
        if callable(fit) and not in_process:
            try:
                pickle.dumps(fit)
            except Exception:  # a local function: fit in this process
                run_options = replace(run_options, workers=0, scheduler=None)
                in_process = True
        loader = None
        if in_process:
            def loader(path: str) -> Any:
                return config.hook.pytest_mlpval_load_potential(config=config, spec=path)
        try:
            settings = CrossValidationSettings(k=spec.k, method=spec.split, seed=spec.seed)
            result = cross_validate(data, as_fitter(fit, spec.model_name, spec.timeout_s),
                                    settings, options=run_options, loader=loader)
        except (FitSpecError, ValueError) as exc:
            raise pytest.UsageError(f"{self._request.node.nodeid}: {spec.text}: "
                                    f"{type(exc).__name__}: {exc}") from None
        self._record(result, data)
        assert_cv_errors(result, max_failed_folds=spec.max_failed_folds)
        if thresholds_of(self._request.node):
            if result.pooled is None:
                raise MlpvalAssertionError(f"cross-validation of {data.name!r}: no fold "
                                           "succeeded, no errors to check")
            mlpval.check(replace(result.pooled, dataset=cv_dataset_name(result)))
        return result

    def learning_curve(self, *, sizes: Any = (0.25, 0.5, 1.0), seeds: Any = (0, 1, 2),
                       test_fraction: float = 0.2, **overrides: Any) -> Any:
        """Errors against training-set size (several seeds) with the same recipe and data
        as :meth:`run`, on a held-out ``test_fraction``; recorded as protocol
        ``learning-curve`` (metrics: RMSEs at the smallest and largest size, log-log
        slopes) with its plot for the report."""
        __tracebackhide__ = True
        spec = self.spec(**overrides)
        fit = self.fitter(spec)
        self._use(fit, spec)
        data = self.data(spec)
        try:
            settings = LearningCurveSettings(sizes=sizes, seeds=seeds,
                                             test_fraction=test_fraction,
                                             split_seed=spec.seed)
            result = learning_curve(data, as_fitter(fit, spec.model_name, spec.timeout_s),
                                    settings, options=self._mlpval.run_options())
        except (FitSpecError, ValueError) as exc:
            raise pytest.UsageError(f"{self._request.node.nodeid}: learning curve: "
                                    f"{type(exc).__name__}: {exc}") from None
        self._mlpval.record_result(result, "learning-curve")
        return result

    def _record(self, result: Any, data: Any) -> None:
        name = cv_dataset_name(result)
        mlpval = self._mlpval
        if result.pooled is not None:
            mlpval.record(replace(result.pooled, dataset=name), _Info(
                name=name, training=data.name, training_sha256=data.sha256,
                split=result.split.as_dict(), fitter=result.fitter,
                description=result.describe()))
        metrics, units = result.metrics(), result.units()
        keep = [k for k in metrics if k.startswith(("energy_rmse_fold", "force_rmse_fold"))
                or k in ("n_folds", "n_failed_folds")]
        mlpval.record_result(_CrossValidationSummary({k: metrics[k] for k in keep},
                                                     {k: units[k] for k in keep},
                                                     result.report_data), name)
        for fold in result.folds:
            m = {k: v for k, v in fold.metrics().items() if k in ("energy_rmse", "force_rmse")}
            m.update(n_structures=float(fold.n_test), failed=float(not fold.ok))
            u = {k: units.get(k, "") for k in m}
            label = f"fold {fold.fold}" + ("" if fold.label == f"fold {fold.fold}"
                                           else f" ({fold.label})")
            mlpval.record_result(_Metrics(m, u), name, group=label)


@pytest.fixture
def mlpval_cv(request: pytest.FixtureRequest) -> CrossValidation:
    """k-fold cross-validation of your fitting recipe: ``mlpval_cv.run()`` (see
    :class:`CrossValidation`); configured by ``@pytest.mark.mlpval_cv``. Judges the
    recipe, not a candidate: a test using it runs once, not once per ``--potential``."""
    return CrossValidation(request)


# --- leakage and applicability -----------------------------------------------------------

class DomainChecks:
    """What the ``mlpval_domain`` fixture returns."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._mlpval = _recorder(request, dataset_subject(
            name=self.training_name or "no-training-dataset"))

    @property
    def subject(self) -> dict[str, Any]:
        """The training dataset this fixture's records judge."""
        return self._mlpval.subject

    @property
    def training_name(self) -> str | None:
        return _session(self._request.config).settings.training_dataset

    def training(self) -> Any:
        """The training dataset (a ReferenceSet): the subject of the checks."""
        reference = _training(self._request.config)
        self._mlpval.subject = dataset_subject(reference)
        return reference

    def leakage(self, test: Any, **bounds: float) -> Any:
        """Check that ``test`` (a ReferenceSet) does not leak into the training set:
        at most 5% of its structures with an exact or near duplicate (per-atom SOAP
        kernel >= 0.9999) and a median lowest per-atom similarity <= 0.9999, unless
        ``mlpval_expect`` markers or ``bounds`` say otherwise. Recorded as protocol
        ``leakage``, group = the test set's name. Returns the LeakageResult."""
        __tracebackhide__ = True
        result = check_leakage(_domain_of(self.training()), test, test_name=test.name)

        def details() -> list[str]:
            m = result.metrics()
            lines = [f"test set {result.test!r} against training set {result.training!r}: "
                     f"{int(m['n_exact_duplicates'])} exact and "
                     f"{int(m['n_near_duplicates'])} near duplicates among "
                     f"{int(m['n_test_structures'])} test structures"]
            if result.duplicates:
                lines += [f"duplicates (kernel >= {result.duplicate_similarity}):"]
                lines += duplicate_table(result)
            return lines

        _check_bounds(self._mlpval, self._request.node, result, "leakage", test.name,
                      LEAKAGE_BOUNDS, bounds, details)
        return result

    def applicability(self, structures: Any, *, name: str | None = None,
                      cutoff: float | None = None, **bounds: float) -> Any:
        """Check that at most 5% of the atoms of ``structures`` (a file path, ASE Atoms
        or a ReferenceSet) have a per-atom SOAP similarity to the training set below
        ``cutoff`` (default 0.95, :data:`~pytest_mlpval.protocols.domain.OUTSIDE_CUTOFF`),
        unless ``mlpval_expect`` markers or ``bounds`` say otherwise; a failure names the least
        covered structures. Recorded as protocol ``applicability``, group ``name``."""
        __tracebackhide__ = True
        names = None
        if isinstance(structures, (str, Path)):
            import ase.io

            path = Path(structures)
            frames = ase.io.read(path, ":")
            frames = frames if isinstance(frames, list) else [frames]
            names = [f"{path.name}[{i}] {a.info.get('config_type', '')}".rstrip()
                     for i, a in enumerate(frames)]
            name, structures = name or path.name, frames
        settings = ApplicabilitySettings(cutoff=OUTSIDE_CUTOFF if cutoff is None else cutoff)
        result = check_applicability(structures, _domain_of(self.training()), settings,
                                     names=names)
        label = name or getattr(structures, "name", None) or "structures"

        def details() -> list[str]:
            m = result.metrics()
            return ([f"{m['outside_fraction']:.1%} of {int(m['n_atoms'])} atoms of "
                     f"{label} are outside the domain of training set {result.training!r} "
                     f"(per-atom SOAP similarity < {result.cutoff}); least covered "
                     "structures:"]
                    + format_table(["index", "structure", "atoms", "outside", "mean sim",
                                    "min sim"], result.least_covered(5)))

        _check_bounds(self._mlpval, self._request.node, result, "applicability", label,
                      APPLICABILITY_BOUNDS, bounds, details)
        return result


@pytest.fixture
def mlpval_domain(request: pytest.FixtureRequest) -> DomainChecks:
    """Leakage and applicability checks against the training dataset (see
    :class:`DomainChecks`). Judges the data, not a candidate: a test using it runs once,
    not once per ``--potential``."""
    return DomainChecks(request)


# --- ready-made tests --------------------------------------------------------------------

def test_mlpval_leakage(mlpval_domain, mlpval_dataset):
    """The test set is not a copy of the training set: at most 5% of its structures have
    an exact or near duplicate (every atom's SOAP kernel >= 0.9999) in the training set,
    and the median lowest per-atom similarity is <= 0.9999 (mlpval_expect bounds
    max_duplicate_fraction / max_median_min_similarity override)."""
    if mlpval_dataset.name == mlpval_domain.training_name:
        pytest.skip(f"{mlpval_dataset.name!r} is the training dataset")
    mlpval_domain.leakage(mlpval_dataset)


def test_mlpval_applicability(mlpval_domain, request):
    """At most 5% of the atoms of each --mlpval-application file have a per-atom SOAP
    similarity to the training set below 0.95 (mlpval_expect max_outside_fraction
    overrides); a failure names the least covered structures."""
    __tracebackhide__ = True
    files = _session(request.config).settings.applications
    if not files:
        pytest.skip(f"no application structures: give {options.APPLICATION_OPTION}=PATH "
                    f"or the ini key {options.APPLICATION_INI}")
    failures = []
    for path in files:
        try:
            mlpval_domain.applicability(path)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        raise MlpvalAssertionError("\n\n".join(failures))


def test_mlpval_cross_validation(mlpval_cv, request):
    """k-fold cross-validation of the fitting recipe (--mlpval-fit-command) on the
    training dataset (marker mlpval_cv, default 5-fold random split, seed 0); runs with
    --mlpval-tier=full or when the test carries an mlpval_cv marker. Once per run."""
    tier = _session(request.config).settings.tier
    if tier != "full" and request.node.get_closest_marker(CV) is None:
        pytest.skip("cross-validation refits the model k times: run with "
                    "--mlpval-tier=full, or write a test marked mlpval_cv")
    mlpval_cv.run()
