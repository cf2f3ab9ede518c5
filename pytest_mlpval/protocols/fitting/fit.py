"""Fitting models with the user's own fitting code, for cross-validation and learning curves.

Plain library (no pytest).

A *fitter* is given either as

- a **command template** (a string, split with :func:`shlex.split`, or a list of
  arguments), run without a shell in a fresh work directory per fit, with the
  placeholders ``{train}`` (extxyz file of the training structures, written with the
  dataset's own label keys), ``{model}`` (where the model must be written, default name
  ``model.xml``), ``{workdir}``, ``{fold}`` and ``{seed}``. Other braces are left alone
  (``gap={distance_2b ...}`` passes through); ``{{`` and ``}}`` are literal braces next to a
  placeholder name. Example::

      gap_fit at_file={train} gp_file={model} 'gap={soap ...}' 'default_sigma={0.003 0.08 0.05 0}'

  (a string is split as a shell would, so quote arguments with spaces, or give a list).
  The executable is looked up on ``PATH`` and then beside the running Python (a virtual
  environment's ``bin``). A non-zero exit, a time-out or a fit that writes no model is a
  failed fit (:class:`FitError`) with the tail of its stderr and stdout.
- a **Python callable** ``fit(train_frames, workdir) -> spec``, given the labelled training
  structures (ASE Atoms, labels under the dataset's keys) and a fresh directory. It may also
  take ``seed=`` and ``fold=`` keywords. It returns a potential spec (a model path,
  relative paths resolved in ``workdir``, or any spec of
  :func:`~pytest_mlpval.potentials.load_potential`), a loaded ``Potential`` or an ASE
  calculator.

Fitted models are loaded through :func:`~pytest_mlpval.potentials.load_potential`, the same
loaders as ``--potential``. One fit and the predictions of its model on a held-out set form
one campaign task (:func:`fit_and_predict`), so that folds run through
:func:`~pytest_mlpval.campaign.run_campaign`: in this process, in local processes or on Dask,
cached on disk.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

from pytest_mlpval.campaign import run_campaign
from pytest_mlpval.data import readonly_array
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.evaluate import Predictions, predict, properties_for
from pytest_mlpval.potentials import Potential, PotentialInfo, is_calculator, load_potential
from pytest_mlpval.protocols.base import CampaignOptions, Settings, cache_parameters

__all__ = ["FitError", "FitSpecError", "FitCommand", "FitCallable", "as_fitter",
           "fit_and_predict", "run_fits", "predictions_from", "FitIdentity",
           "FitCampaignSource", "NoCalculator", "fit_source", "check_sendable",
           "PLACEHOLDERS", "TASK_VERSION"]

#: placeholders of a fit command template
PLACEHOLDERS = ("train", "model", "workdir", "fold", "seed")
#: bump when the meaning of a cached fit-and-predict task changes
TASK_VERSION = 1
#: lines of a failed fit's stderr (and stdout) quoted in its error
TAIL_LINES = 15

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)\}")


class FitSpecError(MlpvalError, ValueError):
    """A fitter that cannot be used: a bad template, an executable that does not exist,
    a callable that cannot be sent to worker processes."""


class FitError(MlpvalError, RuntimeError):
    """One fit failed: the command exited non-zero, timed out or wrote no model, or the
    callable raised or returned no usable model."""


# -- fitters ---------------------------------------------------------------------------

def _resolve_executable(name: str) -> str | None:
    if os.sep in name or (os.altsep and os.altsep in name):
        path = Path(name)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    kept = [line.rstrip() for line in text.strip().splitlines()[-lines:]]
    return "\n".join(kept)


@dataclass(frozen=True)
class FitCommand(Settings):
    """A fit command template (see the module docstring): the settings of a fitting
    recipe given as a command.

    Attributes
    ----------
    argv : tuple of str
        The template split into arguments.
    model_name : str
        File name of the model in the work directory (``{model}``); its extension picks
        the loader (``.xml``: GAP).
    timeout_s : float or None
        Wall-clock limit of one fit in seconds.
    env : tuple of (str, str)
        Extra environment variables (e.g. ``OMP_NUM_THREADS``); not part of the cache key.
    """

    argv: tuple[str, ...]
    model_name: str = "model.xml"
    timeout_s: float | None = None
    env: tuple[tuple[str, str], ...] = ()

    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0].strip():
            raise FitSpecError("empty fit command")
        used = set()
        for arg in self.argv:
            for match in _PLACEHOLDER.finditer(arg):
                if match.group(1) is None:
                    continue
                if match.group(1) not in PLACEHOLDERS:
                    raise FitSpecError(
                        f"unknown placeholder {{{match.group(1)}}} in fit command argument "
                        f"{arg!r}; known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)} "
                        "(write {{ and }} for literal braces around a name)")
                used.add(match.group(1))
        if not used & {"train", "workdir"}:
            raise FitSpecError(f"fit command {shlex.join(self.argv)!r} has neither {{train}} "
                               "nor {workdir}: it cannot find the training data")
        if not used & {"model", "workdir"}:
            raise FitSpecError(f"fit command {shlex.join(self.argv)!r} has neither {{model}} "
                               f"nor {{workdir}}: say where it writes the model")
        if not self.model_name or "/" in self.model_name:
            raise FitSpecError(f"model_name must be a file name, got {self.model_name!r}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise FitSpecError(f"timeout_s must be > 0, got {self.timeout_s}")

    @property
    def executable(self) -> str:
        return self.argv[0]

    def check(self) -> str:
        """The executable's path; :class:`FitSpecError` naming it if it is not found."""
        found = _resolve_executable(self.executable)
        if found is None:
            raise FitSpecError(
                f"fit command executable {self.executable!r} not found (looked on PATH and "
                f"in {Path(sys.executable).parent})")
        return found

    def identity(self) -> dict[str, Any]:
        return {"kind": "command", "argv": list(self.argv), "model_name": self.model_name}

    def describe(self) -> str:
        return shlex.join(self.argv)

    def render(self, values: Mapping[str, Any]) -> list[str]:
        def one(arg: str) -> str:
            def sub(match: re.Match) -> str:
                token = match.group(0)
                if token in ("{{", "}}"):
                    return token[0]
                return str(values[match.group(1)])
            return _PLACEHOLDER.sub(sub, arg)

        return [one(arg) for arg in self.argv]

    def run(self, frames: Sequence[Any], workdir: Path, fold: int, seed: int
            ) -> tuple[str, str]:
        """Fit in ``workdir``; the model's path and the tail of the fit's output."""
        import ase.io

        train = workdir / "train.xyz"
        model = workdir / self.model_name
        ase.io.write(train, list(frames), format="extxyz")
        argv = self.render({"train": train, "model": model, "workdir": workdir,
                            "fold": fold, "seed": seed})
        executable = _resolve_executable(argv[0])
        if executable is None:
            raise FitError(f"fit command executable {argv[0]!r} not found on this worker")
        env = {**os.environ, **dict(self.env)}
        stdout_path, stderr_path = workdir / "fit.stdout", workdir / "fit.stderr"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            try:
                proc = subprocess.run([executable, *argv[1:]], cwd=workdir, env=env,
                                      stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                      timeout=self.timeout_s, check=False)
            except subprocess.TimeoutExpired:
                proc = None
        stdout = stdout_path.read_text(errors="replace")
        stderr = stderr_path.read_text(errors="replace")
        output = _output_tail(stdout, stderr)
        if proc is None:
            raise FitError(f"fit {fold} timed out after {self.timeout_s:g} s\n{output}")
        if proc.returncode != 0:
            raise FitError(f"fit {fold} exited with status {proc.returncode}\n{output}")
        if not model.is_file():
            raise FitError(f"fit {fold} exited 0 but wrote no model (expected {model})"
                           f"\n{output}")
        return str(model), output


