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

from movietitles.config import config_hash, enabled_section, identity, with_overrides
from movietitles.encoders.image import image_cache_key
from movietitles.generator.tokenizer import TitleTokenizer
from movietitles.io import read_written

TASK = "generator"
MODEL_FILE, BEST_FILE, SUMMARY_FILE = "model.keras", "best.keras", "summary.json"
# generator.* keys that only change how titles are sampled afterwards, not the trained model.
NOT_TRAINING_KEYS = ("sampling",)


class GeneratorRun(NamedTuple):
    """A finished generator run: `model, tokenizer, config, summary, run_dir = load_generator_run(d)`."""

    model: keras.Model
    tokenizer: TitleTokenizer
    config: dict
    summary: dict
    run_dir: Path


def genre_model_config(config: dict) -> dict:
    """The config of the poster genre model that `generator.predicted_genres` puts inside the decoder: with a
    feature map (`encoders.image.pooling: grid`) it is the genre model of the pooled vector, multi_depth."""
    if config["encoders"]["image"].get("pooling") == "grid":
        return with_overrides(config, {"encoders.image.pooling": "multi_depth"})
    return config


def run_directory(config: dict) -> Path:
    """`<genre.runs_dir>/generator-<hash of what shapes the model>`: re-running finds (and resumes) it."""
    gcfg = {k: v for k, v in config["generator"].items() if k not in NOT_TRAINING_KEYS}
    if not gcfg.get("predicted_genres"):
        gcfg.pop("predicted_genres", None)  # off: the runs trained before the key existed keep their folders
    if not enabled_section(gcfg, "poster_attention"):
        gcfg.pop("poster_attention", None)  # likewise
    # The poster features by their cache key (as genre runs): settings that do not change them do not retrain.
    encoders = {"image": image_cache_key(config["encoders"]["image"]), "bpemb": config["encoders"]["bpemb"]}
    if enabled_section(gcfg, "poster_text"):
        encoders["ocr"] = config["encoders"]["ocr"]
    shaping = {"task": TASK, "seed": config["seed"], "data": identity(config)["data"], "encoders": encoders,
               "generator": gcfg}
    if gcfg.get("predicted_genres"):  # the poster genre model inside the decoder, by its run (what shapes it)
        from movietitles.models.genre_runs import run_directory as genre_run_directory

        shaping["poster_genre_model"] = genre_run_directory(genre_model_config(config), "poster").name
    return Path(config["genre"]["runs_dir"]) / f"{TASK}-{config_hash(shaping)}"


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
