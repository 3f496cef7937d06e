"""Poster text: OCR of real pixels, its resumable cache, and a title decoder that reads and copies it."""

from pathlib import Path

import keras
import numpy as np
import pytest
from needs import need_module, need_path
from PIL import Image, ImageDraw, ImageFont

from movietitles.artefacts import feature_store
from movietitles.config import with_overrides
from movietitles.encoders.ocr import poster_words
from movietitles.generator.model import POSTER_TEXT, build_title_decoder, masked_token_loss

need_module("rapidocr_onnxruntime", "the OCR engine")

BPEMB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "bpemb"


def _poster_with_words(path: Path, big: str, small: str) -> Path:
    image = Image.new("RGB", (320, 480), (20, 30, 80))
    draw = ImageDraw.Draw(image)
    draw.text((20, 60), big, fill=(250, 250, 250), font=ImageFont.load_default(size=64))
    draw.text((20, 380), small, fill=(250, 220, 120), font=ImageFont.load_default(size=28))
    image.save(path)
    return path


def test_ocr_reads_the_words_printed_on_a_poster_largest_first(tmp_path):
    from movietitles.encoders.ocr import PosterTextReader

    reader = PosterTextReader({"engine": "rapidocr", "det_limit_side_len": 320})
    lines = reader.read(str(_poster_with_words(tmp_path / "p.png", "STORM", "BRIDGE")))
    text = poster_words(lines)
    assert text.split()[:2] == ["STORM", "BRIDGE"], lines  # the big title first, though printed above anyway
    for line in lines:
        assert 0 < line["confidence"] <= 1 and len(line["box"]) == 4
        assert all(0 <= x <= 320 and 0 <= y <= 480 for x, y in line["box"])
    assert "BRIDGE" not in poster_words(lines, min_confidence=1.01)


def test_the_batched_reader_reads_what_the_stock_call_reads_in_batches_and_worker_processes(tmp_path):
    from movietitles.encoders.ocr import PosterTextReader

    posters = [_poster_with_words(tmp_path / f"{i}.png", big, small)
               for i, (big, small) in enumerate([("STORM", "BRIDGE"), ("NIGHT", "HARBOUR"), ("GLASS", "ORCHARD")])]
    stock = PosterTextReader({"engine": "rapidocr", "det_limit_side_len": 320})
    one = PosterTextReader({"engine": "ppocr_batched", "det_limit_side_len": 320, "workers": 1,
                            "rec_min_width": 320})
    batched = one.read_files(posters)
    for lines, stock_lines in zip(batched, map(stock.read, posters)):
        assert poster_words(lines).split()[:2] == poster_words(stock_lines).split()[:2]
        assert [line["text"] for line in lines] == [line["text"] for line in stock_lines]
        np.testing.assert_allclose([line["box"] for line in lines], [line["box"] for line in stock_lines], atol=1.0)
    workers = PosterTextReader({"engine": "ppocr_batched", "det_limit_side_len": 320, "workers": 2,
                                "rec_min_width": 320})
    try:
        assert workers.read_files(posters * 12) == batched * 12  # 36 posters: two tasks, two processes
    finally:
        workers.close()
    assert one.cache_key != stock.cache_key
    with pytest.raises(ValueError, match="unknown engine"):
        PosterTextReader({"engine": "tesseract"})
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg: not a readable image"):
        one.read(tmp_path / "broken.jpg")


def test_the_fused_recognition_graph_computes_what_the_shipped_one_does():
    from movietitles.encoders.ppocr import DET_MODEL, REC_MODEL, session

    rng = np.random.default_rng(0)
    for name, shape in ((REC_MODEL, (3, 3, 48, 200)), (DET_MODEL, (2, 3, 96, 64))):
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        fused, shipped = session(name, 1, fused=True), session(name, 1, fused=False)
        assert len(fused.get_inputs()) == 1
        np.testing.assert_allclose(fused.run(None, {"x": x})[0], shipped.run(None, {"x": x})[0], atol=1e-4)


