"""The fast CPU path (oneDNN, on by default) embeds like the plain one (TF_ENABLE_ONEDNN_OPTS=0).

Each path runs in a fresh process (TensorFlow reads the setting once, at import), fills a poster and
a title feature cache, and the caches must agree within the exactness tests' 1e-4.
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"),
                                reason="TensorFlow's x86-64 Linux builds are the ones with oneDNN kernels")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4

CHILD = """
import json, sys
import movietitles  # first: sets the package's default TF_ENABLE_ONEDNN_OPTS before TensorFlow loads
from movietitles.encoders.image import build_image_encoder
from movietitles.encoders.text import TextEncoder
from movietitles.features.cache import FeatureCache
from movietitles.features.extract import embed_posters, fill_cache
from movietitles.runtime import runtime_info

args = json.loads(sys.argv[1])
image = build_image_encoder({"name": "efficientnet_lite0", "weights": None, "resize": "squash",
                             "image_size": None, "batch_size": 4})
cache = FeatureCache.open(args["out"], "poster", image.cache_key, args["ids"], chunk_size=4)
fill_cache(cache, lambda r: embed_posters(image, args["posters"][r], 4), "posters", runtime=runtime_info())
text = TextEncoder(args["handle"], args["preprocess"], batch_size=4)
cache = FeatureCache.open(args["out"], "title", text.cache_key, args["ids"], chunk_size=4)
fill_cache(cache, lambda r: text.embed(args["titles"][r]), "titles", runtime=runtime_info())
"""

TITLES = ["Heat", "The Brave", "A Very Long Engagement in the Rain of Paris", "Se7en", "2001: A Space Odyssey",
          "Amélie"]


def _posters(folder: Path) -> list[str]:
    import sklearn.datasets

    images = Path(sklearn.datasets.__file__).parent / "images"
    paths = [str(images / "china.jpg"), str(images / "flower.jpg")]
    rng = np.random.default_rng(0)
    for i in range(4):  # poster-sized (about 2:3): smooth gradients plus noise
        ramp = np.linspace(0, 255, 160)[None, :, None] * rng.uniform(0.2, 1.0, (1, 1, 3))
        pixels = np.clip(ramp + rng.normal(0, 30, (236, 160, 3)), 0, 255).astype(np.uint8)
        paths.append(str(folder / f"poster{i}.jpg"))
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return paths


def _embed_in_fresh_process(out: Path, env_changes: dict, args: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")}
    env.update(env_changes)
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps({**args, "out": str(out)})], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    from movietitles.features.cache import FeatureCache

    caches = {}
    for kind in ("poster", "title"):
        (key,) = [p.name for p in (out / kind).iterdir()]
        cache = FeatureCache.open(out, kind, key, args["ids"], chunk_size=4)
        caches[kind] = (np.array(cache.load()), cache.runtime_records())
    return caches


def test_fast_path_caches_match_the_plain_path(tmp_path, minilm_hub_dirs):
    encoder_dir, preprocess_dir = minilm_hub_dirs
    args = {"ids": [f"m{i}" for i in range(len(TITLES))], "posters": _posters(tmp_path), "titles": TITLES,
            "handle": str(encoder_dir), "preprocess": str(preprocess_dir)}
    plain = _embed_in_fresh_process(tmp_path / "plain", {"TF_ENABLE_ONEDNN_OPTS": "0"}, args)
    default = _embed_in_fresh_process(tmp_path / "default", {}, args)  # the package's default
    # oneDNN's AVX2 kernels, as on an AVX2-only CPU (a no-op cap on a CPU without AVX-512).
    avx2 = _embed_in_fresh_process(tmp_path / "avx2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, args)
    for kind in ("poster", "title"):
        reference, records = plain[kind]
        assert [r["runtime"]["onednn"] for r in records] == [False]
        assert reference.shape[0] == len(TITLES) and np.unique(reference, axis=0).shape[0] == len(TITLES)
        for name, fast in (("default", default), ("avx2", avx2)):
            features, records = fast[kind]
            assert [r["runtime"]["onednn"] for r in records] == [True], f"{name}: oneDNN is off"
            assert [r["chunks"] for r in records] == [[0, 1]]
            error = np.abs(features - reference).max()
            assert error < TOLERANCE, f"{kind} features, {name} vs plain: max |difference| {error:.2e}"
    assert default["poster"][1][0]["runtime"]["TF_ENABLE_ONEDNN_OPTS"] == "1"  # set by the package, not by us
    assert avx2["poster"][1][0]["runtime"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
