"""Domain of applicability: coverage and duplicates, per-bin errors, external test sets.

Plain library (no pytest). The public names of the family are imported from here."""

from __future__ import annotations

from .coverage import (
    DUPLICATE_SIMILARITY, OUTSIDE_CUTOFF, TrainingDomain, training_domain,
    DomainSimilarity, similarity_to_training, Duplicate, find_duplicates, LeakageResult,
    check_leakage, assert_no_leakage, ApplicabilityResult, check_applicability,
    assert_applicable,
)
from .errors import (
    DEFAULT_BINS, BinnedErrors, errors_by_similarity, plot_errors_by_similarity,
    plot_similarity_histogram, report_figure,
)
from .external import (
    REF_KEYS, ExternalSetError, FileLabels, labels_from_file, LabelResult,
    label_structures, ExternalSet, build_external_set, read_external_set, label_task,
    PROTOCOL,
)

__all__ = [
    'DUPLICATE_SIMILARITY', 'OUTSIDE_CUTOFF', 'TrainingDomain', 'training_domain',
    'DomainSimilarity', 'similarity_to_training', 'Duplicate', 'find_duplicates',
    'LeakageResult', 'check_leakage', 'assert_no_leakage', 'ApplicabilityResult',
    'check_applicability', 'assert_applicable', 'DEFAULT_BINS', 'BinnedErrors',
    'errors_by_similarity', 'plot_errors_by_similarity', 'plot_similarity_histogram',
    'report_figure', 'REF_KEYS', 'ExternalSetError', 'FileLabels', 'labels_from_file',
    'LabelResult', 'label_structures', 'ExternalSet', 'build_external_set',
    'read_external_set', 'label_task', 'PROTOCOL',
]
