"""The pytest side of up-front scheduling (:mod:`pytest_mlpval.schedule`): what each
selected test will compute, planned when collection ends, and the run's one executor.

- **Declared campaigns.** ``@pytest.mark.mlpval_campaign(protocol, settings=None, *,
  full=None, name=None, **options)``: ``protocol`` a registered protocol's name or a
  module-level library function as ``mlpval.run`` takes, ``settings`` for the quick tier,
  ``full`` for ``--mlpval-tier=full`` (default: ``settings``). The test keeps calling
  ``mlpval.run(function, settings, name=...)`` or ``mlpval.run_protocol(name, settings)``:
  the call gets the planned job with the same identity
  (candidate, protocol, settings, options), which made exactly that call earlier.
- **Implicit ones.** The predictions of every candidate on every dataset that an
  ``mlpval_errors`` or ``mlpval_predictions`` test uses.
- **When.** At ``pytest_collection_finish``, for the tests that -k/-m left and that will
  not be skipped (a skip mark, a true skipif), every candidate, each identity once,
  longest first (seconds measured in earlier runs, kept in pytest's cache, else a guess
  from the settings). Off (``lazy``: each campaign when its test reaches it) with
  ``--mlpval-schedule=lazy`` (ini ``mlpval_schedule``), under xdist, and without campaign
  workers or a Dask scheduler.
- **One pool per run.** :meth:`Planner.executor` is the run's shared
  :class:`~pytest_mlpval.schedule.PriorityExecutor` (workers or Dask), which
  ``mlpval.run_options()`` hands to every campaign, planned or not; shut down, cancelling
  what has not started, when the run ends (also at -x / --maxfail and Ctrl-C).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import is_dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Hashable

import pytest

from pytest_mlpval.markers import CAMPAIGN

if TYPE_CHECKING:  # imported where used: loading the plugin stays light (no numpy)
    from pytest_mlpval.protocols.base import CampaignOptions
    from pytest_mlpval.schedule import Durations, Job, PriorityExecutor, Scheduler

SCHEDULE_OPTION = "--mlpval-schedule"
SCHEDULE_INI = "mlpval_schedule"
MODES = ("upfront", "lazy")
#: the run's Planner in ``config.stash``
PLANNER = pytest.StashKey["Planner"]()
#: what :func:`planned` returns for a call nobody planned
NOT_PLANNED = object()
#: the fields of CampaignOptions (where and how a campaign runs, not what it computes)
_OPTION_NAMES = frozenset({"workers", "scheduler", "cache_dir", "progress", "executor"})
_DURATIONS = "mlpval-schedule"


def add_options(addoption: Callable[..., Any], parser: pytest.Parser) -> None:
    text = ("when campaigns run: upfront (the default: every campaign of the selected "
            "tests, for every candidate, starts when collection ends, longest first, on "
            "the run's one pool; a test waits for its own) or lazy (each when its test "
            "reaches it). Lazy anyway under xdist and without campaign workers or a Dask "
            "scheduler")
    addoption(SCHEDULE_OPTION, dest="mlpval_schedule", default=None, choices=MODES,
              help=f"{text}. Ini: {SCHEDULE_INI}")
    parser.addini(SCHEDULE_INI, default="upfront", help=text)


# -- identities: the same for a planned job and the call a test makes ---------------------

def _canonical(value: Any) -> str:
    if is_dataclass(value) and not isinstance(value, type) and hasattr(value, "as_dict"):
        data = json.dumps(value.as_dict(), sort_keys=True, default=repr)
        return f"{type(value).__qualname__}{data}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_canonical(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_canonical(v)}" for k, v in sorted(value.items())) + "}"
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', value)}"
    return repr(value)


def run_key(candidate: str, protocol: Any, args: tuple, kwargs: dict[str, Any]) -> Hashable:
    """The identity of ``mlpval.run(protocol, *args, **kwargs)`` for ``candidate``; the
    campaign options among ``kwargs`` (where and how it runs) are not part of it."""
    extra = {k: v for k, v in kwargs.items() if k not in _OPTION_NAMES}
    return ("run", candidate, _canonical(protocol), _canonical(tuple(args)),
            _canonical(extra))


def protocol_key(candidate: str, name: str, settings: Any) -> Hashable:
    """The identity of ``mlpval.run_protocol(name, settings)`` for ``candidate``."""
    return ("protocol", candidate, name, _canonical(settings))


def properties_key(candidate: str, names: list[str], params: dict[str, Any],
                   symbol: str) -> Hashable:
    """The identity of a ``compute_properties`` call of a ready-made property test."""
    return ("properties", candidate, tuple(names), _canonical(params), symbol)


def predictions_key(candidate: str, spec: Any) -> Hashable:
    """The identity of a candidate's predictions on a dataset."""
    return ("predictions", candidate, repr(spec))


