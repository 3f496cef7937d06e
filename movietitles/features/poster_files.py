"""Embeddings (and OCR'd text) of poster image files given by path (`generate --poster`, `evaluate --pairs`),
outside the feature cache."""

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


def poster_text_of_files(generator_config: dict, tokenizer, paths: Sequence[str | Path]) -> np.ndarray | None:
    """The subword ids of the text OCR reads on each poster file, for a generator config that reads poster text
    (None for one that does not)."""
    text_cfg = generator_config["generator"].get("poster_text") or {}
    if not text_cfg.get("enabled"):
        return None
    from movietitles.encoders.ocr import PosterTextReader
    from movietitles.generator.data import poster_text_ids

    reader = PosterTextReader(generator_config["encoders"]["ocr"])
    return poster_text_ids([reader.read(str(path)) for path in paths], tokenizer, text_cfg)
