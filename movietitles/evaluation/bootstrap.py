"""Bootstrap confidence intervals and paired comparisons for multi-label metrics.

One set of resamples of the test movies is drawn once and shared by every row, so that two rows'
differences are paired. A resample is a vector of counts (how often each movie was drawn), which
turns every metric into a few matrix products: `counts @ per_movie_quantity`.

The metrics are those of `metrics.multilabel_metrics` (scikit-learn's definitions, with undefined
ratios counted as 0), so resample counts of all ones reproduce scikit-learn's numbers exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from movietitles.evaluation.metrics import SUMMARY_KEYS
from movietitles.evaluation.thresholds import check_labels

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95


def resample_counts(n_movies: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """[n_resamples, n_movies] draw counts: each row is one bootstrap resample (with replacement)."""
    if n_movies < 1 or n_resamples < 1:
        raise ValueError(f"bootstrap needs at least one movie and one resample, got {n_movies} and {n_resamples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_movies, np.full(n_movies, 1.0 / n_movies), size=n_resamples).astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64),
                     where=denominator > 0)


def resampled_metrics(y_true: np.ndarray, y_pred: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Each summary metric (SUMMARY_KEYS) per resample, shape [R]; and "per_genre_f1", shape [R, G]."""
    y = check_labels(y_true).astype(bool)
    p = check_labels(y_pred, "y_pred").astype(bool)
    if y.shape != p.shape:
        raise ValueError(f"y_true shape {y.shape} differs from y_pred shape {p.shape}")
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    if counts.shape[1] != y.shape[0]:
        raise ValueError(f"resample counts cover {counts.shape[1]} movies, the labels {y.shape[0]}")
    tp = counts @ (y & p)
    fp = counts @ (~y & p)
    fn = counts @ (y & ~p)
    support = tp + fn
    per_genre_f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    TP, FP, FN = tp.sum(1), fp.sum(1), fn.sum(1)
    # Samples F1: each movie's F1 between its true and predicted genre sets (0 when both are empty).
    overlap, sizes = (y & p).sum(1), y.sum(1) + p.sum(1)
    movie_f1 = _ratio(2.0 * overlap, sizes.astype(np.float64))
    return {
        "micro_precision": _ratio(TP, TP + FP),
        "micro_recall": _ratio(TP, TP + FN),
        "micro_f1": _ratio(2 * TP, 2 * TP + FP + FN),
        "macro_f1": per_genre_f1.mean(1),
        "samples_f1": counts @ movie_f1 / counts.sum(1),
        "weighted_f1": _ratio((per_genre_f1 * support).sum(1), support.sum(1)),
        "per_genre_f1": per_genre_f1,
    }


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    """The percentile bootstrap interval [lo, hi] of `values` (one per resample)."""
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(np.asarray(values, dtype=np.float64), [tail, 100.0 - tail], axis=0)
    return [float(lo), float(hi)]


def two_sided_p_value(differences: np.ndarray) -> float:
    """Bootstrap p-value of "no difference": twice the smaller share of resamples on either side of 0.

    It is never reported below 1 / resamples (the resolution of the bootstrap).
    """
    d = np.asarray(differences, dtype=np.float64)
    p = 2.0 * min(np.mean(d <= 0.0), np.mean(d >= 0.0))
    return float(min(1.0, max(p, 1.0 / d.size)))


@dataclass
class Bootstrap:
    """Shared resamples of one test set; `add` each row's predictions, then read intervals and differences."""

    y_true: np.ndarray
    counts: np.ndarray
    level: float = LEVEL

    def __post_init__(self):
        self.rows: dict[str, dict[str, np.ndarray]] = {}

    @classmethod
    def draw(cls, y_true: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> "Bootstrap":
        y = check_labels(y_true)
        return cls(y, resample_counts(len(y), n_resamples, seed))

    @property
    def n_resamples(self) -> int:
        return int(self.counts.shape[0])

    def add(self, row: str, y_pred: np.ndarray) -> None:
        self.rows[row] = resampled_metrics(self.y_true, y_pred, self.counts)

    def intervals(self, row: str) -> dict[str, list[float]]:
        """{metric: [lo, hi]} for every summary metric of `row`."""
        return {key: percentile_interval(self.rows[row][key], self.level) for key in SUMMARY_KEYS}

    def per_genre_f1_intervals(self, row: str) -> np.ndarray:
        """[G, 2] intervals of each genre's F1."""
        tail = (1.0 - self.level) / 2.0 * 100.0
        return np.percentile(self.rows[row]["per_genre_f1"], [tail, 100.0 - tail], axis=0).T

    def compare(self, row: str, against: str, metric: str, observed: dict[str, dict]) -> dict:
        """Paired difference `row - against` of `metric`: observed value, interval and p-value.

        `observed` maps row names to their metrics on the full test set (the point estimates).
        """
        differences = self.rows[row][metric] - self.rows[against][metric]
        return {
            "row": row, "against": against, "metric": metric,
            "difference": float(observed[row][metric] - observed[against][metric]),
            "ci": percentile_interval(differences, self.level),
            "p_value": two_sided_p_value(differences),
        }
