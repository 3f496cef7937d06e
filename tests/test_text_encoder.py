"""The exported MiniLM TF-Hub pair and TextEncoder reproduce the reference PyTorch outputs."""

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from movietitles.encoders import bert_export
from movietitles.encoders.text import TextEncoder, build_text_encoder, load_hub_model, text_cache_key
from needs import need_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference" / "minilm-l6-reference.npz"
INPUTS = ("input_word_ids", "input_mask", "input_type_ids")


@pytest.fixture(scope="module")
def reference():
    need_path(REFERENCE, "the encoders' reference outputs")
    with np.load(REFERENCE) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def hub_models(minilm_hub_dirs):
    encoder_dir, preprocess_dir = minilm_hub_dirs
    return load_hub_model(str(encoder_dir), "encoder"), load_hub_model(str(preprocess_dir), "preprocess")


@pytest.fixture(scope="module")
def normalised_encoder(minilm_hub_dirs):
    encoder_dir, preprocess_dir = minilm_hub_dirs
    return TextEncoder(str(encoder_dir), str(preprocess_dir), pooling="mean", normalize=True, pad_multiple=1)


def test_preprocess_gives_reference_ids(hub_models, reference):
    _, preprocess = hub_models
    titles = tf.constant(list(reference["titles"]))
    packed = preprocess.bert_pack_inputs([preprocess.tokenize(titles)], seq_length=32)
    for key in INPUTS:
        np.testing.assert_array_equal(packed[key].numpy(), reference[key], err_msg=key)

    default = preprocess(titles)  # TF-Hub style: padded to 128
    for key in INPUTS:
        assert default[key].dtype == tf.int32 and default[key].shape == (8, 128)
        np.testing.assert_array_equal(default[key].numpy()[:, :32], reference[key], err_msg=key)
    assert default["input_mask"].numpy()[:, 32:].sum() == 0


def test_tokenizer_normalises_like_the_reference_bert_tokenizer(hub_models, minilm_hub_dirs):
    _, preprocess = hub_models
    vocab = (minilm_hub_dirs[1] / "assets" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    cases = {  # what Hugging Face's uncased BertTokenizer makes of them: no NFKC, accents stripped
        "Free to Be… You": ["free", "to", "be", "…", "you"],
        "Skokie\xa0(1981)": ["sk", "##oki", "##e", "(", "1981", ")"],
        "Amélie\u200d": ["amelie"],
        "줄탁": ["ᄌ", "##ᅮ", "##ᆯ", "##ᄐ", "##ᅡ", "##ᆨ"],
    }
    ids = preprocess.tokenize(tf.constant(list(cases))).merge_dims(1, -1).to_list()
    assert [[vocab[i] for i in row] for row in ids] == list(cases.values())


def test_preprocess_truncates_and_packs_segments(hub_models):
    _, preprocess = hub_models
    long = preprocess(tf.constant(["word " * 300]))
    assert long["input_mask"].numpy().sum() == 128 and long["input_word_ids"].numpy()[0, -1] == 102  # [SEP]

    a, b = preprocess.tokenize(tf.constant(["the brave"])), preprocess.tokenize(tf.constant(["x"]))
    pair = preprocess.bert_pack_inputs([a, b], seq_length=8)
    np.testing.assert_array_equal(pair["input_word_ids"].numpy()[0], [101, 1996, 9191, 102, 1060, 102, 0, 0])
    np.testing.assert_array_equal(pair["input_type_ids"].numpy()[0], [0, 0, 0, 0, 1, 1, 0, 0])


def test_exported_encoder_matches_reference(hub_models, reference):
    encoder, _ = hub_models
    out = encoder({k: tf.constant(reference[k]) for k in INPUTS})  # T = 32: the length is not fixed
    mask = reference["input_mask"].astype(bool)
    assert out["sequence_output"].shape == (8, 32, 384)
    seq_err = np.abs(out["sequence_output"].numpy()[mask] - reference["sequence_output"][mask]).max()
    pooled_err = np.abs(out["pooled_output"].numpy() - reference["pooled_output"]).max()
    assert seq_err < 1e-4 and pooled_err < 1e-4, (seq_err, pooled_err)
    np.testing.assert_array_equal(out["default"].numpy(), out["pooled_output"].numpy())


def test_text_encoder_mean_normalised_matches_sentence_embedding(normalised_encoder, reference):
    assert normalised_encoder.dim == 384
    embeddings = normalised_encoder.embed(list(reference["titles"]))  # sorted by length inside, order restored
    assert embeddings.dtype == np.float32 and embeddings.shape == (8, 384)
    err = np.abs(embeddings - reference["sentence_embedding"]).max()
    assert err < 1e-4, err


def test_mean_pooling_is_not_normalised_by_default(minilm_hub_dirs, normalised_encoder, reference):
    encoder_dir, preprocess_dir = minilm_hub_dirs
    plain = TextEncoder(str(encoder_dir), str(preprocess_dir), pooling="mean")
    embeddings = plain.embed(list(reference["titles"]))
    assert not np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-2)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    np.testing.assert_allclose(unit, reference["sentence_embedding"], atol=1e-4)


