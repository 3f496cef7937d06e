"""Data sources, each read into the same list of RawMovie records.

- movielens: <root>/movielens/movies.csv + links.csv, posters in <root>/posters/tt<7 digits>.jpg
- kaggle:    <root>/<data.kaggle_csv> ("Movie Genre from its Poster": imdbId, Title, Genre, Poster URL)
- manifest:  <root>/<data.manifest_csv> with columns id,title,genres,poster (a poster path relative to root,
             or absolute; either way inside root: one outside it is refused and reported)

Rows are numbered as a spreadsheet shows them: the header is row 1, the first movie row 2.
Rows that cannot become a movie are returned as Issues, never silently dropped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from movietitles.config import ConfigError
from movietitles.settings import DataSettings

_POSTER_NAME = re.compile(r"^tt\d{7,}\.jpg$")


class SourceError(ConfigError):
    """A source file is missing or unusable as a whole (not a bad row)."""


@dataclass
class RawMovie:
    id: str
    raw_title: str
    genres: list[str]      # genre tokens as written in the source
    poster: Path | None    # local poster file, not yet checked; None if there is none
    source_file: str
    source_row: int
    poster_url: str = ""   # kaggle: where the poster is downloaded from


@dataclass(frozen=True)
class Issue:
    """One row of import_report.csv."""
    source_file: str
    row: int | str
    id: str
    field: str
    reason: str   # "code" or "code: detail"; counted by code
    action: str   # fixed | skipped | grouped | dropped_label | dropped

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0]


def load_source(data: DataSettings) -> tuple[list[RawMovie], list[Issue]]:
    """Read the source named by data.source under data.root."""
    if data.source == "movielens":
        return read_movielens(data.root)
    if data.source == "kaggle":
        return read_kaggle(data.root / data.source_csv)
    return read_manifest(data.root / data.source_csv)


def imdb_id(value: str) -> str:
    """`114709`, `0114709` or `tt0114709` -> `tt0114709`; ValueError if not a positive number."""
    digits = str(value).strip().removeprefix("tt")
    if not digits.isdigit() or int(digits) == 0:
        raise ValueError(f"not an IMDb id: {value!r}")
    return f"tt{int(digits):07d}"


def split_genres(value: str) -> list[str]:
    return [g.strip() for g in str(value).split("|") if g.strip()]


def read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """All columns as str ("" for empty); UTF-8, falling back to latin-1 (old Kaggle files)."""
    if not path.is_file():
        raise SourceError(f"source file not found: {path}; get MovieLens with `python -m movietitles.data download "
                          "movielens --set data.root=DIR` (posters: `download posters --kaggle-csv FILE`), or point "
                          "data.root (and data.source) at your dataset, e.g. --set data.root=DIR")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="latin-1")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SourceError(f"{path}: missing column(s) {', '.join(missing)}; found {list(frame.columns)}")
    return frame


def read_movielens(root: Path) -> tuple[list[RawMovie], list[Issue]]:
    movies_csv, links_csv = root / "movielens" / "movies.csv", root / "movielens" / "links.csv"
    movies = read_csv(movies_csv, ["movieId", "title", "genres"])
    links = read_csv(links_csv, ["movieId", "imdbId"])
    imdb_by_movie = dict(zip(links["movieId"].str.strip(), links["imdbId"]))
    posters = _list_posters(root / "posters")
    name = "movielens/movies.csv"

    records, issues = [], []
    for row, (movie_id, title, genres) in enumerate(
            zip(movies["movieId"], movies["title"], movies["genres"]), start=2):
        raw_imdb = imdb_by_movie.get(movie_id.strip())
        if raw_imdb is None:
            issues.append(Issue(name, row, "", "imdbId", f"missing_link: movieId {movie_id} not in links.csv",
                                "dropped"))
            continue
        try:
            mid = imdb_id(raw_imdb)
        except ValueError as e:
            issues.append(Issue(name, row, "", "imdbId", f"bad_id: {e}", "dropped"))
            continue
        records.append(RawMovie(mid, title, split_genres(genres), posters.get(mid), name, row))
    return records, issues


def read_kaggle(csv_path: Path) -> tuple[list[RawMovie], list[Issue]]:
    frame = read_csv(csv_path, ["imdbId", "Title", "Genre", "Poster"])
    records, issues = [], []
    for row, (raw_id, title, genres, url) in enumerate(
            zip(frame["imdbId"], frame["Title"], frame["Genre"], frame["Poster"]), start=2):
        try:
            mid = imdb_id(raw_id)
        except ValueError as e:
            issues.append(Issue(csv_path.name, row, "", "imdbId", f"bad_id: {e}", "dropped"))
            continue
        records.append(RawMovie(mid, title, split_genres(genres), None, csv_path.name, row,
                                poster_url=url.strip()))
    return records, issues


def read_manifest(csv_path: Path) -> tuple[list[RawMovie], list[Issue]]:
    frame = read_csv(csv_path, ["id", "title", "genres", "poster"])
    records, issues = [], []
    for row, (mid, title, genres, poster) in enumerate(
            zip(frame["id"], frame["title"], frame["genres"], frame["poster"]), start=2):
        mid = mid.strip()
        if not mid:
            issues.append(Issue(csv_path.name, row, "", "id", "empty_id", "dropped"))
            continue
        path = None
        if poster.strip():
            path = Path(poster.strip())
            path = path if path.is_absolute() else csv_path.parent / path
            if not _inside(path, csv_path.parent):
                issues.append(Issue(csv_path.name, row, mid, "poster", f"poster_outside_root: {poster.strip()} "
                                    "(poster paths must lie inside data.root)", "skipped"))
                path = None
            elif not path.is_file():
                issues.append(Issue(csv_path.name, row, mid, "poster", f"poster_missing: {path}", "skipped"))
                path = None
        records.append(RawMovie(mid, title, split_genres(genres), path, csv_path.name, row))
    return records, issues


def _inside(path: Path, root: Path) -> bool:
    """`path` lies inside `root`, as written (`..` counts; a symbolic link inside root may point elsewhere)."""
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root))


def _list_posters(folder: Path) -> dict[str, Path]:
    """id -> poster path, listing the folder once (85k stat calls would be slow)."""
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {e.name[:-4]: Path(e.path) for e in entries if _POSTER_NAME.match(e.name)}
