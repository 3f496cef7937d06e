"""Title generator: BPEmb tokenizer, teacher-forcing batches, the GRU decoder, training runs, sampling CLI."""

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from needs import need_path
from PIL import Image, ImageDraw

from movietitles.artefacts import feature_store
from movietitles.config import with_overrides, write_config
from movietitles.data.dataset import load_prepared
from movietitles.generator.data import make_generator_dataset, poster_titles, title_corpus
from movietitles.generator.model import build_title_decoder, masked_token_loss, token_log_probs
from movietitles.generator.tokenizer import TitleTokenizer
from movietitles.training import generator as generator_training
from movietitles.training.generator import load_generator_run, run_directory, train_generator

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BPEMB_DIR = SHARED / "bpemb"
REAL_TITLES = ["Toy Story", "The Lord of the Rings: The Fellowship of the Ring", "Amélie", "Léon: The Professional",
               "2001: A Space Odyssey", "Crouching Tiger, Hidden Dragon", "Bridget Jones's Diary", "Se7en"]
SMALL = {"generator.gru_units": 16, "generator.poster_projection": 8, "generator.batch_size": 16,
         "generator.warmup_epochs": 1, "generator.epochs": 2, "generator.patience": 5}

# Tests of another conditioning (genres, predicted genres, attention) use the picture-only decoder.
PICTURE_ONLY = {"generator.poster_text.enabled": False}


@pytest.fixture(scope="module")
def bpemb_cfg():
    need_path(BPEMB_DIR / "en", "BPEmb (en), which the title generator needs,")
    return {"lang": "en", "vs": 1000, "dim": 25, "cache_dir": str(BPEMB_DIR)}


@pytest.fixture(scope="module")
def tokenizer(bpemb_cfg):
    return TitleTokenizer(bpemb_cfg, max_len=24)


@pytest.fixture(scope="module")
def gen_config(tiny_config, bpemb_cfg):
    return with_overrides(tiny_config, {**SMALL, "encoders.bpemb.cache_dir": bpemb_cfg["cache_dir"]})


@pytest.fixture(scope="module")
def gen_run(gen_config):
    return train_generator(gen_config)


def test_tokenizer_round_trips_real_titles_and_places_specials_after_bpemb(tokenizer):
    vs = tokenizer.bpemb.vocab_size
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.vocab_size) == (vs, vs + 1, vs + 2, vs + 3)
    for title in REAL_TITLES:
        ids = tokenizer.encode(title)
        assert ids and all(0 <= i < vs for i in ids)
        # BPEmb's own preprocessing: lowercase, digits as 0.
        assert tokenizer.decode(ids) == re.sub(r"\d", "0", title.lower())
    ids = tokenizer.encode("Toy Story")
    assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id, *ids, tokenizer.pad_id]) == "toy story"
    assert tokenizer.decode([tokenizer.unk_id, *ids]) == "toy story"


def test_embedding_matrix_is_bpemb_plus_special_rows(tokenizer):
    vs, dim = tokenizer.bpemb.vocab_size, tokenizer.bpemb.dim
    matrix = tokenizer.embedding_matrix("bpemb", seed=3)
    assert matrix.shape == (vs + 3, dim) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[:vs], tokenizer.bpemb.vectors)
    assert not matrix[tokenizer.pad_id].any() and matrix[tokenizer.bos_id].any() and matrix[tokenizer.eos_id].any()
    random = tokenizer.embedding_matrix("random", seed=3)
    assert random.shape == matrix.shape and not np.allclose(random[:vs], matrix[:vs])
    np.testing.assert_array_equal(random, tokenizer.embedding_matrix("random", seed=3))
    with pytest.raises(ValueError, match="bpemb"):
        tokenizer.embedding_matrix("glove")


