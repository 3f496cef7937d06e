"""The title decoder is causal: the logits at step t depend on the tokens up to t only (teacher forcing would
otherwise let it read the answer), whatever reads the poster."""

import numpy as np
import pytest

from movietitles.generator.model import GENRES, POSTER_INPUT, POSTER_TEXT, TOKENS, build_title_decoder

VOCAB, STEPS, BATCH = 40, 9, 3
VARIANTS = {
    "par_inject": {},
    "init_inject, 2 layers": {"poster_injection": "init_inject", "gru_layers": 2},
    "genres": {"use_genres": True},
    "poster text (pointer-generator)": {"poster_text_units": 16},
    "attention over the poster grid": {"poster_grid": (4, 6, 2), "poster_attention_units": 8},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_at_step_t_do_not_change_with_later_tokens(variant):
    settings = VARIANTS[variant]
    rng = np.random.default_rng(0)
    poster_dim = 4 + 6 * 2 if "poster_grid" in settings else 12
    decoder = build_title_decoder(VOCAB, poster_dim, 3, rng.normal(size=(VOCAB, 8)).astype(np.float32),
                                  gru_units=16, dropout=0.0, **settings)
    inputs = {TOKENS: rng.integers(0, VOCAB, (BATCH, STEPS)).astype(np.int32),
              POSTER_INPUT: rng.normal(size=(BATCH, poster_dim)).astype(np.float32)}
    if settings.get("use_genres"):
        inputs[GENRES] = rng.integers(0, 2, (BATCH, 3)).astype(np.float32)
    if "poster_text_units" in settings:
        inputs[POSTER_TEXT] = rng.integers(0, VOCAB, (BATCH, 7)).astype(np.int32)
    logits = np.asarray(decoder(inputs, training=False))
    for t in range(STEPS - 1):
        changed = dict(inputs, **{TOKENS: inputs[TOKENS].copy()})
        changed[TOKENS][:, t + 1:] = (changed[TOKENS][:, t + 1:] + 1 + rng.integers(0, VOCAB - 1)) % VOCAB
        after = np.asarray(decoder(changed, training=False))
        np.testing.assert_allclose(after[:, :t + 1], logits[:, :t + 1], atol=1e-5, err_msg=f"{variant}, step {t}")
        assert np.abs(after[:, t + 1:] - logits[:, t + 1:]).max() > 1e-4  # later steps do read the tokens


def test_the_poster_text_encoder_ignores_padding():
    """A poster's text gives the same logits however far its row is padded (batches pad to their longest)."""
    rng = np.random.default_rng(1)
    pad = VOCAB - 3  # the tokenizer's PAD id
    decoder = build_title_decoder(VOCAB, 12, 3, rng.normal(size=(VOCAB, 8)).astype(np.float32), gru_units=16,
                                  dropout=0.0, poster_text_units=16)
    tokens = rng.integers(0, pad, (2, STEPS)).astype(np.int32)
    poster = rng.normal(size=(2, 12)).astype(np.float32)
    text = rng.integers(0, pad, (2, 5)).astype(np.int32)
    text[1, 3:] = pad
    logits = {}
    for extra in (0, 6):
        padded = np.concatenate([text, np.full((2, extra), pad, np.int32)], axis=1)
        logits[extra] = np.asarray(decoder({TOKENS: tokens, POSTER_INPUT: poster, POSTER_TEXT: padded},
                                           training=False))
    np.testing.assert_allclose(logits[6], logits[0], atol=1e-5)
