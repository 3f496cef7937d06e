"""`python -m movietitles.generate --poster PATH [--genres Comedy,Romance] [--n 5] [--sampler top_p]`.

Titles for any poster image from the trained title generator of the config: the image is
embedded with the configured image encoder, then the decoder is sampled with a keras-hub sampler
from <s> until </s> (or `generator.max_len` subwords). Titles come out as BPEmb writes them:
lowercase, with digits as 0. Sampling lives in `movietitles.generator.sampling`.
"""

from __future__ import annotations

import argparse
import sys

from movietitles.config import add_config_arguments, config_from_args
from movietitles.features.poster_files import embed_poster_files
from movietitles.generator.runs import load_generator_run, run_directory
from movietitles.generator.sampling import (  # noqa: F401 (re-exported for scripts that import them from here)
    MAX_TEMPERATURE, MIN_TEMPERATURE, SAMPLERS, check_temperature, generate_titles, genre_vectors, sample_titles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movietitles.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--poster", required=True, nargs="+", metavar="PATH", help="poster image file(s)")
    parser.add_argument("--genres", help="comma-separated genre names (models trained with genres only)")
    parser.add_argument("--n", type=int, default=5, help="titles per poster (default 5)")
    parser.add_argument("--sampler", choices=SAMPLERS, help="default: generator.sampling.sampler of the config")
    parser.add_argument("--temperature", type=float, help="default: generator.sampling.temperature of the config")
    parser.add_argument("--seed", type=int, help="makes top_k/top_p sampling reproducible")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    try:
        run = load_generator_run(run_directory(config))
        vectors = embed_poster_files(run.config["encoders"]["image"], args.poster)
        genres = None
        if args.genres:
            names = [g.strip() for g in args.genres.split(",") if g.strip()]
            genres = [names] * len(args.poster)
        options = {**(config["generator"].get("sampling") or {}),  # this config's, not the run's
                   **{k: v for k, v in (("sampler", args.sampler), ("temperature", args.temperature)) if v is not None}}
        titles = generate_titles(run, vectors, genres, n=args.n, seed=args.seed, **options)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path, poster_titles in zip(args.poster, titles):
        if len(args.poster) > 1:
            print(f"{path}:")
        for title in poster_titles:
            print(f"  {title}" if len(args.poster) > 1 else title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