def test_teacher_forcing_pairs_are_shifted_capped_and_padded(tokenizer):
    ids = tokenizer.encode("The Lord of the Rings")
    tokens, targets = tokenizer.teacher_forcing(ids)
    assert tokens == [tokenizer.bos_id, *ids] and targets == [*ids, tokenizer.eos_id]
    long_tokens, long_targets = tokenizer.teacher_forcing(list(range(3, 60)))
    assert len(long_tokens) == len(long_targets) == tokenizer.max_len and long_targets[-1] == tokenizer.eos_id
    padded = tokenizer.pad([tokens, [tokenizer.bos_id]])
    assert padded.shape == (2, len(tokens)) and (padded[1, 1:] == tokenizer.pad_id).all()


def test_datasets_pair_posters_with_shifted_titles_and_keep_the_corpus_to_train(gen_config, tokenizer):
    train = poster_titles(gen_config, "train", tokenizer)
    corpus = title_corpus(gen_config, tokenizer, train.poster.shape[1])
    movies = load_prepared(gen_config["data"]["prepared_dir"]).movies.set_index("id")
    assert len(corpus) and (movies.loc[corpus.movies["id"], "split"] == "train").all()
    assert not movies.loc[corpus.movies["id"], "has_poster"].any() and not corpus.poster.any()
    assert movies.loc[train.movies["id"], "has_poster"].all() and train.poster.std() > 0

    for shuffle in (False, True):
        batches = list(make_generator_dataset(train, tokenizer, 8, use_genres=True, shuffle=shuffle, seed=1))
        assert sum(len(y) for _, y in batches) == len(train)
        for inputs, targets in batches:
            tokens, targets = inputs["tokens"].numpy(), targets.numpy()
            assert inputs["poster"].shape[1] == train.poster.shape[1] and inputs["genres"].shape[1] == len(train.genre_names)
            assert tokens.dtype == np.int32 and tokens.shape == targets.shape
            assert (tokens[:, 0] == tokenizer.bos_id).all()
            real = targets != tokenizer.pad_id
            np.testing.assert_array_equal(tokens[:, 1:][real[:, 1:]], targets[:, :-1][real[:, 1:]])
            ends = real.sum(axis=1) - 1
            assert (targets[np.arange(len(targets)), ends] == tokenizer.eos_id).all()
            assert real[:, -1].any()  # cut to the batch's longest title
    shuffled = make_generator_dataset(train, tokenizer, 8, shuffle=True)
    assert shuffled.cardinality().numpy() == len(list(shuffled))
    # The corpus's zero posters take no memory per title (a grid feature is 70 KB); its batches still carry them.
    assert corpus.poster.strides[0] == 0
    corpus_batches = list(make_generator_dataset(corpus, tokenizer, 8, shuffle=True, seed=1))
    assert sum(len(y) for _, y in corpus_batches) == len(corpus)
    for inputs, targets in corpus_batches:
        assert inputs["poster"].shape == (len(targets), train.poster.shape[1]) and not inputs["poster"].numpy().any()


@pytest.fixture(scope="module")
def decoder(tokenizer):
    return build_title_decoder(tokenizer.vocab_size, 12, 3, tokenizer.embedding_matrix(), use_genres=True,
                               poster_projection=8, gru_units=16, dropout=0.0)


def test_decoder_outputs_logits_per_step_that_depend_on_the_poster(decoder, tokenizer):
    rng = np.random.default_rng(0)
    tokens = tokenizer.pad([tokenizer.teacher_forcing(tokenizer.encode(t))[0] for t in REAL_TITLES[:4]])
    inputs = {"tokens": tokens, "poster": rng.random((4, 12), np.float32), "genres": np.zeros((4, 3), np.float32)}
    logits = decoder(inputs).numpy()
    assert logits.shape == (4, tokens.shape[1], tokenizer.vocab_size)
    other = decoder({**inputs, "poster": rng.random((4, 12), np.float32) * 5}).numpy()
    assert np.abs(other - logits).max() > 1e-3
    np.testing.assert_allclose(decoder(inputs).numpy(), logits, atol=1e-6)


