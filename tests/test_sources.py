import pytest
from tiny_dataset import TINY_CASES, make_tiny_movielens

from movietitles.config import ConfigError, load_config, with_overrides
from movietitles.data.sources import SourceError, imdb_id, load_source, read_kaggle, read_manifest
from movietitles.settings import DataSettings


def test_imdb_id():
    assert imdb_id("114709") == imdb_id("0114709") == imdb_id("tt0114709") == "tt0114709"
    assert imdb_id("12345678") == "tt12345678"
    for bad in ("", "abc", "0", "tt"):
        with pytest.raises(ValueError):
            imdb_id(bad)


def test_movielens(tmp_path):
    root = make_tiny_movielens(tmp_path / "data", n_with_poster=10, n_without_poster=5)
    config = with_overrides(load_config(), {"data.root": str(root)})
    records, issues = load_source(DataSettings.from_config(config))
    assert issues == []
    by_id = {}
    for rec in records:
        by_id.setdefault(rec.id, rec)
    assert len(records) == 10 + 5 + len(TINY_CASES)  # the duplicated id is still there (prepare drops it)
    first = by_id["tt0100001"]
    assert first.poster == root / "posters" / "tt0100001.jpg"
    assert first.source_file == "movielens/movies.csv" and first.source_row == 2
    assert by_id["tt0200011"].poster is None  # title-only
    assert by_id[TINY_CASES["unknown_genre"]].genres == ["Action", "Superhero"]
    assert by_id[TINY_CASES["empty_title"]].raw_title == ""


def test_movielens_missing_link_reported(tmp_path):
    root = make_tiny_movielens(tmp_path / "data", n_with_poster=3, n_without_poster=2)
    links = root / "movielens" / "links.csv"
    lines = links.read_text().splitlines()
    links.write_text("\n".join(lines[:2] + [lines[3].split(",")[0] + ",notanumber,1"] + lines[4:]) + "\n")
    records, issues = load_source(DataSettings.from_config(with_overrides(load_config(), {"data.root": str(root)})))
    reasons = sorted(i.code for i in issues)
    assert reasons == ["bad_id", "missing_link"]
    assert {i.row for i in issues} == {3, 4}
    assert all(i.action == "dropped" and i.field == "imdbId" for i in issues)


def test_kaggle_latin1(tmp_path):
    csv = tmp_path / "MovieGenre.csv"
    text = ('imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n'
            '114709,http://www.imdb.com/title/tt114709,Toy Story (1995),8.3,Animation|Adventure|Comedy,'
            'https://example.com/a.jpg\n'
            '113497,x,"Misérables, Les (1995)",7,Drama,\n'
            'nan,x,Broken,5,Drama,https://example.com/b.jpg\n')
    csv.write_bytes(text.encode("latin-1"))
    records, issues = read_kaggle(csv)
    assert [r.id for r in records] == ["tt0114709", "tt0113497"]
    assert records[0].genres == ["Animation", "Adventure", "Comedy"]
    assert records[0].poster_url == "https://example.com/a.jpg" and records[0].poster is None
    assert records[1].raw_title == "Misérables, Les (1995)" and records[1].poster_url == ""
    assert [(i.row, i.code, i.action) for i in issues] == [(4, "bad_id", "dropped")]


def test_manifest_paths(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"x")
    absolute = tmp_path / "abs.jpg"
    absolute.write_bytes(b"y")
    csv = tmp_path / "manifest.csv"
    csv.write_text("id,title,genres,poster\n"
                   "m1,Alpha (2000),Drama|Comedy,img/a.jpg\n"
                   f"m2,Beta (2001),Horror,{absolute}\n"
                   "m3,Gamma,,\n"
                   "m4,Delta,Drama,img/missing.jpg\n"
                   ",NoId,Drama,\n", encoding="utf-8")
    records, issues = read_manifest(csv)
    assert [r.id for r in records] == ["m1", "m2", "m3", "m4"]
    assert records[0].poster == tmp_path / "img" / "a.jpg" and records[0].genres == ["Drama", "Comedy"]
    assert records[1].poster == absolute
    assert records[2].poster is None and records[2].genres == []
    assert records[3].poster is None
    assert [(i.row, i.id, i.code, i.action) for i in issues] == [
        (5, "m4", "poster_missing", "skipped"), (6, "", "empty_id", "dropped")]


def test_missing_source_file_is_a_clear_error(tmp_path):
    config = with_overrides(load_config(), {"data.root": str(tmp_path), "data.source": "manifest"})
    with pytest.raises(SourceError, match="manifest.csv"):
        load_source(DataSettings.from_config(config))
    (tmp_path / "manifest.csv").write_text("id,title\nx,y\n")
    with pytest.raises(SourceError, match="missing column"):
        load_source(DataSettings.from_config(config))
    # An unknown source is refused when the config is loaded, before any work.
    with pytest.raises(ConfigError, match="data.source='imdb' is not one of movielens, kaggle, manifest"):
        load_config(overrides=["data.source=imdb"])
    with pytest.raises(ConfigError, match="not one of"):
        DataSettings.from_config(with_overrides(config, {"data.source": "imdb"}))


def test_the_import_report_lists_long_titles_and_posters_outside_the_root_and_counts_add_up(tmp_path):
    """A 1 MB title, a `../` poster path and an absolute one outside data.root are refused and listed; a missing
    poster is one row read, not two."""
    import pandas as pd
    from PIL import Image

    from movietitles.data.prepare import MAX_TITLE_CHARS, prepare

    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    (root / "img").mkdir(parents=True)
    outside.mkdir()
    for folder in (root / "img", outside):
        Image.new("RGB", (60, 90), (90, 20, 200)).save(folder / "p.jpg")
    rows = [("m1", "Alpha (2000)", "Drama", "img/p.jpg"), ("m2", "x" * 1_000_000, "Drama", "img/p.jpg"),
            ("m3", "Gamma", "Drama", "../elsewhere/p.jpg"), ("m4", "Delta", "Drama", str(outside / "p.jpg")),
            ("m5", "Epsilon", "Drama", str(root / "img" / "p.jpg")), ("m6", "Zeta", "Drama", "img/missing.jpg")]
    pd.DataFrame(rows, columns=["id", "title", "genres", "poster"]).to_csv(root / "manifest.csv", index=False)
    config = with_overrides(load_config(), {"data.root": str(root), "data.source": "manifest",
                                            "data.prepared_dir": str(tmp_path / "prepared")})
    summary = prepare(DataSettings.from_config(config), progress=False)
    assert summary.rows_read == 6 and summary.movies == 5  # m2 dropped
    report = pd.read_csv(tmp_path / "prepared" / "import_report.csv", dtype=str, keep_default_na=False)
    listed = {(r.id, r.reason.split(":")[0], r.action) for r in report.itertuples()}
    assert {("m2", "title_too_long", "dropped"), ("m3", "poster_outside_root", "skipped"),
            ("m4", "poster_outside_root", "skipped"), ("m6", "poster_missing", "skipped")} <= listed
    assert f"1,000,000 characters, over {MAX_TITLE_CHARS}" in report.loc[report["id"] == "m2", "reason"].item()
    movies = pd.read_csv(tmp_path / "prepared" / "movies.csv", dtype=str, keep_default_na=False).set_index("id")
    assert movies.loc["m1", "poster"] and movies.loc["m5", "poster"]  # inside the root, relative or absolute
    assert not movies.loc["m3", "poster"] and not movies.loc["m4", "poster"]
