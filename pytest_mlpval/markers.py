"""Markers of the plugin: registration text (``pytest --markers`` is their documentation)
and validation of their arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

AUTO = "mlpval"
THRESHOLDS = "mlpval_thresholds"
DATASET = "mlpval_dataset"
EXPECT = "mlpval_expect"
PROPERTY = "mlpval_property"
CV = "mlpval_cv"
KNOWN_FAILURE = "mlpval_known_failure"
CAMPAIGN = "mlpval_campaign"

MARKER_LINES = (
    f"{AUTO}: added automatically to every test that uses an mlpval fixture "
    "(select with -m mlpval).",
    f"{THRESHOLDS}(config_type=None, **limits): upper limits on error metrics, checked on "
    "the test's mlpval_errors (or by mlpval.check). Names are <quantity>_<stat>: quantity "
    "energy, energy_offset_removed (eV/atom), energy_cell (eV), energy_sqrtn (eV/atom^0.5), "
    "force, force_magnitude (eV/Å), force_angle (degree), stress (GPa); stat rmse, mae, max, "
    "median, p95; plus energy_offset (|mean|, eV/atom). config_type restricts the check to "
    "one config_type. Stack markers for several checks. Unknown names are an error.",
    f"{DATASET}(spec, **label_keys): run the test on this dataset instead of the configured "
    "ones: a configured dataset name, or 'NAME=PATH[,LABEL=KEY...]' with PATH relative to "
    "the test file; keyword label keys (energy='dft_energy', ...) as in --mlpval-dataset. "
    "Stack markers for several datasets.",
    f"{EXPECT}(protocol=None, **bounds): bounds on the metrics of protocol results the test "
    "records with mlpval.run (random structure search, MD, properties): min_<metric>=X or "
    "max_<metric>=X, e.g. min_diamond_like_fraction=0.05, max_n_failed=0. protocol= "
    "restricts them to one protocol's results. Checked after the test body; a metric no "
    "result has is an error.",
    f"{PROPERTY}(name, rel=None, abs=None, against='experiment'): a physical property "
    "(e.g. 'bulk_modulus_GPa') compared with the reference table (kind 'experiment' or a "
    "DFT level such as 'PBE'); fails when |candidate - reference| exceeds max(abs, "
    "rel*|reference|). Stack markers for several properties.",
    f"{CV}(k=5, split='random', seed=0): k-fold cross-validation of the fitting command "
    "(--mlpval-fit-command) on the training dataset; split random, stratified, grouped or "
    "cluster. Thresholds on its pooled out-of-fold errors with mlpval_thresholds.",
    f"{KNOWN_FAILURE}(potential=None, sha256=None, reason=...): a measured failure of one "
    "candidate: a strict xfail for it (a fix turns the test red until the mark goes), the "
    "plain test for every other candidate. Name the candidate by its content hash, "
    "sha256='<64 hex digits, or a prefix of >= 12>' (the model under any --potential "
    "name; see the JSON's potentials.<name>.sha256), or by its --potential name. Stack "
    "markers for several candidates.",
    f"{CAMPAIGN}(protocol, settings=None, *, full=None, name=None, **options): a campaign "
    "the test runs (a registered protocol's name or a library function as mlpval.run "
    "takes, its settings for the quick tier, full= for --mlpval-tier=full): planned when "
    "collection ends and started at once with the run's other campaigns, longest first "
    "(--mlpval-schedule); the test's mlpval.run / mlpval.run_protocol call with the same "
    "settings gets its result. Stack markers for several campaigns.",
)


@dataclass(frozen=True)
class ExpectSpec:
    protocol: str | None
    bounds: dict[str, float]
    text: str


def expectations_of(item: pytest.Item) -> list[ExpectSpec]:
    """Validated ``mlpval_expect`` markers of ``item``."""
    from pytest_mlpval.assertions import parse_bounds

    specs = []
    for mark in item.iter_markers(EXPECT):
        kwargs = dict(mark.kwargs)
        protocol = kwargs.pop("protocol", None)
        where = f"{item.nodeid}: @pytest.mark.{EXPECT}"
        if mark.args or not kwargs:
            raise pytest.UsageError(f"{where} takes keyword bounds min_<metric>=X or "
                                    f"max_<metric>=X, got {mark.args!r} {mark.kwargs!r}")
        try:
            parse_bounds(kwargs, where)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        text = ", ".join(f"{k}={v!r}" for k, v in mark.kwargs.items())
        specs.append(ExpectSpec(protocol, kwargs, f"@pytest.mark.{EXPECT}({text})"))
    return specs


@dataclass(frozen=True)
class ThresholdSpec:
    config_type: str | None
    limits: dict[str, float]
    text: str  # how the user wrote it, for hints


def thresholds_of(item: pytest.Item) -> list[ThresholdSpec]:
    """Validated ``mlpval_thresholds`` markers of ``item`` (closest first)."""
    from pytest_mlpval.assertions import validate_limits

    specs = []
    for mark in item.iter_markers(THRESHOLDS):
        if mark.args:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.{THRESHOLDS} takes keyword arguments only, "
                f"got {mark.args!r}")
        kwargs = dict(mark.kwargs)
        config_type = kwargs.pop("config_type", None)
        if not kwargs:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{THRESHOLDS} gives no limit")
        try:
            limits = validate_limits(kwargs, f"{item.nodeid}: @pytest.mark.{THRESHOLDS}")
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        text = ", ".join(f"{k}={v!r}" for k, v in mark.kwargs.items())
        specs.append(ThresholdSpec(config_type, limits, f"@pytest.mark.{THRESHOLDS}({text})"))
    return specs


def dataset_specs(definition: Any, configured: tuple[Any, ...]) -> list[Any] | None:
    """DatasetSpecs from ``mlpval_dataset`` markers of a test function (None if it has
    none). ``configured`` are the datasets of the command line / ini, by name."""
    from pytest_mlpval.data import DatasetError, parse_dataset_spec

    marks = list(definition.iter_markers(DATASET))
    if not marks:
        return None
    by_name = {d.name: d for d in configured}
    base = Path(str(definition.path)).parent
    specs = []
    for mark in marks:
        if len(mark.args) != 1 or not isinstance(mark.args[0], str):
            raise pytest.UsageError(
                f"{definition.nodeid}: @pytest.mark.{DATASET} takes one spec string, "
                f"got {mark.args!r}")
        spec = mark.args[0]
        if "=" not in spec:
            if spec not in by_name:
                raise pytest.UsageError(
                    f"{definition.nodeid}: @pytest.mark.{DATASET}({spec!r}) names no "
                    f"configured dataset (configured: {', '.join(by_name) or 'none'})")
            if mark.kwargs:
                raise pytest.UsageError(
                    f"{definition.nodeid}: @pytest.mark.{DATASET}({spec!r}) refers to a "
                    "configured dataset; label keys belong where it is configured")
            specs.append(by_name[spec])
            continue
        try:
            parsed = parse_dataset_spec(spec, base, **mark.kwargs)
        except DatasetError as exc:
            raise pytest.UsageError(f"{definition.nodeid}: @pytest.mark.{DATASET}: {exc}") from None
        if not Path(parsed.path).is_file():
            raise pytest.UsageError(f"{definition.nodeid}: @pytest.mark.{DATASET}({spec!r}): "
                                    f"file not found: {parsed.path}")
        specs.append(parsed)
    return specs


# --- mlpval_cv: k-fold cross-validation --------------------------------------------------

#: keyword arguments of the mlpval_cv marker (besides k, split, seed)
CV_OPTIONS = ("fit", "dataset", "max_structures", "model_name", "timeout_s",
              "max_failed_folds", "required", "recipe")


@dataclass(frozen=True)
class CvSpec:
    """A validated ``mlpval_cv`` marker.

    ``k`` folds (None: one per config_type, for ``split="grouped"``), ``split`` method
    and ``seed``; ``fit`` a command template or a callable (None: the ``mlpval_fit``
    fixture or ``--mlpval-fit-command``); ``dataset`` a configured dataset name (None:
    the training dataset); ``max_structures`` evenly spaced structures of it (None: all);
    ``model_name``/``timeout_s`` for a fit command; ``max_failed_folds``; ``required``:
    a missing fit command is a usage error instead of a skip; ``recipe`` the recipe's
    name in the summary and in ``mlpval_fitted_by`` links (None: its script or program,
    or the callable's name)."""

    k: int | None = 5
    split: str = "random"
    seed: int = 0
    fit: Any = None
    dataset: str | None = None
    max_structures: int | None = None
    model_name: str = "model.xml"
    timeout_s: float | None = None
    max_failed_folds: int = 0
    required: bool = False
    recipe: str | None = None
    text: str = f"@pytest.mark.{CV}()"


def _whole(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def parse_cv_marker(args: tuple, kwargs: dict[str, Any], where: str) -> CvSpec:
    """A :class:`CvSpec` from an ``mlpval_cv`` marker's arguments; ``pytest.UsageError``
    naming the bad value."""
    from pytest_mlpval.protocols.fitting import SPLIT_METHODS

    text = f"@pytest.mark.{CV}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"
    if args:
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV} takes keyword arguments only "
                                f"(k=, split=, seed=, ...), got {args!r}")
    unknown = set(kwargs) - {"k", "split", "seed", *CV_OPTIONS}
    if unknown:
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}: unknown argument(s) "
                                f"{', '.join(sorted(unknown))}; known: k, split, seed, "
                                f"{', '.join(CV_OPTIONS)}")
    split = kwargs.get("split", "random")
    if split not in SPLIT_METHODS:
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(split={split!r}): expected one "
                                f"of {', '.join(SPLIT_METHODS)}")
    k = kwargs.get("k", None if split == "grouped" else 5)
    if k is not None and not _whole(k, 2):
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(k={k!r}): the number of folds "
                                "must be a whole number >= 2")
    seed = kwargs.get("seed", 0)
    if not _whole(seed, 0):
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(seed={seed!r}): expected a "
                                "whole number >= 0")
    fit = kwargs.get("fit")
    if fit is not None and not (isinstance(fit, (str, list, tuple)) or callable(fit)):
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(fit={fit!r}): expected a fit "
                                "command template (str or list) or a callable "
                                "fit(train_frames, workdir) -> potential spec")
    dataset = kwargs.get("dataset")
    if dataset is not None and not (isinstance(dataset, str) and dataset):
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(dataset={dataset!r}): expected "
                                "a configured dataset name")
    most = kwargs.get("max_structures")
    if most is not None and not _whole(most, 2):
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(max_structures={most!r}): "
                                "expected a whole number >= 2")
    timeout = kwargs.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(timeout_s={timeout!r}): "
                                "expected a number of seconds > 0")
    failed = kwargs.get("max_failed_folds", 0)
    if not _whole(failed, 0):
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(max_failed_folds={failed!r}): "
                                "expected a whole number >= 0")
    model_name = kwargs.get("model_name", "model.xml")
    if not isinstance(model_name, str) or not model_name or "/" in model_name:
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(model_name={model_name!r}): "
                                "expected a file name")
    required = kwargs.get("required", False)
    if not isinstance(required, bool):
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(required={required!r}): "
                                "expected True or False")
    recipe = kwargs.get("recipe")
    if recipe is not None and not (isinstance(recipe, str) and recipe.strip()):
        raise pytest.UsageError(f"{where}: @pytest.mark.{CV}(recipe={recipe!r}): expected "
                                "the recipe's name")
    return CvSpec(k, split, seed, fit, dataset, most, model_name,
                  None if timeout is None else float(timeout), failed, required,
                  recipe=recipe, text=text)


