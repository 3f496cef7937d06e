"""The pieces `train_genre_model` needs for a title model that fine-tunes its encoder
(`genre.models.title.finetune_layers: k`, see `movietitles.models.title_task`).

The frozen layers' token states of every training and validation title are computed once; training and the
epoch's validation read them (`TitleTask.train_model`), and the run saves the model that reads raw titles.
The top k layers learn at `finetune_learning_rate`, the head at `genre.learning_rate`; with
`finetune_warm_start`, the head starts from the title model trained on the untouched encoder's embeddings (trained
first when missing) and learns at `finetune_learning_rate` too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from movietitles.encoders.bert_export import (
    DEFAULT_ENCODER_DIR, is_default_handle, load_minilm_backbone, minilm_vocabulary)
from movietitles.encoders.text import FINETUNE_POOLINGS, finetune_settings
from movietitles.features.pipeline import Features
from movietitles.models.genre import TITLE_TEXT
from movietitles.models.title_task import MASK, STATES, TitleTask, TitleTokenIds, build_title_task
from movietitles.naming import FINETUNE_KEYS
from movietitles.training.text_finetune import TokenStates, frozen_states

log = logging.getLogger(__name__)

MINILM_LAYERS = 6

def pop_finetune_settings(config: dict, architecture: dict) -> dict | None:
    """Removes the fine-tuning keys from a model's architecture options; returns them, checked, or None when off."""
    settings = {key: architecture.pop(key) for key in FINETUNE_KEYS if key in architecture}
    if not settings.get("finetune_layers"):
        return None
    layers = settings["finetune_layers"]
    if not (isinstance(layers, int) and 1 <= layers <= MINILM_LAYERS):
        raise ValueError(f"genre.models.title.finetune_layers must be 0 (off) or 1..{MINILM_LAYERS} (MiniLM's "
                         f"layers), got {layers!r}")
    return {**settings, "pooling": check_text_encoder(config)}


def check_text_encoder(config: dict) -> str:
    """The title task fine-tunes the packaged MiniLM itself: the cached title features (which adapt its head's
    standardisation) must be that encoder's, untouched. Returns the pooling."""
    cfg = config["encoders"]["text"]
    if not is_default_handle(cfg["handle"], DEFAULT_ENCODER_DIR):
        raise ValueError(f"genre.models.title.finetune_layers fine-tunes the packaged MiniLM, but encoders.text.handle "
                         f"is {cfg['handle']!r}: set genre.models.title.finetune_layers=0 to use that encoder")
    if finetune_settings(cfg) is not None:
        raise ValueError("genre.models.title.finetune_layers and encoders.text.finetune.layers are two ways to "
                         "fine-tune the title encoder: set one of them to 0")
    pooling = cfg.get("pooling", "mean")
    if pooling not in FINETUNE_POOLINGS or cfg.get("normalize", False):
        raise ValueError(f"genre.models.title.finetune_layers needs encoders.text.pooling in {FINETUNE_POOLINGS} "
                         f"and encoders.text.normalize false, got {pooling!r} / {cfg.get('normalize')!r}")
    return pooling


@dataclass
class TitleTaskTraining:
    task: TitleTask
    optimizers: list  # (optimizer, variables) pairs
    train_ds: tf.data.Dataset
    val_inputs: dict[str, np.ndarray]
    on_epoch_start: Callable[[int], None]  # for train_loop: the epoch whose shuffle train_ds gives next


def padded(states: TokenStates) -> dict[str, np.ndarray]:
    """All titles at once, padded to the longest: {title_states [N, L, D], title_mask [N, L]}."""
    length = int(states.lengths.max())
    out = np.zeros((len(states), length, states.states[0].shape[-1]), np.float32)
    mask = np.zeros((len(states), length), np.int32)
    for row, state in enumerate(states.states):
        out[row, :len(state)] = state
        mask[row, :len(state)] = 1
    return {STATES: out, MASK: mask}


