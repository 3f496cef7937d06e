"""The title generator as a TF Serving SavedModel: poster bytes in, sampled titles out.

Each export is `<out>/title_generator/<version>/`, versioned and written atomically like the genre
exports (movietitles.serving.genre). The graph holds the whole path: poster decoding and the image
network of the run's image encoder, the Keras decoder in a top-p sampling loop, and BPEmb's
SentencePiece model to turn subword ids into text. It uses only TensorFlow core and TensorFlow
Text ops, which the stock TF Serving model server links in.

Signature `serving_default` (batch-major):
  inputs   `poster` string [B] (encoded JPEG/PNG/GIF/BMP/WebP, within the image encoder's max_bytes and
           max_pixels), `temperature` float32 [B] (in [1e-4, 100], per poster), and `genres` float32
           [B, G] only for a decoder trained with genres
  outputs  `titles` string [B, n]: n independent top-p samples per poster, as BPEmb writes text
           (lowercase, digits as 0); `token_ids` int32 [B, n, max_len]: their subword ids, then </s>
           and PAD (a title without </s> used all max_len subwords).
The restored object also has `num_titles`, `max_len`, `top_p` and (with genres) `genre_names`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from movietitles.generator.model import GENRES, LOGITS, POSTER_INPUT, POSTER_TEXT, TOKENS
from movietitles.generator.runs import load_generator_run, run_directory
from movietitles.generator.sampling import MAX_TEMPERATURE, MIN_TEMPERATURE, sampling_settings
from movietitles.generator.tokenizer import TitleTokenizer
from movietitles.serving.genre import SIGNATURE_RAW, example_poster, preprocess_posters, save_new_version

log = logging.getLogger(__name__)

MODEL_NAME = "title_generator"
OUTPUTS = ("titles", "token_ids")


def top_p_sample(logits: tf.Tensor, p) -> tf.Tensor:
    """One id per row of `logits` [N, V], drawn from the smallest set of most likely ids whose
    probability reaches `p` (the most likely id always stays); -inf logits are never drawn."""
    sorted_logits, order = tf.math.top_k(logits, k=tf.shape(logits)[-1])
    before = tf.math.cumsum(tf.nn.softmax(sorted_logits), axis=-1, exclusive=True)
    nucleus = tf.where(before < p, sorted_logits, -np.inf)
    choice = tf.random.categorical(nucleus, 1, dtype=tf.int32)
    return tf.gather(order, choice, batch_dims=1)[:, 0]


class GeneratorServingModule(tf.Module):
    """A trained title decoder with the image encoder in front and sampling behind; see the module docstring.

    The decoder's GRUs are switched to the portable (non-cuDNN) kernel so that an export made on a
    GPU also serves on CPUs.
    """

    def __init__(self, decoder: keras.Model, tokenizer: TitleTokenizer, image_encoder, genre_names=None,
                 n: int = 5, p: float = 0.9):
        super().__init__(name="title_generator_serving")
        if POSTER_TEXT in decoder.input:
            raise ValueError("this title generator reads poster text (generator.poster_text.enabled): its OCR runs "
                             "outside TensorFlow, so it cannot be exported; use `python -m movietitles.generate`")
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
        # The output layer runs only on the last step of the prefix, not on all of it.
        self._head = decoder.get_layer(LOGITS)
        self._body = keras.Model(decoder.input, self._head.input)
        self._image_encoder = image_encoder
        self.image_model = image_encoder.model
        self.detokenizer = tf_text.SentencepieceTokenizer(model=tokenizer.bpemb.spm.serialized_model_proto())

        self._n, self._max_len = n, tokenizer.max_len
        self._pad, self._bos, self._eos = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
        self.num_titles = tf.Variable(n, trainable=False, name="num_titles")
        self.max_len = tf.Variable(tokenizer.max_len, trainable=False, name="max_len")
        self.top_p = tf.Variable(p, trainable=False, dtype=tf.float32, name="top_p")
        banned = np.zeros(tokenizer.vocab_size, np.float32)
        banned[tokenizer.never_generated] = -np.inf
        first = banned.copy()
        first[tokenizer.eos_id] = -np.inf  # no empty titles
        self._banned, self._banned_first = tf.constant(banned), tf.constant(first)
        shown = np.zeros(tokenizer.vocab_size, bool)
        shown[: tokenizer.subword_vocab_size] = True
        shown[[i for i in tokenizer.never_generated if i < tokenizer.subword_vocab_size]] = False
        self._shown = tf.constant(shown)

        spec = {"poster": tf.TensorSpec([None], tf.string, name="poster"),
                "temperature": tf.TensorSpec([None], tf.float32, name="temperature")}
        if self.uses_genres:
            spec[GENRES] = tf.TensorSpec([None, len(genre_names)], tf.float32, name=GENRES)
        self.input_names = list(spec)
        self.serve = tf.function(self._serve, input_signature=[spec])

    def signatures(self) -> dict:
        return {SIGNATURE_RAW: self.serve.get_concrete_function()}

    def _serve(self, inputs):
        posters, temperature = inputs["poster"], inputs["temperature"]
        batch = tf.shape(posters)[0]
        checks = [tf.debugging.assert_equal(tf.shape(temperature)[0], batch,
                                            message="poster and temperature must hold the same number of movies"),
                  tf.debugging.Assert(tf.reduce_all((temperature >= MIN_TEMPERATURE)
                                                    & (temperature <= MAX_TEMPERATURE)),  # and not NaN
                                      [f"temperature must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE} for every "
                                       "poster, got", temperature])]
        if self.uses_genres:
            checks.append(tf.debugging.assert_equal(tf.shape(inputs[GENRES])[0], batch,
                                                    message="poster and genres must hold the same number of movies"))
        with tf.control_dependencies(checks):
            # An empty batch skips the image network (it fails on zero images).
            ids = tf.cond(batch > 0, lambda: self._sample(inputs),
                          lambda: tf.zeros([0, self._n, self._max_len], tf.int32))
        return {"titles": self._detokenize(ids), "token_ids": ids}

    def _sample(self, inputs):
        """[B, n, max_len] ids: n samples per poster, each after <s> until </s> (then PAD) or max_len ids."""
        n, length = self._n, self._max_len + 1
        vectors = tf.cast(self.image_model(preprocess_posters(self._image_encoder, inputs["poster"]),
                                           training=False), tf.float32)
        conditions = {POSTER_INPUT: tf.repeat(vectors, n, axis=0)}
        if self.uses_genres:
            conditions[GENRES] = tf.repeat(inputs[GENRES], n, axis=0)
        temperature = tf.repeat(inputs["temperature"], n)[:, None]
        rows = tf.shape(temperature)[0]
        tokens = tf.concat([tf.fill([rows, 1], self._bos), tf.fill([rows, length - 1], self._pad)], axis=1)
        positions = tf.range(length)[None, :]

        def step(index, tokens, done):
            # The decoder re-reads the prefix each step (titles are short); the GRU is causal.
            states = self._body({**conditions, TOKENS: tokens[:, :index]}, training=False)
            logits = tf.cast(self._head(states[:, -1]), tf.float32) / temperature
            logits += tf.where(index == 1, self._banned_first, self._banned)
            chosen = tf.where(done, self._pad, top_p_sample(logits, self.top_p))
            tokens = tf.where(positions == index, chosen[:, None], tokens)
            return index + 1, tokens, done | (chosen == self._eos)

        _, tokens, _ = tf.while_loop(lambda index, _, done: (index < length) & ~tf.reduce_all(done), step,
                                     (tf.constant(1), tokens, tf.zeros([rows], tf.bool)))
        return tf.reshape(tokens[:, 1:], [-1, n, self._max_len])

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
    module = GeneratorServingModule(run.model, run.tokenizer, image_encoder, run.config["data"]["genres"],
                                    n=sampling["n"], p=float(sampling["p"]))
    version_dir = save_new_version(module, Path(out_dir) / MODEL_NAME, MODEL_NAME, warmup_inputs(module))
    log.info("title generator (%s) exported to %s", run.run_dir, version_dir)
    return version_dir
