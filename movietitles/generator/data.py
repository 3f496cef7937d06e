"""Teacher-forcing batches for the title decoder, from the same cached features every task reads.

Elements: `({"poster": [B, Dp] float32, ("genres": [B, G] float32,) "tokens": [B, T] int32},
targets [B, T] int32)`; `tokens` is `<s> t1 … tn`, `targets` is `t1 … tn </s>`, both padded with
PAD to the longest title of the batch (at most `generator.max_len`).
Titles are tokenised once, in Python, when a `TitleSet` is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from movietitles.features.extract import POSTER
from movietitles.features.pipeline import load_split
from movietitles.generator.tokenizer import TitleTokenizer

# Shuffled batches are made of titles of similar length (sorted within windows of this many batches).
SORT_WINDOW = 32


@dataclass
class TitleSet:
    """Movies with their poster vectors (zeros: no poster), genre vectors and teacher-forcing pairs."""

    movies: pd.DataFrame
    genre_names: list[str]
    poster: np.ndarray                 # [N, Dp] float32
    genres: np.ndarray                 # [N, G] float32 (all zero for unlabelled movies)
    tokens: list[list[int]]            # <s> t1 … tn
    targets: list[list[int]]           # t1 … tn </s>

    def __len__(self) -> int:
        return len(self.movies)

    @property
    def num_targets(self) -> int:
        """Predicted tokens (</s> included): the denominator of per-token perplexity."""
        return sum(map(len, self.targets))

    def subset(self, rows) -> "TitleSet":
        rows = np.asarray(rows)
        return TitleSet(self.movies.iloc[rows].reset_index(drop=True), self.genre_names, self.poster[rows],
                        self.genres[rows], [self.tokens[i] for i in rows], [self.targets[i] for i in rows])


def _title_set(movies: pd.DataFrame, genre_names: list[str], poster: np.ndarray, genres: np.ndarray,
               tokenizer: TitleTokenizer) -> TitleSet:
    pairs = [tokenizer.teacher_forcing(ids) for ids in tokenizer.encode_batch(movies["title"].tolist())]
    return TitleSet(movies, genre_names, poster, genres, [p[0] for p in pairs], [p[1] for p in pairs])


def poster_titles(config: dict, split: str, tokenizer: TitleTokenizer) -> TitleSet:
    """Movies of `split` that have a poster (labelled or not), with their cached poster vectors."""
    features = load_split(config, split, (POSTER,), labelled_only=False)
    return _title_set(features.movies, features.genres, features.inputs[POSTER], features.labels, tokenizer)


def title_corpus(config: dict, tokenizer: TitleTokenizer, poster_dim: int) -> TitleSet:
    """Training-split movies WITHOUT a poster (the warm-up corpus), with zero poster vectors.

    Only the train split: validation and test titles never reach the decoder.
    """
    features = load_split(config, "train", (), labelled_only=False, require_poster=False)
    keep = ~features.movies["has_poster"].to_numpy()
    movies = features.movies[keep].reset_index(drop=True)
    return _title_set(movies, features.genres, np.zeros((len(movies), poster_dim), np.float32),
                      features.labels[keep], tokenizer)


def make_generator_dataset(titles: TitleSet, tokenizer: TitleTokenizer, batch_size: int,
                           use_genres: bool = False, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Teacher-forcing batches, each cut to its longest title. Shuffled batches hold titles of similar
    length (sorted within windows of SORT_WINDOW batches), so little time goes into PAD."""
    inputs = {"poster": titles.poster.astype(np.float32), "tokens": tokenizer.pad(titles.tokens, tokenizer.max_len)}
    if use_genres:
        inputs["genres"] = titles.genres.astype(np.float32)
    targets = tokenizer.pad(titles.targets, tokenizer.max_len)
    lengths = np.array([len(t) for t in titles.targets], np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets, lengths))
    if shuffle:
        window = batch_size * SORT_WINDOW

        def sorted_batches(x, y, n):
            order = tf.argsort(n, stable=True)
            take = lambda t: tf.gather(t, order)
            return tf.data.Dataset.from_tensor_slices(({k: take(v) for k, v in x.items()}, take(y), take(n))
                                                      ).batch(batch_size)

        dataset = (dataset.shuffle(len(titles), seed=seed, reshuffle_each_iteration=True)
                   .batch(window).flat_map(sorted_batches)
                   .shuffle(2 * SORT_WINDOW, seed=seed, reshuffle_each_iteration=True))
        count = len(titles) // window * SORT_WINDOW + math.ceil(len(titles) % window / batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    else:
        dataset = dataset.batch(batch_size)

    def cut(x, y, n):
        longest = tf.reduce_max(n)
        return {**x, "tokens": x["tokens"][:, :longest]}, y[:, :longest]

    return dataset.map(cut, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