def _duration_key(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


# -- the calls ------------------------------------------------------------------------

def takes_options(protocol: Any) -> bool:
    """``protocol`` has an ``options`` parameter (a CampaignOptions)."""
    try:
        return "options" in inspect.signature(protocol).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin, a C callable)
        return False


def call_protocol(protocol: Any, potential: Any, args: tuple, kwargs: dict[str, Any],
                  options: CampaignOptions) -> Any:
    """``protocol(potential, *args, ...)`` as ``mlpval.run`` calls it: a protocol that
    takes ``options`` gets ``options`` with ``kwargs``' campaign options, others the
    options as keyword arguments under ``kwargs``."""
    known = {k: v for k, v in kwargs.items() if k in _OPTION_NAMES}
    extra = {k: v for k, v in kwargs.items() if k not in _OPTION_NAMES}
    if takes_options(protocol):
        return protocol(potential, *args, options=replace(options, **known), **extra)
    plain = {"workers": options.workers, "scheduler": options.scheduler,
             "cache_dir": options.cache_dir, "progress": options.progress}
    return protocol(potential, *args, **{**plain, **kwargs})


def planned(config: pytest.Config, key: Hashable) -> Any:
    """The result of the job planned under ``key`` (waiting for it; its exception raised
    again), or :data:`NOT_PLANNED`."""
    planner = config.stash.get(PLANNER, None)
    if planner is None or planner.scheduler is None or not planner.scheduler.planned(key):
        return NOT_PLANNED
    return planner.scheduler.wait(key)


def shared_executor(config: pytest.Config) -> Any:
    """The run's one executor (None without campaign workers or a Dask scheduler)."""
    planner = config.stash.get(PLANNER, None)
    return None if planner is None else planner.executor()


# -- the planner ------------------------------------------------------------------------