def test_poster_words_put_the_largest_lettering_first_and_drop_unsure_lines():
    lines = [{"text": "small print", "box": [[0, 0], [9, 0], [9, 5], [0, 5]], "confidence": 0.9},
             {"text": "TITLE", "box": [[0, 10], [9, 10], [9, 40], [0, 40]], "confidence": 0.95},
             {"text": "noise", "box": [[0, 50], [9, 50], [9, 99], [0, 99]], "confidence": 0.3}]
    assert poster_words(lines, min_confidence=0.5) == "TITLE small print"


def test_poster_text_cache_fills_by_shards_and_loads_per_movie(tiny_config):
    from movietitles.data.dataset import load_prepared
    from movietitles.features.extract import POSTER_TEXT as KIND
    from movietitles.features.extract import extract_features
    from movietitles.features.pipeline import poster_text

    # A cache of its own (another detector size): tiny_config's poster text is cached already.
    config = with_overrides(tiny_config, {"features.chunk_size": 8, "encoders.ocr.det_limit_side_len": 322})
    movies = load_prepared(config["data"]["prepared_dir"]).movies
    ids = movies.loc[movies["has_poster"], "id"].tolist()
    with pytest.raises(FileNotFoundError, match="--kinds poster_text"):
        poster_text(feature_store(config), ids[:2])
    extract_features(feature_store(config), [KIND], shard=0, num_shards=2)
    with pytest.raises(FileNotFoundError, match="incomplete"):
        poster_text(feature_store(config), ids[:2])
    extract_features(feature_store(config), [KIND], shard=1, num_shards=2)
    records = poster_text(feature_store(config), ids)
    assert len(records) == len(ids) and all(isinstance(r, list) for r in records)
    assert (Path(config["features"]["cache_dir"]) / KIND).is_dir()


def _copy_task(rng, n: int, words: int, vocab: int, pad: int, bos: int, eos: int):
    """Titles of random subwords whose poster text is the title itself (after the <s> sentinel)."""
    titles = rng.integers(3, words, size=(n, 3))
    tokens = np.concatenate([np.full((n, 1), bos), titles], axis=1)
    targets = np.concatenate([titles, np.full((n, 1), eos)], axis=1)
    text = np.concatenate([np.full((n, 1), bos), titles, np.full((n, 2), pad)], axis=1)
    return tokens.astype(np.int32), targets.astype(np.int32), text.astype(np.int32)


def test_the_pointer_generator_learns_to_copy_what_the_poster_says():
    vocab, words = 60, 57
    pad, bos, eos = vocab - 3, vocab - 2, vocab - 1
    rng = np.random.default_rng(0)
    tokens, targets, text = _copy_task(rng, 512, words, vocab, pad, bos, eos)
    poster = np.zeros((len(tokens), 4), np.float32)
    embeddings = rng.normal(0, 0.1, (vocab, 8)).astype(np.float32)
    losses = {}
    for reads_text in (False, True):
        keras.utils.set_random_seed(0)
        model = build_title_decoder(vocab, 4, 0, embeddings, poster_projection=4, gru_units=32, dropout=0.0,
                                    poster_text_units=16 if reads_text else None)
        model.compile(keras.optimizers.Adam(0.01), masked_token_loss())
        inputs = {"tokens": tokens, "poster": poster, **({POSTER_TEXT: text} if reads_text else {})}
        history = model.fit(inputs, targets, epochs=15, batch_size=64, verbose=0)
        losses[reads_text] = history.history["loss"][-1]
        if reads_text:
            log_probs = keras.ops.convert_to_numpy(model({k: v[:4] for k, v in inputs.items()}))
            np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)
            other = dict(inputs, **{POSTER_TEXT: text[::-1].copy()})
            changed = keras.ops.convert_to_numpy(model({k: v[:4] for k, v in other.items()}))
            assert not np.allclose(changed, log_probs)
    # Without the text a title is 3 random subwords of 54 (~4 nats each); copying makes them near-certain.
    assert losses[False] > 2.5 and losses[True] < 0.5, losses


