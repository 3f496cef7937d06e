"""A resumable, shardable on-disk cache of embeddings for one fixed, ordered list of ids.

Layout of one cache (one encoder + preprocessing, one list of ids):

    <root>/<kind>/<cache_key>/<ids fingerprint>/
        meta.json            what the rows are (kind, cache_key, number of rows, chunk size)
        ids.txt              the ids, one a line, in row order
        chunks/00012.npy     rows [12 * chunk_size, 13 * chunk_size), written atomically
        chunks/00012.json    what computed it (TensorFlow, oneDNN, threads, CPU; `movietitles.runtime`)
        features.npy         all rows, written atomically once every chunk exists
        runtime.json         the chunks' records once merged: [{"runtime": {...}, "chunks": [0, 2, ...]}]

A chunk file exists only once it is complete, so a run that is killed and started again
recomputes at most one chunk. Shard I of N computes the chunks whose index is I modulo N,
so N processes or machines can fill one cache; the next unsharded run merges them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movietitles.io import atomic_save_npy, atomic_write_text


def ids_fingerprint(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]


@dataclass
class FeatureCache:
    suffix = ".npy"  # of chunk and merged files (a class attribute, not a dataclass field)
    directory: Path
    ids: list[str]
    chunk_size: int

    @classmethod
    def open(cls, root: str | Path, kind: str, cache_key: str, ids: list[str], chunk_size: int) -> "FeatureCache":
        directory = Path(root) / kind / cache_key / ids_fingerprint(ids)
        meta = {"kind": kind, "cache_key": cache_key, "rows": len(ids), "chunk_size": chunk_size}
        meta_path = directory / "meta.json"
        if meta_path.exists():
            saved = json.loads(meta_path.read_text(encoding="utf-8"))
            if saved.get("chunk_size") != chunk_size:
                # Chunks of another size cover other rows: keep the size the cache was started with.
                chunk_size = saved["chunk_size"]
                meta["chunk_size"] = chunk_size
        else:
            atomic_write_text(directory / "ids.txt", "\n".join(ids) + "\n")
            atomic_write_text(meta_path, json.dumps(meta, indent=2))
        return cls(directory, list(ids), chunk_size)

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

    # How rows are stored: float arrays here; RecordCache (JSON records) overrides these five.
    def _checked(self, index: int, features: np.ndarray) -> np.ndarray:
        rows = self.chunk_rows(index)
        expected = rows.stop - rows.start
        if features.ndim != 2 or features.shape[0] != expected:
            raise ValueError(f"chunk {index} of {self.directory}: expected {expected} rows, got shape {features.shape}")
        if not np.all(np.isfinite(features)):
            raise ValueError(f"chunk {index} of {self.directory}: the encoder produced non-finite values")
        return features.astype(np.float32, copy=False)

    def _read_chunk(self, index: int):
        return np.load(self.chunk_path(index))

    @staticmethod
    def _concatenate(chunks):
        return np.concatenate(chunks)

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
            features = self._concatenate([self._read_chunk(i) for i in range(self.num_chunks)])
            runtimes = self._runtime_records()
        except FileNotFoundError:
            if self.is_complete():  # another process merged them meanwhile
                return True
            raise
        if self.is_complete():  # merged meanwhile: its runtime.json is whole, keep it
            return True
        atomic_write_text(self.directory / "runtime.json", json.dumps(runtimes, indent=2))
        self._write(self.merged_path, features)
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

    def load(self) -> np.ndarray:
        if not self.is_complete():
            raise FileNotFoundError(
                f"feature cache {self.directory} is incomplete ({self.rows_done()}/{len(self.ids)} rows): "
                "run `python -m movietitles.features` first"
            )
        return np.load(self.merged_path, mmap_mode="r")


class RecordCache(FeatureCache):
    """The same resumable, shardable cache for rows that are JSON values (e.g. the words read on a poster).

    Chunks are `chunks/00012.jsonl` (one JSON value a line, a line a row), merged into `features.jsonl`.
    """

    suffix = ".jsonl"

    def _checked(self, index: int, records: list) -> list:
        rows = self.chunk_rows(index)
        if len(records) != rows.stop - rows.start:
            raise ValueError(f"chunk {index} of {self.directory}: expected {rows.stop - rows.start} records, "
                             f"got {len(records)}")
        return records

    def _read_chunk(self, index: int) -> list:
        return [json.loads(line) for line in self.chunk_path(index).read_text(encoding="utf-8").splitlines()]

    @staticmethod
    def _concatenate(chunks: list[list]) -> list:
        return [record for chunk in chunks for record in chunk]

    @staticmethod
    def _write(path: Path, rows: list) -> None:
        atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    def load(self) -> list:
        if not self.is_complete():
            kind = self.directory.parents[1].name
            raise FileNotFoundError(f"{kind} cache {self.directory} is incomplete ({self.rows_done()}/{len(self.ids)} "
                                    f"rows): run `python -m movietitles.features --kinds {kind}` first")
        return [json.loads(line) for line in self.merged_path.read_text(encoding="utf-8").splitlines()]
