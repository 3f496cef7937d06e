"""`python -m movietitles.generate --poster PATH [--genres Comedy Romance] [--n 5] [--sampler top_p]`.

Titles for any poster image from the trained title generator of the config: the image is
embedded with the configured image encoder, then the decoder is sampled with a keras-hub sampler
from <s> until </s> (or `generator.max_len` subwords). Titles come out as BPEmb writes them:
lowercase, with digits as 0. Sampling lives in `movietitles.generator.sampling`.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from movietitles.cli import UserError, add_common_arguments, entry_point, warn_deprecated
from movietitles.config import config_from_args
from movietitles.data.poster_file import read_poster_file
from movietitles.features.poster_files import embed_poster_files, read_poster_text
from movietitles.generator.data import text_ids
from movietitles.generator.runs import load_generator_run, run_directory
from movietitles.generator.sampling import (  # noqa: F401 (re-exported for scripts that import them from here)
    MAX_TEMPERATURE, MIN_TEMPERATURE, SAMPLERS, check_temperature, generate_titles, genre_vectors, sample_titles,
    sampling_settings)
from movietitles.settings import poster_size_limits


def serving_request(paths, texts, temperature: float, genres=None, seed: int | None = None) -> dict:
    """The TF Serving REST body (`POST /v1/models/title_generator:predict`) for these poster files; `genres`: one
    multi-hot list per poster, for a generator trained with them."""
    instances = []
    for row, path in enumerate(paths):
        instance = {"poster": {"b64": base64.b64encode(Path(path).read_bytes()).decode("ascii")},
                    "temperature": float(temperature)}
        if texts is not None:
            instance["poster_text"] = texts[row]
        if genres:
            instance["genres"] = genres[row]
        instances.append(instance)
    # The seed is one scalar for the request, so the columnar form ("inputs") carries it.
    if seed is None:
        return {"instances": instances}
    columns = {name: [instance[name] for instance in instances] for name in instances[0]}
    return {"inputs": {**columns, "seed": int(seed)}}


def genre_names(values: list[str]) -> list[str]:
    """`--genres Comedy Romance` (or `Comedy|Romance`, as data files write them); `Comedy,Romance` is deprecated."""
    if any("," in value for value in values):
        warn_deprecated("--genres with commas", "spaces: --genres Comedy Romance")
    return [name.strip() for value in values for name in value.replace(",", "|").split("|") if name.strip()]


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movietitles.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--poster", required=True, nargs="+", metavar="PATH", help="poster image file(s)")
    parser.add_argument("--genres", nargs="+", metavar="GENRE",
                        help="genre names, e.g. --genres Comedy Romance (models trained with genres only)")
    parser.add_argument("--n", type=int, help="titles per poster (default: generator.sampling.n of the config)")
    parser.add_argument("--sampler", choices=SAMPLERS, help="default: generator.sampling.sampler of the config")
    parser.add_argument("--temperature", type=float, help="default: generator.sampling.temperature of the config")
    parser.add_argument("--seed", type=int, help="makes top_k/top_p sampling reproducible (the exported title "
                        "generator gives the same top_p titles for the same seed)")
    parser.add_argument("--request", action="store_true",
                        help="print the TF Serving REST request for the exported title generator instead (the poster "
                             "bytes, the text OCR reads on them, temperature, genres and seed), and sample nothing")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    genres = [genre_names(args.genres)] * len(args.poster) if args.genres else None
    max_pixels, max_bytes = poster_size_limits(config["encoders"]["image"])
    for path in args.poster:  # every poster is checked before any model is loaded
        read_poster_file(path, max_bytes, max_pixels)
    run = load_generator_run(run_directory(config))
    command_line = {"n": args.n, "sampler": args.sampler, "temperature": args.temperature}
    # This config's sampling settings, not the run's, then the command line's.
    sampling = sampling_settings(config["generator"]["sampling"], command_line)
    try:
        texts = read_poster_text(run.config, args.poster)
        if args.request:
            multi_hot = genres and genre_vectors(genres, run.config["data"]["genres"], len(args.poster)).tolist()
            print(json.dumps(serving_request(args.poster, texts, sampling["temperature"], multi_hot, args.seed)))
            return 0
        vectors = embed_poster_files(run.config["encoders"]["image"], args.poster)
        poster_text = None if texts is None else text_ids(
            texts, run.tokenizer, run.config["generator"]["poster_text"]["max_tokens"])
        titles = generate_titles(run, vectors, genres, seed=args.seed, poster_text=poster_text, **sampling)
    except ValueError as err:  # a bad poster, genre or sampling setting
        raise UserError(str(err)) from None
    for path, poster_titles in zip(args.poster, titles):
        if len(args.poster) > 1:
            print(f"{path}:")
        for title in poster_titles:
            print(f"  {title}" if len(args.poster) > 1 else title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
