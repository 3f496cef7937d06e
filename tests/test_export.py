"""Serving exports: TF Serving SavedModels that take raw titles and poster bytes, checked in a fresh process."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from movietitles import export, predict
from movietitles.config import write_config
from movietitles.data.dataset import load_prepared
from movietitles.serving.genre import (
    OUTPUTS,
    WARMUP_FILE,
    example_poster,
    export_genre_models,
    load_serving_model,
    serving_name,
    versions,
)
from movietitles.models.genre_runs import GENRE_TASKS, load_genre_run

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: which ops need TF Text, then both signatures of every export on the sample inputs.
FRESH_PROCESS = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

work = Path(sys.argv[1])
exports = json.loads((work / "exports.json").read_text())

def op_types(version_dir):
    saved = saved_model_pb2.SavedModel.FromString((Path(version_dir) / "saved_model.pb").read_bytes())
    ops = set()
    for graph in saved.meta_graphs:
        functions = {f.signature.name for f in graph.graph_def.library.function}
        ops |= {n.op for n in graph.graph_def.node}
        ops |= {n.op for f in graph.graph_def.library.function for n in f.node_def}
    return sorted(ops - functions)

ops = {task: op_types(d) for task, d in exports.items()}
report = {task: {"ops": o, "not_in_core": [op for op in o if op_def_registry.get(op) is None]}
          for task, o in ops.items()}
import tensorflow_text  # noqa: F401
for task, o in ops.items():
    report[task]["unknown"] = [op for op in o if op_def_registry.get(op) is None]
(work / "ops.json").write_text(json.dumps(report))

raw = {"title": tf.constant(json.loads((work / "titles.json").read_text())),
       "poster": tf.constant([p.read_bytes() for p in sorted((work / "posters").iterdir())])}
for task, version_dir in exports.items():
    model = tf.saved_model.load(version_dir)
    serve, embeddings = model.signatures["serving_default"], model.signatures["embeddings"]
    names = sorted(serve.structured_input_signature[1])
    out = serve(**{name: raw[name] for name in names})
    emb_inputs = {f"{n}_embedding": tf.constant(np.load(work / f"{n}_embedding.npy")) for n in names}
    if "title_text" in embeddings.structured_input_signature[1]:  # the model's n-gram channel reads raw titles
        emb_inputs["title_text"] = raw["title"]
    emb = embeddings(**emb_inputs)
    np.save(work / f"{task}_probabilities.npy", out["probabilities"].numpy())
    np.save(work / f"{task}_predicted.npy", out["predicted"].numpy())
    np.save(work / f"{task}_embeddings_probabilities.npy", emb["probabilities"].numpy())
    (work / f"{task}_genres.json").write_text(json.dumps([g.decode() for g in out["genres"].numpy()]))

# The fusion model sent a zero poster embedding (no poster).
fusion = tf.saved_model.load(exports["fusion"]).signatures["embeddings"]
titles_only = fusion(title_embedding=tf.constant(np.load(work / "title_embedding.npy")), title_text=raw["title"],
                     poster_embedding=tf.zeros_like(np.load(work / "poster_embedding.npy")))
np.save(work / "fusion_without_poster.npy", titles_only["probabilities"].numpy())

# A request with a huge poster (a 48 KB PNG of 20,000 x 20,000 pixels) among good ones, then the next request.
serve = tf.saved_model.load(exports["poster"]).signatures["serving_default"]
good = raw["poster"][:2]
try:
    serve(poster=tf.stack([good[0], tf.constant((work / "huge.png").read_bytes()), good[1]]))
    refused = None
except tf.errors.InvalidArgumentError as err:
    refused = err.message
(work / "bad_request.json").write_text(json.dumps({
    "refused": refused, "next": serve(poster=good)["probabilities"].numpy().tolist()}))
"""


