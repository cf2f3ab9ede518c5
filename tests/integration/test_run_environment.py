"""The run's environment (issue 17): threads (--mlpval-threads) in the main process, in
campaign workers and for torch; the candidate's precision (detected float32 models get
the float32 tolerances; a float64-tolerance failure of one names the option); and a
candidate without a content hash computes each protocol once per run (shared by xdist
workers), never reusing another run's results."""

from __future__ import annotations

import os

import pytest

from pytest_mlpval.campaign_cache import RUN_STORE_ENV
from pytest_mlpval.threads import THREAD_VARIABLES

FLOAT32 = "pytest_mlpval.testing:faulty_float32_at_0"

THREADS_TEST = """
import os
import sys

from threadpoolctl import threadpool_info


def test_threads(mlpval):
    expected = int(os.environ["EXPECTED_THREADS"])
    assert os.environ["OMP_NUM_THREADS"] == str(expected)
    # numpy's BLAS (quippy's OpenBLAS, where loaded, is built single-threaded)
    assert {p["num_threads"] for p in threadpool_info() if "numpy" in p["filepath"]} \\
        == {expected}
    assert sys.modules["torch"].threads == expected  # fake torch, imported by the loader
"""

FAKE_TORCH = """
import sys
import types


def make():
    from pytest_mlpval.potentials import load_potential

    calc = load_potential("sw").calculator
    torch = types.ModuleType("torch")
    torch.threads = 99
    torch.get_num_threads = lambda: torch.threads
    torch.set_num_threads = lambda n: setattr(torch, "threads", n)
    torch.nn = types.SimpleNamespace(Module=type("Module", (), {}))
    sys.modules["torch"] = torch
    return calc
"""


@pytest.mark.parametrize("args, expected, source", [
    (["--mlpval-threads=3"], 3, "--mlpval-threads"),
    (["--mlpval-workers=2"], 1, "default: one per process with campaign workers"),
], ids=["option", "default-with-workers"])
def test_threads_in_the_process_and_torch(pytester, run, monkeypatch, args,
                                                      expected, source):
    pytester.syspathinsert()
    pytester.makepyfile(faketorch=FAKE_TORCH, test_threads=THREADS_TEST)
    monkeypatch.setenv("EXPECTED_THREADS", str(expected))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    before = {name: os.environ.get(name) for name in (*THREAD_VARIABLES, RUN_STORE_ENV)}
    result = run("--potential=faketorch:make", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"mlpval: threads: {expected} per process ({source}); "
                                 "device: the loaders default"])
    # the run put the environment back as it was
    assert {name: os.environ.get(name) for name in before} == before


def test_bad_threads_and_devices_are_usage_errors(pytester, run):
    pytester.makepyfile(test_x="def test_x(mlpval):\n    pass\n")
    result = run("--potential=sw", "--mlpval-threads=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mlpval-threads*the number of threads must be >= 1*"])
    pytester.makeini("[pytest]\nmlpval_threads = many\nmlpval_device = gpu\n")
    result = run("--potential=sw")
    result.stderr.fnmatch_lines(["*ini mlpval_threads='many': expected a whole number >= 1"])
    result = run("--potential=sw", "--mlpval-threads=2")
    result.stderr.fnmatch_lines(["*ini mlpval_device='gpu': expected one of cpu, cuda"])


DEVICE_TEST = """
def test_device(mlpval):
    assert mlpval.potential.info.device == "cuda"
"""


def test_device_is_passed_to_the_loader(pytester, run):
    """A --mlpval-device reaches load_potential (a built-in takes no device; its info
    records it)."""
    pytester.makepyfile(test_device=DEVICE_TEST)
    result = run("--potential=sw", "--mlpval-device=cuda")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["mlpval: threads: * device: cuda"])


# --- precision ------------------------------------------------------------------------------

TOLERANCE_TEST = """
from pytest_mlpval.protocols.invariance import FLOAT32, FLOAT64


def test_tolerances(mlpval_potential, mlpval_tolerances):
    expected = FLOAT32 if mlpval_potential.name == "faulty_float32_at_0" else FLOAT64
    assert mlpval_tolerances is expected
"""


def test_a_float32_model_gets_the_float32_tolerances(pytester, run):
    pytester.makepyfile(test_tolerances=TOLERANCE_TEST)
    result = run(f"--potential={FLOAT32}", "--potential=sw")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "mlpval: precision: faulty_float32_at_0 detected when loaded, sw float64 (loader)",
        "mlpval: precision of the physics checks' tolerances: "
        "faulty_float32_at_0 float32 (detected), sw float64 (loader)"])
    # told otherwise: the option wins
    result = run(f"--potential={FLOAT32}", "--mlpval-precision=float64")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["mlpval: precision: faulty_float32_at_0 float64 "
                                 "(--mlpval-precision)"])


