"""Suite settings: a quick Hypothesis profile for the physics checks (25 structures per
check; HYPOTHESIS_PROFILE=thorough tries 200), and the two sizes of the campaigns: tests
marked ``slow`` (paper-scale structure searches, long MD) run only with
``--mlpval-tier=full``.

``@pytest.mark.known_failure(potential, reason)`` records a measured failure of one named
candidate (the bundled ``gap_si``): its runs are strict xfails (a fix turns them red until
the mark goes), while any other ``--potential`` is judged by the plain test.
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("suite", max_examples=25, deadline=None)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def _potential_name(item):
    callspec = getattr(item, "callspec", None)
    entry = callspec.params.get("mlpval_potential") if callspec else None
    return getattr(entry, "name", None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers("known_failure"):
            potential, reason = mark.args
            if _potential_name(item) == potential:
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    tier = config.getoption("mlpval_tier", None) or config.getini("mlpval_tier")
    if tier == "full":
        return
    skip = pytest.mark.skip(reason="slow (paper-scale): run with --mlpval-tier=full")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
