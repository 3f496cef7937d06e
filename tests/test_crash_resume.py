"""Real crashes: `features` and `train` subprocesses SIGKILLed at several points (during a write included),
then resumed, give what an uninterrupted run gives; a kill during a model save keeps the previous model."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from movietitles.artefacts import feature_store, run_directory
from movietitles.config import with_overrides, write_config
from movietitles.data.dataset import load_prepared
from movietitles.features.extract import poster_rows

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Runs a module's main (or a script) in a subprocess that SIGKILLs itself at a chosen point:
#   fsync:N        inside the Nth os.fsync (an atomic write whose data is written, not yet renamed)
#   chunk:N        right after the Nth feature chunk is written
#   model_save:N   during the Nth Keras model save (the file opened and half written)
#   checkpoint:N   right after the Nth training checkpoint is written
KILLED_AT = r"""
import os, runpy, signal, sys
point, n = sys.argv[1].split(":")
n, calls = int(n), [0]

def kill_on_nth(real, after=False):
    def wrapper(*args, **kwargs):
        if point == "model_save" and kwargs.get("inner_path", "") != "":
            return real(*args, **kwargs)  # the nested calls of one save
        calls[0] += 1
        if calls[0] == n and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if calls[0] == n and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapper

if point == "fsync":
    os.fsync = kill_on_nth(os.fsync)
elif point == "chunk":
    from movietitles.features import cache
    cache.FeatureCache.write_chunk = kill_on_nth(cache.FeatureCache.write_chunk, after=True)
elif point == "model_save":
    from keras.src.saving import saving_lib
    saving_lib._save_state = kill_on_nth(saving_lib._save_state)
elif point == "checkpoint":
    import tensorflow as tf
    tf.train.CheckpointManager.save = kill_on_nth(tf.train.CheckpointManager.save, after=True)
sys.argv = [sys.argv[2]] + sys.argv[3:]
if sys.argv[0].endswith(".py"):
    runpy.run_path(sys.argv[0], run_name="__main__")
else:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run(module: str, args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    command = ([sys.executable, "-c", KILLED_AT, kill_at, module] if kill_at else [sys.executable, "-m", module])
    return subprocess.run(command + args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


def assert_killed(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def features_file(config: dict) -> Path:
    movies = load_prepared(config["data"]["prepared_dir"]).movies
    return feature_store(config).open("poster", poster_rows(movies)).merged_path


def test_features_killed_anywhere_then_resumed_equal_an_uninterrupted_run(tiny_config, tmp_path):
    def config_in(name):
        config = with_overrides(tiny_config, {"features.cache_dir": str(tmp_path / name), "features.chunk_size": 8})
        return config, ["--config", str(write_config(config, tmp_path, f"{name}.yaml")), "--kinds", "poster"]

    config, args = config_in("uninterrupted")
    done = run("movietitles.features", args)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = features_file(config).read_bytes()
    rows = len(np.load(features_file(config)))
    chunks = -(-rows // 8)
    assert chunks >= 3
    # fsync 1-2: ids.txt and meta.json; then one per chunk; then features.npy (the merge).
    for kill_at in ("fsync:1", "fsync:4", "chunk:2", f"fsync:{3 + chunks}"):
        config, args = config_in(kill_at.replace(":", "-"))
        assert_killed(run("movietitles.features", args, kill_at))
        assert not features_file(config).exists()
        done = run("movietitles.features", args)
        assert done.returncode == 0, done.stderr[-3000:]
        assert features_file(config).read_bytes() == expected, kill_at


def test_a_kill_during_a_model_save_keeps_the_previous_file(tmp_path):
    """atomic_save_model, and what a plain model.save would have done at the same point."""
    script = r"""
import sys, keras, numpy as np
from movietitles.io import atomic_save_model
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
model.set_weights([np.full((4, 3), 1.0, np.float32), np.zeros(3, np.float32)])
save = atomic_save_model if sys.argv[2] == "atomic" else lambda m, p: m.save(p)
save(model, sys.argv[1])
model.set_weights([np.full((4, 3), 2.0, np.float32), np.zeros(3, np.float32)])
save(model, sys.argv[1])
"""
    script_file = tmp_path / "save_twice.py"
    script_file.write_text(script)
    for how in ("atomic", "plain"):
        path = tmp_path / f"{how}.keras"
        done = subprocess.run([sys.executable, "-c", KILLED_AT, "model_save:2", str(script_file), str(path), how],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert_killed(done)
        if how == "atomic":
            assert keras.saving.load_model(path).get_weights()[0][0, 0] == 1.0
            assert os.stat(path).st_mode & 0o044  # readable beyond the owner (with the usual umask)
        else:  # the hazard: a plain save at that point has destroyed the previous file
            with pytest.raises(Exception):
                keras.saving.load_model(path)


def test_training_killed_anywhere_then_resumed_ends_like_an_uninterrupted_run(tiny_config, tmp_path):
    def config_in(name):
        config = with_overrides(tiny_config, {"genre.runs_dir": str(tmp_path / name), "genre.epochs": 4,
                                              "genre.patience": 10})
        return config, ["--config", str(write_config(config, tmp_path, f"{name}.yaml")), "--task", "poster"]

    config, args = config_in("uninterrupted")
    done = run("movietitles.train", args)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = json.loads((run_directory(config, "poster") / "summary.json").read_text())
    for kill_at in ("model_save:1", "model_save:2", "checkpoint:2"):
        config, args = config_in(kill_at.replace(":", "-"))
        run_dir = run_directory(config, "poster")
        assert_killed(run("movietitles.train", args, kill_at))
        if (run_dir / "best.keras").exists():  # whole: the previous best survives a kill during a save
            keras.saving.load_model(run_dir / "best.keras")
        else:
            assert kill_at == "model_save:1"  # killed while saving the first best model
        done = run("movietitles.train", args)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        keras.saving.load_model(run_dir / "model.keras")
        for key in ("best_epoch", f"best_{config['genre']['monitor']}"):
            assert summary[key] == expected[key], (kill_at, key, summary[key], expected[key])
