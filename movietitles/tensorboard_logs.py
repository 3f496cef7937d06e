"""TensorBoard extras of a genre run: per-genre precision-recall curves, and the embedding
projector for title and poster vectors (title and genres as metadata). Loss, validation F1 and
weight histograms per epoch are written by the training loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector
from tensorboard.plugins.pr_curve import summary as pr_summary

from movietitles.io import atomic_write_text


def write_pr_curves(logdir: str | Path, labels: np.ndarray, scores: np.ndarray, genres: list[str], step: int = 0):
    writer = tf.summary.create_file_writer(str(Path(logdir) / "pr_curves"))
    with writer.as_default():
        for g, genre in enumerate(genres):
            pr_summary.op(
                name=f"pr_curve/{genre}",
                labels=tf.constant(labels[:, g].astype(bool)),
                predictions=tf.constant(scores[:, g].astype(np.float32)),
                num_thresholds=101,
                display_name=genre,
            )
    writer.flush()


def write_projector(logdir: str | Path, embeddings: dict[str, np.ndarray], titles: list[str], genres: list[str]):
    """Title and poster vectors in the embedding projector, one checkpoint per modality."""
    logdir = Path(logdir) / "projector"
    logdir.mkdir(parents=True, exist_ok=True)
    metadata = "title\tgenres\n" + "".join(
        f"{t.replace(chr(9), ' ').replace(chr(10), ' ')}\t{g}\n" for t, g in zip(titles, genres)
    )
    atomic_write_text(logdir / "metadata.tsv", metadata)
    config = projector.ProjectorConfig()
    variables = {name: tf.Variable(values, name=name) for name, values in embeddings.items()}
    tf.train.Checkpoint(**variables).save(str(logdir / "embeddings.ckpt"))
    for name in variables:
        embedding = config.embeddings.add()
        embedding.tensor_name = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(str(logdir), config)