def cv_spec_of(item: pytest.Item) -> CvSpec | None:
    """The closest ``mlpval_cv`` marker of ``item``, validated (None without one)."""
    mark = item.get_closest_marker(CV)
    if mark is None:
        return None
    return parse_cv_marker(mark.args, dict(mark.kwargs), item.nodeid)


# --- mlpval_property (physical properties against the reference table) -----------------

#: keyword arguments an ``mlpval_property`` marker accepts
PROPERTY_KWARGS = ("name", "rel", "abs", "against", "training_level", "metric")


@dataclass(frozen=True)
class PropertySpec:
    """One validated ``mlpval_property`` marker.

    ``against`` is normalised (``"experiment"`` or ``"DFT-<functional>"``);
    ``scope`` is where the marker sits: ``"function"``, ``"class"`` or ``"module"``
    (module-wide markers are shared out among the ready-made tests by property group);
    ``text`` is how the user wrote it, for hints.
    """

    name: str
    rel: float | None
    abs: float | None
    against: str
    training_level: str | None
    metric: str | None
    scope: str
    text: str


def _tolerance(value: Any, what: str, where: str) -> float | None:
    import math

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise pytest.UsageError(f"{where}: {what}={value!r} must be a finite number >= 0")
    return float(value)


def property_specs(item: pytest.Item) -> list[PropertySpec]:
    """Validated ``mlpval_property`` markers of ``item``, closest first. Raises
    ``pytest.UsageError`` naming the marker for a missing or unknown property name
    (a name must carry its unit, e.g. ``C44_GPa``), unknown keyword arguments, no
    tolerance, or a bad tolerance or kind."""
    from pytest_mlpval.references import UnknownPropertyError, normalise_kind, property_unit

    specs = []
    for node, mark in item.iter_markers_with_node(PROPERTY):
        text = ", ".join([repr(a) for a in mark.args]
                         + [f"{k}={v!r}" for k, v in mark.kwargs.items()])
        where = f"{item.nodeid}: @pytest.mark.{PROPERTY}({text})"
        kwargs = dict(mark.kwargs)
        unknown = sorted(set(kwargs) - set(PROPERTY_KWARGS))
        if unknown:
            raise pytest.UsageError(f"{where}: unknown keyword argument(s) "
                                    f"{', '.join(unknown)}; accepted: "
                                    f"{', '.join(PROPERTY_KWARGS)}")
        args = list(mark.args)
        if "name" in kwargs:
            args.insert(0, kwargs.pop("name"))
        if len(args) != 1 or not isinstance(args[0], str):
            raise pytest.UsageError(f"{where}: give one property name, e.g. "
                                    f"@pytest.mark.{PROPERTY}('C44_GPa', rel=0.1)")
        name = args[0]
        try:
            property_unit(name)
        except UnknownPropertyError as exc:
            raise pytest.UsageError(f"{where}: {exc}") from None
        rel = _tolerance(kwargs.get("rel"), "rel", where)
        tol_abs = _tolerance(kwargs.get("abs"), "abs", where)
        if rel is None and tol_abs is None:
            raise pytest.UsageError(f"{where}: give a tolerance, rel=... (fraction of the "
                                    "reference) and/or abs=... (in the property's unit)")
        try:
            against = normalise_kind(kwargs.get("against", "experiment"))
            level = kwargs.get("training_level")
            level = normalise_kind(level) if level is not None else None
        except (ValueError, TypeError, AttributeError) as exc:
            raise pytest.UsageError(f"{where}: {exc}") from None
        metric = kwargs.get("metric")
        if metric is not None and not isinstance(metric, str):
            raise pytest.UsageError(f"{where}: metric={metric!r} must be a metric name")
        scope = ("function" if node is item else
                 "class" if isinstance(node, pytest.Class) else "module")
        specs.append(PropertySpec(name, rel, tol_abs, against, level, metric, scope,
                                  f"@pytest.mark.{PROPERTY}({text})"))
    return specs


