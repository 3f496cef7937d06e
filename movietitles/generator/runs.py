"""Trained title generators on disk: a run is `<genre.runs_dir>/generator-<config hash>/`, named by
what shapes the model, so the same command finds (and resumes) its run. Training writes runs
(`movietitles.training.generator`); sampling, evaluation and serving read them from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import keras
import yaml

from movietitles.config import with_overrides
from movietitles.encoders.image import image_cache_key
from movietitles.generator.tokenizer import TitleTokenizer
from movietitles.io import read_written
from movietitles.naming import generator_run_name

TASK = "generator"
MODEL_FILE, BEST_FILE, SUMMARY_FILE = "model.keras", "best.keras", "summary.json"


class GeneratorRun(NamedTuple):
    """A finished generator run: `model, tokenizer, config, summary, run_dir = load_generator_run(d)`."""

    model: keras.Model
    tokenizer: TitleTokenizer
    config: dict
    summary: dict
    run_dir: Path


def genre_model_config(config: dict) -> dict:
    """The config of the poster genre model that `generator.predicted_genres` puts inside the decoder: with a
    feature map (`encoders.image.pooling: grid`) it is the genre model of the pooled vector, multi_depth; it reads
    the picture only (`genre.models.poster.poster_text` off), since the decoder gives it nothing else."""
    if config["encoders"]["image"].get("pooling") == "grid":
        config = with_overrides(config, {"encoders.image.pooling": "multi_depth"})
    if config["genre"]["models"]["poster"].get("poster_text"):
        from movietitles.artefacts import without_poster_text

        config = without_poster_text(config, "poster")
    return config


def run_directory(config: dict) -> Path:
    """`<genre.runs_dir>/generator-<hash of what shapes the model>` (movietitles.naming): re-running finds (and
    resumes) it. The poster features count by their cache key, as in genre runs."""
    poster_genre_run = None
    if config["generator"].get("predicted_genres"):  # the poster genre model inside the decoder, by its run
        from movietitles.artefacts import run_directory as genre_run_directory

        poster_genre_run = genre_run_directory(genre_model_config(config), "poster").name
    name = generator_run_name(config, image_cache_key(config["encoders"]["image"]), poster_genre_run)
    return Path(config["genre"]["runs_dir"]) / name


def load_generator_run(run_dir: str | Path) -> GeneratorRun:
    """The trained decoder, its tokenizer, the config it was trained with and its summary."""
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY_FILE).exists():
        raise FileNotFoundError(f"no finished title generator run in {run_dir}: train it with "
                                "`python -m movietitles.train --task generator` (with the same --config/--set)")
    remedy = "train it again with `python -m movietitles.train --task generator --fresh` (and the same --config/--set)"
    config = read_written(run_dir / "config.yaml", lambda p: yaml.safe_load(p.read_text(encoding="utf-8")), remedy)
    model = read_written(run_dir / MODEL_FILE, lambda p: keras.saving.load_model(p, compile=False), remedy)
    summary = read_written(run_dir / SUMMARY_FILE, lambda p: json.loads(p.read_text()), remedy)
    return GeneratorRun(model, TitleTokenizer.from_config(config), config, summary, run_dir)
