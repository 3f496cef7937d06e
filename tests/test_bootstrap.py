import numpy as np
import pytest

from movietitles.evaluation.bootstrap import (Bootstrap, percentile_interval, resample_counts, resampled_metrics,
                                              two_sided_p_value)
from movietitles.evaluation.metrics import SUMMARY_KEYS, multilabel_metrics

GENRES = ["Action", "Comedy", "Drama"]


def test_a_resample_computed_by_hand():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    p = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    # The resample draws movie 0 twice, movie 2 once and movie 1 never.
    got = resampled_metrics(y, p, np.array([[2, 0, 1]]))
    # Rows: [1,0,0]/[1,0,0] twice, [0,1,1]/[1,1,0] once.
    # Action: tp 2, fp 1 -> F1 4/5; Comedy: tp 1 -> F1 1; Drama: fn 1 -> F1 0.
    # Micro: tp 3, fp 1, fn 1 -> P 3/4, R 3/4, F1 3/4. Samples: F1 1, 1 and 2*1/(2+2) = 1/2.
    assert got["micro_precision"][0] == pytest.approx(0.75)
    assert got["micro_recall"][0] == pytest.approx(0.75)
    assert got["micro_f1"][0] == pytest.approx(0.75)
    np.testing.assert_allclose(got["per_genre_f1"][0], [0.8, 1.0, 0.0])
    assert got["macro_f1"][0] == pytest.approx(1.8 / 3)
    assert got["samples_f1"][0] == pytest.approx(2.5 / 3)
    # Weighted by support in the resample: Action 2, Comedy 1, Drama 1.
    assert got["weighted_f1"][0] == pytest.approx((2 * 0.8 + 1.0) / 4)


def test_every_resample_equals_scikit_learn_on_the_drawn_rows():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 3)) < [0.1, 0.4, 0.6]).astype(np.int8)
    p = (rng.random((60, 3)) < 0.4).astype(np.int8)
    counts = resample_counts(60, 5, seed=3)
    got = resampled_metrics(y, p, counts)
    for r, row in enumerate(counts.astype(int)):
        drawn = np.repeat(np.arange(60), row)
        expected = multilabel_metrics(y[drawn], p[drawn], GENRES)
        for key in SUMMARY_KEYS:
            assert got[key][r] == pytest.approx(expected[key], abs=1e-12), key
        np.testing.assert_allclose(got["per_genre_f1"][r], [expected["per_genre"][g]["f1"] for g in GENRES])
    # All-ones counts are the test set itself.
    whole = resampled_metrics(y, p, np.ones((1, 60)))
    assert whole["macro_f1"][0] == pytest.approx(multilabel_metrics(y, p, GENRES)["macro_f1"])


def test_intervals_cover_the_estimate_and_paired_differences_of_a_row_with_itself_are_zero():
    rng = np.random.default_rng(1)
    y = (rng.random((500, 3)) < 0.3).astype(np.int8)
    good = np.where(rng.random(y.shape) < 0.8, y, 1 - y)
    bad = np.where(rng.random(y.shape) < 0.6, y, 1 - y)
    boot = Bootstrap.draw(y, n_resamples=400, seed=0)
    boot.add("good", good)
    boot.add("bad", bad)
    boot.add("good again", good.copy())
    observed = {name: multilabel_metrics(y, pred, GENRES) for name, pred in
                (("good", good), ("bad", bad), ("good again", good))}
    for key, (lo, hi) in boot.intervals("good").items():
        assert lo <= observed["good"][key] <= hi and hi - lo < 0.2
    same = boot.compare("good again", "good", "macro_f1", observed)
    assert same["difference"] == 0.0 and same["ci"] == [0.0, 0.0] and same["p_value"] == 1.0
    better = boot.compare("good", "bad", "macro_f1", observed)
    assert better["difference"] > 0 and better["ci"][0] > 0 and better["p_value"] == pytest.approx(1 / 400)
    assert boot.per_genre_f1_intervals("good").shape == (3, 2)


def test_p_value_and_percentile_interval():
    assert two_sided_p_value(np.r_[np.full(50, -1.0), np.full(50, 1.0)]) == 1.0
    assert two_sided_p_value(np.r_[np.full(10, -1.0), np.full(90, 1.0)]) == pytest.approx(0.2)
    assert percentile_interval(np.arange(1001) / 1000) == pytest.approx([0.025, 0.975])
    with pytest.raises(ValueError, match="cover 4 movies"):
        resampled_metrics(np.zeros((3, 2)), np.zeros((3, 2)), np.ones((2, 4)))