@pytest.fixture(scope="module")
def encoders(tiny_config):
    from movietitles.encoders.image import build_image_encoder
    from movietitles.encoders.text import build_text_encoder

    return build_text_encoder(tiny_config["encoders"]["text"]), build_image_encoder(tiny_config["encoders"]["image"])


@pytest.fixture(scope="module")
def exports(tiny_config, trained, encoders, tmp_path_factory):
    """The three models exported once: (model base folder, task -> version folder)."""
    out = tmp_path_factory.mktemp("saved_models")
    return out, export_genre_models(tiny_config, tuple(GENRE_TASKS), out, *encoders)


@pytest.fixture(scope="module")
def samples(tiny_config):
    """Tiny-dataset titles (one accented) and poster bytes, odd formats included: grayscale and CMYK JPEG, PNGs."""
    from tiny_dataset import TINY_CASES

    movies = load_prepared(tiny_config["data"]["prepared_dir"]).movies
    normal = movies[movies["has_poster"] & ~movies["id"].isin(TINY_CASES.values())].head(6)
    titles, posters = normal["title"].tolist(), [Path(p).read_bytes() for p in normal["poster"]]
    raw_posters = Path(tiny_config["data"]["root"]) / "posters"
    for case in ("grayscale", "cmyk", "palette_png", "rgba"):
        titles.append(movies.loc[movies["id"] == TINY_CASES[case], "title"].item())
        posters.append((raw_posters / f"{TINY_CASES[case]}.jpg").read_bytes())
    titles.append("Ânge d'été")
    posters.append(example_poster())
    return titles, posters


@pytest.fixture(scope="module")
def reference(trained, encoders, samples):
    """The in-memory path: TextEncoder.embed / ImageEncoder preprocess + embed, then the Keras model."""
    text_encoder, image_encoder = encoders
    titles, posters = samples
    embeddings = {"title": text_encoder.embed(titles),
                  "poster": image_encoder.embed(tf.stack([image_encoder.preprocess(tf.constant(b)) for b in posters]))}
    scores = {}
    for task, inputs in GENRE_TASKS.items():
        model, thresholds, _ = load_genre_run(trained[task])
        features = {**embeddings, "title_text": tf.constant(titles)}
        scores[task] = (model.predict({t.name: features[t.name] for t in model.inputs}, verbose=0), thresholds)
    return embeddings, scores


@pytest.fixture(scope="module")
def fresh(exports, samples, reference, tmp_path_factory):
    """Outputs of every export loaded in a new Python process (files in the returned folder)."""
    work = tmp_path_factory.mktemp("fresh")
    titles, posters = samples
    (work / "posters").mkdir()
    for i, data in enumerate(posters):
        (work / "posters" / f"{i:03d}.img").write_bytes(data)
    (work / "titles.json").write_text(json.dumps(titles))
    for name, values in reference[0].items():
        np.save(work / f"{name}_embedding.npy", values)
    (work / "exports.json").write_text(json.dumps({task: str(d) for task, d in exports[1].items()}))
    from test_image_limits import huge_png

    (work / "huge.png").write_bytes(huge_png())
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(work)], check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return work


@pytest.fixture(scope="module")
def loaded(exports):
    return {task: load_serving_model(d) for task, d in exports[1].items()}


def test_export_layout_is_tf_serving_versions(exports):
    out, paths = exports
    for task, version_dir in paths.items():
        assert version_dir == out / serving_name(task) / "1"
        assert [p.name for p in version_dir.parent.iterdir()] == ["1"]  # no temporary folder left behind
        for name in ("saved_model.pb", "variables", WARMUP_FILE):
            assert (version_dir / name).exists()


