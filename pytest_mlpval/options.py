"""Command-line options and ini keys of the plugin, and their resolution into Settings.

Precedence: command line > ini file > default. Relative paths on the command line are
resolved against the invocation directory, those in an ini file against the ini file's
directory (pytest's ``paths`` semantics).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

POTENTIAL_OPTION = "--mlpval-potential"
POTENTIAL_ALIAS = "--potential"
DATASET_OPTION = "--mlpval-dataset"
JSON_OPTION = "--mlpval-json"
NO_CACHE_OPTION = "--mlpval-no-cache"
REQUIRE_OPTION = "--mlpval-require-potential"
REQUIRE_DATASET_OPTION = "--mlpval-require-dataset"
DETAILS_OPTION = "--mlpval-details"
SPECIES_OPTION = "--mlpval-species"
PRECISION_OPTION = "--mlpval-precision"
PLOTS_OPTION = "--mlpval-plots"
COST_DATASET_OPTION = "--mlpval-cost-dataset"
SAVE_BASELINE_OPTION = "--mlpval-save-baseline"
COMPARE_OPTION = "--mlpval-compare"
REGEN_OPTION = "--mlpval-regen-baseline"
TOLERANCE_OPTION = "--mlpval-compare-tolerance"
REPORT_OPTION = "--mlpval-report"
WORKERS_OPTION = "--mlpval-workers"
SCHEDULER_OPTION = "--mlpval-dask-scheduler"
TIER_OPTION = "--mlpval-tier"
APPLICATION_OPTION = "--mlpval-application"
FIT_COMMAND_OPTION = "--mlpval-fit-command"
TRAINING_OPTION = "--mlpval-training-dataset"
THREADS_OPTION = "--mlpval-threads"
DEVICE_OPTION = "--mlpval-device"

POTENTIALS_INI = "mlpval_potentials"
DATASETS_INI = "mlpval_datasets"
CACHE_INI = "mlpval_cache"
REQUIRE_INI = "mlpval_require_potential"
REQUIRE_DATASET_INI = "mlpval_require_dataset"
SPECIES_INI = "mlpval_species"
PRECISION_INI = "mlpval_precision"
COST_DATASET_INI = "mlpval_cost_dataset"
PRECISIONS = ("float64", "float32")
COMPARE_INI = "mlpval_compare"
TOLERANCES_INI = "mlpval_compare_tolerances"
WORKERS_INI = "mlpval_workers"
SCHEDULER_INI = "mlpval_dask_scheduler"
TIER_INI = "mlpval_tier"
APPLICATION_INI = "mlpval_application"
FIT_COMMAND_INI = "mlpval_fit_command"
TRAINING_INI = "mlpval_training_dataset"
THREADS_INI = "mlpval_threads"
DEVICE_INI = "mlpval_device"
DEVICES = ("cpu", "cuda")
#: environment variable for the Dask scheduler (between the command line and the ini key)
SCHEDULER_ENV = "MLPVAL_DASK_SCHEDULER"
TIERS = ("quick", "full")
#: where NAME (not a path) baselines live, under the rootdir
BASELINE_STORE = ".mlpval"


def add_options(addoption: Callable[..., Any], prefix: str = "mlpval-") -> None:
    """Register the options; ``prefix`` lets a standalone CLI reuse the definitions."""
    addoption(
        f"--{prefix}potential", POTENTIAL_ALIAS if prefix == "mlpval-" else "--candidate",
        action="append", dest="mlpval_potentials", default=None, metavar="[NAME=]SPEC",
        help="Candidate potential, repeatable (each parametrizes every validation test):\n"
             "a GAP .xml file, 'package.module:factory', a built-in ('sw', 'tersoff') or\n"
             "'LOADER:ARG' of a registered loader. NAME= sets the test id. "
             f"Overrides ini {POTENTIALS_INI}. Default: None",
    )
    addoption(
        f"--{prefix}dataset", action="append", dest="mlpval_datasets", default=None,
        metavar="NAME=PATH[,LABEL=KEY...]",
        help="Reference dataset, repeatable, e.g. 'test=test.xyz,energy=dft_energy,\n"
             "forces=dft_forces,stress=dft_stress' (labels: energy, forces, stress,\n"
             f"virial, config_type; also index=, format=). Overrides ini {DATASETS_INI}. "
             "Default: None",
    )
    addoption(
        f"--{prefix}json", dest="mlpval_json", default=None, metavar="PATH",
        help="Write every recorded metric, potential and dataset identity and threshold\n"
             "as JSON (schema 'pytest-mlpval/1'). Default: None",
    )
    addoption(
        f"--{prefix}no-cache", dest="mlpval_no_cache", action="store_true", default=None,
        help="Do not read or write cached predictions (keyed by model and dataset sha256)\n"
             f"in pytest's cache directory. Ini: {CACHE_INI}. Default: False",
    )
    addoption(
        f"--{prefix}require-potential", dest="mlpval_require_potential",
        action="store_true", default=None,
        help="Make 'no potential given' a usage error instead of a skip (CI gating).\n"
             f"Ini: {REQUIRE_INI}. Default: False",
    )
    addoption(
        f"--{prefix}require-dataset", dest="mlpval_require_dataset",
        action="store_true", default=None,
        help="A validation test that finds no dataset (none configured, no training set)\n"
             f"fails instead of being skipped (CI gating). Ini: {REQUIRE_DATASET_INI}.\n"
             "Default: False",
    )
    addoption(
        f"--{prefix}details", dest="mlpval_details", action="store_true", default=False,
        help="Add per-config_type rows to the mlpval summary table. Default: False",
    )
    addoption(
        f"--{prefix}species", dest="mlpval_species", default=None, metavar="SYMBOLS",
        help="Comma-separated chemical symbols for generated structures (physics checks,\n"
             f"cost). Ini: {SPECIES_INI}. Default: the potential's own (built-ins, GAP),\n"
             "else those of the configured datasets",
    )
    addoption(
        f"--{prefix}precision", dest="mlpval_precision", default=None,
        choices=PRECISIONS, metavar="{float64,float32}",
        help="Tolerances of the physics checks: float64 or float32 models.\n"
             f"Ini: {PRECISION_INI}. Default: each candidate's own (its loader's, else\n"
             "detected from one evaluation), float64 if unknown",
    )
    addoption(
        f"--{prefix}threads", dest="mlpval_threads", default=None, type=_threads,
        metavar="N",
        help="Threads of BLAS, OpenMP and torch in every process of the run (this one,\n"
             f"xdist workers, campaign workers). Ini: {THREADS_INI}. Default: 1 per process\n"
             "under xdist or with campaign workers, else the cores not busy (load average)",
    )
    addoption(
        f"--{prefix}device", dest="mlpval_device", default=None, choices=DEVICES,
        metavar="{cpu,cuda}",
        help="Device of the candidates whose loaders take one (torch models).\n"
             f"Ini: {DEVICE_INI}. Default: the loader's",
    )
    addoption(
        f"--{prefix}plots", dest="mlpval_plots", default=None, metavar="DIR",
        help="Write the cost-scaling and accuracy-cost plots (PNG, matplotlib) to DIR.\n"
             "Default: None",
    )
    addoption(
        f"--{prefix}save-baseline", dest="mlpval_save_baseline", default=None,
        metavar="PATH|NAME",
        help="Save every recorded metric of this run as a baseline: a .json PATH, or a\n"
             f"NAME stored as {BASELINE_STORE}/NAME.json under the rootdir. Default: None",
    )
    addoption(
        f"--{prefix}compare", dest="mlpval_compare", default=None, metavar="PATH|NAME",
        help="Compare with a baseline: a metric worse by more than its tolerance fails the\n"
             f"test that measured it. Ini: {COMPARE_INI}. Default: None",
    )
    addoption(
        f"--{prefix}compare-tolerance", dest="mlpval_compare_tolerances", action="append",
        default=None, metavar="METRIC:AMOUNT",
        help="Tolerance of a comparison, repeatable: force_rmse:5%%, energy_rmse:0.5meV,\n"
             f"stress_rmse:0.1GPa, *:2%%. Ini: {TOLERANCES_INI}. Default: *:1%%",
    )
    addoption(
        f"--{prefix}regen-baseline", dest="mlpval_regen_baseline", action="store_true",
        default=False,
        help="Rewrite the compared baseline with this run's values; tests whose values\n"
             "changed beyond tolerance (or are new) fail once, like pytest-regressions'\n"
             "--force-regen. Default: False",
    )
    addoption(
        f"--{prefix}report", dest="mlpval_report", default=None, metavar="DIR",
        help="Write the validation report to DIR: index.html (plots embedded), mlpval.json\n"
             "and validation_card.md. Needs matplotlib. Default: None",
    )
    addoption(
        f"--{prefix}cost-dataset", dest="mlpval_cost_dataset", default=None, metavar="NAME",
        help="Dataset whose force RMSE is the accuracy of the accuracy-cost plot.\n"
             f"Ini: {COST_DATASET_INI}. Default: the first dataset\nthat every plotted candidate has force errors on",
    )
    addoption(
        f"--{prefix}workers", dest="mlpval_workers", default=None, type=_workers,
        metavar="N",
        help="Local worker processes for campaigns (RSS, MD, properties); 0 runs them in\n"
             f"the test's process. Ini: {WORKERS_INI}. Default: 0",
    )
    addoption(
        f"--{prefix}dask-scheduler", dest="mlpval_dask_scheduler", default=None,
        metavar="ADDRESS",
        help="Run campaigns on a Dask distributed cluster (e.g. tcp://10.0.0.5:8786)\n"
             f"instead of local processes. Env: {SCHEDULER_ENV}; ini: {SCHEDULER_INI}.\n"
             "Default: None",
    )
    addoption(
        f"--{prefix}tier", dest="mlpval_tier", default=None, choices=TIERS,
        metavar="{quick,full}",
        help="Size of campaigns: 'quick' (minutes on a laptop) or 'full' (paper scale);\n"
             f"tests read it as mlpval.tier. Ini: {TIER_INI}. Default: quick",
    )
    addoption(
        f"--{prefix}application", dest="mlpval_application", action="append", default=None,
        metavar="PATH",
        help="Structures of your application (extxyz or any ASE-readable file), repeatable:\n"
             "the applicability check reports how much of them lies outside the training\n"
             f"domain. Ini: {APPLICATION_INI}. Default: None",
    )
    addoption(
        f"--{prefix}fit-command", dest="mlpval_fit_command", default=None, metavar="TEMPLATE",
        help="Fitting command for k-fold cross-validation, with placeholders {train},\n"
             "{model}, {workdir}, {fold}, {seed}, e.g. 'gap_fit at_file={train}\n"
             f"gp_file={{model}} ...'. Ini: {FIT_COMMAND_INI}. Default: None",
    )
    addoption(
        f"--{prefix}training-dataset", dest="mlpval_training_dataset", default=None,
        metavar="NAME",
        help="The configured dataset the candidate was trained on (cross-validation,\n"
             f"leakage, applicability). Ini: {TRAINING_INI}. Default: 'train' if configured",
    )


def _threads(text: str) -> int:
    import argparse

    value = _workers(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of threads must be >= 1")
    return value


def _workers(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of workers must be >= 0")
    return value


def add_ini(parser: pytest.Parser) -> None:
    parser.addini(POTENTIALS_INI, type="linelist", default=[],
                  help="Candidate potentials, one [NAME=]SPEC per line (paths relative to "
                       "the ini file)")
    parser.addini(DATASETS_INI, type="linelist", default=[],
                  help="Reference datasets, one NAME=PATH[,LABEL=KEY...] per line (paths "
                       "relative to the ini file)")
    parser.addini(CACHE_INI, type="bool", default=True,
                  help="Cache predictions of models with a content hash (default true)")
    parser.addini(REQUIRE_INI, type="bool", default=False,
                  help="Fail with a usage error when no potential is given (default false)")
    parser.addini(REQUIRE_DATASET_INI, type="bool", default=False,
                  help="Fail a validation test that finds no dataset instead of skipping "
                       "it (default false)")
    parser.addini(SPECIES_INI, type="args", default=[],
                  help="Chemical symbols for generated structures (physics checks, cost)")
    parser.addini(PRECISION_INI, default="",
                  help="Tolerances of the physics checks: float64 or float32 (default: "
                       "each candidate's own)")
    parser.addini(THREADS_INI, default="",
                  help="BLAS/OpenMP/torch threads per process (default: 1 under xdist or "
                       "with campaign workers, else the cores not busy)")
    parser.addini(DEVICE_INI, default="", help="Device of torch candidates: cpu or cuda")
    parser.addini(COST_DATASET_INI, default="",
                  help="Dataset whose force RMSE is plotted against cost")
    parser.addini(COMPARE_INI, default="",
                  help="Baseline to compare with (PATH relative to the ini file, or NAME)")
    parser.addini(TOLERANCES_INI, type="linelist", default=[],
                  help="Comparison tolerances, one METRIC:AMOUNT per line")
    parser.addini(WORKERS_INI, default="0",
                  help="Local worker processes for campaigns (default 0: in-process)")
    parser.addini(SCHEDULER_INI, default="",
                  help="Dask scheduler address for campaigns (default: none)")
    parser.addini(TIER_INI, default="quick", help="Campaign size: quick (default) or full")
    parser.addini(APPLICATION_INI, type="paths", default=[],
                  help="Structures of your application, for the applicability check")
    parser.addini(FIT_COMMAND_INI, default="",
                  help="Fitting command template for k-fold cross-validation")
    parser.addini(TRAINING_INI, default="",
                  help="Name of the configured training dataset (default: 'train')")


@dataclass(frozen=True)
class PotentialEntry:
    """A configured potential: the raw spec, where relative paths start, its source."""

    raw: str
    base_dir: str
    source: str  # e.g. "--potential" or "ini mlpval_potentials"
    name: str
    sha256: str | None = None  # the model's content hash where the spec tells (known failures)


@dataclass(frozen=True)
class Settings:
    potentials: tuple[PotentialEntry, ...]
    datasets: tuple[Any, ...]  # DatasetSpec
    json_path: Path | None
    cache: bool
    require_potential: bool
    details: bool
    species: tuple[str, ...] = ()
    precision: str | None = None  # None: each candidate's own (detected)
    plots_dir: Path | None = None
    cost_dataset: str | None = None
    report_dir: Path | None = None
    save_baseline: Path | None = None
    compare: Path | None = None
    regen_baseline: bool = False
    tolerances: tuple[Any, ...] = ()  # baseline.Tolerance
    baseline: dict[str, Any] | None = None  # the loaded baseline document
    workers: int = 0
    scheduler: str | None = None
    tier: str = "quick"
    applications: tuple[Path, ...] = ()
    fit_command: str | None = None
    training_dataset: str | None = None
    require_dataset: bool = False
    threads: int | None = None  # None: default_threads() for the run
    device: str | None = None  # None: the loaders' default


def _ini_base(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath else config.rootpath


def resolve(config: pytest.Config) -> Settings:
    """Read and validate options and ini keys; raise ``pytest.UsageError`` naming the
    option (or ini key) and the value at fault."""
    from pytest_mlpval import potentials as pot

    cli_dir = config.invocation_params.dir
    raw_pots = config.getoption("mlpval_potentials")
    if raw_pots:
        pot_source, pot_base, pot_values = f"{POTENTIAL_ALIAS}/{POTENTIAL_OPTION}", cli_dir, raw_pots
    else:
        pot_source, pot_base = f"ini {POTENTIALS_INI}", _ini_base(config)
        pot_values = config.getini(POTENTIALS_INI)
    # Specs only a pytest_mlpval_load_potential hook knows cannot be checked before loading.
    hook_loaders = bool(config.pluginmanager.hook.pytest_mlpval_load_potential.get_hookimpls())
    entries = []
    for raw in pot_values:
        try:
            info = pot.parse_potential_spec(raw, pot_base).info
            name, sha256 = info.name, info.sha256
        except pot.PotentialSpecError as exc:
            if not hook_loaders or not exc.unknown:
                raise pytest.UsageError(f"{pot_source}={raw!r}: {exc}") from None
            name, sha256 = pot.default_name(raw), None
        entries.append(PotentialEntry(raw, str(pot_base), pot_source, name, sha256))
    _no_duplicates([e.name for e in entries], pot_source, "potential")

    raw_data = config.getoption("mlpval_datasets")
    if raw_data:
        data_source, data_base, data_values = DATASET_OPTION, cli_dir, raw_data
    else:
        data_source, data_base = f"ini {DATASETS_INI}", _ini_base(config)
        data_values = config.getini(DATASETS_INI)
    datasets = []
    if data_values:
        from pytest_mlpval.data import DatasetError, parse_dataset_spec

        for raw in data_values:
            try:
                spec = parse_dataset_spec(raw, data_base)
            except DatasetError as exc:
                raise pytest.UsageError(f"{data_source}: {exc}") from None
            if not Path(spec.path).is_file():
                raise pytest.UsageError(
                    f"{data_source}={raw!r}: dataset file not found: {spec.path}")
            datasets.append(spec)
        _no_duplicates([d.name for d in datasets], data_source, "dataset")

    json_path = config.getoption("mlpval_json")
    no_cache = config.getoption("mlpval_no_cache")
    require = config.getoption("mlpval_require_potential")
    species_raw = config.getoption("mlpval_species")
    if species_raw is not None:
        species, species_source = species_raw.replace(",", " ").split(), SPECIES_OPTION
    else:
        species, species_source = list(config.getini(SPECIES_INI)), f"ini {SPECIES_INI}"
    species = [s.strip(",") for s in species if s.strip(",")]
    from pytest_mlpval.units import is_chemical_symbol

    bad = [s for s in species if not is_chemical_symbol(s)]
    if bad:
        raise pytest.UsageError(f"{species_source}: not chemical symbols: {', '.join(bad)}")
    precision = config.getoption("mlpval_precision") or config.getini(PRECISION_INI) or None
    if precision is not None and precision not in PRECISIONS:
        raise pytest.UsageError(
            f"ini {PRECISION_INI}={precision!r}: expected one of {', '.join(PRECISIONS)}")
    plots = config.getoption("mlpval_plots")
    report = config.getoption("mlpval_report")
    for option, value in ((PLOTS_OPTION, plots), (REPORT_OPTION, report)):
        if value is not None:
            import importlib.util

            if importlib.util.find_spec("matplotlib") is None:
                raise pytest.UsageError(
                    f"{option}={value!r}: matplotlib is not installed "
                    "(pip install 'pytest-mlpval[plot]')")
    for option, value, directory in ((JSON_OPTION, json_path, False),
                                     (PLOTS_OPTION, plots, True), (REPORT_OPTION, report, True)):
        if value:
            check_output(option, value, cli_dir / value, directory)
    cost_dataset = config.getoption("mlpval_cost_dataset") or config.getini(COST_DATASET_INI)
    save_baseline, compare, tolerances, baseline = _baseline_settings(config, cli_dir)
    workers, scheduler, tier = _campaign_settings(config)
    applications, fit_command, training = _domain_settings(config, cli_dir, datasets)
    return Settings(
        potentials=tuple(entries),
        datasets=tuple(datasets),
        json_path=(cli_dir / json_path) if json_path else None,
        cache=not no_cache if no_cache is not None else bool(config.getini(CACHE_INI)),
        require_potential=bool(require if require is not None else config.getini(REQUIRE_INI)),
        details=bool(config.getoption("mlpval_details")),
        species=tuple(species),
        precision=precision,
        plots_dir=(cli_dir / plots) if plots else None,
        cost_dataset=cost_dataset or None,
        report_dir=(cli_dir / report) if report else None,
        save_baseline=save_baseline,
        compare=compare,
        regen_baseline=bool(config.getoption("mlpval_regen_baseline")),
        tolerances=tolerances,
        baseline=baseline,
        workers=workers,
        scheduler=scheduler,
        tier=tier,
        applications=applications,
        fit_command=fit_command,
        training_dataset=training,
        require_dataset=_flag(config, "mlpval_require_dataset", REQUIRE_DATASET_INI),
        threads=_ini_choice(config, "mlpval_threads", THREADS_INI, None),
        device=_ini_choice(config, "mlpval_device", DEVICE_INI, DEVICES),
    )


def _ini_choice(config: pytest.Config, dest: str, ini: str,
                choices: tuple[str, ...] | None) -> Any:
    """The option, else the ini key (one of ``choices``; a whole number >= 1 without
    them), else None."""
    value = config.getoption(dest)
    if value is not None:
        return value
    raw = str(config.getini(ini)).strip()
    if not raw:
        return None
    if choices is None:
        if not raw.isdigit() or int(raw) < 1:
            raise pytest.UsageError(f"ini {ini}={raw!r}: expected a whole number >= 1")
        return int(raw)
    if raw not in choices:
        raise pytest.UsageError(f"ini {ini}={raw!r}: expected one of {', '.join(choices)}")
    return raw


def _flag(config: pytest.Config, dest: str, ini: str) -> bool:
    value = config.getoption(dest)
    return bool(value if value is not None else config.getini(ini))


def output_problem(path: Path, directory: bool) -> str | None:
    """Why a file (or, with ``directory``, a folder) cannot be written at ``path`` at the
    end of the run; None if it can. Creates nothing but a probe file, removed at once."""
    import tempfile

    if path.exists():
        if directory and not path.is_dir():
            return f"{path} exists and is not a folder"
        if not directory and path.is_dir():
            return f"{path} is a folder, not a file"
        folder = path if directory else path.parent
    else:
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            return f"cannot create {path}: {folder} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mlpval-probe-")
    except OSError as exc:
        return f"cannot create {path}: cannot write in {folder} ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def check_output(option: str, value: str, path: Path, directory: bool) -> None:
    """A usage error now, naming the option and the path, rather than a traceback after
    the run when the file cannot be written."""
    problem = output_problem(path, directory)
    if problem is not None:
        raise pytest.UsageError(f"{option}={value!r}: {problem}")


def _domain_settings(config: pytest.Config, cli_dir: Path, datasets: list[Any]
                     ) -> tuple[tuple[Path, ...], str | None, str | None]:
    raw = config.getoption("mlpval_application")
    if raw:
        paths, source = [cli_dir / p for p in raw], APPLICATION_OPTION
    else:
        paths, source = [Path(p) for p in config.getini(APPLICATION_INI)], f"ini {APPLICATION_INI}"
    for path in paths:
        if not path.is_file():
            raise pytest.UsageError(f"{source}: file not found: {path}")
    fit_command = config.getoption("mlpval_fit_command") or config.getini(FIT_COMMAND_INI) or None
    training = config.getoption("mlpval_training_dataset") or config.getini(TRAINING_INI) or None
    names = [d.name for d in datasets]
    if training is not None and training not in names:
        raise pytest.UsageError(f"{TRAINING_OPTION}={training!r}: no configured dataset of "
                                f"that name (configured: {', '.join(names) or 'none'})")
    if training is None and "train" in names:
        training = "train"
    return tuple(paths), fit_command, training


def _campaign_settings(config: pytest.Config) -> tuple[int, str | None, str]:
    workers = config.getoption("mlpval_workers")
    if workers is None:
        raw = str(config.getini(WORKERS_INI)).strip() or "0"
        if not raw.isdigit():
            raise pytest.UsageError(f"ini {WORKERS_INI}={raw!r}: expected a whole number >= 0")
        workers = int(raw)
    scheduler = (config.getoption("mlpval_dask_scheduler")
                 or os.environ.get(SCHEDULER_ENV) or config.getini(SCHEDULER_INI) or None)
    tier = config.getoption("mlpval_tier") or config.getini(TIER_INI) or "quick"
    if tier not in TIERS:
        raise pytest.UsageError(f"ini {TIER_INI}={tier!r}: expected one of {', '.join(TIERS)}")
    return workers, scheduler, tier


def baseline_path(value: str, base: Path, rootdir: Path) -> Path:
    """A PATH (has a separator or ends in .json) relative to ``base``, else a NAME in the
    rootdir's store."""
    if "/" in value or os.sep in value or value.endswith(".json"):
        return base / value
    return rootdir / BASELINE_STORE / f"{value}.json"


