"""A short training loop that runs the same under every tf.distribute strategy.

Keras 3's `fit` does not work under MultiWorkerMirroredStrategy (keras-team/keras#20585), so
training is written out, the way the Keras guide on custom training loops does it: distributed
steps with `strategy.run`, then once per epoch validation F1, TensorBoard summaries, early
stopping on a validation metric (macro-F1 by default), the best model kept, and a checkpoint to resume from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import f1_score

from movietitles.evaluation.thresholds import out_of_sample_f1, predict, tune_thresholds
from movietitles.settings import MONITORS
from movietitles.io import atomic_save_model
from movietitles.models.genre_runs import predict_scores  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


# Early-stopping scores; higher is better. Only val_oos_macro_f1 is both tuned like the model will be
# used and scored on movies its thresholds were not tuned on.


def seed_states(model: keras.Model) -> list:
    """The dropout layers' random-seed variables, which tf.train.Checkpoint(model=...) leaves out: checkpointed
    beside the model, a resumed run draws the same dropout masks as an uninterrupted one."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def check_monitor(monitor: str) -> str:
    if monitor not in MONITORS:
        raise ValueError(f"genre.monitor: unsupported early-stopping score {monitor!r}; choose one of {MONITORS}")
    return monitor


@dataclass
class LoopResult:
    epochs_in_this_session: int
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)


def _validation_logs(model, inputs: dict[str, np.ndarray], labels: np.ndarray, loss_fn,
                     thresholds: dict) -> dict[str, float]:
    scores = predict_scores(model, inputs)
    predicted = scores >= 0.5
    tuned = predict(scores, tune_thresholds(labels, scores))
    return {
        "val_loss": float(np.mean(keras.ops.convert_to_numpy(loss_fn(labels, scores)))),
        "val_micro_f1": float(f1_score(labels, predicted, average="micro", zero_division=0)),
        "val_macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        # With per-genre thresholds tuned on validation, as the model will be used.
        "val_tuned_macro_f1": float(f1_score(labels, tuned, average="macro", zero_division=0)),
        # Thresholds of the configured strategy tuned on one half of validation, scored on the other.
        "val_oos_macro_f1": out_of_sample_f1(labels, scores, **thresholds)["macro_f1"],
    }


def train_loop(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer | list,
    loss_fn,
    train_ds: tf.data.Dataset,
    val_inputs: dict[str, np.ndarray],
    val_labels: np.ndarray,
    strategy: tf.distribute.Strategy,
    out_dir: Path,
    epochs: int,
    patience: int,
    global_batch_size: int,
    monitor: str = "val_oos_macro_f1",
    thresholds: dict | None = None,
    on_epoch_start=None,
) -> LoopResult:
    """`train_ds` yields global batches `(inputs, labels, weights)`; `loss_fn` returns per-example losses.

    `optimizer`: one for every trainable variable, or (optimizer, variables) pairs, each variable in one pair.

    `thresholds`: options of `out_of_sample_f1` (strategy, shrinkage, repeats, seed) for val_oos_macro_f1.
    `on_epoch_start(epoch)`: called before each epoch's pass over `train_ds` (e.g. to shuffle by epoch number,
    so that a resumed run sees the batches an uninterrupted one would).
    """
    check_monitor(monitor)
    thresholds = thresholds or {}
    dist_ds = strategy.experimental_distribute_dataset(train_ds)
    groups = optimizer if isinstance(optimizer, list) else [(optimizer, model.trainable_variables)]

    def replica_step(inputs, labels, weights):
        with tf.GradientTape() as tape:
            per_example = loss_fn(labels, model(inputs, training=True)) * weights
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
        gradients = iter(tape.gradient(loss, [v for _, variables in groups for v in variables]))
        for group_optimizer, variables in groups:
            group_optimizer.apply_gradients([(next(gradients), v) for v in variables])
        return loss

    @tf.function(reduce_retracing=True)  # batches of token states vary in length
    def train_step(inputs, labels, weights):
        per_replica = strategy.run(replica_step, args=(inputs, labels, weights))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    # Resume state: the weights, the optimizer, and where early stopping stood.
    with strategy.scope():
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        best_f1 = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)
        for group_optimizer, variables in groups:
            group_optimizer.build(variables)
    optimizers = {"optimizer": groups[0][0], **{f"optimizer_{i}": o for i, (o, _) in enumerate(groups[1:], 1)}}
    checkpoint = tf.train.Checkpoint(model=model, **optimizers, epoch=epoch_var, best_f1=best_f1,
                                     best_epoch=best_epoch, seed_states=seed_states(model))
    manager = tf.train.CheckpointManager(checkpoint, str(out_dir / "backup"), max_to_keep=1)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        log.info("resuming from %s at epoch %d", manager.latest_checkpoint, int(epoch_var.numpy()))

    best_path = out_dir / "best.keras"
    train_writer = tf.summary.create_file_writer(str(out_dir / "logs" / "train"))
    val_writer = tf.summary.create_file_writer(str(out_dir / "logs" / "validation"))
    result = LoopResult(0, int(best_epoch.numpy()), float(best_f1.numpy()))
    start = int(epoch_var.numpy())
    for epoch in range(start, epochs):
        if epoch - int(best_epoch.numpy()) > patience and int(best_epoch.numpy()) >= 0:
            break
        total, steps = 0.0, 0
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        for inputs, labels, weights in dist_ds:
            total += float(train_step(inputs, labels, weights))
            steps += 1
        logs = {"loss": total / max(steps, 1), **_validation_logs(model, val_inputs, val_labels, loss_fn, thresholds)}
        result.history.append(logs)
        result.epochs_in_this_session += 1
        with train_writer.as_default(step=epoch):
            tf.summary.scalar("epoch_loss", logs["loss"])
            for weight in model.weights:
                tf.summary.histogram(weight.path, keras.ops.convert_to_numpy(weight))
        with val_writer.as_default(step=epoch):
            for name in ("loss", "micro_f1", "macro_f1", "tuned_macro_f1", "oos_macro_f1"):
                tf.summary.scalar(f"epoch_{name}", logs[f"val_{name}"])
        improved = logs[monitor] > float(best_f1.numpy())
        if improved:
            best_f1.assign(logs[monitor])
            best_epoch.assign(epoch)
            atomic_save_model(model, best_path)
        print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items())
              + (" (best)" if improved else ""), flush=True)
        epoch_var.assign(epoch + 1)
        manager.save()
    train_writer.flush()
    val_writer.flush()
    result.best_epoch, result.best_score = int(best_epoch.numpy()), float(best_f1.numpy())
    if best_path.exists():
        model.set_weights(keras.saving.load_model(best_path).get_weights())
    return result
