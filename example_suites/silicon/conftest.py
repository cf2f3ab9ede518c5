"""Suite settings: a quick Hypothesis profile for the physics checks (25 structures per
check); HYPOTHESIS_PROFILE=thorough tries 200."""

import os

from hypothesis import settings

settings.register_profile("suite", max_examples=25, deadline=None)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))
