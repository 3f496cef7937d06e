"""`python -m movietitles.evaluate`: the genre-prediction table on the saved test split
(`--task generator`: the title generator's evaluation; `--task embeddings`: its embedding comparison).

One row per model — title (BERT), poster (CNN), each late-fusion combiner (Method 1), early
fusion (Method 2) — plus baselines fitted in the same run on the same split. Per-genre thresholds
are fitted on the validation split only (genre.thresholds); the Keras models are also shown at a
fixed 0.5. Every score carries a 95% bootstrap interval over the test movies, and rows are compared
in pairs on the same resamples (see evaluation/bootstrap.py and evaluation/comparisons.py).
Beside metrics.json, predictions.csv holds every row's probabilities and predicted genres per movie
(evaluation/predictions.py).

    python -m movietitles.evaluate                  # after python -m movietitles.train --task genres
    python -m movietitles.evaluate --eval-root ROOT --set data.source=manifest   # a new batch of films
    python -m movietitles.evaluate --task generator [--pairs pairs.csv]
    python -m movietitles.evaluate --task embeddings
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from movietitles.artefacts import (
    ensure_features, ensure_other_prepared, feature_store, finished_run, other_dataset_config, run_directory,
    task_inputs, without_poster_text)
from movietitles.cli import add_common_arguments, add_deprecated_flag, entry_point
from movietitles.config import config_from_args, with_overrides, write_config
from movietitles.encoders.text import finetune_settings
from movietitles.evaluation import baselines, comparisons, late_fusion, poster_words
from movietitles.evaluation.bootstrap import Bootstrap
from movietitles.evaluation.genre_report import GenreEvaluation, write_genre_evaluation
from movietitles.evaluation.metrics import multilabel_metrics
from movietitles.evaluation.other_data import without_overlap
from movietitles.evaluation.thresholds import STRATEGIES, fit_thresholds, out_of_sample_f1, predict
from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE
from movietitles.features.pipeline import Features, load_split
from movietitles.log import setup_logging
from movietitles.models.genre_runs import GENRE_TASKS, SUMMARY_FILE, load_genre_run, model_inputs, predict_scores
from movietitles.naming import evaluation_name
from movietitles.settings import GenreSettings, genre_hparams

log = logging.getLogger("movietitles.evaluate")

MODEL_ROWS = {"title": "title (BERT)", "poster": "poster (CNN)", "fusion": "early fusion (Method 2)"}
# The rows of models that also read the poster's words (genre.models.<task>.poster_text), and of the same models
# without them (the runs of the config with poster_text off, shown when trained: `train --task genres` trains them).
WORDS_MODEL_ROWS = {"poster": "poster (CNN + words)", "fusion": "early fusion (Method 2) + poster words"}
WITHOUT_WORDS_ROWS = {"poster": "poster (CNN), picture only", "fusion": "early fusion (Method 2), without poster words"}
# A fair control: the title model trained only on the movies with posters (what the poster model sees).
CONTROL_ROW = "title (BERT), trained on poster movies only"
LEARNED_ROW = "late fusion: learned"
STRATEGY_ROWS = (*MODEL_ROWS.values(), "late fusion: product", LEARNED_ROW, "baseline: TF-IDF logreg (title)",
                 "baseline: logreg on poster embedding", "baseline: logreg on title+poster embeddings")


def model_scores(model, features: Features) -> np.ndarray:
    return predict_scores(model, model_inputs(model, features))


def stacked(features: Features, names: list[str]) -> np.ndarray:
    return np.concatenate([features.inputs[name] for name in names], axis=1)


def modality(row: str) -> str | None:
    """title, poster or fusion: what a row's predictions are made from (None: constant baselines)."""
    if row in ("baseline: label prior", "baseline: Comedy + Drama"):
        return None
    if "fusion" in row or "title+poster" in row:
        return comparisons.FUSION
    return comparisons.TITLE if "title" in row.lower() else comparisons.POSTER


def model_rows(config: dict) -> dict[str, str]:
    """Each genre task's row name under `config`: MODEL_ROWS, or WORDS_MODEL_ROWS for a model reading poster text."""
    return {task: WORDS_MODEL_ROWS[task] if POSTER_TEXT in task_inputs(config, task) else row
            for task, row in MODEL_ROWS.items()}