def _baseline_settings(config: pytest.Config, cli_dir: Path):
    from pytest_mlpval import baseline as bl

    rootdir = config.rootpath
    save = config.getoption("mlpval_save_baseline")
    save_path = baseline_path(save, cli_dir, rootdir) if save else None
    if save_path is not None:
        check_output(SAVE_BASELINE_OPTION, save, save_path, directory=False)
        if save_path.is_file() and not bl.is_baseline_file(save_path):
            raise pytest.UsageError(
                f"{SAVE_BASELINE_OPTION}={save!r}: {save_path} exists and is not a "
                "pytest-mlpval baseline: not overwritten (choose another path, or delete it)")
    compare, source = config.getoption("mlpval_compare"), COMPARE_OPTION
    base = cli_dir
    if not compare and config.getini(COMPARE_INI):
        compare, source, base = config.getini(COMPARE_INI), f"ini {COMPARE_INI}", _ini_base(config)
    compare_path = baseline_path(compare, base, rootdir) if compare else None
    raw_tol = config.getoption("mlpval_compare_tolerances")
    tol_source = TOLERANCE_OPTION if raw_tol else f"ini {TOLERANCES_INI}"
    tolerances = []
    for text in raw_tol or config.getini(TOLERANCES_INI):
        try:
            tolerances.append(bl.parse_tolerance(text))
        except ValueError as exc:
            raise pytest.UsageError(f"{tol_source}: {exc}") from None
    if config.getoption("mlpval_regen_baseline") and compare_path is None:
        raise pytest.UsageError(f"{REGEN_OPTION} needs {COMPARE_OPTION}=PATH|NAME (the "
                                "baseline to rewrite)")
    document = None
    if compare_path is not None:
        try:
            document = bl.load_baseline(compare_path)
        except bl.BaselineError as exc:
            # regen creates a missing baseline and replaces one of another schema version
            if not (config.getoption("mlpval_regen_baseline") and (
                    not compare_path.exists() or isinstance(exc, bl.BaselineVersionError))):
                raise pytest.UsageError(f"{source}={compare!r}: {exc}") from None
            document = {"schema": bl.SCHEMA, "entries": {}}
        if config.getoption("mlpval_regen_baseline"):
            check_output(source, compare, compare_path, directory=False)
    return save_path, compare_path, tuple(tolerances), document


def _no_duplicates(names: list[str], source: str, what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise pytest.UsageError(
                f"{source}: two {what}s are named {name!r}; give one a name with NAME=...")
        seen.add(name)
