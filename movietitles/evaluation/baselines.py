"""Reference baselines. Each is fitted on training data only; thresholds are tuned on
validation scores like any other model's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from movietitles.evaluation.thresholds import check_labels

# Chosen on MovieLens titles, per-genre thresholds tuned on validation (validation macro-F1):
#   TF-IDF, 62k train / 8k val: class_weight=None 0.379 (C=2), 0.376 (C=1), 0.373 (C=4),
#     0.360 (C=0.3); "balanced" 0.370 (C=1), 0.368 (C=0.3), 0.366 (C=2), 0.361 (C=4).
#   MiniLM title embeddings (384-d, standardised), 16k train / 4k val: None 0.351 (C=0.002),
#     0.348 (C=0.005), 0.342 (C=0.01), 0.335 (C=0.05), 0.321 (C=1); "balanced" 0.324 (C=0.01)
#     down to 0.310 (C=1).
# With thresholds tuned per genre, re-weighting classes only hurt, so it is off by default.
DEFAULT_CLASS_WEIGHT = None


def label_prior_scores(y_train: np.ndarray, n_test: int) -> np.ndarray:
    """Every row is the training frequency of each genre (a score matrix, n_test x G)."""
    y = check_labels(y_train, "y_train")
    return np.tile(y.mean(axis=0), (int(n_test), 1))


def constant_prediction(genre_names: Sequence[str], genres: Sequence[str], n: int) -> np.ndarray:
    """Predict the same genres (e.g. ["Comedy", "Drama"]) for all n movies: n x G int8 0/1."""
    genres = list(genres)
    unknown = [name for name in genre_names if name not in genres]
    if unknown:
        raise ValueError(f"constant_prediction: unknown genres {unknown}; known: {genres}")
    row = np.isin(genres, list(genre_names)).astype(np.int8)
    return np.tile(row, (int(n), 1))


def _check_xy(n_rows: int, y_train: np.ndarray, what: str) -> np.ndarray:
    y = check_labels(y_train, "y_train")
    if y.shape[0] != n_rows:
        raise ValueError(f"{what} has {n_rows} rows but y_train has {y.shape[0]}")
    constant = np.flatnonzero(y.min(axis=0) == y.max(axis=0))
    if constant.size:
        raise ValueError(f"y_train genre columns {constant.tolist()} are all 0 or all 1: "
                         "a classifier cannot be fitted for them")
    return y


def fit_tfidf_logreg(train_titles: Sequence[str], y_train: np.ndarray, *,
                     class_weight: str | None = DEFAULT_CLASS_WEIGHT, C: float = 2.0,
                     min_df: int = 2, max_iter: int = 1000, n_jobs: int | None = 2) -> Pipeline:
    """Fit TF-IDF (word 1-2-grams + char_wb 2-5-grams) -> one-vs-rest logistic regression."""
    titles = [str(t) for t in train_titles]
    y = _check_xy(len(titles), y_train, "train_titles")
    tfidf = dict(sublinear_tf=True, strip_accents="unicode", min_df=min_df, dtype=np.float32)
    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), **tfidf)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), **tfidf)),
    ])
    classifier = OneVsRestClassifier(
        LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter), n_jobs=n_jobs)
    return Pipeline([("features", features), ("classifier", classifier)]).fit(titles, y)


def tfidf_logreg(train_titles: Sequence[str], y_train: np.ndarray,
                 *predict_titles: Sequence[str], **options) -> list[np.ndarray]:
    """Fit on train_titles and return per-genre probabilities (N x G) for each predict_titles list.

    Example: val_scores, test_scores = tfidf_logreg(train, y_train, val_titles, test_titles).
    options go to fit_tfidf_logreg.
    """
    model = fit_tfidf_logreg(train_titles, y_train, **options)
    return [model.predict_proba([str(t) for t in titles]) for titles in predict_titles]


def embedding_logreg(X_train: np.ndarray, y_train: np.ndarray, *,
                     class_weight: str | None = DEFAULT_CLASS_WEIGHT, C: float = 0.002,
                     max_iter: int = 300, n_jobs: int | None = 2) -> Pipeline:
    """Fitted StandardScaler -> OneVsRestClassifier(LogisticRegression) on embeddings.

    Use .predict_proba(X) for N x G genre probabilities. Works for title, poster or
    concatenated embeddings alike. The strong default regularisation (C) was best on
    standardised MiniLM title embeddings and also makes lbfgs converge in a few dozen steps.
    """
    X = np.asarray(X_train, dtype=np.float32)
    if X.ndim != 2 or not np.all(np.isfinite(X)):
        raise ValueError(f"X_train must be a finite 2-D matrix, got shape {X.shape}")
    y = _check_xy(X.shape[0], y_train, "X_train")
    classifier = OneVsRestClassifier(
        LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter), n_jobs=n_jobs)
    return make_pipeline(StandardScaler(), classifier).fit(X, y)