def test_fresh_process_matches_the_in_memory_path(fresh, reference, exports, tiny_config):
    genres = tiny_config["data"]["genres"]
    for task in GENRE_TASKS:
        expected, thresholds = reference[1][task]
        probabilities = np.load(fresh / f"{task}_probabilities.npy")
        assert probabilities.dtype == np.float32 and probabilities.shape == expected.shape
        np.testing.assert_allclose(probabilities, expected, atol=1e-5, rtol=0, err_msg=f"{task}: serving_default")
        np.testing.assert_allclose(np.load(fresh / f"{task}_embeddings_probabilities.npy"), expected, atol=1e-5,
                                   rtol=0, err_msg=f"{task}: embeddings signature")
        predicted = np.load(fresh / f"{task}_predicted.npy")
        assert predicted.dtype == np.int32
        np.testing.assert_array_equal(predicted, (probabilities >= thresholds).astype(np.int32))
        assert json.loads((fresh / f"{task}_genres.json").read_text()) == [
            "|".join(g for g, p in zip(genres, row) if p) for row in predicted]


def test_the_fusion_export_answers_from_the_title_alone_for_a_zero_poster(fresh, reference, trained, samples):
    import keras

    model = load_genre_run(trained["fusion"])[0]
    title_parts = keras.Model(model.inputs, [model.get_layer(name).output
                                             for name in ("title_gated_logits", "word_logits", "char_logits")])
    embeddings = reference[0]
    inputs = {"title": tf.constant(embeddings["title"]), "poster": tf.zeros_like(embeddings["poster"]),
              "title_text": tf.constant(samples[0])}
    logits = sum(np.asarray(part) for part in title_parts(inputs))
    served = np.load(fresh / "fusion_without_poster.npy")
    np.testing.assert_allclose(served, 1 / (1 + np.exp(-logits)), atol=1e-5, rtol=0)
    assert np.abs(served - reference[1]["fusion"][0]).max() > 1e-3  # the poster did count when it was there


def test_a_server_refuses_a_huge_poster_by_index_and_serves_the_next_request(fresh, reference):
    result = json.loads((fresh / "bad_request.json").read_text())
    assert result["refused"] is not None and "poster 1: 20000x20000 pixels" in result["refused"]
    np.testing.assert_allclose(result["next"], reference[1]["poster"][0][:2], atol=1e-5, rtol=0)


def test_graph_uses_only_core_and_tensorflow_text_ops(fresh):
    report = json.loads((fresh / "ops.json").read_text())
    for task, ops in report.items():
        assert ops["unknown"] == [], f"{task}: ops neither in TensorFlow nor TF Text: {ops['unknown']}"
        assert not [op for op in ops["ops"] if "PyFunc" in op], task
    assert report["poster"]["not_in_core"] == []
    assert "WordpieceTokenizeWithOffsets" in report["title"]["not_in_core"]  # the BERT preprocessor is in the graph


def test_signatures_take_raw_inputs_and_embeddings(loaded, tiny_config):
    for task, model in loaded.items():
        names = GENRE_TASKS[task]
        raw = model.signatures["serving_default"]
        assert {k: (s.dtype, s.shape.as_list()) for k, s in raw.structured_input_signature[1].items()} == {
            name: (tf.string, [None]) for name in names}
        emb = model.signatures["embeddings"].structured_input_signature[1]
        # The title and fusion models' n-gram channel also reads the raw titles there.
        assert sorted(emb) == sorted([f"{name}_embedding" for name in names]
                                     + (["title_text"] if "title" in names else []))
        for signature in ("serving_default", "embeddings"):
            assert set(model.signatures[signature].structured_outputs) == set(OUTPUTS)
        assert [g.decode() for g in model.genre_names.numpy()] == tiny_config["data"]["genres"]


def test_warmup_requests_parse_and_replay(loaded, exports):
    from tensorflow_serving.apis import prediction_log_pb2

    for task, version_dir in exports[1].items():
        records = list(tf.data.TFRecordDataset(str(version_dir / WARMUP_FILE)).as_numpy_iterator())
        assert 2 <= len(records) <= 1000
        signatures = set()
        for record in records:
            request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            assert request.model_spec.name == serving_name(task)
            signature = loaded[task].signatures[request.model_spec.signature_name]
            inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
            assert set(inputs) == set(signature.structured_input_signature[1])
            out = signature(**inputs)
            assert out["probabilities"].shape[0] == next(iter(inputs.values())).shape[0]
            signatures.add(request.model_spec.signature_name)
        assert signatures == {"serving_default", "embeddings"}