def test_per_batch_padding_matches_padding_to_128(minilm_hub_dirs, normalised_encoder, reference):
    encoder_dir, preprocess_dir = minilm_hub_dirs
    titles = list(reference["titles"])
    batch = normalised_encoder.encode(titles)
    assert batch["input_mask"].shape == (8, 13)  # the longest title, not 128
    padded = TextEncoder(str(encoder_dir), str(preprocess_dir), pooling="mean", normalize=True, pad_multiple=128)
    assert padded.encode(titles)["input_mask"].shape == (8, 128)
    np.testing.assert_allclose(normalised_encoder.embed(titles), padded.embed(titles), atol=1e-5)


def test_batches_keep_input_order(minilm_hub_dirs, normalised_encoder, reference):
    encoder_dir, preprocess_dir = minilm_hub_dirs
    small_batches = TextEncoder(str(encoder_dir), str(preprocess_dir), pooling="mean", normalize=True,
                                batch_size=3)
    titles = list(reference["titles"])[::-1]
    np.testing.assert_allclose(small_batches.embed(titles), reference["sentence_embedding"][::-1], atol=1e-4)
    assert small_batches.embed([]).shape == (0, 384)


@pytest.mark.parametrize("pooling", ["cls", "pooled"])
def test_other_poolings(minilm_hub_dirs, reference, pooling):
    encoder_dir, preprocess_dir = minilm_hub_dirs
    encoder = build_text_encoder({"handle": str(encoder_dir), "preprocess_handle": str(preprocess_dir),
                                  "pooling": pooling, "batch_size": 4})
    want = reference["sequence_output"][:, 0] if pooling == "cls" else reference["pooled_output"]
    np.testing.assert_allclose(encoder.embed(list(reference["titles"])), want, atol=1e-4)


def test_bad_handles_give_clear_errors(minilm_hub_dirs, tmp_path):
    _, preprocess_dir = minilm_hub_dirs
    missing = str(tmp_path / "no-such-encoder")
    with pytest.raises(FileNotFoundError, match="no-such-encoder"):
        build_text_encoder({"handle": missing, "preprocess_handle": str(preprocess_dir), "pooling": "mean"})

    url = "https://models.invalid/bert/1"  # .invalid never resolves
    with pytest.raises(OSError, match="models.invalid/bert/1") as info:
        build_text_encoder({"handle": url, "preprocess_handle": str(preprocess_dir), "pooling": "mean"})
    assert info.value.__cause__ is None and info.value.__suppress_context__

    with pytest.raises(ValueError, match="pooling"):
        build_text_encoder({"handle": missing, "preprocess_handle": str(preprocess_dir), "pooling": "max"})


def test_cache_keys_are_unique_and_filesystem_safe(normalised_encoder):
    default = {"handle": bert_export.DEFAULT_ENCODER_DIR, "preprocess_handle": bert_export.DEFAULT_PREPROCESS_DIR}
    assert text_cache_key({**default, "pooling": "mean"}) == "minilm-l6-v2-mean"
    url = {"handle": "https://tfhub.dev/tensorflow/small_bert/bert_en_uncased_L-4_H-512_A-8/2",
           "preprocess_handle": "https://tfhub.dev/tensorflow/bert_en_uncased_preprocess/3"}
    keys = {text_cache_key({**url, "pooling": p}) for p in ("mean", "cls", "pooled")}
    keys |= {text_cache_key({**default, "pooling": p}) for p in ("mean", "cls", "pooled")}
    keys.add(normalised_encoder.cache_key)
    assert len(keys) == 7
    assert all(key.replace("-", "").replace("_", "").replace(".", "").isalnum() for key in keys), keys
    assert text_cache_key({**url, "pooling": "mean"}).startswith("bert_en_uncased_l-4_h-512_a-8-")


def test_ensure_default_builds_only_the_missing_default(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(bert_export, "export_minilm_hub_models", lambda *args: calls.append(args))
    bert_export.ensure_default_text_models({"handle": "elsewhere/encoder", "preprocess_handle": "elsewhere/pre"})
    assert calls == []
    with caplog.at_level(logging.INFO, logger=bert_export.__name__):
        bert_export.ensure_default_text_models({"encoders": {"text": {
            "handle": bert_export.DEFAULT_ENCODER_DIR, "preprocess_handle": bert_export.DEFAULT_PREPROCESS_DIR}}})
    assert calls == [(bert_export.DEFAULT_ENCODER_DIR, bert_export.DEFAULT_PREPROCESS_DIR)]
    assert "building the default text encoder" in caplog.text


def test_export_keeps_existing_models(minilm_hub_dirs):
    encoder_dir, preprocess_dir = minilm_hub_dirs
    before = (encoder_dir / "saved_model.pb").stat().st_mtime_ns
    bert_export.export_minilm_hub_models(encoder_dir, preprocess_dir)  # overwrite=False: nothing to do
    assert (encoder_dir / "saved_model.pb").stat().st_mtime_ns == before
    assert not [p for p in encoder_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_jit_compiled_encoder_gives_the_same_embeddings(minilm_hub_dirs, reference):
    encoder_dir, preprocess_dir = minilm_hub_dirs
    jitted = TextEncoder(str(encoder_dir), str(preprocess_dir), pooling="mean", normalize=True, jit_compile=True)
    assert jitted.pad_multiple == 8 and jitted.encode(list(reference["titles"]))["input_mask"].shape == (8, 16)
    np.testing.assert_allclose(jitted.embed(list(reference["titles"])), reference["sentence_embedding"], atol=1e-4)
