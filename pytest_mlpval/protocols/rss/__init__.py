"""Random structure search: generation, relaxation, basins and their analysis.

Plain library (no pytest). The public names of the family are imported from here."""

from __future__ import annotations

from .analysis import (
    energy_volume, Basin, find_basin, assert_basin, assert_no_basin,
    assert_diamond_like_fraction, DistributionDistance, distribution_distance,
    assert_distributions_close, assert_failures_at_most, energy_volume_figure, gaps,
    report_figure,
)
from .composition import (
    parse_composition, ReferenceCrystal, pair_separations, default_volume_range,
    normalise_references, reference_atoms, reference_name, relaxed_reference,
)
from .generate import (
    RssSettings, RssGenerationError, generate, MIN_VOLUME_FACTOR,
)
from .io import (
    write_rss, read_rss_data,
)
from .result import (
    RssMinimum, RssResult, read_rss, STATUSES, USABLE,
)
from .search import (
    run_rss, relax_structure, relax_references, classify, PROTOCOL, RelaxationTimeout,
    NonFiniteResult,
)

__all__ = [
    'energy_volume', 'Basin', 'find_basin', 'assert_basin', 'assert_no_basin',
    'assert_diamond_like_fraction', 'DistributionDistance', 'distribution_distance',
    'assert_distributions_close', 'assert_failures_at_most', 'energy_volume_figure',
    'gaps', 'report_figure', 'RssSettings', 'RssGenerationError',
    'generate', 'MIN_VOLUME_FACTOR', 'write_rss', 'read_rss_data', 'RssMinimum', 'RssResult',
    'read_rss', 'STATUSES', 'USABLE', 'run_rss', 'relax_structure', 'relax_references',
    'classify', 'PROTOCOL', 'RelaxationTimeout', 'NonFiniteResult', 'parse_composition',
    'ReferenceCrystal', 'pair_separations', 'default_volume_range', 'normalise_references',
    'reference_atoms', 'reference_name', 'relaxed_reference',
]