def without_words_runs(config: dict) -> dict[str, Path]:
    """Row -> trained run of each model that reads poster text, with poster_text off (where it is trained)."""
    runs = {}
    for task, row in WITHOUT_WORDS_ROWS.items():
        if POSTER_TEXT in task_inputs(config, task):
            run_dir = run_directory(without_poster_text(config, task), task)
            if (run_dir / SUMMARY_FILE).exists():
                runs[row] = run_dir
    return runs


def evaluation_directory(config: dict, data_root: str | None = None, keep_overlap: bool = False) -> Path:
    """`<genre.runs_dir>/evaluation-<hash of the config and the data evaluated on>`."""
    return Path(config["genre"]["runs_dir"]) / evaluation_name(config, data_root, keep_overlap)


def evaluate_genres(config: dict, data_root: str | None = None, keep_overlap: bool = False) -> Path:
    """The genre evaluation of `config`'s trained models on its test split (or every film of `data_root`),
    computed, then written to its folder (returned)."""
    started = time.perf_counter()
    evaluation = compute_genre_evaluation(config, data_root, keep_overlap)
    run_dir = evaluation_directory(config, data_root, keep_overlap)
    write_config(config, run_dir)
    write_genre_evaluation(evaluation, run_dir, seconds=time.perf_counter() - started)
    log.info("evaluation written to %s in %.0f s", run_dir, time.perf_counter() - started)
    return run_dir


def load_target(config: dict, data_root: str | None, keep_overlap: bool = False,
                kinds=(TITLE, POSTER)) -> tuple[Features, str, dict | None]:
    """(the movies to evaluate on, with the `kinds` of features, their description, the overlap summary for the
    report or None): the test split, or every labelled film of `data_root` (prepared and embedded once)."""
    if data_root is None:
        return load_split(feature_store(config), "test", kinds), "test split", None
    other = other_dataset_config(config, data_root)
    ensure_other_prepared(other)
    ensure_features(other, kinds)
    target = load_split(feature_store(other), "all", kinds)
    return without_overlap(target, config["data"]["prepared_dir"], data_root, keep_overlap)


