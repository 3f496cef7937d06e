"""Teacher-forcing batches for the title decoder, from the same cached features every task reads.

Elements: `({"poster": [B, Dp] float32, ("genres": [B, G] float32,) ("poster_text": [B, M] int32,)
"tokens": [B, T] int32},
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

from movietitles.artefacts import feature_store
from movietitles.config import enabled_section
from movietitles.encoders.ocr import poster_words
from movietitles.features.extract import POSTER
from movietitles.features.pipeline import load_split, poster_text
from movietitles.generator.tokenizer import TitleTokenizer


def derangement(n: int, seed: int) -> np.ndarray:
    """A permutation with no fixed point: every movie gets another movie's poster."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    return np.roll(order, 1)[np.argsort(order)]

# Shuffled batches are made of titles of similar length (sorted within windows of this many batches).
SORT_WINDOW = 32


def title_characters(titles) -> np.ndarray:
    return np.array([len(str(t).strip()) for t in titles], np.int64)


def no_poster_text(poster_text: np.ndarray, pad_id: int) -> np.ndarray:
    """Poster-text ids with nothing read: the sentinel <s> of each row kept, every other position PAD."""
    empty = np.full_like(poster_text, pad_id)
    empty[:, 0] = poster_text[:, 0]
    return empty


def zero_posters(rows: int, dim: int) -> np.ndarray:
    """[rows, dim] zeros as a read-only view of one row: no memory however wide the poster feature (a `grid` one
    is 17,704 floats; the warm-up corpus has ~65k titles)."""
    return np.broadcast_to(np.zeros(dim, np.float32), (rows, dim))


def is_zero_posters(poster: np.ndarray) -> bool:
    return poster.ndim == 2 and poster.strides[0] == 0 and not poster[:1].any()


@dataclass
class TitleSet:
    """Movies with their poster vectors (zeros: no poster), genre vectors and teacher-forcing pairs."""

    movies: pd.DataFrame
    genre_names: list[str]
    poster: np.ndarray                 # [N, Dp] float32
    genres: np.ndarray                 # [N, G] float32 (all zero for unlabelled movies)
    tokens: list[list[int]]            # <s> t1 … tn
    targets: list[list[int]]           # t1 … tn </s>
    poster_text: np.ndarray | None = None   # [N, M] int32: <s> then the poster's OCR subwords, PAD-padded

    def __len__(self) -> int:
        return len(self.movies)

    @property
    def num_targets(self) -> int:
        """Predicted tokens (</s> included): the denominator of per-token perplexity."""
        return sum(map(len, self.targets))

    @property
    def characters(self) -> np.ndarray:
        """Characters of each original title: the denominator of bits per character (plus one for the end),
        the same text whatever the tokenizer, its cut at max_len or the characters it cannot encode."""
        return title_characters(self.movies["title"])

    def subset(self, rows) -> "TitleSet":
        rows = np.asarray(rows)
        return TitleSet(self.movies.iloc[rows].reset_index(drop=True), self.genre_names, self.poster[rows],
                        self.genres[rows], [self.tokens[i] for i in rows], [self.targets[i] for i in rows],
                        None if self.poster_text is None else self.poster_text[rows])

    def with_shuffled_posters(self, seed: int) -> "TitleSet":
        """"Shuffled posters", the one definition training and evaluation share: each title with the poster
        (vector and text) of another movie of the set (a derangement, so never its own), its genres kept."""
        return self.with_posters_of(derangement(len(self), seed))

    def with_posters_of(self, order: np.ndarray) -> "TitleSet":
        """The same titles, row i with the poster (vector and text) of row `order[i]`."""
        shuffled = self.subset(np.arange(len(self)))
        shuffled.poster = self.poster[order]
        if self.poster_text is not None:
            shuffled.poster_text = self.poster_text[order]
        return shuffled

    def without_posters(self, pad_id: int) -> "TitleSet":
        """The same titles with a zero poster vector and no poster text (the warm-up's condition)."""
        empty = self.subset(np.arange(len(self)))
        empty.poster = zero_posters(len(self), self.poster.shape[1])
        if self.poster_text is not None:
            empty.poster_text = no_poster_text(self.poster_text, pad_id)
        return empty


