"""Domain of applicability: coverage and duplicates, per-bin errors, external test sets.

Plain library (no pytest). The public names of the family are imported from here."""

from __future__ import annotations

from .coverage import (
    DUPLICATE_SIMILARITY, OUTSIDE_CUTOFF, TrainingDomain, training_domain,
    DomainSimilarity, similarity_to_training, Duplicate, same_geometry, find_duplicates,
    duplicate_table, quantiles, LeakageSettings, LeakageResult, check_leakage,
    assert_no_leakage, report_figure,
)
from .applicability import (
    ApplicabilitySettings, ApplicabilityResult, check_applicability, assert_applicable,
)
from .errors import (
    DEFAULT_BINS, BinnedErrors, errors_by_similarity, plot_errors_by_similarity,
    plot_similarity_histogram,
)
from .external import (
    REF_KEYS, ExternalSetError, structures_of, frames_sha256, FileLabels,
    labels_from_file, LabelResult, label_structures, ExternalSet, build_external_set,
    read_external_set, label_task, PROTOCOL,
)

__all__ = [
    'DUPLICATE_SIMILARITY', 'OUTSIDE_CUTOFF', 'TrainingDomain', 'training_domain',
    'DomainSimilarity', 'similarity_to_training', 'Duplicate', 'same_geometry',
    'find_duplicates', 'duplicate_table', 'quantiles', 'LeakageSettings', 'LeakageResult',
    'check_leakage', 'assert_no_leakage', 'report_figure', 'ApplicabilitySettings',
    'ApplicabilityResult', 'check_applicability', 'assert_applicable', 'DEFAULT_BINS',
    'BinnedErrors', 'errors_by_similarity', 'plot_errors_by_similarity',
    'plot_similarity_histogram', 'REF_KEYS', 'ExternalSetError', 'structures_of',
    'frames_sha256', 'FileLabels', 'labels_from_file', 'LabelResult', 'label_structures',
    'ExternalSet', 'build_external_set', 'read_external_set', 'label_task', 'PROTOCOL',
]
