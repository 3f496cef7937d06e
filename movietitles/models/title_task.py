"""The title genre model as one Keras model, split the way keras-hub splits a task:
tokenizer (raw titles -> MiniLM word pieces) -> backbone (keras-hub's BertBackbone) -> task (pooling and the
genre head of `movietitles.models.genre`, with its n-gram channel).

With `genre.models.title.finetune_layers: k`, the top k transformer layers train together with the head. Two
Keras models share those layers and the head:
- `model` reads raw titles (`title_text`): it is what is saved, evaluated and exported;
- `train_model` reads the frozen layers' token states, computed once (`title_states`, `title_mask`), so an epoch
  costs only the top k layers: the fast path for the frozen part.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from movietitles.encoders.bert_export import normalize_bert_text, use_exact_gelu
from movietitles.encoders.text import pool_tokens
from movietitles.models.genre import TITLE_TEXT, build_genre_model

STATES, MASK = "title_states", "title_mask"
SEQUENCE_LENGTH = 32  # word pieces with [CLS] and [SEP]; longer titles (under 0.01% of MovieLens) are cut


class MiniLMTokenizer(keras_hub.models.BertTokenizer):
    """keras-hub's BertTokenizer after BERT's reference normaliser, so that it gives the word pieces of the TF-Hub
    preprocessor (`encoders.bert_export`): keras-hub's own lowercasing folds NFKC ("½" -> "1/2") where BERT does not."""

    def __init__(self, vocabulary=None, **kwargs):
        kwargs.update(lowercase=False, strip_accents=False)
        super().__init__(vocabulary=vocabulary, **kwargs)

    def tokenize(self, inputs):
        return super().tokenize(normalize_bert_text(tf.convert_to_tensor(inputs)))


@keras.saving.register_keras_serializable(package="movietitles")
class TitleTokenIds(keras.layers.Layer):
    """Raw titles [B] -> (token ids, padding mask), [B, L] with L the batch's longest title (padding is masked,
    so the result does not depend on the other titles of the batch)."""

    def __init__(self, vocabulary: list[str], sequence_length: int = SEQUENCE_LENGTH, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.sequence_length = int(sequence_length)
        self.tokenizer = MiniLMTokenizer(vocabulary=self.vocabulary)
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=self.sequence_length, start_value=self.tokenizer.cls_token_id,
            end_value=self.tokenizer.sep_token_id, pad_value=self.tokenizer.pad_token_id, return_padding_mask=True)

    def build(self, input_shape=None):
        self.built = True  # the tokenizer and packer hold no weights

    def call(self, titles):
        ids, mask = self.packer(self.tokenizer(titles))
        length = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)), 1)
        return ids[:, :length], tf.cast(mask[:, :length], tf.int32)

    def compute_output_spec(self, titles):
        return (keras.KerasTensor((titles.shape[0], None), dtype="int32"),
                keras.KerasTensor((titles.shape[0], None), dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "sequence_length": self.sequence_length}


@dataclass
class TitleTask:
    model: keras.Model        # raw titles -> genre probabilities: saved, evaluated, exported
    train_model: keras.Model  # frozen token states (+ raw titles for the n-gram channel) -> the same
    head: keras.Model         # pooled embedding (+ raw titles) -> genres: build_genre_model's title classifier
    frozen_layers: int

    def start_head_from(self, classifier: keras.Model) -> None:
        """The head takes the weights of a title classifier trained on the untouched encoder's embeddings (the
        same architecture, adapted on the same titles): linear probing, then fine-tuning (Kumar et al., ICLR 2022)."""
        mine, theirs = self.head.weights, classifier.weights
        if [tuple(w.shape) for w in mine] != [tuple(w.shape) for w in theirs]:
            raise ValueError(f"the title classifier {classifier.name!r} does not have the head's architecture")
        for view in ("word_counts", "char_counts"):
            if view in {layer.name for layer in self.head.layers} and (
                    self.head.get_layer(view).get_vocabulary() != classifier.get_layer(view).get_vocabulary()):
                raise ValueError(f"the title classifier {classifier.name!r} has another {view} vocabulary")
        self.head.set_weights(classifier.get_weights())
        floor_variance(self.head.get_layer("title_standardise"))


def build_title_task(backbone, vocabulary: list[str], train_titles: np.ndarray, train_embeddings: np.ndarray,
                     genres: list[str], finetune_layers: int, pooling: str = "mean", text_channel: bool = True,
                     name: str = "title_genres", **head) -> TitleTask:
    """`train_embeddings`: the training titles' pooled embeddings from the untouched backbone (the cached title
    features), which adapt the head's standardisation. `head`: build_genre_model's architecture options."""
    n_layers = len(backbone.transformer_layers)
    if not 1 <= finetune_layers <= n_layers:
        raise ValueError(f"genre.models.title.finetune_layers must be 0 (off) or 1..{n_layers}, got {finetune_layers!r}")
    frozen = n_layers - finetune_layers
    head_inputs = {"title": train_embeddings, **({TITLE_TEXT: train_titles} if text_channel else {})}
    genre_head = build_genre_model(head_inputs, genres, name=f"{name}_head", **head)
    floor_variance(genre_head.get_layer("title_standardise"))

    def classify(pooled, titles):
        return genre_head({"title": pooled, **({TITLE_TEXT: titles} if text_channel else {})})

    titles = keras.Input(shape=(), dtype="string", name=TITLE_TEXT)
    ids, padding_mask = TitleTokenIds(vocabulary, name="tokenizer")(titles)
    sequence = backbone({"token_ids": ids, "segment_ids": keras.ops.zeros_like(ids),
                         "padding_mask": padding_mask})["sequence_output"]
    model = keras.Model({TITLE_TEXT: titles}, classify(pool_tokens(sequence, padding_mask, pooling), titles), name=name)

    states = keras.Input(shape=(None, backbone.hidden_dim), name=STATES)
    mask = keras.Input(shape=(None,), dtype="int32", name=MASK)
    train_titles_input = keras.Input(shape=(), dtype="string", name=TITLE_TEXT)
    x = states
    for layer in backbone.transformer_layers[frozen:]:
        x = layer(x, padding_mask=mask)
    train_inputs = {STATES: states, MASK: mask, **({TITLE_TEXT: train_titles_input} if text_channel else {})}
    train_model = keras.Model(train_inputs, classify(pool_tokens(x, mask, pooling), train_titles_input),
                              name=f"{name}_from_states")
    return TitleTask(model, train_model, genre_head, frozen)


def floor_variance(standardise: keras.layers.Normalization, fraction: float = 0.01) -> None:
    """Raise each dimension's variance to at least `fraction` of the median one's. A few MiniLM dimensions are
    constant over titles (variance 0): once the top layers train, their changes would be multiplied by
    1/sqrt(1e-7) and saturate every genre within a step."""
    variance = keras.ops.convert_to_numpy(standardise.adapt_variance)
    standardise.adapt_variance.assign(np.maximum(variance, fraction * np.median(variance)))
    standardise.finalize_state()


def restore_exact_gelu(model: keras.Model) -> keras.Model:
    """BERT's exact GELU on every BertBackbone inside `model`: a keras-hub backbone does not save it."""
    for layer in model.layers:
        if isinstance(layer, keras_hub.models.BertBackbone):
            use_exact_gelu(layer)
    return model