def test_masked_loss_and_token_log_probs_ignore_padding(decoder, tokenizer):
    rng = np.random.default_rng(1)
    pairs = [tokenizer.teacher_forcing(tokenizer.encode(t)) for t in REAL_TITLES[:3]]
    poster, genres = rng.random((3, 12), np.float32), np.eye(3, dtype=np.float32)
    loss = masked_token_loss()
    values = []
    for length in (None, 30):  # the batch's own length, then 30 with extra PAD
        tokens = tokenizer.pad([p[0] for p in pairs], length)
        targets = tokenizer.pad([p[1] for p in pairs], length)
        logits = decoder({"tokens": tokens, "poster": poster, "genres": genres})
        values.append(float(loss(targets, logits, sample_weight=targets != tokenizer.pad_id)))
        log_probs = token_log_probs(decoder, poster, genres, tokens, targets)
        assert log_probs.shape == targets.shape
        assert (log_probs[targets == tokenizer.pad_id] == 0).all() and (log_probs[targets != tokenizer.pad_id] < 0).all()
        np.testing.assert_allclose(-log_probs.sum() / (targets != tokenizer.pad_id).sum(), values[-1], rtol=1e-5)
    np.testing.assert_allclose(values[0], values[1], rtol=1e-6)


def _events(directory: Path) -> dict[str, int]:
    counts = {}
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                counts[value.tag] = counts.get(value.tag, 0) + 1
    return counts


def test_training_writes_model_config_summary_and_tensorboard_logs(gen_config, gen_run):
    assert gen_run == run_directory(gen_config) and gen_run.name.startswith("generator-")
    assert yaml.safe_load((gen_run / "config.yaml").read_text()) == gen_config
    assert not (gen_run / "backup").exists() and not (gen_run / "best.keras").exists()
    summary = json.loads((gen_run / "summary.json").read_text())
    assert summary["epochs_total"] == 3 and summary["warmup_epochs"] == 1 and 2 <= summary["best_epoch"] <= 3
    assert summary["training_tokens"] > summary["training_movies"] > 0 and summary["warmup_titles"] > 0
    assert np.isclose(summary["val_perplexity_per_token"], np.exp(summary["best_val_loss"]))
    assert 1 < summary["val_perplexity_per_character"] < summary["val_perplexity_per_token"]
    assert _events(gen_run / "logs" / "train")["epoch_loss"] == 3
    validation = _events(gen_run / "logs" / "validation")
    assert validation["epoch_loss"] == validation["epoch_loss_shuffled_posters"] == 3
    assert _events(gen_run / "logs" / "samples")["generated_titles"] == 3

    run = load_generator_run(gen_run)
    model, tokenizer, config = run[:3]
    assert config == gen_config and tokenizer.vocab_size == model.output_shape[-1]
    assert "genres" not in model.input


def test_tensorboard_shows_sample_posters_their_titles_and_the_runs_hparams(gen_run):
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata as hparams_metadata
    from tensorboard.util import tensor_util

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(gen_run.parent))
    multiplexer.Reload()
    samples, session = f"{gen_run.name}/logs/samples", f"{gen_run.name}/logs"
    (images,) = multiplexer.Tensors(samples, "sample_posters")
    posters = tensor_util.make_ndarray(images.tensor_proto)
    texts = multiplexer.Tensors(samples, "generated_titles")
    table = tensor_util.make_ndarray(texts[-1].tensor_proto).item().decode()
    rows = table.splitlines()[2:]
    assert len(posters) - 2 == len(rows) >= 1 and rows[0].startswith("| 1 | ")   # width, height, one PNG per row
    assert "sample_posters" in multiplexer.PluginRunToTagToContent("images")[samples]

    content = multiplexer.PluginRunToTagToContent("hparams")[session][hparams_metadata.SESSION_START_INFO_TAG]
    hparams = hparams_metadata.parse_session_start_info_plugin_data(content).hparams
    assert hparams["task"].string_value == "generator" and hparams["gru_units"].number_value == 16
    summary = json.loads((gen_run / "summary.json").read_text())
    (perplexity,) = multiplexer.Tensors(session, "hparams/val_perplexity_per_token")
    assert float(tensor_util.make_ndarray(perplexity.tensor_proto)) == pytest.approx(
        summary["val_perplexity_per_token"], rel=1e-5)


