"""The title n-gram channel: scikit-learn's TF-IDF inside the Keras model, trainable and saved."""

import numpy as np
import tensorflow as tf
from sklearn.feature_extraction.text import TfidfVectorizer

import keras
from movietitles.models.genre import TITLE_TEXT, build_genre_model

TITLES = np.array(["The Matrix", "Toy Story 2", "A Christmas Carol", "Zombieland", "The Matrix Reloaded",
                   "Toy Story"] * 5 + ["Brand New Words"])


def test_tfidf_channel_matches_scikit_learn_and_survives_saving(tmp_path):
    embeddings = np.random.default_rng(0).random((len(TITLES), 8)).astype("float32")
    model = build_genre_model({"title": embeddings, TITLE_TEXT: TITLES}, ["a", "b", "c"], hidden_units=[4],
                              text_max_tokens=1000)
    counts, tfidf = model.get_layer("word_counts"), model.get_layer("word_tfidf")
    ours = tf.sparse.to_dense(tfidf(counts(tf.constant(TITLES)))).numpy()
    vocabulary = counts.get_vocabulary()
    reference = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), vocabulary=vocabulary[1:],
                                token_pattern=r"\S+").fit(TITLES).transform(TITLES).toarray()
    np.testing.assert_allclose(ours[:, 1:], reference, atol=1e-6)
    assert not ours[:, 0].any()  # out-of-vocabulary n-grams weigh nothing

    inputs = {"title": tf.constant(embeddings[:4]), TITLE_TEXT: tf.constant(TITLES[:4])}
    with tf.GradientTape() as tape:
        loss = keras.losses.binary_crossentropy(tf.ones((4, 3)), model(inputs, training=True))
    gradients = dict(zip((v.path for v in model.trainable_variables),
                         tape.gradient(loss, model.trainable_variables)))
    assert isinstance(gradients["char_logits/kernel"], tf.IndexedSlices)  # sparse updates of the n-gram weights
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(restored(inputs).numpy(), model(inputs).numpy(), atol=1e-6)
