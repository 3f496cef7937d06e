"""The title model that fine-tunes its encoder (genre.models.title.finetune_layers): one Keras model from raw
titles (tokenizer -> MiniLM -> head) that trains, evaluates and exports as one."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from test_text_finetune import link_default_minilm

from movietitles.artefacts import feature_store
from movietitles.config import with_overrides
from movietitles.encoders.bert_export import DEFAULT_ENCODER_DIR, DEFAULT_PREPROCESS_DIR, minilm_vocabulary

TITLES = ["The Lost River", "Night of the Zombies 2", "Les Misérables", "Alien³", "8 ½ Women"]


def task_config(tiny_config, runs_dir, **title):
    return with_overrides(tiny_config, {
        "encoders.text.handle": DEFAULT_ENCODER_DIR, "encoders.text.preprocess_handle": DEFAULT_PREPROCESS_DIR,
        "genre.runs_dir": str(runs_dir), "genre.epochs": 2,
        **{f"genre.models.title.{key}": value for key, value in {"finetune_layers": 1, **title}.items()}})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, minilm_hub_dirs):
    return link_default_minilm(tmp_path_factory.mktemp("title-task-work"), minilm_hub_dirs)


@pytest.fixture(scope="module")
def task_run(tiny_config, workdir, tmp_path_factory):
    """(config, run dir) of a title model fine-tuning its top MiniLM layer, trained on the tiny dataset."""
    from movietitles.features.extract import extract_features
    from movietitles.training.genre import train_genre_model

    config = task_config(tiny_config, tmp_path_factory.mktemp("task-runs"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        extract_features(feature_store(config), ["title"])  # the default MiniLM's (linked here) features adapt the head
        return config, (workdir / train_genre_model(config, "title")).resolve()


def test_the_tokenizer_gives_the_hub_preprocessors_word_pieces(minilm_hub_dirs):
    from movietitles.encoders.text import load_hub_model
    from movietitles.models.title_task import TitleTokenIds

    vocabulary = minilm_vocabulary()
    ids, mask = TitleTokenIds(vocabulary)(tf.constant(TITLES))
    packed = load_hub_model(str(minilm_hub_dirs[1]), "preprocess")(tf.constant(TITLES))
    length = ids.shape[1]
    assert length == int(packed["input_mask"].numpy().sum(axis=1).max())
    np.testing.assert_array_equal(ids.numpy(), packed["input_word_ids"].numpy()[:, :length])
    np.testing.assert_array_equal(mask.numpy(), packed["input_mask"].numpy()[:, :length])


def test_the_run_is_one_model_from_raw_titles_whose_top_layer_learned(task_run):
    import keras_hub

    from movietitles.encoders.bert_export import load_minilm_backbone
    from movietitles.models.genre_runs import load_genre_run

    config, run_dir = task_run
    model, thresholds, summary = load_genre_run(run_dir)
    assert [t.name for t in model.inputs] == ["title_text"] and summary["inputs"] == ["title_text"]
    assert len(thresholds) == len(config["data"]["genres"]) == model.output_shape[-1]
    backbone = next(layer for layer in model.layers if isinstance(layer, keras_hub.models.BertBackbone))
    packaged = load_minilm_backbone()
    moved = [not all(np.array_equal(a, b) for a, b in zip(mine.get_weights(), theirs.get_weights()))
             for mine, theirs in zip(backbone.transformer_layers, packaged.transformer_layers)]
    assert moved == [False] * 5 + [True]
    assert np.array_equal(backbone.token_embedding.get_weights()[0], packaged.token_embedding.get_weights()[0])
    probabilities = model({"title_text": tf.constant(TITLES)}).numpy()
    assert probabilities.shape == (len(TITLES), len(thresholds)) and np.all((probabilities > 0) & (probabilities < 1))


def test_what_trains_on_token_states_is_what_reads_raw_titles(tiny_config):
    """The fast path (the frozen layers' states, cached in float16) and the saved model agree."""
    from movietitles.encoders.bert_export import load_minilm_backbone
    from movietitles.models.title_task import MASK, STATES, TitleTokenIds, build_title_task
    from movietitles.training.text_finetune import frozen_states
    from movietitles.training.title_task import padded

    vocabulary = minilm_vocabulary()
    backbone = load_minilm_backbone()
    task = build_title_task(backbone, vocabulary, np.array(TITLES), np.random.default_rng(0).normal(size=(5, 384)),
                            ["A", "B", "C"], 2, hidden_units=[8], dropout=0.1, text_max_tokens=100)
    tokenizer = TitleTokenIds(vocabulary)

    def tokenize(strings):
        ids, mask = tokenizer(strings)
        return {"input_word_ids": ids, "input_mask": mask}

    inputs = padded(frozen_states(backbone, tokenize, TITLES, task.frozen_layers))
    fast = task.train_model({STATES: tf.constant(inputs[STATES]), MASK: tf.constant(inputs[MASK]),
                             "title_text": tf.constant(TITLES)}).numpy()
    np.testing.assert_allclose(fast, task.model({"title_text": tf.constant(TITLES)}).numpy(), atol=2e-3)
    assert {v.path.split("/")[0] for v in task.train_model.trainable_variables} >= {
        "transformer_layer_4", "transformer_layer_5"}
    assert not any(v.path.startswith(("transformer_layer_3", "token_embedding"))
                   for v in task.train_model.trainable_variables)


def test_the_head_starts_from_the_title_model_on_frozen_embeddings(task_run, trained, workdir, monkeypatch):
    """finetune_warm_start: before any fine-tuning, the one model answers as the title model it starts from."""
    from movietitles.artefacts import finished_run
    from movietitles.config import with_overrides
    from movietitles.encoders.bert_export import load_minilm_backbone
    from movietitles.features.pipeline import load_split
    from movietitles.models.genre_runs import load_genre_run, model_inputs, predict_scores
    from movietitles.models.title_task import build_title_task

    config, _ = task_run
    monkeypatch.chdir(workdir)
    frozen = with_overrides(config, {"genre.models.title.finetune_layers": 0})
    classifier = load_genre_run(finished_run(frozen, "title"))[0]  # trained first by the task run
    train = load_split(feature_store(config), "train", ("title",), require_poster=False)
    vocabulary = minilm_vocabulary()
    task = build_title_task(load_minilm_backbone(), vocabulary, train.movies["title"].to_numpy(dtype=str),
                            train.inputs["title"], train.genres, 1, hidden_units=[16], dropout=0.5,
                            text_max_tokens=100_000)
    untrained = predict_scores(task.model, model_inputs(task.model, train))
    task.start_head_from(classifier)
    expected = predict_scores(classifier, model_inputs(classifier, train))
    started = predict_scores(task.model, model_inputs(task.model, train))
    assert np.abs(untrained - expected).max() > 0.05
    np.testing.assert_allclose(started, expected, atol=1e-3)
    poster = load_genre_run(trained["poster"])[0]
    with pytest.raises(ValueError, match="does not have the head's architecture"):
        task.start_head_from(poster)


def test_the_export_serves_the_same_model_in_a_fresh_process(task_run, tmp_path):
    from movietitles.models.genre_runs import load_genre_run
    from movietitles.serving.genre import export_genre_models

    config, run_dir = task_run
    version = export_genre_models(config, ("title",), tmp_path / "exports")["title"]
    script = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

saved = saved_model_pb2.SavedModel.FromString((Path(sys.argv[1]) / "saved_model.pb").read_bytes())
ops = set()
for graph in saved.meta_graphs:
    functions = {f.signature.name for f in graph.graph_def.library.function}
    ops |= {n.op for n in graph.graph_def.node} | {n.op for f in graph.graph_def.library.function for n in f.node_def}
    ops -= functions
not_core = sorted(op for op in ops if op_def_registry.get(op) is None)
import tensorflow_text  # noqa: F401
unknown = sorted(op for op in ops if op_def_registry.get(op) is None)
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
out = serve(title=tf.constant(json.loads(sys.argv[2])))
try:
    serve(title=tf.constant(["Fine", "   "]))
    refused = None
except tf.errors.InvalidArgumentError as err:
    refused = err.message
print(json.dumps({"signatures": sorted(model.signatures), "inputs": sorted(serve.structured_input_signature[1]),
                  "probabilities": out["probabilities"].numpy().tolist(), "refused": refused,
                  "not_core": not_core, "unknown": unknown}))
"""
    done = subprocess.run([sys.executable, "-c", script, str(version), json.dumps(TITLES)], capture_output=True,
                          text=True, check=True)
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["signatures"] == ["serving_default"] and served["inputs"] == ["title"]
    model, _, _ = load_genre_run(run_dir)
    np.testing.assert_allclose(served["probabilities"], model({"title_text": tf.constant(TITLES)}).numpy(), atol=1e-5)
    assert "title 1 is empty or only whitespace" in served["refused"]
    # The tokenizer runs TF Text ops (which TF Serving links in); every other op is TensorFlow core.
    assert served["not_core"] and served["unknown"] == []


@pytest.mark.parametrize("override, message", [
    ({"encoders.text.handle": "https://tfhub.dev/some/bert/4"}, "fine-tunes the packaged MiniLM"),
    ({"encoders.text.finetune.layers": 2}, "set one of them to 0"),
    ({"encoders.text.pooling": "pooled"}, "encoders.text.pooling"),
    ({"genre.models.title.finetune_layers": 7}, "0 \\(off\\) or 1..6"),
])
def test_bad_settings_are_refused_by_name(tiny_config, workdir, tmp_path, monkeypatch, override, message):
    from movietitles.training.genre import train_genre_model

    monkeypatch.chdir(workdir)
    with pytest.raises(ValueError, match=message):
        train_genre_model(with_overrides(task_config(tiny_config, tmp_path), override), "title")


def test_the_setting_off_keeps_the_run_names_of_before(tiny_config):
    import copy

    from movietitles.artefacts import run_directory

    before = copy.deepcopy(tiny_config)  # a config from before the keys existed
    for key in ("finetune_layers", "finetune_learning_rate"):
        del before["genre"]["models"]["title"][key]
    base = run_directory(before, "title")
    assert run_directory(tiny_config, "title") == base
    assert run_directory(with_overrides(tiny_config, {"genre.models.title.finetune_learning_rate": 1.0}),
                         "title") == base
    assert run_directory(with_overrides(tiny_config, {"genre.models.title.finetune_layers": 1}), "title") != base


def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(tiny_config, workdir, task_run, tmp_path):
    """SIGKILLed right after its first epoch's checkpoint, then run again: the same epochs, the same model.
    (The title model it starts from trains first: 3 epochs, 3 checkpoints.)"""
    from test_crash_resume import KILLED_AT, assert_killed

    from movietitles.artefacts import run_directory
    from movietitles.config import write_config
    from movietitles.models.genre_runs import load_genre_run

    def train(name, kill_at=None):
        config = task_config(tiny_config, tmp_path / name, finetune_layers=1)
        config = with_overrides(config, {"genre.epochs": 3, "genre.patience": 10})
        args = ["--config", str(write_config(config, tmp_path, f"{name}.yaml")), "--task", "title"]
        command = [sys.executable, "-c", KILLED_AT, kill_at, "movietitles.train"] if kill_at else [
            sys.executable, "-m", "movietitles.train"]
        done = subprocess.run(command + args, cwd=workdir, capture_output=True, text=True, timeout=900)
        return workdir / run_directory(config, "title"), done

    expected_dir, done = train("uninterrupted")
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir, killed = train("killed", "checkpoint:4")
    assert_killed(killed)
    assert (run_dir / "backup").is_dir() and not (run_dir / "summary.json").exists()
    done = train("killed")[1]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "at epoch 1" in done.stderr  # resumed, not started again
    expected, resumed = load_genre_run(expected_dir), load_genre_run(run_dir)
    for key in ("best_epoch", "best_val_oos_macro_f1"):
        assert resumed[2][key] == expected[2][key], key
    titles = {"title_text": tf.constant(TITLES)}
    np.testing.assert_allclose(resumed[0](titles).numpy(), expected[0](titles).numpy(), atol=1e-6)
    np.testing.assert_array_equal(resumed[1], expected[1])
