"""How well a title decoder explains real titles, and whether the poster is what helps.

- Cross-entropy and perplexity per BPE token and per character.
- The same titles scored with the true poster, a zero vector and posters shuffled across movies.
- The swap test: bits per character with shuffled real posters minus with the true poster, with
  a bootstrap interval over titles. Positive: the poster makes its own title cheaper to encode.
- Made-up titles: each poster's true title ranked among other titles by mean log-likelihood per
  token and by pointwise mutual information log P(t | poster) - log P(t | zero poster), with the
  length bias of the summed log-likelihood beside them. Candidates with the true title's text (in
  the tokenizer's normal form: "Saw 2" and "Saw 3" are one title to it) are left out; remaining
  exact ties are broken at random (the true title takes a uniformly random place among its ties).
- Generated titles: share new and share of real words (both sides in the tokenizer's normal form),
  distinct-1/2, lengths against real titles.

Characters are those of the original titles (plus one for the end), not of their decoded subwords,
so that tokenizers and languages are compared on the same text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from movietitles.evaluation.bootstrap import percentile_interval, resample_counts
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
                 batch_size: int = 1024, poster_text: np.ndarray | None = None) -> TitleScores:
    """log P of each (poster row, title) pair; the lists are the tokenizer's teacher-forcing pairs."""
    tokens, targets = tokenizer.pad(token_lists), tokenizer.pad(target_lists)
    log_probs = token_log_probs(model, poster, genres, tokens, targets, pad_id=tokenizer.pad_id,
                                batch_size=batch_size, poster_text=poster_text)
    return TitleScores(log_probs.sum(axis=1).astype(np.float64), (targets != tokenizer.pad_id).sum(axis=1))


def perplexity(scores: TitleScores, characters: np.ndarray) -> dict[str, float]:
    """Per BPE token and per character (the title's characters plus one for its end)."""
    nats = -float(scores.log_prob.sum())
    per_token = nats / float(scores.tokens.sum())
    per_char = nats / float((characters + 1).sum())
    return {"cross_entropy_per_token": per_token, "perplexity_per_token": math.exp(per_token),
            "cross_entropy_per_char": per_char, "perplexity_per_char": math.exp(per_char),
            "bits_per_char": per_char / math.log(2)}


def bpemb_coverage(tokenizer, titles: list[str]) -> dict[str, float]:
    """How much of the titles BPEmb's form leaves out, which bits per character do not pay for.

    The decoder writes BPEmb's form of a title: lowercased, digits as 0, characters its vocabulary lacks dropped,
    cut after `max_len - 1` subwords. Bits per character divide the cost of that form by the title's own
    characters, so they are a lower bound on the cost of the exact title; the case and digits, and the characters
    counted here, are the part not scored. Returns the share of titles written whole (up to case and digits) and
    the share of their characters not written (dropped or cut).
    """
    whole, lost, total = 0, 0, 0
    for title in titles:
        exact = " ".join(re.sub(r"\d", "0", title.lower()).split())
        ids = tokenizer.encode(title)
        written = " ".join(tokenizer.decode(ids[: tokenizer.max_len - 1]).split())
        whole += written == exact
        lost += max(len(exact) - len(written), 0)
        total += len(exact)
    return {"titles": len(titles), "share_of_titles_written_whole": whole / max(len(titles), 1),
            "share_of_characters_not_written": lost / max(total, 1)}


def swap_test(true: TitleScores, shuffled: list[TitleScores], characters: np.ndarray,
              n_resamples: int = 1000, seed: int = 0) -> dict:
    """Bits per character saved by the true poster against shuffled real posters, with a 95% interval.

    Each title's shuffled cost is its mean over the `shuffled` derangements; the interval resamples titles.
    """
    nats_true = -true.log_prob
    nats_shuffled = -np.mean([s.log_prob for s in shuffled], axis=0)
    chars = (characters + 1).astype(np.float64)
    counts = resample_counts(len(chars), n_resamples, seed)
    to_bits = lambda nats, c: nats / c / math.log(2)  # noqa: E731
    gains = to_bits(counts @ (nats_shuffled - nats_true), counts @ chars)
    return {"bits_per_char_true": to_bits(nats_true.sum(), chars.sum()),
            "bits_per_char_shuffled": to_bits(nats_shuffled.sum(), chars.sum()),
            "gain_bits_per_char": to_bits((nats_shuffled - nats_true).sum(), chars.sum()),
            "gain_interval": percentile_interval(gains),
            "share_of_titles_cheaper_with_true_poster": float(np.mean(nats_true < nats_shuffled)),
            "shuffles": len(shuffled), "resamples": n_resamples}


def candidate_sets(normal_forms: list[str], n_candidates: int, seed: int, limit: int | None = None) -> np.ndarray:
    """[P, n_candidates] title indices per poster: its own title first, then others whose normal form
    (the tokenizer's, so that titles it cannot tell apart are not candidates) differs."""
    rng = np.random.default_rng(seed)
    normalised = np.asarray(normal_forms)
    posters = np.arange(len(normalised)) if limit is None else rng.permutation(len(normalised))[:limit]
    rows = []
    for i in posters:
        others = np.flatnonzero(normalised != normalised[i])
        if len(others) < n_candidates - 1:
            raise ValueError(f"only {len(others)} other distinct titles for {n_candidates - 1} candidates")
        rows.append(np.concatenate([[i], rng.choice(others, n_candidates - 1, replace=False)]))
    return np.asarray(rows)


