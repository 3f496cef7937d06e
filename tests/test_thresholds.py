import numpy as np
import pytest
from sklearn.metrics import f1_score

from movietitles.evaluation.thresholds import predict, tune_thresholds


def test_recovers_known_thresholds():
    rng = np.random.default_rng(0)
    scores = rng.random((4000, 3))
    true_t = np.array([0.2, 0.5, 0.8])
    y = (scores >= true_t).astype(np.int8)
    tuned = tune_thresholds(y, scores)
    # The best threshold is the smallest positive's score, just above the true one.
    assert np.all(tuned >= true_t) and np.all(tuned - true_t < 0.005)
    np.testing.assert_array_equal(predict(scores, tuned), y)
    on_grid = tune_thresholds(y, scores, grid=np.linspace(0, 1, 101))
    np.testing.assert_allclose(on_grid, true_t)


def _skewed(rng, n):
    """Rare genres whose scores rank well but never reach 0.5."""
    y = (rng.random((n, 4)) < [0.03, 0.05, 0.1, 0.2]).astype(np.int8)
    scores = 0.1 + 0.25 * y + 0.1 * rng.random((n, 4))
    return y, scores


def test_tuned_thresholds_beat_fixed_half_on_fresh_data():
    rng = np.random.default_rng(1)
    y_val, s_val = _skewed(rng, 3000)
    y_test, s_test = _skewed(rng, 3000)
    tuned = tune_thresholds(y_val, s_val)
    f1_tuned = f1_score(y_test, predict(s_test, tuned), average="macro", zero_division=0)
    f1_half = f1_score(y_test, predict(s_test, 0.5), average="macro", zero_division=0)
    assert f1_half == 0.0
    assert f1_tuned > 0.9


def test_genre_without_positives_falls_back_to_half():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.7], [0.8, 0.3]])
    tuned = tune_thresholds(y, scores)
    assert tuned[1] == 0.5
    assert tuned[0] == pytest.approx(0.8)


def test_predict_uses_greater_or_equal_and_checks_shapes():
    scores = np.array([[0.5, 0.49, 0.7]])
    np.testing.assert_array_equal(predict(scores), [[1, 0, 1]])
    np.testing.assert_array_equal(predict(scores, [0.6, 0.4, 0.7]), [[0, 1, 1]])
    with pytest.raises(ValueError, match="one per genre"):
        predict(scores, [0.5, 0.5])
    with pytest.raises(ValueError, match="0/1"):
        tune_thresholds(scores, scores)
    with pytest.raises(ValueError, match="does not match"):
        tune_thresholds(np.array([[1, 0]]), scores)
