"""The default title generator reads the poster's text: its export takes that text (`poster_text`) beside the poster
bytes, and gives the titles `generate` gives for the same posters and seed, in a fresh process and through the TF
Serving request format (the warm-up file's PredictionLogs replayed)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from movietitles.config import with_overrides
from movietitles.serving.genre import WARMUP_FILE
from movietitles.serving.generator import MODEL_NAME, export_title_generator
from movietitles.training.generator import load_generator_run, train_generator
from needs import need_path

BPEMB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "bpemb"
N, SEED, TEMPERATURE = 3, 11, 0.7

FRESH_PROCESS = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401
from tensorflow_serving.apis import prediction_log_pb2

work = Path(sys.argv[1])
args = json.loads((work / "args.json").read_text())
model = tf.saved_model.load(args["version_dir"])
signature = model.signatures["serving_default"]
results = {"inputs": sorted(signature.structured_input_signature[1]),
           "reader": json.loads(model.poster_text_reader.numpy())}
posters = [Path(p).read_bytes() for p in args["posters"]]
out = signature(poster=tf.constant(posters), poster_text=tf.constant(args["texts"]),
                temperature=tf.fill([len(posters)], args["temperature"]), seed=tf.constant(args["seed"], tf.int64))
results["titles"] = [[t.decode() for t in row] for row in out["titles"].numpy()]
try:
    signature(poster=tf.constant(posters), poster_text=tf.constant(args["texts"][:1]),
              temperature=tf.fill([len(posters)], 1.0), seed=tf.constant(0, tf.int64))
    results["fewer_texts"] = None
except tf.errors.InvalidArgumentError as err:
    results["fewer_texts"] = err.message
results["warmup"] = []
for record in tf.data.TFRecordDataset(str(Path(args["version_dir"]) / args["warmup_file"])).as_numpy_iterator():
    request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    inputs.setdefault("seed", tf.constant(-1, tf.int64))  # TF Serving fills it from the SignatureDef's default
    titles = signature(**inputs)["titles"]
    results["warmup"].append([request.model_spec.name, sorted(request.inputs),
                              [t.decode() for t in tf.make_ndarray(request.inputs["poster_text"])],
                              list(titles.shape)])
(work / "results.json").write_text(json.dumps(results))
"""


def _poster_with_title(path: Path, title: str) -> Path:
    image = Image.new("RGB", (160, 236), (30, 30, 90))
    ImageDraw.Draw(image).text((10, 30), title, fill=(250, 250, 250), font=ImageFont.load_default(size=30))
    image.save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def text_config(tiny_config):
    need_path(BPEMB_DIR / "en", "BPEmb (en), which the title generator needs,")
    return with_overrides(tiny_config, {
        "generator.epochs": 1, "generator.warmup_epochs": 1, "generator.gru_units": 16,
        "generator.poster_projection": 8, "generator.batch_size": 16, "generator.poster_text.units": 8,
        "encoders.bpemb.cache_dir": str(BPEMB_DIR)})


@pytest.fixture(scope="module")
def run(text_config):
    assert text_config["generator"]["poster_text"]["enabled"]  # the default
    return load_generator_run(train_generator(text_config))  # OCRs the tiny posters first


@pytest.fixture(scope="module")
def poster_files(text_config, tmp_path_factory):
    """A poster that prints its title, one that prints two lines, and a real tiny-dataset poster (no words)."""
    from movietitles.data.dataset import load_prepared

    folder = tmp_path_factory.mktemp("text-posters")
    movies = load_prepared(text_config["data"]["prepared_dir"]).movies
    plain = folder / "plain.jpg"
    plain.write_bytes(Path(movies.loc[movies["has_poster"], "poster"].iloc[0]).read_bytes())
    return [_poster_with_title(folder / "storm.jpg", "STORM"), _poster_with_title(folder / "two.jpg", "Hotel 42"),
            plain]


def test_the_export_reads_the_text_and_gives_the_titles_generate_gives(run, text_config, poster_files,
                                                                       tmp_path_factory):
    from movietitles.features.poster_files import embed_poster_files, poster_text_of_files, read_poster_text
    from movietitles.generator.sampling import generate_titles

    texts = read_poster_text(run.config, poster_files)
    assert "STORM" in texts[0].upper() and texts[2] == "", texts  # the plain poster prints nothing
    vectors = embed_poster_files(run.config["encoders"]["image"], poster_files)
    expected = generate_titles(run, vectors, n=N, sampler="top_p", temperature=TEMPERATURE, seed=SEED,
                               p=text_config["generator"]["sampling"]["p"],
                               poster_text=poster_text_of_files(run.config, run.tokenizer, poster_files))

    out = tmp_path_factory.mktemp("exported")
    version_dir = export_title_generator(text_config, out, n=N)
    work = tmp_path_factory.mktemp("fresh-text")
    (work / "args.json").write_text(json.dumps({
        "version_dir": str(version_dir), "posters": [str(p) for p in poster_files], "texts": texts, "seed": SEED,
        "temperature": TEMPERATURE, "warmup_file": str(WARMUP_FILE)}))
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(work)], check=False, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())

    assert results["inputs"] == ["poster", "poster_text", "seed", "temperature"]
    # The export says how to read the words it takes: the same text as the run's own settings read.
    assert results["reader"]["encoders"]["ocr"] == run.config["encoders"]["ocr"]
    assert read_poster_text(results["reader"], poster_files) == texts
    assert results["titles"] == expected
    assert all(len(row) == N and all(row) for row in results["titles"])  # the poster without text gets titles too
    assert "poster and poster_text must hold the same number of movies" in results["fewer_texts"]
    assert [w[:2] for w in results["warmup"]] == [[MODEL_NAME, ["poster", "poster_text", "temperature"]]] * 2
    assert results["warmup"][1][2][1] == "" and results["warmup"][1][2][0]  # a poster with words, one without
    assert [w[3] for w in results["warmup"]] == [[1, N], [2, N]]


@pytest.mark.parametrize("text", ["", "STORM", "Hotel 42 — Été 1999", "the " * 80, "ÀÉÎ ß İstanbul 2049"])
def test_the_graph_turns_poster_text_into_the_ids_the_decoder_was_trained_on(run, text_config, text):
    from movietitles.encoders.image import build_image_encoder
    from movietitles.generator.data import text_ids
    from movietitles.serving.generator import GeneratorServingModule

    max_tokens = text_config["generator"]["poster_text"]["max_tokens"]
    module = GeneratorServingModule(run.model, run.tokenizer, build_image_encoder(run.config["encoders"]["image"]),
                                    n=1, poster_text_tokens=max_tokens)
    in_graph = module._text_ids(tf.constant([text, "x"])).numpy()
    np.testing.assert_array_equal(in_graph, text_ids([text, "x"], run.tokenizer, max_tokens))
