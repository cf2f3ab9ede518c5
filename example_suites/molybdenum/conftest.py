"""Suite settings: a quick Hypothesis profile for the physics checks (25 structures per
check; HYPOTHESIS_PROFILE=thorough tries 200), and the two sizes of the campaigns: tests
marked ``slow`` run only with ``--mlpval-tier=full``.

The suite has no regression baseline (``mlpval_compare``): the silicon suite's
``.mlpval/gap_si.json`` is written by a full accepted run, and this suite's bundled GAP
has not had one yet.
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("suite", max_examples=25, deadline=None)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def pytest_collection_modifyitems(config, items):
    tier = config.getoption("mlpval_tier", None) or config.getini("mlpval_tier")
    if tier == "full":
        return
    skip = pytest.mark.skip(reason="slow (paper-scale): run with --mlpval-tier=full")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
