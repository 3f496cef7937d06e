"""Compute title and poster embeddings, and the text read on posters, once per encoder into the feature cache
(`FeatureStore`: where the caches of one prepared dataset live, and the encoder settings of each kind)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from movietitles.data.dataset import load_prepared
from movietitles.features.cache import FeatureCache, RecordCache, text_digest
from movietitles.io import atomic_write_text
from movietitles.runtime import runtime_info

log = logging.getLogger(__name__)

TITLE, POSTER, POSTER_TEXT = "title", "poster", "poster_text"
KINDS = (TITLE, POSTER, POSTER_TEXT)


def title_rows(movies: pd.DataFrame) -> pd.DataFrame:
    """Every movie has a title embedding (the title corpus included)."""
    return movies


def poster_rows(movies: pd.DataFrame) -> pd.DataFrame:
    return movies[movies["has_poster"]]


def row_contents(kind: str, rows: pd.DataFrame) -> list[str]:
    """What each row of a `kind` cache is computed from: its cleaned title, or its poster file's bytes (the sha256
    that `data prepare` recorded)."""
    if kind == TITLE:
        return [text_digest(title) for title in rows["title"]]
    return [digest[:16] for digest in rows["poster_sha256"]]


@dataclass(frozen=True)
class FeatureStore:
    """`movietitles.artefacts.feature_store(config)` makes one from a configuration.

    `text_encoder`, `image_encoder` and `ocr`: the encoders' sections (`encoders.text` as features use it: with
    `finetune` on, the fine-tuned encoder's folder). `text_encoder_missing`: why that folder cannot be used yet
    ("" when it can), raised when title features are computed.
    """

    prepared_dir: Path
    cache_dir: Path
    chunk_size: int
    text_encoder: dict
    image_encoder: dict
    ocr: dict
    text_encoder_missing: str = ""

    def key(self, kind: str) -> str:
        """The cache key of a feature kind: its encoder's settings, named by the encoder (without building it)."""
        if kind == TITLE:
            from movietitles.encoders.text import text_cache_key

            return text_cache_key(self.text_encoder)
        if kind == POSTER_TEXT:
            from movietitles.encoders.ocr import poster_text_cache_key

            return poster_text_cache_key(self.ocr)
        if kind == POSTER:
            from movietitles.encoders.image import image_cache_key

            return image_cache_key(self.image_encoder)
        raise ValueError(f"unknown feature kind {kind!r}; expected one of {KINDS}")

    def open(self, kind: str, rows: pd.DataFrame, cache_key: str | None = None) -> FeatureCache:
        """The `kind` cache of `rows` (its key: `cache_key`, else `key(kind)`)."""
        cache_type = RecordCache if kind == POSTER_TEXT else FeatureCache
        return cache_type.open(self.cache_dir, kind, cache_key or self.key(kind), rows["id"].tolist(),
                               self.chunk_size, row_contents(kind, rows))


def embed_posters(encoder, paths: list[str], batch_size: int, images: list[bytes] | None = None) -> np.ndarray:
    """Features [N, dim] of posters: the files at `paths`, or their encoded `images` (named by `paths`).

    A batch is decoded, then embedded, one step after the other. A tf.data pipeline decoding ahead
    beside the network left a 2-core CPU 40% idle in about half of the runs (~95 instead of ~150
    posters/s, AMD EPYC): the two sets of threads waited on each other.
    """
    parts = [np.zeros((0, encoder.dim), np.float32)]
    for start in range(0, len(paths), batch_size):
        end = start + batch_size
        batch = decode_posters(encoder, paths[start:end], None if images is None else images[start:end])
        parts.append(encoder.embed(batch))
    return np.concatenate(parts)


def decode_posters(encoder, paths: list[str], images: list[bytes] | None = None):
    """One batch of the network's inputs [B, S, S, 3]: the files at `paths`, or their encoded `images`
    (named by `paths` in an error)."""
    names = [str(p) for p in paths]
    return encoder.preprocess_batch([Path(p).read_bytes() for p in names] if images is None else images, names)


def fill_cache(cache: FeatureCache, embed_rows, description: str, shard: int = 0, num_shards: int = 1,
               runtime: dict | None = None) -> bool:
    """Compute the missing chunks of this shard; merge when every chunk exists; then recompute the rows whose
    content changed since (`FeatureCache.stale_rows`). True when complete.

    `embed_rows(rows)` computes the rows at `rows`, a slice or an array of indices. `runtime` (e.g.
    `movietitles.runtime.runtime_info()`) is recorded beside each chunk written.
    """
    missing = cache.missing_chunks(shard, num_shards)
    if missing:
        todo_rows = sum(cache.chunk_rows(i).stop - cache.chunk_rows(i).start for i in missing)
        with tqdm(total=todo_rows, desc=description, unit="row") as progress:
            for index in missing:
                rows = cache.chunk_rows(index)
                cache.write_chunk(index, embed_rows(rows), runtime)
                progress.update(rows.stop - rows.start)
    complete = cache.merge()
    stale = cache.stale_rows() if complete else []
    if len(stale):
        log.info("%s: %d row(s) whose title or poster changed since they were cached: recomputing them (first: id %s)",
                 description, len(stale), cache.ids[stale[0]])
        values = [embed_rows(stale[i:i + 2048]) for i in range(0, len(stale), 2048)]
        cache.update_rows(stale, np.concatenate(values) if isinstance(values[0], np.ndarray) else sum(values, []))
    elif complete:
        cache.record_contents()  # a cache made before contents were recorded is adopted here, with a warning
    if complete:
        log.info("%s: %d rows cached in %s", description, len(cache.ids), cache.merged_path)
    else:
        log.info("%s: %d/%d rows cached; other shards still to run, then merge", description,
                 cache.rows_done(), len(cache.ids))
    return complete


