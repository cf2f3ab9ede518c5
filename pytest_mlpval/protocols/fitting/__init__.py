"""Fitting recipes, k-fold splits, cross-validation and learning curves.

Plain library (no pytest). The public names of the family are imported from here."""

from __future__ import annotations

from .crossval import (
    CrossValidationSettings, FoldResult, CrossValidationResult, cross_validate,
    assert_cv_errors, plot_cv_parity, report_figure, PROTOCOL, QUANTITY_UNITS,
)
from .fit import (
    FitError, FitSpecError, FitCommand, FitCallable, as_fitter, fit_and_predict,
    run_fits, predictions_from, FitIdentity, FitCampaignSource, NoCalculator, fit_source,
    check_sendable, PLACEHOLDERS, TASK_VERSION,
)
from .learning_curve import (
    LearningCurveSettings, LearningPoint, LearningCurveResult, learning_curve,
    plot_learning_curve,
)
from .splits import (
    LabelledData, labelled_data, subset, extxyz_text, SplitSettings, CVSplit, make_split,
    SPLIT_METHODS,
)

__all__ = [
    'CrossValidationSettings', 'FoldResult', 'CrossValidationResult', 'cross_validate',
    'assert_cv_errors', 'plot_cv_parity', 'report_figure', 'PROTOCOL', 'QUANTITY_UNITS',
    'FitError', 'FitSpecError', 'FitCommand', 'FitCallable', 'as_fitter',
    'fit_and_predict', 'run_fits', 'predictions_from', 'FitIdentity', 'FitCampaignSource',
    'NoCalculator', 'fit_source', 'check_sendable', 'PLACEHOLDERS', 'TASK_VERSION',
    'LearningCurveSettings', 'LearningPoint', 'LearningCurveResult', 'learning_curve',
    'plot_learning_curve', 'LabelledData', 'labelled_data', 'subset', 'extxyz_text',
    'SplitSettings', 'CVSplit', 'make_split', 'SPLIT_METHODS',
]
