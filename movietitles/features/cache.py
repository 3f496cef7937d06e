"""A resumable, shardable on-disk cache of embeddings for one fixed, ordered list of ids.

Layout of one cache (one encoder + preprocessing, one list of ids):

    <root>/<kind>/<cache_key>/<ids fingerprint>/
        meta.json            what the rows are (kind, cache_key, number of rows, chunk size)
        ids.txt              the ids, one a line, in row order
        contents.txt         what each row was computed from, a digest a line in row order (the cleaned title,
                             the poster file's bytes): a row whose content changed is recomputed, the others kept
        chunks/00012.npy     rows [12 * chunk_size, 13 * chunk_size), written atomically
        chunks/00012.json    what computed it (TensorFlow, oneDNN, threads, CPU; `movietitles.runtime`)
        features.npy         all rows, written atomically once every chunk exists
        runtime.json         the chunks' records once merged: [{"runtime": {...}, "chunks": [0, 2, ...]}]

A chunk file exists only once it is complete, so a run that is killed and started again
recomputes at most one chunk. Shard I of N computes the chunks whose index is I modulo N,
so N processes or machines can fill one cache; the next unsharded run merges them.

The folder is named by the ids; their contents are checked row by row (`stale_rows`), so preparing the
data again after a title was corrected or a poster replaced recomputes exactly those rows
(`update_rows`), and a stale cache is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movietitles.io import atomic_save_npy, atomic_write_text, read_written, replacing_file

log = logging.getLogger(__name__)


def ids_fingerprint(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]


def text_digest(text: str) -> str:
    """A row's content digest for a text input (a title)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class StaleCacheError(FileNotFoundError):
    """A cache holds rows computed from content that has changed since (recompute them first)."""


