"""Multi-label genre metrics from scikit-learn, as JSON-ready plain Python numbers."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from movietitles.evaluation.thresholds import check_labels

SUMMARY_KEYS = ("micro_precision", "micro_recall", "micro_f1", "macro_f1", "samples_f1",
                "weighted_f1")


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, genres: Sequence[str]) -> dict:
    """Micro/macro/samples/weighted F1 and per-genre precision, recall, F1 and support.

    y_true and y_pred are N x G 0/1 matrices (threshold scores first); genres names the G columns.
    Undefined ratios (no predictions, no positives) count as 0.
    """
    y_true = check_labels(y_true, "y_true")
    y_pred = check_labels(y_pred, "y_pred (0/1 predictions; threshold scores first)")
    genres = list(genres)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true shape {y_true.shape} differs from y_pred shape {y_pred.shape}")
    if len(genres) != y_true.shape[1] or len(set(genres)) != len(genres):
        raise ValueError(f"genres must be {y_true.shape[1]} distinct names, got {genres}")

    micro_p, micro_r, micro_f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="micro", zero_division=0)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=0)
    result = {
        "micro_precision": float(micro_p),
        "micro_recall": float(micro_r),
        "micro_f1": float(micro_f1),
        **{f"{avg}_f1": float(f1_score(y_true, y_pred, average=avg, zero_division=0))
           for avg in ("macro", "samples", "weighted")},
        "per_genre": {
            genre: {"precision": float(precision[g]), "recall": float(recall[g]),
                    "f1": float(f1[g]), "support": int(support[g])}
            for g, genre in enumerate(genres)
        },
    }
    return result