def _output_tail(stdout: str, stderr: str) -> str:
    parts = []
    if stderr.strip():
        parts.append("stderr (last lines):\n" + _tail(stderr))
    if stdout.strip():
        parts.append("stdout (last lines):\n" + _tail(stdout, 5))
    return "\n".join(parts) or "(no output)"


@dataclass(frozen=True)
class FitCallable:
    """A Python fitting function ``fit(train_frames, workdir[, seed=, fold=]) -> spec``."""

    function: Callable[..., Any]

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise FitSpecError(f"fit must be a command or a callable, got "
                               f"{type(self.function).__name__} {self.function!r:.60}")

    @property
    def name(self) -> str:
        fn = getattr(self.function, "func", self.function)  # functools.partial
        qualname = getattr(fn, "__qualname__", type(fn).__qualname__)
        return f"{getattr(fn, '__module__', '?')}.{qualname}"

    def identity(self) -> dict[str, Any]:
        """The qualified name and, where Python can read it, the digest of the source:
        an edited fitting function gets a new cache key."""
        fn = getattr(self.function, "func", self.function)
        try:
            source = inspect.getsource(fn if inspect.isroutine(fn) else type(fn))
            source_sha = hashlib.sha256(source.encode()).hexdigest()
        except (OSError, TypeError):
            source_sha = None
        partial_args = None
        if fn is not self.function:
            partial_args = repr((self.function.args, sorted(self.function.keywords.items())))
        return {"kind": "callable", "name": self.name, "source_sha256": source_sha,
                "partial": partial_args}

    def describe(self) -> str:
        return f"{self.name}(train_frames, workdir)"

    def check(self) -> None:
        return None

    def run(self, frames: Sequence[Any], workdir: Path, fold: int, seed: int
            ) -> tuple[Any, str]:
        kwargs = {}
        try:
            params = inspect.signature(self.function).parameters
        except (TypeError, ValueError):
            params = {}
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key, value in (("seed", seed), ("fold", fold)):
            if var_kw or key in params:
                kwargs[key] = value
        try:
            spec = self.function(list(frames), workdir, **kwargs)
        except Exception as exc:
            raise FitError(f"fit function {self.name} raised {type(exc).__name__}: {exc}"
                           ) from exc
        if spec is None:
            raise FitError(f"fit function {self.name} returned None (expected a potential "
                           "spec, a model path, a Potential or an ASE calculator)")
        return spec, ""


