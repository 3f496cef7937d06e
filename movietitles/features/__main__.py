"""`python -m movietitles.features`: compute and cache title and poster embeddings (and, asked, poster text).

    python -m movietitles.features                       # everything, resuming where a run stopped
    python -m movietitles.features --kinds poster --shard 0 --num-shards 4   # one of 4 workers
    python -m movietitles.features --kinds poster_text   # OCR of every poster (`train --task generator` does it too)
"""

from __future__ import annotations

import argparse
import sys

from movietitles.artefacts import feature_store
from movietitles.cli import add_common_arguments, entry_point
from movietitles.config import config_from_args, write_config
from movietitles.features.extract import KINDS, POSTER, TITLE, extract_features
from movietitles.log import setup_logging
from movietitles.training.text_finetune import ensure_finetuned_text_encoder


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movietitles.features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=[TITLE, POSTER],
                        help="poster_text (OCR, ~40 min for 19,670 posters on 2 cores) is computed only when asked")
    parser.add_argument("--shard", type=int, default=0, help="index of this worker (0-based)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of workers filling the cache")
    args = parser.parse_args(argv)
    if not 0 <= args.shard < args.num_shards:
        parser.error(f"--shard must be in [0, --num-shards={args.num_shards}), got {args.shard}")
    setup_logging()
    config = config_from_args(args)
    if TITLE in args.kinds:
        ensure_finetuned_text_encoder(config)  # encoders.text.finetune: the title features read the fine-tuned encoder
    for directory in extract_features(feature_store(config), args.kinds, args.shard, args.num_shards).values():
        write_config(config, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
