"""Which artefacts a configuration names, and where they are: the prepared dataset and its feature caches (a
`FeatureStore`), the genre-fine-tuned text encoder, the genre runs, the prepared copy of another dataset to evaluate
on. The configuration dictionary stops here and in
`training/`: the modules below receive what these functions derive from it (names: `movietitles.naming`).

`ensure_prepared` and `ensure_features` make what every task reads first: the prepared dataset (once, from
`data.root`) and the cached features of the kinds it reads (computed where missing, resuming where a run stopped).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import yaml

from movietitles.config import with_overrides
from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE, FeatureStore
from movietitles.io import atomic_write_text
from movietitles.naming import finetuned_text_encoder_name, genre_run_name
from movietitles.settings import DataSettings

log = logging.getLogger(__name__)

GENRE_TASKS = {"title": (TITLE,), "poster": (POSTER,), "fusion": (TITLE, POSTER)}
SUMMARY_FILE = "summary.json"


def finetuned_text_encoder_dir(config: dict) -> Path:
    """Where the genre-fine-tuned MiniLM of this config lives: named by everything that shapes it."""
    from movietitles.encoders.text import finetune_settings

    text = config["encoders"]["text"]
    return Path(text["handle"]).parent.parent / finetuned_text_encoder_name(config, finetune_settings(text)) / "encoder"


def text_encoder_settings(config: dict, must_exist: bool = True) -> dict:
    """config["encoders"]["text"] as features, training and export use it: with `finetune` on, the handle is
    the fine-tuned encoder, which `python -m movietitles.train` makes (an error names that command if it is missing)."""
    from movietitles.encoders.text import finetune_settings

    text = config["encoders"]["text"]
    if finetune_settings(text) is None:
        return text
    handle = finetuned_text_encoder_dir(config)
    if must_exist and not handle.is_dir():
        raise FileNotFoundError(_missing_text_encoder(handle))
    return {**text, "handle": str(handle), "finetune": None}


def _missing_text_encoder(handle: Path) -> str:
    return (f"no fine-tuned text encoder {handle} for this config (encoders.text.finetune): make it "
            f"with `python -m movietitles.train --task title` and the same --config/--set options")


def feature_store(config: dict) -> FeatureStore:
    """The prepared dataset's feature caches, and the encoder settings of each kind."""
    text = text_encoder_settings(config, must_exist=False)
    fine_tuned = text is not config["encoders"]["text"]
    missing = _missing_text_encoder(Path(text["handle"])) if fine_tuned and not Path(text["handle"]).is_dir() else ""
    features = config["features"]
    return FeatureStore(prepared_dir=Path(config["data"]["prepared_dir"]), cache_dir=Path(features["cache_dir"]),
                        chunk_size=features["chunk_size"], text_encoder=text,
                        image_encoder=config["encoders"]["image"], ocr=config["encoders"]["ocr"],
                        text_encoder_missing=missing)


def cache_key(config: dict, kind: str) -> str:
    return feature_store(config).key(kind)


def ensure_prepared(config: dict) -> None:
    data = DataSettings.from_config(config)
    if not (data.prepared_dir / "movies.csv").exists():
        from movietitles.data.prepare import prepare

        log.info("no prepared dataset in %s: preparing it from %s", data.prepared_dir, data.root)
        print("\n".join(prepare(data).lines()))


def ensure_features(config: dict, kinds) -> None:
    from movietitles.features.extract import extract_features

    ensure_prepared(config)
    extract_features(feature_store(config), kinds)


def task_inputs(config: dict, task: str) -> tuple[str, ...]:
    """The cached features a genre task's model reads: its embeddings, and the poster's OCR text where
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
    """A genre run, named by what shapes the model (movietitles.naming), so re-running a command finds (and resumes)
    it. The features the task reads count by their cache keys: a new image encoder does not retrain the title model,
    and settings that change no feature (batch sizes, input limits) retrain nothing."""
    store = feature_store(config)
    features = {kind: store.key(kind) for kind in task_inputs(config, task)}
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


# Another dataset to evaluate on (`evaluate --eval-root ROOT`): see movietitles/evaluation/other_data.py.
OTHER_SOURCE_FILE = "source.json"


def other_dataset_config(config: dict, data_root: str | Path) -> dict:
    """The config that prepares and embeds another dataset beside the default one."""
    root = Path(data_root).resolve()
    key = hashlib.sha256(str(root).encode("utf-8")).hexdigest()[:10]
    prepared_dir = str(Path(config["data"]["prepared_dir"]).parent / f"eval-{root.name}-{key}")
    # The encoders are those of the trained models: a genre-fine-tuned text encoder is pinned, not made anew.
    return with_overrides(config, {"data.root": str(data_root), "data.prepared_dir": prepared_dir,
                                   "features.cache_dir": f"{prepared_dir}/features",
                                   "encoders.text": text_encoder_settings(config, must_exist=False)})


def source_fingerprint(config: dict) -> dict:
    """What the prepared copy was made from: the files under data.root (path, size, mtime) and the settings."""
    root = Path(config["data"]["root"]).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        status = path.stat()
        digest.update(f"{path.relative_to(root)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode("utf-8"))
    settings = {k: v for k, v in config["data"].items() if k not in ("root", "prepared_dir")}
    limits = DataSettings.from_config(config).poster_limits
    digest.update(yaml.safe_dump([settings, limits], sort_keys=True).encode("utf-8"))
    return {"root": str(root), "files": len(files), "fingerprint": digest.hexdigest()}


def ensure_other_prepared(other: dict) -> None:
    """Prepare the dataset of `other` (a config from other_dataset_config) unless an up-to-date copy exists."""
    from movietitles.data.prepare import prepare

    prepared = Path(other["data"]["prepared_dir"])
    fingerprint, marker = source_fingerprint(other), prepared / OTHER_SOURCE_FILE
    if (prepared / "movies.csv").exists() and marker.exists():
        if json.loads(marker.read_text(encoding="utf-8")) == fingerprint:
            return
        log.info("%s changed since %s was prepared: preparing it again", fingerprint["root"], prepared)
    if prepared.exists():
        shutil.rmtree(prepared)  # the stale copy and its feature cache
    print("\n".join(prepare(DataSettings.from_config(other)).lines()))
    atomic_write_text(marker, json.dumps(fingerprint, indent=2))  # last: a crash before it re-prepares
