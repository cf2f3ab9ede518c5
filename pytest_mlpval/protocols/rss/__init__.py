"""Random structure search: generation, relaxation, basins and their analysis.

Plain library (no pytest). The public names of the family are imported from here."""

from __future__ import annotations

from .analysis import (
    energy_volume, Basin, find_basin, assert_basin, assert_no_basin,
    assert_diamond_like_fraction, DistributionDistance, distribution_distance,
    assert_distributions_close, assert_failures_at_most, energy_volume_figure, gaps,
)
from .generate import (
    RssParameters, RssGenerationError, generate, MIN_VOLUME_FACTOR,
)
from .io import (
    write_rss, read_rss,
)
from .search import (
    RssMinimum, RssResult, run_rss, relax_structure, relax_references, classify,
    STATUSES, USABLE, PROTOCOL, RelaxationTimeout, NonFiniteResult,
)

__all__ = [
    'energy_volume', 'Basin', 'find_basin', 'assert_basin', 'assert_no_basin',
    'assert_diamond_like_fraction', 'DistributionDistance', 'distribution_distance',
    'assert_distributions_close', 'assert_failures_at_most', 'energy_volume_figure',
    'gaps', 'RssParameters', 'RssGenerationError', 'generate', 'MIN_VOLUME_FACTOR',
    'write_rss', 'read_rss', 'RssMinimum', 'RssResult', 'run_rss', 'relax_structure',
    'relax_references', 'classify', 'STATUSES', 'USABLE', 'PROTOCOL',
    'RelaxationTimeout', 'NonFiniteResult',
]
