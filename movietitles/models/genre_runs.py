"""Trained genre models on disk: a run is `<genre.runs_dir>/<task>-<config hash>/`, named by what
shapes the model, so the same command finds (and resumes) its run. Training writes runs
(`movietitles.training.genre`); evaluation and serving read them from here.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from movietitles.config import with_overrides
from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE
from movietitles.features.pipeline import Features, cache_key
from movietitles.models.genre import TITLE_TEXT
from movietitles.io import read_written
from movietitles.naming import genre_run_name

GENRE_TASKS = {"title": (TITLE,), "poster": (POSTER,), "fusion": (TITLE, POSTER)}
MODEL_FILE, THRESHOLDS_FILE, SUMMARY_FILE = "model.keras", "thresholds.json", "summary.json"


def task_inputs(config: dict, task: str) -> tuple[str, ...]:
    """The cached features a task's model reads: its embeddings, and the poster's OCR text where
    `genre.models.<task>.poster_text` is on."""
    if task not in GENRE_TASKS:
        raise ValueError(f"unknown genre model {task!r}; expected one of {sorted(GENRE_TASKS)}")
    reads_text = config["genre"]["models"][task].get("poster_text", False)
    if reads_text and POSTER not in GENRE_TASKS[task]:
        raise ValueError(f"genre.models.{task}.poster_text: only a model that reads the poster (poster, fusion) "
                         "reads its text")
    return GENRE_TASKS[task] + ((POSTER_TEXT,) if reads_text else ())


def without_poster_text(config: dict, task: str) -> dict:
    """`config` with the task's model reading the picture only (`genre.models.<task>.poster_text` off)."""
    return with_overrides(config, {f"genre.models.{task}.poster_text": False})


def run_directory(config: dict, task: str) -> Path:
    """Named by what shapes the model (movietitles.naming), so re-running a command finds (and resumes) its run.
    The features the task reads count by their cache keys: a new image encoder does not retrain the title model,
    and settings that change no feature (batch sizes, input limits) retrain nothing."""
    features = {kind: cache_key(config, kind) for kind in task_inputs(config, task)}
    return Path(config["genre"]["runs_dir"]) / genre_run_name(config, task, features)


def finished_run(config: dict, task: str) -> Path:
    """The task's finished training run of this config, or an error naming the command that trains it."""
    if task not in GENRE_TASKS:
        raise ValueError(f"unknown genre model {task!r}; expected one of {sorted(GENRE_TASKS)}")
    run_dir = run_directory(config, task)
    if not (run_dir / SUMMARY_FILE).exists():
        raise FileNotFoundError(f"no trained {task} genre model for this config (expected {run_dir}): train it with "
                                f"`python -m movietitles.train --task {task}` and the same --config/--set options")
    return run_dir


def load_genre_run(run_dir: Path) -> tuple[keras.Model, np.ndarray, dict]:
    """The trained model, its tuned thresholds (genre order) and its summary."""
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.exists():
        raise FileNotFoundError(f"no finished genre run in {run_dir}: train it with "
                                f"`python -m movietitles.train --task {run_dir.name.split('-')[0]}`")
    from movietitles.models.title_task import restore_exact_gelu  # registers its layers before the load

    remedy = (f"train it again with `python -m movietitles.train --task {run_dir.name.split('-')[0]} --fresh` "
              "(and the same --config/--set options)")
    model = restore_exact_gelu(read_written(run_dir / MODEL_FILE, keras.saving.load_model, remedy))
    saved = read_written(run_dir / THRESHOLDS_FILE, lambda p: json.loads(p.read_text()), remedy)
    thresholds = np.array(list(saved.values()), dtype=np.float32)
    return model, thresholds, read_written(summary_path, lambda p: json.loads(p.read_text()), remedy)


def genre_names(run_dir: Path) -> list[str]:
    return list(json.loads((Path(run_dir) / THRESHOLDS_FILE).read_text(encoding="utf-8")))


def model_inputs(model: keras.Model, features: Features) -> dict[str, np.ndarray]:
    """What `model` reads, by input name: cached embeddings, the poster's OCR text for `poster_text`, and the raw
    titles for `title_text`."""
    def column(name):
        if name == TITLE_TEXT:
            return features.movies["title"].to_numpy(dtype=str)
        if name not in features.inputs:
            raise ValueError(f"the model reads {name!r}, which these features lack (load them with it: "
                             f"load_split(..., inputs=task_inputs(config, task)))")
        return features.inputs[name]

    return {tensor.name: column(tensor.name) for tensor in model.inputs}


def predict_scores(model, inputs: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Plain forward passes: unlike `model.predict`, safe under every strategy."""
    rows = len(next(iter(inputs.values())))
    return np.concatenate([keras.ops.convert_to_numpy(
        model({k: tf.convert_to_tensor(v[i:i + batch_size]) for k, v in inputs.items()}, training=False))
        for i in range(0, rows, batch_size)])
