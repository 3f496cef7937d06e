"""The names of the default config's runs, caches and exports are pinned: renaming them orphans every saved
run and cache, so a change here must be deliberate (and come with a way to keep the old ones). Where a run
is kept is not part of its name."""

import os

import pytest

from movietitles.artefacts import cache_key, run_directory
from movietitles.config import load_config, with_overrides
from movietitles.evaluate import evaluation_directory
from movietitles.generator.runs import run_directory as generator_run_directory
from movietitles.serving.generator import MODEL_NAME
from movietitles.serving.genre import serving_name

DEFAULT_NAMES = {
    "title": "title-8358586aa6", "poster": "poster-0711d0e7ea", "fusion": "fusion-facbe4dfea",
    "title control": "title-d316d1ac12", "generator": "generator-5b6d45ace6", "evaluation": "evaluation-93e675f9ff",
}
CACHE_KEYS = {"title": "minilm-l6-v2-mean", "poster": "efficientnet_lite0-squash224-multidepth",
              "poster_text": "ppocr-batched-1.4.4-det320-w320"}


def names(config):
    return {**{task: run_directory(config, task).name for task in ("title", "poster", "fusion")},
            "title control": run_directory(with_overrides(config, {"genre.title_corpus": False}), "title").name,
            "generator": generator_run_directory(config).name, "evaluation": evaluation_directory(config).name}


def test_the_default_configs_names_are_pinned():
    config = load_config()
    assert names(config) == DEFAULT_NAMES
    assert {kind: cache_key(config, kind) for kind in CACHE_KEYS} == CACHE_KEYS
    assert [serving_name(t) for t in ("title", "poster", "fusion")] == ["genre_title", "genre_poster", "genre_fusion"]
    assert MODEL_NAME == "title_generator"


@pytest.mark.parametrize("where", ["saved_models/runs/", "./saved_models/runs", "ABSOLUTE", "/tmp/elsewhere/runs"])
def test_a_runs_folder_however_spelled_holds_the_same_names(where):
    where = os.path.abspath("saved_models/runs") if where == "ABSOLUTE" else where
    config = with_overrides(load_config(), {"genre.runs_dir": where, "data.prepared_dir": f"{where}/../prepared",
                                            "features.cache_dir": "/tmp/features"})
    assert names(config) == DEFAULT_NAMES
    assert run_directory(config, "fusion").parent == run_directory(config, "title").parent


def test_what_shapes_a_model_changes_its_name():
    config = load_config()
    assert names(with_overrides(config, {"seed": 7}))["fusion"] != DEFAULT_NAMES["fusion"]
    assert names(with_overrides(config, {"genre.models.poster.dropout": 0.3}))["poster"] != DEFAULT_NAMES["poster"]
    assert names(with_overrides(config, {"data.root": "/data/other"}))["title"] != DEFAULT_NAMES["title"]


def test_an_added_key_at_the_value_it_was_added_at_renames_nothing_and_shapes_names_otherwise():
    """naming.ADDED_KEYS: options added after the names were pinned leave them alone until they are used."""
    from movietitles.config import get
    from movietitles.naming import ADDED_KEYS, identity

    config = load_config()
    for dotted, added_at in ADDED_KEYS.items():
        assert get(config, dotted) == added_at, f"{dotted}: the defaults must hold the value it was added at"
        assert get(identity(config), dotted, "absent") == "absent"
    reading = names(with_overrides(config, {"genre.models.poster.poster_text": True}))
    assert reading["poster"] != DEFAULT_NAMES["poster"] and reading["evaluation"] != DEFAULT_NAMES["evaluation"]
    assert reading["title"] == DEFAULT_NAMES["title"] and reading["fusion"] == DEFAULT_NAMES["fusion"]
    # The text a model reads is part of its name: another OCR setting, another run.
    other_ocr = with_overrides(config, {"genre.models.poster.poster_text": True, "encoders.ocr.det_limit_side_len": 480})
    assert run_directory(other_ocr, "poster") != run_directory(with_overrides(
        config, {"genre.models.poster.poster_text": True}), "poster")
