import warnings

import numpy as np
import pytest

from movietitles.evaluation.late_fusion import COMBINERS, fuse, intersection, union


@pytest.fixture
def pq():
    rng = np.random.default_rng(0)
    return rng.random((200, 18)), rng.random((200, 18))


@pytest.mark.parametrize("how", sorted(COMBINERS))
def test_fused_positive_and_negative_sum_to_one(pq, how):
    p, q = pq
    fused = fuse(p, q, how)
    assert fused.shape == p.shape
    assert np.all((fused >= 0) & (fused <= 1))
    # Fusing the complements gives P(not g); normalisation makes the two sum to 1.
    np.testing.assert_allclose(fused + fuse(1 - p, 1 - q, how), 1.0, atol=1e-12)
    np.testing.assert_allclose(fused, fuse(q, p, how))


def test_fusion_matches_hand_computed_values():
    p = np.array([[0.8, 0.9]])
    q = np.array([[0.6, 0.2]])
    np.testing.assert_allclose(fuse(p, q, "mean"), [[0.7, 0.55]])
    # product: pq / (pq + (1-p)(1-q)) = .48/.56 and .18/.26
    np.testing.assert_allclose(fuse(p, q, "product"), [[6 / 7, 9 / 13]])
    # max: max(p,q) / (max(p,q) + max(1-p,1-q)) = .8/1.2 and .9/1.7
    np.testing.assert_allclose(fuse(p, q, "max"), [[2 / 3, 9 / 17]])


def test_contradicting_certain_models_are_undecided_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused = fuse(np.array([[1.0, 0.0, 1.0]]), np.array([[0.0, 1.0, 1.0]]), "product")
    np.testing.assert_allclose(fused, [[0.5, 0.5, 1.0]])


def test_bad_fusion_inputs_raise():
    p = np.full((2, 3), 0.5)
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse(p, p, "median")
    with pytest.raises(ValueError, match="shapes differ"):
        fuse(p, p[:1], "mean")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fuse(p, p + 1, "mean")


def test_union_and_intersection_nest():
    rng = np.random.default_rng(1)
    a = (rng.random((300, 18)) < 0.3).astype(np.int8)
    b = (rng.random((300, 18)) < 0.3).astype(np.int8)
    u, i = union(a, b), intersection(a, b)
    assert set(np.unique(u)) <= {0, 1} and set(np.unique(i)) <= {0, 1}
    for x in (a, b):
        assert np.all(u >= x) and np.all(x >= i)
    assert u.sum() > max(a.sum(), b.sum()) > min(a.sum(), b.sum()) > i.sum()
    np.testing.assert_array_equal(union([[1, 0, 0]], [[0, 1, 0]]), [[1, 1, 0]])
    np.testing.assert_array_equal(intersection([[1, 1, 0]], [[0, 1, 0]]), [[0, 1, 0]])


def test_set_fusion_rejects_scores():
    with pytest.raises(ValueError, match="0/1"):
        union(np.array([[0.3, 1.0]]), np.array([[0, 1]]))


def test_learned_fusion_weighs_the_informative_model_and_is_cross_fitted():
    from movietitles.evaluation.late_fusion import LearnedFusion, cross_fitted_fusion, product_fusion

    rng = np.random.default_rng(0)
    y = (rng.random((600, 2)) < 0.3).astype(np.int8)
    informative = np.clip(0.2 + 0.5 * y + rng.normal(0, 0.15, y.shape), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, y.shape)
    learned = LearnedFusion().fit([informative, noise], y)
    for g, model in enumerate(learned.models):
        weight_informative, weight_noise = model.coef_[0]
        assert weight_informative > 5 * abs(weight_noise), g
    fused = learned.predict([informative, noise])
    assert fused.shape == y.shape and np.all((fused > 0) & (fused < 1))
    # It separates the classes better than product fusion, which trusts the noise as much.
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(y[:, 0], fused[:, 0]) > roc_auc_score(y[:, 0], product_fusion(informative, noise)[:, 0])
    # Out-of-fold scores of a movie never come from a model that saw it: they differ from in-sample ones.
    out_of_fold = cross_fitted_fusion([informative, noise], y, folds=5, seed=0)
    assert out_of_fold.shape == y.shape and not np.allclose(out_of_fold, fused)
    # A genre without positives keeps product fusion.
    y_empty = y.copy()
    y_empty[:, 1] = 0
    kept = LearnedFusion().fit([informative, noise], y_empty).predict([informative, noise])
    np.testing.assert_allclose(kept[:, 1], product_fusion(informative, noise)[:, 1])
