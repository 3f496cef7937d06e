"""Tiny dataset → prepared data → cached features → the tf.data pipeline every task reads."""

from pathlib import Path

import numpy as np

from movietitles.artefacts import cache_key, feature_store
from movietitles.data.dataset import load_prepared
from movietitles.encoders.text import build_text_encoder
from movietitles.features.cache import FeatureCache
from movietitles.features.extract import POSTER, TITLE, extract_features
from movietitles.features.pipeline import load_split, make_dataset
from movietitles.settings import DataSettings


def test_every_title_and_poster_is_cached_once(tiny_config):
    movies = load_prepared(tiny_config["data"]["prepared_dir"]).movies
    directories = extract_features(feature_store(tiny_config))  # already complete: nothing is recomputed
    titles = FeatureCache.open(tiny_config["features"]["cache_dir"], TITLE, cache_key(tiny_config, TITLE),
                               movies["id"].tolist(), 32)
    assert titles.directory == directories[TITLE] and titles.is_complete()
    assert titles.load().shape == (len(movies), 384)
    posters = np.load(directories[POSTER] / "features.npy")
    assert posters.shape == (int(movies["has_poster"].sum()), 2024)  # multi-depth pooling: 1280 + 744
    assert np.all(np.isfinite(posters)) and posters.std() > 0


def test_split_features_line_up_with_their_movies(tiny_config):
    test = load_split(feature_store(tiny_config), "test", (TITLE, POSTER))
    assert len(test) > 0 and test.movies["has_poster"].all() and test.movies["labelled"].all()
    encoder = build_text_encoder(tiny_config["encoders"]["text"])
    np.testing.assert_allclose(test.inputs[TITLE], encoder.embed(test.movies["title"].tolist()), atol=1e-4)
    expected = np.array([[g in row.split("|") for g in test.genres] for row in test.movies["genres"]], np.float32)
    np.testing.assert_array_equal(test.labels, expected)


def test_title_only_movies_train_the_title_model_only(tiny_config):
    with_corpus = load_split(feature_store(tiny_config), "train", (TITLE,))
    with_posters = load_split(feature_store(tiny_config), "train", (TITLE, POSTER))
    assert (~with_corpus.movies["has_poster"]).any()
    assert set(with_posters.movies["id"]) < set(with_corpus.movies["id"])
    held_out = set(load_split(feature_store(tiny_config), "validation", (TITLE,)).movies["id"])
    assert not held_out & set(with_corpus.movies["id"])


def test_title_only_movies_come_with_a_zero_poster_when_asked(tiny_config):
    every = load_split(feature_store(tiny_config), "train", (TITLE, POSTER), require_poster=False)
    with_posters = load_split(feature_store(tiny_config), "train", (TITLE, POSTER))
    assert set(every.movies["id"]) == set(load_split(feature_store(tiny_config), "train", (TITLE,)).movies["id"])
    has_poster = every.movies["has_poster"].to_numpy()
    assert (~has_poster).any() and not every.inputs[POSTER][~has_poster].any()
    assert np.all(np.any(every.inputs[POSTER][has_poster] != 0, axis=1))
    position = dict(zip(with_posters.movies["id"], range(len(with_posters))))
    rows = [position[i] for i in every.movies["id"][has_poster]]
    np.testing.assert_array_equal(every.inputs[POSTER][has_poster], with_posters.inputs[POSTER][rows])
    np.testing.assert_array_equal(every.inputs[TITLE][has_poster], with_posters.inputs[TITLE][rows])


def test_dataset_yields_named_inputs_labels_and_text(tiny_config):
    features = load_split(feature_store(tiny_config), "train", (TITLE, POSTER))
    batch_inputs, batch_labels = next(iter(make_dataset(features, 8, shuffle=True, with_text=True)))
    assert batch_inputs[TITLE].shape == (8, 384) and batch_inputs[POSTER].shape == (8, 2024)
    assert batch_labels.shape == (8, len(features.genres))
    assert batch_inputs["title_text"].dtype.name == "string"
    total = sum(int(y.shape[0]) for _, y in make_dataset(features, 8))
    assert total == len(features)


def test_a_corrected_title_or_replaced_poster_recomputes_that_row_only(tiny_config, tmp_path, caplog):
    import shutil

    import pandas as pd
    from PIL import Image

    from movietitles.config import with_overrides
    from movietitles.data.prepare import prepare

    raw = shutil.copytree(tiny_config["data"]["root"], tmp_path / "raw")
    config = with_overrides(tiny_config, {"data.root": str(raw), "data.prepared_dir": str(tmp_path / "prepared"),
                                          "features.cache_dir": str(tmp_path / "features")})
    prepare(DataSettings.from_config(config), progress=False)
    made = extract_features(feature_store(config))
    before = {kind: np.array(np.load(d / "features.npy")) for kind, d in made.items()}
    movies = load_prepared(config["data"]["prepared_dir"]).movies
    with_poster = movies[movies["has_poster"]]
    corrected, replaced = with_poster["id"].iloc[0], with_poster["id"].iloc[1]

    source = raw / "movielens" / "movies.csv"
    table = pd.read_csv(source, dtype=str, keep_default_na=False)
    row = with_poster.loc[with_poster["id"] == corrected, "source_row"].item() - 2  # the header is row 1
    table.loc[row, "title"] = "A Title Corrected Since (1999)"
    table.to_csv(source, index=False)
    poster = Path(with_poster.loc[with_poster["id"] == replaced, "poster"].item())
    Image.new("RGB", (120, 180), (200, 30, 30)).save(raw / "posters" / poster.name)
    prepare(DataSettings.from_config(config), progress=False)

    caplog.set_level("INFO", logger="movietitles.features.extract")
    after = {kind: np.array(np.load(d / "features.npy")) for kind, d in extract_features(feature_store(config)).items()}
    assert "1 row(s) whose title or poster changed" in caplog.text
    title_rows_changed = np.flatnonzero(np.abs(after[TITLE] - before[TITLE]).max(axis=1) > 0)
    poster_rows_changed = np.flatnonzero(np.abs(after[POSTER] - before[POSTER]).max(axis=1) > 0)
    assert movies["id"].iloc[title_rows_changed].tolist() == [corrected]
    assert with_poster["id"].iloc[poster_rows_changed].tolist() == [replaced]
