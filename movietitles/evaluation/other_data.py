"""Evaluating on another dataset (`python -m movietitles.evaluate --eval-root ROOT`).

The dataset is prepared and embedded once into `data/eval-<folder name>-<hash of its full path>/`
(`movietitles.artefacts.other_dataset_config`; two datasets in folders of the same name never share it). The copy
records a fingerprint of its source (every file's path, size and modification time under ROOT, and the data
settings); when the source changes, the copy and its feature cache are discarded and prepared again
(`artefacts.ensure_other_prepared`).

Films that the training split already holds — the same id, the same normalised title, or a
byte-identical poster — are left out of the evaluation unless `keep_overlap` is set; the counts
go into the report.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from movietitles.data.dataset import load_prepared
from movietitles.features.pipeline import Features

log = logging.getLogger(__name__)

def normalised_title(title: str) -> str:
    """Casefolded NFKC letters and digits, single spaces: "The Matrix!" and "the  matrix" match."""
    text = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def training_overlap(prepared_dir: str | Path, movies: pd.DataFrame) -> pd.DataFrame:
    """For each of `movies`: does the training split of the dataset prepared in `prepared_dir` hold the same id,
    normalised title or poster?"""
    train = load_prepared(prepared_dir).movies
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


def without_overlap(target: Features, prepared_dir: str | Path, data_root: str,
                    keep_overlap: bool = False) -> tuple[Features, str, dict]:
    """The films of another dataset (`target`, every labelled one of `data_root`) less those the training split
    (of the dataset prepared in `prepared_dir`) already holds, unless `keep_overlap`; their description and the
    overlap counts for the report."""
    overlap = training_overlap(prepared_dir, target.movies)
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