def test_bad_inputs_give_clear_errors_and_the_model_keeps_serving(loaded, samples, tiny_config):
    from tiny_dataset import TINY_CASES

    serve = loaded["fusion"].signatures["serving_default"]
    titles, posters = samples
    good = serve(title=tf.constant(titles[:2]), poster=tf.constant(posters[:2]))["probabilities"].numpy()
    raw_posters = Path(tiny_config["data"]["root"]) / "posters"
    zero_byte = (raw_posters / f"{TINY_CASES['zero_byte']}.jpg").read_bytes()
    truncated = (raw_posters / f"{TINY_CASES['truncated']}.jpg").read_bytes()

    with pytest.raises(tf.errors.InvalidArgumentError, match="poster 0 could not be decoded"):
        serve(title=tf.constant(["A"]), poster=tf.constant([zero_byte]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="poster 1 could not be decoded: not a JPEG"):
        serve(title=tf.constant(["A", "B"]), poster=tf.constant([posters[0], b"<html>not found</html>"]))
    # A cut JPEG among good posters is named by its index (not only the decoder's own "Invalid JPEG data").
    with pytest.raises(tf.errors.InvalidArgumentError, match="poster 1 could not be decoded: the file is cut short"):
        serve(title=tf.constant(["A", "B"]), poster=tf.constant([posters[0], truncated]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="same number of movies"):
        serve(title=tf.constant(["A", "B"]), poster=tf.constant([posters[0]]))

    np.testing.assert_array_equal(
        serve(title=tf.constant(titles[:2]), poster=tf.constant(posters[:2]))["probabilities"].numpy(), good)
    empty = serve(title=tf.constant([], tf.string), poster=tf.constant([], tf.string))
    assert empty["probabilities"].shape == (0, len(tiny_config["data"]["genres"])) and empty["genres"].shape == (0,)


@pytest.mark.parametrize("bad, problem", [("", "is empty or only whitespace"), (" \t\u00a0\u3000", "is empty or only"),
                                          (b"\xff\xfe\xfa", "is not valid UTF-8"), (b"Caf\xe9", "is not valid UTF-8")])
def test_empty_blank_and_non_utf8_titles_are_refused_by_index(loaded, samples, bad, problem):
    titles, posters = samples
    for task, inputs in (("title", {"title": [titles[0], bad]}),
                         ("fusion", {"title": [titles[0], titles[1], bad], "poster": posters[:3]})):
        serve = loaded[task].signatures["serving_default"]
        index = len(inputs["title"]) - 1
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"title {index} {problem}"):
            serve(**{k: tf.constant(v) for k, v in inputs.items()})
        out = serve(**{k: tf.constant(v[:1]) for k, v in inputs.items()})  # and it serves the next request
        assert out["genres"].shape == (1,) and np.all(np.isfinite(out["probabilities"].numpy()))
        # The embeddings signature's raw titles (the n-gram channel's input) are checked the same way.
        embeddings = loaded[task].signatures["embeddings"]
        dims = {k: v.shape[-1] for k, v in embeddings.structured_input_signature[1].items() if k != "title_text"}
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"title {index} {problem}"):
            embeddings(title_text=tf.constant(inputs["title"]),
                       **{k: tf.zeros([len(inputs["title"]), d]) for k, d in dims.items()})


def test_a_huge_poster_among_good_ones_is_refused_by_index(loaded, samples):
    from test_image_limits import huge_png

    titles, posters = samples
    serve = loaded["poster"].signatures["serving_default"]
    assert int(loaded["poster"].max_poster_pixels.numpy()) == 25_000_000
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="poster 1: 20000x20000 pixels .*over the limit of 25000000 pixels"):
        serve(poster=tf.constant([posters[0], huge_png(), posters[1]]))
    assert serve(poster=tf.constant(posters[:2]))["probabilities"].shape[0] == 2