STRESS_TEST = """
from pytest_mlpval.physics_tests import test_mlpval_stress_is_strain_derivative  # noqa
"""

PROFILE = """
from hypothesis import Phase, settings

settings.register_profile("fast", max_examples=3, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate])
settings.load_profile("fast")
"""


def test_a_float64_failure_of_a_float32_model_names_the_option(pytester, run):
    """float32 rounding moves the stress finite differences by ~0.03 GPa: beyond the
    float64 tolerance (0.01), within the float32 one (0.2)."""
    pytester.makeconftest(PROFILE)
    pytester.makepyfile(test_stress=STRESS_TEST)
    result = run(f"--potential={FLOAT32}", "--mlpval-precision=float64", "--mlpval-species=Si")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*precision: faulty_float32_at_0 is a float32 model (detected), checked with the "
        "float64 tolerances (--mlpval-precision/ini mlpval_precision): "
        "--mlpval-precision=float32 (or ini mlpval_precision = float32) applies the "
        "float32 ones"])
    result = run(f"--potential={FLOAT32}", "--mlpval-species=Si")  # detected: float32
    result.assert_outcomes(passed=1)


ENERGY32 = """
import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class Energy32(Calculator):
    # float64 forces, an energy summed in float32: the probe sees a float64 model
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self):
        from pytest_mlpval.potentials import load_potential

        super().__init__()
        self.base = load_potential("sw").calculator

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self.base
        energy = float(np.float32(work.get_potential_energy()))
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": work.get_forces(), "stress": work.get_stress()}
"""


def test_float32_noise_of_a_float64_model_names_the_option(pytester, run, monkeypatch):
    pytester.makeconftest(PROFILE)
    pytester.makepyfile(test_stress=STRESS_TEST, energy32=ENERGY32)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    pytester.syspathinsert()
    result = run("--potential=energy32:Energy32", "--mlpval-species=Si")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*precision: the failing values of Energy32 are within the float32 tolerances "
        "(float32 rounding noise?), checked with the float64 tolerances (detected): "
        "--mlpval-precision=float32*"])


# --- one computation per run for a candidate without a content hash -----------------------

COUNTING = """
import os
from dataclasses import dataclass
from typing import ClassVar

from pytest_mlpval.protocols.base import Result, Settings, register


def make():
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw").calculator


@dataclass(frozen=True)
class CountSettings(Settings):
    VERSION: ClassVar[int] = 1
    a_A: float = 5.43


@dataclass(frozen=True)
class CountResult(Result):
    energy_eV: float
    protocol = "counted"

    def metrics(self):
        return {"energy_eV": self.energy_eV}


def counted(calc, settings):
    from ase.build import bulk

    with open(os.environ["COUNT_FILE"], "a") as handle:
        handle.write(f"{os.getpid()}\\n")
    atoms = bulk("Si", "diamond", a=settings.a_A)
    atoms.calc = calc
    return CountResult(float(atoms.get_potential_energy()))


register("counted", counted, CountSettings, CountResult)
"""

COUNTED_TESTS = """
import os

import pytest

import counting  # noqa: F401  (registers the protocol in every process)


@pytest.mark.parametrize("k", range(4))
def test_same_protocol(mlpval, k):
    mlpval.run_protocol("counted")
    with open(os.environ["WORKERS_FILE"], "a") as handle:
        handle.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")


def test_other_settings(mlpval):
    mlpval.run_protocol("counted", a_A=5.5)
"""


@pytest.mark.parametrize("xdist", [[], pytest.param(["-n", "2"], marks=pytest.mark.slow)],
                         ids=["in-process", "xdist-2"])
def test_a_factory_computes_each_protocol_once_per_run(pytester, run, monkeypatch, xdist):
    pytester.syspathinsert()
    pytester.makepyfile(counting=COUNTING, test_counted=COUNTED_TESTS)
    count, workers = pytester.path / "count.txt", pytester.path / "workers.txt"
    monkeypatch.setenv("COUNT_FILE", str(count))
    monkeypatch.setenv("WORKERS_FILE", str(workers))
    monkeypatch.setenv("PYTHONPATH", str(pytester.path), prepend=os.pathsep)
    result = run("--potential=counting:make", *xdist)
    result.assert_outcomes(passed=5)
    assert len(count.read_text().splitlines()) == 2  # once per settings
    if xdist:
        assert len(set(workers.read_text().split())) == 2  # shared by both workers
        result.stdout.fnmatch_lines(["mlpval: threads: 1 per process (default: one per "
                                     "process under xdist)*"])
    # another run computes again: no reuse across runs without a content hash
    result = run("--potential=counting:make")
    result.assert_outcomes(passed=5)
    assert len(count.read_text().splitlines()) == 4
    # and leaves no run store behind
    assert not [p for p in pytester.path.rglob("mlpval-run-*")]
