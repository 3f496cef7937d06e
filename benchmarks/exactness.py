"""Exactness of the default encoders against the golden outputs in ../shared/reference.

    python benchmarks/exactness.py

Prints the largest absolute errors (the tests assert each is below 1e-4) and the top-5 agreement,
on the default CPU path (TF_ENABLE_ONEDNN_OPTS=0 for the plain one).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package first

import movietitles  # noqa: E402,F401  before TensorFlow: the package's oneDNN default applies
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from movietitles.config import load_config  # noqa: E402
from movietitles.encoders.bert_export import ensure_default_text_models  # noqa: E402
from movietitles.encoders.efficientnet_lite import build_efficientnet_lite  # noqa: E402
from movietitles.encoders.text import TextEncoder, load_hub_model  # noqa: E402

REFERENCE = Path("../shared/reference")
INPUTS = ("input_word_ids", "input_mask", "input_type_ids")


def main() -> None:
    text_cfg = load_config()["encoders"]["text"]
    ensure_default_text_models(text_cfg)
    ref = np.load(REFERENCE / "minilm-l6-reference.npz")
    encoder = load_hub_model(text_cfg["handle"], "text encoder")
    out = encoder({k: tf.constant(ref[k]) for k in INPUTS})
    mask = ref["input_mask"].astype(bool)
    print("BERT (MiniLM-L6, exported SavedModel via hub.load), max |error| vs reference:")
    sequence_error = np.abs(out["sequence_output"].numpy()[mask] - ref["sequence_output"][mask]).max()
    print(f"  sequence_output (unmasked tokens): {sequence_error:.2e}")
    print(f"  pooled_output:                     {np.abs(out['pooled_output'].numpy() - ref['pooled_output']).max():.2e}")
    mean = TextEncoder(text_cfg["handle"], text_cfg["preprocess_handle"], pooling="mean", normalize=True)
    mean_error = np.abs(mean.embed(list(ref["titles"])) - ref["sentence_embedding"]).max()
    print(f"  mean-pooled, L2-normalised:        {mean_error:.2e}")
    preprocess = load_hub_model(text_cfg["preprocess_handle"], "text preprocess")
    ids = preprocess.bert_pack_inputs([preprocess.tokenize(tf.constant(list(ref["titles"])))], 32)
    same_ids = np.array_equal(ids["input_word_ids"].numpy(), ref["input_word_ids"])
    print(f"  tokenizer ids equal to reference:  {same_ids}")

    ref = np.load(REFERENCE / "efficientnet-lite0-reference.npz")
    logits = build_efficientnet_lite("lite0", include_top=True).predict(ref["inputs_nhwc"], verbose=0)
    top5_equal = np.array_equal(np.argsort(-logits, axis=1)[:, :5], ref["top5"])
    print("EfficientNet-Lite0 (packaged weights, Keras port), on the reference inputs:")
    print(f"  logits max |error|: {np.abs(logits - ref['logits']).max():.2e}; top-5 equal: {top5_equal}")


if __name__ == "__main__":
    main()