def test_finished_run_is_skipped_and_an_interrupted_one_resumes(gen_config, gen_run, monkeypatch, capsys):
    before = (gen_run / "model.keras").stat().st_mtime_ns
    assert train_generator(gen_config) == gen_run
    assert (gen_run / "model.keras").stat().st_mtime_ns == before

    config = with_overrides(gen_config, {"generator.dropout": 0.1})  # its own run directory
    original = generator_training._RunState._write_samples
    calls = []

    def killed_in_second_epoch(self, epoch):
        calls.append(epoch)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return original(self, epoch)

    monkeypatch.setattr(generator_training._RunState, "_write_samples", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_generator(config)
    run_dir = run_directory(config)
    assert (run_dir / "backup").exists() and not (run_dir / "summary.json").exists()
    monkeypatch.setattr(generator_training._RunState, "_write_samples", original)
    capsys.readouterr()
    assert train_generator(config) == run_dir
    printed = capsys.readouterr().out
    assert "epoch 1 " not in printed and "epoch 2 (posters)" in printed and "epoch 3 (posters)" in printed
    assert json.loads((run_dir / "summary.json").read_text())["epochs_total"] == 3


@pytest.fixture(scope="module")
def cli(gen_config, gen_run, tmp_path_factory):
    """`python -m movietitles.generate` in-process on a Pillow-made PNG: returns (exit code, stdout lines)."""
    from movietitles import generate

    root = tmp_path_factory.mktemp("generate")
    poster = root / "poster.png"
    image = Image.new("RGB", (120, 180), (200, 30, 30))
    ImageDraw.Draw(image).ellipse((20, 40, 100, 140), fill=(240, 220, 40))
    image.save(poster)
    config_file = write_config(gen_config, root)

    def run(*args, capsys):
        code = generate.main(["--config", str(config_file), "--poster", str(poster), *args])
        out = capsys.readouterr()
        return code, [line for line in out.out.splitlines() if line], out.err

    return run


@pytest.mark.parametrize("sampler", ["greedy", "beam", "top_k", "top_p"])
def test_generate_cli_prints_n_titles_per_sampler(cli, sampler, capsys):
    code, lines, _ = cli("--sampler", sampler, "--n", "3", "--seed", "5", capsys=capsys)
    assert code == 0 and len(lines) == 3 and all(isinstance(t, str) for t in lines)
    if sampler == "greedy":
        assert len(set(lines)) == 1
    if sampler == "beam":
        assert len(set(lines)) == 3  # three different beams


def test_seed_makes_sampling_reproducible(gen_run, cli, capsys):
    from movietitles.generate import generate_titles
    from movietitles.generator.data import text_ids

    first = cli("--sampler", "top_p", "--n", "4", "--seed", "11", capsys=capsys)
    assert first[0] == 0 and cli("--sampler", "top_p", "--n", "4", "--seed", "11", capsys=capsys) == first
    run = load_generator_run(gen_run)
    posters = np.random.default_rng(0).random((2, run.model.input["poster"].shape[-1]), np.float32)
    text = text_ids(["", "STORM"], run.tokenizer, run.config["generator"]["poster_text"]["max_tokens"])
    a = generate_titles(run, posters, n=3, sampler="top_k", seed=1, temperature=2.0, poster_text=text)
    assert generate_titles(run, posters, n=3, sampler="top_k", seed=1, temperature=2.0, poster_text=text) == a
    assert generate_titles(gen_run, posters, n=3, sampler="top_k", seed=2, temperature=2.0, poster_text=text) != a
    assert len(a) == 2 and all(len(titles) == 3 for titles in a)


def test_generate_errors_name_the_fix(gen_config, cli, capsys, tmp_path):
    from movietitles import generate

    code, _, err = cli("--genres", "Comedy", capsys=capsys)
    assert code == 2 and "trained without genres" in err
    with pytest.raises(ValueError, match="known genres: Action, Comedy"):
        generate.genre_vectors([["Comedy", "Superhero"]], ["Action", "Comedy"], 1)
    untrained = write_config(with_overrides(gen_config, {"generator.gru_units": 7}), tmp_path)
    Image.new("RGB", (64, 96), (20, 20, 20)).save(tmp_path / "poster.png")
    code = generate.main(["--config", str(untrained), "--poster", str(tmp_path / "poster.png")])
    assert code == 2 and "python -m movietitles.train --task generator" in capsys.readouterr().err
    # A missing poster is named before any model is looked for.
    code = generate.main(["--config", str(untrained), "--poster", str(tmp_path / "none.png")])
    assert code == 2 and f"poster {tmp_path / 'none.png'} not found" in capsys.readouterr().err


def test_a_model_trained_with_genres_takes_genre_names(gen_config, tmp_path, capsys):
    from movietitles import generate

    config = with_overrides(gen_config, {**PICTURE_ONLY, "generator.use_genres": True, "generator.warmup_epochs": 0,
                                         "generator.epochs": 1})
    run = load_generator_run(train_generator(config))
    assert "genres" in run.model.input
    posters = np.random.default_rng(0).random((2, run.model.input["poster"].shape[-1]), np.float32)
    titles = generate.generate_titles(run, posters, genres=[["Comedy"], ["Horror", "Drama"]], n=2, seed=0)
    assert len(titles) == 2 and all(len(t) == 2 for t in titles)
    with pytest.raises(ValueError, match="unknown genre.*'Superhero'.*known genres: Action, Comedy"):
        generate.generate_titles(run, posters, genres=[["Comedy"], ["Superhero"]])
    image = tmp_path / "poster.png"
    Image.new("RGB", (64, 96), (20, 20, 20)).save(image)
    config_file = write_config(config, tmp_path)
    capsys.readouterr()
    assert generate.main(["--config", str(config_file), "--poster", str(image), "--genres", "Horror", "Drama",
                          "--n", "2"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line]) == 2
    # The old comma-separated spelling still works, with a deprecation message.
    assert generate.main(["--config", str(config_file), "--poster", str(image), "--genres", "Horror,Drama",
                          "--n", "2"]) == 0
    printed = capsys.readouterr()
    assert len([line for line in printed.out.splitlines() if line]) == 2
    assert "warning: --genres with commas is deprecated" in printed.err


def test_predicted_genres_condition_the_decoder_through_the_frozen_poster_model(gen_config, tmp_path, capsys):
    """`generator.predicted_genres`: `train --task generator` trains the poster genre model first; the decoder holds
    it, frozen (its weights are the poster run's after training), and needs no genre input to generate."""
    from movietitles import generate, train
    from movietitles.artefacts import finished_run
    from movietitles.features.pipeline import load_split
    from movietitles.models.genre_runs import load_genre_run, predict_scores

    config = with_overrides(gen_config, {**PICTURE_ONLY, "generator.predicted_genres": True,
                                         "generator.warmup_epochs": 1, "generator.epochs": 1,
                                         "genre.models.poster.ensemble": 1,
                                         "genre.runs_dir": str(tmp_path / "runs")})  # no poster model yet
    off = with_overrides(config, {"generator.predicted_genres": False})
    assert run_directory(config) != run_directory(off)
    del off["generator"]["predicted_genres"]  # runs trained before the key existed keep their folders
    assert run_directory(off) == run_directory(with_overrides(config, {"generator.predicted_genres": False}))
    with pytest.raises(FileNotFoundError, match="train --task poster"):
        finished_run(config, "poster")
    config_file = write_config(config, tmp_path)
    assert train.main(["--config", str(config_file), "--task", "generator"]) == 0
    poster_model = load_genre_run(finished_run(config, "poster"))[0]
    run = load_generator_run(run_directory(config))
    assert "genres" not in run.model.input
    inside = [layer for layer in run.model.layers if isinstance(layer, type(poster_model)) and layer.name ==
              poster_model.name]
    assert len(inside) == 1 and not inside[0].trainable
    for kept, trained in zip(inside[0].get_weights(), poster_model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, trained)
    test = load_split(feature_store(config), "test", ("poster",), labelled_only=False)
    np.testing.assert_allclose(predict_scores(inside[0], {"poster": test.inputs["poster"]}),
                               predict_scores(poster_model, {"poster": test.inputs["poster"]}), rtol=1e-6)
    # The decoder's condition ends with the poster model's probabilities for the poster it is given.
    condition = keras.Model(run.model.input, run.model.get_layer("poster_and_predicted_genres").output)
    rows = len(test)
    ends = condition({"poster": test.inputs["poster"], "tokens": np.zeros((rows, 1), np.int32)}, training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ends)[:, -len(test.genres):],
                               predict_scores(poster_model, {"poster": test.inputs["poster"]}), rtol=1e-5)
    capsys.readouterr()
    titles = generate.generate_titles(run, test.inputs["poster"][:2], n=2, seed=0)
    assert len(titles) == 2 and all(len(t) == 2 and all(isinstance(x, str) for x in t) for t in titles)


