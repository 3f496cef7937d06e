"""Embeddings (and OCR'd text) of poster image files given by path (`generate --poster`, `evaluate --pairs`),
outside the feature cache."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from movietitles.data.poster_file import read_poster_file


def embed_poster_files(image_cfg: dict, paths: Sequence[str | Path]) -> np.ndarray:
    """[N, dim] vectors of image files with the configured image encoder; an unreadable file is named."""
    from movietitles.encoders.image import build_image_encoder, error_reason

    encoder = build_image_encoder(image_cfg)
    images = []
    for path in map(Path, paths):
        data = read_poster_file(path, encoder.max_bytes, encoder.max_pixels)
        try:  # in a graph: eagerly, a 180-frame GIF took minutes
            images.append(encoder.preprocess_batch([data], [str(path)])[0])
        except (tf.errors.InvalidArgumentError, ValueError) as err:
            reason = error_reason(getattr(err, "message", str(err)))
            raise ValueError(f"{path}: not a readable image ({reason})") from None
    return encoder.embed(tf.stack(images))


def read_poster_lines(ocr_config: dict, paths: Sequence[str | Path]) -> list[list[dict]]:
    """The text lines OCR reads on each poster file (`encoders.ocr.PosterTextReader`), its workers closed after."""
    from movietitles.encoders.ocr import PosterTextReader

    reader = PosterTextReader(ocr_config)
    try:
        return reader.read_files(paths)
    finally:
        reader.close()


def read_poster_text(generator_config: dict, paths: Sequence[str | Path]) -> list[str] | None:
    """The words OCR reads on each poster file, as the one string a text-reading generator (and its export's
    `poster_text` input) takes; None for a generator config that does not read poster text. The files are checked
    first by the callers (`read_poster_file`: `generate` checks every poster before it loads a model,
    `embed_poster_files` checks each one it embeds)."""
    text_cfg = generator_config["generator"].get("poster_text") or {}
    if not text_cfg.get("enabled"):
        return None
    from movietitles.generator.data import poster_text_strings

    return poster_text_strings(read_poster_lines(generator_config["encoders"]["ocr"], paths), text_cfg)


def read_poster_words(ocr_config: dict, paths: Sequence[str | Path]) -> list[str]:
    """The words OCR reads on each poster file as one string (`encoders.ocr.poster_words`: largest lettering
    first), as a genre model reading poster text (and its export's `poster_text` input) takes them."""
    from movietitles.encoders.ocr import poster_words

    return [poster_words(lines) for lines in read_poster_lines(ocr_config, paths)]


def poster_text_of_files(generator_config: dict, tokenizer, paths: Sequence[str | Path]) -> np.ndarray | None:
    """The subword ids of the text OCR reads on each poster file, for a generator config that reads poster text
    (None for one that does not)."""
    texts = read_poster_text(generator_config, paths)
    if texts is None:
        return None
    from movietitles.generator.data import text_ids

    return text_ids(texts, tokenizer, generator_config["generator"]["poster_text"]["max_tokens"])
