"""The genre evaluation's result, and its writers: what `python -m movietitles.evaluate` computes
(`GenreEvaluation`, made by `movietitles.evaluate.compute_genre_evaluation`) becomes report.md and metrics.json,
report.html with its plots and gallery, TensorBoard summaries, predictions.csv and thresholds.json
(`write_genre_evaluation`). Nothing here scores a model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movietitles.evaluation.bootstrap import Bootstrap
from movietitles.evaluation.html_report import gallery_records, write_html_report
from movietitles.evaluation.plots import plot_main_rows_f1, plot_per_genre_f1, plot_pr_curves
from movietitles.evaluation.predictions import predictions_table, write_predictions
from movietitles.evaluation.report import write_report
from movietitles.evaluation.thresholds import STRATEGIES
from movietitles.features.pipeline import Features
from movietitles.io import atomic_write_text
from movietitles.markdown import markdown_table
from movietitles.tensorboard_logs import log_evaluation


@dataclass
class GenreEvaluation:
    """Every row's test predictions, scores and metrics (with intervals), and how they were chosen and compared."""

    seed: int                         # the configuration's: it drew the bootstrap and the gallery
    threshold_strategy: str           # genre.thresholds.strategy
    hparams: dict                     # what TensorBoard compares the rows by (settings.genre_hparams)
    data_root: str | None
    genres: list[str]                 # the columns, in order
    test: Features
    test_description: str
    overlap: dict | None              # films the training split already holds (--eval-root), or None
    runs: dict[str, Path]             # row -> the trained run it scores
    saw: dict[str, str]               # row -> the data its model or baseline was fitted on
    order: list[str]                  # the report's rows, in order
    main_rows: list[str]              # title, poster, the headline fusion row, early fusion
    headline: str                     # the fusion row chosen on validation
    test_scores: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray]
    fixed_rows: list[str]             # rows at a fixed 0.5 threshold ("<model row> @0.5")
    thresholds: dict[str, np.ndarray]  # row -> per-genre thresholds fitted on validation
    results: dict[str, dict]          # row -> test metrics with their intervals
    validation: dict[str, dict]       # row -> out-of-sample validation scores of the configured strategy
    strategies: dict[str, dict]       # row -> strategy -> out-of-sample validation scores
    comparisons: list[dict]           # paired differences
    answer: list[str]
    bootstrap: Bootstrap


def strategy_section(strategies: dict[str, dict[str, dict]]) -> str:
    """Markdown: each row's validation macro/micro-F1 under each threshold strategy, out-of-sample."""
    rows = [[row, *(f"{by[s]['macro_f1']:.3f} / {by[s]['micro_f1']:.3f}" for s in STRATEGIES)]
            for row, by in strategies.items()]
    return "\n".join(["## Threshold strategies (validation, out-of-sample)", "",
                      "Macro-F1 / micro-F1 of thresholds tuned on one half of the validation movies and scored on "
                      "the other (mean of random halvings). The configured strategy is chosen on this table, "
                      "never on test.", "", markdown_table(["Model", *STRATEGIES], rows)])


def write_genre_evaluation(e: GenreEvaluation, run_dir: Path, seconds: float) -> None:
    """Every file of the evaluation in `run_dir`, and its TensorBoard summaries; `seconds`: how long it took."""
    test, boot, genres = e.test, e.bootstrap, e.genres
    notes = {
        "test set": f"{len(test)} movies: {e.test_description}",
        "intervals": f"95% percentile bootstrap over the test movies, {boot.n_resamples} resamples shared by "
                     "every row (so differences are paired); p-values are two-sided bootstrap p-values",
        "thresholds": f"per genre, fitted on the validation split only (strategy "
                      f"{e.threshold_strategy!r}); rows marked @0.5 use a fixed 0.5",
        "validation macro-F1 (out-of-sample)": {
            row: round(v["macro_f1"], 4) for row, v in e.validation.items()},
        "headline fusion row": f"{e.headline}, the fusion row with the best out-of-sample validation macro-F1",
        "late fusion": "mean, product and max of the title and poster models' scores, each normalised so that "
                       "P(g) + P(not g) = 1; union and intersection of their predicted sets; learned: per-genre "
                       "logistic regression on both models' logits, fitted on validation (out-of-fold there)",
        "data each model saw": e.saw,
        **({"films the training split already holds": e.overlap} if e.overlap else {}),
        "seconds": round(seconds, 1),
    }
    write_report(run_dir, e.results, len(test), notes=notes, comparisons=e.comparisons, answer=e.answer,
                 extra={"bootstrap": {"resamples": boot.n_resamples, "level": boot.level, "seed": e.seed},
                        "validation_out_of_sample": e.validation, "threshold_strategies": e.strategies,
                        "headline_fusion_row": e.headline},
                 sections=[strategy_section(e.strategies)])
    payload = json.loads((run_dir / "metrics.json").read_text())
    plots = {"Per-genre F1 (test)": plot_per_genre_f1({row: e.results[row] for row in e.order if "@0.5" not in row},
                                                      run_dir / "per_genre_f1.png"),
             "Per-genre F1 of the main models, 95% intervals": plot_main_rows_f1(
                 payload["models"], run_dir / "per_genre_f1_main.png", list(dict.fromkeys(e.main_rows))),
             "Micro-averaged precision-recall (test)": plot_pr_curves(
                 test.labels, {r: e.test_scores[r] for r in e.order if r in e.test_scores}, run_dir / "pr_curves.png",
                 top=3)}
    gallery = gallery_records(test.movies, test.labels, {r: e.test_scores[r] for r in dict.fromkeys(e.main_rows)},
                              e.predictions, genres, main_row=e.headline, seed=e.seed)
    write_html_report(run_dir, payload, plots, gallery, "Genre prediction results")
    log_evaluation(run_dir, e.hparams, test.labels, e.test_scores, e.results, genres,
                   e.test_description, {row: None if e.data_root else run for row, run in e.runs.items()})
    row_scores = {**e.test_scores, **{row: e.test_scores[row.removesuffix(" @0.5")] for row in e.fixed_rows}}
    write_predictions(run_dir, predictions_table(test.movies, test.labels, genres, e.order, e.predictions, row_scores))
    atomic_write_text(run_dir / "thresholds.json", json.dumps(
        {row: dict(zip(genres, map(float, t))) for row, t in e.thresholds.items()}, indent=2))
