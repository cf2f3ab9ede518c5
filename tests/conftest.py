"""Shared fixtures of our own test suite."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
SILICON = ROOT / "example_suites" / "silicon"
GAP_XML = SILICON / "potential" / "gap_si_mlearn.xml"

settings.register_profile("ci", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

HAVE_QUIPPY = importlib.util.find_spec("quippy") is not None
HAVE_XDIST = importlib.util.find_spec("xdist") is not None
needs_quippy = pytest.mark.skipif(not HAVE_QUIPPY, reason="needs quippy-ase (gap extra)")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (paper-scale physics, minutes each)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _not_on_ci(monkeypatch):
    """pytest (untruncated summaries) and Hypothesis (its 'ci' profile) behave differently
    when CI is set; the runs our tests make should behave the same here and in CI."""
    for name in ("CI", "BUILD_NUMBER", "TF_BUILD", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=[[], ["-n", "2"]], ids=["no-xdist", "xdist-2"])
def plugin_args(request) -> list[str]:
    """Run a pytester session with and without pytest-xdist workers."""
    if request.param and not HAVE_XDIST:
        pytest.skip("pytest-xdist not installed")
    return list(request.param)


@pytest.fixture(scope="session")
def reference_file(tmp_path_factory) -> Path:
    """Six rattled diamond-Si cells (8 and 16 atoms) labelled with Stillinger-Weber under
    dft_energy / dft_forces / dft_stress, config_types 'bulk' and 'rattled'."""
    from pytest_mlpval.testing import make_reference_file

    return make_reference_file(tmp_path_factory.mktemp("data") / "ref.xyz", n_structures=6)


@pytest.fixture
def dataset_arg(reference_file) -> str:
    """The --mlpval-dataset value for reference_file."""
    return f"ref={reference_file},energy=dft_energy,forces=dft_forces,stress=dft_stress"
