"""Multi-label genre classifiers on cached embeddings: title, poster, and fusion (Method 2).

One functional architecture serves all three: each input is standardised (a Normalization
layer adapted on the training embeddings), several inputs are joined with Concatenate (early
fusion), then dense layers and one sigmoid output per genre.

With `modality_logits`, a model of several inputs gives each its own dense layers and genre logits,
and a joint branch on the Concatenate of their hidden states adds the logits of their interactions.
An input whose vector is all zeros (a movie without a poster) is absent: its branch and the joint one
add nothing. So the fusion model also learns from the title-only movies, and given a zero poster vector
it answers from the title alone.

A model may also read the raw title (`title_text`): word 1-2-grams and character 2-5-grams with
TF-IDF weights (Keras TextVectorization, adapted on the training titles, so it serves in-graph),
each through a linear layer whose genre logits add to those of the embedding branch. It catches
the lexical cues (franchise words, "Christmas", sequel digits) that a sentence embedding blurs.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from movietitles.features.extract import POSTER_TEXT


@keras.saving.register_keras_serializable(package="movietitles")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy whose positive term is weighted per genre (for rare genres)."""

    def __init__(self, pos_weight, name="weighted_binary_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pos_weight = [float(w) for w in np.asarray(pos_weight).ravel()]

    def call(self, y_true, y_pred):
        eps = keras.config.epsilon()
        y_pred = ops.clip(y_pred, eps, 1.0 - eps)
        y_true = ops.cast(y_true, y_pred.dtype)
        weight = ops.convert_to_tensor(self.pos_weight, dtype=y_pred.dtype)
        loss = -(weight * y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred))
        return ops.mean(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "pos_weight": self.pos_weight}


def positive_weights(labels: np.ndarray, max_weight: float) -> np.ndarray:
    """neg/pos ratio per genre, capped: a genre seen in 5% of movies weighs its positives ~19x."""
    positives = labels.sum(axis=0)
    negatives = len(labels) - positives
    return np.clip(negatives / np.maximum(positives, 1.0), 1.0, max_weight).astype(np.float32)


TITLE_TEXT = "title_text"  # the raw title; the poster's words come in as the feature kind POSTER_TEXT
# (name, TextVectorization split, n-gram sizes)
TEXT_VIEWS = (("word", "whitespace", (1, 2)), ("char", "character", (2, 3, 4, 5)))


@keras.saving.register_keras_serializable(package="movietitles")
class SublinearTfIdf(keras.layers.Layer):
    """Sparse n-gram counts -> scikit-learn's TfidfVectorizer(sublinear_tf=True) rows, L2-normalised.

    Keras' own TextVectorization(output_mode="tf_idf", sparse=True) fails at call time in Keras 3.15
    (a GatherNd rank error), so the counts come from TextVectorization and the weighting is here.
    """

    def __init__(self, vocabulary_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.idf = self.add_weight(shape=(self.vocabulary_size,), initializer="ones", trainable=False, name="idf")

    def adapt(self, counts: list) -> None:
        """`counts`: the training titles' sparse count batches. Smooth IDF: ln((1 + n) / (1 + df)) + 1."""
        df, n = np.zeros(self.vocabulary_size), 0
        for batch in counts:
            np.add.at(df, batch.indices[:, 1].numpy(), 1.0)
            n += int(batch.dense_shape[0])
        idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        idf[0] = 0.0  # n-grams outside the vocabulary (TextVectorization's index 0) are ignored, as in scikit-learn
        self.idf.assign(idf)

    def call(self, counts):
        weighted = (1.0 + tf.math.log(tf.cast(counts.values, tf.float32))) * tf.gather(self.idf, counts.indices[:, 1])
        rows = counts.indices[:, 0]
        norm = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(weighted), rows, tf.cast(counts.dense_shape[0], tf.int32)))
        return tf.SparseTensor(counts.indices, weighted / tf.gather(tf.maximum(norm, 1e-12), rows), counts.dense_shape)

    def compute_output_spec(self, counts):
        return keras.KerasTensor(counts.shape, dtype="float32", sparse=True)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size}


def text_logits(text_input, titles: np.ndarray, n_genres: int, max_tokens: int, prefix: str = "",
                use_bias: bool = True):
    """Genre logits from the TF-IDF n-grams of raw text (the title, or the poster's words): one sparse linear
    layer per view, its layers named `<prefix><view>_...`.

    Each vocabulary keeps the `max_tokens` most frequent n-grams of the training texts. Without a bias, an empty
    text adds nothing.
    """
    logits = []
    for view, split, ngrams in TEXT_VIEWS:
        count = keras.layers.TextVectorization(
            max_tokens=max_tokens, standardize="lower_and_strip_punctuation", split=split, ngrams=ngrams,
            output_mode="count", sparse=True, name=f"{prefix}{view}_counts")
        count.adapt(titles, batch_size=4096)
        tfidf = SublinearTfIdf(count.vocabulary_size(), name=f"{prefix}{view}_tfidf")
        tfidf.adapt([count(titles[i:i + 4096]) for i in range(0, len(titles), 4096)])
        logits.append(keras.layers.Dense(n_genres, use_bias=use_bias, name=f"{prefix}{view}_logits")(
            tfidf(count(text_input))))
    return logits


