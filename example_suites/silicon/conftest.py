"""Suite settings: a quick Hypothesis profile for the physics checks (25 structures per
check; HYPOTHESIS_PROFILE=thorough tries 200), and the two sizes of the campaigns: tests
marked ``slow`` (paper-scale structure searches, long MD) run only with
``--mlpval-tier=full``.

Measured shortcomings of the bundled GAP are marked with the plugin's
``@pytest.mark.mlpval_known_failure(sha256=..., reason=...)`` (test_properties.py): a
strict xfail for that model under whatever ``--potential`` name it is given (``gap_si``,
``gap``, ...), while any other model, a refit of the GAP included, is judged by the plain
test. The hash is that of the model files; print it with
``python -c "from pytest_mlpval.potentials import load_potential as l;
print(l('potential/gap_si_mlearn.xml').info.sha256)"`` (or read it in the
``--mlpval-json`` file under ``potentials.<name>.sha256``).
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
