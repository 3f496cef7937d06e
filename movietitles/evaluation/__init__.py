"""Evaluation of multi-label genre predictions: fusion, thresholds, metrics, baselines, reports.

plots (matplotlib) and baselines (model fitting) are imported from their modules on demand.
"""

from movietitles.evaluation.late_fusion import COMBINERS, fuse, intersection, union
from movietitles.evaluation.metrics import SUMMARY_KEYS, multilabel_metrics
from movietitles.evaluation.report import write_report
from movietitles.evaluation.thresholds import predict, tune_thresholds

__all__ = ["COMBINERS", "SUMMARY_KEYS", "fuse", "intersection", "multilabel_metrics", "predict",
           "tune_thresholds", "union", "write_report"]
