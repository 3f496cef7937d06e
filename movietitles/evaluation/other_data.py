"""Evaluating on another dataset (`python -m movietitles.evaluate --eval-root ROOT`).

The dataset is prepared and embedded once into `data/eval-<folder name>-<hash of its full path>/`
(two datasets in folders of the same name never share it). The copy records a fingerprint of its
source (every file's path, size and modification time under ROOT, and the data settings); when the
source changes, the copy and its feature cache are discarded and prepared again.

Films that the training split already holds — the same id, the same normalised title, or a
byte-identical poster — are left out of the evaluation unless `keep_overlap` is set; the counts
go into the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from movietitles.artefacts import feature_store
from movietitles.config import with_overrides
from movietitles.data.dataset import load_prepared
from movietitles.features.extract import POSTER, TITLE
from movietitles.features.pipeline import Features, load_split
from movietitles.io import atomic_write_text
from movietitles.settings import DataSettings

log = logging.getLogger(__name__)

SOURCE_FILE = "source.json"


def other_dataset_config(config: dict, data_root: str | Path) -> dict:
    """The config that prepares and embeds another dataset beside the default one."""
    root = Path(data_root).resolve()
    key = hashlib.sha256(str(root).encode("utf-8")).hexdigest()[:10]
    prepared_dir = str(Path(config["data"]["prepared_dir"]).parent / f"eval-{root.name}-{key}")
    from movietitles.artefacts import text_encoder_settings

    # The encoders are those of the trained models: a genre-fine-tuned text encoder is pinned, not made anew.
    return with_overrides(config, {"data.root": str(data_root), "data.prepared_dir": prepared_dir,
                                   "features.cache_dir": f"{prepared_dir}/features",
                                   "encoders.text": text_encoder_settings(config, must_exist=False)})


def source_fingerprint(config: dict) -> dict:
    """What the prepared copy was made from: the files under data.root (path, size, mtime) and the settings."""
    root = Path(config["data"]["root"]).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        status = path.stat()
        digest.update(f"{path.relative_to(root)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode("utf-8"))
    settings = {k: v for k, v in config["data"].items() if k not in ("root", "prepared_dir")}
    limits = DataSettings.from_config(config).poster_limits
    digest.update(yaml.safe_dump([settings, limits], sort_keys=True).encode("utf-8"))
    return {"root": str(root), "files": len(files), "fingerprint": digest.hexdigest()}


def ensure_prepared(other: dict) -> None:
    """Prepare the dataset of `other` (a config from other_dataset_config) unless an up-to-date copy exists."""
    from movietitles.data.prepare import prepare

    prepared = Path(other["data"]["prepared_dir"])
    fingerprint, marker = source_fingerprint(other), prepared / SOURCE_FILE
    if (prepared / "movies.csv").exists() and marker.exists():
        if json.loads(marker.read_text(encoding="utf-8")) == fingerprint:
            return
        log.info("%s changed since %s was prepared: preparing it again", fingerprint["root"], prepared)
    if prepared.exists():
        shutil.rmtree(prepared)  # the stale copy and its feature cache
    print("\n".join(prepare(DataSettings.from_config(other)).lines()))
    atomic_write_text(marker, json.dumps(fingerprint, indent=2))  # last: a crash before it re-prepares


def normalised_title(title: str) -> str:
    """Casefolded NFKC letters and digits, single spaces: "The Matrix!" and "the  matrix" match."""
    text = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def training_overlap(config: dict, movies: pd.DataFrame) -> pd.DataFrame:
    """For each of `movies`: does the training split of `config` hold the same id, normalised title or poster?"""
    train = load_prepared(config["data"]["prepared_dir"]).movies
    train = train[train["split"] == "train"]
    titles = {normalised_title(t) for t in train["title"]} - {""}
    posters = set(train["poster_sha256"]) - {""}
    return pd.DataFrame({
        "same id": movies["id"].isin(set(train["id"])).to_numpy(),
        "same normalised title": movies["title"].map(normalised_title).isin(titles).to_numpy(),
        "byte-identical poster": movies["poster_sha256"].isin(posters).to_numpy(),
    })


def subset(features: Features, keep: np.ndarray) -> Features:
    return Features(features.movies[keep].reset_index(drop=True), features.genres,
                    {name: values[keep] for name, values in features.inputs.items()}, features.labels[keep])


def load_target(config: dict, data_root: str | None, keep_overlap: bool = False,
                kinds=(TITLE, POSTER)) -> tuple[Features, str, dict | None]:
    """(the movies to evaluate on, with the `kinds` of features, their description, the overlap summary for the
    report or None)."""
    if data_root is None:
        return load_split(feature_store(config), "test", kinds), "test split", None
    from movietitles.artefacts import ensure_features

    other = other_dataset_config(config, data_root)
    ensure_prepared(other)
    ensure_features(other, kinds)
    target = load_split(feature_store(other), "all", kinds)
    overlap = training_overlap(config, target.movies)
    shared = overlap.any(axis=1).to_numpy()
    summary = {"films": len(target), **{k: int(v.sum()) for k, v in overlap.items()},
               "any of these": int(shared.sum()),
               "evaluated": "with them (--keep-overlap)" if keep_overlap
               else "without them (--keep-overlap keeps them)"}
    description = f"every labelled movie with a poster in {data_root}"
    if not keep_overlap and shared.any():
        target = subset(target, ~shared)
        description += f", less {int(shared.sum())} that the training split already holds"
    log.info("%s: %s", description, summary)
    return target, description, summary
