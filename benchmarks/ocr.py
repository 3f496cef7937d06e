"""Poster text: the project's reader against the stock `RapidOCR()` call, on the same real posters, in one run.

    python benchmarks/ocr.py                 # 300 random posters of the prepared dataset
    python benchmarks/ocr.py --posters 1000 --set encoders.ocr.workers=2

Prints posters/s of each (wall clock, after one warm-up batch), their ratio, and the share of posters whose
text holds any / all of the title's words (3+ characters, as `coverage.md` counts them) for each reader; the CPU
model and its load. The stock call is `RapidOCR()` as installed: its defaults (the detector at a short side of
736 pixels, the angle classifier on, onnxruntime's own threading), one poster at a time. The last line:

    ocr: project P/s, stock S/s, ratio R, title words any A/B, all C/D     (A, C: project; B, D: stock)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package first

import numpy as np  # noqa: E402

from movietitles.config import apply_override, load_config  # noqa: E402
from movietitles.data.dataset import load_prepared  # noqa: E402
from movietitles.encoders.ocr import PosterTextReader  # noqa: E402
from movietitles.features.poster_text_coverage import title_found  # noqa: E402
from movietitles.runtime import cpu_model, cpu_vector_flags  # noqa: E402


def shares(titles, lines_per_poster) -> tuple[float, float]:
    found = [title_found(title, lines) for title, lines in zip(titles, lines_per_poster)]
    return 100 * np.mean([a for a, _ in found]), 100 * np.mean([b for _, b in found])


def timed(read, paths) -> tuple[list, float]:
    read(paths[:64])  # warm-up: sessions, worker processes
    start = time.perf_counter()
    lines = read(paths)
    return lines, len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posters", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    config = load_config()
    for item in args.set:
        apply_override(config, item)
    movies = load_prepared(config["data"]["prepared_dir"]).movies
    movies = movies[movies["has_poster"]].sample(args.posters, random_state=args.seed)
    paths, titles = movies["poster"].tolist(), movies["title"].tolist()

    from rapidocr_onnxruntime import RapidOCR

    stock = RapidOCR()
    stock_lines, stock_rate = timed(lambda ps: [list(stock(p)[0] or []) for p in ps], paths)
    stock_lines = [[{"text": t, "box": b, "confidence": c} for b, t, c in lines] for lines in stock_lines]
    reader = PosterTextReader(config["encoders"]["ocr"])
    project_lines, project_rate = timed(reader.read_files, paths)
    reader.close()

    (any_p, all_p), (any_s, all_s) = shares(titles, project_lines), shares(titles, stock_lines)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores; {' '.join(cpu_vector_flags())}); "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"posters: {len(paths)} random posters of {config['data']['prepared_dir']} (seed {args.seed})")
    print(f"project reader ({reader.cache_key}, {reader.workers} worker(s)): {project_rate:.2f} posters/s, "
          f"{np.mean([len(x) for x in project_lines]):.2f} lines a poster")
    print(f"stock RapidOCR(): {stock_rate:.2f} posters/s, {np.mean([len(x) for x in stock_lines]):.2f} lines a poster")
    print(f"ocr: project {project_rate:.1f}/s, stock {stock_rate:.1f}/s, ratio {project_rate / stock_rate:.1f}, "
          f"title words any {any_p:.1f}/{any_s:.1f}, all {all_p:.1f}/{all_s:.1f}")


if __name__ == "__main__":
    main()