def test_a_generator_reading_poster_text_trains_evaluates_and_generates(tiny_config):
    need_path(BPEMB_DIR / "en", "BPEmb (en), which the title generator needs,")
    import json

    from movietitles.evaluation import generator_report
    from movietitles.features.extract import POSTER_TEXT as KIND
    from movietitles.features.extract import extract_features
    from movietitles.generate import generate_titles
    from movietitles.training.generator import load_generator_run, train_generator

    config = with_overrides(tiny_config, {
        "generator.gru_units": 16, "generator.poster_projection": 8, "generator.batch_size": 16,
        "generator.warmup_epochs": 1, "generator.epochs": 1, "encoders.bpemb.cache_dir": str(BPEMB_DIR),
        "generator.poster_text.enabled": True, "generator.poster_text.units": 8,
        "generator.poster_injection": "both"})
    extract_features(feature_store(config), [KIND])
    run = load_generator_run(train_generator(config))
    assert POSTER_TEXT in run.model.input and run.model.get_layer("initial_state") is not None
    out = generator_report.evaluate_generator(config, samples=3)
    swap = json.loads((out / "metrics.json").read_text())["swap_test"]
    assert np.isfinite(swap["gain_bits_per_char"])
    ids = np.full((2, 48), run.tokenizer.pad_id, np.int32)
    ids[:, 0] = run.tokenizer.bos_id
    ids[:, 1:3] = run.tokenizer.encode("storm")[:2]
    titles = generate_titles(run, np.zeros((2, run.model.input["poster"].shape[-1]), np.float32), n=2, seed=1,
                             sampler="top_p", poster_text=ids)
    assert len(titles) == 2 and all(len(t) == 2 for t in titles)
    with pytest.raises(ValueError, match="poster text"):
        generate_titles(run, np.zeros((1, run.model.input["poster"].shape[-1]), np.float32), n=1)


def test_coverage_counts_titles_found_in_the_poster_text_by_decade_and_genre():
    import pandas as pd

    from movietitles.features.poster_text_coverage import coverage_markdown, coverage_tables, title_found

    def lines(*texts):
        return [{"text": t, "box": [[0, 0], [9, 0], [9, 9], [0, 9]], "confidence": 0.9} for t in texts]

    assert title_found("Shirin in Love", lines("SHIRINNLOVE")) == (True, True)   # spaces OCR missed
    assert title_found("The Big Sleep", lines("BIG", "noir")) == (True, False)
    assert title_found("Up", lines("UP")) == (False, False)                      # no word of 3+ characters
    movies = pd.DataFrame({"title": ["Shirin in Love", "The Big Sleep", "Heat", "Up"],
                           "year": [2014, 1946, 1995, None], "genres": ["Comedy|Romance", "Crime", "Crime", "Animation"]})
    tables = coverage_tables(movies, [lines("SHIRINNLOVE"), lines("BIG"), [], lines("UP")],
                             ["Comedy", "Crime", "Animation", "War"])
    overall = tables["overall"].iloc[0]
    assert overall["posters"] == 4 and overall["share with any title word"] == 0.5
    assert overall["share with all title words"] == 0.25 and overall["share with any text"] == 0.75
    assert tables["by genre"].loc["Crime", "share with any title word"] == 0.5
    assert "War" not in tables["by genre"].index and "unknown" in tables["by decade"].index
    assert tables["by decade"].loc["1990s", "posters"] == 1
    assert "| Crime | 2 |" in coverage_markdown(tables)


def test_the_text_masked_view_paints_the_words_out(tmp_path):
    from movietitles.encoders.ocr import PosterTextReader
    from movietitles.encoders.text_mask import masked_poster_png

    reader = PosterTextReader({"engine": "rapidocr", "det_limit_side_len": 320})
    path = _poster_with_words(tmp_path / "p.png", "STORM", "BRIDGE")
    lines = reader.read(str(path))
    masked = tmp_path / "masked.png"
    masked.write_bytes(masked_poster_png(str(path), lines))
    assert "STORM" in poster_words(lines) and "STORM" not in poster_words(reader.read(str(masked)))
    before, after = np.asarray(Image.open(path).convert("RGB")), np.asarray(Image.open(masked))
    assert before.shape == after.shape
    assert np.array_equal(before[200:300], after[200:300])  # the picture away from the words is untouched
    assert masked_poster_png(str(path), []) != b"" and np.array_equal(
        np.asarray(Image.open(__import__("io").BytesIO(masked_poster_png(str(path), [])))), before)


