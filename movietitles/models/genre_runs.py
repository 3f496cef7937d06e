"""Trained genre models on disk: a run is `<genre.runs_dir>/<task>-<config hash>/`, named by what
shapes the model (`movietitles.artefacts.run_directory`), so the same command finds (and resumes) its run.
Training writes runs (`movietitles.training.genre`); evaluation and serving read them from here.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from movietitles.artefacts import GENRE_TASKS, SUMMARY_FILE  # noqa: F401 (what a run is, kept beside its readers)
from movietitles.features.pipeline import Features
from movietitles.io import read_written
from movietitles.models.genre import TITLE_TEXT

MODEL_FILE, THRESHOLDS_FILE = "model.keras", "thresholds.json"


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
                             f"load_split(store, split, task_inputs(config, task)))")
        return features.inputs[name]

    return {tensor.name: column(tensor.name) for tensor in model.inputs}


def predict_scores(model, inputs: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Plain forward passes: unlike `model.predict`, safe under every strategy."""
    rows = len(next(iter(inputs.values())))
    return np.concatenate([keras.ops.convert_to_numpy(
        model({k: tf.convert_to_tensor(v[i:i + batch_size]) for k, v in inputs.items()}, training=False))
        for i in range(0, rows, batch_size)])
