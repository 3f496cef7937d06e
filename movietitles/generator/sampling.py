"""Sampling titles from a trained title decoder with keras-hub's samplers (greedy, beam, top-k, top-p).

`TitleSteps.sample_ids` is the one sampling loop of `python -m movietitles.generate` and of the exported title
generator (`movietitles.serving.generator` runs it inside its graph): for the same poster vectors, temperature
and seed, both give the same titles. `generate_titles` reads its defaults from `generator.sampling` (n, sampler,
temperature, k, p, num_beams), the one schema that both share.
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

# Sequences decoded at once (in chunks of posters): chunk i is sampled with seed + i, here and in the export.
SAMPLED_ROWS = 512


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


def _make_sampler(name: str, n: int, k: int, p: float, num_beams: int):
    """keras-hub's sampler `name`, at temperature 1: `TitleSteps.next_logits` divides by the temperature itself
    (one per row, as the export takes one per poster)."""
    if name == "greedy":
        return keras_hub.samplers.GreedySampler()
    if name == "beam":
        return keras_hub.samplers.BeamSampler(num_beams=max(n, num_beams), return_all_beams=True)
    if name == "top_k":
        return keras_hub.samplers.TopKSampler(k=k)
    if name == "top_p":
        return keras_hub.samplers.TopPSampler(p=p)
    raise ValueError(f"unknown sampler {name!r}; expected one of {SAMPLERS}")


# Logits divided by a smaller temperature can overflow to inf (then NaN); a larger one is uniform noise.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-4, 100.0


def check_temperature(temperature: float) -> None:
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:  # also refuses NaN
        raise ValueError(f"temperature must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE}, got {temperature}")


class TitleSteps:
    """One decoding step of a title decoder, as keras-hub's samplers call it; `generate` (eagerly) and the
    exported title generator (inside its graph) both sample through `sample_ids`."""

    def __init__(self, model: keras.Model, tokenizer: TitleTokenizer):
        self.model, self.tokenizer = model, tokenizer
        # The output layer runs on the one step that is needed, not on all of them (a plain Dense head; the
        # pointer-generator's head mixes several inputs and runs on every step).
        self._head = model.get_layer(LOGITS)
        self._body = keras.Model(model.input, self._head.input) if isinstance(self._head, keras.layers.Dense) else None
        self.length = tokenizer.max_len + 1                    # <s> then up to max_len subwords
        banned = np.zeros(tokenizer.vocab_size, np.float32)
        banned[tokenizer.never_generated] = _NEG
        no_empty_title = banned.copy()
        no_empty_title[tokenizer.eos_id] = _NEG
        only_pad = np.full(tokenizer.vocab_size, _NEG, np.float32)
        only_pad[tokenizer.pad_id] = 0.0
        self._banned, self._no_empty_title, self._only_pad = banned, no_empty_title, only_pad

    def logits(self, conditions: dict, prefix) -> tf.Tensor:
        """float32 logits [R, V] of the token after each prefix [R, t] (the decoder re-reads the prefix: no cache,
        titles are short)."""
        if self._body is None:
            return tf.cast(self.model({**conditions, TOKENS: prefix}, training=False)[:, -1], tf.float32)
        return tf.cast(self._head(self._body({**conditions, TOKENS: prefix}, training=False)[:, -1]), tf.float32)

    def next_logits(self, conditions: dict, temperature):
        """keras-hub's `next(prompt, cache, index)` for prompts [R, length]; `temperature`: a number or [R, 1]."""
        positions = tf.range(self.length)[None, :]
        eos = self.tokenizer.eos_id

        def next_logits(prompt, cache, index):
            # The GRU is causal: the prefix up to index-1 predicts the token at index.
            logits = self.logits(conditions, prompt[:, :index]) / temperature
            logits += tf.where(index == 1, self._no_empty_title, self._banned)
            # A title that has ended only continues with PAD, at no cost: beam scores stay those of the title.
            done = tf.reduce_any((prompt == eos) & (positions < index), axis=1)
            return tf.where(done[:, None], self._only_pad, logits), None, cache

        return next_logits

    def prompts(self, rows) -> tf.Tensor:
        """[rows, length] int32: <s>, then PAD to fill."""
        return tf.concat([tf.fill([rows, 1], self.tokenizer.bos_id),
                          tf.fill([rows, self.length - 1], self.tokenizer.pad_id)], axis=1)

    def sample_ids(self, chooser, conditions: dict, temperature, rows, seed=None) -> tf.Tensor:
        """[rows, length] ids, <s> then one title each until </s> (then PAD) or max_len subwords, every token
        picked by keras-hub's `chooser` (greedy, top-k or top-p).

        keras-hub's own loop (`Sampler.__call__`) writes each token with `ops.slice_update`, which TensorFlow runs
        as `XlaDynamicUpdateSlice`: an XLA-only op that the stock TF Serving model server refuses ("XLA compilation
        disabled") unless started with --xla_cpu_compilation_enabled. So this loop is TF core, and keras-hub's
        `compute_probabilities` and `get_next_token` choose each token. Their random draws are stateless, from the
        seed generator's state, which the loop carries from step to step (as keras-hub does for JAX) instead of
        writing the variable: the draws depend only on `seed` (an int or int64 scalar; None: the sampler's own
        random seed), concurrent requests included.
        """
        next_logits = self.next_logits(conditions, temperature)
        generator = getattr(chooser, "seed_generator", None)
        state = [] if generator is None else [generator.state]
        if generator is None:  # greedy: draws nothing, the loop carries a dummy state
            start = tf.zeros([2], tf.int64)
        elif seed is None:
            start = generator.state.value
        else:
            start = tf.cast(tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)]), generator.state.dtype)
        positions = tf.range(self.length)[None, :]
        eos = self.tokenizer.eos_id

        def step(index, ids, seed_state):
            logits, _, _ = next_logits(ids, None, index)
            with keras.StatelessScope(state_mapping=[(v, seed_state) for v in state]) as scope:
                chosen = chooser.get_next_token(chooser.compute_probabilities(logits))
            seed_state = scope.get_current_value(state[0]) if state else seed_state
            ids = tf.where(positions == index, tf.cast(chosen, ids.dtype)[:, None], ids)
            return index + 1, ids, seed_state

        def unfinished(index, ids, _):
            return (index < self.length) & ~tf.reduce_all(tf.reduce_any(ids[:, 1:] == eos, axis=1))

        _, ids, _ = tf.while_loop(unfinished, step, (tf.constant(1), self.prompts(rows), start))
        return ids