#: ini key a suite may register (``parser.addini``) for its candidates' training level
TRAINING_LEVEL_INI = "mlpval_training_level"


def training_level_of(item: pytest.Item, specs: list[PropertySpec],
                      default: str | None = None) -> str | None:
    """The candidate's training level (``"DFT-PBE"``) for property comparisons: from the
    markers' ``training_level=`` (they must agree), else the ini line
    ``mlpval_training_level`` where a suite registered it, else ``default``."""
    from pytest_mlpval.references import normalise_kind

    levels = {s.training_level for s in specs if s.training_level is not None}
    if len(levels) > 1:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{PROPERTY} markers give "
                                f"different training levels: {', '.join(sorted(levels))}")
    if levels:
        return levels.pop()
    try:
        value = item.config.getini(TRAINING_LEVEL_INI)
    except (ValueError, KeyError):  # not registered
        value = None
    if isinstance(value, str) and value.strip():
        return normalise_kind(value)
    return normalise_kind(default) if default else None


# --- mlpval_known_failure: a measured failure of one candidate ---------------------------

#: keyword arguments of the mlpval_known_failure marker
KNOWN_FAILURE_KWARGS = ("potential", "sha256", "reason")
#: the shortest sha256 prefix a known failure may name a model by
MIN_SHA256_PREFIX = 12


