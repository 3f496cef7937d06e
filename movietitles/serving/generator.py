"""The title generator as a TF Serving SavedModel: poster bytes in, sampled titles out.

Each export is `<out>/title_generator/<version>/`, versioned and written atomically like the genre
exports (movietitles.serving.genre). The graph holds the whole path: poster decoding and the image
network of the run's image encoder, the Keras decoder sampled by keras-hub's top-p sampler in the loop
that `python -m movietitles.generate` runs too (`movietitles.generator.sampling.TitleSteps.sample_ids`),
and BPEmb's SentencePiece model to turn subword ids into text. It uses only TensorFlow core and
TensorFlow Text ops, which the stock TF Serving model server links in (no XLA ops: it refuses them
unless started with --xla_cpu_compilation_enabled).

Signature `serving_default` (batch-major):
  inputs   `poster` string [B] (encoded JPEG/PNG/GIF/BMP/WebP, within the image encoder's max_bytes and
           max_pixels), `temperature` float32 [B] (in [1e-4, 100], per poster), `poster_text` string [B] only
           for a decoder that reads poster text (the words OCR read on each poster, as
           `movietitles.features.poster_files.read_poster_text` gives them: largest lettering first; ""
           for a poster without text; TF Serving has no OCR, so the client reads them: the export keeps the
           settings to read them with in `poster_text_reader`, JSON that `read_poster_text` takes), `genres` float32
           [B, G] only for a decoder trained with genres, and `seed` int64 scalar, optional (the
           signature's default is -1): a seed >= 0 gives the titles that `generate --seed` gives for
           the same posters (in the same order) and temperature; a negative one draws a fresh seed.
           TF Serving fills a missing `seed` in from the SignatureDef's defaults; in Python,
           `model.signatures["serving_default"]` wants every input, `model.serve(...)` takes the default.
  outputs  `titles` string [B, n]: n independent top-p samples per poster, as BPEmb writes text
           (lowercase, digits as 0); `token_ids` int32 [B, n, max_len]: their subword ids, then </s>
           and PAD (a title without </s> used all max_len subwords).
The restored object also has `num_titles`, `max_len`, `top_p`, (with genres) `genre_names` and (reading poster
text) `poster_text_reader`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import keras_hub
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from movietitles.generator.model import GENRES, POSTER_INPUT, POSTER_TEXT
from movietitles.generator.runs import load_generator_run, run_directory
from movietitles.generator.sampling import (
    MAX_TEMPERATURE, MIN_TEMPERATURE, SAMPLED_ROWS, TitleSteps, sampling_settings)
from movietitles.generator.tokenizer import TitleTokenizer
from movietitles.serving.genre import SIGNATURE_RAW, embed_posters, example_poster, save_new_version

log = logging.getLogger(__name__)

MODEL_NAME = "title_generator"
OUTPUTS = ("titles", "token_ids")
NO_SEED = -1  # the `seed` input's default: draw a fresh seed
WARMUP_POSTER_TEXT = ("THE SILENT GARDEN a film by Ann Lee", "")


class GeneratorServingModule(tf.Module):
    """A trained title decoder with the image encoder in front and sampling behind; see the module docstring.

    The decoder's GRUs are switched to the portable (non-cuDNN) kernel so that an export made on a
    GPU also serves on CPUs.
    """

    def __init__(self, decoder: keras.Model, tokenizer: TitleTokenizer, image_encoder, genre_names=None,
                 n: int = 5, p: float = 0.9, poster_text_tokens: int | None = None,
                 poster_text_reader: dict | None = None):
        """`poster_text_reader`: for a decoder reading poster text, the settings its text was read with
        (`{"encoders": {"ocr": ...}, "generator": {"poster_text": ...}}` of its run), kept in the export."""
        super().__init__(name="title_generator_serving")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n (titles per poster) must be a positive integer, got {n!r}")
        if not 0 < p <= 1:
            raise ValueError(f"generator.sampling.p must be in (0, 1], got {p!r}")
        poster_dim = int(decoder.input[POSTER_INPUT].shape[-1])
        if image_encoder.dim != poster_dim:
            raise ValueError(f"the image encoder gives {image_encoder.dim}-d vectors but the decoder was trained on "
                             f"{poster_dim}-d ones (a different encoders.image config)")
        if int(decoder.output_shape[-1]) != tokenizer.vocab_size:
            raise ValueError(f"the decoder predicts {decoder.output_shape[-1]} ids but the tokenizer has "
                             f"{tokenizer.vocab_size} (a different encoders.bpemb config)")
        self.uses_genres = GENRES in decoder.input
        if self.uses_genres:
            expected = int(decoder.input[GENRES].shape[-1])
            if genre_names is None or len(genre_names) != expected:
                raise ValueError(f"the decoder was trained with {expected} genres: give their names in column order")
            self.genre_names = tf.Variable(list(genre_names), trainable=False, dtype=tf.string, name="genre_names")
        for layer in decoder.layers:
            if isinstance(layer, keras.layers.GRU):
                layer.use_cudnn = False
        self.decoder = decoder
        self._steps = TitleSteps(decoder, tokenizer)
        self._chooser = keras_hub.samplers.TopPSampler(p=float(p))
        self._image_encoder = image_encoder
        self.image_model = image_encoder.model
        self.detokenizer = tf_text.SentencepieceTokenizer(model=tokenizer.bpemb.spm.serialized_model_proto())
        self.reads_text = POSTER_TEXT in decoder.input
        if self.reads_text and not poster_text_tokens:
            raise ValueError("this title decoder reads poster text: give poster_text_tokens "
                             "(generator.poster_text.max_tokens of its run)")
        self._text_tokens = int(poster_text_tokens or 0)
        if self.reads_text and poster_text_reader is not None:
            self.poster_text_reader = tf.Variable(json.dumps(poster_text_reader, sort_keys=True), trainable=False,
                                                  dtype=tf.string, name="poster_text_reader")
        self._bos, self._pad = tokenizer.bos_id, tokenizer.pad_id

        self._n, self._max_len = n, tokenizer.max_len
        self._eos = tokenizer.eos_id
        self.num_titles = tf.Variable(n, trainable=False, name="num_titles")
        self.max_len = tf.Variable(tokenizer.max_len, trainable=False, name="max_len")
        self.top_p = tf.Variable(p, trainable=False, dtype=tf.float32, name="top_p")
        shown = np.zeros(tokenizer.vocab_size, bool)
        shown[: tokenizer.subword_vocab_size] = True
        shown[[i for i in tokenizer.never_generated if i < tokenizer.subword_vocab_size]] = False
        self._shown = tf.constant(shown)

        specs = [tf.TensorSpec([None], tf.string, name="poster"), tf.TensorSpec([None], tf.float32, name="temperature")]
        if self.reads_text:
            specs.append(tf.TensorSpec([None], tf.string, name=POSTER_TEXT))
        if self.uses_genres:
            specs.append(tf.TensorSpec([None, len(genre_names)], tf.float32, name=GENRES))
        specs.append(tf.TensorSpec([], tf.int64, name="seed"))
        self.input_names = [spec.name for spec in specs]
        # A tensor default becomes the SignatureDef's default, which TF Serving uses when a request leaves it out.
        no_seed = tf.constant(NO_SEED, tf.int64)
        # tf.function needs the parameters spelt out: one signature per set of inputs.
        if self.reads_text and self.uses_genres:
            def serve(poster, temperature, poster_text, genres, seed=no_seed):
                return self._serve(poster, temperature, seed, genres=genres, poster_text=poster_text)
        elif self.reads_text:
            def serve(poster, temperature, poster_text, seed=no_seed):
                return self._serve(poster, temperature, seed, poster_text=poster_text)
        elif self.uses_genres:
            def serve(poster, temperature, genres, seed=no_seed):
                return self._serve(poster, temperature, seed, genres=genres)
        else:
            def serve(poster, temperature, seed=no_seed):
                return self._serve(poster, temperature, seed)
        self.serve = tf.function(serve, input_signature=specs)

    def signatures(self) -> dict:
        return {SIGNATURE_RAW: self.serve}  # the tf.function, not a concrete function: that one loses the default

    def _serve(self, posters, temperature, seed, genres=None, poster_text=None):
        batch = tf.shape(posters)[0]
        checks = [tf.debugging.assert_equal(tf.shape(temperature)[0], batch,
                                            message="poster and temperature must hold the same number of movies"),
                  tf.debugging.Assert(tf.reduce_all((temperature >= MIN_TEMPERATURE)
                                                    & (temperature <= MAX_TEMPERATURE)),  # and not NaN
                                      [f"temperature must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE} for every "
                                       "poster, got", temperature])]
        for name, values in ((GENRES, genres), (POSTER_TEXT, poster_text)):
            if values is not None:
                checks.append(tf.debugging.assert_equal(
                    tf.shape(values)[0], batch, message=f"poster and {name} must hold the same number of movies"))
        seed = tf.where(seed < 0, tf.random.uniform([], 0, tf.int64.max, tf.int64), seed)
        with tf.control_dependencies(checks):
            # An empty batch skips the image network (it fails on zero images).
            ids = tf.cond(batch > 0, lambda: self._sample(posters, temperature, seed, genres, poster_text),
                          lambda: tf.zeros([0, self._n, self._max_len], tf.int32))
        return {"titles": self._detokenize(ids), "token_ids": ids}

    def _sample(self, posters, temperature, seed, genres, poster_text):
        """[B, n, max_len] ids: n samples per poster, each after <s> until </s> (then PAD) or max_len ids."""
        n = self._n
        vectors = embed_posters(self._image_encoder, self.image_model, posters)
        text_ids = None if poster_text is None else self._text_ids(poster_text)
        count = tf.shape(vectors)[0]
        # Chunk i of SAMPLED_ROWS // n posters is sampled with seed + i, as `generate` samples them (so the same
        # seed gives the same titles for every poster), and memory does not grow with the request.
        chunk = max(1, SAMPLED_ROWS // n)

        def body(number, parts):
            rows = slice(number * chunk, (number + 1) * chunk)
            conditions = {POSTER_INPUT: tf.repeat(vectors[rows], n, axis=0)}
            if genres is not None:
                conditions[GENRES] = tf.repeat(genres[rows], n, axis=0)
            if text_ids is not None:
                conditions[POSTER_TEXT] = tf.repeat(text_ids[rows], n, axis=0)
            temperatures = tf.repeat(temperature[rows], n)[:, None]
            ids = self._steps.sample_ids(self._chooser, conditions, temperatures, tf.shape(temperatures)[0],
                                         seed + tf.cast(number, tf.int64))
            return number + 1, parts.write(number, tf.reshape(ids[:, 1:], [-1, n, self._max_len]))

        parts = tf.TensorArray(tf.int32, size=(count + chunk - 1) // chunk, infer_shape=False,
                               element_shape=tf.TensorShape([None, n, self._max_len]))
        _, parts = tf.while_loop(lambda number, _: number * chunk < count, body, (tf.constant(0), parts),
                                 parallel_iterations=1)
        return parts.concat()

    def _text_ids(self, texts):
        """[B, M] int32 of the poster texts [B], as `generator.data.poster_text_ids` makes them: <s>, then the
        BPEmb subwords (lowercased, digits as 0, as BPEmb preprocesses) cut to M - 1, then PAD."""
        normal = tf.strings.regex_replace(tf.strings.lower(texts, encoding="utf-8"), r"\d", "0")
        pieces = tf.cast(self.detokenizer.tokenize(normal), tf.int32)[:, : self._text_tokens - 1]
        with_bos = tf.concat([tf.fill([tf.shape(texts)[0], 1], self._bos), pieces], axis=1)
        return with_bos.to_tensor(default_value=self._pad, shape=[None, self._text_tokens])

    def _detokenize(self, ids):
        """[B, n] strings of [B, n, max_len] ids: the subwords before the first </s>, as TitleTokenizer.decode."""
        flat = tf.reshape(ids, [-1, self._max_len])
        before_end = tf.math.cumsum(tf.cast(flat == self._eos, tf.int32), axis=1, exclusive=True) == 0
        kept = tf.ragged.boolean_mask(flat, tf.gather(self._shown, flat) & before_end)
        text = tf.strings.strip(self.detokenizer.detokenize(kept))
        return tf.reshape(text, tf.shape(ids)[:2])


def warmup_inputs(module: GeneratorServingModule) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(signature, inputs) pairs: batches of 1 and 2 made-up posters."""
    requests = []
    for batch in (1, 2):
        inputs = {"poster": np.array([example_poster(seed=i) for i in range(batch)], dtype=object),
                  "temperature": np.full(batch, 0.7, np.float32)}
        if module.reads_text:  # a poster with printed words and one without
            inputs[POSTER_TEXT] = np.array(list(WARMUP_POSTER_TEXT[:batch]), dtype=object)
        if module.uses_genres:
            inputs[GENRES] = np.zeros((batch, int(module.genre_names.shape[0])), np.float32)
        requests.append((SIGNATURE_RAW, inputs))
    return requests


