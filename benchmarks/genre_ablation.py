"""Ablation table of trained genre models: validation (how they were chosen) and test (with intervals).

    python benchmarks/genre_ablation.py \
        --variant "title:title" \
        --variant "title, fine-tuned MiniLM (6 layers):title:encoders.text.finetune.layers=6" \
        --variant "poster:poster" --variant "poster, Lite2:poster:encoders.image.name=efficientnet_lite2"

Each variant is `NAME:TASK[:KEY=VALUE;KEY=VALUE...]` (overrides of the default config, values parsed as
YAML); its run must be trained already (`python -m movietitles.train --task TASK --set KEY=VALUE ...`).
Per variant: validation macro/micro-F1 out of sample (thresholds tuned on one half, scored on the other:
the score runs are chosen by), and test macro/micro-F1 with the run's validation thresholds, 95%
bootstrap intervals, and the paired difference against the first variant of the same task (the same
resamples of the test movies).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))  # this checkout's package, even where another one is installed

import movietitles  # noqa: E402,F401  before TensorFlow
import numpy as np  # noqa: E402

from movietitles.config import load_config  # noqa: E402
from movietitles.evaluation.bootstrap import (  # noqa: E402
    percentile_interval, resample_counts, resampled_metrics, two_sided_p_value)
from movietitles.evaluation.thresholds import out_of_sample_f1, predict  # noqa: E402
from movietitles.markdown import markdown_table  # noqa: E402
from movietitles.models.genre_runs import finished_run, load_genre_run, model_inputs, predict_scores  # noqa: E402
from movietitles.runtime import cpu_model  # noqa: E402
from movietitles.training.genre import evaluation_features  # noqa: E402


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise SystemExit(f"error: --variant {text!r} is not NAME:TASK[:KEY=VALUE;...]")
    overrides = [o.strip() for o in parts[2].split(";") if o.strip()] if len(parts) == 3 else []
    return parts[0], parts[1], overrides


def interval(value: float, values) -> str:
    lo, hi = percentile_interval(values)
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, help="NAME:TASK[:KEY=VALUE;KEY=VALUE]")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rows, first_of_task = [], {}
    counts = None
    for name, task, overrides in map(parse_variant, args.variant):
        config = load_config(None, overrides)
        model, thresholds, _ = load_genre_run(finished_run(config, task))
        tcfg = config["genre"]["thresholds"]
        val, test = (evaluation_features(config, split, task) for split in ("validation", "test"))
        oos = out_of_sample_f1(val.labels, predict_scores(model, model_inputs(model, val)), tcfg["strategy"],
                               tcfg["repeats"], config["seed"], shrinkage=tcfg["shrinkage"])
        predicted = predict(predict_scores(model, model_inputs(model, test)), thresholds)
        counts = resample_counts(len(test), args.resamples, seed=0) if counts is None else counts
        point = resampled_metrics(test.labels, predicted, np.ones((1, len(test))))  # the test set itself
        resampled = resampled_metrics(test.labels, predicted, counts)
        row = {"variant": name, "validation macro-F1 (oos)": f"{oos['macro_f1']:.3f}",
               "validation micro-F1 (oos)": f"{oos['micro_f1']:.3f}",
               "test macro-F1": interval(point["macro_f1"][0], resampled["macro_f1"]),
               "test micro-F1": interval(point["micro_f1"][0], resampled["micro_f1"])}
        if task in first_of_task:
            base_point, base = first_of_task[task]
            for metric in ("macro_f1", "micro_f1"):
                diff = resampled[metric] - base[metric]
                lo, hi = percentile_interval(diff)
                row[f"test {metric.replace('_f1', '-F1')} vs {task} row 1"] = (
                    f"{point[metric][0] - base_point[metric][0]:+.3f} [{lo:+.3f}, {hi:+.3f}], "
                    f"p {two_sided_p_value(diff):.3f}")
        else:
            first_of_task[task] = (point, resampled)
        rows.append(row)
        print(f"{name}: {row}", flush=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print(f"\nCPU: {cpu_model()}; test movies: {int(counts.shape[1])}; {args.resamples} bootstrap resamples\n")
    print(markdown_table(columns, [[row.get(c, "") for c in columns] for row in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