def compute_genre_evaluation(config: dict, data_root: str | None = None, keep_overlap: bool = False) -> GenreEvaluation:
    """Every row's validation and test scores, thresholds fitted on validation, test metrics with bootstrap
    intervals, the paired comparisons and the answer; nothing is written."""
    gcfg = config["genre"]
    threshold_settings = GenreSettings.from_config(config).thresholds
    store = feature_store(config)
    rows = model_rows(config)
    if config["evaluation"].get("poster_text") and rows["poster"] != MODEL_ROWS["poster"]:
        raise ValueError("evaluation.poster_text: its rows combine the poster model's picture with the words, but with "
                         "genre.models.poster.poster_text the poster model reads the words itself: set one of the two")
    runs = {rows[task]: finished_run(config, task) for task in GENRE_TASKS}  # before any work
    kinds = tuple(dict.fromkeys(kind for task in GENRE_TASKS for kind in (TITLE, POSTER, *task_inputs(config, task))))
    val = load_split(store, "validation", kinds)
    test, test_description, overlap = load_target(config, data_root, keep_overlap, kinds)
    if not len(test):
        raise ValueError(f"no labelled movie with a poster to evaluate on ({test_description})")
    genres = val.genres

    val_scores, test_scores, fixed_rows, saw = {}, {}, {}, {}
    control = with_overrides(config, {"genre.title_corpus": False})
    # With a fine-tuned title encoder the control would need its own (train.py makes none): no control row.
    control_run = run_directory(control, "title")
    if finetune_settings(config["encoders"]["text"]) is None and (control_run / SUMMARY_FILE).exists():
        runs[CONTROL_ROW] = control_run
    runs.update(without_words_runs(config))
    for row, run_dir in runs.items():
        model, _, summary = load_genre_run(run_dir)
        val_scores[row], test_scores[row] = model_scores(model, val), model_scores(model, test)
        if row in rows.values():
            fixed_rows[f"{row} @0.5"] = predict(test_scores[row], 0.5)
        saw[row] = (f"{summary['training_movies']} training movies "
                    f"({summary['training_title_only_movies']} of them title-only), inputs {summary['inputs']}"
                    + (f", an ensemble of {len(summary['seeds'])} seeds" if len(summary.get("seeds", [])) > 1 else ""))

    title, poster = rows["title"], rows["poster"]
    for how in late_fusion.COMBINERS:
        row = f"late fusion: {how}"
        val_scores[row] = late_fusion.fuse(val_scores[title], val_scores[poster], how)
        test_scores[row] = late_fusion.fuse(test_scores[title], test_scores[poster], how)
    # Learned on validation: its validation scores are out-of-fold, so thresholds see unseen scores.
    pair = [val_scores[title], val_scores[poster]]
    val_scores[LEARNED_ROW] = late_fusion.cross_fitted_fusion(pair, val.labels, seed=config["seed"])
    test_scores[LEARNED_ROW] = late_fusion.LearnedFusion().fit(pair, val.labels).predict(
        [test_scores[title], test_scores[poster]])

    # Baselines, fitted on the training split only.
    train_both = load_split(store, "train", (TITLE, POSTER))
    train_titles = load_split(store, "train", (TITLE,), require_poster=not gcfg["title_corpus"])
    prior = baselines.label_prior_scores(train_both.labels, 1)[0]
    val_scores["baseline: label prior"] = np.tile(prior, (len(val), 1))
    test_scores["baseline: label prior"] = np.tile(prior, (len(test), 1))
    val_scores["baseline: TF-IDF logreg (title)"], test_scores["baseline: TF-IDF logreg (title)"] = \
        baselines.tfidf_logreg(train_titles.movies["title"].tolist(), train_titles.labels,
                               val.movies["title"].tolist(), test.movies["title"].tolist())
    saw["baseline: TF-IDF logreg (title)"] = f"{len(train_titles)} training titles"
    for row, names in (("baseline: logreg on title embedding", [TITLE]),
                       ("baseline: logreg on poster embedding", [POSTER]),
                       ("baseline: logreg on title+poster embeddings", [TITLE, POSTER])):
        fitted = baselines.embedding_logreg(stacked(train_both, names), train_both.labels)
        val_scores[row] = fitted.predict_proba(stacked(val, names))
        test_scores[row] = fitted.predict_proba(stacked(test, names))
        saw[row] = f"{len(train_both)} training movies with posters"

    reads_words = config["evaluation"].get("poster_text", False)
    if reads_words:  # the poster's printed words: a words row and their combinations with the picture and title
        target_config = config if data_root is None else other_dataset_config(config, data_root)
        for where in [config] + ([target_config] if target_config is not config else []):
            ensure_features(where, (POSTER_TEXT,))
        poster_words.poster_text_scores(config, target_config, train_both, val, test, val_scores, test_scores,
                                        title, poster, config["seed"])
        saw[poster_words.WORDS_ROW] = f"the OCR'd text of {len(train_both)} training posters"

    # Thresholds are fitted on validation only (test scores never reach fit_thresholds).
    thresholds = {row: fit_thresholds(val.labels, scores, threshold_settings.strategy, threshold_settings.shrinkage)
                  for row, scores in val_scores.items()}

    def out_of_sample(row, strategy):
        return out_of_sample_f1(val.labels, val_scores[row],
                                **{**threshold_settings.out_of_sample(config["seed"]), "strategy": strategy})

    strategies = {row: {strategy: out_of_sample(row, strategy) for strategy in STRATEGIES}
                  for row in val_scores if row in STRATEGY_ROWS}
    validation = {row: strategies[row][threshold_settings.strategy] if row in strategies
                  else out_of_sample(row, threshold_settings.strategy) for row in val_scores}
    predictions = {row: predict(test_scores[row], thresholds[row]) for row in test_scores}
    tuned_title, tuned_poster = predictions[title], predictions[poster]
    predictions["late fusion: union"] = late_fusion.union(tuned_title, tuned_poster)
    predictions["late fusion: intersection"] = late_fusion.intersection(tuned_title, tuned_poster)
    predictions.update(fixed_rows)
    predictions["baseline: Comedy + Drama"] = baselines.constant_prediction(["Comedy", "Drama"], genres, len(test))

    fusion_rows = [*(f"late fusion: {h}" for h in [*late_fusion.COMBINERS, "union", "intersection"]), LEARNED_ROW,
                   rows["fusion"], *([WITHOUT_WORDS_ROWS["fusion"]] if WITHOUT_WORDS_ROWS["fusion"] in runs else []),
                   *([poster_words.ALL_ROW] if reads_words else [])]
    word_rows = [poster_words.WORDS_ROW, poster_words.PICTURE_WORDS_ROW] if reads_words else []
    picture_only = [WITHOUT_WORDS_ROWS["poster"]] if WITHOUT_WORDS_ROWS["poster"] in runs else []
    order = [title, *([CONTROL_ROW] if CONTROL_ROW in runs else []), poster, *picture_only, *word_rows, *fusion_rows,
             *fixed_rows,
             *(r for r in predictions if r.startswith("baseline"))]
    results = {row: multilabel_metrics(test.labels, predictions[row], genres) for row in order}

    boot = Bootstrap.draw(test.labels, config["evaluation"]["bootstrap_resamples"], config["seed"])
    for row in order:
        boot.add(row, predictions[row])
        results[row]["ci"] = boot.intervals(row)
        for genre, interval in zip(genres, boot.per_genre_f1_intervals(row)):
            results[row]["per_genre"][genre]["f1_ci"] = [float(v) for v in interval]
    modalities = {row: modality(row) for row in order if "@0.5" not in row}
    paired = comparisons.compare_rows(boot, modalities, results, [title, poster])
    # The headline fusion row is chosen on validation (out-of-sample macro-F1), never on test.
    headline = max((r for r in fusion_rows if r in validation), key=lambda r: validation[r]["macro_f1"])
    answer = comparisons.answer(results, boot, title, poster, headline)
    if reads_words:
        answer += poster_words.answer_lines(boot, results, poster, LEARNED_ROW)
    reading = {rows[task]: row for task, row in WITHOUT_WORDS_ROWS.items() if row in runs}
    answer += poster_words.model_answer_lines(boot, results, reading)

    return GenreEvaluation(
        seed=config["seed"], threshold_strategy=threshold_settings.strategy, hparams=genre_hparams(config, ""),
        data_root=data_root, genres=genres, test=test, test_description=test_description,
        overlap=overlap, runs=runs, saw=saw, order=order, main_rows=[title, poster, headline, rows["fusion"]],
        headline=headline, test_scores=test_scores, predictions=predictions, fixed_rows=list(fixed_rows),
        thresholds=thresholds, results=results, validation=validation, strategies=strategies, comparisons=paired,
        answer=answer, bootstrap=boot)


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m movietitles.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--task", choices=["genres", "generator", "embeddings", "conditioning"], default="genres",
                        help="genres: the genre table; generator: the title generator; "
                             "embeddings / conditioning: train and compare the generator's embedding choices / "
                             "ways of reading the poster")
    parser.add_argument("--eval-root", metavar="ROOT",
                        help="evaluate on every movie of another raw dataset (read like data.root)")
    add_deprecated_flag(parser, "--data", "--eval-root", dest="eval_root", metavar="ROOT")
    parser.add_argument("--keep-overlap", action="store_true",
                        help="--eval-root: also evaluate on films the training split holds (same id, title or poster)")
    parser.add_argument("--pairs", metavar="CSV", help="generator: score a file of poster,title pairs")
    args = parser.parse_args(argv)
    setup_logging()
    config = config_from_args(args)
    if args.task == "genres":
        run_dir = evaluate_genres(config, args.eval_root, args.keep_overlap)
    else:
        from movietitles.evaluation import generator_report

        if args.pairs:
            print(generator_report.score_pairs(config, args.pairs).to_string(index=False))
            return
        if args.task in ("embeddings", "conditioning"):
            from movietitles import experiments

            compare = {"embeddings": experiments.compare_embeddings,
                       "conditioning": experiments.compare_conditioning}[args.task]
            run_dir, table = compare(config)
            print(table)
            print(f"written to {run_dir}")
            return
        run_dir = generator_report.evaluate_generator(config, args.eval_root)
    print((run_dir / "report.md").read_text())
    print(f"written to {run_dir}")


if __name__ == "__main__":
    sys.exit(main())