def test_predicted_genres_refuse_a_model_that_does_not_read_posters(tokenizer):
    title_input = keras.Input((4,), name="title")
    title_model = keras.Model({"title": title_input}, keras.layers.Dense(3, activation="sigmoid")(title_input))
    with pytest.raises(ValueError, match="needs a poster genre model.*reads \\['title'\\]"):
        build_title_decoder(tokenizer.vocab_size, 4, 3, tokenizer.embedding_matrix("bpemb"), genre_model=title_model)


def test_generate_reads_the_whole_sampling_section_of_the_config(gen_config, gen_run, tmp_path, capsys):
    """generator.sampling.n (which the exporter also reads) is part of the schema: --set and YAML take it."""
    from movietitles import generate

    image = tmp_path / "poster.png"
    Image.new("RGB", (64, 96), (20, 20, 20)).save(image)
    config = with_overrides(gen_config, {"generator.sampling.n": 2, "generator.sampling.sampler": "greedy"})
    config_file = write_config(config, tmp_path)
    assert generate.main(["--config", str(config_file), "--poster", str(image)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) == 2 and len(set(lines)) == 1  # n and sampler from the YAML
    assert generate.main(["--config", str(config_file), "--poster", str(image), "--n", "3"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line]) == 3  # the command line wins


# A seeded request to an exported title generator, in a fresh interpreter: argv = version dir, poster files...
SEEDED_EXPORT_REQUEST = r"""
import json, sys
from pathlib import Path
import tensorflow as tf
import tensorflow_text  # noqa: F401
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
posters = [Path(p).read_bytes() for p in sys.argv[2:]]
out = serve(poster=tf.constant(posters), temperature=tf.fill([len(posters)], 0.7), seed=tf.constant(5, tf.int64))
print(json.dumps([[t.decode() for t in row] for row in out["titles"].numpy()]))
"""


def test_poster_attention_attends_over_the_feature_map_and_serves_from_poster_files(gen_config, tmp_path):
    """`generator.poster_attention` with `encoders.image.pooling: grid`: the cached feature is the pooled vector
    then Lite0's 7x7x320 last-block map; the decoder attends over that map; the export, loaded in a fresh process,
    gives `generate`'s titles for the same poster files and seed."""
    import subprocess
    import sys

    from movietitles import generate, train
    from movietitles.encoders.image import build_image_encoder, grid_layout
    from movietitles.features.pipeline import load_split
    from movietitles.features.poster_files import embed_poster_files
    from movietitles.serving.generator import export_title_generator

    config = with_overrides(gen_config, {**PICTURE_ONLY, "generator.poster_attention.enabled": True,
                                         "generator.warmup_epochs": 1, "generator.epochs": 1,
                                         "genre.runs_dir": str(tmp_path / "runs")})
    with pytest.raises(ValueError, match="poster_attention needs poster features with a feature map "
                                         "\\(encoders.image.pooling: grid\\); these are 2024-d"):
        train_generator(config)
    config = with_overrides(config, {"encoders.image.pooling": "grid"})
    assert grid_layout(config["encoders"]["image"]) == (2024, 49, 320)
    assert train.main(["--config", str(write_config(config, tmp_path)), "--task", "generator"]) == 0  # caches grid

    grid = load_split(feature_store(config), "test", ("poster",), labelled_only=False)
    pooled = load_split(feature_store(gen_config), "test", ("poster",), labelled_only=False)
    assert grid.inputs["poster"].shape == (len(pooled), 2024 + 49 * 320)
    np.testing.assert_allclose(grid.inputs["poster"][:, :2024], pooled.inputs["poster"], rtol=1e-5, atol=1e-5)
    # The map part is the network's last block, cell by cell (row-major), before its head convolution.
    encoder = build_image_encoder(config["encoders"]["image"])
    block = keras.Model(encoder.model.input, encoder.model.get_layer("head_conv").input)
    files = grid.movies["poster"].tolist()[:2]
    images = tf.stack([encoder.preprocess(tf.io.read_file(f)) for f in files])
    np.testing.assert_allclose(grid.inputs["poster"][:2, 2024:].reshape(2, 7, 7, 320),
                               block(images, training=False).numpy(), rtol=1e-4, atol=1e-4)

    run = load_generator_run(run_directory(config))
    assert run.model.input["poster"].shape[-1] == 2024 + 49 * 320
    assert {"poster_grid", "grid_attention"} <= {layer.name for layer in run.model.layers}
    # With only the map changed, the decoder answers differently.
    poster = grid.inputs["poster"][:4]
    tokens = np.zeros((4, 3), np.int32) + run.tokenizer.bos_id
    no_map = poster.copy()
    no_map[:, 2024:] = 0.0
    assert np.abs(run.model({"poster": poster, "tokens": tokens}).numpy()
                  - run.model({"poster": no_map, "tokens": tokens}).numpy()).max() > 1e-4

    version_dir = export_title_generator(config, tmp_path / "saved_models", n=2)
    done = subprocess.run([sys.executable, "-c", SEEDED_EXPORT_REQUEST, str(version_dir), *files], check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    vectors = embed_poster_files(config["encoders"]["image"], files)
    assert json.loads(done.stdout.splitlines()[-1]) == generate.generate_titles(
        run, vectors, n=2, sampler="top_p", temperature=0.7, seed=5, p=config["generator"]["sampling"]["p"])


def test_with_a_feature_map_the_predicted_genres_come_from_the_pooled_vector(tokenizer, gen_config):
    """The decoder hands its frozen genre model the part of the poster feature that model was trained on: the
    pooled vector (a multi_depth genre model, which `genre_model_config` picks for `pooling: grid`), or all of it."""
    from movietitles.generator.runs import genre_model_config

    pooled, cells, channels = 4, 6, 3
    rng = np.random.default_rng(0)
    poster = rng.normal(size=(5, pooled + cells * channels)).astype(np.float32)
    tokens = np.full((5, 2), tokenizer.bos_id, np.int32)
    for reads in (pooled, pooled + cells * channels):
        inputs = keras.Input((reads,), name="poster")
        genre_model = keras.Model({"poster": inputs}, keras.layers.Dense(3, activation="sigmoid")(inputs))
        decoder = build_title_decoder(tokenizer.vocab_size, pooled + cells * channels, 3, tokenizer.embedding_matrix(),
                                      poster_projection=8, gru_units=16, dropout=0.0, genre_model=genre_model,
                                      poster_grid=(pooled, cells, channels), poster_attention_units=8)
        condition = keras.Model(decoder.input, decoder.get_layer("poster_and_predicted_genres").output)
        np.testing.assert_allclose(condition({"poster": poster, "tokens": tokens}).numpy()[:, -3:],
                                   genre_model(poster[:, :reads]).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="needs poster features with a feature map"):
        build_title_decoder(tokenizer.vocab_size, pooled, 3, tokenizer.embedding_matrix(), poster_grid=(pooled, cells,
                            channels), poster_attention_units=8)
    grid = with_overrides(gen_config, {"encoders.image.pooling": "grid"})
    assert genre_model_config(grid)["encoders"]["image"]["pooling"] == "multi_depth"
    assert genre_model_config(gen_config) is gen_config
