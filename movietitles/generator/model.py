"""The title decoder: a GRU language model over BPEmb subwords, conditioned on the poster.

The (projected) poster vector, and optionally the genre vector, reaches the GRU by "par-inject"
(repeated along time and concatenated with every step's token embedding), "init-inject" (the GRU's
initial state), or both. The output is logits over the tokenizer's vocabulary (BPEmb subwords,
then PAD, <s>, </s>).

With poster attention ("Show, Attend and Tell", Xu et al., 2015), the poster input is the image encoder's
`pooling: grid` feature: the pooled vector (the condition above) followed by the last block's feature map,
whose cells every step attends to (dot-product attention from the GRU's output); the attended context joins
the GRU's output before the logits.

With poster text (the words OCR read on the poster, as subword ids after a sentinel <s>), a
bidirectional GRU encodes them, every decoder step attends over them, and a pointer-generator
(See et al., 2017) mixes the vocabulary distribution with a copy of the attended subwords:
P(w) = p_gen P_vocab(w) + (1 - p_gen) sum of the attention on the text positions holding w.
The output is then log P itself, which is its own log-softmax: the loss, scoring and samplers
that read logits need no change.
"""

from __future__ import annotations

import keras
import numpy as np

TOKENS, POSTER_INPUT, GENRES, POSTER_TEXT = "tokens", "poster", "genres", "poster_text"
LOGITS = "logits"  # the output layer's name
INJECTIONS = ("par_inject", "init_inject", "both", "none")


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


@keras.saving.register_keras_serializable(package="movietitles")
class SplitPosterGrid(keras.layers.Layer):
    """A `pooling: grid` poster feature [B, pooled + cells * channels] -> `[pooled [B, pooled], grid [B, cells,
    channels]]`."""

    def __init__(self, pooled: int, cells: int, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.pooled, self.cells, self.channels = int(pooled), int(cells), int(channels)

    def call(self, poster):
        grid = keras.ops.reshape(poster[:, self.pooled:], (-1, self.cells, self.channels))
        return poster[:, :self.pooled], grid

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.pooled), (input_shape[0], self.cells, self.channels)

    def get_config(self):
        return {**super().get_config(), "pooled": self.pooled, "cells": self.cells, "channels": self.channels}


@keras.saving.register_keras_serializable(package="movietitles")
class NotPadding(keras.layers.Layer):
    """Subword ids [B, M] -> bool [B, M], True where the id is not PAD: the mask of the poster-text encoder, so that
    each position's state does not depend on how far its row is padded (a row is padded to its batch's longest)."""

    def __init__(self, pad_id: int, **kwargs):
        super().__init__(**kwargs)
        self.pad_id = int(pad_id)

    def call(self, ids):
        return keras.ops.not_equal(ids, self.pad_id)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package="movietitles")
