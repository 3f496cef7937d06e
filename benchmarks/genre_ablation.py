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
from movietitles.config import load_config  # noqa: E402
from movietitles.experiments import compare_genre_variants  # noqa: E402
from movietitles.log import setup_logging  # noqa: E402
from movietitles.markdown import markdown_table  # noqa: E402
from movietitles.runtime import cpu_model  # noqa: E402


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise SystemExit(f"error: --variant {text!r} is not NAME:TASK[:KEY=VALUE;...]")
    overrides = [o.strip() for o in parts[2].split(";") if o.strip()] if len(parts) == 3 else []
    return parts[0], parts[1], overrides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, help="NAME:TASK[:KEY=VALUE;KEY=VALUE]")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    setup_logging()  # a line per variant as it is scored
    rows, test_movies = compare_genre_variants(load_config(), [parse_variant(text) for text in args.variant],
                                                 args.resamples)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print(f"\nCPU: {cpu_model()}; test movies: {test_movies}; {args.resamples} bootstrap resamples\n")
    print(markdown_table(columns, [[row.get(c, "") for c in columns] for row in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
