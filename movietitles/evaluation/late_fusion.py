"""Late fusion of two genre models without training (Method 1).

Score combiners work on per-genre probabilities and are normalised so that, for every genre,
P(g) + P(not g) = 1:  fused = f(p, q) / (f(p, q) + f(1 - p, 1 - q)).
Set combiners work on 0/1 predictions and return 0/1 predictions.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

EPS = 1e-12


def _check_probabilities(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"late fusion: score shapes differ: {p.shape} vs {q.shape}")
    for name, a in (("p", p), ("q", q)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"late fusion: {name} contains NaN or infinite scores")
        if a.size and (a.min() < 0.0 or a.max() > 1.0):
            raise ValueError(f"late fusion: {name} must be probabilities in [0, 1], "
                             f"got range [{a.min():.4g}, {a.max():.4g}]")
    return p, q


def _normalised(f: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def combine(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        p, q = _check_probabilities(p, q)
        pos = f(p, q)
        neg = f(1.0 - p, 1.0 - q)
        total = pos + neg
        # 0/0 happens only for the product of fully contradicting models (p=1, q=0): undecided.
        return np.where(total > EPS, pos / np.maximum(total, EPS), 0.5)

    combine.__name__ = f.__name__
    combine.__doc__ = f"Normalised {f.__name__} fusion: f(p,q) / (f(p,q) + f(1-p,1-q))."
    return combine


def _mean(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p + q) / 2.0


def _product(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return p * q


def _max(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.maximum(p, q)


mean_fusion = _normalised(_mean)
product_fusion = _normalised(_product)
max_fusion = _normalised(_max)

COMBINERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean": mean_fusion,
    "product": product_fusion,
    "max": max_fusion,
}


def fuse(p: np.ndarray, q: np.ndarray, how: str) -> np.ndarray:
    """Fuse two N x G probability matrices with the combiner named `how` (see COMBINERS)."""
    try:
        combine = COMBINERS[how]
    except KeyError:
        raise ValueError(f"unknown fusion {how!r}; choose one of {sorted(COMBINERS)}") from None
    return combine(p, q)


def _check_predictions(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"set fusion: prediction shapes differ: {a.shape} vs {b.shape}")
    for name, x in (("pred_a", a), ("pred_b", b)):
        if not np.isin(x, (0, 1)).all():
            raise ValueError(f"set fusion: {name} must hold 0/1 predictions "
                             "(threshold scores first)")
    return a.astype(bool), b.astype(bool)


def union(pred_a: np.ndarray, pred_b: np.ndarray) -> np.ndarray:
    """A genre is predicted if either model predicts it (OR). Returns int8 0/1."""
    a, b = _check_predictions(pred_a, pred_b)
    return (a | b).astype(np.int8)


def intersection(pred_a: np.ndarray, pred_b: np.ndarray) -> np.ndarray:
    """A genre is predicted only if both models predict it (AND). Returns int8 0/1."""
    a, b = _check_predictions(pred_a, pred_b)
    return (a & b).astype(np.int8)


def _logits(scores: list[np.ndarray], genre: int) -> np.ndarray:
    p = np.column_stack([np.clip(s[:, genre], 1e-6, 1 - 1e-6) for s in scores])
    return np.log(p / (1.0 - p))


class LearnedFusion:
    """Late fusion with weights learned on validation: per genre, a logistic regression on the models' logits.

    With weights (1, 1) and no bias this is product fusion; learning them lets the stronger model
    of each genre count more. A genre whose validation labels are all 0 or all 1 keeps product fusion.
    """

    def __init__(self, C: float = 1.0):
        self.C = C
        self.models: list = []

    def fit(self, scores: list[np.ndarray], labels: np.ndarray) -> "LearnedFusion":
        from sklearn.linear_model import LogisticRegression

        labels = np.asarray(labels)
        self.models = []
        for g in range(labels.shape[1]):
            y = labels[:, g]
            fitted = None
            if 0 < y.sum() < len(y):
                fitted = LogisticRegression(C=self.C, max_iter=1000).fit(_logits(scores, g), y)
            self.models.append(fitted)
        return self

    def predict(self, scores: list[np.ndarray]) -> np.ndarray:
        product = product_fusion(*scores) if len(scores) == 2 else np.mean(scores, axis=0)
        fused = np.array(product, dtype=np.float64)
        for g, model in enumerate(self.models):
            if model is not None:
                fused[:, g] = model.predict_proba(_logits(scores, g))[:, 1]
        return fused


def cross_fitted_fusion(scores: list[np.ndarray], labels: np.ndarray, folds: int = 5, seed: int = 0,
                        C: float = 1.0) -> np.ndarray:
    """Out-of-fold LearnedFusion scores of the movies it learns from (for thresholds and model choice)."""
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(labels)) % folds
    fused = np.zeros(labels.shape, dtype=np.float64)
    for k in range(folds):
        held_out = fold_of == k
        if not held_out.any():  # fewer movies than folds
            continue
        learned = LearnedFusion(C).fit([s[~held_out] for s in scores], labels[~held_out])
        fused[held_out] = learned.predict([s[held_out] for s in scores])
    return fused