def as_fitter(fit: Any, model_name: str = "model.xml", timeout_s: float | None = None,
              env: Mapping[str, str] | None = None) -> FitCommand | FitCallable:
    """A :class:`FitCommand` from a template string or argument list, or a
    :class:`FitCallable` from a callable."""
    if isinstance(fit, (FitCommand, FitCallable)):
        return fit
    if isinstance(fit, str):
        try:
            argv = shlex.split(fit)
        except ValueError as exc:
            raise FitSpecError(f"cannot split fit command {fit!r}: {exc}") from None
        return FitCommand(tuple(argv), model_name, timeout_s, tuple(sorted((env or {}).items())))
    if isinstance(fit, (list, tuple)) and all(isinstance(a, (str, os.PathLike)) for a in fit):
        return FitCommand(tuple(str(a) for a in fit), model_name, timeout_s,
                          tuple(sorted((env or {}).items())))
    return FitCallable(fit)


# -- the campaign task -----------------------------------------------------------------

def _load_model(spec: Any, workdir: Path, loader: Any = None):
    if isinstance(spec, Potential):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return load_potential(str(spec), base_dir=workdir, fallback=loader)
    if is_calculator(spec):
        return Potential(PotentialInfo(type(spec).__name__, "", "calculator"), spec)
    raise FitError(f"the fit returned {type(spec).__name__} {spec!r:.60}: not a potential "
                   "spec, a model path, a Potential or an ASE calculator")


