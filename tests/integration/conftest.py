"""Helpers shared by the pytester integration tests.

``run`` runs pytest in-process, or in a subprocess when xdist workers are asked for
(``-n``): xdist's controller is cleaner in a process of its own. It adds
``-p no:benchmark``: pytest-benchmark (a dependency, unrelated to what is tested here)
costs about a second at the start of every process, xdist workers included.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable

import pytest

# In-process pytester runs restore sys.modules afterwards, dropping what they imported;
# extension modules (numpy.fft, quippy) cannot be imported twice in one process, so the
# heavy stack is imported here, once, before any run. (Importing distributed inside an
# in-process run, and dropping it afterwards, breaks plugin autoloading of later runs.)
for _name in ("distributed", "ase", "ase.io", "ase.build", "ase.calculators.singlepoint", "scipy",
              "matscipy.calculators.manybody",
              "matscipy.calculators.manybody.explicit_forms", "quippy", "quippy.potential",
              "pytest_mlpval.data", "pytest_mlpval.potentials", "pytest_mlpval.evaluate",
              "pytest_mlpval.metrics", "pytest_mlpval.assertions", "pytest_mlpval.fixture",
              "pytest_mlpval.session", "pytest_mlpval.testing"):
    try:
        importlib.import_module(_name)
    except ImportError:  # quippy and distributed are optional
        pass

LABELS = "energy=dft_energy,forces=dft_forces,stress=dft_stress"
SILICON = Path(__file__).resolve().parents[2] / "example_suites" / "silicon"
GAP_XML_NAME = "gap_si_mlearn.xml"
HAVE_QUIPPY = importlib.util.find_spec("quippy") is not None
SCALED = "pytest_mlpval.testing:sw_forces_scaled"


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch) -> Callable[..., pytest.RunResult]:
    # when this suite itself runs under xdist, its worker variables must not leak into
    # the runs it makes (they would think they are xdist workers)
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)

    def _run(*args: Any, subprocess: bool | None = None) -> pytest.RunResult:
        argv = ["-p", "no:benchmark", *(str(a) for a in args)]
        if subprocess is None:
            subprocess = "-n" in argv
        if subprocess:
            return pytester.runpytest_subprocess(*argv)
        return pytester.runpytest(*argv)

    return _run


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def records_by_nodeid(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {t["nodeid"]: t["records"] for t in document["tests"]}
