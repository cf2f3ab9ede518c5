"""MlpvalSession: per-run state (loaded potentials, datasets, predictions), collection of
metric records from test reports, the terminal summary and the JSON file.

Records travel on ``report.user_properties`` as ``("mlpval", [record, ...])``, so they
reach the xdist controller, which alone prints the summary and writes files.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import pytest

from .options import Settings

PROPERTY = "mlpval"
SCHEMA = "pytest-mlpval/1"


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class MlpvalSession:
    """Registered as a plugin in ``pytest_configure``; found through ``config.stash``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._potentials: dict[str, Any] = {}
        self._datasets: dict[Any, Any] = {}
        self._predictions: dict[tuple[str, Any], Any] = {}
        self._errors: dict[tuple[str, Any], Any] = {}
        self.tests: list[dict[str, Any]] = []  # controller: one entry per test with records

    # --- expensive objects, computed once per process -----------------------------------

    def potential(self, entry) -> Any:
        """The loaded :class:`~pytest_mlpval.potentials.Potential` of a configured entry.
        A loading error is kept and raised again for every test that needs it."""
        if entry.raw not in self._potentials:
            from .potentials import PotentialLoadError, PotentialSpecError, load_potential

            def hook(spec: str):
                return self.config.hook.pytest_mlpval_load_potential(config=self.config,
                                                                     spec=spec)

            try:
                self._potentials[entry.raw] = load_potential(entry.raw, entry.base_dir, hook)
            except (PotentialLoadError, PotentialSpecError) as exc:
                self._potentials[entry.raw] = PotentialLoadError(
                    f"{entry.source}={entry.raw!r}: {exc}")
        value = self._potentials[entry.raw]
        if isinstance(value, BaseException):
            raise value.with_traceback(None)  # a fresh traceback each time
        return value

    def dataset(self, spec) -> Any:
        if spec not in self._datasets:
            from .data import DatasetError, read_dataset

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

    def predictions(self, potential, reference) -> Any:
        key = (potential.name, reference.spec)
        if key not in self._predictions:
            from .evaluate import predict_cached, properties_for

            properties = properties_for(potential.calculator, reference)
            self._predictions[key] = predict_cached(
                potential.calculator, potential.info.sha256, reference, properties,
                self._cache_dir())
        return self._predictions[key]

    def errors(self, potential, reference) -> Any:
        key = (potential.name, reference.spec)
        if key not in self._errors:
            from .metrics import compute_errors

            self._errors[key] = compute_errors(reference,
                                               self.predictions(potential, reference))
        return self._errors[key]

    # --- collection of records (controller) ----------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if is_xdist_worker(self.config):
            return
        records = [v for k, v in report.user_properties if k == PROPERTY]
        if not records or (report.when != "call" and report.passed):
            return
        flat = [r for group in records for r in group]
        self.tests.append({"nodeid": report.nodeid, "outcome": report.outcome,
                           "when": report.when, "records": flat})

    def summary_rows(self) -> tuple[list[str], list[list[Any]]]:
        combos: dict[tuple[str, str, str], dict[str, Any]] = {}
        for test in self.tests:
            for rec in test["records"]:
                if rec.get("kind", "errors") != "errors":
                    continue
                key = (rec["potential"]["name"], rec["dataset"]["name"], rec["subset"])
                entry = combos.setdefault(key, {"metrics": rec["metrics"], "n": rec["n_structures"],
                                                "passed": 0, "failed": 0})
                for t in rec["thresholds"]:
                    entry["passed" if t["passed"] else "failed"] += 1
        headers = ["potential", "dataset", "subset", "n", "E RMSE", "E-offset RMSE",
                   "E MAE", "F RMSE", "F MAE", "F max", "S RMSE", "limits"]
        rows = []
        for (pot, data, subset), entry in sorted(combos.items(),
                                                 key=lambda kv: (kv[0][1], kv[0][2] != "all",
                                                                 kv[0][2], kv[0][0])):
            if subset != "all" and not self.settings.details:
                continue
            m = entry["metrics"]

            def meV(name):
                value = m.get(name)
                return math.nan if value is None else 1000.0 * value

            def raw(name):
                value = m.get(name)
                return math.nan if value is None else value

            limits = "-"
            if entry["passed"] or entry["failed"]:
                limits = f"{entry['passed']} ok" + (f", {entry['failed']} FAIL"
                                                    if entry["failed"] else "")
            rows.append([pot, data, subset, entry["n"], meV("energy_rmse"),
                         meV("energy_offset_removed_rmse"), meV("energy_mae"),
                         raw("force_rmse"), raw("force_mae"), raw("force_max"),
                         raw("stress_rmse"), limits])
        return headers, rows

    def records_of(self, kind: str) -> list[dict[str, Any]]:
        return [rec for test in self.tests for rec in test["records"]
                if rec.get("kind", "errors") == kind]

    def check_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Worst value of each physics check per potential."""
        worst: dict[tuple[str, str], dict[str, Any]] = {}
        for rec in self.records_of("checks"):
            for t in rec["thresholds"]:
                key = (rec["potential"]["name"], t["metric"])
                old = worst.get(key)
                if old is None or not t["passed"] or (old["passed"] and t["value"] > old["value"]):
                    worst[key] = {**t, "n": rec["n_structures"] + (old or {}).get("n", 0)}
        rows = [[pot, check, t["n"], t["value"], t["limit"], t["unit"],
                 "ok" if t["passed"] else "FAIL"]
                for (pot, check), t in sorted(worst.items())]
        return ["potential", "check", "structures", "worst", "tolerance", "unit", "status"], rows

    def cost_rows(self) -> tuple[list[str], list[list[Any]]]:
        from .cost import scaling_exponent

        by_pot: dict[str, list[tuple[int, float]]] = {}
        for rec in self.records_of("cost"):
            m = rec["metrics"]
            by_pot.setdefault(rec["potential"]["name"], []).append(
                (int(m["n_atoms"]), float(m["time_per_call_s"])))
        rows = []
        for pot, points in sorted(by_pot.items()):
            points.sort()
            exponent = scaling_exponent([n for n, _ in points], [t for _, t in points])
            for n, t in points:
                rows.append([pot, n, t, 1e6 * t / n, exponent])
        return ["potential", "atoms", "s/call", "µs/atom/call", "scaling exponent"], rows

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if is_xdist_worker(self.config) or not self.tests:
            return
        from .assertions import format_table

        headers, rows = self.summary_rows()
        if rows:
            terminalreporter.write_sep("=", "mlpval summary")
            terminalreporter.write_line("energies in meV/atom, forces in eV/Å (Cartesian "
                                        "components), stresses in GPa; E-offset: mean "
                                        "energy offset removed")
            for line in format_table(headers, rows):
                terminalreporter.write_line(line)
        for title, note, (headers, rows) in (
            ("mlpval physics checks", "worst value over the structures tried",
             self.check_rows()),
            ("mlpval cost", "median wall time of an energy+forces call; exponent of "
             "time ~ N^x (1 = linear)", self.cost_rows()),
        ):
            if rows:
                terminalreporter.write_sep("=", title)
                terminalreporter.write_line(note)
                for line in format_table(headers, rows):
                    terminalreporter.write_line(line)
        if self.settings.plots_dir is not None:
            for path in self.write_plots():
                terminalreporter.write_line(f"mlpval: wrote {path}")
        if self.settings.json_path is not None:
            terminalreporter.write_line(f"mlpval: wrote {self.settings.json_path}")

    def write_plots(self) -> list[Path]:
        """Cost scaling and accuracy-cost plots (matplotlib, imported here only)."""
        from . import plots

        out = Path(self.settings.plots_dir)
        written = []
        _, cost = self.cost_rows()
        if cost:
            written.append(plots.cost_scaling(cost, out / "cost_scaling.png"))
            accuracy = self.accuracy_cost_points(cost)
            if accuracy:
                written.append(plots.accuracy_cost(accuracy, out / "accuracy_cost.png"))
        return written

    def accuracy_cost_points(self, cost_rows) -> list[tuple[str, float, float, str]]:
        """(potential, µs/atom/call at the largest size, force RMSE, dataset) per potential
        that has both; the dataset is --mlpval-cost-dataset or the first with forces."""
        largest: dict[str, tuple[int, float]] = {}
        for pot, n, _, per_atom, _ in cost_rows:
            if pot not in largest or n > largest[pot][0]:
                largest[pot] = (n, per_atom)
        wanted = self.settings.cost_dataset
        points = []
        for pot, (_, per_atom) in sorted(largest.items()):
            for rec in self.records_of("errors"):
                if (rec["potential"]["name"] == pot and rec["subset"] == "all"
                        and rec["metrics"].get("force_rmse") is not None
                        and (wanted is None or rec["dataset"]["name"] == wanted)):
                    points.append((pot, per_atom, rec["metrics"]["force_rmse"],
                                   rec["dataset"]["name"]))
                    break
        return points

    # --- JSON ----------------------------------------------------------------------------

    def json_document(self) -> dict[str, Any]:
        from . import __version__

        potentials: dict[str, Any] = {}
        datasets: dict[str, Any] = {}
        tests = []
        for test in self.tests:
            entry = {"nodeid": test["nodeid"], "outcome": test["outcome"], "records": []}
            for rec in test["records"]:
                potentials.setdefault(rec["potential"]["name"], rec["potential"])
                if rec.get("kind", "errors") == "errors":
                    datasets.setdefault(rec["dataset"]["name"], rec["dataset"])
                entry["records"].append({
                    "kind": rec.get("kind", "errors"),
                    "potential": rec["potential"]["name"],
                    "dataset": rec["dataset"]["name"],
                    "subset": rec["subset"],
                    "n_structures": rec["n_structures"],
                    "n_atoms": rec["n_atoms"],
                    "metrics": {name: {"value": _finite(value), "unit": rec["units"][name]}
                                for name, value in rec["metrics"].items()},
                    "thresholds": [{**t, "value": _finite(t["value"])}
                                   for t in rec["thresholds"]],
                })
            tests.append(entry)
        return {
            "schema": SCHEMA,
            "version": __version__,
            "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "machine_info": machine_info(),
            "potentials": potentials,
            "datasets": datasets,
            "tests": tests,
        }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.settings.json_path
        if path is None or is_xdist_worker(self.config):
            return
        output = self.json_document()
        self.config.hook.pytest_mlpval_update_json(config=self.config, output=output)
        write_json_atomic(path, output)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("pytest", "ase", "numpy", "dscribe", "matscipy", "quippy-ase"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"node": platform.node(), "machine": platform.machine(),
            "python": sys.version.split()[0], "system": platform.system(),
            "cpu_count": os.cpu_count(), "packages": packages}


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    from .fileio import write_json

    write_json(path, document)
