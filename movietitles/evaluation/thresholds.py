"""Per-genre decision thresholds tuned for F1 on validation data, and honest estimates of them.

A genre is predicted when score >= threshold (scikit-learn's precision_recall_curve convention).
A fixed 0.5 rule is just predict(scores, 0.5).

Tuning a rare genre's threshold to its F1 on a handful of validation positives over-fits (Lin & Lin,
"On the Thresholding Strategy for Infrequent Labels in Multi-label Classification", CIKM 2023).
`fit_thresholds` offers strategies that resist it, and `out_of_sample_f1` scores any strategy on
validation movies that its thresholds were not tuned on:
  per_genre  each genre's own F1-optimal threshold (over-fits rare genres)
  global     one threshold for every genre, maximising micro-F1
  shrunk     per_genre pulled towards global: (n t_g + k t_global) / (n + k), n = the genre's positives
  joint      Lin & Lin's hyper-parameter-free alternative: per-genre thresholds maximising
             micro-F1 + macro-F1 together (coordinate ascent from global), so that one genre's
             threshold cannot trade many false positives for its own F1
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, precision_recall_curve

from movietitles.settings import THRESHOLD_STRATEGIES

DEFAULT_THRESHOLD = 0.5
STRATEGIES = THRESHOLD_STRATEGIES


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


def _curve_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds (descending, plus +inf for "predict none") and tp, fp at score >= each."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order].astype(np.int64)
    last_of_value = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last_of_value]
    fp = last_of_value + 1 - tp
    return np.r_[np.inf, s_sorted[last_of_value]], np.r_[0, tp], np.r_[0, fp]


def _global_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """One threshold for every genre that maximises micro-F1 (ties: the lowest)."""
    thresholds, tp, fp = _curve_counts(y.ravel(), s.ravel())
    f1 = 2 * tp / np.maximum(2 * tp + fp + (y.sum() - tp), 1)
    best = np.flatnonzero(f1 == f1.max())[-1]
    return float(thresholds[best]) if np.isfinite(thresholds[best]) else DEFAULT_THRESHOLD


def _joint_thresholds(y: np.ndarray, s: np.ndarray, start: float, sweeps: int = 3) -> np.ndarray:
    """Coordinate ascent on micro-F1 + macro-F1, one genre at a time, from a common threshold."""
    n_genres = y.shape[1]
    positives = y.sum(0)
    curves = [_curve_counts(y[:, g], s[:, g]) for g in range(n_genres)]
    thresholds = np.full(n_genres, start)
    tp = np.array([((s[:, g] >= start) & (y[:, g] > 0)).sum() for g in range(n_genres)], np.int64)
    fp = np.array([((s[:, g] >= start) & (y[:, g] == 0)).sum() for g in range(n_genres)], np.int64)
    for _ in range(sweeps):
        changed = False
        for g in range(n_genres):
            if not positives[g]:
                continue
            cand, cand_tp, cand_fp = curves[g]
            other_tp, other_fp = tp.sum() - tp[g], fp.sum() - fp[g]
            micro_tp = other_tp + cand_tp
            micro = 2 * micro_tp / np.maximum(2 * micro_tp + other_fp + cand_fp + (positives.sum() - micro_tp), 1)
            own = 2 * cand_tp / np.maximum(2 * cand_tp + cand_fp + (positives[g] - cand_tp), 1)
            objective = micro + own / n_genres
            best = np.flatnonzero(objective >= objective.max() - 1e-12)[-1]  # ties: the lowest threshold
            new = float(cand[best]) if np.isfinite(cand[best]) else float(s[:, g].max()) + 1e-6
            if new != thresholds[g]:
                changed = True
            thresholds[g], tp[g], fp[g] = new, cand_tp[best], cand_fp[best]
        if not changed:
            break
    return thresholds


def fit_thresholds(y_true: np.ndarray, scores: np.ndarray, strategy: str = "per_genre",
                   shrinkage: float = 20.0) -> np.ndarray:
    """Per-genre thresholds (shape [G]) by `strategy` (see STRATEGIES and the module docstring).

    `shrinkage` (shrunk only) is k, in pseudo-positives: a genre with k validation positives gets
    the midpoint of its own and the global threshold.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown threshold strategy {strategy!r}; choose one of {STRATEGIES}")
    y = check_labels(y_true)
    s = _check_scores(scores, y.shape)
    if strategy == "per_genre":
        return tune_thresholds(y, s)
    common = _global_threshold(y, s)
    if strategy == "global":
        return np.full(y.shape[1], common)
    if strategy == "joint":
        return _joint_thresholds(y, s, common)
    if shrinkage < 0:
        raise ValueError(f"threshold shrinkage must be >= 0, got {shrinkage}")
    own = tune_thresholds(y, s)
    positives = y.sum(0)
    shrunk = (positives * own + shrinkage * common) / np.maximum(positives + shrinkage, 1e-12)
    return np.where(positives > 0, shrunk, common)


def out_of_sample_f1(y_true: np.ndarray, scores: np.ndarray, strategy: str = "per_genre", repeats: int = 5,
                     seed: int = 0, **options) -> dict[str, float]:
    """Macro- and micro-F1 of thresholds scored on movies they were not tuned on.

    The movies are split in two random halves; thresholds tuned on each half predict the other,
    and the pooled out-of-half predictions are scored. The mean over `repeats` random splits.
    """
    y = check_labels(y_true)
    s = _check_scores(scores, y.shape)
    rng = np.random.default_rng(seed)
    macro, micro = [], []
    for _ in range(repeats):
        half = rng.permutation(len(y)) < len(y) // 2
        predicted = np.zeros_like(y)
        for tune_on in (half, ~half):
            t = fit_thresholds(y[tune_on], s[tune_on], strategy, **options)
            predicted[~tune_on] = predict(s[~tune_on], t)
        macro.append(f1_score(y, predicted, average="macro", zero_division=0))
        micro.append(f1_score(y, predicted, average="micro", zero_division=0))
    return {"macro_f1": float(np.mean(macro)), "micro_f1": float(np.mean(micro))}