class CopyAttention(keras.layers.Layer):
    """`[decoder states [B, T, H], text memory [B, M, D], text ids [B, M]]` -> `[context [B, T, D], copy [B, T, V]]`.

    Scaled dot-product attention of each step over the text positions that are not PAD; `copy` spreads each
    step's attention over the vocabulary ids of the positions it attends to.
    """

    def __init__(self, units: int, vocab_size: int, pad_id: int, **kwargs):
        super().__init__(**kwargs)
        self.units, self.vocab_size, self.pad_id = int(units), int(vocab_size), int(pad_id)
        self.query = keras.layers.Dense(self.units, use_bias=False, name="query")
        self.key = keras.layers.Dense(self.units, use_bias=False, name="key")

    def build(self, input_shape):
        states_shape, memory_shape, _ = input_shape
        self.query.build(states_shape)
        self.key.build(memory_shape)

    def call(self, inputs, mask=None):  # PAD positions are masked from `text_ids` (the memory's mask is the same)
        states, memory, text_ids = inputs
        scores = keras.ops.einsum("btu,bmu->btm", self.query(states), self.key(memory)) / np.sqrt(self.units)
        valid = keras.ops.expand_dims(keras.ops.not_equal(text_ids, self.pad_id), 1)
        weights = keras.ops.softmax(keras.ops.where(valid, scores, -1e9), axis=-1)
        context = keras.ops.einsum("btm,bmd->btd", weights, memory)
        copy = keras.ops.einsum("btm,bmv->btv", weights, keras.ops.one_hot(text_ids, self.vocab_size))
        return context, copy

    def compute_output_shape(self, input_shape):
        states_shape, memory_shape, _ = input_shape
        return ((*states_shape[:2], memory_shape[-1]), (*states_shape[:2], self.vocab_size))

    def compute_mask(self, inputs, mask=None):
        return None  # the outputs are per decoder step, not per text position

    def get_config(self):
        return {**super().get_config(), "units": self.units, "vocab_size": self.vocab_size, "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package="movietitles")
class PointerGenerator(keras.layers.Layer):
    """`[vocabulary logits [B, T, V], copy distribution [B, T, V], gate logit [B, T, 1]]` -> log P [B, T, V],
    with p_gen = sigmoid(gate logit). In log space throughout: a saturated gate (p_gen == 1.0 in float32,
    as in warm-up, where there is nothing to copy) would make log(1 - p_gen) -inf and its gradient NaN."""

    def call(self, inputs):
        logits, copy, gate = inputs
        generate = keras.ops.log_sigmoid(gate) + keras.ops.log_softmax(logits, axis=-1)
        copied = keras.ops.log_sigmoid(-gate) + keras.ops.log(copy + 1e-9)
        return keras.ops.logaddexp(generate, copied)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def build_title_decoder(vocab_size: int, poster_dim: int, num_genres: int, embedding_matrix: np.ndarray,
                        trainable_embeddings: bool = True, use_genres: bool = False,
                        poster_projection: int | None = 64, gru_units: int = 256, gru_layers: int = 1,
                        dropout: float = 0.2, poster_injection: str = "par_inject",
                        poster_text_units: int | None = None, genre_model: keras.Model | None = None,
                        poster_grid: tuple[int, int, int] | None = None,
                        poster_attention_units: int | None = None, poster_attention_dropout: float = 0.2
                        ) -> keras.Model:
    """Inputs `tokens` [B, T] int32, `poster` [B, Dp] (and `genres` [B, G], and with `poster_text_units`
    `poster_text` [B, M] int32: <s> then the poster's subwords, PAD-padded); output logits [B, T, V].

    `genre_model` (a poster genre model: poster vector -> genre probabilities) becomes a frozen part of the
    decoder: its predicted genres join the condition, so the decoder needs no genre input and serves any poster.

    `poster_attention_units` (with `poster_grid`, the (pooled, cells, channels) layout of the poster input) adds
    attention over the poster's feature map (`poster_attention_dropout` on its cells and on the attended context).

    No Keras mask: PAD is not id 0, and the GRU is causal, so the steps before the padding never see
    it; the loss masks PAD with sample weights instead.
    """
    if poster_injection not in INJECTIONS:
        raise ValueError(f"generator.poster_injection must be one of {INJECTIONS}, got {poster_injection!r}")
    embedding_matrix = np.asarray(embedding_matrix, np.float32)
    if embedding_matrix.shape[0] != vocab_size:
        raise ValueError(f"embedding matrix has {embedding_matrix.shape[0]} rows for a vocabulary of {vocab_size}")
    if gru_layers < 1:
        raise ValueError(f"generator.gru_layers must be at least 1, got {gru_layers}")
    tokens = keras.Input((None,), dtype="int32", name=TOKENS)
    poster = keras.Input((poster_dim,), name=POSTER_INPUT)
    inputs = {TOKENS: tokens, POSTER_INPUT: poster}
    pooled, grid = poster, None
    if poster_attention_units:
        if poster_grid is None or poster_dim != poster_grid[0] + poster_grid[1] * poster_grid[2]:
            raise ValueError(f"generator.poster_attention needs poster features with a feature map "
                             f"(encoders.image.pooling: grid); these are {poster_dim}-d vectors")
        pooled, grid = SplitPosterGrid(*poster_grid, name="poster_grid")(poster)

    condition = keras.layers.Dropout(dropout, name="poster_dropout")(pooled)
    if poster_projection:
        # tanh, not relu: after the warm-up on zero posters, relu units died and the poster was ignored.
        condition = keras.layers.Dense(poster_projection, activation="tanh", name="poster_projection")(condition)
    if use_genres:
        genres = keras.Input((num_genres,), name=GENRES)
        inputs[GENRES] = genres
        condition = keras.layers.Concatenate(name="poster_and_genres")([condition, genres])
    if genre_model is not None:
        if [t.name for t in genre_model.inputs] != [POSTER_INPUT]:
            raise ValueError(f"generator.predicted_genres needs a poster genre model (one input, {POSTER_INPUT!r}); "
                             f"this one reads {[t.name for t in genre_model.inputs]}")
        genre_model.trainable = False
        # The genre model reads the features it was trained on: the whole poster feature, or its pooled part.
        reads = poster if genre_model.inputs[0].shape[-1] == poster_dim else pooled
        predicted = genre_model({POSTER_INPUT: reads}, training=False)
        condition = keras.layers.Concatenate(name="poster_and_predicted_genres")([condition, predicted])
    condition = keras.layers.Dropout(dropout, name="condition_dropout")(condition)

    embedding = keras.layers.Embedding(vocab_size, embedding_matrix.shape[1], trainable=trainable_embeddings,
                                       name="subword_embedding")
    embedded = embedding(tokens)
    embedding.set_weights([embedding_matrix])
    x = embedded
    if poster_injection in ("par_inject", "both"):
        repeated = RepeatAlongTime(name="condition_per_step")([condition, embedded])
        x = keras.layers.Concatenate(name="step_inputs")([embedded, repeated])
    initial_state = None
    if poster_injection in ("init_inject", "both"):
        initial_state = keras.layers.Dense(gru_units, activation="tanh", name="initial_state")(condition)
    for layer in range(gru_layers):
        gru = keras.layers.GRU(gru_units, return_sequences=True, name=f"gru_{layer + 1}")
        x = gru(x, initial_state=initial_state) if layer == 0 and initial_state is not None else gru(x)
        x = keras.layers.Dropout(dropout, name=f"gru_{layer + 1}_dropout")(x)
    if grid is not None:
        memory = keras.layers.Dense(poster_attention_units, activation="tanh", name="grid_projection")(
            keras.layers.Dropout(poster_attention_dropout, name="grid_dropout")(grid))
        keys = keras.layers.Dense(poster_attention_units, use_bias=False, name="grid_keys")(memory)
        query = keras.layers.Dense(poster_attention_units, use_bias=False, name="grid_query")(x)
        context = keras.layers.Attention(name="grid_attention")([query, memory, keys])
        context = keras.layers.Dropout(poster_attention_dropout, name="grid_context_dropout")(context)
        x = keras.layers.Concatenate(name="state_and_grid_context")([x, context])
    if not poster_text_units:
        logits = keras.layers.Dense(vocab_size, name=LOGITS)(x)
        return keras.Model(inputs, logits, name="title_decoder")

    text_ids = keras.Input((None,), dtype="int32", name=POSTER_TEXT)
    inputs[POSTER_TEXT] = text_ids
    pad_id = vocab_size - 3
    memory = keras.layers.Bidirectional(keras.layers.GRU(poster_text_units, return_sequences=True),
                                        name="poster_text_encoder")(
        embedding(text_ids), mask=NotPadding(pad_id, name="poster_text_mask")(text_ids))
    memory = keras.layers.Dropout(dropout, name="poster_text_dropout")(memory)
    context, copy = CopyAttention(poster_text_units, vocab_size, pad_id=pad_id, name="copy_attention")(
        [x, memory, text_ids])
    state_and_context = keras.layers.Concatenate(name="state_and_context")([x, context])
    vocabulary_logits = keras.layers.Dense(vocab_size, name="vocabulary_logits")(state_and_context)
    gate = keras.layers.Dense(1, name="generate_gate")(  # logit of p_gen
        keras.layers.Concatenate(name="gate_inputs")([state_and_context, embedded]))
    log_probs = PointerGenerator(name=LOGITS)([vocabulary_logits, copy, gate])
    return keras.Model(inputs, log_probs, name="title_decoder")


def masked_token_loss() -> keras.losses.Loss:
    """Mean cross-entropy over the tokens whose sample weight is 1 (`target != PAD`): extra
    padding changes nothing."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")


def decoder_inputs(model: keras.Model, poster, genres, tokens, poster_text=None) -> dict:
    """The input dict `model` takes; genres and poster text are required only by a model trained with them."""
    inputs = {TOKENS: np.asarray(tokens, np.int32), POSTER_INPUT: np.asarray(poster, np.float32)}
    if GENRES in model.input:
        if genres is None:
            raise ValueError("this title decoder was trained with genres (generator.use_genres): pass a genre vector")
        inputs[GENRES] = np.asarray(genres, np.float32)
    if POSTER_TEXT in model.input:
        if poster_text is None:
            raise ValueError("this title decoder reads poster text (generator.poster_text.enabled): pass its subword ids")
        inputs[POSTER_TEXT] = np.asarray(poster_text, np.int32)
    return inputs


def token_log_probs(model: keras.Model, poster, genres, tokens, targets, pad_id: int | None = None,
                    batch_size: int = 512, poster_text=None) -> np.ndarray:
    """log p(target_t | poster, genres, tokens_<=t) per position, [B, T] float32, 0 where the target is PAD.

    `pad_id` defaults to the tokenizer's layout (vocabulary size - 3).
    """
    targets = np.asarray(targets, np.int32)
    pad_id = int(model.output_shape[-1]) - 3 if pad_id is None else pad_id
    inputs = decoder_inputs(model, poster, genres, tokens, poster_text)
    out = np.zeros(targets.shape, np.float32)
    for start in range(0, len(targets), batch_size):
        rows = slice(start, start + batch_size)
        # Keras's compiled predict step: called eagerly, the GRUs would step through each title in Python.
        logits = model.predict_on_batch({k: v[rows] for k, v in inputs.items()})
        log_probs = keras.ops.convert_to_numpy(keras.ops.log_softmax(logits, axis=-1))
        out[rows] = np.take_along_axis(log_probs, targets[rows][..., None], axis=-1)[..., 0]
    return np.where(targets == pad_id, 0.0, out).astype(np.float32)
