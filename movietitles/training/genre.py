"""Train one genre model (title, poster or fusion) on the cached embeddings.

A run lives in `saved_models/runs/<task>-<config hash>/`: the same command with the same config
resumes an interrupted run from its last epoch and skips a finished one. The run keeps the
config it used, the best model by validation macro-F1, per-genre thresholds tuned on
validation, and its TensorBoard logs.

`train_genre_model` finds the run or trains it: an ensemble (`train_ensemble`: its members, then their average)
or one model (`train_one_model`: data, model, training loop, thresholds, logs, summary; a title model that
fine-tunes its encoder first trains the frozen one it starts from, `warm_start_model`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from movietitles.artefacts import feature_store, run_directory, task_inputs
from movietitles.config import with_overrides, write_config
from movietitles.evaluation.thresholds import fit_thresholds, out_of_sample_f1
from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE
from movietitles.features.pipeline import Features, load_split, make_dataset
from movietitles.io import atomic_save_model, atomic_write_text
from movietitles.models.genre import TITLE_TEXT, WeightedBinaryCrossentropy, build_genre_model, positive_weights
from movietitles.models.genre_runs import (
    MODEL_FILE, SUMMARY_FILE, THRESHOLDS_FILE, load_genre_run, model_inputs, predict_scores)
from movietitles.settings import GenreSettings, ThresholdSettings, genre_hparams
from movietitles.tensorboard_logs import log_genre_run
from movietitles.training.distribute import is_chief, make_strategy
from movietitles.training.loop import train_loop
from movietitles.training.title_task import pop_finetune_settings, prepare_title_task

log = logging.getLogger(__name__)


def evaluation_features(config: dict, split: str, task: str) -> Features:
    """Validation and test rows are the same movies for every model: labelled, with a poster."""
    kinds = task_inputs(config, task)
    features = load_split(feature_store(config), split, (TITLE, POSTER, *kinds))
    features.inputs = {name: features.inputs[name] for name in kinds}
    return features


def example_weights(labels: np.ndarray, max_weight: float) -> np.ndarray:
    """`sample_weight` imbalance: a movie weighs as much as its rarest genre (capped), mean 1."""
    per_genre = positive_weights(labels, max_weight)
    weights = np.where(labels > 0, per_genre, 1.0).max(axis=1)
    return (weights / weights.mean()).astype(np.float32)


def train_genre_model(config: dict, task: str, strategy=None, fresh: bool = False) -> Path:
    """The task's trained model of this config: found, resumed or trained. `strategy`: a tf.distribute strategy
    (made with make_strategy before any other TF work), or None.

    With `genre.models.<task>.ensemble: N` > 1, the run is an ensemble (`train_ensemble`); otherwise one model
    (`train_one_model`).
    """
    genre = GenreSettings.from_config(config)  # checked before any work
    run_dir = run_directory(config, task)
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    if (run_dir / SUMMARY_FILE).exists():
        log.info("%s model already trained in %s (use --fresh to retrain)", task, run_dir)
        return run_dir
    size = genre.models[task].get("ensemble", 1)
    if size > 1:
        return train_ensemble(config, task, size, strategy, fresh)
    return train_one_model(config, task, run_dir, strategy)


def train_ensemble(config: dict, task: str, size: int, strategy=None, fresh: bool = False) -> Path:
    """`size` members (seeds seed, seed+1, ...; each an ordinary run of its own), then their average saved as this
    run's model, so that it evaluates and exports as one."""
    members = [train_genre_model(with_overrides(config, {"seed": config["seed"] + k,
                                                         f"genre.models.{task}.ensemble": 1}), task, strategy, fresh)
               for k in range(size)]
    run_dir = run_directory(config, task)
    return _average_members(config, task, run_dir, members) if is_chief() else run_dir


def warm_start_model(config: dict, task: str, strategy=None) -> keras.Model:
    """The same task's model on the frozen encoder's embeddings (finetune_layers 0), trained first when missing:
    where a fine-tuning title model starts (`finetune_warm_start`)."""
    frozen = with_overrides(config, {f"genre.models.{task}.finetune_layers": 0})
    return load_genre_run(train_genre_model(frozen, task, strategy))[0]


