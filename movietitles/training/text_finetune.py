"""Fine-tune the top layers of the packaged MiniLM for genres, once, before the title features.

`encoders.text.finetune.layers: k` trains the last k transformer layers of the keras-hub BertBackbone
(the layers below and the embeddings stay frozen) with a multi-label sigmoid head on the train split's
titles. The frozen layers' token states are computed once, so an epoch costs only the top k layers.
The epoch kept is the best by out-of-sample validation macro-F1 (thresholds tuned on one half of
validation, scored on the other), like the genre models.

The result is a TF-Hub-style encoder SavedModel beside the default one (`movietitles.encoders.text.
finetuned_text_encoder_dir`), so the title features, the title and fusion models, and the exported graphs all
read the fine-tuned encoder through the same TextEncoder. Interrupted runs resume from the last epoch.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from movietitles.artefacts import feature_store, finetuned_text_encoder_dir
from movietitles.config import write_config
from movietitles.encoders.bert_export import ensure_default_text_models, load_minilm_backbone, save_bert_encoder
from movietitles.encoders.text import finetune_settings, load_hub_model, pool_tokens
from movietitles.evaluation.thresholds import out_of_sample_f1
from movietitles.features.pipeline import load_split
from movietitles.io import atomic_write_text
from movietitles.models.genre import positive_weights
from movietitles.settings import GenreSettings
from movietitles.training.loop import seed_states

log = logging.getLogger(__name__)

SUMMARY_FILE = "finetune_summary.json"
MAX_TOKENS = 32  # titles are ~6 word pieces; longer ones (under 0.01% of MovieLens titles) are cut in training


class TokenStates:
    """The frozen layers' output for each title, as float32 arrays of its own length (what the saved model computes
    from the raw title: training on float16-rounded states would train on inputs it never serves)."""

    def __init__(self, states: list[np.ndarray]):
        self.states = states
        self.lengths = np.array([len(s) for s in states])

    def __len__(self) -> int:
        return len(self.states)

    def batches(self, batch_size: int, rng: np.random.Generator | None = None):
        """(rows, states [B, L, D] float32, mask [B, L]) of titles of similar length; shuffled with `rng`."""
        noise = rng.random(len(self)) if rng is not None else 0.0
        order = np.argsort(self.lengths + noise, kind="stable")
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if rng is not None:
            rng.shuffle(chunks)
        width = self.states[0].shape[-1]
        for rows in chunks:
            length = int(self.lengths[rows].max())
            states = np.zeros((len(rows), length, width), np.float32)
            mask = np.zeros((len(rows), length), np.int32)
            for j, row in enumerate(rows):
                states[j, :self.lengths[row]] = self.states[row]
                mask[j, :self.lengths[row]] = 1
            yield rows, states, mask


def frozen_states(backbone, preprocess, titles: list[str], frozen_layers: int, batch_size: int = 256) -> TokenStates:
    """Token states after the first `frozen_layers` transformer layers (0: after the embeddings)."""
    output = (backbone.transformer_layers[frozen_layers - 1].output if frozen_layers > 0
              else backbone.embeddings_dropout.output)
    bottom = keras.Model(backbone.inputs, output)
    packed = preprocess(tf.constant(titles, tf.string))
    ids = packed["input_word_ids"].numpy()[:, :MAX_TOKENS]
    mask = packed["input_mask"].numpy()[:, :MAX_TOKENS]
    lengths = mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    states: list[np.ndarray | None] = [None] * len(titles)
    progress = keras.utils.Progbar(len(titles), unit_name="title")
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        length = int(lengths[rows].max())
        out = bottom({"token_ids": ids[rows, :length], "segment_ids": np.zeros_like(ids[rows, :length]),
                      "padding_mask": mask[rows, :length]}, training=False)
        out = keras.ops.convert_to_numpy(out).astype(np.float32)
        for j, row in enumerate(rows):
            states[row] = out[j, :lengths[row]]
        progress.add(len(rows))
    return TokenStates(states)


def genre_head_model(backbone, frozen_layers: int, n_genres: int, pooling: str, dropout: float) -> keras.Model:
    """Frozen states + mask -> the top transformer layers (shared with `backbone`, so training them trains it)
    -> pooled as the text encoder pools -> genre logits."""
    states = keras.Input((None, backbone.hidden_dim), name="states")
    mask = keras.Input((None,), dtype="int32", name="mask")
    x = states
    for layer in backbone.transformer_layers[frozen_layers:]:
        x = layer(x, padding_mask=mask)
    pooled = pool_tokens(x, mask, pooling)
    logits = keras.layers.Dense(n_genres, name="genre_logits")(keras.layers.Dropout(dropout)(pooled))
    return keras.Model([states, mask], logits)


def scores_of(model, states: TokenStates, batch_size: int = 512) -> np.ndarray:
    """Genre probabilities [N, G] in the titles' order."""
    out = np.zeros((len(states), model.output_shape[-1]), np.float32)
    for rows, x, mask in states.batches(batch_size):
        out[rows] = keras.ops.convert_to_numpy(tf.sigmoid(model([x, mask], training=False)))
    return out