def test_text_masked_features_have_their_own_cache_and_raw_posters_are_refused(tiny_config):
    from movietitles.encoders.image import build_image_encoder
    from movietitles.features.extract import POSTER, extract_features
    from movietitles.features.extract import POSTER_TEXT as KIND
    from movietitles.features.pipeline import load_split

    masked = with_overrides(tiny_config, {"encoders.image.view": "text_masked"})
    extract_features(feature_store(masked), [KIND])
    directories = extract_features(feature_store(masked), [POSTER])
    full = extract_features(feature_store(tiny_config), [POSTER])
    assert directories[POSTER] != full[POSTER] and "textmasked" in str(directories[POSTER])
    features = load_split(feature_store(masked), "train", (POSTER,))
    assert np.isfinite(features.inputs[POSTER]).all()
    full_view = load_split(feature_store(tiny_config), "train", (POSTER,))
    assert features.inputs[POSTER].shape == full_view.inputs[POSTER].shape
    with pytest.raises(ValueError, match="analysis view"):
        build_image_encoder(masked["encoders"]["image"])


def test_a_saturated_copy_gate_keeps_finite_gradients():
    # In warm-up there is nothing to copy and the gate saturates: p_gen == 1.0 in float32 must not give NaN.
    import tensorflow as tf

    from movietitles.generator.model import PointerGenerator

    logits = tf.Variable(np.random.default_rng(0).normal(size=(1, 1, 5)).astype(np.float32))
    gate = tf.Variable([[[60.0]]])
    copy = tf.constant([[[0.0, 1.0, 0.0, 0.0, 0.0]]])
    with tf.GradientTape() as tape:
        log_probs = PointerGenerator()([logits, copy, gate])
        loss = -log_probs[0, 0, 2]
    gradients = tape.gradient(loss, [logits, gate])
    assert np.isfinite(log_probs.numpy()).all() and all(np.isfinite(g.numpy()).all() for g in gradients)
    assert np.exp(log_probs.numpy()).sum() == pytest.approx(1.0, abs=1e-5)


def test_a_large_poster_is_read_scaled_down_with_its_boxes_in_its_own_pixels(tmp_path):
    from movietitles.encoders.ocr import PosterTextReader

    small = _poster_with_words(tmp_path / "small.png", "STORM", "BRIDGE")
    Image.open(small).resize((2400, 3600)).save(tmp_path / "large.png")  # over the 2000-pixel side: scaled to 2000
    reader = PosterTextReader({"engine": "ppocr_batched", "workers": 1, "rec_min_width": 320})
    lines, small_lines = reader.read(tmp_path / "large.png"), reader.read(small)
    assert poster_words(lines).split()[:2] == ["STORM", "BRIDGE"], lines
    assert [line["text"] for line in lines] == [line["text"] for line in small_lines]
    # The boxes are in the large poster's pixels: 7.5 times the small poster's, to the detector's margins (which
    # differ at the two resolutions), far from the scaled-down image's own coordinates (0.56 times those).
    np.testing.assert_allclose([line["box"] for line in lines], 7.5 * np.array([line["box"] for line in small_lines]),
                               atol=120)


def test_min_line_height_skips_small_lettering_into_a_cache_of_its_own(tmp_path):
    from movietitles.encoders.ocr import PosterTextReader, line_height, poster_text_cache_key

    poster = str(_poster_with_words(tmp_path / "p.png", "STORM", "BRIDGE"))
    every = PosterTextReader({"workers": 1}).read(poster)
    small = min(line_height(line) for line in every)
    assert {"STORM", "BRIDGE"} <= set(poster_words(every).split()), every
    tall_only = PosterTextReader({"workers": 1, "min_line_height": int(small) + 8}).read(poster)
    assert poster_words(tall_only).split() == ["STORM"], tall_only
    assert poster_text_cache_key({"min_line_height": 0}) == poster_text_cache_key({})
    assert poster_text_cache_key({"min_line_height": 8}) == poster_text_cache_key({}) + "-h8"
