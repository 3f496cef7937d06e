"""The names of what the project computes, in one place: each artefact's folder is named by a hash of what it is
computed from (its settings, the artefacts it reads, its data), so the same command finds and resumes it, and a
change to any of these makes a new one.

What each artefact is computed from (its folder in brackets):
- feature cache (`<features.cache_dir>/<kind>/<key>/`): its encoder's settings, `encoders.text` (`text_cache_key`),
  `encoders.image` (`image_cache_key`) or `encoders.ocr` (`poster_text_cache_key`); its rows, by a digest inside;
- fine-tuned text encoder (`minilm-l6-v2-genres-<hash>/`): `encoders.text.finetune`, its preprocessing, `data`,
  `genre.title_corpus`, `genre.max_pos_weight`, `genre.thresholds`;
- genre run (`<genre.runs_dir>/<task>-<hash>/`): the task, `seed`, `data`, the feature caches it reads (by key),
  `genre` but its models, `genre.models.<task>` (SWITCHED_KEYS left out while their switch is off);
- generator run (`<genre.runs_dir>/generator-<hash>/`): `seed`, `data`, the poster feature cache (by key),
  `encoders.bpemb`, `encoders.ocr` (reading poster text), `generator` but NOT_TRAINING_KEYS (its switches left out
  while off), the poster genre run inside the decoder (`predicted_genres`);
- genre evaluation (`evaluation-<hash>/`): the whole config, the data evaluated on, `--keep-overlap`;
- generator evaluation (`generator-evaluation-<hash>/`): the whole config, the data evaluated on;
- comparison of variants (`<what>-comparison-<hash>/`): the whole config, the variants compared.

Where an artefact is kept (LOCATION_KEYS) is not part of its name; an option added later (ADDED_KEYS) is left out
while it holds the value it was added at, so adding one renames nothing made before it. `tests/test_names.py` pins
the default config's names: a change of name orphans every saved run, so it must be deliberate.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from typing import Any

import yaml

from movietitles.config import DEFAULT_CONFIG, enabled_section, get, read_yaml

# Where outputs are kept, not what they are: names are hashed with these keys at the defaults' values.
LOCATION_KEYS = ("genre.runs_dir", "data.prepared_dir", "features.cache_dir")
# Keys added after the names of the default config were pinned, with the value each was added at.
ADDED_KEYS = {"genre.models.poster.poster_text": False, "genre.models.fusion.poster_text": False,
              "encoders.ocr.min_line_height": 0}
# genre.models.<task> keys of the model that fine-tunes its encoder (movietitles.models.title_task)
FINETUNE_KEYS = ("finetune_layers", "finetune_learning_rate", "finetune_warm_start")
# Options of a genre model whose keys are left out of its name while their switch (the first key) is off, so that
# the runs made before the keys existed keep their names: the fine-tuning title model, the per-modality fusion heads.
SWITCHED_KEYS = (FINETUNE_KEYS, ("modality_logits", "joint_units"))
# generator.* keys that only change how titles are sampled afterwards, not the trained model.
NOT_TRAINING_KEYS = ("sampling",)


def config_hash(what) -> str:
    """10 hex digits of a YAML-able value."""
    return hashlib.sha256(yaml.safe_dump(what, sort_keys=True).encode()).hexdigest()[:10]


@functools.cache
def _default_locations() -> dict[str, Any]:
    defaults = read_yaml(DEFAULT_CONFIG)
    return {dotted: get(defaults, dotted) for dotted in LOCATION_KEYS}


def identity(config: dict) -> dict:
    """`config` as names hash it: its LOCATION_KEYS set to the defaults' values, its ADDED_KEYS left out while they
    hold the value they were added at."""
    same = copy.deepcopy(config)
    for dotted, value in _default_locations().items():
        section, key = dotted.split(".")
        if key in same.get(section, {}):
            same[section][key] = value
    for dotted, added_at in ADDED_KEYS.items():
        *parents, key = dotted.split(".")
        node = get(same, ".".join(parents))
        if isinstance(node, dict) and key in node and node[key] == added_at:
            del node[key]
    return same


def finetuned_text_encoder_name(config: dict, finetune: dict) -> str:
    """`finetune`: the checked `encoders.text.finetune` settings."""
    genre = config["genre"]
    shaping = {"finetune": finetune, "preprocess": str(config["encoders"]["text"]["preprocess_handle"]),
               "data": identity(config)["data"], "title_corpus": genre["title_corpus"],
               "max_pos_weight": genre["max_pos_weight"], "thresholds": genre["thresholds"]}
    return f"minilm-l6-v2-genres-{config_hash(shaping)}"


def genre_run_name(config: dict, task: str, feature_keys: dict[str, str]) -> str:
    """`feature_keys`: the cache key of each feature kind the task's model reads."""
    named = identity(config)
    model = dict(named["genre"]["models"][task])
    for keys in SWITCHED_KEYS:
        if not model.get(keys[0]):
            model = {key: value for key, value in model.items() if key not in keys}
    shaping = {"task": task, "seed": config["seed"], "data": named["data"], "features": feature_keys,
               "genre": {k: v for k, v in named["genre"].items() if k != "models"}, "model": model}
    return f"{task}-{config_hash(shaping)}"


def generator_run_name(config: dict, poster_key: str, poster_genre_run: str | None) -> str:
    """`poster_key`: the poster feature cache's key; `poster_genre_run`: the name of the poster genre run inside the
    decoder (`generator.predicted_genres`), else None."""
    named = identity(config)
    generator = {k: v for k, v in named["generator"].items() if k not in NOT_TRAINING_KEYS}
    if not generator.get("predicted_genres"):  # off: the runs made before the key existed keep their names
        generator.pop("predicted_genres", None)
    if not enabled_section(generator, "poster_attention"):  # likewise
        generator.pop("poster_attention", None)
    encoders = {"image": poster_key, "bpemb": named["encoders"]["bpemb"]}
    if enabled_section(generator, "poster_text"):
        encoders["ocr"] = named["encoders"]["ocr"]
    shaping = {"task": "generator", "seed": config["seed"], "data": named["data"], "encoders": encoders,
               "generator": generator}
    if poster_genre_run is not None:
        shaping["poster_genre_model"] = poster_genre_run
    return f"generator-{config_hash(shaping)}"


def evaluation_name(config: dict, data_root: str | None = None, keep_overlap: bool = False) -> str:
    return f"evaluation-{config_hash([identity(config), data_root] + (['keep_overlap'] if keep_overlap else []))}"


def generator_evaluation_name(config: dict, data_root: str | None = None) -> str:
    return f"generator-evaluation-{config_hash([identity(config), data_root])}"


def comparison_name(what: str, config: dict, variants: list[str] | None = None) -> str:
    """`variants`: the variants compared, or None for the default set (named by the config alone)."""
    return f"{what}-comparison-{config_hash(identity(config) if variants is None else [identity(config), variants])}"
