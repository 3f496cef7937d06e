"""Title generator export: a TF Serving SavedModel that samples titles from poster bytes, checked in a fresh process."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from movietitles import export
from movietitles.config import with_overrides, write_config
from movietitles.data.dataset import load_prepared
from movietitles.serving.genre import WARMUP_FILE, versions
from movietitles.serving.generator import (
    MODEL_NAME,
    GeneratorServingModule,
    export_title_generator,
)
from movietitles.training.generator import load_generator_run, train_generator
from needs import need_path

BPEMB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "bpemb"
# The picture-only generator (the one that reads poster text: test_export_generator_text.py).
TINY_GENERATOR = {"generator.epochs": 1, "generator.warmup_epochs": 1, "generator.gru_units": 16,
                  "generator.poster_projection": 8, "generator.batch_size": 16,
                  "generator.poster_text.enabled": False}
N = 3
# Per poster; the first (the lowest accepted) is so low that sampling becomes greedy.
TEMPERATURES = [1e-4, 1.0, 0.7, 1.5, 0.7, 1.0]
# Seeded requests (one temperature for every poster, as `generate` takes): the same seed twice, then another.
SEEDS, SEEDED_TEMPERATURE = [7, 7, 8], 0.7

# Runs in a fresh interpreter: which ops the graph needs, then the signature on real posters, bad
# inputs, an empty batch and the warm-up requests. Results go to results.json and token_ids.npy.
FRESH_PROCESS = r"""
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

work = Path(sys.argv[1])
args = json.loads((work / "args.json").read_text())
version_dir = Path(args["version_dir"])
saved = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
ops = set()
for graph in saved.meta_graphs:
    functions = {f.signature.name for f in graph.graph_def.library.function}
    ops |= {n.op for n in graph.graph_def.node} | {n.op for f in graph.graph_def.library.function for n in f.node_def}
ops = sorted(ops - functions)
results = {"ops": ops, "not_in_core": [op for op in ops if op_def_registry.get(op) is None]}
import tensorflow_text  # noqa: F401
results["unknown"] = [op for op in ops if op_def_registry.get(op) is None]

model = tf.saved_model.load(str(version_dir))
signature = model.signatures["serving_default"]
# TF Serving fills an input that a request leaves out from the SignatureDef's defaults; Python's signature does not.
defaults = {k: tf.make_ndarray(v) for k, v in saved.meta_graphs[0].signature_def["serving_default"].defaults.items()}
results["defaults"] = {k: v.tolist() for k, v in defaults.items()}


def serve(**inputs):
    return signature(**{**{k: tf.constant(v) for k, v in defaults.items()}, **inputs})


results["inputs"] = {k: [s.dtype.name, s.shape.as_list()] for k, s in signature.structured_input_signature[1].items()}
results["outputs"] = sorted(signature.structured_outputs)
results["attributes"] = {k: getattr(model, k).numpy().item() for k in ("num_titles", "max_len", "top_p")}
posters = [p.read_bytes() for p in sorted((work / "posters").iterdir())]
out = serve(poster=tf.constant(posters), temperature=tf.constant(args["temperatures"], tf.float32))
results["titles"] = [[t.decode() for t in row] for row in out["titles"].numpy()]
np.save(work / "token_ids.npy", out["token_ids"].numpy())
results["seeded"] = []
for seed in args["seeds"]:
    out = serve(poster=tf.constant(posters), temperature=tf.fill([len(posters)], args["seeded_temperature"]),
                seed=tf.constant(seed, tf.int64))
    results["seeded"].append([[t.decode() for t in row] for row in out["titles"].numpy()])
results["unseeded"] = [[[t.decode() for t in row] for row in serve(
    poster=tf.constant(posters), temperature=tf.fill([len(posters)], args["seeded_temperature"]))["titles"].numpy()]
    for _ in range(2)]

bad = {"zero_byte": ([b""], [1.0]), "not_an_image": ([posters[0], b"<html>not found</html>"], [1.0, 1.0]),
       "zero_temperature": ([posters[0]], [0.0]), "fewer_temperatures": (posters[:2], [1.0]),
       "tiny_temperature": ([posters[0]], [1e-30]), "below_bound": (posters[:2], [1.0, 9.9e-5]),
       "above_bound": ([posters[0]], [100.5]), "nan_temperature": ([posters[0]], [float("nan")]),
       "huge_poster": ([posters[0], (work / "huge.png").read_bytes()], [1.0, 1.0])}
