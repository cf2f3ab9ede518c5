"""Guarded molecular dynamics: the MD engine and its settings, MD stability, melt-quench.

Plain library (no pytest). The public names of the family are imported from here."""

from __future__ import annotations

from pytest_mlpval.descriptors import min_distance
from pytest_mlpval.protocols.base import potential_name

from .meltquench import (
    MeltQuenchSettings, MeltQuenchTrajectory, run_meltquench, read_meltquench, relabel,
)
from .meltquench_errors import (
    MeltQuenchErrors, meltquench_errors, compare_meltquench, meltquench_table,
    assert_phase_errors, PHASE_METRICS,
)
from .run import (
    run_md, run_md_campaign, pressure_GPa, diamond_start, crystal_start, random_start,
    melt_quench_segments, write_trajectory,
)
from .settings import (
    COMPLETED, CUT_SHORT, UNSTABLE, INSTABILITIES, MDParameterError, MDLimits, MDSegment,
    MDSettings, MDProtocolSettings, MDFrame, MDRecord, start_key,
)
from .stability import (
    StabilitySettings, MDStabilityResult, run_md_stability, md_stability, analyse_stability,
    assert_md_stable, assert_stable,
)

__all__ = [
    'MeltQuenchSettings', 'MeltQuenchTrajectory', 'run_meltquench', 'read_meltquench',
    'relabel', 'MeltQuenchErrors', 'meltquench_errors', 'compare_meltquench',
    'meltquench_table', 'assert_phase_errors', 'PHASE_METRICS', 'run_md', 'run_md_campaign',
    'pressure_GPa', 'diamond_start', 'crystal_start', 'random_start', 'melt_quench_segments',
    'write_trajectory', 'min_distance', 'COMPLETED', 'CUT_SHORT', 'UNSTABLE',
    'INSTABILITIES', 'MDParameterError', 'MDLimits', 'MDSegment', 'MDSettings',
    'MDProtocolSettings', 'MDFrame', 'MDRecord', 'start_key', 'StabilitySettings',
    'MDStabilityResult', 'run_md_stability', 'md_stability', 'analyse_stability',
    'assert_md_stable', 'assert_stable', 'potential_name',
]
