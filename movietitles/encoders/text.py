"""Title embeddings from a TF-Hub BERT (encoder + its preprocessing model), loaded with `tensorflow_hub.load`.

A handle is a tfhub.dev / Kaggle URL (needs network) or a local SavedModel folder; the default is the local
MiniLM pair that `movietitles.encoders.bert_export` builds. Each batch is padded to its longest title (rounded up
to a multiple of `pad_multiple`), not to the preprocessor's 128: exact for BERT, since padded positions are masked.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from movietitles.encoders.bert_export import DEFAULT_ENCODER_DIR, DEFAULT_PREPROCESS_DIR, is_default_handle

POOLINGS = ("mean", "cls", "pooled")
FINETUNE_POOLINGS = ("mean", "cls")  # "pooled" reads a dense layer that fine-tuning does not train
_ENCODER_INPUTS = ("input_word_ids", "input_mask", "input_type_ids")
_GENERIC_PARTS = {"encoder", "preprocess", "saved_model", "savedmodel", "tensorflow2", "tensorflow", "models"}


def load_hub_model(handle: str, what: str):
    """`tensorflow_hub.load(handle)`, with an error naming the handle instead of a network trace."""
    import tensorflow_text  # noqa: F401  registers the TF Text ops that BERT preprocessors use

    with warnings.catch_warnings():  # tensorflow_hub 0.16 imports the deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        import tensorflow_hub as hub

    handle = str(handle)
    if "://" not in handle and not Path(handle).is_dir():
        raise FileNotFoundError(
            f"{what} handle {handle!r} is neither an existing local SavedModel folder nor a URL "
            f"(the default MiniLM pair is built by movietitles.encoders.bert_export.ensure_default_text_models)")
    try:
        return hub.load(handle)
    except Exception as e:  # network, missing model, not a SavedModel: the cause in one line, no trace
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OSError(f"cannot load {what} handle {handle!r}: {type(e).__name__}: {reason}") from None


def _handle_slug(handle: str) -> str:
    parts = [p for p in re.split(r"[/\\]+", str(handle).split("://")[-1].rstrip("/")) if p]
    named = [p for p in parts if not p.isdigit() and p.lower() not in _GENERIC_PARTS]
    return re.sub(r"[^a-z0-9._-]+", "-", (named[-1] if named else "bert").lower()).strip("-.") or "bert"


def pool_tokens(sequence, mask, pooling: str):
    """[B, L, D] token states -> [B, D]: `mean` over unmasked tokens or `cls` (the first token), with Keras ops,
    so the encoder (TensorFlow tensors) and the fine-tuning head (a Keras graph) pool the same way."""
    if pooling == "mean":
        weights = keras.ops.cast(mask, sequence.dtype)[:, :, None]
        return keras.ops.sum(sequence * weights, axis=1) / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)
    return sequence[:, 0]


def finetune_settings(cfg: dict) -> dict | None:
    """`cfg["finetune"]` (config["encoders"]["text"]; see configs/default.yaml), checked, or None when it is off."""
    settings = dict(cfg.get("finetune") or {})
    if not settings.get("layers"):
        return None
    if not is_default_handle(cfg["handle"], DEFAULT_ENCODER_DIR):
        raise ValueError(f"encoders.text.finetune fine-tunes the packaged MiniLM, but encoders.text.handle is "
                         f"{cfg['handle']!r}: set encoders.text.finetune.layers=0 to use that encoder as it is")
    pooling = cfg.get("pooling", "mean")
    if pooling not in FINETUNE_POOLINGS:
        raise ValueError(f"encoders.text.finetune needs encoders.text.pooling in {FINETUNE_POOLINGS}, got {pooling!r}")
    if not (isinstance(settings["layers"], int) and 1 <= settings["layers"] <= 6):
        raise ValueError(f"encoders.text.finetune.layers must be 0 (off) or 1..6 (MiniLM has 6), "
                         f"got {settings['layers']!r}")
    if not (isinstance(settings["epochs"], int) and settings["epochs"] >= 1):
        raise ValueError(f"encoders.text.finetune.epochs must be a positive integer, got {settings['epochs']!r}")
    return {**settings, "pooling": pooling}


def text_cache_key(cfg: dict) -> str:
    """Filesystem-safe key unique to the (handle, preprocess_handle, pooling, normalize), e.g. "minilm-l6-v2-mean"."""
    handle, preprocess_handle = str(cfg["handle"]), str(cfg["preprocess_handle"])
    if is_default_handle(handle, DEFAULT_ENCODER_DIR) and is_default_handle(preprocess_handle, DEFAULT_PREPROCESS_DIR):
        name = "minilm-l6-v2"
    else:
        digest = hashlib.sha1(f"{handle}\n{preprocess_handle}".encode()).hexdigest()[:8]
        name = f"{_handle_slug(handle)}-{digest}"
    return f"{name}-{cfg.get('pooling', 'mean')}" + ("-l2" if cfg.get("normalize", False) else "")


class TextEncoder:
    """Embeds titles with a TF-Hub BERT: `embed(titles) -> float32 [B, dim]`."""

    def __init__(self, handle: str, preprocess_handle: str, pooling: str = "mean", batch_size: int = 256,
                 normalize: bool = False, jit_compile: bool = False, pad_multiple: int | None = None):
        if pooling not in POOLINGS:
            raise ValueError(f"encoders.text.pooling must be one of {POOLINGS}, got {pooling!r}")
        if pad_multiple is None:  # XLA compiles once per shape: bucket lengths; otherwise pad exactly
            pad_multiple = 8 if jit_compile else 1
        if int(batch_size) < 1 or int(pad_multiple) < 1:
            raise ValueError(f"encoders.text.batch_size and pad_multiple must be >= 1, "
                             f"got {batch_size} and {pad_multiple}")
        self.handle, self.preprocess_handle = str(handle), str(preprocess_handle)
        self.pooling, self.normalize = pooling, bool(normalize)
        self.batch_size, self.pad_multiple = int(batch_size), int(pad_multiple)
        self.preprocessor = load_hub_model(self.preprocess_handle, "text preprocess")
        self.encoder = load_hub_model(self.handle, "text encoder")
        spec = tf.TensorSpec([None, None], tf.int32)
        self._forward = tf.function(self.encode_token_ids, input_signature=[spec] * 3, jit_compile=jit_compile)
        self.cache_key = text_cache_key({"handle": self.handle, "preprocess_handle": self.preprocess_handle,
                                         "pooling": pooling, "normalize": self.normalize})
        self.dim = int(self.encode(["a"])["embedding"].shape[-1])

    def encode_token_ids(self, word_ids, mask, type_ids) -> dict[str, tf.Tensor]:
        """The encoder's outputs and the pooled `embedding` (float32) of preprocessed token ids, as
        TensorFlow ops: it runs eagerly, or inside a tf.function such as a serving signature."""
        out = self.encoder({"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids})
        out = {k: v for k, v in out.items() if isinstance(v, tf.Tensor)}  # TF-Hub BERTs add a list of layers
        emb = out["pooled_output"] if self.pooling == "pooled" else pool_tokens(out["sequence_output"], mask,
                                                                                  self.pooling)
        if self.normalize:
            emb = tf.math.l2_normalize(emb, axis=-1)
        out["embedding"] = tf.cast(emb, tf.float32)
        return out

    def embed_tensor(self, titles: tf.Tensor) -> tf.Tensor:
        """`embed` as TensorFlow ops, for a serving graph: string [B] -> float32 [B, dim], the batch trimmed to its
        longest title (padding is masked, so trimming changes nothing but the cost)."""
        packed = self.preprocessor(titles)
        longest = tf.reduce_max(tf.reduce_sum(tf.cast(packed["input_mask"], tf.int32), axis=1))
        length = tf.minimum(tf.shape(packed["input_mask"])[1], tf.maximum(longest, 1))
        word_ids, mask, type_ids = (tf.cast(packed[k][:, :length], tf.int32) for k in _ENCODER_INPUTS)
        return self.encode_token_ids(word_ids, mask, type_ids)["embedding"]

    def preprocess(self, titles: list[str]) -> dict[str, np.ndarray]:
        """The preprocessor's int32 inputs, trimmed to the batch's longest title (rounded up to pad_multiple)."""
        return self._trim(self._preprocess_full(titles))

    def _preprocess_full(self, titles: list[str]) -> dict[str, np.ndarray]:
        for i, title in enumerate(titles):
            if not isinstance(title, str):
                raise TypeError(f"title {i} is {type(title).__name__} {title!r}, not a string")
        out = self.preprocessor(tf.constant(titles, tf.string))
        return {k: np.asarray(out[k], np.int32) for k in _ENCODER_INPUTS}

    def _trim(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        width = inputs["input_mask"].shape[1]
        longest = int(inputs["input_mask"].sum(axis=1).max(initial=1))
        length = min(width, -(-longest // self.pad_multiple) * self.pad_multiple)
        return {k: np.ascontiguousarray(v[:, :length]) for k, v in inputs.items()}

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._forward(*(tf.constant(inputs[k]) for k in _ENCODER_INPUTS))
        return {**{k: v.numpy() for k, v in out.items()}, "input_mask": inputs["input_mask"]}

    def encode(self, titles: list[str]) -> dict[str, np.ndarray]:
        """One batch: the encoder outputs (sequence_output, pooled_output, ...), `embedding` and `input_mask`."""
        return self._run(self.preprocess(list(titles)))

    def embed(self, titles: list[str]) -> np.ndarray:
        """float32 [len(titles), dim] in input order, in batches of `batch_size` titles of similar length."""
        titles = list(titles)
        out = np.zeros((len(titles), self.dim), np.float32)
        for rows, inputs in self._sorted_batches(titles):
            out[rows] = self._run(inputs)["embedding"]
        return out

    def batch_shapes(self, titles: list[str]) -> list[tuple[int, int]]:
        """(titles, padded length) of each batch that `embed(titles)` runs."""
        return [inputs["input_mask"].shape for _, inputs in self._sorted_batches(list(titles))]

    def _sorted_batches(self, titles: list[str]):
        chunk = self.batch_size * 16  # sort by length within chunks: little padding, bounded memory
        for start in range(0, len(titles), chunk):
            inputs = self._preprocess_full(titles[start:start + chunk])
            order = np.argsort(inputs["input_mask"].sum(axis=1), kind="stable")
            for i in range(0, len(order), self.batch_size):
                idx = order[i:i + self.batch_size]
                yield start + idx, self._trim({k: v[idx] for k, v in inputs.items()})


def build_text_encoder(cfg: dict) -> TextEncoder:
    """A TextEncoder from config["encoders"]["text"] (handle, preprocess_handle, pooling, batch_size, ...)."""
    try:
        handle, preprocess_handle = cfg["handle"], cfg["preprocess_handle"]
    except KeyError as e:
        raise KeyError(f"encoders.text.{e.args[0]} is missing from the config") from None
    return TextEncoder(handle, preprocess_handle, pooling=cfg.get("pooling", "mean"),
                       batch_size=cfg.get("batch_size", 256), normalize=cfg.get("normalize", False),
                       jit_compile=cfg.get("jit_compile", False), pad_multiple=cfg.get("pad_multiple"))
