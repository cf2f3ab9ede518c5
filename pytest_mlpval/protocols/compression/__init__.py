"""Compression MD: does a candidate crystallise, stay amorphous, over-coordinate or
explode when an amorphous or liquid cell is compressed?

Plain library (no pytest). The public names of the family are imported from here."""

from __future__ import annotations

from .outcome import (
    OUTCOMES, OutcomeThresholds, CompressionOutcome, classify_frames, classify_result,
    assert_crystallizes, assert_no_false_minimum, assert_no_false_maximum, frames_table,
)
from .run import (
    CompressionResult, run_compression, run_compressions, PROTOCOL, compound_start,
)
from .settings import (
    CompressionSettings, CompressionAnalyser, reference_crystals, atom_key,
)

__all__ = [
    'OUTCOMES', 'OutcomeThresholds', 'CompressionOutcome', 'classify_frames',
    'classify_result', 'assert_crystallizes', 'assert_no_false_minimum',
    'assert_no_false_maximum', 'frames_table', 'CompressionResult', 'run_compression',
    'run_compressions', 'PROTOCOL', 'compound_start', 'CompressionSettings',
    'CompressionAnalyser', 'reference_crystals', 'atom_key',
]
