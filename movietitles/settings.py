"""Typed settings: the parts of the configuration a lower module uses, built from the merged configuration and
checked once, when it is loaded (`config.load_config`), so that a bad value stops a command before any work with
the message it always had (naming the key).

Modules below `training/` receive these objects (or one encoder's section), never the whole configuration
dictionary: `tests/test_layout.py` follows the dictionary through `train --task fusion` to check it. Which
feature caches and runs a configuration names is `movietitles.artefacts`'s job.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A configuration that cannot be used: the message names the key (or the file)."""


SOURCES = ("movielens", "kaggle", "manifest")
IMBALANCES = ("pos_weight", "sample_weight", "none")
# Early-stopping scores of the genre models (validation; higher is better): see configs/default.yaml.
MONITORS = ("val_oos_macro_f1", "val_tuned_macro_f1", "val_macro_f1", "val_micro_f1")
THRESHOLD_STRATEGIES = ("per_genre", "global", "shrunk", "joint")  # see movietitles/evaluation/thresholds.py
# The largest poster accepted (encoders.image.max_pixels, max_bytes): 5000 x 5000 pixels, 10 MB.
DEFAULT_MAX_PIXELS, DEFAULT_MAX_BYTES = 25_000_000, 10_000_000


def poster_size_limits(image_encoder: dict) -> tuple[int, int]:
    """(max_pixels, max_bytes) of `encoders.image`, checked."""
    limits = []
    for key, default in (("max_pixels", DEFAULT_MAX_PIXELS), ("max_bytes", DEFAULT_MAX_BYTES)):
        value = image_encoder.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"encoders.image.{key} must be a positive integer, got {value!r}")
        limits.append(value)
    return tuple(limits)


@dataclass(frozen=True)
class DataSettings:
    """What `data prepare` reads and makes: the `data` section, the seed that draws the splits, and the largest
    poster accepted (the image encoder's limits: what serving would refuse is not trained on)."""

    source: str
    root: Path
    source_csv: str          # the kaggle or manifest CSV under `root` ("" for movielens)
    prepared_dir: Path
    genres: tuple[str, ...]
    ignored_genres: frozenset[str]
    split_fractions: dict
    split_seed: int
    poster_limits: dict      # data.image (min_side, max_side, max_aspect) with max_pixels and max_bytes
    download: dict           # workers, timeout_s, retries, max_bytes: what `download_posters` takes
    recorded: dict           # the part of the configuration these come from, as a --config file takes it

    @classmethod
    def from_config(cls, config: dict) -> "DataSettings":
        data = config["data"]
        source = data.get("source", "movielens")
        if source not in SOURCES:
            raise ConfigError(f"data.source={source!r} is not one of {', '.join(SOURCES)}")
        max_pixels, max_bytes = poster_size_limits(config.get("encoders", {}).get("image") or {})
        download = data.get("download") or {}
        csv_key = {"kaggle": ("kaggle_csv", "MovieGenre.csv"), "manifest": ("manifest_csv", "manifest.csv")}
        return cls(
            source=source, root=Path(data["root"]),
            source_csv=data.get(*csv_key[source]) if source in csv_key else "",
            prepared_dir=Path(data["prepared_dir"]), genres=tuple(data["genres"]),
            ignored_genres=frozenset(data.get("ignored_genres") or []), split_fractions=data["split_fractions"],
            split_seed=int(config.get("seed", 0)),
            poster_limits={**(data.get("image") or {}), "max_pixels": max_pixels, "max_bytes": max_bytes},
            download={"workers": int(download.get("workers", 8)), "timeout_s": float(download.get("timeout_s", 20)),
                      "retries": int(download.get("retries", 3)), "max_bytes": max_bytes},
            recorded={"seed": config.get("seed", 0), "data": copy.deepcopy(data),
                      "encoders": {"image": {"max_pixels": max_pixels, "max_bytes": max_bytes}}})


def _short(handle: str) -> str:
    return "/".join(Path(str(handle)).parts[-2:])


