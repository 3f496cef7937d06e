"""Multi-label genre classifiers on cached embeddings: title, poster, and fusion (Method 2).

One functional architecture serves all three: each input is standardised (a Normalization
layer adapted on the training embeddings), several inputs are joined with Concatenate (early
fusion), then dense layers and one sigmoid output per genre.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


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


def build_genre_model(
    inputs: dict[str, np.ndarray],
    genres: list[str],
    hidden_units=(512,),
    dropout: float = 0.3,
    name: str = "genre_classifier",
) -> keras.Model:
    """`inputs` maps input name → training embeddings (used to adapt the standardisation)."""
    model_inputs, branches = {}, []
    for input_name, train_features in inputs.items():
        layer_input = keras.Input(shape=(train_features.shape[1],), name=input_name)
        normalise = keras.layers.Normalization(name=f"{input_name}_standardise")
        normalise.adapt(train_features)
        model_inputs[input_name] = layer_input
        branches.append(normalise(layer_input))
    x = keras.layers.Concatenate(name="fusion")(branches) if len(branches) > 1 else branches[0]
    x = keras.layers.Dropout(dropout / 2, name="input_dropout")(x)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(len(genres), activation="sigmoid", name="genres")(x)
    return keras.Model(model_inputs, outputs, name=name)
