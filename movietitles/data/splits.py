"""Train/validation/test splits: grouped, multi-label stratified, saved once and reused.

Movies sharing a byte-identical poster or the same normalised title (casefold, no year)
form one group, and a group never straddles two splits. Groups with a usable poster are
split by iterative stratification on the union of their members' labels; groups without
any poster (the title corpus) all go to train. So no validation/test movie, nor any movie
sharing its title or poster, is in train.

splits.csv (id,split) is written once; later runs keep every saved assignment and only
append new ids, assigned by the same rule (joining their group's saved split if it has one).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import IterativeStratification
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from movietitles.data.dataset import SPLITS, label_matrix
from movietitles.data.titles import normalise_title
from movietitles.io import atomic_write_text


def check_fractions(fractions: dict) -> np.ndarray:
    """[train, validation, test] fractions as an array; ValueError if they are not valid."""
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise ValueError(f"data.split_fractions: unknown split(s) {sorted(unknown)}; use {SPLITS}")
    values = np.array([float(fractions.get(s, 0.0)) for s in SPLITS])
    if (values < 0).any() or not np.isclose(values.sum(), 1.0):
        raise ValueError(f"data.split_fractions must be >= 0 and sum to 1, got {fractions}")
    return values


def make_groups(movies: pd.DataFrame) -> np.ndarray:
    """Group number per movie: connected components over shared poster_sha256 / normalised title."""
    keys: dict[str, int] = {}
    rows, cols = [], []
    for i, (sha, title) in enumerate(zip(movies["poster_sha256"], movies["title"])):
        for key in (f"sha:{sha}" if sha else "", f"title:{normalise_title(title)}" if title else ""):
            if key:
                rows.append(i)
                cols.append(len(movies) + keys.setdefault(key, len(keys)))
    n = len(movies) + len(keys)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels[: len(movies)]


def stratify(group_labels: np.ndarray, fractions: np.ndarray, seed: int) -> np.ndarray:
    """Split name per group by iterative stratification (Sechidis et al. 2011)."""
    if len(group_labels) == 0:
        return np.array([], dtype=object)
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(group_labels))  # as iterstrat's own splitters do
    folds = IterativeStratification(labels=group_labels[order].astype(bool), r=fractions, random_state=rng)
    result = np.empty(len(group_labels), dtype=object)
    result[order] = np.array(SPLITS, dtype=object)[folds]
    return result


def assign_splits(movies: pd.DataFrame, genres: list[str], fractions: dict, seed: int,
                  saved: dict[str, str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Split per movie, keeping `saved` assignments; returns (splits, warnings).

    `movies` needs columns id, title, genres (pipe-separated), poster_sha256 and has_poster.
    """
    r = check_fractions(fractions)
    saved = saved or {}
    ids = movies["id"].to_numpy()
    groups = make_groups(movies)
    rank = np.array([SPLITS.index(saved[i]) if i in saved else -1 for i in ids])
    frame = pd.DataFrame({"group": groups, "id": ids, "rank": rank,
                          "poster": movies["has_poster"].to_numpy(bool)})
    per_group = frame.groupby("group").agg(best=("rank", "max"), poster=("poster", "any"),
                                           first_id=("id", "min"))
    best = per_group["best"].reindex(groups).to_numpy()

    # Saved movies keep their split; new members join their group's saved split, held-out
    # first, so a new movie never puts a test movie's title into train.
    result = np.array([saved.get(i, "") for i in ids], dtype=object)
    result = np.where((rank < 0) & (best >= 0), np.array(SPLITS, dtype=object)[np.maximum(best, 0)], result)
    problems = []
    mixed = frame[frame["rank"] >= 0].groupby("group")["rank"].nunique()
    for group in mixed.index[mixed > 1]:
        members = frame[frame["group"] == group]
        problems.append(f"saved splits put one group in {sorted(SPLITS[k] for k in set(members['rank']) - {-1})} "
                        f"(ids {', '.join(members['id'][:5])})")

    # Fresh groups: no poster -> train (the title corpus); with a poster -> stratified.
    fresh = per_group[per_group["best"] < 0]
    result[np.isin(groups, fresh.index[~fresh["poster"]])] = "train"
    to_split = fresh[fresh["poster"]].sort_values("first_id")  # row order must not matter
    labels = pd.DataFrame(label_matrix(movies, genres) > 0).groupby(groups).max()
    group_split = stratify(labels.loc[to_split.index].to_numpy(), r, seed)
    chosen = pd.Series(group_split, index=to_split.index).reindex(groups).to_numpy()
    result = np.where(pd.isna(chosen), result, chosen)
    return result.astype(object), problems


def read_splits(path: str | Path) -> dict[str, str]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(frame.columns[:2]) != ["id", "split"]:
        raise ValueError(f"{path}: expected columns id,split, found {list(frame.columns)}")
    bad = frame[~frame["split"].isin(SPLITS)]
    if len(bad):
        raise ValueError(f"{path}: row {bad.index[0] + 2}: split {bad['split'].iloc[0]!r} is not one of {SPLITS}")
    return dict(zip(frame["id"], frame["split"]))


def ensure_splits(movies: pd.DataFrame, genres: list[str], fractions: dict, seed: int,
                  path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Splits for `movies`, reusing and extending the splits.csv at `path`; returns (splits, warnings)."""
    path = Path(path)
    saved = read_splits(path) if path.is_file() else {}
    splits, problems = assign_splits(movies, genres, fractions, seed, saved)
    ids = movies["id"].tolist()
    present = set(ids)
    gone = [i for i in saved if i not in present]
    if gone:
        problems.append(f"{len(gone)} id(s) in {path} are no longer in the data "
                        f"(kept in the file): {', '.join(gone[:5])}")
    new = [(i, s) for i, s in zip(ids, splits) if i not in saved]
    if new or not path.is_file():
        rows = list(saved.items()) + new
        buffer = io.StringIO()
        pd.DataFrame(rows, columns=["id", "split"]).to_csv(buffer, index=False, lineterminator="\n")
        atomic_write_text(path, buffer.getvalue())
    return splits, problems