def states_dataset(states: TokenStates, titles: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                   batch_size: int, seed: int, text_channel: bool) -> tuple[tf.data.Dataset, Callable[[int], None]]:
    """Batches of titles of similar length, each padded to its longest: (inputs, labels, weights), shuffled by
    (seed, epoch); and the function that sets the epoch before a pass."""
    epoch = [0]
    width = states.states[0].shape[-1]

    def set_epoch(number: int) -> None:
        epoch[0] = number

    def batches():
        for rows, x, mask in states.batches(batch_size, np.random.default_rng([seed, epoch[0]])):
            inputs = {STATES: x, MASK: mask, **({TITLE_TEXT: titles[rows]} if text_channel else {})}
            yield inputs, labels[rows].astype(np.float32), weights[rows]

    spec = {STATES: tf.TensorSpec([None, None, width], tf.float32), MASK: tf.TensorSpec([None, None], tf.int32),
            **({TITLE_TEXT: tf.TensorSpec([None], tf.string)} if text_channel else {})}
    dataset = tf.data.Dataset.from_generator(batches, output_signature=(
        spec, tf.TensorSpec([None, labels.shape[1]], tf.float32), tf.TensorSpec([None], tf.float32))).prefetch(2)
    return dataset, set_epoch


def prepare_title_task(config: dict, train: Features, val: Features, architecture: dict, settings: dict,
                       text_channel: bool, weights: np.ndarray, strategy, name: str,
                       warm_start: keras.Model | None = None) -> TitleTaskTraining:
    """Builds the task (under `strategy`), computes the frozen token states, and its optimizers and data.

    `warm_start`: the title classifier trained on the untouched encoder's embeddings, whose weights the head
    starts from; the head then learns at the encoder's `finetune_learning_rate`, not `genre.learning_rate`.
    """
    gcfg = config["genre"]
    vocabulary = minilm_vocabulary()
    titles = train.movies["title"].to_numpy(dtype=str)
    with strategy.scope():
        backbone = load_minilm_backbone()
        task = build_title_task(backbone, vocabulary, titles, train.inputs["title"], train.genres,
                                settings["finetune_layers"], settings["pooling"], text_channel, name=name,
                                **architecture)
        if warm_start is not None:
            task.start_head_from(warm_start)
        top = [v for layer in backbone.transformer_layers[task.frozen_layers:] for v in layer.trainable_variables]
        top_ids = {id(v) for v in top}
        head = [v for v in task.train_model.trainable_variables if id(v) not in top_ids]
        finetune_rate = settings.get("finetune_learning_rate", gcfg["learning_rate"])
        head_rate = finetune_rate if warm_start is not None else gcfg["learning_rate"]
        optimizers = [(keras.optimizers.AdamW(head_rate, weight_decay=gcfg["weight_decay"]), head),
                      (keras.optimizers.AdamW(finetune_rate, weight_decay=gcfg["weight_decay"]), top)]
    tokenizer = TitleTokenIds(vocabulary)

    def tokenize(strings):
        ids, mask = tokenizer(strings)
        return {"input_word_ids": ids, "input_mask": mask}

    log.info("title task: the frozen %d of %d MiniLM layers' token states for %d training and %d validation titles",
             task.frozen_layers, len(backbone.transformer_layers), len(train), len(val))
    train_states = frozen_states(backbone, tokenize, list(titles), task.frozen_layers)
    val_titles = val.movies["title"].to_numpy(dtype=str)
    val_inputs = {**padded(frozen_states(backbone, tokenize, list(val_titles), task.frozen_layers)),
                  **({TITLE_TEXT: val_titles} if text_channel else {})}
    train_ds, set_epoch = states_dataset(train_states, titles, train.labels, weights, gcfg["batch_size"],
                                         config["seed"], text_channel)
    return TitleTaskTraining(task, optimizers, train_ds, val_inputs, set_epoch)
