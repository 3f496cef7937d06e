"""Reading prepared data (the output of `python -m movietitles.data prepare`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MOVIE_COLUMNS = ["id", "title", "year", "aka", "raw_title", "genres", "poster",
                 "poster_sha256", "split", "source_row"]
SPLITS = ("train", "validation", "test")  # the values of the `split` column


class PreparedDataMissing(FileNotFoundError):
    pass


@dataclass
class Prepared:
    movies: pd.DataFrame   # MOVIE_COLUMNS (str; year Int64, source_row int) + has_poster, labelled
    genres: list[str]      # the label set, in label-matrix column order
    directory: Path


def load_prepared(prepared_dir: str | Path) -> Prepared:
    directory = Path(prepared_dir)
    for name in ("movies.csv", "genres.txt"):
        if not (directory / name).is_file():
            raise PreparedDataMissing(
                f"{directory / name} not found: run `python -m movietitles.data prepare` first")
    movies = pd.read_csv(directory / "movies.csv", dtype=str, keep_default_na=False)
    missing = [c for c in MOVIE_COLUMNS if c not in movies.columns]
    if missing:
        raise ValueError(f"{directory / 'movies.csv'}: missing column(s) {missing}; re-run prepare")
    movies["year"] = pd.to_numeric(movies["year"].replace("", None)).astype("Int64")
    movies["source_row"] = movies["source_row"].astype(int)
    movies["has_poster"] = movies["poster"] != ""
    movies["labelled"] = movies["genres"] != ""
    genres = [g for g in (directory / "genres.txt").read_text(encoding="utf-8").splitlines() if g]
    return Prepared(movies, genres, directory)


def label_matrix(movies: pd.DataFrame, genres: list[str]) -> np.ndarray:
    """Multi-hot float32 (N, G) from the pipe-separated `genres` column; tokens outside `genres` ignored."""
    index = {g: k for k, g in enumerate(genres)}
    matrix = np.zeros((len(movies), len(genres)), dtype=np.float32)
    for row, value in enumerate(movies["genres"]):
        for token in value.split("|") if value else ():
            if token in index:
                matrix[row, index[token]] = 1.0
    return matrix
