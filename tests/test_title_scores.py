"""The title-scoring arithmetic: perplexities, shuffles, candidate sets, ranks, generation metrics."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movietitles.evaluation.title_scores import (
    TitleScores, candidate_sets, generation_metrics, perplexity, rank_of_true, ranking_metrics,
    swap_test)
from movietitles.generator.data import TitleSet, derangement
from movietitles.generator.tokenizer import TitleTokenizer
from needs import need_path

BPEMB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "bpemb"


@pytest.fixture(scope="module")
def tokenizer():
    need_path(BPEMB_DIR / "en", "BPEmb (en)")
    return TitleTokenizer({"lang": "en", "vs": 1000, "dim": 25, "cache_dir": str(BPEMB_DIR)}, max_len=4)


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
    titles = ["cinderella", "cinderella", "alien", "heat", "up", "jaws"]
    sets = candidate_sets(titles, n_candidates=4, seed=0)
    assert sets.shape == (6, 4) and list(sets[:, 0]) == list(range(6))
    assert not {0, 1} <= set(sets[0]) and len({tuple(sorted(r)) for r in sets}) > 1
    for row in sets:
        assert len(set(row)) == 4
    with pytest.raises(ValueError, match="distinct titles"):
        candidate_sets(titles, n_candidates=6, seed=0)


def test_titles_the_tokenizer_cannot_tell_apart_are_not_candidates(tokenizer):
    # "Saw 2" and "Saw 3" are both "saw 0" to BPEmb: scored identically, they are not a made-up title.
    titles = ["Saw 2", "Saw 3", "SAW 4", "Alien", "Heat", "Jaws"]
    assert tokenizer.normal_form("Saw 2") == tokenizer.normal_form("SAW  3") == "saw 0"
    sets = candidate_sets([tokenizer.normal_form(t) for t in titles], n_candidates=4, seed=0)
    for row in sets[:3]:
        assert not set(row[1:]) & {0, 1, 2}


def test_rank_of_true_places_it_at_random_among_exact_ties():
    scores = np.array([[0.9, 0.1, 0.2], [0.1, 0.2, 0.3]])
    np.testing.assert_array_equal(rank_of_true(scores), [1, 3])
    tied = np.zeros((4000, 5))  # every candidate tied with the true title: on average the middle rank
    ranks = rank_of_true(tied, seed=1)
    assert set(np.unique(ranks)) == {1, 2, 3, 4, 5} and ranks.mean() == pytest.approx(3.0, abs=0.1)
    np.testing.assert_array_equal(ranks, rank_of_true(tied, seed=1))
    metrics = ranking_metrics(np.array([1, 2, 3]), n_candidates=3, n_resamples=200)
    assert metrics["recall_at_1"] == pytest.approx(1 / 3) and metrics["mean_rank"] == pytest.approx(2.0)
    low, high = metrics["recall_at_1_interval"]
    assert 0 <= low < 1 / 3 < high <= 1 and metrics["mean_rank_interval"][0] < 2.0 < metrics["mean_rank_interval"][1]
    assert metrics["chance_recall_at_1"] == pytest.approx(1 / 3) and metrics["chance_mean_rank"] == 2.0


def test_swap_test_by_hand():
    true = TitleScores(log_prob=np.array([-2.0, -4.0]), tokens=np.array([2, 2]))
    shuffled = [TitleScores(np.array([-3.0, -4.0]), np.array([2, 2])),
                TitleScores(np.array([-5.0, -4.0]), np.array([2, 2]))]
    result = swap_test(true, shuffled, characters=np.array([3, 1]), n_resamples=300)
    # true: 6 nats; shuffled: mean (4 + 4) = 8 nats; over 3+1 + 1+1 = 6 characters
    assert result["bits_per_char_true"] == pytest.approx(6 / 6 / math.log(2))
    assert result["gain_bits_per_char"] == pytest.approx(2 / 6 / math.log(2))
    low, high = result["gain_interval"]
    assert 0 <= low <= result["gain_bits_per_char"] <= high  # title 2 gains nothing, title 1 gains 2 nats
    assert result["share_of_titles_cheaper_with_true_poster"] == 0.5


def test_bits_per_character_count_the_original_title(tokenizer):
    # max_len 4 cuts the long title; "☃" is not a BPEmb character. Both still count in the denominator.
    titles = pd.DataFrame({"title": ["A very long title indeed", "Snow ☃"]})
    pairs = [tokenizer.teacher_forcing(tokenizer.encode(t)) for t in titles["title"]]
    tset = TitleSet(titles, [], np.zeros((2, 1)), np.zeros((2, 0)), [p[0] for p in pairs], [p[1] for p in pairs])
    np.testing.assert_array_equal(tset.characters, [24, 6])
    assert len(tokenizer.decode(pairs[0][1])) < 24


def test_generated_titles_are_compared_in_the_tokenizers_normal_form(tokenizer):
    # Generated text is in BPEmb's form (digits -> 0): "Rocky 2" was seen, "rocky 0" is not new.
    metrics = generation_metrics(["rocky 0", "rocky glorp"], real=["Heat"], training_titles=["Rocky 2", "Heat"],
                                 normal_form=tokenizer.normal_form)
    assert metrics["share_new"] == pytest.approx(1 / 2)
    assert metrics["share_real_words"] == pytest.approx(3 / 4)   # rocky, 0, rocky seen; glorp not


def test_generation_metrics_by_hand():
    generated = ["The Dark Night", "the dark night", "Love Story", "Night of the Dark"]
    metrics = generation_metrics(generated, real=["Alien", "The Big Sleep"], training_titles=["Love  story"])
    assert metrics["share_new"] == pytest.approx(3 / 4)
    # words: the dark night the dark night love story night of the dark -> 12 words, 6 distinct
    assert metrics["distinct_1"] == pytest.approx(6 / 12)
    # bigrams: (the dark) (dark night) x2, (love story), (night of) (of the) (the dark) -> 8 bigrams, 5 distinct
    assert metrics["distinct_2"] == pytest.approx(5 / 8)
    assert metrics["mean_words_real"] == pytest.approx(2.0) and metrics["median_words_generated"] == 3.0


def test_shuffled_posters_mean_one_thing_in_training_and_evaluation():
    """Every title gets another movie's poster (vector and text), never its own; its own genres stay."""
    n = 9
    titles = pd.DataFrame({"title": [f"t{i}" for i in range(n)]})
    tset = TitleSet(titles, ["A", "B"], np.arange(n, dtype=np.float32)[:, None], np.eye(n, 2), [[1]] * n, [[2]] * n,
                    np.arange(n)[:, None])
    shuffled = tset.with_shuffled_posters(seed=3)
    assert (shuffled.poster[:, 0] != np.arange(n)).all()
    assert sorted(shuffled.poster[:, 0]) == list(range(n))
    np.testing.assert_array_equal(shuffled.poster_text[:, 0], shuffled.poster[:, 0])
    np.testing.assert_array_equal(shuffled.genres, tset.genres)


def test_bpemb_coverage_counts_what_bits_per_character_leave_out(tokenizer):
    from movietitles.evaluation.title_scores import bpemb_coverage

    # max_len 4: three subwords at most. "Up" is written whole (case and digits do not count), "Snow ☃" loses its
    # snowman, the long title its tail.
    assert bpemb_coverage(tokenizer, ["Up", "UP 2"])["share_of_titles_written_whole"] == 1.0
    coverage = bpemb_coverage(tokenizer, ["Up", "Snow ☃", "A very long title indeed"])
    assert coverage["titles"] == 3 and coverage["share_of_titles_written_whole"] == pytest.approx(1 / 3)
    assert 0 < coverage["share_of_characters_not_written"] < 1