results["errors"] = {}
for case, (p, t) in bad.items():
    try:
        serve(poster=tf.constant(p), temperature=tf.constant(t, tf.float32))
        results["errors"][case] = None
    except tf.errors.InvalidArgumentError as err:
        results["errors"][case] = err.message
again = serve(poster=tf.constant(posters[:1]), temperature=tf.constant([1.0]))
results["after_errors"] = list(again["titles"].shape)
at_bounds = serve(poster=tf.constant(posters[:2]), temperature=tf.constant([1e-4, 100.0]))
results["at_bounds"] = [[t.decode() for t in row] for row in at_bounds["titles"].numpy()]
empty = serve(poster=tf.constant([], tf.string), temperature=tf.constant([], tf.float32))
results["empty"] = [list(empty["titles"].shape), list(empty["token_ids"].shape)]

from tensorflow_serving.apis import prediction_log_pb2
results["warmup"] = []
for record in tf.data.TFRecordDataset(str(version_dir / args["warmup_file"])).as_numpy_iterator():
    request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    titles = serve(**inputs)["titles"]
    results["warmup"].append([request.model_spec.name, request.model_spec.signature_name, sorted(inputs),
                              list(titles.shape)])
# One request of 2,000 posters: embedded 32 at a time, so memory stays bounded.
# This process's own peak resident set (VmHWM). Not ru_maxrss: Linux carries the parent's peak across exec,
# so a child of a big test process would report the parent's memory.
peak_rss_gb = lambda: int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) / 2**20
big = serve(poster=tf.constant([posters[0]] * 2000), temperature=tf.fill([2000], 1.0))
results["big"] = {"shape": list(big["titles"].shape), "peak_rss_gb": peak_rss_gb()}
(work / "results.json").write_text(json.dumps(results))
"""


@pytest.fixture(scope="module")
def gen_config(tiny_config):
    need_path(BPEMB_DIR / "en", "BPEmb (en), which the title generator needs,")
    return with_overrides(tiny_config, {**TINY_GENERATOR, "encoders.bpemb.cache_dir": str(BPEMB_DIR)})


@pytest.fixture(scope="module")
def run(gen_config):
    return load_generator_run(train_generator(gen_config))


@pytest.fixture(scope="module")
def image_encoder(gen_config):
    from movietitles.encoders.image import build_image_encoder

    return build_image_encoder(gen_config["encoders"]["image"])


@pytest.fixture(scope="module")
def exported(gen_config, run, image_encoder, tmp_path_factory):
    """(model base folder, version folder) of the tiny generator, exported once with N titles per poster."""
    out = tmp_path_factory.mktemp("saved_models")
    return out, export_title_generator(gen_config, out, image_encoder, n=N)


@pytest.fixture(scope="module")
def posters(gen_config):
    """Real tiny-dataset poster bytes: normal ones, then a grayscale JPEG and a palette PNG."""
    from tiny_dataset import TINY_CASES

    movies = load_prepared(gen_config["data"]["prepared_dir"]).movies
    normal = movies[movies["has_poster"] & ~movies["id"].isin(TINY_CASES.values())].head(len(TEMPERATURES) - 2)
    raw = Path(gen_config["data"]["root"]) / "posters"
    return ([Path(p).read_bytes() for p in normal["poster"]]
            + [(raw / f"{TINY_CASES[case]}.jpg").read_bytes() for case in ("grayscale", "palette_png")])


@pytest.fixture(scope="module")
def poster_files(posters, tmp_path_factory):
    """The posters as files, in order."""
    folder = tmp_path_factory.mktemp("posters")
    for i, data in enumerate(posters):
        (folder / f"{i:03d}.img").write_bytes(data)
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def fresh(exported, poster_files, tmp_path_factory):
    """results.json and token_ids.npy of the export loaded and served in a new Python process."""
    work = tmp_path_factory.mktemp("fresh")
    (work / "posters").mkdir()
    for path in poster_files:
        (work / "posters" / path.name).write_bytes(path.read_bytes())
    from test_image_limits import huge_png

    (work / "huge.png").write_bytes(huge_png())
    (work / "args.json").write_text(json.dumps({"version_dir": str(exported[1]), "temperatures": TEMPERATURES,
                                                "warmup_file": str(WARMUP_FILE), "seeds": SEEDS,
                                                "seeded_temperature": SEEDED_TEMPERATURE}))
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(work)], check=False, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((work / "results.json").read_text()), np.load(work / "token_ids.npy")


def test_signature_takes_poster_bytes_and_temperatures(fresh, run, gen_config):
    results, _ = fresh
    assert results["inputs"] == {"poster": ["string", [None]], "temperature": ["float32", [None]],
                                 "seed": ["int64", []]}
    assert results["defaults"] == {"seed": -1}  # TF Serving fills it in: old requests keep working
    assert results["outputs"] == ["titles", "token_ids"]
    assert results["attributes"]["num_titles"] == N and results["attributes"]["max_len"] == run.tokenizer.max_len
    assert results["attributes"]["top_p"] == pytest.approx(gen_config["generator"]["sampling"]["p"])


def test_titles_are_the_decoded_token_ids_and_stop_at_the_end_token(fresh, run):
    results, ids = fresh
    tokenizer = run.tokenizer
    assert ids.dtype == np.int32 and ids.shape == (len(TEMPERATURES), N, tokenizer.max_len)
    assert [len(row) for row in results["titles"]] == [N] * len(TEMPERATURES)
    assert results["titles"] == [[tokenizer.decode(sample) for sample in row] for row in ids]
    assert any(title for row in results["titles"] for title in row)
    never = set(tokenizer.never_generated)
    for sample in ids.reshape(-1, tokenizer.max_len).tolist():
        ends = [i for i, t in enumerate(sample) if t == tokenizer.eos_id]
        length = ends[0] if ends else len(sample)
        assert length >= 1, "an empty title was sampled"
        assert not never & set(sample[:length]), sample
        assert all(t == tokenizer.pad_id for t in sample[length + 1:]), f"tokens after </s>: {sample}"


def test_a_seed_gives_the_titles_that_generate_gives(fresh, run, gen_config, poster_files):
    """One sampling loop: the export (in a fresh process) and `python -m movietitles.generate`'s functions give
    the same titles for the same posters, temperature and seed; another seed, or none, gives other titles."""
    from movietitles.features.poster_files import embed_poster_files
    from movietitles.generator.sampling import generate_titles

    results, _ = fresh
    vectors = embed_poster_files(run.config["encoders"]["image"], poster_files)
    for seed, exported in zip(SEEDS, results["seeded"]):
        assert exported == generate_titles(run, vectors, n=N, sampler="top_p", temperature=SEEDED_TEMPERATURE,
                                           seed=seed, p=gen_config["generator"]["sampling"]["p"]), seed
    assert SEEDS[0] == SEEDS[1] and results["seeded"][0] == results["seeded"][1]
    assert SEEDS[2] != SEEDS[0] and results["seeded"][2] != results["seeded"][0]
    assert results["unseeded"][0] != results["unseeded"][1]  # without a seed, a fresh one per request


def test_low_temperature_follows_the_keras_decoder_greedily(fresh, run, posters, image_encoder):
    """Row 0 (temperature 1e-4): every sample is the decoder's most likely title for the poster,
    teacher-forced through the Keras model on the in-memory poster vector."""
    _, ids = fresh
    tokenizer = run.tokenizer
    assert (ids[0] == ids[0, 0]).all()
    sample = ids[0, 0].tolist()
    sample = sample[: sample.index(tokenizer.eos_id) + 1] if tokenizer.eos_id in sample else sample
    vector = image_encoder.embed(tf.stack([image_encoder.preprocess(tf.constant(posters[0]))]))
    tokens = np.array([[tokenizer.bos_id, *sample[:-1]]], np.int32)
    logits = np.array(run.model({"tokens": tokens, "poster": vector}, training=False))[0]
    logits[:, tokenizer.never_generated] = -np.inf
    logits[0, tokenizer.eos_id] = -np.inf
    assert logits.argmax(-1).tolist() == sample


def test_graph_uses_only_core_and_tensorflow_text_ops(fresh):
    results, _ = fresh
    assert results["unknown"] == [], f"ops neither in TensorFlow nor TF Text: {results['unknown']}"
    # XLA ops (keras-hub's own sampling loop writes tokens with XlaDynamicUpdateSlice) fail in the stock TF Serving
    # model server unless it is started with --xla_cpu_compilation_enabled.
    assert not [op for op in results["ops"] if "PyFunc" in op or "Cudnn" in op or op.startswith("Xla")]
    assert "SentencepieceDetokenizeOp" in results["not_in_core"]


def test_bad_inputs_give_clear_errors_and_the_model_keeps_serving(fresh):
    results, _ = fresh
    errors = results["errors"]
    assert "poster 0 could not be decoded" in errors["zero_byte"]
    assert "poster 1 could not be decoded: not a JPEG" in errors["not_an_image"]
    for case in ("zero_temperature", "tiny_temperature", "below_bound", "above_bound", "nan_temperature"):
        assert errors[case] is not None and "temperature must be between 0.0001 and 100.0" in errors[case], case
    assert "poster 1: 20000x20000 pixels" in errors["huge_poster"]
    assert "same number of movies" in errors["fewer_temperatures"]
    assert [len(row) for row in results["at_bounds"]] == [N, N]  # at the bounds: served, no inf or NaN error
    assert results["after_errors"] == [1, N]
    assert results["empty"] == [[0, N], [0, N, results["attributes"]["max_len"]]]


def test_a_request_of_2000_posters_is_answered_within_3_gb(fresh):
    big = fresh[0]["big"]
    print(f"title generator, 2,000 posters in one request: peak RSS {big['peak_rss_gb']:.2f} GB")
    assert big["shape"][0] == 2000 and big["peak_rss_gb"] < 3.0


def test_warmup_requests_replay(fresh):
    warmup = fresh[0]["warmup"]
    assert [w[:3] for w in warmup] == [[MODEL_NAME, "serving_default", ["poster", "temperature"]]] * 2
    assert [w[3] for w in warmup] == [[1, N], [2, N]]


def test_export_cli_adds_a_version_and_names_the_train_command_for_a_missing_run(exported, gen_config, tmp_path,
                                                                                  capsys):
    out, first = exported
    assert first == out / MODEL_NAME / "1"
    for name in ("saved_model.pb", "variables", WARMUP_FILE):
        assert (first / name).exists()
    config_file = write_config(gen_config, tmp_path)
    assert export.main(["--config", str(config_file), "--task", "generator", "--out", str(out)]) == 0  # old spelling
    printed = capsys.readouterr()
    assert f"generator model: {out / MODEL_NAME / '2'}" in printed.out
    assert "warning: --out is deprecated and will be removed; use --model-dir" in printed.err
    assert versions(out / MODEL_NAME) == [1, 2]
    assert sorted(p.name for p in (out / MODEL_NAME).iterdir()) == ["1", "2"]  # no temporary folder left

    untrained = ["--config", str(config_file), "--task", "generator", "--set", "generator.dropout=0.123",
                 "--model-dir", str(out)]
    assert export.main(untrained) == 2
    assert "python -m movietitles.train --task generator" in capsys.readouterr().err
    assert versions(out / MODEL_NAME) == [1, 2]


def test_a_decoder_trained_with_genres_also_takes_them(run, image_encoder, posters, gen_config):
    from movietitles.generator.model import build_title_decoder

    tokenizer, genres = run.tokenizer, gen_config["data"]["genres"]
    decoder = build_title_decoder(tokenizer.vocab_size, image_encoder.dim, len(genres),
                                  tokenizer.embedding_matrix("random"), use_genres=True, poster_projection=8,
                                  gru_units=8)
    with pytest.raises(ValueError, match="trained with 8 genres"):
        GeneratorServingModule(decoder, tokenizer, image_encoder, genres[:3])
    module = GeneratorServingModule(decoder, tokenizer, image_encoder, genres, n=2, p=0.5)
    assert module.input_names == ["poster", "temperature", "genres", "seed"]
    one_hot = np.eye(len(genres), dtype=np.float32)[:2]
    out = module.serve(poster=tf.constant(posters[:2]), temperature=tf.constant([0.7, 1.0]),
                       genres=tf.constant(one_hot))
    assert out["titles"].shape == (2, 2) and out["token_ids"].shape == (2, 2, tokenizer.max_len)
    assert [[t.decode() for t in row] for row in out["titles"].numpy()] == [
        [tokenizer.decode(s) for s in row] for row in out["token_ids"].numpy()]
    seeded = [module.serve(poster=tf.constant(posters[:2]), temperature=tf.constant([0.7, 1.0]),
                           genres=tf.constant(one_hot), seed=tf.constant(3, tf.int64))["token_ids"] for _ in range(2)]
    np.testing.assert_array_equal(*seeded)
    with pytest.raises(tf.errors.InvalidArgumentError, match="poster and genres must hold the same number"):
        module.serve(poster=tf.constant(posters[:2]), temperature=tf.constant([0.7, 1.0]),
                     genres=tf.constant(one_hot[:1]))