def _masked_images(store: FeatureStore, rows: pd.DataFrame, paths: list[str]):
    """For the text_masked view: rows -> the posters with their OCR'd text inpainted (PNG bytes)."""
    from movietitles.encoders.text_mask import masked_poster_png

    records = store.open(POSTER_TEXT, rows).load()
    lines = pd.Series(records, dtype=object).to_numpy()  # one list per poster, indexable like `paths`
    return lambda r: [masked_poster_png(path, text) for path, text in zip(paths[r], lines[r])]


def write_poster_text_coverage(path: Path, movies: pd.DataFrame, lines_per_poster: list, genres: list[str]) -> None:
    """How often the poster text holds the title, by decade and genre, as markdown beside the cache."""
    from movietitles.features.poster_text_coverage import coverage_markdown, coverage_tables

    tables = coverage_tables(movies, lines_per_poster, genres)
    text = "# Poster text: how often it holds the title\n\n" + coverage_markdown(tables)
    atomic_write_text(path, text + "\n")
    overall = tables["overall"].iloc[0]
    log.info("poster text: any title word on %.1f%% of %d posters, all title words on %.1f%% (%s)",
             100 * overall["share with any title word"], overall["posters"], 100 * overall["share with all title words"],
             path)


def extract_features(store: FeatureStore, kinds=(TITLE, POSTER), shard: int = 0,
                     num_shards: int = 1) -> dict[str, Path]:
    """Fill the title, poster and/or poster-text caches of the prepared dataset. Returns the cache directories."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"--shard must be in [0, {num_shards}), got {shard}")
    prepared = load_prepared(store.prepared_dir)
    directories = {}
    if TITLE in kinds:
        from movietitles.encoders.bert_export import ensure_default_text_models
        from movietitles.encoders.text import build_text_encoder

        if store.text_encoder_missing:
            raise FileNotFoundError(store.text_encoder_missing)
        text_cfg = store.text_encoder
        ensure_default_text_models(text_cfg)
        encoder = build_text_encoder(text_cfg)
        rows = title_rows(prepared.movies)
        titles = rows["title"].to_numpy(object)  # indexable by a slice or by indices
        cache = store.open(TITLE, rows, encoder.cache_key)
        # TextEncoder.embed batches titles of similar length, so per-batch padding pads little.
        fill_cache(cache, lambda r: encoder.embed(titles[r].tolist()), f"titles ({encoder.cache_key})",
                   shard, num_shards, {**runtime_info(), "batch_size": encoder.batch_size})
        directories[TITLE] = cache.directory
    if POSTER in kinds:
        from movietitles.encoders.image import build_image_encoder

        image_cfg = store.image_encoder
        masked = image_cfg.get("view", "full") == "text_masked"
        encoder = build_image_encoder(image_cfg, masked_input=masked)
        rows = poster_rows(prepared.movies)
        paths = rows["poster"].to_numpy(object)
        cache = store.open(POSTER, rows, encoder.cache_key)
        images = (lambda r: None) if not masked else _masked_images(store, rows, paths)
        fill_cache(cache, lambda r: embed_posters(encoder, paths[r].tolist(), image_cfg["batch_size"], images(r)),
                   f"posters ({encoder.cache_key})", shard, num_shards,
                   {**runtime_info(), "batch_size": image_cfg["batch_size"]})
        directories[POSTER] = cache.directory
    if POSTER_TEXT in kinds:
        from movietitles.encoders.ocr import PosterTextReader

        reader = PosterTextReader(store.ocr)
        rows = poster_rows(prepared.movies)
        paths = rows["poster"].to_numpy(object)
        cache = store.open(POSTER_TEXT, rows, reader.cache_key)
        try:
            if fill_cache(cache, lambda r: reader.read_files(paths[r].tolist()), f"poster text ({reader.cache_key})",
                          shard, num_shards, runtime_info()):
                write_poster_text_coverage(cache.directory / "coverage.md", rows, cache.load(), prepared.genres)
        finally:
            reader.close()
        directories[POSTER_TEXT] = cache.directory
    return directories
