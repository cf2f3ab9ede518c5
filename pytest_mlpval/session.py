"""MlpvalSession: per-run state (loaded potentials, datasets, predictions), collection of
metric records from test reports, the terminal summary and the JSON file.

Records travel on ``report.user_properties`` as ``("mlpval", [record, ...])``, so they
reach the xdist controller, which alone prints the summary and writes files.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_mlpval.options import Settings
from pytest_mlpval.results import RunResults

#: the run's MlpvalSession in ``config.stash``
SESSION = pytest.StashKey["MlpvalSession"]()
#: candidate -> recipe: the links of ini mlpval_fitted_by and --mlpval-fitted-by
LINKS = pytest.StashKey[dict]()
PROPERTY = "mlpval"
#: user property naming what a test judges: {"kind": "candidate" | "dataset" | "recipe",
#: "name", "identity"}
SUBJECT_PROPERTY = "mlpval_subject"
#: user property of a test whose physics checks took a candidate's precision:
#: {"name", "precision", "how"}
PRECISION_PROPERTY = "mlpval_precision"


#: the run store's folder, handed from the xdist controller to its workers
RUN_STORE_INPUT = "mlpval_run_store"


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def xdist_processes(config: pytest.Config) -> int:
    """xdist workers of this run (``-n``; 0 without xdist)."""
    value = config.getoption("numprocesses", None)
    if is_xdist_worker(config):
        return int(config.workerinput.get("workercount", 1) or 1)
    return value if isinstance(value, int) else 0


class MlpvalSession:
    """Registered as a plugin in ``pytest_configure``; found through ``config.stash``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._potentials: dict[str, Any] = {}
        self._datasets: dict[Any, Any] = {}
        self._predictions: dict[tuple[str, Any], Any] = {}
        self._errors: dict[tuple[str, Any], Any] = {}
        self.results = RunResults()  # controller: the records of every test
        self.written: list[Any] = []  # files written at the end (baselines, report)
        self.end_errors: list[str] = []  # writers that failed at the end (each reported)
        self._shipped: set[Any] = set()  # (potential, dataset) whose report arrays were sent
        self._detected: dict[str, tuple[str, str]] = {}  # candidate -> (precision, how)
        self.precisions: dict[str, str] = {}  # controller: candidate -> "float32 (how)"
        self.threads, self.threads_source = 1, ""
        self._environment: dict[str, str | None] | None = None  # saved RUN_STORE_ENV
        self._own_store: str | None = None

    # --- the run's environment: threads, run store, device, precision -------------------

    def start_run(self) -> None:
        """Set the run's threads (--mlpval-threads) in this process and the processes it
        starts, and share a run store (:func:`~pytest_mlpval.campaign_cache.run_store`)
        with the xdist workers; both only for a run with candidates (or an explicit
        --mlpval-threads), so that other test runs keep their threads."""
        from pytest_mlpval.threads import default_threads, free_cores, set_threads

        settings, config = self.settings, self.config
        xdist = xdist_processes(config)
        if settings.threads is not None:
            self.threads, self.threads_source = settings.threads, "--mlpval-threads"
        else:
            parallel = xdist > 0 or settings.workers > 0 or bool(settings.scheduler)
            self.threads = default_threads(parallel=parallel)
            free, usable, load = free_cores()
            self.threads_source = ("default: one per process under xdist" if xdist else
                                   "default: one per process with campaign workers"
                                   if parallel else f"default: the free cores, {usable} "
                                   f"usable at a load of {load:.1f}")
        if not settings.potentials and settings.threads is None:
            return
        set_threads(self.threads)
        if not settings.potentials:
            return
        import tempfile

        from pytest_mlpval.campaign_cache import RUN_STORE_ENV

        if is_xdist_worker(config):
            store = config.workerinput.get(RUN_STORE_INPUT)
        else:
            store = self._own_store = tempfile.mkdtemp(prefix="mlpval-run-")
        if store:
            self._environment = {RUN_STORE_ENV: os.environ.get(RUN_STORE_ENV)}
            os.environ[RUN_STORE_ENV] = store

    @property
    def run_store(self) -> str | None:
        """The run store this controller made (None in a worker or without candidates)."""
        return self._own_store

    def end_run(self) -> None:
        """Undo :meth:`start_run`: threads and environment as they were, the controller's
        run store removed."""
        import shutil

        from pytest_mlpval.threads import restore_threads

        restore_threads()
        for name, value in (self._environment or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._environment = None
        if self._own_store is not None:
            shutil.rmtree(self._own_store, ignore_errors=True)
            self._own_store = None

    def detected_precision(self, potential) -> tuple[str, str]:
        """``(precision, how)`` of a candidate as its loader declares or a probe detects
        (:func:`~pytest_mlpval.tolerance.detect_precision`), once per process."""
        if potential.name not in self._detected:
            from pytest_mlpval.tolerance import detect_precision

            species = self.settings.species or tuple(potential.info.species) or ("Si",)
            self._detected[potential.name] = detect_precision(potential, species)
        return self._detected[potential.name]

    def precision(self, potential) -> tuple[str, str]:
        """``(precision, how)`` whose tolerances a candidate's physics checks use:
        --mlpval-precision or ini mlpval_precision (how: ``"option"``), else its own."""
        if self.settings.precision is not None:
            return self.settings.precision, "option"
        return self.detected_precision(potential)

    def header_lines(self) -> list[str]:
        """The run header's lines on threads, device and each candidate's precision as
        far as it is known without loading it (the option, or what its loader declares);
        the precisions detected at loading are listed at the end of the run."""
        from pytest_mlpval.potentials import PotentialSpecError, parse_potential_spec
        from pytest_mlpval.tolerance import declared_precision

        settings = self.settings
        lines = [f"mlpval: threads: {self.threads} per process ({self.threads_source}); "
                 f"device: {settings.device or 'the loaders default'}"]
        parts = []
        for entry in settings.potentials:
            if settings.precision is not None:
                parts.append(f"{entry.name} {settings.precision} (--mlpval-precision)")
                continue
            try:
                info = parse_potential_spec(entry.raw, entry.base_dir, probe=False).info
            except PotentialSpecError:  # a hook's spec
                info = None
            declared = declared_precision(info)
            parts.append(f"{entry.name} {declared} (loader)" if declared else
                         f"{entry.name} detected when loaded")
        if parts:
            lines.append("mlpval: precision: " + ", ".join(parts))
        return lines

    # --- expensive objects, computed once per process -----------------------------------

    def potential(self, entry) -> Any:
        """The loaded :class:`~pytest_mlpval.potentials.Potential` of a configured entry.
        A loading error is kept and raised again for every test that needs it."""
        if entry.raw not in self._potentials:
            from pytest_mlpval.potentials import PotentialLoadError, PotentialSpecError

            try:
                self._potentials[entry.raw] = self.load_private(entry)
            except (PotentialLoadError, PotentialSpecError) as exc:
                self._potentials[entry.raw] = PotentialLoadError(
                    f"{entry.source}={entry.raw!r}: {exc}")
        value = self._potentials[entry.raw]
        if isinstance(value, BaseException):
            raise value.with_traceback(None)  # a fresh traceback each time
        return value

    def load_private(self, entry) -> Any:
        """A fresh load of a configured candidate, with a calculator of its own (a job
        that computes in this process beside the tests: :mod:`pytest_mlpval.planning`)."""
        from pytest_mlpval.potentials import load_potential
        from pytest_mlpval.threads import limit_loaded

        def hook(spec: str):
            return self.config.hook.pytest_mlpval_load_potential(config=self.config,
                                                                 spec=spec)

        device = {"device": self.settings.device} if self.settings.device else {}
        try:
            return load_potential(entry.raw, entry.base_dir, hook, **device)
        finally:
            limit_loaded()  # what the loader loaded (BLAS, torch): the run's threads

    def species(self, potential) -> tuple[str, ...]:
        """Chemical symbols for a candidate's generated structures and crystals:
        --mlpval-species / ini mlpval_species, else the potential's own (built-ins, GAP),
        narrowed to those of the configured datasets when it covers more (a universal
        model's 89 species become the data's Si), else the datasets' (empty: unknown)."""
        if self.settings.species:
            return self.settings.species
        own = tuple(potential.info.species)
        if len(own) == 1:
            return own
        symbols: set[str] = set()
        for spec in self.settings.datasets:
            for atoms in self.dataset(spec).structures:
                symbols.update(atoms.get_chemical_symbols())
        if own:
            return tuple(s for s in own if s in symbols) or own
        return tuple(sorted(symbols))

    def dataset(self, spec) -> Any:
        if spec not in self._datasets:
            from pytest_mlpval.data import DatasetError, read_dataset

            try:
                self._datasets[spec] = read_dataset(spec)
            except DatasetError as exc:
                self._datasets[spec] = exc
        value = self._datasets[spec]
        if isinstance(value, BaseException):
            raise value.with_traceback(None)  # a fresh traceback each time
        return value

    def _cache_dir(self) -> str | None:
        cache = getattr(self.config, "cache", None)
        if not self.settings.cache or cache is None:
            return None
        return str(cache.mkdir("mlpval-predictions"))

    def campaign_cache_dir(self) -> str | None:
        """Where campaigns (RSS, MD, properties) cache their items; None with
        --mlpval-no-cache or without pytest's cache plugin."""
        cache = getattr(self.config, "cache", None)
        if not self.settings.cache or cache is None:
            return None
        return str(cache.mkdir("mlpval-campaigns"))

    def progress(self, every_s: float = 10.0):
        """A campaign progress callback that writes a line to the terminal at most every
        ``every_s`` seconds (None under an xdist worker, whose output nobody sees)."""
        if is_xdist_worker(self.config):
            return None
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return None
        from pytest_mlpval.campaign import print_progress

        def write(line: str) -> None:
            if capture is not None:
                with capture.global_and_fixture_disabled():
                    reporter.write_line(f"mlpval {line}")
            else:
                reporter.write_line(f"mlpval {line}")

        # short campaigns stay quiet
        return print_progress(every_s, write=write, quiet_below_s=every_s)

    def predictions(self, potential, reference) -> Any:
        """A candidate's predictions on a dataset, once per process: those planned up
        front (:mod:`pytest_mlpval.planning`) when they were, waiting for them."""
        key = (potential.name, reference.spec)
        if key not in self._predictions:
            from pytest_mlpval.planning import NOT_PLANNED, planned, predictions_key

            if planned(self.config, predictions_key(potential.name, reference.spec)) \
                    is NOT_PLANNED or key not in self._predictions:
                self.compute_predictions(potential, reference)
        return self._predictions[key]

    def predictions_cached(self, potential, reference) -> bool:
        """The prediction cache holds an entry for this candidate and dataset (reading
        it needs no calculator)."""
        from pytest_mlpval.evaluate import cache_key, properties_for

        directory, sha256 = self._cache_dir(), potential.info.sha256
        if directory is None or sha256 is None:
            return False
        key = cache_key(sha256, reference, properties_for(potential.calculator, reference),
                        getattr(potential.info, "loader_versions", None))
        return os.path.isfile(os.path.join(directory, f"{key}.npz"))

    def compute_predictions(self, potential, reference) -> Any:
        """Compute (or read from the cache) and keep a candidate's predictions; on the
        run's executor where ``predict_cached`` takes one."""
        import inspect

        from pytest_mlpval.evaluate import predict_cached, properties_for
        from pytest_mlpval.planning import shared_executor

        properties = properties_for(potential.calculator, reference)
        executor = shared_executor(self.config)
        parallel = ({"executor": executor, "candidate": potential} if executor is not None
                    and "executor" in inspect.signature(predict_cached).parameters else {})
        value = predict_cached(
            potential.calculator, potential.info.sha256, reference, properties,
            self._cache_dir(), potential=potential.name,
            loader_versions=getattr(potential.info, "loader_versions", None), **parallel)
        self._predictions[(potential.name, reference.spec)] = value
        return value

    def errors(self, potential, reference) -> Any:
        key = (potential.name, reference.spec)
        if key not in self._errors:
            from pytest_mlpval.metrics import compute_errors

            self._errors[key] = compute_errors(reference,
                                               self.predictions(potential, reference))
        return self._errors[key]

    def dataset_info(self, name: str) -> dict[str, Any]:
        """Identity of a dataset read in this process, by name (just the name if none)."""
        for spec, value in self._datasets.items():
            if spec.name == name and not isinstance(value, BaseException):
                return value.as_dict()
        return {"name": name}

    def report_arrays(self, potential, reference) -> dict[str, Any] | None:
        """Per-structure and (subsampled) per-component values for the report's plots,
        shipped once per potential and dataset from each process; None without a report."""
        if self.settings.report_dir is None:
            return None
        key = (potential.name, reference.spec)
        if key in self._shipped:
            return None
        self._shipped.add(key)
        from pytest_mlpval.report import report_arrays

        return report_arrays(reference, self.predictions(potential, reference))

    # --- collection of records (controller) ----------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Every phase of every test goes into the verdict (outcome, expected failure,
        subject); a call report's records into the tables, JSON and report."""
        if is_xdist_worker(self.config):
            return
        for key, value in report.user_properties:
            if key == PRECISION_PROPERTY and isinstance(value, dict):
                self.precisions[str(value.get("name"))] = \
                    f"{value.get('precision')} ({value.get('how')})"
        subject = next((v for k, v in report.user_properties if k == SUBJECT_PROPERTY
                        and isinstance(v, dict)), None)
        crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
        regression = (report.when == "call" and report.failed
                      and "MlpvalRegressionError" in str(getattr(crash, "message", "")))
        outcome = self.results.add_phase(report.nodeid, report.when, report.outcome,
                                         hasattr(report, "wasxfail"), subject, regression)
        records = [v for k, v in report.user_properties if k == PROPERTY]
        if not records or report.when != "call":  # records ride on every later report too
            return
        flat = [r for group in records for r in group]
        self.results.add(report.nodeid, outcome, report.when, flat)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if is_xdist_worker(self.config):
            return
        try:
            self._verdict_section(terminalreporter)
        except Exception as exc:  # the tables and files still appear
            self.end_error("the verdict matrix", exc)
        if self.results:
            for name, section in (("summary table", self._tables),
                                  ("baseline table", self._baseline_section)):
                try:
                    section(terminalreporter)
                except Exception as exc:  # the other tables and files still appear
                    self.end_error(f"the {name}", exc)
        if self.precisions:
            terminalreporter.write_line("mlpval: precision of the physics checks' "
                                        "tolerances: " + ", ".join(
                                            f"{k} {v}" for k, v in self.precisions.items()))
        for path in self.written:
            terminalreporter.write_line(f"mlpval: wrote {path}")
        for line in self.end_errors:
            terminalreporter.write_line(f"mlpval: ERROR {line}", red=True, bold=True)

    def _verdict_section(self, terminalreporter) -> None:
        from pytest_mlpval.assertions import format_table
        from pytest_mlpval.verdict import failure_lines, verdict_rows

        self.results.candidates = [p.name for p in self.settings.potentials]
        verdict = self.results.verdict()
        if not verdict["subjects"]:
            return
        terminalreporter.write_sep("=", "mlpval verdict")
        terminalreporter.write_line(
            "tests per subject and group: ok, FAIL with the worst excess over a limit, "
            "xfail (expected failure), XPASS, ERROR, skip; baseline: tests compared with "
            "--mlpval-compare (FAIL: worse than the baseline)")
        headers, rows = verdict_rows(verdict)
        table = format_table(headers, rows)
        for line in table[:2]:
            terminalreporter.write_line(line)
        for line, row in zip(table[2:], rows):
            markup = {"FAIL": {"red": True, "bold": True}, "PASS": {"green": True}}
            terminalreporter.write_line(line, **markup.get(row[-1], {}))
        for line in failure_lines(verdict):
            terminalreporter.write_line(line, red=True)

    def _tables(self, terminalreporter) -> None:
        from pytest_mlpval.assertions import format_table

        headers, rows = self.results.summary_rows(self.settings.details)
        if rows:
            terminalreporter.write_sep("=", "mlpval summary")
            terminalreporter.write_line("energies in meV/atom, forces in eV/Å (Cartesian "
                                        "components), stresses in GPa; E-offset: mean "
                                        "energy offset removed (one per element, fitted, "
                                        "with 2+ elements: E offsets/El); NaN or inf: a "
                                        "non-finite value was recorded (n/a: not measured)")
            for line in format_table(headers, rows):
                terminalreporter.write_line(line)
        for title, note, table in (
            ("mlpval physics checks", "worst value over the structures tried (ERROR: the "
             "calculator raised; skipped: the check does not apply)", self.results.check_rows),
            ("mlpval protocols", "metrics of campaigns and protocols (RSS, MD, properties), "
             "each once per subject with its bounds (mlpval_expect / mlpval.expect) and "
             "status; every metric is in --mlpval-json and --mlpval-report",
             lambda: self.results.protocol_rows(limit=3, bounded_only=True)),
            ("mlpval cost", "median wall time of an energy+forces call; exponent of "
             "time ~ N^x (1 = linear)", self.results.cost_rows),
        ):
            try:
                headers, rows = table()
            except Exception as exc:  # one broken table does not hide the others
                self.end_error(f"the {title!r} table", exc)
                continue
            if rows:
                terminalreporter.write_sep("=", title)
                terminalreporter.write_line(note)
                for line in format_table(headers, rows):
                    terminalreporter.write_line(line)
                if title == "mlpval protocols":
                    hidden = self.results.protocol_metric_count() - len(rows)
                    if hidden > 0:
                        terminalreporter.write_line(
                            f"... and {hidden} metrics without bounds (see --mlpval-json "
                            "or --mlpval-report)")

    def _baseline_section(self, terminalreporter) -> None:
        if self.settings.baseline is not None:
            from pytest_mlpval.assertions import format_table

            self._baseline_summary(terminalreporter, format_table)

    def end_error(self, what: str, exc: BaseException) -> None:
        """A writer or table that failed: reported in the summary, exit status non-zero."""
        self.end_errors.append(f"could not write {what}: {type(exc).__name__}: {exc}")
        session = getattr(self, "_session", None)
        if session is not None and session.exitstatus in (pytest.ExitCode.OK,
                                                          pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _baseline_summary(self, terminalreporter, format_table) -> None:
        counts, rows = self.results.baseline_rows()
        terminalreporter.write_sep("=", "mlpval baseline comparison")
        terminalreporter.write_line(
            f"baseline {self.settings.compare}: " + ", ".join(
                f"{n} {what}" for what, n in counts.items()) + " (metrics unless noted)")
        if rows:
            for line in format_table(["potential", "dataset", "subset", "metric", "baseline",
                                      "now", "unit", "status"], rows[:40]):
                terminalreporter.write_line(line)
            if len(rows) > 40:
                terminalreporter.write_line(f"... and {len(rows) - 40} more (see the JSON)")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the end-of-run files, each on its own: one that fails (a full disk, a
        plotting error) is reported in the summary and makes the exit status non-zero
        (1 where it was 0), and the others are still written."""
        if is_xdist_worker(self.config):
            return
        self._session = session
        try:
            self.write_baselines()
        except Exception as exc:
            self.end_error("the baseline", exc)
        settings = self.settings
        if settings.plots_dir is not None and self.results:
            try:
                self.written += self.results.write_plots(settings.plots_dir,
                                                         settings.cost_dataset)
            except Exception as exc:
                self.end_error(f"the plots in {settings.plots_dir}", exc)
        if settings.report_dir is None and settings.json_path is None:
            return
        try:
            from pytest_mlpval.results import strict_document

            self.results.order_by_potential([p.name for p in settings.potentials])
            document = self.results.json_document()  # one document for report and file
            self.config.hook.pytest_mlpval_update_json(config=self.config, output=document)
            document = strict_document(document)  # e.g. NaN a hook added: null, listed
        except Exception as exc:
            self.end_error("the JSON document", exc)
            return
        if settings.report_dir is not None:
            from pytest_mlpval.report import write_report

            try:
                self.written += write_report(
                    self.results, settings.report_dir, document,
                    None if settings.compare is None else str(settings.compare))
            except Exception as exc:  # ReportError: the files it could write, written
                self.written += getattr(exc, "written", [])
                self.end_error(f"(all of) the report in {settings.report_dir}", exc)
        if settings.json_path is not None:
            from pytest_mlpval.fileio import write_json

            try:
                self.written.append(write_json(settings.json_path, document))
            except Exception as exc:
                self.end_error(f"the JSON file {settings.json_path}", exc)

    def write_baselines(self) -> None:
        """--mlpval-save-baseline: this run's metrics; --mlpval-regen-baseline: the
        compared baseline updated with them (entries of tests not run are kept)."""
        from pytest_mlpval.baseline import baseline_entries, write_baseline

        settings = self.settings
        if settings.save_baseline is None and not settings.regen_baseline:
            return
        meta = self.results.run_info()
        entries = baseline_entries(self.results.pairs())
        if settings.save_baseline is not None:
            self.written.append(write_baseline(settings.save_baseline, entries, meta))
        if settings.regen_baseline and settings.compare is not None:
            merged = {**settings.baseline["entries"], **entries}
            self.written.append(write_baseline(settings.compare, merged, meta))
