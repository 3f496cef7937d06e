"""Embeddings of poster image files given by path (`generate --poster`, `evaluate --pairs`), outside the feature cache."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf


def embed_poster_files(image_cfg: dict, paths: Sequence[str | Path]) -> np.ndarray:
    """[N, dim] vectors of image files with the configured image encoder; an unreadable file is named."""
    from movietitles.encoders.image import build_image_encoder

    encoder = build_image_encoder(image_cfg)
    images = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"poster file not found: {path}")
        with open(path, "rb") as f:
            data = f.read(encoder.max_bytes + 1)  # a larger file is refused by preprocess, unread
        try:
            images.append(encoder.preprocess(tf.constant(data), label=str(path)))
        except (tf.errors.InvalidArgumentError, ValueError) as err:
            raise ValueError(f"{path}: not a readable image ({str(err).splitlines()[0]})") from None
    return encoder.embed(tf.stack(images))
