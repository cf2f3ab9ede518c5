"""Load a candidate once in a subprocess (a *probe*) before loading it in this process,
and the versions of the libraries that load it.

Plain library (no pytest). Some loaders end the process instead of raising: quippy's
Fortran parser exits on a malformed GAP attribute, a model library may segfault or call
``os._exit``. Loaded in the pytest process, such a model kills the run with no message
(or "worker crashed" under xdist). The probe runs ``python -m pytest_mlpval.probe_child
SPEC BASE_DIR SPECIES`` with the same spec: it loads the model and computes one energy on
a two-atom cell (:mod:`pytest_mlpval.probe_child`); a probe that dies (exit status,
signal, timeout) becomes a clear error naming the spec and quoting the end of what it
printed. A success is remembered for the
process (and, for content-addressed models such as a GAP, on disk under
``$XDG_CACHE_HOME/pytest-mlpval/probes``, keyed by the model's sha256, the loader
versions and the Python version), so each model is probed once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["PROBE_TIMEOUT_S", "LOAD_RAISED", "ProbeResult", "probe", "loader_versions",
           "distribution_versions"]

# a probe that runs longer is inconclusive (the caller warns and loads in process)
PROBE_TIMEOUT_S = 300.0
LOAD_RAISED = 86  # exit status of a probe whose loader raised a Python exception
FRAMEWORKS = ("torch", "tensorflow", "jax")  # recorded when imported by a loaded model
_PASSED: dict[str, float] = {}  # probe key -> seconds, successes in this process


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe.

    Attributes
    ----------
    returncode : int or None
        Exit status of the probe (negative: killed by that signal); ``None`` when it
        timed out, or when the success was remembered (``cached``).
    seconds : float
        Wall time of the probe in seconds (0 when cached).
    output_tail : str
        The last lines the probe wrote to stderr (or stdout when stderr is empty).
    cached : bool
        True when an earlier success was reused without running a probe.
    timed_out : bool
        True when the probe was killed after the timeout.
    """

    returncode: int | None
    seconds: float
    output_tail: str = ""
    cached: bool = False
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.cached or self.returncode == 0

    @property
    def died(self) -> bool:
        """The process ended abnormally (not a success, a Python exception or a timeout)."""
        return not self.ok and not self.timed_out and self.returncode != LOAD_RAISED

    def describe(self) -> str:
        if self.timed_out:
            how = f"did not finish in {self.seconds:.0f} s"
        elif self.returncode is not None and self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = "unknown signal"
            how = f"was killed by signal {-self.returncode} ({name})"
        elif self.returncode == LOAD_RAISED:
            how = "raised while loading"
        else:
            how = f"ended the process with exit status {self.returncode}"
        if not self.output_tail:
            return f"{how}, printing nothing"
        return f"{how}; it printed:\n{self.output_tail}"


def _tail(text: str, lines: int = 12, chars: int = 1500) -> str:
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])[-chars:]


def _cache_file(key: str) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "pytest-mlpval" / "probes" / hashlib.sha256(key.encode()).hexdigest()


def _remembered(key: str, disk: bool) -> bool:
    if key in _PASSED:
        return True
    if disk:
        try:
            stored = json.loads(_cache_file(key).read_text())
        except (OSError, ValueError):
            return False
        if isinstance(stored, dict) and stored.get("key") == key:
            _PASSED[key] = float(stored.get("seconds", 0.0))
            return True
    return False


def _remember(key: str, seconds: float, disk: bool) -> None:
    _PASSED[key] = seconds
    if disk:
        path = _cache_file(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps({"key": key, "seconds": seconds}))
            os.replace(partial, path)
        except OSError:  # a read-only home: probe again next time
            pass


def _child_environment() -> dict[str, str]:
    """This process's environment, with its ``sys.path`` (so the probe imports the same
    modules, including folders pytest or a test inserted) and one OpenMP thread."""
    env = dict(os.environ)
    paths = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def probe(raw: str, base_dir: str | os.PathLike[str], species: Iterable[str] = (),
          *, key: str | None = None, disk: bool = False,
          timeout_s: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Load ``raw`` (resolved against ``base_dir``) in a subprocess and compute one energy
    on a small cell of ``species`` (silicon when empty). ``key`` identifies what is
    probed (default: the spec, folder and working directory); a success under the same
    key is not probed again in this process, nor, with ``disk``, in later ones."""
    key = key or f"spec:{raw}\0{os.path.abspath(base_dir)}\0{os.getcwd()}"
    if _remembered(key, disk):
        return ProbeResult(None, 0.0, cached=True)
    command = [sys.executable, "-X", "faulthandler", "-m", "pytest_mlpval.probe_child",
               raw, str(base_dir), ",".join(species)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, env=_child_environment(),
                               start_new_session=True, text=True, errors="replace")
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the probe and anything it started
        out, err = process.communicate()
        return ProbeResult(None, time.perf_counter() - start, _tail(err or out),
                           timed_out=True)
    seconds = time.perf_counter() - start
    result = ProbeResult(process.returncode, seconds, _tail(err or out))
    if result.ok:
        _remember(key, seconds, disk)
    return result


# --- library versions ---------------------------------------------------------------------

# top-level package -> distributions, for the common ones (no scan of all metadata)
_KNOWN = {"quippy": ("quippy-ase",), "matscipy": ("matscipy",), "torch": ("torch",),
          "tensorflow": ("tensorflow",), "jax": ("jax",), "ase": ("ase",),
          "pytest_mlpval": ("pytest-mlpval",)}


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> Mapping[str, list[str]]:
    from importlib.metadata import packages_distributions

    return packages_distributions()


def distribution_versions(modules: Iterable[str]) -> dict[str, str]:
    """Installed distribution -> version for the top-level packages of ``modules``
    (dotted module names); modules that no distribution provides are left out."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for module in modules:
        top = module.split(".")[0]
        dists = _KNOWN.get(top) or _packages_distributions().get(top, ())
        for dist in dists:
            try:
                found[dist] = version(dist)
            except PackageNotFoundError:
                continue
    return dict(sorted(found.items()))


def loader_versions(loader: str, module: str | None = None,
                    calculator: Any = None, frameworks: bool = True) -> dict[str, str]:
    """The versions of the libraries that load (and evaluate) a potential: quippy-ase for a
    GAP, matscipy for the built-ins; for a factory or entry point the distribution of
    ``module`` and, once loaded, of the calculator's class and (with ``frameworks``) of
    any of :data:`FRAMEWORKS` then imported. A loader of
    :mod:`pytest_mlpval.loaders` names its frameworks itself (``frameworks=False``): a
    LAMMPS model loaded after a torch one does not depend on torch."""
    modules = {"gap": ["quippy"], "builtin": ["matscipy"]}.get(loader, [])
    if module:
        modules.append(module)
    if calculator is not None:  # the calculator's classes (a subclass's base library too)
        modules += [cls.__module__ for cls in type(calculator).__mro__
                    if cls.__module__ != "builtins"]
        if frameworks:
            modules += [name for name in FRAMEWORKS if name in sys.modules]
    return distribution_versions(modules)