@dataclass
class FeatureCache:
    suffix = ".npy"  # of chunk and merged files (a class attribute, not a dataclass field)
    directory: Path
    ids: list[str]
    chunk_size: int
    contents: list[str] | None = None  # a digest of each row's input, in row order (None: not checked)

    @classmethod
    def open(cls, root: str | Path, kind: str, cache_key: str, ids: list[str], chunk_size: int,
             contents: list[str] | None = None) -> "FeatureCache":
        if contents is not None and len(contents) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(contents)} content digests")
        directory = Path(root) / kind / cache_key / ids_fingerprint(ids)
        meta_path = directory / "meta.json"
        if meta_path.exists():
            # Chunks of another size cover other rows: keep the size the cache was started with.
            chunk_size = json.loads(meta_path.read_text(encoding="utf-8")).get("chunk_size", chunk_size)
        cache = cls(directory, list(ids), chunk_size, None if contents is None else list(contents))
        if not meta_path.exists():
            atomic_write_text(directory / "ids.txt", "\n".join(ids) + "\n")
            cache.record_contents()  # before meta.json: a cache that has meta.json knows its rows' contents
            meta = {"kind": kind, "cache_key": cache_key, "rows": len(ids), "chunk_size": chunk_size}
            atomic_write_text(meta_path, json.dumps(meta, indent=2))
        cache._drop_stale_chunks()
        return cache

    @property
    def contents_path(self) -> Path:
        return self.directory / "contents.txt"

    def saved_contents(self) -> list[str] | None:
        if not self.contents_path.exists():
            return None
        return self.contents_path.read_text(encoding="utf-8").splitlines()

    def stale_rows(self) -> np.ndarray:
        """Indices of the rows computed from other content than `contents` (none when either is unknown)."""
        saved = self.saved_contents()
        if self.contents is None or saved is None:
            return np.zeros(0, np.int64)
        if len(saved) != len(self.ids):
            raise ValueError(f"{self.contents_path}: {len(saved)} lines for {len(self.ids)} rows; "
                             f"remove {self.directory} and run `python -m movietitles.features`")
        return np.flatnonzero(np.array(saved, object) != np.array(self.contents, object))

    def record_contents(self) -> None:
        """The rows on disk are those of `contents` (a cache from before contents were recorded is adopted)."""
        if self.contents is None:
            return
        saved = self.saved_contents()
        if saved == self.contents:
            return
        if saved is None and self.is_complete():
            log.warning("%s was cached before row contents were recorded: kept as it is, and checked from now on "
                        "(remove the folder to recompute it)", self.directory)
        atomic_write_text(self.contents_path, "".join(f"{c}\n" for c in self.contents))

    def _drop_stale_chunks(self) -> None:
        """Unmerged chunks holding a stale row are removed (recomputed with the missing ones)."""
        if self.contents is None or self.is_complete():
            return
        stale = self.stale_rows()
        for index in sorted({int(i) // self.chunk_size for i in stale}):
            self.chunk_path(index).unlink(missing_ok=True)
        self.record_contents()  # every chunk left holds rows of the current contents

    def update_rows(self, rows: np.ndarray, values) -> None:
        """Replace the merged rows at `rows` (indices) with `values` (atomically), then record the current contents."""
        values = self._checked_rows(values, len(rows))
        with replacing_file(self.merged_path) as tmp:
            self._write_updated(tmp, np.asarray(rows, np.int64), values)
        self.record_contents()

    @property
    def num_chunks(self) -> int:
        return (len(self.ids) + self.chunk_size - 1) // self.chunk_size

    @property
    def merged_path(self) -> Path:
        return self.directory / f"features{self.suffix}"

    def chunk_path(self, index: int) -> Path:
        return self.directory / "chunks" / f"{index:05d}{self.suffix}"

    def chunk_rows(self, index: int) -> slice:
        return slice(index * self.chunk_size, min((index + 1) * self.chunk_size, len(self.ids)))

    def is_complete(self) -> bool:
        return self.merged_path.exists()

    def missing_chunks(self, shard: int = 0, num_shards: int = 1) -> list[int]:
        if self.is_complete():
            return []
        return [i for i in range(self.num_chunks) if i % num_shards == shard and not self.chunk_path(i).exists()]

    def rows_done(self) -> int:
        if self.is_complete():
            return len(self.ids)
        return sum(self.chunk_rows(i).stop - self.chunk_rows(i).start
                   for i in range(self.num_chunks) if self.chunk_path(i).exists())

    def runtime_path(self, index: int) -> Path:
        return self.directory / "chunks" / f"{index:05d}.json"

    def write_chunk(self, index: int, rows, runtime: dict | None = None) -> None:
        rows = self._checked(index, rows)
        # Before the chunk: a chunk file never exists without its record (a stale record is overwritten).
        if runtime is not None:
            atomic_write_text(self.runtime_path(index), json.dumps(runtime, sort_keys=True))
        self._write(self.chunk_path(index), rows)

    # How rows are stored: float arrays here; RecordCache (JSON records) overrides these.
    def _checked(self, index: int, features: np.ndarray) -> np.ndarray:
        rows = self.chunk_rows(index)
        return self._checked_rows(features, rows.stop - rows.start, f"chunk {index} of {self.directory}")

    def _checked_rows(self, features: np.ndarray, expected: int, what: str | None = None) -> np.ndarray:
        what = what or f"rows of {self.directory}"
        if features.ndim != 2 or features.shape[0] != expected:
            raise ValueError(f"{what}: expected {expected} rows, got shape {features.shape}")
        if not np.all(np.isfinite(features)):
            raise ValueError(f"{what}: the encoder produced non-finite values")
        return features.astype(np.float32, copy=False)

    def _write_updated(self, path: Path, rows: np.ndarray, values: np.ndarray) -> None:
        """The merged file with `rows` replaced, written to `path` through a memory map (no copy in memory)."""
        shutil.copyfile(self.merged_path, path)
        merged = np.load(path, mmap_mode="r+")
        merged[rows] = values
        merged.flush()
        del merged

    def _write_chunks_to(self, path: Path) -> None:
        """The chunks, in order, as one .npy file, streamed: one chunk in memory at a time."""
        first = np.load(self.chunk_path(0), mmap_mode="r")
        merged = np.lib.format.open_memmap(path, mode="w+", dtype=first.dtype, shape=(len(self.ids), first.shape[1]))
        for i in range(self.num_chunks):
            merged[self.chunk_rows(i)] = np.load(self.chunk_path(i), mmap_mode="r")
        merged.flush()
        del merged

    @staticmethod
    def _write(path: Path, rows) -> None:
        atomic_save_npy(path, rows)

    def merge(self) -> bool:
        """Concatenate the chunks into features.npy once all exist; True when the cache is complete.

        Shards that finish together may merge at the same time: each writes the same features.npy
        atomically, and chunks another one has already merged and removed are no error.
        """
        if self.is_complete():
            return True
        if any(not self.chunk_path(i).exists() for i in range(self.num_chunks)):
            return False
        try:
            runtimes = self._runtime_records()
            with replacing_file(self.merged_path) as tmp:
                self._write_chunks_to(tmp)
                atomic_write_text(self.directory / "runtime.json", json.dumps(runtimes, indent=2))
        except FileNotFoundError:
            if self.is_complete():  # another process merged them (and removed the chunks) meanwhile
                return True
            raise
        self.record_contents()
        for i in range(self.num_chunks):
            self.chunk_path(i).unlink(missing_ok=True)
            self.runtime_path(i).unlink(missing_ok=True)
        return True

    def _runtime_records(self) -> list[dict]:
        """The chunks grouped by the runtime that computed them (null: not recorded)."""
        records: dict[str, dict] = {}
        for i in range(self.num_chunks):
            path = self.runtime_path(i)
            runtime = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
            key = json.dumps(runtime, sort_keys=True)
            records.setdefault(key, {"runtime": runtime, "chunks": []})["chunks"].append(i)
        return list(records.values())

    def runtime_records(self) -> list[dict]:
        """What computed a merged cache (`[]` for a cache merged before runtimes were recorded)."""
        path = self.directory / "runtime.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []

    def check_loadable(self) -> None:
        """FileNotFoundError if the cache is incomplete, StaleCacheError if a row's content changed since."""
        kind = self.directory.parents[1].name
        if not self.is_complete():
            raise FileNotFoundError(f"{kind} cache {self.directory} is incomplete ({self.rows_done()}/{len(self.ids)} "
                                    f"rows): run `python -m movietitles.features --kinds {kind}` first")
        stale = self.stale_rows()
        if len(stale):
            raise StaleCacheError(
                f"{kind} cache {self.directory}: {len(stale)} row(s) were computed from another title or poster than "
                f"the prepared data now holds (first: id {self.ids[stale[0]]!r}): run `python -m movietitles.features "
                f"--kinds {kind}` to recompute them")
        self.record_contents()  # a cache from before contents were recorded is adopted as it is

    def load(self) -> np.ndarray:
        self.check_loadable()
        return read_written(self.merged_path, self._read_merged_for_use, self._remedy())

    def _read_merged_for_use(self, path: Path):
        return np.load(path, mmap_mode="r")

    def _remedy(self) -> str:
        kind = self.directory.parents[1].name
        return f"remove {self.directory} and run `python -m movietitles.features --kinds {kind}`"


class RecordCache(FeatureCache):
    """The same resumable, shardable cache for rows that are JSON values (e.g. the words read on a poster).

    Chunks are `chunks/00012.jsonl` (one JSON value a line, a line a row), merged into `features.jsonl`.
    """

    suffix = ".jsonl"

    def _checked(self, index: int, records: list) -> list:
        rows = self.chunk_rows(index)
        return self._checked_rows(records, rows.stop - rows.start, f"chunk {index} of {self.directory}")

    def _checked_rows(self, records: list, expected: int, what: str | None = None) -> list:
        if len(records) != expected:
            raise ValueError(f"{what or f'rows of {self.directory}'}: expected {expected} records, got {len(records)}")
        return list(records)

    def _write_updated(self, path: Path, rows: np.ndarray, values: list) -> None:
        records = self._read_lines(self.merged_path)
        for i, value in zip(rows, values):
            records[int(i)] = value
        self._write(path, records)

    @staticmethod
    def _read_lines(path: Path) -> list:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def _write_chunks_to(self, path: Path) -> None:
        with open(path, "wb") as out:
            for i in range(self.num_chunks):
                out.write(self.chunk_path(i).read_bytes())

    @staticmethod
    def _write(path: Path, rows: list) -> None:
        atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    def _read_merged_for_use(self, path: Path) -> list:
        return self._read_lines(path)
