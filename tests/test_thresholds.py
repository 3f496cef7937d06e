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


def _rare_and_common(rng, n):
    rates = np.array([0.004, 0.01, 0.05, 0.2, 0.4])
    y = (rng.random((n, rates.size)) < rates).astype(np.int8)
    scores = 1 / (1 + np.exp(-(rng.normal(size=y.shape) + 1.5 * y - 2)))
    return y, scores


def test_strategies_are_defined_and_unknown_ones_refused():
    from movietitles.evaluation.thresholds import STRATEGIES, fit_thresholds

    y, s = _rare_and_common(np.random.default_rng(2), 1000)
    found = {strategy: fit_thresholds(y, s, strategy) for strategy in STRATEGIES}
    assert np.ptp(found["global"]) == 0 and found["global"].shape == (5,)
    np.testing.assert_array_equal(found["per_genre"], tune_thresholds(y, s))
    # Infinite shrinkage is the global threshold; none is the per-genre one.
    np.testing.assert_allclose(fit_thresholds(y, s, "shrunk", shrinkage=1e12), found["global"])
    np.testing.assert_allclose(fit_thresholds(y, s, "shrunk", shrinkage=0), found["per_genre"])
    with pytest.raises(ValueError, match="unknown threshold strategy 'best'.*per_genre"):
        fit_thresholds(y, s, "best")


def test_joint_thresholds_improve_micro_plus_macro_over_the_global_start():
    from movietitles.evaluation.thresholds import fit_thresholds

    y, s = _rare_and_common(np.random.default_rng(3), 2000)

    def objective(t):
        p = predict(s, t)
        return f1_score(y, p, average="micro") + f1_score(y, p, average="macro", zero_division=0)

    assert objective(fit_thresholds(y, s, "joint")) > objective(fit_thresholds(y, s, "global")) + 0.01


def test_out_of_sample_scores_expose_overfitted_rare_genre_thresholds():
    """Tuned and scored on the same movies, per-genre thresholds look better than they are."""
    from movietitles.evaluation.thresholds import fit_thresholds, out_of_sample_f1

    y, s = _rare_and_common(np.random.default_rng(4), 1500)
    in_sample = f1_score(y, predict(s, fit_thresholds(y, s, "per_genre")), average="macro", zero_division=0)
    out = out_of_sample_f1(y, s, "per_genre", repeats=5, seed=0)
    assert out["macro_f1"] < in_sample - 0.02
    y_new, s_new = _rare_and_common(np.random.default_rng(5), 20000)
    fresh = f1_score(y_new, predict(s_new, fit_thresholds(y, s, "per_genre")), average="macro", zero_division=0)
    # The out-of-sample estimate is closer to the score on fresh movies than the in-sample one.
    assert abs(out["macro_f1"] - fresh) < abs(in_sample - fresh)
