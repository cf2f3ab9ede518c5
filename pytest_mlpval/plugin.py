"""PYTEST_DONT_REWRITE
pytest-mlpval: the pytest11 entry point (``-p no:mlpval`` disables it).

Hooks and thin fixtures only; everything heavy (ase, dscribe, quippy) is imported inside
fixture and hook bodies, so loading the plugin costs nothing on unrelated test runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_mlpval import markers, options, planning
from pytest_mlpval.session import (LINKS, PRECISION_PROPERTY, RUN_STORE_INPUT, SESSION,
                                   MlpvalSession, is_xdist_worker)

if TYPE_CHECKING:
    from pytest_mlpval.data import ReferenceSet
    from pytest_mlpval.fixture import MlpvalFixture
    from pytest_mlpval.metrics import ErrorReport
    from pytest_mlpval.potentials import Potential

__all__ = ["SESSION", "LINKS", "FIXTURES"]  # the stash keys live in pytest_mlpval.session
FIXTURES = ("mlpval", "mlpval_potential", "mlpval_calculator", "mlpval_dataset",
            "mlpval_predictions", "mlpval_errors", "mlpval_species", "mlpval_tolerances",
            # dataset and recipe subjects (pytest_mlpval.domain_tests): not per candidate
            "mlpval_cv", "mlpval_domain")
FITTED_BY_OPTION = "--mlpval-fitted-by"
FITTED_BY_INI = "mlpval_fitted_by"
NO_POTENTIAL = "no-potential"
NO_DATASET = "no-dataset"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_mlpval import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlpval", "validation of machine-learned interatomic potentials")
    options.add_options(group.addoption)
    options.add_ini(parser)
    planning.add_options(group.addoption, parser)
    link = ("CANDIDATE=RECIPE: the candidate (its --potential name or sha256) was fitted "
            "by the recipe of that name (a cross-validation's mlpval_cv(recipe=...), else "
            "its script or program, e.g. fit_gap.py); only linked, the summary and report "
            "put the candidate's errors beside the recipe's")
    group.addoption(FITTED_BY_OPTION, action="append", dest="mlpval_fitted_by", default=[],
                    metavar="CANDIDATE=RECIPE", help=f"{link}. Repeatable. Ini: "
                    f"{FITTED_BY_INI} (one per line)")
    parser.addini(FITTED_BY_INI, type="linelist", default=[], help=link)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    for line in markers.MARKER_LINES:
        config.addinivalue_line("markers", line)
    session = MlpvalSession(config, options.resolve(config))
    config.stash[SESSION] = session
    config.stash[LINKS] = _links(config)
    config.pluginmanager.register(session, "mlpval-session")
    planner = config.stash[planning.PLANNER] = planning.Planner(config, session)
    config.pluginmanager.register(planning.PlanningPlugin(planner), "mlpval-planning")
    session.start_run()  # threads; the run store for candidates without a content hash


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION, None)
    if session is not None:
        session.end_run()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist (controller): each worker shares the controller's run store."""
    session = node.config.stash.get(SESSION, None)
    if session is not None and session.run_store is not None:
        node.workerinput[RUN_STORE_INPUT] = session.run_store


