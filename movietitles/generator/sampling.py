"""Sampling titles from a trained title decoder with keras-hub's samplers (greedy, beam, top-k, top-p).

`generate_titles` reads its defaults from `generator.sampling` (n, sampler, temperature, k, p,
num_beams), the one schema that `python -m movietitles.generate` and the exported title generator
(`movietitles.serving.generator`) share.
"""

from __future__ import annotations

from pathlib import Path

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from movietitles.config import load_config
from movietitles.generator.model import LOGITS, POSTER_INPUT, TOKENS, decoder_inputs
from movietitles.generator.runs import GeneratorRun, load_generator_run
from movietitles.generator.tokenizer import TitleTokenizer

SAMPLERS = ("greedy", "beam", "top_k", "top_p")
_NEG = -1e9


def genre_vectors(genres, known: list[str], rows: int) -> np.ndarray:
    """[rows, G] float32 from a multi-hot array or one list of genre names per poster."""
    if isinstance(genres, np.ndarray):
        if genres.shape != (rows, len(known)):
            raise ValueError(f"genres: expected shape {(rows, len(known))}, got {genres.shape}")
        return genres.astype(np.float32)
    if len(genres) != rows:
        raise ValueError(f"genres: {len(genres)} genre lists for {rows} posters")
    out = np.zeros((rows, len(known)), np.float32)
    for row, names in enumerate(genres):
        unknown = [g for g in names if g not in known]
        if unknown:
            raise ValueError(f"unknown genre(s) {unknown}; known genres: {', '.join(known)}")
        out[row, [known.index(g) for g in names]] = 1.0
    return out


def _make_sampler(name: str, n: int, temperature: float, seed: int | None, k: int, p: float, num_beams: int):
    if name == "greedy":
        return keras_hub.samplers.GreedySampler(temperature=temperature)
    if name == "beam":
        return keras_hub.samplers.BeamSampler(num_beams=max(n, num_beams), return_all_beams=True,
                                              temperature=temperature)
    if name == "top_k":
        return keras_hub.samplers.TopKSampler(k=k, seed=seed, temperature=temperature)
    if name == "top_p":
        return keras_hub.samplers.TopPSampler(p=p, seed=seed, temperature=temperature)
    raise ValueError(f"unknown sampler {name!r}; expected one of {SAMPLERS}")


# Logits divided by a smaller temperature can overflow to inf (then NaN); a larger one is uniform noise.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-4, 100.0


def check_temperature(temperature: float) -> None:
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:  # also refuses NaN
        raise ValueError(f"temperature must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE}, got {temperature}")