@keras.saving.register_keras_serializable(package="movietitles")
class Present(keras.layers.Layer):
    """1.0 for rows whose feature vector has a non-zero value, 0.0 for all-zero rows (a missing input)."""

    def call(self, features):
        return ops.cast(ops.any(ops.not_equal(features, 0.0), axis=-1, keepdims=True), features.dtype)


def _dense_stack(x, hidden_units, dropout: float, prefix: str = ""):
    x = keras.layers.Dropout(dropout / 2, name=f"{prefix}input_dropout")(x)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"{prefix}hidden_{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"{prefix}dropout_{i}")(x)
    return x


def build_genre_model(
    inputs: dict[str, np.ndarray],
    genres: list[str],
    hidden_units=(512,),
    dropout: float = 0.3,
    name: str = "genre_classifier",
    text_max_tokens: int = 100_000,
    modality_logits: bool = False,
    joint_units: int = 256,
) -> keras.Model:
    """`inputs` maps input name → training embeddings (used to adapt the standardisation), or, for
    `title_text` and `poster_text`, the training titles or poster texts (used to adapt the n-gram vocabularies
    and IDF weights; the poster text's layers have no bias, so a poster without text adds nothing).

    `modality_logits` (several embedding inputs): per-input branches whose genre logits add, plus a joint
    branch of `joint_units` on their Concatenate; all-zero rows of an input (absent) are left out of the
    standardisation's statistics and silence its branch and the joint one."""
    model_inputs, branches, logits = {}, {}, []
    for input_name, train_features in inputs.items():
        if input_name in (TITLE_TEXT, POSTER_TEXT):
            text_input = keras.Input(shape=(), dtype="string", name=input_name)
            model_inputs[input_name] = text_input
            poster = input_name == POSTER_TEXT
            logits += text_logits(text_input, np.asarray(train_features, dtype=str), len(genres), text_max_tokens,
                                  prefix="poster_" if poster else "", use_bias=not poster)
            continue
        layer_input = keras.Input(shape=(train_features.shape[1],), name=input_name)
        normalise = keras.layers.Normalization(name=f"{input_name}_standardise")
        normalise.adapt(train_features[np.any(train_features != 0, axis=1)] if modality_logits else train_features)
        model_inputs[input_name] = layer_input
        branches[input_name] = normalise(layer_input)
    if modality_logits and len(branches) > 1:
        logits += _modality_logits(branches, model_inputs, len(genres), hidden_units, dropout, joint_units)
    else:
        x = keras.layers.Concatenate(name="fusion")(list(branches.values())) if len(branches) > 1 \
            else next(iter(branches.values()))
        x = _dense_stack(x, hidden_units, dropout)
        if not logits:
            outputs = keras.layers.Dense(len(genres), activation="sigmoid", name="genres")(x)
            return keras.Model(model_inputs, outputs, name=name)
        logits = [keras.layers.Dense(len(genres), name="embedding_logits")(x), *logits]
    outputs = keras.layers.Activation("sigmoid", name="genres")(keras.layers.Add(name="logits")(logits))
    return keras.Model(model_inputs, outputs, name=name)


def _modality_logits(branches: dict, model_inputs: dict, n_genres: int, hidden_units, dropout: float,
                     joint_units: int) -> list:
    """Each input's genre logits from its own dense layers, and the joint branch's on their Concatenate,
    each gated to zero for rows where one of its inputs is all zeros (absent)."""
    logits, hidden, present = [], [], []
    for input_name, x in branches.items():
        x = _dense_stack(x, hidden_units, dropout, prefix=f"{input_name}_")
        mask = Present(name=f"{input_name}_present")(model_inputs[input_name])
        logits.append(keras.layers.Multiply(name=f"{input_name}_gated_logits")(
            [keras.layers.Dense(n_genres, name=f"{input_name}_logits")(x), mask]))
        hidden.append(x)
        present.append(mask)
    joint = keras.layers.Concatenate(name="fusion")(hidden)
    joint = keras.layers.Dense(joint_units, activation="relu", name="joint_hidden")(joint)
    joint = keras.layers.Dropout(dropout, name="joint_dropout")(joint)
    joint = keras.layers.Dense(n_genres, name="joint_logits")(joint)
    logits.append(keras.layers.Multiply(name="joint_gated_logits")([joint, *present]))
    return logits
