"""The one tf.data pipeline every task reads: cached title/poster embeddings, labels, title text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from movietitles.data.dataset import SPLITS, label_matrix, load_prepared
from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE, FeatureStore, poster_rows, title_rows


@dataclass
class Features:
    """Embeddings and labels of the movies of one split, aligned row by row."""

    movies: pd.DataFrame
    genres: list[str]
    inputs: dict[str, np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.movies)


def poster_text(store: FeatureStore, ids) -> list[list[dict]]:
    """The OCR lines of each poster id (`python -m movietitles.features --kinds poster_text` caches them)."""
    movies = load_prepared(store.prepared_dir).movies
    rows = poster_rows(movies)
    records = store.open(POSTER_TEXT, rows).load()
    position = dict(zip(rows["id"], range(len(rows))))
    missing = [i for i in ids if i not in position]
    if missing:
        raise ValueError(f"no poster text for {len(missing)} movie(s) without a poster, e.g. {missing[0]!r}")
    return [records[position[i]] for i in ids]


def poster_word_strings(store: FeatureStore, movies: pd.DataFrame) -> np.ndarray:
    """Each movie's poster text as one string (`encoders.ocr.poster_words`: largest lettering first), "" for a
    movie without a poster."""
    from movietitles.encoders.ocr import poster_words

    with_poster = movies["has_poster"].to_numpy(dtype=bool)
    words = np.full(len(movies), "", dtype=object)
    lines = poster_text(store, movies["id"][with_poster].tolist()) if with_poster.any() else []
    words[with_poster] = [poster_words(poster_lines) for poster_lines in lines]
    return words.astype(str)


def load_split(store: FeatureStore, split: str, inputs=(TITLE, POSTER), labelled_only: bool = True,
               require_poster: bool | None = None) -> Features:
    """The movies of `split` that have every requested input (and labels), with their cached embeddings
    (and, with POSTER_TEXT among `inputs`, each poster's text as one string, "" without a poster).

    Asking for POSTER restricts to movies with a usable poster, unless `require_poster` is False: then the
    title-only movies come too, each with a zero poster vector (which a `modality_logits` fusion model reads
    as no poster). Asking only for TITLE includes title-only movies (the title corpus, in train) unless
    `require_poster` is set, which keeps the same movies as the poster model sees.
    """
    if split not in SPLITS + ("all",):
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} or 'all'")
    prepared = load_prepared(store.prepared_dir)
    movies = prepared.movies
    selected = (movies["split"] == split) | (split == "all")
    if labelled_only:
        selected &= movies["labelled"]
    if require_poster or (require_poster is None and POSTER in inputs):
        selected &= movies["has_poster"]
    chosen = movies[selected]

    arrays = {}
    for kind, rows in ((TITLE, title_rows(movies)), (POSTER, poster_rows(movies))):
        if kind not in inputs:
            continue
        table = store.open(kind, rows).load()
        found = pd.Series(np.arange(len(rows)), index=rows["id"].to_numpy()).reindex(chosen["id"].to_numpy())
        present = found.notna().to_numpy()
        arrays[kind] = np.zeros((len(chosen), table.shape[1]), np.float32)  # zeros: no poster
        arrays[kind][present] = table[found[present].to_numpy(dtype=np.int64)]
    if POSTER_TEXT in inputs:
        arrays[POSTER_TEXT] = poster_word_strings(store, chosen)
    return Features(chosen.reset_index(drop=True), prepared.genres, arrays, label_matrix(chosen, prepared.genres))


def make_dataset(
    features: Features,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    with_labels: bool = True,
    with_text: bool = False,
    sample_weight: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of `({"title": [B, Dt], "poster": [B, Dp], ("title_text": [B])}, labels [B, G][, weights [B]])`."""
    inputs = dict(features.inputs)
    if with_text:
        inputs["title_text"] = features.movies["title"].to_numpy(dtype=str)
    elements = (inputs, features.labels) if with_labels else inputs
    if sample_weight is not None:
        elements = (inputs, features.labels, sample_weight.astype(np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
