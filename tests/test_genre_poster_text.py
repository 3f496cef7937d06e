"""Genre models that read the poster's printed words (`genre.models.<task>.poster_text`): trained by `train --task
genres` beside the same models without them, compared in the evaluation, exported with the words as a second
input (checked in a fresh process, warm-up requests replayed), and read by `predict` with real OCR."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from movietitles import predict, train
from movietitles.artefacts import feature_store, run_directory, without_poster_text
from movietitles.config import with_overrides, write_config
from movietitles.evaluate import WITHOUT_WORDS_ROWS, WORDS_MODEL_ROWS, evaluate_genres, model_scores
from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE
from movietitles.features.pipeline import load_split
from movietitles.models.genre_runs import load_genre_run
from movietitles.serving.genre import export_genre_models, load_serving_model

READING = ("poster", "fusion")

# In a fresh interpreter: each export's serving_default on the test movies' raw inputs, and its warm-up requests.
FRESH_PROCESS = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  the fusion model's title preprocessor
from tensorflow_serving.apis import prediction_log_pb2

work = Path(sys.argv[1])
exports, movies = json.loads((work / "exports.json").read_text()), json.loads((work / "movies.json").read_text())
posters = [Path(p).read_bytes() for p in movies["posters"]]
answers = {}
for task, version_dir in exports.items():
    model = tf.saved_model.load(version_dir)
    serve = model.signatures["serving_default"]
    names = sorted(serve.structured_input_signature[1])
    raw = {"title": tf.constant(movies["titles"]), "poster": tf.constant(posters),
           "poster_text": tf.constant(movies["words"])}
    answers[task] = {"inputs": names, "reader": json.loads(model.poster_text_reader.numpy()),
                     "probabilities": serve(**{n: raw[n] for n in names})["probabilities"].numpy().tolist(),
                     "warmup": []}
    for record in tf.data.TFRecordDataset(str(Path(version_dir) / "assets.extra" / "tf_serving_warmup_requests")):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        out = model.signatures[request.model_spec.signature_name](**inputs)
        answers[task]["warmup"].append([request.model_spec.signature_name, sorted(inputs),
                                        int(out["probabilities"].shape[0])])
(work / "answers.json").write_text(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def words_config(tiny_config, tmp_path_factory):
    """The tiny config with both poster-reading models reading the words, over a poster-text cache of its own in
    which every poster prints its genres."""
    from tiny_dataset import write_genre_words_cache

    config = with_overrides(tiny_config, {
        **{f"genre.models.{task}.poster_text": True for task in READING},
        "encoders.ocr.det_limit_side_len": 323,
        "genre.runs_dir": str(tmp_path_factory.mktemp("words") / "runs")})
    write_genre_words_cache(config)
    return config


@pytest.fixture(scope="module")
def words_runs(words_config, tmp_path_factory):
    """`train --task genres` with the config: the models reading words, and the same models without them."""
    config_file = write_config(words_config, tmp_path_factory.mktemp("words-config"))
    assert train.main(["--task", "genres", "--config", str(config_file)]) == 0
    return words_config


def test_train_makes_each_reading_model_and_the_same_without_words(words_runs):
    for task in READING:
        reading, without = run_directory(words_runs, task), run_directory(without_poster_text(words_runs, task), task)
        assert reading != without
        assert "poster_text" in load_genre_run(reading)[2]["inputs"]
        assert "poster_text" not in load_genre_run(without)[2]["inputs"]
    assert "poster_text" not in load_genre_run(run_directory(words_runs, "title"))[2]["inputs"]


def test_the_evaluation_shows_what_the_words_add_to_each_model(words_runs):
    metrics = json.loads((evaluate_genres(words_runs) / "metrics.json").read_text())
    models = metrics["models"]
    for task in READING:
        row, against = WORDS_MODEL_ROWS[task], WITHOUT_WORDS_ROWS[task]
        assert row in models and against in models
        difference = models[row]["macro_f1"] - models[against]["macro_f1"]
        [line] = [line for line in metrics["answer"] if f"({row} against {against})" in line]
        assert line.startswith("The poster's words add, read by the model itself") and f"{difference:+.3f}" in line
    # Whether they help is for real data to say (the tiny split's 4 validation movies tune no thresholds);
    # tests/test_genre_model.py shows the channel learning genres from words.
    assert "poster_text" in metrics["notes"]["data each model saw"][WORDS_MODEL_ROWS["poster"]]


def test_a_poster_without_text_adds_nothing(words_runs):
    model = load_genre_run(run_directory(words_runs, "poster"))[0]
    views = keras.Model(model.inputs, [model.get_layer(f"poster_{view}_logits").output for view in ("word", "char")])
    pictures = np.random.default_rng(0).normal(size=(2, model.get_layer("poster_standardise").input.shape[-1]))
    for logits in views({"poster": tf.constant(pictures, tf.float32), "poster_text": tf.constant(["", "DRAMA"])}):
        assert np.all(logits.numpy()[0] == 0) and np.any(logits.numpy()[1] != 0)


@pytest.fixture(scope="module")
def words_exports(words_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("words-exports")
    return out, export_genre_models(words_runs, READING, out)


def test_the_exports_take_the_words_and_answer_as_the_evaluation_in_a_fresh_process(words_runs, words_exports,
                                                                                    tmp_path):
    test = load_split(feature_store(words_runs), "test", (TITLE, POSTER, POSTER_TEXT))
    (tmp_path / "exports.json").write_text(json.dumps({task: str(d) for task, d in words_exports[1].items()}))
    (tmp_path / "movies.json").write_text(json.dumps({
        "titles": test.movies["title"].tolist(), "posters": test.movies["poster"].tolist(),
        "words": test.inputs[POSTER_TEXT].tolist()}))
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path)], check=False, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads((tmp_path / "answers.json").read_text())
    assert any(words for words in test.inputs[POSTER_TEXT])
    for task in READING:
        answer = answers[task]
        assert answer["inputs"] == sorted(["poster", "poster_text", *(["title"] if task == "fusion" else [])])
        assert answer["reader"] == words_runs["encoders"]["ocr"]
        model = load_genre_run(run_directory(words_runs, task))[0]
        np.testing.assert_allclose(answer["probabilities"], model_scores(model, test), atol=1e-4, rtol=0)
        warmup = answer["warmup"]
        assert {signature for signature, _, _ in warmup} == {"serving_default", "embeddings"}
        assert all("poster_text" in inputs and rows > 0 for _, inputs, rows in warmup)


def test_predict_reads_the_posters_words_with_the_exports_ocr_settings(words_exports, tmp_path, capsys):
    poster = tmp_path / "printed.png"
    image = Image.new("RGB", (240, 360), (250, 250, 250))
    ImageDraw.Draw(image).text((20, 140), "DRAMA", fill=(0, 0, 0), font=ImageFont.load_default(size=56))
    image.save(poster)

    result = predict.predict_genres(words_exports[0], poster=poster)
    assert result["model"] == "genre_poster" and "DRAMA" in result["poster_text"].upper()
    served = load_serving_model(words_exports[1]["poster"]).signatures["serving_default"](
        poster=tf.constant([poster.read_bytes()]), poster_text=tf.constant([result["poster_text"]]))
    np.testing.assert_array_equal(result["probabilities"], served["probabilities"].numpy()[0])
    assert predict.main(["--poster", str(poster), "--model-dir", str(words_exports[0])]) == 0
    assert "(the poster's words, read by OCR: " in capsys.readouterr().out


def test_the_evaluation_refuses_two_ways_of_reading_the_words_at_once(words_config):
    with pytest.raises(ValueError, match="set one of the two"):
        evaluate_genres(with_overrides(words_config, {"evaluation.poster_text": True}))