@dataclass(frozen=True)
class KnownFailure:
    """A validated ``mlpval_known_failure`` marker: the candidate by name (``potential``)
    or by content hash (``sha256``, lower-case hex, full or a prefix), and the reason."""

    potential: str | None
    sha256: str | None
    reason: str
    text: str

    def matches(self, name: str | None, sha256: str | None) -> bool:
        """Whether a candidate of this name and content hash is the one meant."""
        if self.potential is not None:
            return name == self.potential
        return (sha256 is not None and self.sha256 is not None
                and sha256.lower().startswith(self.sha256))

    @property
    def subject(self) -> str:
        return (f"potential {self.potential!r}" if self.potential is not None
                else f"sha256 {self.sha256}")


def parse_known_failure(args: tuple, kwargs: dict[str, Any], where: str) -> KnownFailure:
    """A :class:`KnownFailure` from a marker's arguments; ``pytest.UsageError`` naming
    the fault (positional or unknown arguments, no reason, no or two subjects, a hash
    that is not hex or shorter than :data:`MIN_SHA256_PREFIX`)."""
    text = f"@pytest.mark.{KNOWN_FAILURE}(" + ", ".join(
        [repr(a) for a in args] + [f"{k}={v!r:.80}" for k, v in kwargs.items()]) + ")"
    where = f"{where}: {text}"
    if args:
        raise pytest.UsageError(f"{where} takes keyword arguments only: potential= or "
                                "sha256=, and reason=")
    unknown = sorted(set(kwargs) - set(KNOWN_FAILURE_KWARGS))
    if unknown:
        raise pytest.UsageError(f"{where}: unknown keyword argument(s) {', '.join(unknown)}; "
                                f"accepted: {', '.join(KNOWN_FAILURE_KWARGS)}")
    reason = kwargs.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise pytest.UsageError(f"{where}: give reason='...' (what was measured, and "
                                "against what)")
    potential, sha256 = kwargs.get("potential"), kwargs.get("sha256")
    if (potential is None) == (sha256 is None):
        raise pytest.UsageError(f"{where}: give one of potential='NAME' (the --potential "
                                "name) or sha256='HEX' (the model's content hash)")
    if potential is not None and not (isinstance(potential, str) and potential):
        raise pytest.UsageError(f"{where}: potential={potential!r} must be a potential name")
    if sha256 is not None:
        digits = sha256.lower() if isinstance(sha256, str) else ""
        if not (MIN_SHA256_PREFIX <= len(digits) <= 64
                and all(c in "0123456789abcdef" for c in digits)):
            raise pytest.UsageError(f"{where}: sha256={sha256!r} must be the model's "
                                    f"sha256: hex digits, all 64 or a prefix of at least "
                                    f"{MIN_SHA256_PREFIX}")
        sha256 = digits
    return KnownFailure(potential, sha256, reason.strip(), text)


def known_failures_of(item: pytest.Item) -> list[KnownFailure]:
    """Validated ``mlpval_known_failure`` markers of ``item``, closest first."""
    return [parse_known_failure(mark.args, dict(mark.kwargs), item.nodeid)
            for mark in item.iter_markers(KNOWN_FAILURE)]


def apply_known_failures(items: list[pytest.Item]) -> None:
    """At collection: a strict xfail on each item whose candidate (the
    ``mlpval_potential`` parameter, by name or content hash) a known failure names.
    Every marker is validated, matching or not."""
    for item in items:
        failures = known_failures_of(item)
        if not failures:
            continue
        callspec = getattr(item, "callspec", None)
        entry = callspec.params.get("mlpval_potential") if callspec is not None else None
        name, sha256 = getattr(entry, "name", None), getattr(entry, "sha256", None)
        matched = [f for f in failures if f.matches(name, sha256)]
        if matched:
            reason = "; ".join(f"known failure of {name} ({f.subject}): {f.reason}"
                               for f in matched)
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
