"""Hooks that other plugins and conftest files can implement."""

from __future__ import annotations

import pytest


@pytest.hookspec(firstresult=True)
def pytest_mlpval_load_potential(config: pytest.Config, spec: str):
    """Load a potential the built-in loaders do not know; return an ASE calculator or None.

    Called first for every ``--potential`` value (without its ``NAME=``), so a plugin can
    also take over a form the built-ins would handle. A spec naming an existing file is
    passed as that file's absolute path (relative paths start at the invocation
    directory, or at the ini file's for ini values). Return ``None`` to pass.

    Example, in a ``conftest.py``::

        def pytest_mlpval_load_potential(config, spec):
            if spec.endswith(".snapcoeff"):
                return make_snap_calculator(spec)
            return None

    For a format that exists only as a spec string (no file), register a loader in the
    ``pytest_mlpval.loaders`` entry-point group instead and write ``LOADER:ARG``.
    """


def pytest_mlpval_update_json(config: pytest.Config, output: dict) -> None:
    """Modify the ``--mlpval-json`` document before it is written (controller only).

    Example::

        def pytest_mlpval_update_json(config, output):
            output["project"] = {"fit": "gap-2026-11", "git": os.environ.get("GIT_SHA")}
    """


@pytest.hookspec(firstresult=True)
def pytest_mlpval_labeller(config: pytest.Config, name: str):
    """Return the labelling function of external test sets, or None to pass.

    External test sets (RSS minima, MD snapshots) are labelled with a reference: a
    reference potential, labels already in a file, or your own code, such as a DFT
    calculation. Return a callable ``label(atoms) -> {"energy": eV, "forces": (N, 3)
    eV/Å, "stress": (6,) eV/Å³ (optional)}``; ``name`` is the reference asked for (e.g.
    ``"dft"``). Example, in a ``conftest.py``::

        def pytest_mlpval_labeller(config, name):
            if name == "dft":
                return run_my_dft_singlepoint
            return None
    """