def genre_hparams(config: dict, task: str) -> dict:
    """What a researcher compares genre runs by (HParams dashboard)."""
    gcfg, encoders = config["genre"], config["encoders"]
    model = gcfg["models"].get(task, {})
    return {
        "task": task,
        "text_encoder": f"{_short(encoders['text']['handle'])} ({encoders['text']['pooling']})",
        "image_encoder": f"{encoders['image']['name']} ({encoders['image'].get('pooling', 'head')})",
        "resize": encoders["image"]["resize"],
        "imbalance": gcfg["imbalance"],
        "max_pos_weight": gcfg["max_pos_weight"],
        "title_corpus": gcfg["title_corpus"],
        "hidden_units": model.get("hidden_units"),
        "dropout": model.get("dropout"),
        "text_channel": model.get("text_channel", False),
        "modality_logits": model.get("modality_logits", False),  # fusion: per-modality logits + a joint branch
        "ensemble": model.get("ensemble", 1),
        "finetune_layers": model.get("finetune_layers", 0),  # MiniLM layers the title model fine-tunes itself
        "learning_rate": gcfg["learning_rate"],
        "weight_decay": gcfg["weight_decay"],
        "batch_size": gcfg["batch_size"],
        "monitor": gcfg["monitor"],
        "thresholds": gcfg["thresholds"]["strategy"],
        "seed": config["seed"],
    }


@dataclass(frozen=True)
class ThresholdSettings:
    """`genre.thresholds`: how per-genre decision thresholds are fitted on validation."""

    strategy: str
    shrinkage: float
    repeats: int

    def out_of_sample(self, seed: int) -> dict:
        """The options of `evaluation.thresholds.out_of_sample_f1`, with the halvings of `seed`."""
        return {"strategy": self.strategy, "shrinkage": self.shrinkage, "repeats": self.repeats, "seed": seed}


@dataclass(frozen=True)
class GenreSettings:
    """`genre`: how the genre models train (`models`: each task's section, as configs/default.yaml has it)."""

    runs_dir: Path
    imbalance: str
    max_pos_weight: float
    title_corpus: bool
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    monitor: str
    thresholds: ThresholdSettings
    models: dict

    @classmethod
    def from_config(cls, config: dict) -> "GenreSettings":
        genre = config["genre"]
        if genre["imbalance"] not in IMBALANCES:
            raise ConfigError(f"genre.imbalance must be pos_weight, sample_weight or none, got {genre['imbalance']!r}")
        if genre["monitor"] not in MONITORS:
            raise ConfigError(f"genre.monitor: unsupported early-stopping score {genre['monitor']!r}; "
                              f"choose one of {MONITORS}")
        thresholds = genre["thresholds"]
        if thresholds["strategy"] not in THRESHOLD_STRATEGIES:
            raise ConfigError(f"genre.thresholds.strategy: unknown threshold strategy {thresholds['strategy']!r}; "
                              f"choose one of {THRESHOLD_STRATEGIES}")
        for task, model in genre["models"].items():
            ensemble = model.get("ensemble", 1)
            if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
                raise ConfigError(f"genre.models.{task}.ensemble must be a positive integer, got {ensemble!r}")
        return cls(runs_dir=Path(genre["runs_dir"]), imbalance=genre["imbalance"],
                   max_pos_weight=genre["max_pos_weight"], title_corpus=genre["title_corpus"], epochs=genre["epochs"],
                   batch_size=genre["batch_size"], learning_rate=genre["learning_rate"],
                   weight_decay=genre["weight_decay"], patience=genre["patience"], monitor=genre["monitor"],
                   thresholds=ThresholdSettings(thresholds["strategy"], thresholds["shrinkage"], thresholds["repeats"]),
                   models=genre["models"])


def check(config: dict) -> None:
    """Build every typed part of `config`: the first bad value raises, naming its key."""
    DataSettings.from_config(config)
    GenreSettings.from_config(config)
