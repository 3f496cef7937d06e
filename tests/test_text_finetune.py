"""Genre fine-tuning of the MiniLM's top layers (encoders.text.finetune): what changes, what serves, what resumes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from movietitles.config import with_overrides, write_config
from movietitles.encoders.bert_export import DEFAULT_ENCODER_DIR, DEFAULT_PREPROCESS_DIR

FINETUNE = {"layers": 1, "epochs": 2, "patience": 5, "batch_size": 8}


def link_default_minilm(work: Path, minilm_hub_dirs) -> Path:
    """`work`, with the default MiniLM pair linked into its saved_models/hub: fine-tuning starts from the
    default encoder and writes beside it, so the tests run from such a folder."""
    for source, default in zip(minilm_hub_dirs, (DEFAULT_ENCODER_DIR, DEFAULT_PREPROCESS_DIR)):
        (work / default).parent.mkdir(parents=True, exist_ok=True)
        (work / default).symlink_to(Path(source).resolve(), target_is_directory=True)
    return work


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, minilm_hub_dirs):
    return link_default_minilm(tmp_path_factory.mktemp("finetune-work"), minilm_hub_dirs)


def finetune_config(tiny_config, tmp_path, **finetune):
    return with_overrides(tiny_config, {
        "encoders.text.handle": DEFAULT_ENCODER_DIR, "encoders.text.preprocess_handle": DEFAULT_PREPROCESS_DIR,
        **{f"encoders.text.finetune.{key}": value for key, value in {**FINETUNE, **finetune}.items()},
        "genre.runs_dir": str(tmp_path / "runs")})


def variables_by_name(saved_model_dir) -> dict[str, np.ndarray]:
    """The SavedModel's variables by checkpoint name (`backbone/_operations/<i>/...`)."""
    reader = tf.train.load_checkpoint(str(Path(saved_model_dir) / "variables" / "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.endswith("VARIABLE_VALUE")}


def operation(name: str) -> int:
    """The index of the backbone operation a variable belongs to (-1: not under `_operations`)."""
    parts = name.split("/")
    return int(parts[2]) if parts[1] == "_operations" else -1


@pytest.fixture(scope="module")
def finetuned(tiny_config, workdir, tmp_path_factory):
    """The fine-tuned encoder of the tiny dataset, made by `ensure_finetuned_text_encoder`: (config, folder)."""
    from movietitles.training.text_finetune import ensure_finetuned_text_encoder

    config = finetune_config(tiny_config, tmp_path_factory.mktemp("finetuned"))
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return config, (workdir / ensure_finetuned_text_encoder(config)).resolve()
    finally:
        os.chdir(cwd)


def test_only_the_top_layers_change_and_the_result_is_a_hub_encoder(finetuned, minilm_hub_dirs):
    from movietitles.encoders.text import TextEncoder

    config, folder = finetuned
    summary = json.loads((folder.parent / "finetune_summary.json").read_text())
    assert summary["layers"] == 1 and summary["of_layers"] == 6 and len(summary["history"]) == 2
    assert summary["best_val_oos_macro_f1"] == max(h["val_oos_macro_f1"] for h in summary["history"])
    base, tuned = variables_by_name(minilm_hub_dirs[0]), variables_by_name(folder)
    assert base.keys() == tuned.keys()
    transformer_layers = sorted({operation(name) for name in base if "_self_attention_layer/" in name})
    assert len(transformer_layers) == 6
    changed = sorted(name for name in base if not np.array_equal(base[name], tuned[name]))
    # Every weight of the last transformer layer moved; nothing else did (embeddings, layers 1-5, pooler).
    assert changed == sorted(name for name in base if operation(name) == transformer_layers[-1])
    titles = ["The Lost River", "Night of the Zombies 2"]
    embeddings = [TextEncoder(str(handle), str(minilm_hub_dirs[1])).embed(titles) for handle in (minilm_hub_dirs[0], folder)]
    assert embeddings[0].shape == embeddings[1].shape == (2, 384)
    assert not np.allclose(embeddings[0], embeddings[1], atol=1e-3)


def test_features_and_the_cache_key_follow_the_finetuned_encoder(finetuned, workdir, monkeypatch):
    from movietitles.artefacts import cache_key
    from movietitles.artefacts import other_dataset_config

    config, folder = finetuned
    monkeypatch.chdir(workdir)
    key = cache_key(config, "title")
    assert key.startswith(folder.parent.name) and key != cache_key(with_overrides(config, {
        "encoders.text.finetune.layers": 0}), "title")
    # Ensemble members (seed, seed + 1, ...) read the one encoder; its own seed makes another.
    assert cache_key(with_overrides(config, {"seed": config["seed"] + 1}), "title") == key
    assert cache_key(with_overrides(config, {"encoders.text.finetune.seed": 7}), "title") != key
    # Another dataset is embedded with the same fine-tuned encoder, not one fine-tuned on it.
    other = other_dataset_config(config, workdir / "elsewhere")
    assert other["encoders"]["text"]["handle"] == str(Path(DEFAULT_ENCODER_DIR).parent.parent / folder.parent.name
                                                      / "encoder")
    assert cache_key(other, "title") == key


def test_a_missing_finetuned_encoder_names_the_command_that_makes_it(tiny_config, workdir, tmp_path, monkeypatch):
    from movietitles.artefacts import feature_store
    from movietitles.features.extract import extract_features

    monkeypatch.chdir(workdir)
    config = finetune_config(tiny_config, tmp_path, learning_rate=5e-5)  # another config: not made yet
    with pytest.raises(FileNotFoundError, match="python -m movietitles.train --task title"):
        extract_features(feature_store(config), ["title"])


@pytest.mark.parametrize("override, message", [
    ({"encoders.text.handle": "https://tfhub.dev/some/bert/4"}, "fine-tunes the packaged MiniLM"),
    ({"encoders.text.pooling": "pooled"}, "pooling"),
    ({"encoders.text.finetune.layers": 7}, "1..6"),
    ({"encoders.text.finetune.epochs": 0}, "epochs must be a positive integer"),
])
def test_bad_finetune_settings_are_refused_by_name(tiny_config, tmp_path, override, message):
    from movietitles.artefacts import text_encoder_settings

    config = with_overrides(finetune_config(tiny_config, tmp_path), override)
    with pytest.raises(ValueError, match=message):
        text_encoder_settings(config, must_exist=False)


def test_train_then_export_serve_the_finetuned_encoder_in_a_fresh_process(finetuned, workdir, tmp_path):
    """`train --task title` reads the fine-tuned encoder's features; the exported graph embeds with it."""
    config, folder = finetuned
    config_file = write_config(config, tmp_path, "finetuned.yaml")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for command in (["movietitles.train", "--task", "title", "--config", str(config_file)],
                    ["movietitles.export", "--models", "title", "--model-dir", str(tmp_path / "export"),
                     "--config", str(config_file)]):
        done = subprocess.run([sys.executable, "-m", *command], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    check = f"""
import glob, json
import movietitles
import numpy as np, tensorflow as tf, tensorflow_text
from movietitles.config import load_config
from movietitles.features.pipeline import load_split
from movietitles.models.genre_runs import load_genre_run, model_inputs, predict_scores
from movietitles.artefacts import feature_store, finished_run
config = load_config({str(config_file)!r})
val = load_split(feature_store(config), "validation", ("title",))
model, _, _ = load_genre_run(finished_run(config, "title"))
expected = predict_scores(model, model_inputs(model, val))
served = tf.saved_model.load(sorted(glob.glob({str(tmp_path / "export" / "genre_title" / "*")!r}))[-1])
titles = tf.constant(val.movies["title"].tolist())
got = served.signatures["serving_default"](title=titles)["probabilities"].numpy()
print(json.dumps({{"max_diff": float(np.abs(got - expected).max()), "rows": len(val)}}))
"""
    done = subprocess.run([sys.executable, "-c", check], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] > 0 and result["max_diff"] < 1e-4, result


def test_a_killed_finetuning_resumes_and_ends_as_an_uninterrupted_one(tiny_config, minilm_hub_dirs, tmp_path,
                                                                      tmp_path_factory):
    """A real SIGKILL right after the first epoch's checkpoints, then the same command again."""
    from test_crash_resume import KILLED_AT

    from movietitles.artefacts import finetuned_text_encoder_dir

    config = finetune_config(tiny_config, tmp_path, learning_rate=2e-4)
    config_file = write_config(config, tmp_path, "finetune.yaml")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    features = ["movietitles.features", "--kinds", "title", "--config", str(config_file)]
    summaries = []
    for kill_at in (None, "checkpoint:2"):
        work = tmp_path_factory.mktemp("finetune-crash")
        if kill_at:
            link_default_minilm(work, minilm_hub_dirs)
        # else: a folder without the default MiniLM pair, as on a new machine: the fine-tuning builds it first.
        if kill_at:  # epoch 1 saves the best and the latest checkpoint; the kill follows the second save
            killed = subprocess.run([sys.executable, "-c", KILLED_AT, kill_at, *features], cwd=work, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
            history = json.loads((work / finetuned_text_encoder_dir(config).parent / "history.json").read_text())
            assert [h["epoch"] for h in history] == [1]
            assert not (work / finetuned_text_encoder_dir(config)).exists()
        done = subprocess.run([sys.executable, "-m", *features], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert ("resuming the fine-tuning at epoch 1" in done.stderr) == bool(kill_at), done.stderr[-3000:]
        assert (work / DEFAULT_ENCODER_DIR).is_dir() and (work / DEFAULT_PREPROCESS_DIR).is_dir()
        encoder_folder = work / finetuned_text_encoder_dir(config).parent
        summaries.append(json.loads((encoder_folder / "finetune_summary.json").read_text()))
    uninterrupted, resumed = summaries
    assert resumed["best_epoch"] == uninterrupted["best_epoch"]
    for a, b in zip(uninterrupted["history"], resumed["history"], strict=True):
        assert a["epoch"] == b["epoch"]
        np.testing.assert_allclose([a["loss"], a["val_oos_macro_f1"]], [b["loss"], b["val_oos_macro_f1"]], rtol=1e-5)