def fit_and_predict(_calc: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    """Campaign task: fit on ``item["train"]`` (labelled frames) and predict
    ``item["test"]`` (a ReferenceSet). Returns JSON-serialisable predictions (eV, eV/Å,
    eV/Å³), fit and predict times (s), the model's spec and sha256. Raises
    :class:`FitError` for a failed fit."""
    fitter = item["fitter"]
    fold, seed = int(item["fold"]), int(item["seed"])
    work_root = item.get("workdir")
    if work_root is not None:
        workdir = Path(work_root)
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        return _fit_in(fitter, item, workdir, fold, seed)
    with tempfile.TemporaryDirectory(prefix=f"mlpval-fit-{fold}-") as tmp:
        return _fit_in(fitter, item, Path(tmp), fold, seed)


def _fit_in(fitter: FitCommand | FitCallable, item: Mapping[str, Any], workdir: Path,
            fold: int, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    spec, output = fitter.run(item["train"], workdir, fold, seed)
    fit_seconds = time.perf_counter() - start
    try:
        potential = _load_model(spec, workdir, item.get("loader"))
    except FitError:
        raise
    except Exception as exc:
        raise FitError(f"fit {fold}: loading the fitted model {spec!r:.200} failed: "
                       f"{type(exc).__name__}: {exc}") from exc
    test = item["test"]
    properties = properties_for(potential.calculator, test, item.get("properties")
                                or ("energy", "forces", "stress"))
    start = time.perf_counter()
    predictions = predict(potential.calculator, test, properties)
    predict_seconds = time.perf_counter() - start
    return {
        "energy": None if predictions.energy is None else predictions.energy.tolist(),
        "forces": None if predictions.forces is None
        else [f.tolist() for f in predictions.forces],
        "stress": None if predictions.stress is None else predictions.stress.tolist(),
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "model": str(spec) if isinstance(spec, (str, os.PathLike)) else potential.info.name,
        "model_sha256": potential.info.sha256,
        "n_train": len(item["train"]),
        "output_tail": output,
    }


@dataclass(frozen=True)
class FitIdentity:
    """Stands in for a candidate's ``PotentialInfo`` in a fitting campaign: the cache is
    keyed by ``sha256``, the digest of the data and the fitter."""

    name: str
    spec: str
    sha256: str
    loader: str = "fit"
    files: tuple[str, ...] = ()
    species: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "loader": self.loader,
                "sha256": self.sha256, "files": [], "species": []}


class NoCalculator:
    """Stands in for a calculator where a campaign has none (fitting campaigns): tasks
    ignore it."""

    def __repr__(self) -> str:
        return "NoCalculator()"


@dataclass(frozen=True)
class FitCampaignSource:
    """The ``potential`` argument of :func:`~pytest_mlpval.campaign.run_campaign` for
    fitting campaigns: no candidate calculator, only an identity."""

    info: FitIdentity
    calculator: Any = field(default_factory=NoCalculator)


def fit_source(protocol: str, data: Any, fitter: FitCommand | FitCallable,
               parameters: Mapping[str, Any]) -> FitCampaignSource:
    """The campaign identity of fitting ``data`` with ``fitter`` under ``parameters``."""
    text = json.dumps({"protocol": protocol, "data": data.sha256,
                       "fitter": fitter.identity(), "parameters": parameters},
                      sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return FitCampaignSource(FitIdentity(f"{protocol}:{data.name}", fitter.describe(),
                                         digest))


def check_sendable(fitter: FitCommand | FitCallable, *, here: bool, in_workers: bool
                   ) -> None:
    """Fail early for a fitter that cannot run: a missing executable (checked when the
    fits run on this machine, ``here``; a Dask worker has its own PATH), a callable that
    cannot be pickled for worker processes (``in_workers``)."""
    if isinstance(fitter, FitCommand):
        if here:
            fitter.check()
        return
    if in_workers:
        try:
            pickle.dumps(fitter.function)
        except Exception as exc:
            raise FitSpecError(
                f"the fit function {fitter.name} cannot be sent to worker processes "
                f"({type(exc).__name__}: {exc}); define it at module level or run with "
                "workers=0") from exc


def run_fits(protocol: str, data: Any, fitter: FitCommand | FitCallable,
             jobs: Sequence[Mapping[str, Any]], settings: Settings, *,
             extra: Mapping[str, Any] | None = None, options: CampaignOptions | None = None,
             work_dir: str | os.PathLike[str] | None = None, loader: Any = None) -> Any:
    """Fit one model per job and predict its held-out set, through
    :func:`~pytest_mlpval.campaign.run_campaign`.

    Each job has ``train`` (indices into ``data``, a LabelledData), ``test`` (a
    ReferenceSet), ``fold`` and ``seed``. The cache key is the digest of the data's
    content, the fitter's identity and the protocol's parameters: ``{"name": protocol,
    "version", "settings"}`` of ``settings`` (as every protocol's cache key), with
    ``extra`` (what the settings do not fix, such as the folds of a split given ready).
    ``settings.properties``, when the settings have it, are the labels predicted. With
    ``work_dir`` the fits run in ``work_dir/<key>/fit-<fold>`` and keep their files
    (models, logs); otherwise in temporary directories removed after each fit.
    ``loader(spec)`` (e.g. the ``pytest_mlpval_load_potential`` hook) is asked first when
    a fitted model is loaded, as :func:`~pytest_mlpval.potentials.load_potential`'s
    ``fallback``; it must be picklable for worker processes.
    """
    options = options or CampaignOptions()
    check_sendable(fitter, here=options.scheduler is None and options.executor is None,
                   in_workers=options.parallel)
    parameters = {**cache_parameters(protocol, settings), **(extra or {})}
    source = fit_source(protocol, data, fitter, parameters)
    root = None if work_dir is None else Path(work_dir).resolve() / source.info.sha256[:16]
    properties = getattr(settings, "properties", None)
    items = [{"fitter": fitter, "train": data.training_frames(job["train"]),
              "test": job["test"], "fold": int(job["fold"]), "seed": int(job["seed"]),
              "workdir": None if root is None else str(root / f"fit-{int(job['fold']):03d}"),
              "properties": None if properties is None else list(properties),
              "loader": loader} for job in jobs]
    return run_campaign(protocol, fit_and_predict, items, source, parameters,
                        version=TASK_VERSION, **options.campaign_kwargs())


def predictions_from(value: Mapping[str, Any], name: str) -> Predictions:
    """A :class:`~pytest_mlpval.evaluate.Predictions` from a task's JSON value."""
    return Predictions(
        dataset=name,
        energy=None if value.get("energy") is None else readonly_array(value["energy"]),
        forces=None if value.get("forces") is None
        else tuple(readonly_array(f).reshape(-1, 3) for f in value["forces"]),
        stress=None if value.get("stress") is None
        else readonly_array(value["stress"]).reshape(-1, 6),
        seconds=float(value.get("predict_seconds", 0.0)))