def rank_of_true(scores: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rank (1 = best) of column 0 in each row; among exactly tied scores the true title takes a
    uniformly random place (seeded), so ties neither help nor hurt it on average."""
    better = (scores[:, 1:] > scores[:, :1]).sum(axis=1)
    tied = (scores[:, 1:] == scores[:, :1]).sum(axis=1)
    return 1 + better + np.random.default_rng(seed).integers(0, tied + 1)


def ranking_metrics(ranks: np.ndarray, n_candidates: int, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Recall@1/@10 and mean rank, each with a 95% bootstrap interval over posters, beside chance."""
    counts = resample_counts(len(ranks), n_resamples, seed)
    per_poster = {"recall_at_1": (ranks <= 1).astype(float), "recall_at_10": (ranks <= 10).astype(float),
                  "mean_rank": ranks.astype(float)}
    metrics = {}
    for name, values in per_poster.items():
        metrics[name] = float(values.mean())
        metrics[f"{name}_interval"] = percentile_interval(counts @ values / len(ranks))
    return {**metrics, "chance_recall_at_1": 1 / n_candidates,
            "chance_recall_at_10": min(10, n_candidates) / n_candidates, "chance_mean_rank": (n_candidates + 1) / 2}


RANKING_POSTERS_PER_BATCH = 64


def _pair(title_set, titles: np.ndarray, posters: np.ndarray):
    """A TitleSet whose row r is title `titles[r]` with the poster (vector, text) and genres of `posters[r]`."""
    pairs = title_set.subset(titles)
    pairs.poster, pairs.genres = title_set.poster[posters], title_set.genres[posters]
    if title_set.poster_text is not None:
        pairs.poster_text = title_set.poster_text[posters]
    return pairs


def score_title_set(model, tokenizer, title_set) -> TitleScores:
    """`score_titles` of a TitleSet: each title with its row's poster vector, genres and poster text."""
    return score_titles(model, tokenizer, title_set.tokens, title_set.targets, title_set.poster, title_set.genres,
                        poster_text=title_set.poster_text)


def made_up_title_ranking(model, tokenizer, title_set, n_candidates: int = 100, seed: int = 0,
                          limit: int | None = None) -> dict:
    """Rank each test poster's true title among `n_candidates - 1` other test titles."""
    normal_forms = [tokenizer.normal_form(t) for t in title_set.movies["title"]]
    sets = candidate_sets(normal_forms, n_candidates, seed, limit)
    paired_parts, zero_parts = [], []
    # A few posters at a time: each pair holds its own copy of the poster feature.
    for start in range(0, len(sets), RANKING_POSTERS_PER_BATCH):
        part = sets[start:start + RANKING_POSTERS_PER_BATCH]
        # Row r: candidate title `candidates[r]` beside poster `posters[r]` (and that movie's genres).
        pairs = _pair(title_set, part.ravel(), np.repeat(part[:, 0], n_candidates))
        paired_parts.append(score_title_set(model, tokenizer, pairs))
        zero_parts.append(score_title_set(model, tokenizer, pairs.without_posters(tokenizer.pad_id)))
    paired, zero = (TitleScores(np.concatenate([s.log_prob for s in parts]), np.concatenate([s.tokens for s in parts]))
                    for parts in (paired_parts, zero_parts))
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
            **ranking_metrics(rank_of_true(scores, seed), n_candidates, seed=seed),
            # The length bias: how long the top-scored candidate is, against the candidates on average.
            "mean_tokens_of_top_candidate": float(chosen.mean()),
        }
    result["mean_tokens_of_candidates"] = float(lengths.mean())
    result["mean_tokens_of_true_titles"] = float(lengths[:, 0].mean())
    return result


def _normalise(title: str) -> str:
    return " ".join(title.casefold().split())


def generation_metrics(generated: list[str], real: list[str], training_titles: list[str],
                       normal_form=_normalise) -> dict:
    """Share of generated titles not among the training titles, share of generated words seen in them,
    distinct-1/2 over words, and lengths. Both sides are compared in `normal_form` (pass the tokenizer's:
    generated text is already in it, e.g. lowercase with digits as 0)."""
    seen = {normal_form(t) for t in training_titles}
    known_words = {w for t in seen for w in t.split()}
    words = [normal_form(t).split() for t in generated]
    unigrams = [w for ws in words for w in ws]
    bigrams = [pair for ws in words for pair in zip(ws, ws[1:])]
    real_lengths = np.array([len(t.split()) for t in real])
    gen_lengths = np.array([len(ws) for ws in words])
    return {
        "generated": len(generated),
        "share_new": float(np.mean([" ".join(ws) not in seen for ws in words])),
        "share_real_words": float(np.mean([w in known_words for w in unigrams])) if unigrams else 0.0,
        "share_empty": float(np.mean([not ws for ws in words])),
        "distinct_1": len(set(unigrams)) / max(len(unigrams), 1),
        "distinct_2": len(set(bigrams)) / max(len(bigrams), 1),
        "mean_words_generated": float(gen_lengths.mean()),
        "mean_words_real": float(real_lengths.mean()),
        "median_words_generated": float(np.median(gen_lengths)),
        "median_words_real": float(np.median(real_lengths)),
    }
