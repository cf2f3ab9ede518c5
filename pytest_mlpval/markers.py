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
)


@dataclass(frozen=True)
class ExpectSpec:
    protocol: str | None
    bounds: dict[str, float]
    text: str


def expectations_of(item: pytest.Item) -> list[ExpectSpec]:
    """Validated ``mlpval_expect`` markers of ``item``."""
    from .assertions import parse_bounds

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
    from .assertions import validate_limits

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
    from .data import DatasetError, parse_dataset_spec

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