def sample_titles(model: keras.Model, tokenizer: TitleTokenizer, poster_vectors, genres=None, n: int = 5,
                  sampler: str = "top_p", temperature: float = 1.0, seed: int | None = None, k: int = 10,
                  p: float = 0.9, num_beams: int = 5, max_rows: int = SAMPLED_ROWS, poster_text=None) -> list[list[str]]:
    """n titles per poster vector ([N, Dp]); `genres`: [N, G] multi-hot (only for a model trained with genres);
    `poster_text`: [N, M] subword ids of each poster's text (only for a model that reads it).

    greedy: the one most likely continuation, repeated n times; beam: the n best of max(n, num_beams)
    beams; top_k / top_p: n independent samples (reproducible with `seed`). Posters are decoded in
    chunks of about `max_rows` sequences, chunk i with seed + i: with the default max_rows, the titles are those
    of the exported title generator for the same posters, temperature and seed (it samples the same chunks).
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
    steps = TitleSteps(model, tokenizer)
    chooser = _make_sampler(sampler, n, k, p, num_beams)
    # One graph for every chunk, as in the export: run eagerly, each step of the loop re-ran the decoder layer by
    # layer in Python. Each chunk's draws come from its seed alone (a fresh one per chunk without `seed`).
    sample = tf.function(lambda given, start: steps.sample_ids(chooser, given, temperature,
                                                               tf.shape(given[POSTER_INPUT])[0], start),
                         autograph=False, reduce_retracing=True)
    fresh_seeds = np.random.default_rng()
    titles = []
    for number, start in enumerate(range(0, len(poster), chunk)):
        part = slice(start, start + chunk)
        chunk_seed = int(fresh_seeds.integers(2 ** 62)) if seed is None else seed + number
        ids = _sample_ids(steps, chooser, sample, temperature, chunk_seed, poster[part],
                          None if genres is None else genres[part], 1 if sampler in ("greedy", "beam") else n,
                          None if poster_text is None else np.asarray(poster_text)[part])
        titles += [[tokenizer.decode(row[1:]) for row in per_poster[:n]] for per_poster in ids]
    return [t * n if sampler == "greedy" else t for t in titles]


def _sample_ids(steps: TitleSteps, chooser, sample, temperature: float, seed: int, poster: np.ndarray, genres,
                draws: int, poster_text=None) -> np.ndarray:
    """[N, draws (beams for beam search, best first), 1 + max_len] ids: <s>, the title, </s>, PAD."""
    beams = chooser.num_beams if isinstance(chooser, keras_hub.samplers.BeamSampler) else 1
    copies = draws * beams                                     # rows the decoder sees per poster
    repeat = lambda a: None if a is None else np.repeat(a, copies, axis=0)  # noqa: E731
    inputs = decoder_inputs(steps.model, repeat(poster), repeat(genres), np.zeros((len(poster) * copies, 1), np.int32),
                            repeat(poster_text))
    conditions = {name: tf.constant(value) for name, value in inputs.items() if name != TOKENS}
    rows = len(poster) * draws
    if beams > 1:
        # Beam search keeps keras-hub's own loop (it reorders beams); the export does not offer it.
        fixed = np.zeros((rows, steps.length), bool)
        fixed[:, 0] = True                                     # <s>
        result = chooser(steps.next_logits(conditions, temperature), steps.prompts(rows), index=1,
                         mask=tf.constant(fixed), stop_token_ids=[steps.tokenizer.eos_id])
        return keras.ops.convert_to_numpy(result[0])             # beams sorted best first
    ids = sample(conditions, tf.constant(seed, tf.int64))
    return keras.ops.convert_to_numpy(ids).reshape(len(poster), draws, steps.length)


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