def export_title_generator(config: dict, out_dir: str | Path = "saved_models", image_encoder=None,
                           n: int | None = None) -> Path:
    """Export the config's trained title generator as `<out_dir>/title_generator/<new version>/`.

    The image encoder is built from the run's encoders.image config unless given (it must match);
    top-p's p comes from this config's generator.sampling.p, `n` (titles per poster) from the
    argument, else generator.sampling.n.
    """
    from movietitles.encoders.image import build_image_encoder, image_cache_key

    run = load_generator_run(run_directory(config))  # names the train command when there is no run
    image_cfg = run.config["encoders"]["image"]
    if image_encoder is None:
        image_encoder = build_image_encoder(image_cfg)
    elif image_encoder.cache_key != image_cache_key(image_cfg):
        raise ValueError(f"the image encoder {image_encoder.cache_key} is not the one the title generator was "
                         f"trained with ({image_cache_key(image_cfg)})")
    sampling = sampling_settings(config["generator"]["sampling"], {"n": n})
    text_tokens = (run.config["generator"].get("poster_text") or {}).get("max_tokens")
    reader = {"encoders": {"ocr": run.config["encoders"]["ocr"]},
              "generator": {"poster_text": run.config["generator"].get("poster_text")}}
    module = GeneratorServingModule(run.model, run.tokenizer, image_encoder, run.config["data"]["genres"],
                                    n=sampling["n"], p=float(sampling["p"]), poster_text_tokens=text_tokens,
                                    poster_text_reader=reader)
    version_dir = save_new_version(module, Path(out_dir) / MODEL_NAME, MODEL_NAME, warmup_inputs(module))
    log.info("title generator (%s) exported to %s", run.run_dir, version_dir)
    return version_dir
