"""`python -m movietitles.evaluate`: the genre-prediction table on the saved test split
(`--task generator`: the title generator's evaluation; `--task embeddings`: its embedding comparison).

One row per model — title (BERT), poster (CNN), each late-fusion combiner (Method 1), early
fusion (Method 2) — plus baselines fitted in the same run on the same split. Thresholds are
tuned per genre on the validation split; the Keras models are also shown at a fixed 0.5.

    python -m movietitles.evaluate                  # after python -m movietitles.train --task genres
    python -m movietitles.evaluate --data ROOT --set data.source=manifest   # a new batch of films
    python -m movietitles.evaluate --task generator [--pairs pairs.csv]
    python -m movietitles.evaluate --task embeddings
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import yaml

from movietitles.config import add_config_arguments, config_from_args, with_overrides, write_config
from movietitles.log import setup_logging
from movietitles.evaluation import baselines, late_fusion
from movietitles.evaluation.metrics import multilabel_metrics
from movietitles.evaluation.html_report import gallery_records, write_html_report
from movietitles.evaluation.plots import plot_main_rows_f1, plot_per_genre_f1, plot_pr_curves
from movietitles.evaluation.report import write_report
from movietitles.evaluation.thresholds import predict, tune_thresholds
from movietitles.features.extract import POSTER, TITLE
from movietitles.features.pipeline import Features, load_split
from movietitles.tensorboard_logs import log_evaluation
from movietitles.training.genre import GENRE_TASKS, load_genre_run, run_directory
from movietitles.training.loop import predict_scores

log = logging.getLogger("movietitles.evaluate")

MODEL_ROWS = {"title": "title (BERT)", "poster": "poster (CNN)", "fusion": "early fusion (Method 2)"}


def other_dataset_config(config: dict, data_root: str) -> dict:
    """The config that prepares and embeds another dataset beside the default one."""
    name = Path(data_root).resolve().name
    prepared_dir = str(Path(config["data"]["prepared_dir"]).parent / f"eval-{name}")
    return with_overrides(config, {"data.root": data_root, "data.prepared_dir": prepared_dir,
                                   "features.cache_dir": f"{prepared_dir}/features"})


def load_target(config: dict, data_root: str | None) -> tuple[Features, str]:
    if data_root is None:
        return load_split(config, "test", (TITLE, POSTER)), "test split"
    from movietitles.train import ensure_features

    other = other_dataset_config(config, data_root)
    ensure_features(other, (TITLE, POSTER))
    return load_split(other, "all", (TITLE, POSTER)), f"every labelled movie with a poster in {data_root}"


def model_scores(model, features: Features) -> np.ndarray:
    return predict_scores(model, {tensor.name: features.inputs[tensor.name] for tensor in model.inputs})


def stacked(features: Features, names: list[str]) -> np.ndarray:
    return np.concatenate([features.inputs[name] for name in names], axis=1)


def evaluate_genres(config: dict, data_root: str | None = None) -> Path:
    started = time.perf_counter()
    gcfg = config["genre"]
    val = load_split(config, "validation", (TITLE, POSTER))
    test, test_description = load_target(config, data_root)
    if not len(test):
        raise ValueError(f"no labelled movie with a poster to evaluate on ({test_description})")
    genres = val.genres

    val_scores, test_scores, fixed_rows, saw = {}, {}, {}, {}
    for task in GENRE_TASKS:
        model, thresholds, summary = load_genre_run(run_directory(config, task))
        row = MODEL_ROWS[task]
        val_scores[row], test_scores[row] = model_scores(model, val), model_scores(model, test)
        fixed_rows[f"{row} @0.5"] = predict(test_scores[row], 0.5)
        saw[row] = (f"{summary['training_movies']} training movies "
                    f"({summary['training_title_only_movies']} of them title-only), inputs {summary['inputs']}")

    title, poster = MODEL_ROWS["title"], MODEL_ROWS["poster"]
    for how in late_fusion.COMBINERS:
        row = f"late fusion: {how}"
        val_scores[row] = late_fusion.fuse(val_scores[title], val_scores[poster], how)
        test_scores[row] = late_fusion.fuse(test_scores[title], test_scores[poster], how)

    # Baselines, fitted on the training split only.
    train_both = load_split(config, "train", (TITLE, POSTER))
    train_titles = load_split(config, "train", (TITLE,), require_poster=not gcfg["title_corpus"])
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

    thresholds = {row: tune_thresholds(val.labels, scores) for row, scores in val_scores.items()}
    predictions = {row: predict(test_scores[row], thresholds[row]) for row in test_scores}
    tuned_title, tuned_poster = predictions[title], predictions[poster]
    predictions["late fusion: union"] = late_fusion.union(tuned_title, tuned_poster)
    predictions["late fusion: intersection"] = late_fusion.intersection(tuned_title, tuned_poster)
    predictions.update(fixed_rows)
    predictions["baseline: Comedy + Drama"] = baselines.constant_prediction(["Comedy", "Drama"], genres, len(test))

    order = [title, poster, *(f"late fusion: {h}" for h in [*late_fusion.COMBINERS, "union", "intersection"]),
             MODEL_ROWS["fusion"], *fixed_rows, *(r for r in predictions if r.startswith("baseline"))]
    results = {row: multilabel_metrics(test.labels, predictions[row], genres) for row in order}

    digest = hashlib.sha256(yaml.safe_dump([config, data_root], sort_keys=True).encode()).hexdigest()[:10]
    run_dir = Path(gcfg["runs_dir"]) / f"evaluation-{digest}"
    write_config(config, run_dir)
    notes = {
        "test set": f"{len(test)} movies: {test_description}",
        "thresholds": "per genre, tuned on the validation split to maximise that genre's F1; "
                      "rows marked @0.5 use a fixed 0.5",
        "late fusion": "mean, product and max of the title and poster models' scores, each normalised so that "
                       "P(g) + P(not g) = 1; union and intersection of their tuned predicted sets",
        "data each model saw": saw,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_report(run_dir, results, len(test), notes=notes)
    payload = json.loads((run_dir / "metrics.json").read_text())
    main = [title, poster, "late fusion: mean", MODEL_ROWS["fusion"]]
    plots = {"Per-genre F1 (test)": plot_per_genre_f1({row: results[row] for row in order if "@0.5" not in row},
                                                      run_dir / "per_genre_f1.png"),
             "Micro-averaged precision-recall (test)": plot_pr_curves(test.labels, test_scores,
                                                                      run_dir / "pr_curves.png", top=3)}
    if any("f1_ci" in m for m in payload["models"][title]["per_genre"].values()):
        plots["Per-genre F1 of the main models, 95% intervals"] = plot_main_rows_f1(
            payload["models"], run_dir / "per_genre_f1_main.png", main)
    gallery = gallery_records(test.movies, test.labels, {r: test_scores[r] for r in main}, predictions, genres,
                              main_row=MODEL_ROWS["fusion"], seed=config["seed"])
    write_html_report(run_dir, payload, plots, gallery, "Genre prediction results")
    log_evaluation(run_dir, config, test.labels, test_scores, results, genres, test_description,
                   {MODEL_ROWS[t]: None if data_root else run_directory(config, t) for t in GENRE_TASKS})
    (run_dir / "thresholds.json").write_text(json.dumps(
        {row: dict(zip(genres, map(float, t))) for row, t in thresholds.items()}, indent=2))
    log.info("evaluation written to %s in %.0f s", run_dir, time.perf_counter() - started)
    return run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m movietitles.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--task", choices=["genres", "generator", "embeddings"], default="genres",
                        help="genres: the genre table; generator: the title generator; "
                             "embeddings: train and compare the generator's embedding choices")
    parser.add_argument("--data", metavar="ROOT", help="evaluate on every movie of another dataset")
    parser.add_argument("--pairs", metavar="CSV", help="generator: score a file of poster,title pairs")
    args = parser.parse_args(argv)
    setup_logging()
    config = config_from_args(args)
    if args.task == "genres":
        run_dir = evaluate_genres(config, args.data)
    else:
        from movietitles.evaluation import generator_report

        if args.pairs:
            print(generator_report.score_pairs(config, args.pairs).to_string(index=False))
            return
        if args.task == "embeddings":
            run_dir, table = generator_report.compare_embeddings(config)
            print(table)
            print(f"written to {run_dir}")
            return
        run_dir = generator_report.evaluate_generator(config, args.data)
    print((run_dir / "report.md").read_text())
    print(f"written to {run_dir}")


if __name__ == "__main__":
    main()
