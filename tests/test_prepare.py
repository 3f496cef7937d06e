import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tiny_dataset import TINY_CASES, UNKNOWN_GENRE, make_tiny_movielens

from movietitles.config import load_config, with_overrides
from movietitles.data import PreparedDataMissing, label_matrix, load_prepared
from movietitles.data.__main__ import main
from movietitles.data.dataset import MOVIE_COLUMNS
from movietitles.data.prepare import REPORT_COLUMNS, prepare
from movietitles.data.titles import normalise_title
from movietitles.settings import DataSettings

OUTPUTS = ["movies.csv", "genres.txt", "import_report.csv", "splits.csv", "config.yaml"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_movielens(tmp_path_factory.mktemp("tiny"))


def _config(root, out, **extra):
    return with_overrides(load_config(), {"data.root": str(root), "data.prepared_dir": str(out), **extra})


@pytest.fixture(scope="module")
def prepared(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    summary = prepare(DataSettings.from_config(_config(tiny, out)), progress=False)
    return out, summary


def _read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_outputs_and_columns(tiny, prepared):
    out, summary = prepared
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    movies = _read(out / "movies.csv")
    assert list(movies.columns) == MOVIE_COLUMNS
    assert list(_read(out / "import_report.csv").columns) == REPORT_COLUMNS
    assert (out / "genres.txt").read_text().splitlines() == load_config()["data"]["genres"]
    # config.yaml: the settings it was made with, as a --config file that makes it again
    assert DataSettings.from_config(load_config(out / "config.yaml")) == DataSettings.from_config(_config(tiny, out))
    assert movies["id"].is_unique
    assert summary.rows_read == 60 + 40 + len(TINY_CASES)
    assert summary.movies == len(movies) == summary.rows_read - 2  # duplicate id, empty title

    first = movies.set_index("id").loc["tt0100001"]
    assert first["raw_title"].endswith(")") and first["source_row"] == "2"
    assert first["title"] and "(" not in first["title"] and first["year"].isdigit()
    assert movies["year"].str.fullmatch(r"\d{4}|").all()
    tokens = {t for g in movies["genres"] for t in g.split("|") if t}
    assert tokens <= set(load_config()["data"]["genres"]) and "IMAX" not in tokens

    with_poster = movies[movies["poster"] != ""]
    assert len(with_poster) == summary.with_poster == 60 + 4 + 3  # good + fixed + unknown genre, identical pair
    for path in with_poster["poster"]:
        assert path.startswith("/")
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
    assert (movies["poster"] == "").sum() == (movies["poster_sha256"] == "").sum()


def test_report_rows_for_every_bad_case(prepared):
    out, summary = prepared
    report = _read(out / "import_report.csv")
    movies = _read(out / "movies.csv").set_index("id")
    rows = {(r.id, r.field): r for r in report.itertuples()}

    def row(case, field):
        return rows[(TINY_CASES[case], field)]

    for case in ("zero_byte", "truncated", "absurd_size"):
        assert row(case, "poster").action == "skipped"
        assert movies.loc[TINY_CASES[case], "poster"] == ""  # kept as title-only
    assert row("zero_byte", "poster").reason == "empty_file"
    assert row("truncated", "poster").reason.split(":")[0] in ("truncated", "unreadable")
    assert row("absurd_size", "poster").reason.startswith("absurd_size: 10x2000")
    assert row("zero_byte", "poster").source_file == f"posters/{TINY_CASES['zero_byte']}.jpg"

    for case, code in (("grayscale", "mode_L"), ("cmyk", "mode_CMYK"), ("palette_png", "mode_P"),
                       ("rgba", "alpha_RGBA")):
        assert row(case, "poster").action == "fixed" and row(case, "poster").reason.startswith(code)
        poster = movies.loc[TINY_CASES[case], "poster"]
        assert poster == str((out / "posters_fixed" / f"{TINY_CASES[case]}.jpg").resolve())

    assert (row("empty_title", "title").reason, row("empty_title", "title").action) == ("empty_title", "dropped")
    assert TINY_CASES["empty_title"] not in movies.index

    unknown = row("unknown_genre", "genres")
    assert (unknown.reason, unknown.action) == (f"unknown_genre: {UNKNOWN_GENRE}", "dropped_label")
    assert movies.loc[TINY_CASES["unknown_genre"], "genres"] == "Action"

    duplicate = row("duplicate_id", "id")
    assert duplicate.action == "dropped" and duplicate.reason == "duplicate_id: first at row 2"
    assert movies.loc[TINY_CASES["duplicate_id"], "source_row"] == "2"  # the first one is kept

    a, b = TINY_CASES["identical_poster_a"], TINY_CASES["identical_poster_b"]
    assert rows[(a, "poster")].action == rows[(b, "poster")].action == "grouped"
    assert rows[(a, "poster")].reason == f"duplicate_poster: same bytes as {b}"
    assert movies.loc[a, "poster_sha256"] == movies.loc[b, "poster_sha256"]

    # Nothing else: every report row is one of the planted cases.
    assert len(report) == 12
    assert summary.issue_counts["duplicate_poster (grouped)"] == 2


def test_split_invariants(prepared):
    out, _ = prepared
    movies = _read(out / "movies.csv")
    saved = _read(out / "splits.csv")
    assert set(movies["split"]) == {"train", "validation", "test"}
    assert dict(zip(saved["id"], saved["split"])) == dict(zip(movies["id"], movies["split"]))
    assert saved["id"].is_unique  # disjoint: one split per id

    no_poster = movies[movies["poster"] == ""]
    grouped_with_poster = set(no_poster["title"].map(normalise_title)) & set(
        movies.loc[movies["poster"] != "", "title"].map(normalise_title))
    corpus = no_poster[~no_poster["title"].map(normalise_title).isin(grouped_with_poster)]
    assert (corpus["split"] == "train").all()

    keys = movies["title"].map(normalise_title)
    train_titles = set(keys[movies["split"] == "train"])
    assert not train_titles & set(keys[movies["split"] != "train"])
    shas = movies.loc[movies["poster_sha256"] != ""].groupby("poster_sha256")["split"].nunique()
    assert (shas == 1).all()

    by_id = movies.set_index("id")["split"]
    assert by_id[TINY_CASES["identical_poster_a"]] == by_id[TINY_CASES["identical_poster_b"]]
    assert by_id[TINY_CASES["same_title_no_poster"]] == by_id["tt0100001"]


def test_rerun_identical_and_fresh_run_deterministic(tiny, prepared, tmp_path):
    out, _ = prepared
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    prepare(DataSettings.from_config(_config(tiny, out)), progress=False)
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before

    fresh = tmp_path / "fresh"
    prepare(DataSettings.from_config(_config(tiny, fresh)), progress=False)
    assert (fresh / "splits.csv").read_bytes() == before["splits.csv"]
    assert (fresh / "import_report.csv").read_bytes() == before["import_report.csv"]
    moved = (fresh / "movies.csv").read_text().replace(str(fresh.resolve()), str(out.resolve()))
    assert moved == before["movies.csv"].decode()


def test_saved_splits_are_reused(tiny, tmp_path):
    out = tmp_path / "out"
    prepare(DataSettings.from_config(_config(tiny, out)), progress=False)
    saved = _read(out / "splits.csv")
    # A different seed and fractions do not move saved movies; a removed id is re-added at the end.
    dropped = saved.iloc[3]
    (out / "splits.csv").write_text(saved.drop(index=3).to_csv(index=False, lineterminator="\n"))
    fractions = {"train": 0.5, "validation": 0.25, "test": 0.25}
    prepare(DataSettings.from_config(_config(tiny, out, seed=999, **{"data.split_fractions": fractions})),
            progress=False)
    again = _read(out / "splits.csv")
    assert again.iloc[:-1].reset_index(drop=True).equals(saved.drop(index=3).reset_index(drop=True))
    assert again.iloc[-1]["id"] == dropped["id"]
    movies = _read(out / "movies.csv").set_index("id")
    assert (movies.loc[saved["id"].drop(index=3), "split"].to_numpy() == saved["split"].drop(index=3)).all()


def test_load_prepared_and_label_matrix(prepared, tmp_path):
    out, _ = prepared
    data = load_prepared(out)
    movies = data.movies
    assert data.genres == load_config()["data"]["genres"]
    assert pd.api.types.is_string_dtype(movies["id"]) and isinstance(movies["id"].iloc[0], str)
    assert movies["has_poster"].dtype == bool and movies["labelled"].dtype == bool
    assert movies["has_poster"].sum() == 67
    assert str(movies["year"].dtype) == "Int64"
    y = label_matrix(movies, data.genres)
    assert y.dtype == np.float32 and y.shape == (len(movies), len(data.genres))
    assert (y.sum(axis=1) > 0).tolist() == movies["labelled"].tolist()
    action = data.genres.index("Action")
    assert y[movies.index[movies["id"] == TINY_CASES["unknown_genre"]][0], action] == 1.0

    with pytest.raises(PreparedDataMissing, match=r"movies\.csv.*python -m movietitles\.data prepare"):
        load_prepared(tmp_path / "nothing")


def test_cli(tiny, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["prepare", "--no-progress", "--set", f"data.root={tiny}", "--set", f"data.prepared_dir={out}"]) == 0
    text = capsys.readouterr().out
    assert "empty_file (skipped)" in text and "test" in text
    assert (out / "config.yaml").is_file()
    assert main(["prepare", "--set", f"data.root={tmp_path / 'none'}", "--set", f"data.prepared_dir={out}"]) == 2
    assert "movies.csv" in capsys.readouterr().err