def sample_titles(model: keras.Model, tokenizer: TitleTokenizer, poster_vectors, genres=None, n: int = 5,
                  sampler: str = "top_p", temperature: float = 1.0, seed: int | None = None, k: int = 10,
                  p: float = 0.9, num_beams: int = 5, max_rows: int = 512, poster_text=None) -> list[list[str]]:
    """n titles per poster vector ([N, Dp]); `genres`: [N, G] multi-hot (only for a model trained with genres);
    `poster_text`: [N, M] subword ids of each poster's text (only for a model that reads it).

    greedy: the one most likely continuation, repeated n times; beam: the n best of max(n, num_beams)
    beams; top_k / top_p: n independent samples (reproducible with `seed`). Posters are decoded in
    chunks of about `max_rows` sequences.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    check_temperature(temperature)
    poster = np.asarray(poster_vectors, np.float32)
    expected = model.input[POSTER_INPUT].shape[-1]
    if poster.ndim != 2 or poster.shape[1] != expected:
        raise ValueError(f"poster vectors must be [N, {expected}] (the run's image encoder), got shape {poster.shape}")
    genres = None if genres is None else np.asarray(genres, np.float32)
    rows_per_poster = (1 if sampler == "greedy" else max(n, num_beams) if sampler == "beam" else n)
    chunk = max(1, max_rows // rows_per_poster)
    titles = []
    for number, start in enumerate(range(0, len(poster), chunk)):
        chooser = _make_sampler(sampler, n, temperature, None if seed is None else seed + number, k, p, num_beams)
        part = slice(start, start + chunk)
        ids = _sample_ids(model, tokenizer, chooser, poster[part], None if genres is None else genres[part],
                          1 if sampler in ("greedy", "beam") else n,
                          None if poster_text is None else np.asarray(poster_text)[part])
        titles += [[tokenizer.decode(row[1:]) for row in per_poster[:n]] for per_poster in ids]
    return [t * n if sampler == "greedy" else t for t in titles]


def _sample_ids(model, tokenizer: TitleTokenizer, chooser, poster: np.ndarray, genres, draws: int,
                poster_text=None) -> np.ndarray:
    """[N, draws (beams for beam search, best first), 1 + max_len] ids: <s>, the title, </s>, PAD."""
    beams = chooser.num_beams if isinstance(chooser, keras_hub.samplers.BeamSampler) else 1
    copies = draws * beams                                     # rows the decoder sees per poster
    repeat = lambda a: None if a is None else np.repeat(a, copies, axis=0)  # noqa: E731
    inputs = decoder_inputs(model, repeat(poster), repeat(genres), np.zeros((len(poster) * copies, 1), np.int32),
                            repeat(poster_text))
    conditions = {name: tf.constant(value) for name, value in inputs.items() if name != TOKENS}

    length = tokenizer.max_len + 1                             # <s> then up to max_len subwords
    prompt = np.full((len(poster) * draws, length), tokenizer.pad_id, np.int32)
    prompt[:, 0] = tokenizer.bos_id
    fixed = np.zeros(prompt.shape, bool)
    fixed[:, 0] = True
    vocab = tokenizer.vocab_size
    banned = np.zeros(vocab, np.float32)
    banned[tokenizer.never_generated] = _NEG
    no_empty_title = banned.copy()
    no_empty_title[tokenizer.eos_id] = _NEG
    only_pad = np.full(vocab, _NEG, np.float32)
    only_pad[tokenizer.pad_id] = 0.0
    positions = tf.range(length)[None, :]
    # The output layer runs on the one step that is needed, not on all of them (a plain Dense head; the
    # pointer-generator's head mixes several inputs and runs on every step).
    head = model.get_layer(LOGITS)
    body = keras.Model(model.input, head.input) if isinstance(head, keras.layers.Dense) else None

    def step_logits(prompt, index):
        if body is None:
            return tf.gather(model({**conditions, TOKENS: prompt}, training=False), index - 1, axis=1)
        return head(tf.gather(body({**conditions, TOKENS: prompt}, training=False), index - 1, axis=1))

    def next_logits(prompt, cache, index):
        # No cache: the decoder re-reads the prefix each step (titles are short). The GRU is causal,
        # so its state at index-1 (which predicts the token at index) ignores the PAD after it.
        logits = step_logits(prompt, index) + tf.where(index == 1, no_empty_title, banned)
        # A title that has ended only continues with PAD, at no cost: beam scores stay those of the title.
        done = tf.reduce_any((prompt == tokenizer.eos_id) & (positions < index), axis=1)
        return tf.where(done[:, None], only_pad, logits), None, cache

    result = chooser(next_logits, tf.constant(prompt), index=1, mask=tf.constant(fixed),
                     stop_token_ids=[tokenizer.eos_id])
    if beams > 1:
        return keras.ops.convert_to_numpy(result[0])             # beams sorted best first
    return keras.ops.convert_to_numpy(result).reshape(len(poster), draws, length)


def sampling_settings(*layers: dict | None) -> dict:
    """configs/default.yaml's generator.sampling, updated by each layer's values that are not None (a
    run's config, then a command line's); a key the default schema does not have is refused by name."""
    settings = dict(load_config()["generator"]["sampling"])
    for layer in layers:
        unknown = sorted(set(layer or {}) - set(settings))
        if unknown:
            raise ValueError(f"unknown generator.sampling setting(s) {unknown}; expected {sorted(settings)}")
        settings.update({k: v for k, v in (layer or {}).items() if v is not None})
    return settings


def generate_titles(run: GeneratorRun | str | Path, poster_vectors, genres=None, n: int | None = None,
                    sampler: str | None = None, temperature: float | None = None, seed: int | None = None,
                    poster_text=None, **options) -> list[list[str]]:
    """n titles for each poster vector ([N, Dp], from the run's image encoder) of a trained generator run.

    `run`: a `load_generator_run` result or a run directory. `poster_text`: [N, M] ids of each poster's text
    (`features.poster_files.poster_text_of_files`), for a generator that reads it. `genres`: None, a [N, G] multi-hot
    array, or one list of genre names per poster (a model trained without genres refuses them; one
    trained with them reads None as "no genres"). `n`, `sampler`, `temperature` and `options` (k, p,
    num_beams) left out or None take the run config's `generator.sampling`.
    """
    if not isinstance(run, GeneratorRun):
        run = load_generator_run(run)
    settings = sampling_settings(run.config["generator"].get("sampling"),
                                 {**options, "n": n, "sampler": sampler, "temperature": temperature})
    rows = len(poster_vectors)
    known = run.config["data"]["genres"]
    uses_genres = "genres" in run.model.input
    if genres is not None and not uses_genres:
        raise ValueError(f"the title generator in {run.run_dir} was trained without genres "
                         "(generator.use_genres: false): leave the genres out")
    if uses_genres:
        genres = np.zeros((rows, len(known)), np.float32) if genres is None else genre_vectors(genres, known, rows)
    return sample_titles(run.model, run.tokenizer, poster_vectors, genres, seed=seed, poster_text=poster_text,
                         **settings)