def _links(config: pytest.Config) -> dict[str, str]:
    from pytest_mlpval.subjects import parse_links

    try:
        links = parse_links(config.getini(FITTED_BY_INI), f"ini {FITTED_BY_INI}")
        given = parse_links(config.getoption("mlpval_fitted_by", None) or [],
                            FITTED_BY_OPTION)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    return {**links, **given}


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    session = config.stash[SESSION]
    settings = session.settings
    if not settings.potentials and not settings.datasets:
        return None
    pots = ", ".join(f"{e.name} ({e.source})" for e in settings.potentials) or "none"
    data = ", ".join(d.name for d in settings.datasets) or "none"
    return [f"mlpval: potentials: {pots}; datasets: {data}", *session.header_lines(),
            config.stash[planning.PLANNER].header_line()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if not any(name in names for name in FIXTURES):
        return
    settings = metafunc.config.stash[SESSION].settings
    if "mlpval_potential" in names:
        entries = list(settings.potentials) or [NO_POTENTIAL]
        metafunc.parametrize("mlpval_potential", entries, indirect=True, scope="session",
                             ids=[getattr(e, "name", e) for e in entries])
    if "mlpval_dataset" in names:
        specs = markers.dataset_specs(metafunc.definition, settings.datasets)
        if specs is None:
            specs = list(settings.datasets) or [NO_DATASET]
        metafunc.parametrize("mlpval_dataset", specs, indirect=True, scope="session",
                             ids=[getattr(s, "name", s) for s in specs])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_potential = False
    for item in items:
        names = getattr(item, "fixturenames", ())
        if any(name in FIXTURES for name in names):
            item.add_marker(markers.AUTO)
            needs_potential = needs_potential or "mlpval_potential" in names
    markers.apply_known_failures(items)  # strict xfails for the candidates they name
    settings = config.stash[SESSION].settings
    # a worker cannot stop the run cleanly: there the fixture fails each test instead
    if (needs_potential and settings.require_potential and not settings.potentials
            and not is_xdist_worker(config)):
        raise pytest.UsageError(_no_potential_message() + f" ({options.REQUIRE_OPTION} or "
                                f"ini {options.REQUIRE_INI} is set)")


def _no_potential_message() -> str:
    return (f"no potential given: use {options.POTENTIAL_ALIAS}=SPEC or the ini key "
            f"{options.POTENTIALS_INI}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    markers.thresholds_of(item)  # validate early: unknown metric names are an error
    markers.expectations_of(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After the test body: unchecked ``mlpval_thresholds`` and ``mlpval_expect`` markers,
    the baseline comparison (also after a failed body: both are reported), and, for a
    test that passed all of it, its NaN or inf metrics (a failure of their own)."""
    from pytest_mlpval.fixture import (auto_check, auto_expect, compare_with_baseline,
                                       nonfinite_failure)

    __tracebackhide__ = True
    failures, steps = [], (auto_check, auto_expect, compare_with_baseline)
    try:
        result = yield
    except AssertionError as exc:  # e.g. mlpval.check: still compare what was recorded
        failures, steps, result = [exc], (compare_with_baseline,), None
    session = item.config.stash[SESSION]
    if failures:
        failures[0] = _with_precision_hint(failures[0], item, session)
    for step in steps:  # report both: limits and regressions
        try:
            step(item, session)
        except AssertionError as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        message = "\n\n".join(str(f) for f in failures)
        try:
            combined = type(failures[0])(message)
        except Exception:  # an AssertionError subclass with another signature
            combined = AssertionError(message)
        raise combined.with_traceback(failures[0].__traceback__) from None
    failure = nonfinite_failure(item)
    if failure is not None:
        raise failure
    return result


def _with_precision_hint(failure: AssertionError, item: pytest.Item,
                         session: MlpvalSession) -> AssertionError:
    """A physics check that failed under the float64 tolerances on a model that is float32
    (detected) or whose failing values are within the float32 tolerances: the failure
    names --mlpval-precision=float32."""
    from pytest_mlpval.fixture import ITEM_STATE

    potential = getattr(item, "funcargs", {}).get("mlpval_potential")
    if "mlpval_tolerances" not in getattr(item, "fixturenames", ()) \
            or not hasattr(potential, "info"):
        return failure
    precision, how = session.precision(potential)
    if precision != "float64":
        return failure
    detected = session.detected_precision(potential)
    state = item.stash.get(ITEM_STATE, None)
    thresholds = [t for rec in (state.records.values() if state else ())
                  if rec.get("kind") == "checks" for t in rec["thresholds"]
                  if t.get("status") == "FAIL"]
    if detected[0] == "float32":
        why = f"{potential.name} is a float32 model ({detected[1]})"
    elif thresholds and all(_within_float32(t) for t in thresholds):
        why = (f"the failing values of {potential.name} are within the float32 tolerances "
               "(float32 rounding noise?)")
    else:
        return failure
    told = "--mlpval-precision/ini mlpval_precision" if how == "option" else how
    hint = (f"\n\nprecision: {why}, checked with the float64 tolerances ({told}): "
            f"--mlpval-precision=float32 (or ini {options.PRECISION_INI} = float32) "
            "applies the float32 ones")
    try:
        amended = type(failure)(f"{failure}{hint}")
    except Exception:  # an AssertionError subclass with another signature
        return failure
    return amended.with_traceback(failure.__traceback__)


def _within_float32(threshold: dict[str, Any]) -> bool:
    """A failing check value at or below the float32 tolerance of the same check."""
    from dataclasses import fields

    from pytest_mlpval.protocols.invariance import FLOAT32, FLOAT64, NOMINAL

    limit, value = threshold.get("limit"), threshold.get("value")
    if not isinstance(limit, (int, float)) or not isinstance(value, (int, float)) \
            or not limit > 0:
        return False
    names = [f.name for f in fields(FLOAT64) if getattr(FLOAT64, f.name) == limit]
    name = NOMINAL.get(threshold.get("metric"), (None,))[0]
    if name not in names:
        name = names[0] if names else name
    if name is None:
        return False
    return value <= limit * getattr(FLOAT32, name) / getattr(FLOAT64, name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    if call.when == "call":
        from pytest_mlpval.fixture import attach_records

        attach_records(item)
    elif call.when == "setup" and markers.AUTO in item.keywords:
        from pytest_mlpval.fixture import attach_subject

        attach_subject(item)  # also on a test that skips or errors in its setup
    return (yield)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """A candidate beside the recipe that fitted it, where the user linked them."""
    session = config.stash.get(SESSION, None)
    if session is None or is_xdist_worker(config) or not session.results:
        return
    from pytest_mlpval.assertions import format_table
    from pytest_mlpval.subjects import LINK_HEADERS, side_by_side_rows

    try:
        rows = side_by_side_rows(rec for _, rec in session.results.pairs())
    except Exception as exc:  # the other tables and files still appear
        session.end_error("the 'mlpval fitted by' table", exc)
        return
    if rows:
        terminalreporter.write_sep("=", "mlpval fitted by")
        terminalreporter.write_line(
            f"candidates beside the recipes that fitted them ({FITTED_BY_INI}): test-set "
            "errors of the candidate, cross-validation errors of the recipe; energies in "
            "meV/atom, forces in eV/Å, stresses in GPa")
        for line in format_table(LINK_HEADERS, rows):
            terminalreporter.write_line(line)


def pytest_mlpval_update_json(config: pytest.Config, output: dict) -> None:
    """The run's subjects and the candidate-recipe links, beside the records."""
    session = config.stash[SESSION]
    from pytest_mlpval.subjects import subject_of

    subjects: dict[str, Any] = {}
    for _, rec in session.results.pairs():
        subject = subject_of(rec)
        key = f"{subject['kind']}:{subject['name']}"
        subjects.setdefault(key, subject)
    output["subjects"] = list(subjects.values())
    output["links"] = [{"candidate": c, "recipe": r}
                       for c, r in sorted(config.stash.get(LINKS, {}).items())]


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mlpval_potential(request: pytest.FixtureRequest) -> "Potential":
    """The candidate potential (name, spec, loader, sha256 and ASE calculator).

    Every test using it runs once per ``--potential``; skipped when none is given
    (a usage error at collection with ``--mlpval-require-potential``).
    """
    session = request.config.stash[SESSION]
    if request.param == NO_POTENTIAL:
        if session.settings.require_potential:  # only reached on an xdist worker
            pytest.fail(_no_potential_message(), pytrace=False)
        pytest.skip(_no_potential_message())
    return session.potential(request.param)


@pytest.fixture(scope="session")
def mlpval_calculator(mlpval_potential: "Potential") -> Any:
    """The ASE calculator of the candidate potential (shared: do not change its settings)."""
    return mlpval_potential.calculator


@pytest.fixture(scope="session")
def mlpval_dataset(request: pytest.FixtureRequest) -> "ReferenceSet":
    """The reference dataset (a frozen ReferenceSet); one per --mlpval-dataset, ini line or
    ``mlpval_dataset`` marker. Skipped when there is none (an error with
    --mlpval-require-dataset)."""
    if request.param == NO_DATASET:
        message = (f"no dataset given: use {options.DATASET_OPTION}=NAME=PATH, the ini key "
                   f"{options.DATASETS_INI} or @pytest.mark.{markers.DATASET}")
        if request.config.stash[SESSION].settings.require_dataset:
            pytest.fail(f"{message} ({options.REQUIRE_DATASET_OPTION} "
                        f"or ini {options.REQUIRE_DATASET_INI} is set)", pytrace=False)
        pytest.skip(message)
    return request.config.stash[SESSION].dataset(request.param)


@pytest.fixture(scope="session")
def mlpval_predictions(request: pytest.FixtureRequest, mlpval_potential: "Potential",
                       mlpval_dataset: "ReferenceSet") -> Any:
    """Predictions of the potential on the dataset, computed once per session."""
    return request.config.stash[SESSION].predictions(mlpval_potential, mlpval_dataset)


@pytest.fixture
def mlpval(request: pytest.FixtureRequest, mlpval_potential: "Potential") -> "MlpvalFixture":
    """Check and record: ``mlpval.check(report, force_rmse=0.15)``,
    ``mlpval.errors(reference)``."""
    from pytest_mlpval.fixture import MlpvalFixture

    return MlpvalFixture(request.node, request.config.stash[SESSION], mlpval_potential)


@pytest.fixture
def mlpval_errors(mlpval: "MlpvalFixture", mlpval_dataset: "ReferenceSet") -> "ErrorReport":
    """Errors of the potential on the dataset (an ErrorReport), recorded for the summary;
    ``mlpval_thresholds`` markers are checked on it after the test body."""
    return mlpval.errors(mlpval_dataset)


@pytest.fixture(scope="session")
def mlpval_species(request: pytest.FixtureRequest, mlpval_potential: "Potential"
                   ) -> tuple[str, ...]:
    """Chemical symbols for generated structures: --mlpval-species / ini mlpval_species,
    else the potential's own (built-ins, GAP) - narrowed to those of the configured
    datasets when the potential covers more (a universal model's 89 species become the
    data's Si) - else those of the configured datasets."""
    species = request.config.stash[SESSION].species(mlpval_potential)
    if not species:
        pytest.skip(f"species of potential {mlpval_potential.name!r} unknown: use "
                    f"{options.SPECIES_OPTION}=Si,O or the ini key {options.SPECIES_INI}")
    return species


@pytest.fixture
def mlpval_tolerances(request: pytest.FixtureRequest) -> Any:
    """Tolerances of the physics checks (pytest_mlpval.protocols.invariance.Tolerances):
    --mlpval-precision / ini mlpval_precision where given, else the candidate's own
    precision (declared by its loader or detected: float32 models get FLOAT32), else
    float64."""
    from pytest_mlpval.protocols.invariance import FLOAT32, FLOAT64

    session = request.config.stash[SESSION]
    precision = session.settings.precision
    if "mlpval_potential" in request.fixturenames:
        potential = request.getfixturevalue("mlpval_potential")
        precision, how = session.precision(potential)
        request.node.user_properties.append(
            (PRECISION_PROPERTY, {"name": potential.name, "precision": precision, "how": how}))
    return FLOAT32 if precision == "float32" else FLOAT64
