"""One error root: every exception the package defines derives from
:class:`~pytest_mlpval.errors.MlpvalError` (and still from the builtin it refines), every
warning from :class:`~pytest_mlpval.errors.MlpvalWarning`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import pytest_mlpval
from pytest_mlpval.errors import MlpvalError, MlpvalWarning, NonFiniteError

# private exceptions used for control flow inside one module, which never reach a caller:
# (module, class name) -> why it need not derive from MlpvalError
CONTROL_FLOW: dict[tuple[str, str], str] = {
    ("pytest_mlpval.protocols.md.run", "_Stop"):
        "raised by an MD observer to end the run early; caught in the same module",
}


def package_modules() -> list[types.ModuleType]:
    names = [info.name for info in pkgutil.walk_packages(pytest_mlpval.__path__,
                                                          prefix="pytest_mlpval.")]
    return [pytest_mlpval, *(importlib.import_module(name) for name in sorted(names))]


def defined_classes(module: types.ModuleType, base: type) -> list[type]:
    return [obj for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, base) and obj.__module__ == module.__name__]


def off_root(classes: list[type], root: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in classes
            if not issubclass(cls, root)
            and (cls.__module__, cls.__qualname__) not in CONTROL_FLOW]


@pytest.fixture(scope="module")
def modules() -> list[types.ModuleType]:
    return package_modules()


def test_every_exception_derives_from_mlpval_error(modules):
    exceptions = [cls for module in modules for cls in defined_classes(module, Exception)
                  if not issubclass(cls, Warning)]
    assert len(exceptions) > 20  # the walk found the package's exceptions
    offenders = off_root(exceptions, MlpvalError)
    assert not offenders, "exceptions not derived from MlpvalError:\n  " + "\n  ".join(
        offenders)


def test_every_warning_derives_from_mlpval_warning(modules):
    warnings = [cls for module in modules for cls in defined_classes(module, Warning)]
    assert warnings  # at least the cache warnings
    offenders = off_root(warnings, MlpvalWarning)
    assert not offenders, "warnings not derived from MlpvalWarning:\n  " + "\n  ".join(
        offenders)


def test_the_control_flow_exclusions_exist(modules):
    by_name = {m.__name__: m for m in modules}
    missing = [f"{mod}.{name}" for mod, name in CONTROL_FLOW
               if not isinstance(getattr(by_name.get(mod), name, None), type)]
    assert not missing
    assert all(reason.strip() for reason in CONTROL_FLOW.values())


def test_the_check_sees_an_exception_off_the_root():
    module = types.ModuleType("pytest_mlpval.fake")
    exec("class Stray(ValueError): pass\nclass Fine(MlpvalError, ValueError): pass\n"
         "class Loud(RuntimeWarning): pass\n",
         {"__name__": "pytest_mlpval.fake", "MlpvalError": MlpvalError}, module.__dict__)
    assert off_root(defined_classes(module, Exception), MlpvalError) == [
        "pytest_mlpval.fake.Loud", "pytest_mlpval.fake.Stray"]
    assert off_root(defined_classes(module, Warning), MlpvalWarning) == [
        "pytest_mlpval.fake.Loud"]


@pytest.mark.parametrize("dotted, builtin", [
    ("pytest_mlpval.data.DatasetError", ValueError),
    ("pytest_mlpval.potentials.PotentialSpecError", ValueError),
    ("pytest_mlpval.potentials.PotentialLoadError", RuntimeError),
    ("pytest_mlpval.campaign.CampaignError", RuntimeError),
    ("pytest_mlpval.baseline.BaselineError", ValueError),
    ("pytest_mlpval.baseline.MlpvalRegressionError", AssertionError),
    ("pytest_mlpval.assertions.MlpvalAssertionError", AssertionError),
    ("pytest_mlpval.assertions.MissingMetricError", LookupError),
    ("pytest_mlpval.gap_xml.GapModelError", ValueError),
    ("pytest_mlpval.references.UnknownPropertyError", KeyError),
    ("pytest_mlpval.crystals.RelaxationError", RuntimeError),
    ("pytest_mlpval.campaign_cache.CacheWarning", RuntimeWarning),
    ("pytest_mlpval.evaluate.CacheWarning", RuntimeWarning),
])
def test_the_builtin_base_is_kept(dotted, builtin):
    module, _, name = dotted.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module), name), builtin)


def test_one_non_finite_error():
    from pytest_mlpval import evaluate

    assert evaluate.NonFiniteError is NonFiniteError is pytest_mlpval.NonFiniteError
    assert issubclass(NonFiniteError, ArithmeticError)
    assert pytest_mlpval.MlpvalError is MlpvalError