def test_a_transparent_poster_is_served_as_training_sees_it(loaded, tiny_config):
    """Training reads what `data prepare` made of the poster: Pillow's composite onto white."""
    import io

    from PIL import Image

    from movietitles.data.images import _to_rgb

    rgba = np.zeros((240, 160, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.linspace(0, 255, 160).astype(np.uint8)  # red fading in over transparency
    rgba[60:120, 40:100] = (20, 40, 220, 128)
    png, composited = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(png, format="PNG")
    _to_rgb(Image.fromarray(rgba, "RGBA"))[0].save(composited, format="PNG")
    serve = loaded["poster"].signatures["serving_default"]
    served = serve(poster=tf.constant([png.getvalue(), composited.getvalue()]))["probabilities"].numpy()
    np.testing.assert_array_equal(served[0], served[1])


def test_predict_refuses_blank_titles_and_huge_posters_naming_them(exports, samples, tmp_path, capsys):
    from test_image_limits import huge_png

    out = exports[0]
    for title, problem in (("  ", "empty or only whitespace"), ("\udcff\udcfe", "not valid UTF-8")):
        assert predict.main(["--title", title, "--model-dir", str(out)]) == 2
        assert problem in capsys.readouterr().err
    poster = tmp_path / "huge.png"
    poster.write_bytes(huge_png())
    assert predict.main(["--poster", str(poster), "--model-dir", str(out)]) == 2
    assert f"poster {poster} is 20000 x 20000 pixels, over the limit of 25,000,000 pixels" in capsys.readouterr().err
    import os

    os.mkfifo(tmp_path / "fifo.jpg")  # no writer: opening it would wait for ever
    assert predict.main(["--poster", str(tmp_path / "fifo.jpg"), "--model-dir", str(out)]) == 2
    assert f"poster {tmp_path / 'fifo.jpg'} is a pipe" in capsys.readouterr().err


def test_export_cli_adds_a_version_and_names_the_train_command_for_a_missing_run(tiny_config, trained, tmp_path,
                                                                                  capsys):
    config_file = write_config(tiny_config, tmp_path)
    out = tmp_path / "models"
    for version in (1, 2):
        assert export.main(["--config", str(config_file), "--models", "poster", "--model-dir", str(out)]) == 0
        assert f"poster model: {out / 'genre_poster' / str(version)}" in capsys.readouterr().out
    assert versions(out / "genre_poster") == [1, 2]
    assert sorted(p.name for p in (out / "genre_poster").iterdir()) == ["1", "2"]
    assert sorted(p.name for p in out.iterdir()) == ["genre_poster"]

    untrained = ["--config", str(config_file), "--set", "genre.models.fusion.dropout=0.123", "--model-dir", str(out)]
    assert export.main(untrained) == 2
    assert "python -m movietitles.train --task fusion" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["genre_poster"]  # nothing exported when a run is missing


def test_predict_cli_prints_genres_by_probability(exports, samples, reference, tiny_config, tmp_path, capsys):
    out = exports[0]
    titles, posters = samples
    genres = tiny_config["data"]["genres"]
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(posters[0])

    result = predict.predict_genres(out, titles[0], poster)
    assert result["model"] == "genre_fusion" and result["genres"] == genres
    np.testing.assert_allclose(result["probabilities"], reference[1]["fusion"][0][0], atol=1e-5, rtol=0)

    assert predict.main(["--title", titles[0], "--poster", str(poster), "--model-dir", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    chosen = [g for g, p in zip(genres, result["predicted"]) if p]
    assert lines[0] == f"genre_fusion (version 1): {'|'.join(chosen) or '(no genre)'}"
    assert sorted(line.split()[-2] for line in lines[1:]) == sorted(genres)
    assert sum(line.startswith("  *") for line in lines[1:]) == len(chosen)
    listed = [float(line.split()[-1]) for line in lines[1:]]
    assert listed == sorted(listed, reverse=True)

    # A MovieLens-style title is cleaned first, as the training titles were.
    movielens_style = predict.predict_genres(out, "Lost River, The (1999)")
    assert movielens_style["title"] == "The Lost River"
    np.testing.assert_array_equal(movielens_style["probabilities"],
                                  predict.predict_genres(out, "The Lost River")["probabilities"])
    assert predict.main(["--title", "Lost River, The (1999)", "--model-dir", str(out)]) == 0
    assert "(the title read as 'The Lost River'" in capsys.readouterr().out.splitlines()[1]

    assert predict.main(["--poster", str(poster), "--model-dir", str(out), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("genre_poster (version 1)") and len(lines) == 3

    poster.write_bytes(b"GIF89a broken")
    assert predict.main(["--title", "x", "--poster", str(poster), "--model-dir", str(out)]) == 2
    assert "could not be decoded" in capsys.readouterr().err
    assert predict.main(["--title", "x", "--model-dir", str(tmp_path / "none")]) == 2
    assert "run `python -m movietitles.export`" in capsys.readouterr().err


def test_predict_runs_as_a_module(exports):
    done = subprocess.run([sys.executable, "-m", "movietitles.predict", "--title", "The Lost River",
                           "--model-dir", str(exports[0])], check=False,
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("genre_title (version 1): ") and "Documentary" in done.stdout


BIG_REQUEST = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  the fusion model's title preprocessor

work = Path(sys.argv[1])
exports = json.loads((work / "exports.json").read_text())
poster = (work / "poster.jpg").read_bytes()
n = int(sys.argv[2])
report = {}
# This process's own peak resident set (VmHWM). Not ru_maxrss: Linux carries the parent's peak across exec,
# so a child of a big test process would report the parent's memory.
peak_rss_gb = lambda: int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) / 2**20
for task in ("poster", "fusion"):
    serve = tf.saved_model.load(exports[task]).signatures["serving_default"]
    inputs = {"poster": tf.constant([poster] * n)}
    if task == "fusion":
        inputs["title"] = tf.constant(["The Lost River"] * n)
    probabilities = serve(**inputs)["probabilities"].numpy()
    bad = [poster] * 40
    bad[37] = poster[:len(poster) // 2]  # a JPEG cut short
    try:
        serve(**{k: v[:40] for k, v in inputs.items() if k != "poster"}, poster=tf.constant(bad))
        refused = None
    except tf.errors.InvalidArgumentError as err:
        refused = err.message
    same = bool(np.allclose(probabilities, probabilities[0], atol=1e-5))
    report[task] = {"rows": probabilities.shape[0], "same": same,
                    "refused": refused, "peak_rss_gb": peak_rss_gb()}
(work / "big.json").write_text(json.dumps(report))
"""


def test_a_request_of_2000_posters_is_embedded_in_chunks_within_3_gb(exports, samples, tmp_path):
    """The whole request is embedded 32 posters at a time (serving.genre.POSTER_CHUNK): peak memory does not grow
    with the batch (one request of 500 posters took 6.3 GB before), and a bad poster in a later chunk is named by
    its index in the request."""
    (tmp_path / "exports.json").write_text(json.dumps({task: str(d) for task, d in exports[1].items()}))
    (tmp_path / "poster.jpg").write_bytes(samples[1][0])
    done = subprocess.run([sys.executable, "-c", BIG_REQUEST, str(tmp_path), "2000"], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "big.json").read_text())
    print("2,000 posters in one request, peak RSS (GB):",
          {task: round(r["peak_rss_gb"], 2) for task, r in report.items()})
    for task, result in report.items():
        assert result["rows"] == 2000 and result["same"], task
        assert result["peak_rss_gb"] < 3.0, (task, result["peak_rss_gb"])
        assert "poster 37 could not be decoded: the file is cut short" in result["refused"], (task, result["refused"])
