"""pytest-mlpval: validation of machine-learned interatomic potentials as pytest tests.

The library (data, potentials, evaluate, metrics, assertions) works without pytest; the
names below are imported lazily so ``import pytest_mlpval`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pytest-mlpval")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "read_dataset": "data",
    "parse_dataset_spec": "data",
    "ReferenceSet": "data",
    "DatasetError": "data",
    "load_potential": "potentials",
    "Potential": "potentials",
    "PotentialInfo": "potentials",
    "predict": "evaluate",
    "Predictions": "evaluate",
    "NonFiniteError": "errors",
    "compute_errors": "metrics",
    "ErrorReport": "metrics",
    "ErrorStats": "metrics",
    "assert_errors_within": "assertions",
    "MlpvalAssertionError": "assertions",
    "MlpvalError": "errors",
    "MlpvalWarning": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
