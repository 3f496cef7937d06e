"""`prepare`: source files -> <prepared_dir>/{movies.csv, genres.txt, splits.csv, import_report.csv, config.yaml}.

Bad input never stops the run and is never dropped silently: each problem is one row of
import_report.csv (source_file, row, id, field, reason, action). `row` is always the
movie's row in its source CSV (header = row 1); for poster problems `source_file` is the
poster file. Every output is written atomically, and a re-run gives identical files.
"""

from __future__ import annotations

import io
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from movietitles.config import write_config
from movietitles.data.dataset import MOVIE_COLUMNS
from movietitles.data.download import download_posters
from movietitles.data.images import check_posters
from movietitles.data.sources import Issue, RawMovie, load_source
from movietitles.data.splits import SPLITS, ensure_splits
from movietitles.data.titles import clean_title
from movietitles.io import atomic_write_text, file_name_for
from movietitles.settings import DataSettings

REPORT_COLUMNS = ["source_file", "row", "id", "field", "reason", "action"]


# Longer titles are refused (dropped, and listed in import_report.csv): the longest MovieLens title has 191
# characters, and the models read a few dozen word pieces of a title at most.
MAX_TITLE_CHARS = 300


@dataclass
class PrepareSummary:
    prepared_dir: Path
    rows_read: int
    movies: int
    with_poster: int
    labelled_with_poster: int
    issue_counts: dict[str, int]                 # "code (action)" -> count
    split_sizes: dict[str, dict[str, int]]       # split -> {movies, with_poster, poster_and_labels}
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"prepared {self.prepared_dir}: {self.rows_read} rows read, {self.movies} movies kept, "
               f"{self.with_poster} with a usable poster, {self.labelled_with_poster} of those labelled"]
        out.append(f"import report: {sum(self.issue_counts.values())} issue(s)")
        out += [f"  {n:6d}  {key}" for key, n in sorted(self.issue_counts.items(), key=lambda kv: -kv[1])]
        out.append("splits (movies / with poster / poster and labels):")
        out += [f"  {s:<10s} {v['movies']:6d} / {v['with_poster']:6d} / {v['poster_and_labels']:6d}"
                for s, v in self.split_sizes.items()]
        out += [f"warning: {w}" for w in self.warnings]
        out.append(f"done in {self.seconds:.1f} s")
        return out


def prepare(data: DataSettings, progress: bool = True) -> PrepareSummary:
    start = time.time()
    root, out, genres, ignored = data.root, data.prepared_dir, list(data.genres), data.ignored_genres
    out.mkdir(parents=True, exist_ok=True)

    records, issues = load_source(data)
    # A row is a record, or an issue that dropped it (other issues are about a record's field).
    rows_read = len(records) + sum(issue.action == "dropped" for issue in issues)
    records = drop_duplicate_ids(records, issues)
    if data.source == "kaggle":
        fetch_posters(records, out / "posters", data.download, issues, progress)

    movies = []
    for rec in records:
        if len(rec.raw_title) > MAX_TITLE_CHARS:
            reason = f"title_too_long: {len(rec.raw_title):,} characters, over {MAX_TITLE_CHARS}"
            issues.append(Issue(rec.source_file, rec.source_row, rec.id, "title", reason, "dropped"))
            continue
        clean = clean_title(rec.raw_title)
        if not clean.title:
            issues.append(Issue(rec.source_file, rec.source_row, rec.id, "title", "empty_title", "dropped"))
            continue
        labels, unknown = map_genres(rec.genres, genres, ignored)
        issues += [Issue(rec.source_file, rec.source_row, rec.id, "genres", f"unknown_genre: {token}",
                         "dropped_label") for token in unknown]
        movies.append({"rec": rec, "title": clean.title, "year": "" if clean.year is None else str(clean.year),
                       "aka": clean.aka, "genres": "|".join(labels)})

    check_poster_files(movies, root, out, data.poster_limits, issues, progress)
    report_duplicate_posters(movies, root, issues)

    table = pd.DataFrame({
        "id": [m["rec"].id for m in movies], "title": [m["title"] for m in movies],
        "year": [m["year"] for m in movies], "aka": [m["aka"] for m in movies],
        "raw_title": [m["rec"].raw_title for m in movies], "genres": [m["genres"] for m in movies],
        "poster": [m["poster"] for m in movies], "poster_sha256": [m["sha256"] for m in movies],
        "split": "", "source_row": [m["rec"].source_row for m in movies],
    }, columns=MOVIE_COLUMNS)
    table["has_poster"] = table["poster"] != ""
    splits, split_warnings = ensure_splits(table, genres, data.split_fractions, data.split_seed,
                                           out / "splits.csv")
    table["split"] = splits

    _write_csv(out / "movies.csv", table[MOVIE_COLUMNS])
    _write_csv(out / "import_report.csv", pd.DataFrame([vars(i) for i in issues], columns=REPORT_COLUMNS))
    atomic_write_text(out / "genres.txt", "".join(f"{g}\n" for g in genres))
    write_config(data.recorded, out)  # the settings it was made with

    labelled = table["genres"] != ""
    split_sizes = {s: {"movies": int((table["split"] == s).sum()),
                       "with_poster": int(((table["split"] == s) & table["has_poster"]).sum()),
                       "poster_and_labels": int(((table["split"] == s) & table["has_poster"] & labelled).sum())}
                   for s in SPLITS}
    return PrepareSummary(
        prepared_dir=out, rows_read=rows_read, movies=len(table), with_poster=int(table["has_poster"].sum()),
        labelled_with_poster=int((table["has_poster"] & labelled).sum()),
        issue_counts=dict(Counter(f"{i.code} ({i.action})" for i in issues)),
        split_sizes=split_sizes, warnings=split_warnings, seconds=time.time() - start)


