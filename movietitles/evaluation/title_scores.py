"""How well a title decoder explains real titles, and whether the poster is what helps.

- Cross-entropy and perplexity per BPE token and per character.
- The same titles scored with the true poster, a zero vector and posters shuffled across movies.
- Made-up titles: each poster's true title ranked among other titles by mean log-likelihood per
  token and by pointwise mutual information log P(t | poster) - log P(t | zero poster), with the
  length bias of the summed log-likelihood beside them.
- Generated titles: share new, distinct-1/2, lengths against real titles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from movietitles.generator.model import token_log_probs

RANKERS = ("mean log-likelihood per token", "PMI", "summed log-likelihood")


@dataclass
class TitleScores:
    """Per title: summed log P(title | condition) in nats, and its number of predicted tokens (</s> included)."""

    log_prob: np.ndarray
    tokens: np.ndarray

    @property
    def mean_log_prob(self) -> np.ndarray:
        return self.log_prob / np.maximum(self.tokens, 1)


def score_titles(model, tokenizer, token_lists, target_lists, poster: np.ndarray, genres=None,
                 batch_size: int = 1024) -> TitleScores:
    """log P of each (poster row, title) pair; the lists are the tokenizer's teacher-forcing pairs."""
    tokens, targets = tokenizer.pad(token_lists), tokenizer.pad(target_lists)
    log_probs = token_log_probs(model, poster, genres, tokens, targets, pad_id=tokenizer.pad_id,
                                batch_size=batch_size)
    return TitleScores(log_probs.sum(axis=1).astype(np.float64), (targets != tokenizer.pad_id).sum(axis=1))


def perplexity(scores: TitleScores, characters: np.ndarray) -> dict[str, float]:
    """Per BPE token and per character (the title's characters plus one for its end)."""
    nats = -float(scores.log_prob.sum())
    per_token = nats / float(scores.tokens.sum())
    per_char = nats / float((characters + 1).sum())
    return {"cross_entropy_per_token": per_token, "perplexity_per_token": math.exp(per_token),
            "cross_entropy_per_char": per_char, "perplexity_per_char": math.exp(per_char),
            "bits_per_char": per_char / math.log(2)}


def derangement(n: int, seed: int) -> np.ndarray:
    """A permutation with no fixed point: every movie gets another movie's poster."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    return np.roll(order, 1)[np.argsort(order)]


def candidate_sets(titles: list[str], n_candidates: int, seed: int, limit: int | None = None) -> np.ndarray:
    """[P, n_candidates] title indices per poster: its own title first, then others with different text."""
    rng = np.random.default_rng(seed)
    normalised = np.array([t.casefold().strip() for t in titles])
    posters = np.arange(len(titles)) if limit is None else rng.permutation(len(titles))[:limit]
    rows = []
    for i in posters:
        others = np.flatnonzero(normalised != normalised[i])
        if len(others) < n_candidates - 1:
            raise ValueError(f"only {len(others)} other distinct titles for {n_candidates - 1} candidates")
        rows.append(np.concatenate([[i], rng.choice(others, n_candidates - 1, replace=False)]))
    return np.asarray(rows)


def rank_of_true(scores: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of column 0 in each row; ties count against the true title."""
    return 1 + (scores[:, 1:] >= scores[:, :1]).sum(axis=1)


def ranking_metrics(ranks: np.ndarray, n_candidates: int) -> dict[str, float]:
    return {"recall_at_1": float((ranks <= 1).mean()), "recall_at_10": float((ranks <= 10).mean()),
            "mean_rank": float(ranks.mean()),
            "chance_recall_at_1": 1 / n_candidates, "chance_recall_at_10": min(10, n_candidates) / n_candidates,
            "chance_mean_rank": (n_candidates + 1) / 2}


def made_up_title_ranking(model, tokenizer, title_set, n_candidates: int = 100, seed: int = 0,
                          limit: int | None = None) -> dict:
    """Rank each test poster's true title among `n_candidates - 1` other test titles."""
    titles = title_set.movies["title"].tolist()
    sets = candidate_sets(titles, n_candidates, seed, limit)
    posters, candidates = np.repeat(sets[:, 0], n_candidates), sets.ravel()
    genres = None if title_set.genres is None else title_set.genres[posters]
    paired = score_titles(model, tokenizer, [title_set.tokens[j] for j in candidates],
                          [title_set.targets[j] for j in candidates], title_set.poster[posters], genres)
    zero = score_titles(model, tokenizer, [title_set.tokens[j] for j in candidates],
                        [title_set.targets[j] for j in candidates], np.zeros_like(title_set.poster[posters]), genres)
    shape = sets.shape
    by_ranker = {
        "mean log-likelihood per token": paired.mean_log_prob.reshape(shape),
        "PMI": (paired.log_prob - zero.log_prob).reshape(shape),
        "summed log-likelihood": paired.log_prob.reshape(shape),
    }
    lengths = paired.tokens.reshape(shape)
    result = {"posters": len(sets), "candidates": n_candidates, "rankers": {}}
    for name, scores in by_ranker.items():
        chosen = lengths[np.arange(len(sets)), scores.argmax(axis=1)]
        result["rankers"][name] = {
            **ranking_metrics(rank_of_true(scores), n_candidates),
            # The length bias: how long the top-scored candidate is, against the candidates on average.
            "mean_tokens_of_top_candidate": float(chosen.mean()),
        }
    result["mean_tokens_of_candidates"] = float(lengths.mean())
    result["mean_tokens_of_true_titles"] = float(lengths[:, 0].mean())
    return result


def _normalise(title: str) -> str:
    return " ".join(title.casefold().split())


def generation_metrics(generated: list[str], real: list[str], training_titles: list[str]) -> dict:
    """Share of generated titles not among the training titles, distinct-1/2 over words, and lengths."""
    seen = {_normalise(t) for t in training_titles}
    words = [_normalise(t).split() for t in generated]
    unigrams = [w for ws in words for w in ws]
    bigrams = [pair for ws in words for pair in zip(ws, ws[1:])]
    real_lengths = np.array([len(t.split()) for t in real])
    gen_lengths = np.array([len(ws) for ws in words])
    return {
        "generated": len(generated),
        "share_new": float(np.mean([_normalise(t) not in seen for t in generated])),
        "share_empty": float(np.mean([not ws for ws in words])),
        "distinct_1": len(set(unigrams)) / max(len(unigrams), 1),
        "distinct_2": len(set(bigrams)) / max(len(bigrams), 1),
        "mean_words_generated": float(gen_lengths.mean()),
        "mean_words_real": float(real_lengths.mean()),
        "median_words_generated": float(np.median(gen_lengths)),
        "median_words_real": float(np.median(real_lengths)),
    }
