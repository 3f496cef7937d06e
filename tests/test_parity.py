"""Train/serve parity on real films: the exported genre models, loaded in a fresh process and sent raw titles
and poster bytes, give the probabilities the evaluation scored (predictions.csv), movie by movie.

The default config on a sample of the real MovieLens titles and posters in ../shared (the models train for a
few epochs only: this checks the path from raw input to scores, not their quality).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from needs import need_path

from movietitles.artefacts import feature_store
from movietitles.config import load_config, with_overrides
from movietitles.settings import DataSettings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared" / "datasets" / "movie-posters"
MOVIES, SERVED = 900, 200
TOLERANCE = 1e-4
ROWS = {"title": "title (BERT)", "poster": "poster (CNN)", "fusion": "early fusion (Method 2)"}

FRESH_PROCESS = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401

work = Path(sys.argv[1])
request = json.loads((work / "request.json").read_text())
inputs = {"title": tf.constant(request["titles"]),
          "poster": tf.constant([Path(p).read_bytes() for p in request["posters"]])}
for task, version_dir in request["exports"].items():
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    names = serve.structured_input_signature[1]
    np.save(work / f"{task}.npy", serve(**{name: inputs[name] for name in names})["probabilities"].numpy())
"""


def real_sample(root, n, seed=0):
    """A MovieLens-layout folder with `n` real films that have a poster (their rows and poster files copied)."""
    movies = pd.read_csv(SHARED / "movielens" / "movies.csv", dtype=str, keep_default_na=False)
    links = pd.read_csv(SHARED / "movielens" / "links.csv", dtype=str, keep_default_na=False)
    links["poster"] = "tt" + links["imdbId"].str.zfill(7) + ".jpg"
    links = links[links["poster"].map(lambda name: (SHARED / "posters" / name).is_file())]
    links = links.sample(n=n, random_state=seed).sort_values("movieId", key=lambda ids: ids.astype(int))
    (root / "movielens").mkdir(parents=True)
    (root / "posters").mkdir()
    movies[movies["movieId"].isin(links["movieId"])].to_csv(root / "movielens" / "movies.csv", index=False)
    links.drop(columns="poster").to_csv(root / "movielens" / "links.csv", index=False)
    for name in links["poster"]:
        shutil.copyfile(SHARED / "posters" / name, root / "posters" / name)
    return root


@pytest.fixture(scope="module")
def evaluated_and_exported(tmp_path_factory, minilm_hub_dirs):
    """(config, the evaluation folder, task -> export version folder): the default config on the real sample."""
    need_path(SHARED / "posters", "the real posters")
    from movietitles.data.prepare import prepare
    from movietitles.evaluate import evaluate_genres
    from movietitles.features.extract import extract_features
    from movietitles.models.genre_runs import GENRE_TASKS
    from movietitles.serving.genre import export_genre_models
    from movietitles.training.genre import train_genre_model

    work = tmp_path_factory.mktemp("parity")
    encoder_dir, preprocess_dir = minilm_hub_dirs
    config = with_overrides(load_config(), {
        "data.root": str(real_sample(work / "raw", MOVIES)),
        "data.prepared_dir": str(work / "prepared"),
        "data.split_fractions": {"train": 0.5, "validation": 0.25, "test": 0.25},
        "features.cache_dir": str(work / "prepared" / "features"),
        "encoders.text.handle": str(encoder_dir),  # the packaged MiniLM, as the default's, exported once per session
        "encoders.text.preprocess_handle": str(preprocess_dir),
        "genre.runs_dir": str(work / "runs"),
        "genre.epochs": 3,
    })
    prepare(DataSettings.from_config(config), progress=False)
    extract_features(feature_store(config))
    for task in GENRE_TASKS:
        train_genre_model(config, task)
    return config, evaluate_genres(config), export_genre_models(config, tuple(ROWS), work / "saved_models")


def test_parity_of_served_and_scored_genre_models_on_real_films(evaluated_and_exported, tmp_path):
    from movietitles.data.dataset import load_prepared
    from movietitles.evaluation.predictions import read_predictions

    config, run_dir, exports = evaluated_and_exported
    scored = read_predictions(run_dir / "predictions.csv")
    served_ids = scored.loc[scored["model"] == ROWS["title"], "id"].head(SERVED).tolist()
    assert len(served_ids) == SERVED, f"the sample's test split holds only {len(served_ids)} films"
    movies = load_prepared(config["data"]["prepared_dir"]).movies.set_index("id").loc[served_ids]
    # The titles as the evaluation saw them (cleaned: "The Brave"), the poster files' bytes.
    (tmp_path / "request.json").write_text(json.dumps({
        "titles": movies["title"].tolist(), "posters": movies["poster"].tolist(),
        "exports": {task: str(path) for task, path in exports.items()}}))
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    genres = config["data"]["genres"]
    differences = {}
    for task, row in ROWS.items():
        expected = scored[scored["model"] == row].set_index("id").loc[served_ids, [f"p_{g}" for g in genres]]
        served = np.load(tmp_path / f"{task}.npy")
        assert served.shape == expected.shape and not np.isnan(expected.to_numpy()).any()
        differences[task] = float(np.abs(served - expected.to_numpy()).max())
    print(f"parity: largest |served - scored| over {SERVED} real test films: {differences}")
    assert max(differences.values()) <= TOLERANCE, differences