def drop_duplicate_ids(records: list[RawMovie], issues: list[Issue]) -> list[RawMovie]:
    """Keep the first record of each id; report the others."""
    first: dict[str, RawMovie] = {}
    for rec in records:
        if rec.id in first:
            issues.append(Issue(rec.source_file, rec.source_row, rec.id, "id",
                                f"duplicate_id: first at row {first[rec.id].source_row}", "dropped"))
        else:
            first[rec.id] = rec
    return list(first.values())


def map_genres(tokens: list[str], genres: list[str], ignored: set[str]) -> tuple[list[str], list[str]]:
    """(labels in label-set order, unknown tokens); ignored tokens vanish."""
    present = set(tokens)
    unknown = sorted(t for t in present if t not in genres and t not in ignored)
    return [g for g in genres if g in present], unknown


def fetch_posters(records: list[RawMovie], folder: Path, download: dict, issues: list[Issue],
                  progress: bool) -> None:
    """Kaggle: download posters (`download`: DataSettings.download); set rec.poster for the ones that arrived."""
    wanted = [rec for rec in records if rec.poster_url]
    for rec in records:
        if not rec.poster_url:
            issues.append(Issue(rec.source_file, rec.source_row, rec.id, "poster", "no_poster_url", "skipped"))
    results = download_posters([(rec.id, rec.poster_url) for rec in wanted], folder, progress=progress,
                               **download)
    for rec, result in zip(wanted, results):
        if result.path is not None:
            rec.poster = result.path
        else:
            issues.append(Issue(rec.source_file, rec.source_row, rec.id, "poster",
                                f"download_failed: {result.reason} ({rec.poster_url})", "skipped"))


def check_poster_files(movies: list[dict], root: Path, out: Path, cfg_image: dict,
                       issues: list[Issue], progress: bool) -> None:
    """Decode every poster; set m["poster"] (absolute path of a usable RGB JPEG or "") and m["sha256"]."""
    for m in movies:
        m["poster"], m["sha256"] = "", ""
    with_file = [m for m in movies if m["rec"].poster is not None]
    fixed_paths = [out / "posters_fixed" / f"{file_name_for(m['rec'].id)}.jpg" for m in with_file]
    checks = check_posters([(m["rec"].poster, f) for m, f in zip(with_file, fixed_paths)], cfg_image,
                           progress=progress)
    for m, fixed_path, check in zip(with_file, fixed_paths, checks):
        rec = m["rec"]
        if check.status == "skipped":
            issues.append(Issue(_display(rec.poster, root), rec.source_row, rec.id, "poster",
                                check.reason, "skipped"))
            continue
        if check.status == "fixed":
            issues.append(Issue(_display(rec.poster, root), rec.source_row, rec.id, "poster",
                                check.reason, "fixed"))
        m["poster"] = os.path.abspath(fixed_path if check.status == "fixed" else rec.poster)
        m["sha256"] = check.sha256


def report_duplicate_posters(movies: list[dict], root: Path, issues: list[Issue]) -> None:
    """Byte-identical usable posters: every movie is kept; splits.py groups them."""
    by_sha: dict[str, list[dict]] = {}
    for m in movies:
        if m["sha256"]:
            by_sha.setdefault(m["sha256"], []).append(m)
    for same in by_sha.values():
        if len(same) < 2:
            continue
        for m in same:
            others = ", ".join(o["rec"].id for o in same if o is not m)
            issues.append(Issue(_display(m["rec"].poster, root), m["rec"].source_row, m["rec"].id, "poster",
                                f"duplicate_poster: same bytes as {others}", "grouped"))


def _display(path: Path, root: Path) -> str:
    """A path relative to the data root when it is inside it."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return str(path)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    atomic_write_text(path, buffer.getvalue())
