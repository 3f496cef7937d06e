"""Rows of the genre evaluation that read the words printed on the poster (`evaluation.poster_text: true`).

The words are the OCR cache's (`features --kinds poster_text`), largest lettering first. Three rows:
- WORDS_ROW: the words alone, TF-IDF word and character n-grams with a logistic regression per genre, fitted on
  the training movies with posters (as the title baseline is);
- PICTURE_WORDS_ROW: the poster model (the picture) and the words row combined per genre by a logistic
  regression on their logits, fitted on validation (out-of-fold there), like the learned late fusion;
- ALL_ROW: the same with the title model too.
`answer_lines` gives the paired differences: the picture beyond the words, the words beyond the picture, and the
words beyond the title and the picture.
"""

from __future__ import annotations

from movietitles.artefacts import feature_store
from movietitles.evaluation import baselines, late_fusion
from movietitles.evaluation.report import signed_interval
from movietitles.features.pipeline import Features, poster_word_strings

WORDS_ROW = "poster text (words): TF-IDF logreg"
PICTURE_WORDS_ROW = "poster (picture + words): learned combination"
ALL_ROW = "late fusion: learned, title + poster picture + poster words"


def word_strings(config: dict, features: Features) -> list[str]:
    """Each movie's poster text (the OCR cache of `config`'s dataset) as one string."""
    return poster_word_strings(feature_store(config), features.movies).tolist()


def poster_text_scores(config: dict, target_config: dict, train: Features, val: Features, test: Features,
                       val_scores: dict, test_scores: dict, title_row: str, poster_row: str, seed: int) -> None:
    """Add the three rows' validation and test scores to `val_scores` and `test_scores`.

    `target_config`: the config of the test movies' dataset (another one with --eval-root)."""
    train_words = word_strings(config, train)
    if not any(text.strip() for text in train_words):
        raise ValueError("evaluation.poster_text: no training poster has any text in the OCR cache")
    val_scores[WORDS_ROW], test_scores[WORDS_ROW] = baselines.tfidf_logreg(
        train_words, train.labels, word_strings(config, val), word_strings(target_config, test))
    for row, parts in ((PICTURE_WORDS_ROW, [poster_row, WORDS_ROW]), (ALL_ROW, [title_row, poster_row, WORDS_ROW])):
        val_parts = [val_scores[p] for p in parts]
        val_scores[row] = late_fusion.cross_fitted_fusion(val_parts, val.labels, seed=seed)
        test_scores[row] = late_fusion.LearnedFusion().fit(val_parts, val.labels).predict(
            [test_scores[p] for p in parts])


def answer_lines(bootstrap, results: dict, poster_row: str, title_poster_row: str) -> list[str]:
    """What the picture and the words each add beyond the other (and the words beyond title + picture)."""
    return [difference_line(bootstrap, results, question, row, against) for question, row, against in (
        ("The poster's picture adds beyond its words", PICTURE_WORDS_ROW, WORDS_ROW),
        ("The poster's words add beyond its picture", PICTURE_WORDS_ROW, poster_row),
        ("The poster's words add beyond the title and the picture", ALL_ROW, title_poster_row))]


def model_answer_lines(bootstrap, results: dict, without_words: dict[str, str]) -> list[str]:
    """What the words add to the Keras models that read them: each such row (key) against the same model trained
    without them (value)."""
    return [difference_line(bootstrap, results, "The poster's words add, read by the model itself", row, against)
            for row, against in without_words.items()]


def difference_line(bootstrap, results: dict, question: str, row: str, against: str) -> str:
    """`question (row against against): +d [lo, hi] macro-F1 (p ...); ... micro-F1 (p ...)`, paired."""
    parts = []
    for metric, name in (("macro_f1", "macro-F1"), ("micro_f1", "micro-F1")):
        c = bootstrap.compare(row, against, metric, results)
        parts.append(f"{signed_interval(c['difference'], c['ci'])} {name} (p {c['p_value']:.3f})")
    return f"{question} ({row} against {against}): {'; '.join(parts)}"
