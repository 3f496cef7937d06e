"""Feature-extraction throughput on the real data: posters/s and titles/s, input pipeline vs model.

    python benchmarks/features.py [--posters 2048] [--titles 8192] [--set encoders.image.resize=pad]

Prints the figures; targets on the 2-core CPU machine: >= 150 posters/s with EfficientNet-Lite0
including JPEG decoding and resizing, >= 600 titles/s with the default BERT, the input pipeline
faster than the model, per-batch padding >= 3x faster than padding to 128.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from movietitles.config import add_config_arguments, config_from_args
from movietitles.data.titles import clean_title
from movietitles.encoders.bert_export import ensure_default_text_models
from movietitles.encoders.image import build_image_encoder
from movietitles.encoders.text import TextEncoder, build_text_encoder
from movietitles.features.extract import embed_posters, poster_batches


def timed(fn, repeat: int = 1) -> float:
    fn()  # warm-up: tracing, allocation
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def poster_figures(config: dict, count: int) -> None:
    cfg = config["encoders"]["image"]
    paths = sorted(str(p) for p in (Path(config["data"]["root"]) / "posters").glob("*.jpg"))[:count]
    if not paths:
        raise SystemExit(f"no posters under {config['data']['root']}/posters")
    encoder = build_image_encoder(cfg)
    batch_size = cfg["batch_size"]
    end_to_end = timed(lambda: embed_posters(encoder, paths, batch_size))
    pipeline_only = timed(lambda: sum(1 for _ in poster_batches(encoder, paths, batch_size)))
    batch = next(iter(poster_batches(encoder, paths, batch_size)))
    steps = max(1, len(paths) // batch_size)
    forward = timed(lambda: [encoder.embed(batch) for _ in range(steps)])
    n_forward = steps * batch_size
    print(f"posters: {encoder.cache_key}, {len(paths)} posters, batch {batch_size}")
    print(f"  end to end (read + decode + resize + model): {len(paths) / end_to_end:8.1f} posters/s")
    print(f"  input pipeline alone (read + decode + resize): {len(paths) / pipeline_only:8.1f} posters/s")
    print(f"  bare forward pass:                           {n_forward / forward:8.1f} posters/s")


def title_figures(config: dict, count: int) -> None:
    cfg = config["encoders"]["text"]
    ensure_default_text_models(cfg)
    movies = pd.read_csv(Path(config["data"]["root"]) / "movielens" / "movies.csv", usecols=["title"])
    rng = np.random.default_rng(0)
    titles = [clean_title(t).title for t in rng.choice(movies["title"].to_numpy(), count, replace=False)]
    encoder = build_text_encoder(cfg)
    batch_size = cfg["batch_size"]
    per_batch = timed(lambda: encoder.embed(titles))
    unsorted = timed(lambda: [encoder.encode(titles[i:i + batch_size]) for i in range(0, count, batch_size)])
    padded_128 = TextEncoder(cfg["handle"], cfg["preprocess_handle"], cfg["pooling"], batch_size, pad_multiple=128)
    n_128 = min(count, 4 * batch_size)
    to_128 = timed(lambda: padded_128.embed(titles[:n_128]))
    preprocess = timed(lambda: [encoder.preprocess(titles[i:i + batch_size]) for i in range(0, count, batch_size)])
    print(f"titles: {encoder.cache_key}, {count} titles, batch {batch_size}")
    print(f"  length-sorted batches, padded per batch (the cache's way): {count / per_batch:8.1f} titles/s")
    print(f"  batches in random order, padded per batch:                 {count / unsorted:8.1f} titles/s")
    print(f"  batches padded to 128:                                     {n_128 / to_128:8.1f} titles/s")
    print(f"  tokenisation alone:                                        {count / preprocess:8.1f} titles/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--posters", type=int, default=2048)
    parser.add_argument("--titles", type=int, default=8192)
    args = parser.parse_args()
    config = config_from_args(args)
    print(f"cores: {os.cpu_count()}, TF intra-op threads: {tf.config.threading.get_intra_op_parallelism_threads()} "
          f"(0 = all), inter-op: {tf.config.threading.get_inter_op_parallelism_threads()}")
    if args.posters:
        poster_figures(config, args.posters)
    if args.titles:
        title_figures(config, args.titles)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS): {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
