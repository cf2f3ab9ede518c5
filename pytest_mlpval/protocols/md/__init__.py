"""Guarded molecular dynamics: the MD engine and its settings, MD stability, melt-quench.

Plain library (no pytest). The public names of the family are imported from here."""

from __future__ import annotations

from .meltquench import (
    MeltQuenchSettings, MeltQuenchTrajectory, run_meltquench, read_meltquench, relabel,
)
from .meltquench_errors import (
    MeltQuenchErrors, meltquench_errors, compare_meltquench, meltquench_table,
    assert_phase_errors, PHASE_METRICS,
)
from .run import (
    COMPLETED, CUT_SHORT, UNSTABLE, INSTABILITIES, MDParameterError, MDLimits,
    MDSegment, MDSettings, MDFrame, MDRecord, run_md, min_distance, pressure_GPa,
    diamond_start, random_start, melt_quench_segments, write_trajectory,
    single_threaded_blas,
)
from .settings import (
    MDProtocolSettings, potential_name, start_key,
)
from .stability import (
    StabilitySettings, MDStabilityResult, run_md_stability, assert_md_stable,
    assert_stable,
)

__all__ = [
    'MeltQuenchSettings', 'MeltQuenchTrajectory', 'run_meltquench', 'read_meltquench',
    'relabel', 'MeltQuenchErrors', 'meltquench_errors', 'compare_meltquench',
    'meltquench_table', 'assert_phase_errors', 'PHASE_METRICS', 'COMPLETED',
    'CUT_SHORT', 'UNSTABLE', 'INSTABILITIES', 'MDParameterError', 'MDLimits',
    'MDSegment', 'MDSettings', 'MDFrame', 'MDRecord', 'run_md', 'min_distance',
    'pressure_GPa', 'diamond_start', 'random_start', 'melt_quench_segments',
    'write_trajectory', 'single_threaded_blas', 'MDProtocolSettings', 'potential_name',
    'start_key',
    'StabilitySettings', 'MDStabilityResult', 'run_md_stability', 'assert_md_stable',
    'assert_stable',
]