class Planner:
    """The run's schedule: its mode, its executor and its jobs."""

    def __init__(self, config: pytest.Config, session: Any) -> None:
        self.config = config
        self.session = session
        self.scheduler: Scheduler | None = None
        self._executor: PriorityExecutor | None = None
        self._failed: BaseException | None = None
        self.summary: dict[str, Any] | None = None
        self.mode, self.why = self._mode()

    def _mode(self) -> tuple[str, str]:
        settings = self.session.settings
        chosen = (self.config.getoption("mlpval_schedule", None)
                  or str(self.config.getini(SCHEDULE_INI)).strip() or "upfront")
        if chosen not in MODES:
            raise pytest.UsageError(f"ini {SCHEDULE_INI}={chosen!r}: expected one of "
                                    f"{', '.join(MODES)}")
        if chosen == "lazy":
            return "lazy", f"{SCHEDULE_OPTION}=lazy"
        if hasattr(self.config, "workerinput") or self.config.getoption("numprocesses",
                                                                         None):
            return "lazy", "under xdist: each worker runs its campaigns one by one"
        if not settings.workers and not settings.scheduler:
            return "lazy", "no campaign workers (mlpval_workers) or Dask scheduler"
        return "upfront", (f"the Dask cluster at {settings.scheduler}" if settings.scheduler
                           else f"one pool of {settings.workers} processes")

    def header_line(self) -> str:
        if self.mode == "upfront":
            return (f"mlpval: schedule: upfront (campaigns of the selected tests start when "
                    f"collection ends, longest first, on {self.why})")
        return f"mlpval: schedule: lazy ({self.why})"

    def executor(self) -> PriorityExecutor | None:
        """The run's shared executor (made at first use; None without campaign workers
        or a Dask scheduler, or if it could not start: each campaign then says why)."""
        settings = self.session.settings
        if self._executor is None and self._failed is None \
                and (settings.workers or settings.scheduler):
            from pytest_mlpval.schedule import PriorityExecutor

            try:
                self._executor = PriorityExecutor(settings.workers, settings.scheduler)
            except Exception as exc:  # noqa: BLE001 - each campaign reports it itself
                self._failed = exc
        return self._executor

    def job_options(self) -> CampaignOptions:
        from pytest_mlpval.protocols.base import CampaignOptions

        settings = self.session.settings
        return CampaignOptions(workers=settings.workers, scheduler=settings.scheduler,
                               cache_dir=self.session.campaign_cache_dir(),
                               executor=self.executor())

    def _durations(self) -> Durations:
        from pytest_mlpval.schedule import Durations

        cache = getattr(self.config, "cache", None)
        path = None
        if cache is not None:  # also with --mlpval-no-cache: seconds, not results
            path = os.path.join(str(cache.mkdir(_DURATIONS)), "durations.json")
        return Durations(path)

    def plan(self, items: list[pytest.Item]) -> None:
        """Start the jobs of ``items`` (those that will run)."""
        if self.mode != "upfront" or not items or self.config.getoption("collectonly", False) \
                or self.executor() is None:
            return
        durations = self._durations()
        jobs: dict[Hashable, Job] = {}
        for item in items:
            if _will_skip(item):
                continue
            entry = _candidate(item)
            if entry is None:
                continue
            try:
                potential = self.session.potential(entry)
            except Exception:  # noqa: BLE001 - the test reports the load error itself
                continue
            for job in self._declared(item, potential, durations) \
                    + self._predictions(item, entry, potential, durations) \
                    + self._ready_made(item, potential, durations):
                jobs.setdefault(job.key, job)
        if not jobs:
            return
        from pytest_mlpval.schedule import Scheduler

        self.scheduler = Scheduler(self._executor)
        self._durations_file = durations
        self.scheduler.plan(list(jobs.values()))

    def _declared(self, item: pytest.Item, potential: Any, durations: Durations) -> list[Job]:
        from pytest_mlpval.errors import MlpvalError
        from pytest_mlpval.protocols.base import get_protocol
        from pytest_mlpval.protocols.base import run_protocol as run_registered
        from pytest_mlpval.schedule import Job, static_estimate

        tier = self.session.settings.tier
        jobs = []
        for mark in item.iter_markers(CAMPAIGN):
            protocol, settings, full, name, options = campaign_args(mark, item)
            settings = full if tier == "full" and full is not None else settings
            args = () if settings is None else (settings,)
            if isinstance(protocol, str):
                try:
                    spec = get_protocol(protocol)
                    settings = spec.settings() if settings is None else settings
                    settings = settings.with_overrides(**options) if options else settings
                except MlpvalError:  # unknown protocol or setting: the test's call says so
                    continue
                key = protocol_key(potential.name, spec.name, settings)
                call = (lambda spec=spec, settings=settings:
                        run_registered(spec, potential, settings, options=self.job_options()))
                label, ident = spec.name, spec.name
            else:
                key = run_key(potential.name, protocol, args, options)
                call = (lambda protocol=protocol, args=args, options=options:
                        call_protocol(protocol, potential, args, options, self.job_options()))
                label = name or getattr(protocol, "__name__", "protocol").removeprefix("run_")
                ident = _canonical(protocol)
            duration_key = _duration_key(ident, _canonical(settings), _canonical(options))
            estimate = durations.get(duration_key)
            jobs.append(Job(key, f"{label} ({potential.name})", call,
                            estimate if estimate is not None else static_estimate(settings),
                            duration_key))
        return jobs

    def _predictions(self, item: pytest.Item, entry: Any, potential: Any,
                     durations: Durations) -> list[Job]:
        """A candidate's predictions on the dataset of an ``mlpval_errors`` or
        ``mlpval_predictions`` test, computed with a calculator of the job's own (an ASE
        calculator is not safe to share with the tests running meanwhile)."""
        from pytest_mlpval.schedule import Job

        names = getattr(item, "fixturenames", ())
        spec = getattr(getattr(item, "callspec", None), "params", {}).get("mlpval_dataset")
        if not ({"mlpval_errors", "mlpval_predictions"} & set(names)) \
                or not hasattr(spec, "name"):
            return []
        try:
            reference = self.session.dataset(spec)
        except Exception:  # noqa: BLE001 - the test reports it itself
            return []
        duration_key = _duration_key("predictions", repr(spec))
        estimate = durations.get(duration_key)
        session = self.session
        return [Job(predictions_key(potential.name, spec),
                    f"predictions on {spec.name} ({potential.name})",
                    lambda: session.compute_predictions(
                        potential if session.predictions_cached(potential, reference)
                        else session.load_private(entry), reference),
                    estimate if estimate is not None else 2e-3 * float(reference.n_atoms.sum()),
                    duration_key)]

    def _ready_made(self, item: pytest.Item, potential: Any,
                    durations: Durations) -> list[Job]:
        """The jobs a ready-made test declares through its function's ``mlpval_plan``
        (the property tests: :func:`pytest_mlpval.property_tests.plan_properties`), for
        a candidate of one species (others: computed by the test)."""
        plan = getattr(getattr(item, "function", None), "mlpval_plan", None)
        if not callable(plan):
            return []
        try:  # as the mlpval_species fixture: a universal model narrowed to the data's
            species = self.session.species(potential)
        except Exception:  # noqa: BLE001 - a dataset that cannot be read: the test says it
            return []
        if len(species) != 1:
            return []
        from pytest_mlpval.schedule import Job

        try:
            calls = plan(item, potential, species, self.session.settings.tier,
                         self.job_options())
        except BaseException:  # noqa: BLE001 - a skip or usage error: the test says it
            return []
        jobs = []
        for key, label, call in calls:
            duration_key = _duration_key(*map(str, key[:1] + key[2:]))
            estimate = durations.get(duration_key)
            jobs.append(Job(key, label, call, 5.0 if estimate is None else estimate,
                            duration_key))
        return jobs

    def finish(self) -> None:
        """At the end of the run (or -x, Ctrl-C): cancel what has not started, stop the
        pool, keep the seconds measured and the summary (once)."""
        if self.summary is not None:
            return
        if self.scheduler is not None:
            self.scheduler.cancel()
            self.summary = self.scheduler.summary()
            durations = self._durations_file
            durations.record(list(self.scheduler.jobs.values()))
            try:
                durations.save()
            except OSError:  # a read-only cache: next run guesses again
                pass
        elif self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def summary_line(self) -> str | None:
        from pytest_mlpval.schedule import summary_line

        return None if self.summary is None else summary_line(self.summary)


