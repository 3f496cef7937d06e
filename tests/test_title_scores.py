"""The title-scoring arithmetic: perplexities, shuffles, candidate sets, ranks, generation metrics."""

import math

import numpy as np
import pytest

from movietitles.evaluation.title_scores import (
    TitleScores, candidate_sets, derangement, generation_metrics, perplexity, rank_of_true, ranking_metrics)


def test_perplexity_per_token_and_per_character():
    scores = TitleScores(log_prob=np.array([-2.0, -4.0]), tokens=np.array([2, 2]))
    result = perplexity(scores, characters=np.array([3, 1]))
    assert result["cross_entropy_per_token"] == pytest.approx(1.5)
    assert result["perplexity_per_token"] == pytest.approx(math.exp(1.5))
    assert result["cross_entropy_per_char"] == pytest.approx(6.0 / 6)  # 3+1 characters, +1 end each
    assert result["bits_per_char"] == pytest.approx(1.0 / math.log(2))
    np.testing.assert_allclose(scores.mean_log_prob, [-1.0, -2.0])


def test_shuffled_posters_never_stay_with_their_movie():
    for n in (2, 3, 17, 500):
        order = derangement(n, seed=n)
        assert sorted(order) == list(range(n)) and not np.any(order == np.arange(n))


def test_candidates_start_with_the_true_title_and_exclude_its_duplicates():
    titles = ["Cinderella", "cinderella", "Alien", "Heat", "Up", "Jaws"]
    sets = candidate_sets(titles, n_candidates=4, seed=0)
    assert sets.shape == (6, 4) and list(sets[:, 0]) == list(range(6))
    assert not {0, 1} <= set(sets[0]) and len({tuple(sorted(r)) for r in sets}) > 1
    for row in sets:
        assert len(set(row)) == 4
    with pytest.raises(ValueError, match="distinct titles"):
        candidate_sets(titles, n_candidates=6, seed=0)


def test_rank_of_true_counts_ties_against_it():
    scores = np.array([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.1, 0.2, 0.3]])
    np.testing.assert_array_equal(rank_of_true(scores), [1, 2, 3])
    metrics = ranking_metrics(rank_of_true(scores), n_candidates=3)
    assert metrics["recall_at_1"] == pytest.approx(1 / 3) and metrics["mean_rank"] == pytest.approx(2.0)
    assert metrics["chance_recall_at_1"] == pytest.approx(1 / 3) and metrics["chance_mean_rank"] == 2.0


def test_generation_metrics_by_hand():
    generated = ["The Dark Night", "the dark night", "Love Story", "Night of the Dark"]
    metrics = generation_metrics(generated, real=["Alien", "The Big Sleep"], training_titles=["Love  story"])
    assert metrics["share_new"] == pytest.approx(3 / 4)
    # words: the dark night the dark night love story night of the dark -> 12 words, 6 distinct
    assert metrics["distinct_1"] == pytest.approx(6 / 12)
    # bigrams: (the dark) (dark night) x2, (love story), (night of) (of the) (the dark) -> 8 bigrams, 5 distinct
    assert metrics["distinct_2"] == pytest.approx(5 / 8)
    assert metrics["mean_words_real"] == pytest.approx(2.0) and metrics["median_words_generated"] == 3.0