def ensure_finetuned_text_encoder(config: dict) -> Path | None:
    """The fine-tuned encoder's folder, trained first if missing; None when `encoders.text.finetune` is off."""
    settings = finetune_settings(config["encoders"]["text"])
    if settings is None:
        return None
    target = finetuned_text_encoder_dir(config)
    if target.exists():
        return target
    run_dir = target.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    gcfg = config["genre"]
    # On a fresh machine the default preprocessor is built first, before the seed (building draws random numbers).
    ensure_default_text_models(config["encoders"]["text"])
    keras.utils.set_random_seed(settings["seed"])
    # The title model's training movies (the title corpus too, if it uses it); the evaluation's validation movies.
    store = feature_store(config)
    train = load_split(store, "train", (), require_poster=not gcfg["title_corpus"])
    val = load_split(store, "validation", (), require_poster=True)
    backbone = load_minilm_backbone()
    preprocess = load_hub_model(config["encoders"]["text"]["preprocess_handle"], "text preprocess")
    n_layers = len(backbone.transformer_layers)
    frozen = n_layers - settings["layers"]
    log.info("fine-tuning the top %d of %d MiniLM layers for genres on %d titles (validation: %d)",
             settings["layers"], n_layers, len(train), len(val))
    train_states = frozen_states(backbone, preprocess, train.movies["title"].tolist(), frozen)
    val_states = frozen_states(backbone, preprocess, val.movies["title"].tolist(), frozen)
    logits_model = genre_head_model(backbone, frozen, len(train.genres), settings["pooling"], settings["dropout"])
    pos_weight = tf.constant(positive_weights(train.labels, gcfg["max_pos_weight"]))
    optimizer = keras.optimizers.AdamW(settings["learning_rate"], weight_decay=settings["weight_decay"])
    optimizer.build(logits_model.trainable_variables)

    @tf.function(reduce_retracing=True)
    def train_step(states, mask, labels):
        with tf.GradientTape() as tape:
            logits = logits_model([states, mask], training=True)
            loss = tf.reduce_mean(tf.nn.weighted_cross_entropy_with_logits(labels, logits, pos_weight))
        gradients = tape.gradient(loss, logits_model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, logits_model.trainable_variables))
        return loss

    epoch = tf.Variable(0, dtype=tf.int64)
    best_epoch, best_score = tf.Variable(-1, dtype=tf.int64), tf.Variable(-1.0, dtype=tf.float64)
    state = dict(model=logits_model, optimizer=optimizer, epoch=epoch, best_epoch=best_epoch, best_score=best_score,
                 seed_states=seed_states(logits_model))
    latest = tf.train.CheckpointManager(tf.train.Checkpoint(**state), str(run_dir / "backup"), max_to_keep=1)
    best = tf.train.CheckpointManager(tf.train.Checkpoint(model=logits_model), str(run_dir / "best"), max_to_keep=1)
    if latest.latest_checkpoint:
        tf.train.Checkpoint(**state).restore(latest.latest_checkpoint)
        log.info("resuming the fine-tuning at epoch %d", int(epoch.numpy()))
    history_path = run_dir / "history.json"
    # Written before the checkpoint: a kill between the two leaves one epoch more here, which runs again.
    history = json.loads(history_path.read_text())[:int(epoch.numpy())] if history_path.exists() else []
    labels = train.labels.astype(np.float32)
    writer = tf.summary.create_file_writer(str(run_dir / "logs"))
    thresholds = GenreSettings.from_config(config).thresholds
    started = time.time()
    while int(epoch.numpy()) < settings["epochs"]:
        e = int(epoch.numpy())
        if best_epoch.numpy() >= 0 and e - int(best_epoch.numpy()) > settings["patience"]:
            break
        rng = np.random.default_rng(settings["seed"] + e)
        progress = keras.utils.Progbar(len(train_states), unit_name="title")
        total = steps = 0
        for rows, states, mask in train_states.batches(settings["batch_size"], rng):
            total += float(train_step(states, mask, labels[rows]))
            steps += 1
            progress.add(len(rows), values=[("loss", total / steps)])
        loss = total / max(steps, 1)
        score = out_of_sample_f1(val.labels, scores_of(logits_model, val_states),
                                 **thresholds.out_of_sample(settings["seed"]))
        history.append({"epoch": e + 1, "loss": loss, **{f"val_oos_{k}": v for k, v in score.items()}})
        with writer.as_default(step=e):
            tf.summary.scalar("finetune/loss", loss)
            tf.summary.scalar("finetune/val_oos_macro_f1", score["macro_f1"])
        improved = score["macro_f1"] > float(best_score.numpy())
        if improved:
            best_score.assign(score["macro_f1"])
            best_epoch.assign(e)
            best.save()
        print(f"fine-tuning epoch {e + 1}/{settings['epochs']}: loss {loss:.4f}, "
              f"validation out-of-sample macro-F1 {score['macro_f1']:.4f}" + (" (best)" if improved else ""), flush=True)
        epoch.assign(e + 1)
        atomic_write_text(history_path, json.dumps(history, indent=2))
        latest.save()
    writer.flush()
    tf.train.Checkpoint(model=logits_model).restore(best.latest_checkpoint).expect_partial()
    save_bert_encoder(backbone, target)
    write_config(config, run_dir)
    summary = {"layers": settings["layers"], "of_layers": n_layers, "training_titles": len(train),
               "validation_movies": len(val), "best_epoch": int(best_epoch.numpy()) + 1,
               "best_val_oos_macro_f1": float(best_score.numpy()), "history": history,
               "seconds_in_last_session": round(time.time() - started, 1), "encoder": str(target)}
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    for checkpoints in ("backup", "best"):  # the encoder holds the best weights now
        shutil.rmtree(run_dir / checkpoints, ignore_errors=True)
    log.info("fine-tuned text encoder: %s (best epoch %d, validation out-of-sample macro-F1 %.4f)",
             target, summary["best_epoch"], summary["best_val_oos_macro_f1"])
    return target
