"""The title decoder: a GRU language model over BPEmb subwords, conditioned on the poster.

"Par-inject" captioning: the (projected) poster vector, and optionally the genre vector, is
repeated along time and concatenated with every step's token embedding. The output is logits
over the tokenizer's vocabulary (BPEmb subwords, then PAD, <s>, </s>).
"""

from __future__ import annotations

import keras
import numpy as np

TOKENS, POSTER_INPUT, GENRES = "tokens", "poster", "genres"
LOGITS = "logits"  # the output layer's name


@keras.saving.register_keras_serializable(package="movietitles")
class RepeatAlongTime(keras.layers.Layer):
    """`[vector [B, D], sequence [B, T, ...]]` -> `[B, T, D]`: the vector at every time step."""

    def call(self, inputs):
        vector, sequence = inputs
        steps = keras.ops.shape(sequence)[1]
        return keras.ops.repeat(keras.ops.expand_dims(vector, 1), steps, axis=1)

    def compute_output_shape(self, input_shape):
        vector_shape, sequence_shape = input_shape
        return (vector_shape[0], sequence_shape[1], vector_shape[-1])


def build_title_decoder(vocab_size: int, poster_dim: int, num_genres: int, embedding_matrix: np.ndarray,
                        trainable_embeddings: bool = True, use_genres: bool = False,
                        poster_projection: int | None = 64, gru_units: int = 256, gru_layers: int = 1,
                        dropout: float = 0.2) -> keras.Model:
    """Inputs `tokens` [B, T] int32, `poster` [B, Dp] (and `genres` [B, G]); output logits [B, T, V].

    No Keras mask: PAD is not id 0, and the GRU is causal, so the steps before the padding never see
    it; the loss masks PAD with sample weights instead.
    """
    embedding_matrix = np.asarray(embedding_matrix, np.float32)
    if embedding_matrix.shape[0] != vocab_size:
        raise ValueError(f"embedding matrix has {embedding_matrix.shape[0]} rows for a vocabulary of {vocab_size}")
    if gru_layers < 1:
        raise ValueError(f"generator.gru_layers must be at least 1, got {gru_layers}")
    tokens = keras.Input((None,), dtype="int32", name=TOKENS)
    poster = keras.Input((poster_dim,), name=POSTER_INPUT)
    inputs = {TOKENS: tokens, POSTER_INPUT: poster}

    condition = keras.layers.Dropout(dropout, name="poster_dropout")(poster)
    if poster_projection:
        # tanh, not relu: after the warm-up on zero posters, relu units died and the poster was ignored.
        condition = keras.layers.Dense(poster_projection, activation="tanh", name="poster_projection")(condition)
    if use_genres:
        genres = keras.Input((num_genres,), name=GENRES)
        inputs[GENRES] = genres
        condition = keras.layers.Concatenate(name="poster_and_genres")([condition, genres])
    condition = keras.layers.Dropout(dropout, name="condition_dropout")(condition)

    embedding = keras.layers.Embedding(vocab_size, embedding_matrix.shape[1], trainable=trainable_embeddings,
                                       name="subword_embedding")
    embedded = embedding(tokens)
    embedding.set_weights([embedding_matrix])
    repeated = RepeatAlongTime(name="condition_per_step")([condition, embedded])
    x = keras.layers.Concatenate(name="step_inputs")([embedded, repeated])
    for layer in range(gru_layers):
        x = keras.layers.GRU(gru_units, return_sequences=True, name=f"gru_{layer + 1}")(x)
        x = keras.layers.Dropout(dropout, name=f"gru_{layer + 1}_dropout")(x)
    logits = keras.layers.Dense(vocab_size, name=LOGITS)(x)
    return keras.Model(inputs, logits, name="title_decoder")


def masked_token_loss() -> keras.losses.Loss:
    """Mean cross-entropy over the tokens whose sample weight is 1 (`target != PAD`): extra
    padding changes nothing."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")


def decoder_inputs(model: keras.Model, poster, genres, tokens) -> dict:
    """The input dict `model` takes; genres are required only by a model trained with them."""
    inputs = {TOKENS: np.asarray(tokens, np.int32), POSTER_INPUT: np.asarray(poster, np.float32)}
    if GENRES in model.input:
        if genres is None:
            raise ValueError("this title decoder was trained with genres (generator.use_genres): pass a genre vector")
        inputs[GENRES] = np.asarray(genres, np.float32)
    return inputs


def token_log_probs(model: keras.Model, poster, genres, tokens, targets, pad_id: int | None = None,
                    batch_size: int = 512) -> np.ndarray:
    """log p(target_t | poster, genres, tokens_<=t) per position, [B, T] float32, 0 where the target is PAD.

    `pad_id` defaults to the tokenizer's layout (vocabulary size - 3).
    """
    targets = np.asarray(targets, np.int32)
    pad_id = int(model.output_shape[-1]) - 3 if pad_id is None else pad_id
    inputs = decoder_inputs(model, poster, genres, tokens)
    out = np.zeros(targets.shape, np.float32)
    for start in range(0, len(targets), batch_size):
        rows = slice(start, start + batch_size)
        logits = model({k: v[rows] for k, v in inputs.items()}, training=False)
        log_probs = keras.ops.convert_to_numpy(keras.ops.log_softmax(logits, axis=-1))
        out[rows] = np.take_along_axis(log_probs, targets[rows][..., None], axis=-1)[..., 0]
    return np.where(targets == pad_id, 0.0, out).astype(np.float32)