def campaign_args(mark: pytest.Mark, item: pytest.Item) -> tuple[Any, Any, Any, Any, dict]:
    """``(protocol, settings, full, name, options)`` of an ``mlpval_campaign`` mark."""
    args, kwargs = list(mark.args), dict(mark.kwargs)
    if not args and "protocol" not in kwargs:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{CAMPAIGN} needs a protocol "
                                "(a registered name or a module-level function)")
    protocol = args.pop(0) if args else kwargs.pop("protocol")
    settings = args.pop(0) if args else kwargs.pop("settings", None)
    if args:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{CAMPAIGN}(protocol, "
                                "settings=None, *, full=None, name=None, **options): "
                                "too many positional arguments")
    full, name = kwargs.pop("full", None), kwargs.pop("name", None)
    if not isinstance(protocol, str) and "<locals>" in getattr(protocol, "__qualname__",
                                                                "<locals>"):
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{CAMPAIGN}: {protocol!r} is "
                                "neither a registered protocol's name nor a module-level "
                                "function")
    return protocol, settings, full, name, kwargs


def _candidate(item: pytest.Item) -> Any:
    params = getattr(getattr(item, "callspec", None), "params", {})
    entry = params.get("mlpval_potential")
    return entry if hasattr(entry, "raw") else None


def _will_skip(item: pytest.Item) -> bool:
    """A skip mark, or a skipif whose condition is true (an error: not skipped here)."""
    from _pytest.skipping import evaluate_skip_marks

    try:
        return evaluate_skip_marks(item) is not None
    except Exception:  # noqa: BLE001 - pytest reports a broken condition itself
        return False


# -- hooks (registered by the plugin) ---------------------------------------------------

class PlanningPlugin:
    """Plans at collection's end, cancels at -x / Ctrl-C and the run's end, reports."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.planner.plan(list(session.items))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        session = getattr(self, "_session", None)
        if session is not None and (session.shouldstop or session.shouldfail):
            self.planner.finish()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.planner.finish()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.planner.finish()

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        line = self.planner.summary_line()
        if line is not None:
            terminalreporter.write_line(line)

    def pytest_mlpval_update_json(self, config: pytest.Config, output: dict) -> None:
        if self.planner.summary is not None:
            output["schedule"] = {"mode": self.planner.mode, **self.planner.summary}