def train_one_model(config: dict, task: str, run_dir: Path, strategy=None) -> Path:
    """One Keras model: built on the training split's features (or, fine-tuning its title encoder, the title task of
    `training.title_task`), trained with early stopping on validation, saved with its thresholds, logs and summary."""
    genre = GenreSettings.from_config(config)
    architecture = dict(genre.models[task])
    text_channel = architecture.pop("text_channel", False)
    architecture.pop("ensemble", None)
    architecture.pop("poster_text", None)  # read from the features: task_inputs
    finetune = pop_finetune_settings(config, architecture)  # checked before any work
    warm_start = warm_start_model(config, task, strategy) if finetune and finetune.get("finetune_warm_start") else None
    out_dir = run_dir if is_chief() else run_dir / "workers" / str(os.getpid())
    keras.utils.set_random_seed(config["seed"])

    # The title corpus (title-only movies) trains the title model, and a fusion model that can do without a poster.
    corpus = genre.title_corpus and (task == "title" or architecture.get("modality_logits", False))
    train = load_split(feature_store(config), "train", task_inputs(config, task), require_poster=not corpus)
    val = evaluation_features(config, "validation", task)
    log.info("%s model: %d training movies, %d validation movies", task, len(train), len(val))

    strategy = strategy or make_strategy("default")
    weights = (example_weights(train.labels, genre.max_pos_weight) if genre.imbalance == "sample_weight"
               else np.ones(len(train), np.float32))
    with strategy.scope():
        loss = (WeightedBinaryCrossentropy(positive_weights(train.labels, genre.max_pos_weight), reduction=None)
                if genre.imbalance == "pos_weight" else keras.losses.BinaryCrossentropy(reduction=None))
    name = f"{task}_genres_{config['seed']}"
    if finetune:  # one model from raw titles; it trains on the frozen layers' token states
        parts = prepare_title_task(config, train, val, architecture, finetune, text_channel, weights, strategy, name,
                                   warm_start)
        model, train_model, optimizer = parts.task.model, parts.task.train_model, parts.optimizers
        train_ds, val_inputs, on_epoch_start = parts.train_ds, parts.val_inputs, parts.on_epoch_start
    else:
        inputs = {**train.inputs, **({TITLE_TEXT: train.movies["title"].to_numpy(dtype=str)} if text_channel else {})}
        with strategy.scope():
            model = train_model = build_genre_model(inputs, train.genres, name=name, **architecture)
            optimizer = keras.optimizers.AdamW(genre.learning_rate, weight_decay=genre.weight_decay)
        train_ds = make_dataset(train, genre.batch_size, shuffle=True, seed=config["seed"], sample_weight=weights,
                                with_text=text_channel)
        val_inputs, on_epoch_start = model_inputs(model, val), None
    write_config(config, out_dir)
    result = train_loop(train_model, optimizer, loss, train_ds, val_inputs, val.labels, strategy, out_dir,
                        epochs=genre.epochs, patience=genre.patience, global_batch_size=genre.batch_size,
                        monitor=genre.monitor, on_epoch_start=on_epoch_start,
                        # The validation halvings of the config's seed, as the evaluation scores this model.
                        thresholds=genre.thresholds.out_of_sample(config["seed"]))
    atomic_save_model(model, out_dir / MODEL_FILE)
    if not is_chief():
        return out_dir

    scores = predict_scores(model, model_inputs(model, val))
    thresholds = save_thresholds(out_dir, val, scores, genre.thresholds)
    log_genre_run(out_dir / "logs", genre_hparams(config, task), task, val.movies, val.labels, scores, thresholds,
                  train.genres, {name: v for name, v in val.inputs.items() if name != POSTER_TEXT},  # embeddings only
                  best_epoch=max(result.best_epoch, 0))
    summary = {
        "task": task,
        "inputs": [tensor.name for tensor in model.inputs],
        "training_movies": len(train),
        "training_title_only_movies": int((~train.movies["has_poster"]).sum()),
        "validation_movies": len(val),
        "epochs_in_last_session": result.epochs_in_this_session,  # fewer when a run resumed
        "best_epoch": result.best_epoch + 1,
        f"best_{genre.monitor}": result.best_score,
        "imbalance": genre.imbalance,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
    }
    atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    shutil.rmtree(out_dir / "backup", ignore_errors=True)
    log.info("%s model: %s", task, summary)
    return out_dir


def save_thresholds(run_dir: Path, val: Features, scores: np.ndarray, settings: ThresholdSettings) -> np.ndarray:
    """Per-genre thresholds fitted on the validation scores by the configured strategy, saved as JSON."""
    thresholds = fit_thresholds(val.labels, scores, settings.strategy, settings.shrinkage)
    atomic_write_text(run_dir / THRESHOLDS_FILE, json.dumps(dict(zip(val.genres, map(float, thresholds))), indent=2))
    return thresholds


def _average_members(config: dict, task: str, run_dir: Path, members: list[Path]) -> Path:
    """One Keras model averaging the members' genre probabilities, with its own thresholds and summary."""
    models = [load_genre_run(member)[0] for member in members]
    first = models[0]
    inputs = {t.name: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name) for t in first.inputs}
    outputs = [model({t.name: inputs[t.name] for t in model.inputs}) for model in models]
    ensemble = keras.Model(inputs, keras.layers.Average(name="genres")(outputs), name=f"{task}_genres_ensemble")
    val = evaluation_features(config, "validation", task)
    scores = predict_scores(ensemble, model_inputs(ensemble, val))
    thresholds = GenreSettings.from_config(config).thresholds
    write_config(config, run_dir)
    atomic_save_model(ensemble, run_dir / MODEL_FILE)
    save_thresholds(run_dir, val, scores, thresholds)
    member_summaries = [json.loads((member / SUMMARY_FILE).read_text()) for member in members]
    shared = ("task", "inputs", "training_movies", "training_title_only_movies", "validation_movies", "imbalance",
              "strategy", "replicas")
    summary = {**{k: member_summaries[0][k] for k in shared}, "members": [str(m) for m in members],
               "seeds": [config["seed"] + k for k in range(len(members))],
               "best_epoch": [m["best_epoch"] for m in member_summaries],
               "validation_oos_macro_f1": out_of_sample_f1(val.labels, scores,
                                                           **thresholds.out_of_sample(config["seed"]))["macro_f1"]}
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    log.info("%s ensemble of %d seeds: %s", task, len(members), run_dir)
    return run_dir
