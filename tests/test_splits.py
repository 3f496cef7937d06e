import numpy as np
import pandas as pd
import pytest

from movietitles.data.splits import assign_splits, check_fractions, ensure_splits, make_groups, read_splits

GENRES = ["Action", "Comedy", "Drama", "Horror"]
FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def _movies(n_poster=200, n_corpus=50, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_poster + n_corpus):
        poster = k < n_poster
        labels = [g for g in GENRES if rng.random() < 0.35]
        rows.append({"id": f"tt{k + 1:07d}", "title": f"Movie {k}", "genres": "|".join(labels),
                     "poster_sha256": f"sha{k}" if poster else "", "has_poster": poster})
    return pd.DataFrame(rows)


def test_check_fractions():
    assert check_fractions(FRACTIONS).tolist() == [0.8, 0.1, 0.1]
    for bad in ({"train": 0.5, "test": 0.1}, {"train": 1.2, "test": -0.2}, {"train": 0.9, "dev": 0.1}):
        with pytest.raises(ValueError):
            check_fractions(bad)


def test_groups_follow_shared_poster_and_title():
    movies = pd.DataFrame({
        "title": ["Hamlet", "hamlet!", "Other", "Third", "Fourth", "Fifth"],
        "poster_sha256": ["a", "", "b", "b", "c", ""],
    })
    groups = make_groups(movies)
    assert groups[0] == groups[1]          # same normalised title
    assert groups[2] == groups[3]          # same poster bytes
    assert len(set(groups[[0, 2, 4, 5]])) == 4


def test_stratified_sizes_corpus_in_train_and_determinism():
    movies = _movies()
    splits, problems = assign_splits(movies, GENRES, FRACTIONS, seed=7)
    assert problems == []
    poster = movies["has_poster"].to_numpy()
    assert set(splits[~poster]) == {"train"}
    counts = pd.Series(splits[poster]).value_counts()
    assert abs(counts["test"] - 20) <= 3 and abs(counts["validation"] - 20) <= 3
    # Stratified: every genre is in every split roughly in proportion.
    for genre in GENRES:
        has = movies["genres"].str.contains(genre).to_numpy() & poster
        share = (splits[has] == "test").mean()
        assert 0.04 < share < 0.2, (genre, share)
    again, _ = assign_splits(movies, GENRES, FRACTIONS, seed=7)
    assert (again == splits).all()
    other, _ = assign_splits(movies, GENRES, FRACTIONS, seed=8)
    assert (other != splits).any()
    shuffled = movies.sample(frac=1.0, random_state=1).reset_index(drop=True)
    by_id = dict(zip(movies["id"], splits))
    shuffled_splits, _ = assign_splits(shuffled, GENRES, FRACTIONS, seed=7)
    assert [by_id[i] for i in shuffled["id"]] == list(shuffled_splits)


def test_groups_never_straddle_and_title_corpus_follows_group():
    movies = _movies(n_poster=60, n_corpus=0)
    # tt..61 shares a title with movie 0, tt..62 shares poster bytes with movie 1.
    extra = pd.DataFrame([
        {"id": "tt0000061", "title": "movie 0", "genres": "", "poster_sha256": "", "has_poster": False},
        {"id": "tt0000062", "title": "Else", "genres": "Drama", "poster_sha256": "sha1", "has_poster": True},
    ])
    movies = pd.concat([movies, extra], ignore_index=True)
    for seed in range(5):
        splits, _ = assign_splits(movies, GENRES, FRACTIONS, seed=seed)
        assert splits[60] == splits[0] and splits[61] == splits[1]


def test_saved_splits_reused_extended_and_warned(tmp_path):
    path = tmp_path / "splits.csv"
    movies = _movies(n_poster=100, n_corpus=20)
    first, problems = ensure_splits(movies, GENRES, FRACTIONS, 1, path)
    assert problems == [] and read_splits(path) == dict(zip(movies["id"], first))
    text = path.read_text()

    # Same data again: the file is untouched and the splits are the same.
    second, _ = ensure_splits(movies, GENRES, FRACTIONS, 1, path)
    assert (second == first).all() and path.read_text() == text

    # Different seed, one movie gone, one new movie sharing the title of a held-out movie.
    held_out = int(np.flatnonzero(first != "train")[0])
    new = pd.DataFrame([{"id": "tt9999999", "title": movies["title"][held_out], "genres": "Drama",
                         "poster_sha256": "", "has_poster": False}])
    changed = pd.concat([movies.drop(index=5), new], ignore_index=True)
    third, problems = ensure_splits(changed, GENRES, FRACTIONS, 99, path)
    assert dict(zip(changed["id"], third))["tt9999999"] == first[held_out]
    assert [i for i, s in zip(changed["id"], third) if s != dict(zip(movies["id"], first)).get(i, s)] == []
    assert len(problems) == 1 and "no longer in the data" in problems[0] and movies["id"][5] in problems[0]
    saved = read_splits(path)
    assert list(saved)[-1] == "tt9999999" and movies["id"][5] in saved  # appended; gone id kept


def test_bad_splits_file(tmp_path):
    path = tmp_path / "splits.csv"
    path.write_text("id,split\ntt1,train\ntt2,holdout\n")
    with pytest.raises(ValueError, match="row 3"):
        read_splits(path)
