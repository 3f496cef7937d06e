import json
import warnings

import numpy as np
import pytest

from movietitles.evaluation.metrics import SUMMARY_KEYS, multilabel_metrics

GENRES = ["A", "B", "C"]
Y_TRUE = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]]
Y_PRED = [[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_matches_hand_computed_numbers():
    m = multilabel_metrics(np.array(Y_TRUE), np.array(Y_PRED), GENRES)
    # tp=4, fp=1, fn=3 over all cells.
    assert m["micro_precision"] == pytest.approx(0.8)
    assert m["micro_recall"] == pytest.approx(0.5714285714)
    assert m["micro_f1"] == pytest.approx(0.6666666667)
    # Per-genre F1 1, 2/3, 2/5; supports 2, 2, 3.
    assert m["macro_f1"] == pytest.approx(0.6888888889)
    assert m["weighted_f1"] == pytest.approx(0.6476190476)
    # Row F1s 2/3, 2/3, 2/3, 1, 0.
    assert m["samples_f1"] == pytest.approx(0.6)
    assert m["per_genre"]["A"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["per_genre"]["B"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 0.6666666667, "support": 2})
    assert m["per_genre"]["C"] == pytest.approx(
        {"precision": 0.5, "recall": 0.3333333333, "f1": 0.4, "support": 3})


def test_plain_python_types_and_key_order():
    m = multilabel_metrics(np.array(Y_TRUE), np.array(Y_PRED), GENRES)
    assert list(m) == [*SUMMARY_KEYS, "per_genre"]
    assert all(type(m[k]) is float for k in SUMMARY_KEYS)
    assert type(m["per_genre"]["C"]["support"]) is int
    assert json.loads(json.dumps(m)) == m


def test_empty_genre_counts_zero_without_warnings():
    y_true = np.array([[1, 0], [1, 0]])
    y_pred = np.array([[1, 0], [0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = multilabel_metrics(y_true, y_pred, ["A", "B"])
    assert m["per_genre"]["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_bad_inputs_raise():
    y = np.array(Y_TRUE)
    with pytest.raises(ValueError, match="threshold scores first"):
        multilabel_metrics(y, y * 0.7, GENRES)
    with pytest.raises(ValueError, match="genres must be 3"):
        multilabel_metrics(y, y, ["A", "B"])
    with pytest.raises(ValueError, match="differs"):
        multilabel_metrics(y, y[:2], GENRES)
