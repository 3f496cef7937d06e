"""Per-genre decision thresholds tuned for F1 on validation data.

A genre is predicted when score >= threshold (scikit-learn's precision_recall_curve convention).
A fixed 0.5 rule is just predict(scores, 0.5).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve

DEFAULT_THRESHOLD = 0.5


def check_labels(y_true: np.ndarray, name: str = "y_true") -> np.ndarray:
    """Return y_true as a 2-D int8 0/1 matrix, or raise naming the problem."""
    y = np.asarray(y_true)
    if y.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples x genres) matrix, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 labels")
    return y.astype(np.int8)


def _check_scores(scores: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D (samples x genres) matrix, got shape {s.shape}")
    if shape is not None and s.shape != shape:
        raise ValueError(f"scores shape {s.shape} does not match labels shape {shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return s


def _best_on_curve(y: np.ndarray, s: np.ndarray) -> float:
    precision, recall, thresholds = precision_recall_curve(y, s)
    # The curve's last point (precision 1, recall 0) has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(thresholds[int(np.argmax(f1))])


def _best_on_grid(y: np.ndarray, s: np.ndarray, grid: np.ndarray) -> float:
    predicted = s[:, None] >= grid[None, :]
    positive = y.astype(bool)[:, None]
    tp = (predicted & positive).sum(axis=0)
    fp = (predicted & ~positive).sum(axis=0)
    fn = (~predicted & positive).sum(axis=0)
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return float(grid[int(np.argmax(f1))])


def tune_thresholds(y_true: np.ndarray, scores: np.ndarray, grid=None) -> np.ndarray:
    """Per-genre thresholds (shape [G]) that maximise each genre's F1 on (y_true, scores).

    grid=None searches every distinct score (precision_recall_curve); otherwise only the given
    candidate thresholds. Ties go to the lowest threshold. A genre with no positives gets 0.5.
    """
    y = check_labels(y_true)
    s = _check_scores(scores, y.shape)
    if grid is not None:
        grid = np.unique(np.asarray(grid, dtype=np.float64).ravel())
        if grid.size == 0 or not np.all(np.isfinite(grid)):
            raise ValueError("threshold grid must be a non-empty list of finite numbers")
    thresholds = np.full(y.shape[1], DEFAULT_THRESHOLD)
    for g in range(y.shape[1]):
        if not y[:, g].any():
            continue
        thresholds[g] = (_best_on_curve(y[:, g], s[:, g]) if grid is None
                         else _best_on_grid(y[:, g], s[:, g], grid))
    return thresholds


def predict(scores: np.ndarray, thresholds=DEFAULT_THRESHOLD) -> np.ndarray:
    """0/1 predictions (int8): scores >= thresholds; thresholds is a scalar or one per genre."""
    s = _check_scores(scores)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != s.shape[1]):
        raise ValueError(f"thresholds must be a scalar or one per genre ({s.shape[1]}), "
                         f"got shape {t.shape}")
    return (s >= t).astype(np.int8)
