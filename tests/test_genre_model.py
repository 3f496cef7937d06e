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


def test_modality_logits_add_and_a_zero_poster_leaves_the_title_branches_alone(tmp_path):
    rng = np.random.default_rng(0)
    titles = rng.normal(size=(len(TITLES), 8)).astype("float32")
    posters = rng.uniform(0.1, 1.0, size=(len(TITLES), 6)).astype("float32")
    posters[::3] = 0.0  # title-only movies
    model = build_genre_model({"title": titles, "poster": posters, TITLE_TEXT: TITLES}, ["a", "b", "c"],
                              hidden_units=[4], modality_logits=True, joint_units=5, text_max_tokens=1000)
    # The poster's standardisation is adapted on the movies that have one.
    np.testing.assert_allclose(model.get_layer("poster_standardise").mean.numpy().ravel(),
                               posters[posters.any(axis=1)].mean(axis=0), rtol=1e-5)
    inputs = {"title": tf.constant(titles), "poster": tf.constant(posters), TITLE_TEXT: tf.constant(TITLES)}
    parts = ["title_gated_logits", "poster_gated_logits", "joint_gated_logits", "word_logits", "char_logits"]
    branches = keras.Model(model.inputs, [model.get_layer(name).output for name in parts])(inputs)
    logits = sum(keras.ops.convert_to_numpy(b) for b in branches)
    np.testing.assert_allclose(model(inputs).numpy(), 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
    no_poster = ~posters.any(axis=1)
    for name in ("poster_gated_logits", "joint_gated_logits"):
        silent = keras.ops.convert_to_numpy(branches[parts.index(name)])[no_poster]
        assert not silent.any()
    assert np.abs(keras.ops.convert_to_numpy(branches[1])[~no_poster]).max() > 0

    # Rows without a poster teach the poster and joint branches nothing.
    only_titles = {k: tf.gather(v, np.flatnonzero(no_poster)) for k, v in inputs.items()}
    with tf.GradientTape() as tape:
        loss = keras.losses.binary_crossentropy(tf.ones((int(no_poster.sum()), 3)), model(only_titles, training=True))
    gradients = dict(zip((v.path for v in model.trainable_variables),
                         tape.gradient(loss, model.trainable_variables)))
    for path in ("poster_hidden_0/kernel", "poster_logits/kernel", "joint_hidden/kernel", "joint_logits/kernel"):
        assert not np.any(keras.ops.convert_to_numpy(gradients[path])), path
    assert np.any(keras.ops.convert_to_numpy(gradients["title_logits/kernel"]))
    model.save(tmp_path / "fusion.keras")
    restored = keras.saving.load_model(tmp_path / "fusion.keras")
    np.testing.assert_allclose(restored(inputs).numpy(), model(inputs).numpy(), atol=1e-6)


def test_the_poster_text_channel_learns_genres_from_the_words_and_adds_nothing_for_no_text():
    """Where only the poster's words carry the genres (the picture is noise), a model reading them learns them."""
    from sklearn.metrics import average_precision_score

    from movietitles.features.extract import POSTER_TEXT

    rng = np.random.default_rng(0)
    genres = ["Horror", "Comedy", "Western", "Romance"]
    labels = (rng.random((300, len(genres))) < 0.3).astype(np.float32)
    words = np.array([" ".join(g.upper() for g, on in zip(genres, row) if on) for row in labels])
    pictures = rng.normal(size=(300, 8)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = build_genre_model({"poster": pictures[:200], POSTER_TEXT: words[:200]}, genres, hidden_units=(8,),
                              dropout=0.0)
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    training = tf.data.Dataset.from_tensor_slices(({"poster": pictures[:200], POSTER_TEXT: words[:200]}, labels[:200]))
    model.fit(training.batch(32), epochs=20, verbose=0, shuffle=False)  # the dataset is in a fixed order
    held_out = model({"poster": tf.constant(pictures[200:]), POSTER_TEXT: tf.constant(words[200:])}).numpy()
    assert average_precision_score(labels[200:], held_out, average="micro") > 0.95
    assert not model.get_layer("poster_word_logits").use_bias  # so an empty text adds nothing
    word_logits = keras.Model(model.inputs, model.get_layer("poster_word_logits").output)
    empty = word_logits({"poster": tf.constant(pictures[:2]), POSTER_TEXT: tf.constant(["", "HORROR"])}).numpy()
    assert np.all(empty[0] == 0) and np.any(empty[1] != 0)