def _title_set(movies: pd.DataFrame, genre_names: list[str], poster: np.ndarray, genres: np.ndarray,
               tokenizer: TitleTokenizer, poster_text: np.ndarray | None = None) -> TitleSet:
    pairs = [tokenizer.teacher_forcing(ids) for ids in tokenizer.encode_batch(movies["title"].tolist())]
    return TitleSet(movies, genre_names, poster, genres, [p[0] for p in pairs], [p[1] for p in pairs], poster_text)


def poster_text_strings(lines_per_poster: list[list[dict]], text_cfg: dict) -> list[str]:
    """Each poster's OCR lines as the one string a text-reading decoder reads (and its export takes as
    `poster_text`): largest lettering first, lines under min_confidence left out."""
    return [poster_words(lines, text_cfg["min_confidence"]) for lines in lines_per_poster]


def text_ids(texts: list[str], tokenizer: TitleTokenizer, max_tokens: int) -> np.ndarray:
    """[N, max_tokens] int32: <s> (a sentinel the decoder may attend to when nothing fits), then the subwords
    of each text, PAD-padded (the exported generator does the same in its graph)."""
    ids = [[tokenizer.bos_id] + list(t)[: max_tokens - 1] for t in tokenizer.encode_batch(texts)]
    return tokenizer.pad(ids, max_tokens)


def poster_text_ids(lines_per_poster: list[list[dict]], tokenizer: TitleTokenizer, text_cfg: dict) -> np.ndarray:
    """[N, max_tokens] int32 ids of each poster's OCR lines (`poster_text_strings`, then `text_ids`)."""
    return text_ids(poster_text_strings(lines_per_poster, text_cfg), tokenizer, text_cfg["max_tokens"])


def poster_titles(config: dict, split: str, tokenizer: TitleTokenizer) -> TitleSet:
    """Movies of `split` that have a poster (labelled or not), with their cached poster vectors (and the ids of
    their poster text when the generator reads it)."""
    store = feature_store(config)
    features = load_split(store, split, (POSTER,), labelled_only=False)
    text_cfg, text = enabled_section(config["generator"], "poster_text"), None
    if text_cfg:
        text = poster_text_ids(poster_text(store, features.movies["id"].tolist()), tokenizer, text_cfg)
    return _title_set(features.movies, features.genres, features.inputs[POSTER], features.labels, tokenizer, text)


def title_corpus(config: dict, tokenizer: TitleTokenizer, poster_dim: int) -> TitleSet:
    """Training-split movies WITHOUT a poster (the warm-up corpus), with zero poster vectors and no poster text.

    Only the train split: validation and test titles never reach the decoder.
    """
    features = load_split(feature_store(config), "train", (), labelled_only=False, require_poster=False)
    keep = ~features.movies["has_poster"].to_numpy()
    movies = features.movies[keep].reset_index(drop=True)
    text_cfg, text = enabled_section(config["generator"], "poster_text"), None
    if text_cfg:
        text = poster_text_ids([[] for _ in range(len(movies))], tokenizer, text_cfg)
    return _title_set(movies, features.genres, zero_posters(len(movies), poster_dim),
                      features.labels[keep], tokenizer, text)


def make_generator_dataset(titles: TitleSet, tokenizer: TitleTokenizer, batch_size: int,
                           use_genres: bool = False, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Teacher-forcing batches, each cut to its longest title. Shuffled batches hold titles of similar
    length (sorted within windows of SORT_WINDOW batches), so little time goes into PAD."""
    inputs = {"tokens": tokenizer.pad(titles.tokens, tokenizer.max_len)}
    zero_poster = is_zero_posters(titles.poster)
    if not zero_poster:  # zero posters are added per batch below, not held per element
        inputs["poster"] = titles.poster.astype(np.float32)
    if use_genres:
        inputs["genres"] = titles.genres.astype(np.float32)
    if titles.poster_text is not None:
        inputs["poster_text"] = titles.poster_text
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
        x = {**x, "tokens": x["tokens"][:, :longest]}
        if zero_poster:
            x["poster"] = tf.zeros([tf.shape(y)[0], titles.poster.shape[1]], tf.float32)
        return x, y[:, :longest]

    return dataset.map(cut, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
