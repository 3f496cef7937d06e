"""`python -m movietitles.train --task {title,poster,fusion,generator}`.

Runs the whole path from the configured raw data: prepares the dataset (once), computes the
cached embeddings (resuming where a run stopped), then trains the task's model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from movietitles.artefacts import ensure_features, ensure_prepared, run_directory, task_inputs, without_poster_text
from movietitles.cli import add_common_arguments, entry_point
from movietitles.config import config_from_args, with_overrides
from movietitles.encoders.text import finetune_settings
from movietitles.features.extract import POSTER_TEXT, TITLE
from movietitles.log import setup_logging
from movietitles.models.genre_runs import GENRE_TASKS, SUMMARY_FILE
from movietitles.training.distribute import STRATEGIES, make_strategy
from movietitles.training.generator import train_generator
from movietitles.training.genre import train_genre_model
from movietitles.training.text_finetune import ensure_finetuned_text_encoder


def answer(config: dict, run_dirs: dict, argv: list[str]) -> str:
    """What the job found: each model's validation score (what it means), where it and its logs are, what next."""
    lines = []
    for task, run_dir in run_dirs.items():
        if not (run_dir / SUMMARY_FILE).exists():  # a worker of a multi-worker run: the chief keeps the model
            lines.append(f"{task} model (this worker's copy): {run_dir}")
            continue
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        score = summary.get("best_val_oos_macro_f1", summary.get("validation_oos_macro_f1"))
        lines += [f"{task} model: {run_dir}",
                  f"  validation macro-F1 {score:.3f}: out of sample (per-genre thresholds tuned on one half of the "
                  f"{summary['validation_movies']:,} validation films, scored on the other; the mean of "
                  f"{config['genre']['thresholds']['repeats']} random halvings)",
                  f"  TensorBoard logs: {run_dir / 'logs'}" if (run_dir / "logs").exists() else
                  f"  TensorBoard logs: in each of its {len(summary.get('members', []))} member runs "
                  f"({', '.join(Path(m).name for m in summary.get('members', []))})"]
    runs_dir = config["genre"]["runs_dir"]
    every_model = all((run_directory(config, task) / SUMMARY_FILE).exists() for task in GENRE_TASKS)
    evaluate = "python -m movietitles.evaluate" if every_model else \
        "python -m movietitles.train --task genres && python -m movietitles.evaluate"
    same = any(a.startswith(("--config", "--set")) for a in argv)
    lines += ["next" + (" (with this job's --config/--set options):" if same else ":"),
              f"  {evaluate}   # the test split: every model, late fusion and baselines, with 95% intervals "
              "(report.html, metrics.json, predictions.csv)",
              "  python -m movietitles.export   # TF Serving SavedModels (saved_models/genre_*)",
              f"  tensorboard --logdir {runs_dir}   # training curves"]
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movietitles.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--task", required=True, choices=sorted([*GENRE_TASKS, "generator"]) + ["genres"],
                        help="genres = title, poster and fusion models")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="tf.distribute strategy; multi_worker reads TF_CONFIG")
    parser.add_argument("--fresh", action="store_true", help="discard an earlier run of the same config")
    args = parser.parse_args(argv)
    if args.task == "generator" and args.strategy != "default":
        parser.error("the title generator trains with the default strategy only")
    setup_logging()
    # Collective ops (multi_worker) must be set up before TensorFlow does any other work.
    strategy = make_strategy(args.strategy)
    config = config_from_args(args)
    if args.task == "generator":
        print(f"generator model: {train_generator(config, fresh=args.fresh)}")
        return 0
    tasks = list(GENRE_TASKS) if args.task == "genres" else [args.task]
    kinds = sorted({kind for task in tasks for kind in task_inputs(config, task)})
    if TITLE in kinds:  # encoders.text.finetune: the genre-fine-tuned encoder first (once), then its title features
        ensure_prepared(config)
        ensure_finetuned_text_encoder(config)
    ensure_features(config, kinds)
    run_dirs = {task: train_genre_model(config, task, strategy, args.fresh) for task in tasks}
    if args.task == "genres":  # the evaluation compares each model reading poster words with the same without them
        for task in tasks:
            if POSTER_TEXT in task_inputs(config, task):
                without = train_genre_model(without_poster_text(config, task), task, strategy, args.fresh)
                print(f"{task} model without poster words: {without}")
    if args.task == "genres" and config["genre"]["title_corpus"]:
        # The control row of the evaluation: the title model on the movies the poster model sees.
        if finetune_settings(config["encoders"]["text"]) is not None:
            print("title model, poster movies only (control): not trained: with encoders.text.finetune it would need "
                  "an encoder fine-tuned on those movies only, and the evaluation shows no control row")
        else:
            control = with_overrides(config, {"genre.title_corpus": False})
            print(f"title model, poster movies only (control): "
                  f"{train_genre_model(control, 'title', strategy, args.fresh)}")
    print(answer(config, run_dirs, sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
