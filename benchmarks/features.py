"""Feature-extraction throughput on the real data: the default CPU path beside the plain one.

    python benchmarks/features.py [--posters 1024] [--titles 4096] [--paths default plain] [--repeats 2]
                                  [--set KEY=VALUE]

Each path runs in its own process (TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it is
imported): `default` is what the package runs (oneDNN on, unless TF_ENABLE_ONEDNN_OPTS is set),
`plain` is TF_ENABLE_ONEDNN_OPTS=0. The two alternate `--repeats` times and each figure is a path's
best run, so that a busy spell of a shared machine does not decide the ratio; the posters are read
once beforehand, so that neither path reads them from disk.

One table: posters/s (end to end, input pipeline alone, bare forward pass) and titles/s; each
encoder's achieved GFLOP/s (FLOPs counted from its weight shapes, `movietitles.encoders.flops`) and
its share of the machine's peak, the best float32 matrix multiply measured in the same run; the CPU
model, its vector extensions, and whether oneDNN is on. The last column is default/plain, measured
on the same machine.

oneDNN's AVX2 kernels on an AVX-512 CPU (what an AVX2-only CPU runs; the plain path's Eigen
kernels are built for AVX either way):
    ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell python benchmarks/features.py

Targets on the 2-core CPU machine: posters end to end >= 100/s and >= 2.5x the plain path,
titles >= 570/s, the input pipeline faster than the model, per-batch padding >= 3x faster than
padding to 128.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))  # this checkout's package, even where another one is installed

import movietitles  # noqa: E402,F401  before TensorFlow: the package's TF_ENABLE_ONEDNN_OPTS default
import numpy as np  # noqa: E402

from movietitles.config import add_config_arguments, config_from_args  # noqa: E402
from movietitles.runtime import cpu_model, cpu_vector_flags  # noqa: E402

PATHS = {"default": {}, "plain": {"TF_ENABLE_ONEDNN_OPTS": "0"}}
MATMUL_N = 2048
RATES = ("end_to_end", "pipeline", "forward", "per_batch", "unsorted", "padded_128", "tokenisation")


def timed(fn, warm_up=None) -> float:
    """Seconds for one call of fn, after one call of warm_up (tracing, allocation, file cache)."""
    (warm_up or fn)()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_gflops(matmul, n: int = MATMUL_N, repeat: int = 5) -> float:
    """Best float32 n x n matrix multiply rate, in GFLOP/s."""
    a, b = (np.random.default_rng(i).standard_normal((n, n)).astype(np.float32) for i in (0, 1))
    return 2 * n ** 3 / min(timed(lambda: matmul(a, b)) for _ in range(repeat)) / 1e9


def poster_paths(config: dict, count: int) -> list[str]:
    paths = sorted(str(p) for p in (Path(config["data"]["root"]) / "posters").glob("*.jpg"))[:count]
    if not paths:
        raise SystemExit(f"no posters under {config['data']['root']}/posters")
    return paths


def poster_figures(config: dict, count: int) -> dict:
    from movietitles.encoders.flops import keras_model_flops
    from movietitles.encoders.image import build_image_encoder
    from movietitles.features.extract import decode_posters, embed_posters

    cfg = config["encoders"]["image"]
    paths = poster_paths(config, count)
    encoder = build_image_encoder(cfg)
    batch_size = cfg["batch_size"]
    few = paths[:2 * batch_size]
    end_to_end = timed(lambda: embed_posters(encoder, paths, batch_size),
                       lambda: embed_posters(encoder, few, batch_size))
    batches = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    pipeline = timed(lambda: [decode_posters(encoder, names) for names in batches])
    batch = decode_posters(encoder, batches[0])
    steps = max(1, len(paths) // batch_size)
    forward = timed(lambda: [encoder.embed(batch) for _ in range(steps)], lambda: encoder.embed(batch))
    return {"encoder": f"{encoder.cache_key}, batch {batch_size}", "count": len(paths),
            "flops": keras_model_flops(encoder.model),
            "end_to_end": len(paths) / end_to_end, "pipeline": len(paths) / pipeline,
            "forward": steps * batch_size / forward}


def title_figures(config: dict, count: int) -> dict:
    import pandas as pd

    from movietitles.data.titles import clean_title
    from movietitles.encoders.bert_export import ensure_default_text_models
    from movietitles.encoders.flops import BertFlops
    from movietitles.encoders.text import TextEncoder, build_text_encoder

    cfg = config["encoders"]["text"]
    ensure_default_text_models(cfg)
    movies = pd.read_csv(Path(config["data"]["root"]) / "movielens" / "movies.csv", usecols=["title"])
    rng = np.random.default_rng(0)
    titles = [clean_title(t).title for t in rng.choice(movies["title"].to_numpy(), count, replace=False)]
    encoder = build_text_encoder(cfg)
    batch_size = cfg["batch_size"]
    few = titles[:2 * batch_size]
    per_batch = timed(lambda: encoder.embed(titles), lambda: encoder.embed(few))
    unsorted = timed(lambda: [encoder.encode(titles[i:i + batch_size]) for i in range(0, count, batch_size)])
    padded_128 = TextEncoder(cfg["handle"], cfg["preprocess_handle"], cfg["pooling"], batch_size, pad_multiple=128)
    n_128 = min(count, 4 * batch_size)
    to_128 = timed(lambda: padded_128.embed(titles[:n_128]))
    preprocess = timed(lambda: [encoder.preprocess(titles[i:i + batch_size]) for i in range(0, count, batch_size)])
    flops = BertFlops.of_hub_model(encoder.encoder)
    return {"encoder": f"{encoder.cache_key}, batch {batch_size}", "count": count,
            "flops": sum(flops.batch(b, length) for b, length in encoder.batch_shapes(titles)),
            "per_batch": count / per_batch, "unsorted": count / unsorted, "padded_128": n_128 / to_128,
            "tokenisation": count / preprocess}


def measure(config: dict, posters: int, titles: int) -> dict:
    """One path's figures, in this process."""
    import resource

    import tensorflow as tf

    from movietitles.runtime import runtime_info

    def matmul() -> float:
        return matmul_gflops(lambda a, b: tf.matmul(a, b).numpy())

    out = {"runtime": runtime_info(), "matmul": matmul()}
    if posters:
        out["posters"] = poster_figures(config, posters)
    if titles:
        out["titles"] = title_figures(config, titles)
    out["matmul"] = max(out["matmul"], matmul())  # before and after: a busy moment understates the peak
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_path(name: str, argv: list[str]) -> dict:
    env = {**os.environ, **PATHS[name]}
    done = subprocess.run([sys.executable, __file__, "--child", *argv], env=env, cwd=os.getcwd(),
                          stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {name} path failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_of(runs: list[dict]) -> dict:
    """One path's figures over its runs: the best rate of each (the run least disturbed by other work)."""
    best = json.loads(json.dumps(runs[0]))
    for run in runs[1:]:
        best["matmul"] = max(best["matmul"], run["matmul"])
        for section in ("posters", "titles"):
            for key, value in run.get(section, {}).items():
                if key in RATES:
                    best[section][key] = max(best[section][key], value)
    best["peak_mib"] = max(run["peak_mib"] for run in runs)
    return best


def print_table(results: dict, peak: float, peaks: dict) -> None:
    names = list(results)
    ratio = len(names) == 2

    def row(label: str, values: list, fmt: str = "{:>14}", compare=None):
        cells = "".join(fmt.format(v) for v in values)
        tail = f"{compare[0] / compare[1]:>13.2f}x" if ratio and compare and compare[1] else ""
        print(f"  {label:<46}{cells}{tail}")

    def rate_row(label: str, section: str, key: str):
        values = [r[section][key] for r in results.values()]
        row(label, [f"{v:.1f}" for v in values], compare=values)

    def gflops_row(label: str, section: str, key: str, flops_per_item):
        values = [r[section][key] * flops_per_item(r) / 1e9 for r in results.values()]
        row(label, [f"{v:.1f} ({100 * v / peak:.0f}%)" for v in values], compare=values)

    print(f"  {'':<46}" + "".join(f"{n:>14}" for n in names) + ("  default/plain" if ratio else ""))
    row("oneDNN", ["on" if r["runtime"]["onednn"] else "off" for r in results.values()])
    row("TF_ENABLE_ONEDNN_OPTS", [str(r["runtime"]["TF_ENABLE_ONEDNN_OPTS"]) for r in results.values()])
    row("TF threads intra/inter (0 = all cores)",
        [f"{r['runtime']['intra_op_threads']}/{r['runtime']['inter_op_threads']}" for r in results.values()])
    gflops = [r["matmul"] for r in results.values()]
    row(f"float32 matmul {MATMUL_N}x{MATMUL_N}, GFLOP/s", [f"{v:.1f}" for v in gflops], compare=gflops)
    first = next(iter(results.values()))
    if "posters" in first:
        p = first["posters"]
        print(f"posters: {p['encoder']}, {p['count']} posters, {p['flops'] / 1e9:.3f} GFLOP per poster")
        rate_row("end to end (read + decode + resize + model)/s", "posters", "end_to_end")
        rate_row("input pipeline alone (read + decode + resize)/s", "posters", "pipeline")
        rate_row("bare forward pass/s", "posters", "forward")
        per_poster = lambda r: r["posters"]["flops"]  # noqa: E731
        gflops_row("GFLOP/s end to end (share of peak)", "posters", "end_to_end", per_poster)
        gflops_row("GFLOP/s bare forward (share of peak)", "posters", "forward", per_poster)
    if "titles" in first:
        t = first["titles"]
        print(f"titles: {t['encoder']}, {t['count']} titles, {t['flops'] / t['count'] / 1e6:.1f} MFLOP per title "
              "(as padded)")
        rate_row("length-sorted, padded per batch (the cache's)/s", "titles", "per_batch")
        rate_row("random order, padded per batch/s", "titles", "unsorted")
        rate_row("padded to 128/s", "titles", "padded_128")
        rate_row("tokenisation alone/s", "titles", "tokenisation")
        per_title = lambda r: r["titles"]["flops"] / r["titles"]["count"]  # noqa: E731
        gflops_row("GFLOP/s, the cache's way (share of peak)", "titles", "per_batch", per_title)
    row("peak memory (max RSS), MiB", [f"{r['peak_mib']:.0f}" for r in results.values()])
    print(f"peak: {peak:.1f} GFLOP/s, the best float32 {MATMUL_N}x{MATMUL_N} matmul of this run, before and after "
          f"({', '.join(f'{k} {v:.1f}' for k, v in peaks.items())})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--posters", type=int, default=1024)
    parser.add_argument("--titles", type=int, default=4096)
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each path, alternated; the table gives each figure's best run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(config_from_args(args), args.posters, args.titles)))
        return
    argv = ["--config", args.config, "--posters", str(args.posters), "--titles", str(args.titles)]
    argv += [a for override in args.overrides for a in ("--set", override)]
    capped = f", oneDNN capped at {os.environ['ONEDNN_MAX_CPU_ISA']}" if os.environ.get("ONEDNN_MAX_CPU_ISA") else ""
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {' '.join(cpu_vector_flags())}{capped}")
    if args.posters:  # both paths read the files from the page cache, not the first one from disk
        config = config_from_args(args)
        for path in poster_paths(config, args.posters):
            Path(path).read_bytes()
    load_before = os.getloadavg()[0]
    numpy_peak = matmul_gflops(np.matmul)
    runs = {name: [] for name in args.paths}
    for _ in range(args.repeats):  # alternated, so that a busy spell of the machine slows both paths alike
        for name in args.paths:
            runs[name].append(run_path(name, argv))
    results = {name: best_of(found) for name, found in runs.items()}
    numpy_peak = max(numpy_peak, matmul_gflops(np.matmul))
    tf_version = next(iter(results.values()))["runtime"]["tensorflow"]
    print(f"TensorFlow {tf_version}; 1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
          "(other processes share the cores)")
    peaks = {"numpy": numpy_peak, **{f"TF {n}": r["matmul"] for n, r in results.items()}}
    print_table(results, max(peaks.values()), peaks)


if __name__ == "__main__":
    main()
