"""Train the poster-to-title decoder (`python -m movietitles.train --task generator`).

Two phases in one run: (1) `generator.warmup_epochs` epochs on the train split's titles without
a poster (a zero poster vector: the decoder learns the language of titles), then (2) up to
`generator.epochs` epochs on the train split's poster + title pairs, early-stopped on the
validation loss. Like the genre runs, a run lives in `<genre.runs_dir>/generator-<config hash>/`:
the same command resumes an interrupted run from its last epoch and skips a finished one. The
run keeps `config.yaml`, the best model by validation loss (`model.keras`), `summary.json` and
TensorBoard logs (loss per epoch; greedy titles for fixed validation posters, per epoch).

The validation loss is the exact mean negative log-likelihood per target token (</s> included)
over the validation movies with a poster; `val_loss_shuffled_posters` is the same with the
posters shuffled among those movies (`TitleSet.with_shuffled_posters`, as the evaluation shuffles
them), so the gap between them is what the poster contributes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from movietitles.config import enabled_section, write_config
from movietitles.encoders.image import grid_layout
from movietitles.generator.data import TitleSet, make_generator_dataset, poster_titles, title_corpus
from movietitles.generator.model import build_title_decoder, masked_token_loss, token_log_probs
from movietitles.generator.runs import (  # noqa: F401 (GeneratorRun, load_generator_run: re-exported)
    BEST_FILE, MODEL_FILE, SUMMARY_FILE, TASK, GeneratorRun, genre_model_config, load_generator_run, run_directory)
from movietitles.generator.sampling import sample_titles
from movietitles.generator.tokenizer import TitleTokenizer
from movietitles.io import atomic_save_model, atomic_write_text
from movietitles.markdown import markdown_table
from movietitles.tensorboard_logs import generator_hparams, write_hparams, write_posters

log = logging.getLogger(__name__)

SAMPLE_POSTERS = 8


def validation_nll(model: keras.Model, titles: TitleSet, tokenizer: TitleTokenizer,
                   batch_size: int = 512) -> tuple[float, int, int]:
    """(summed negative log-likelihood, predicted tokens, characters) of `titles`.

    Characters: the original title's, plus one for its end (the same text for every tokenizer).
    """
    total, tokens = 0.0, 0
    for start in range(0, len(titles), batch_size):
        rows = slice(start, start + batch_size)
        targets = tokenizer.pad(titles.targets[rows])
        text = None if titles.poster_text is None else titles.poster_text[rows]
        log_probs = token_log_probs(model, titles.poster[rows], titles.genres[rows], tokenizer.pad(titles.tokens[rows]),
                                    targets, pad_id=tokenizer.pad_id, poster_text=text)
        total -= float(log_probs.sum(dtype=np.float64))
        tokens += int((targets != tokenizer.pad_id).sum())
    return total, tokens, int((titles.characters + 1).sum())


class _RunState(keras.callbacks.Callback):
    """Per epoch: exact validation losses into the logs (before TensorBoard reads them), greedy titles
    for fixed validation posters as TensorBoard text, the best model, early stopping, and a
    checkpoint (weights, optimizer, epoch, early-stopping state) to resume from."""

    def __init__(self, run_dir: Path, tokenizer: TitleTokenizer, val: TitleSet, samples: TitleSet,
                 warmup_epochs: int, patience: int, seed: int):
        super().__init__()
        self.run_dir, self.tokenizer, self.val, self.samples = run_dir, tokenizer, val, samples
        self.shuffled = val.with_shuffled_posters(seed)
        self.warmup_epochs, self.patience = warmup_epochs, patience
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_loss = tf.Variable(np.inf, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.writer = tf.summary.create_file_writer(str(run_dir / "logs" / "samples"))
        self.manager = None

    def restore(self, model: keras.Model) -> int:
        """Restore the last checkpoint (if any) into `model`; returns the next epoch to run."""
        model.optimizer.build(model.trainable_variables)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=self.epoch,
                                         best_loss=self.best_loss, best_epoch=self.best_epoch)
        self.manager = tf.train.CheckpointManager(checkpoint, str(self.run_dir / "backup"), max_to_keep=1)
        if self.manager.latest_checkpoint:
            checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            log.info("resuming generator training from %s at epoch %d", self.manager.latest_checkpoint,
                     int(self.epoch.numpy()))
        return int(self.epoch.numpy())

    def stopped_early(self, epoch: int) -> bool:
        best = int(self.best_epoch.numpy())
        return best >= 0 and epoch - best > self.patience

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for key, titles in (("val_loss", self.val), ("val_loss_shuffled_posters", self.shuffled)):
            nll, tokens, _ = validation_nll(self.model, titles, self.tokenizer)
            logs[key] = nll / tokens
        self._write_samples(epoch)
        improved = epoch >= self.warmup_epochs and logs["val_loss"] < float(self.best_loss.numpy())
        if improved:
            self.best_loss.assign(logs["val_loss"])
            self.best_epoch.assign(epoch)
            atomic_save_model(self.model, self.run_dir / BEST_FILE)
        if epoch >= self.warmup_epochs and self.stopped_early(epoch + 1):
            self.model.stop_training = True
        self.epoch.assign(epoch + 1)
        self.manager.save()
        phase = "warm-up, no posters" if epoch < self.warmup_epochs else "posters"
        print(f"epoch {epoch + 1} ({phase}): loss {logs.get('loss', float('nan')):.4f}, val_loss "
              f"{logs['val_loss']:.4f} (perplexity {math.exp(logs['val_loss']):.2f}), with shuffled posters "
              f"{logs['val_loss_shuffled_posters']:.4f}" + (" (best)" if improved else ""), flush=True)

    def _write_samples(self, epoch: int) -> None:
        generated = sample_titles(self.model, self.tokenizer, self.samples.poster, self.samples.genres, n=1,
                                  sampler="greedy", poster_text=self.samples.poster_text)
        table = markdown_table(["#", "true title", "generated (greedy)"],
                               [[i, t, g[0]] for i, (t, g) in enumerate(zip(self.samples.movies["title"], generated),
                                                                        start=1)], numbers=False)
        with self.writer.as_default(step=epoch):
            tf.summary.text("generated_titles", table)
        self.writer.flush()


def _check_settings(gcfg: dict) -> None:
    for key in ("warmup_epochs", "epochs", "patience", "batch_size", "gru_units"):
        value = gcfg[key]
        minimum = 1 if key in ("epochs", "batch_size", "gru_units") else 0
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"generator.{key} must be an integer >= {minimum}, got {value!r}")


def generator_feature_kinds(config: dict) -> tuple[str, ...]:
    """The feature caches the title generator of `config` reads: poster vectors, and the poster text it reads."""
    from movietitles.features.extract import POSTER, POSTER_TEXT

    return (POSTER, POSTER_TEXT) if enabled_section(config["generator"], "poster_text") else (POSTER,)


def poster_genre_model(config: dict) -> keras.Model:
    """The config's poster genre model (poster vector -> genre probabilities), trained first when missing; for
    `generator.predicted_genres`."""
    from movietitles.artefacts import ensure_features
    from movietitles.features.extract import POSTER
    from movietitles.models.genre_runs import load_genre_run
    from movietitles.training.genre import train_genre_model

    config = genre_model_config(config)
    ensure_features(config, (POSTER,))
    return load_genre_run(train_genre_model(config, "poster"))[0]


def train_generator(config: dict, fresh: bool = False) -> Path:
    """Train (or resume, or find finished) the title generator of `config`; returns its run directory."""
    gcfg = config["generator"]
    _check_settings(gcfg)
    run_dir = run_directory(config)
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    if (run_dir / SUMMARY_FILE).exists():
        log.info("title generator already trained in %s (use --fresh to retrain)", run_dir)
        return run_dir
    started = time.perf_counter()
    from movietitles.artefacts import ensure_features

    ensure_features(config, generator_feature_kinds(config))
    keras.utils.set_random_seed(config["seed"])

    tokenizer = TitleTokenizer.from_config(config)
    train = poster_titles(config, "train", tokenizer)
    val = poster_titles(config, "validation", tokenizer)
    if not len(train) or not len(val):
        raise ValueError(f"the title generator needs train and validation movies with posters; found "
                         f"{len(train)} and {len(val)} in {config['data']['prepared_dir']}")
    corpus = title_corpus(config, tokenizer, train.poster.shape[1])
    log.info("title generator: %d poster movies (%d tokens), %d warm-up titles (%d tokens), %d validation movies",
             len(train), train.num_targets, len(corpus), corpus.num_targets, len(val))

    attention, text = enabled_section(gcfg, "poster_attention"), enabled_section(gcfg, "poster_text")
    model = build_title_decoder(
        tokenizer.vocab_size, train.poster.shape[1], len(train.genre_names),
        tokenizer.embedding_matrix(gcfg["embeddings"], seed=config["seed"]),
        trainable_embeddings=gcfg["trainable_embeddings"], use_genres=gcfg["use_genres"],
        poster_projection=gcfg["poster_projection"], gru_units=gcfg["gru_units"],
        gru_layers=gcfg["gru_layers"], dropout=gcfg["dropout"],
        poster_injection=gcfg.get("poster_injection", "par_inject"),
        poster_text_units=text["units"] if text else None,
        genre_model=poster_genre_model(config) if gcfg.get("predicted_genres") else None,
        poster_grid=grid_layout(config["encoders"]["image"]),
        poster_attention_units=attention["units"] if attention else None,
        poster_attention_dropout=(attention or {}).get("dropout", gcfg["dropout"]))
    model.compile(optimizer=keras.optimizers.Adam(gcfg["learning_rate"]), loss=masked_token_loss())
    write_config(config, run_dir)

    rng = np.random.default_rng(config["seed"])
    samples = val.subset(np.sort(rng.choice(len(val), min(SAMPLE_POSTERS, len(val)), replace=False)))
    warmup = gcfg["warmup_epochs"] if len(corpus) else 0
    state = _RunState(run_dir, tokenizer, val, samples, warmup, gcfg["patience"], config["seed"])
    write_posters(run_dir / "logs" / "samples", "sample_posters", samples.movies["poster"].tolist(),
                  [[f"#{i}", t] for i, t in enumerate(samples.movies["title"], start=1)],
                  description="The fixed validation posters whose generated titles the Text dashboard shows.")
    start = state.restore(model)

    def with_weights(titles: TitleSet) -> tf.data.Dataset:
        dataset = make_generator_dataset(titles, tokenizer, gcfg["batch_size"], gcfg["use_genres"], shuffle=True,
                                         seed=config["seed"])
        return dataset.map(lambda x, y: (x, y, tf.cast(tf.not_equal(y, tokenizer.pad_id), tf.float32)))

    phases = [(corpus, warmup), (train, warmup + gcfg["epochs"])]
    for titles, end in phases:
        if start >= end or state.stopped_early(start):
            continue
        tensorboard = keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False)
        # `state` first: it adds the validation losses to the logs that TensorBoard then writes.
        model.fit(with_weights(titles), epochs=end, initial_epoch=start, callbacks=[state, tensorboard], verbose=0,
                  shuffle=False)  # the dataset shuffles
        start = int(state.epoch.numpy())

    if (run_dir / BEST_FILE).exists():  # absent only if a session was killed after this rename
        os.replace(run_dir / BEST_FILE, run_dir / MODEL_FILE)
    model = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    nll, tokens, chars = validation_nll(model, val, tokenizer)
    shuffled_nll, _, _ = validation_nll(model, val.with_shuffled_posters(config["seed"]), tokenizer)
    summary = {
        "task": TASK,
        "training_movies": len(train),
        "training_tokens": train.num_targets,
        "warmup_titles": len(corpus),
        "warmup_tokens": corpus.num_targets,
        "validation_movies": len(val),
        "validation_tokens": tokens,
        "validation_characters": chars,
        "vocabulary_size": tokenizer.vocab_size,
        "warmup_epochs": warmup,
        "epochs_total": int(state.epoch.numpy()),  # warm-up included
        "best_epoch": int(state.best_epoch.numpy()) + 1,
        "best_val_loss": nll / tokens,
        "val_perplexity_per_token": math.exp(nll / tokens),
        "val_perplexity_per_character": math.exp(nll / chars),
        # The control: the same titles, each with another movie's poster.
        "val_perplexity_per_token_shuffled_posters": math.exp(shuffled_nll / tokens),
        "seconds_in_last_session": round(time.perf_counter() - started, 1),  # less when a run resumed
    }
    write_hparams(run_dir / "logs", generator_hparams(config),
                  {k: summary[k] for k in ("best_epoch", "best_val_loss", "val_perplexity_per_token",
                                           "val_perplexity_per_character", "val_perplexity_per_token_shuffled_posters")},
                  trial_id=run_dir.name)
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    log.info("title generator: %s", summary)
    return run_dir
