import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from movietitles.evaluation.baselines import (constant_prediction, embedding_logreg,
                                              label_prior_scores, tfidf_logreg)
from movietitles.evaluation.thresholds import predict, tune_thresholds

GENRES = ["Horror", "Romance", "Comedy"]
FILLER = ("night house city road river dark last first return king queen summer winter story "
          "man woman girl boy island star game secret dream").split()


def _titles(rng, n):
    """'zombie' titles are Horror, 'love' titles Romance; Comedy is noise."""
    titles, y = [], np.zeros((n, 3), dtype=np.int8)
    for i in range(n):
        words = list(rng.choice(FILLER, size=rng.integers(1, 4)))
        if rng.random() < 0.15:
            zombie = "zombie" if rng.random() < 0.5 else "zombies"
            words.insert(rng.integers(0, len(words) + 1), zombie)
            y[i, 0] = 1
        if rng.random() < 0.2:
            words.append("love")
            y[i, 1] = 1
        y[i, 2] = rng.random() < 0.3
        titles.append(" ".join(words).title() + f" ({rng.integers(1950, 2020)})")
    return titles, y


def test_label_prior_scores_repeat_training_frequencies():
    y = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]])
    scores = label_prior_scores(y, 5)
    assert scores.shape == (5, 3)
    np.testing.assert_allclose(scores, np.tile([0.75, 0.25, 0.25], (5, 1)))


def test_constant_prediction():
    genres = ["Action", "Comedy", "Drama", "Horror"]
    np.testing.assert_array_equal(constant_prediction(["Comedy", "Drama"], genres, 2),
                                  [[0, 1, 1, 0], [0, 1, 1, 0]])
    with pytest.raises(ValueError, match="Dramma"):
        constant_prediction(["Dramma"], genres, 2)


def test_tfidf_logreg_learns_zombie_means_horror():
    rng = np.random.default_rng(0)
    train, y_train = _titles(rng, 800)
    val, y_val = _titles(rng, 300)
    test, y_test = _titles(rng, 300)
    val_scores, test_scores = tfidf_logreg(train, y_train, val, test, n_jobs=1)
    assert test_scores.shape == (300, 3)
    assert np.all((test_scores >= 0) & (test_scores <= 1))
    assert roc_auc_score(y_test[:, 0], test_scores[:, 0]) > 0.95
    assert roc_auc_score(y_test[:, 1], test_scores[:, 1]) > 0.95
    y_pred = predict(test_scores, tune_thresholds(y_val, val_scores))
    # Chance F1 for a genre of prevalence p (predict everything) is 2p/(1+p) < 0.35 here.
    assert f1_score(y_test[:, 0], y_pred[:, 0]) > 0.9
    assert f1_score(y_test[:, 1], y_pred[:, 1]) > 0.9
    assert roc_auc_score(y_test[:, 2], test_scores[:, 2]) < 0.7   # noise stays noise


def test_embedding_logreg_learns_linear_pattern():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(32, 3))
    x = rng.normal(size=(1200, 32)) * rng.uniform(0.1, 10, size=32)   # unequal scales
    y = ((x / x.std(axis=0)) @ w > 1.5).astype(np.int8)
    model = embedding_logreg(x[:900], y[:900], n_jobs=1)
    scores = model.predict_proba(x[900:])
    assert scores.shape == (300, 3)
    for g in range(3):
        assert roc_auc_score(y[900:, g], scores[:, g]) > 0.95


def test_constant_label_column_is_a_clear_error():
    x = np.random.default_rng(0).normal(size=(10, 4))
    y = np.zeros((10, 2), dtype=np.int8)
    y[::2, 0] = 1
    with pytest.raises(ValueError, match=r"columns \[1\]"):
        embedding_logreg(x, y, n_jobs=1)
    with pytest.raises(ValueError, match="9 rows"):
        embedding_logreg(x[:9], y, n_jobs=1)
