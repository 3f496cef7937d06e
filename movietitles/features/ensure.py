"""What every task needs first: the prepared dataset (made once from `data.root`) and the cached
embeddings of the kinds it reads (computed where missing, resuming where a run stopped)."""

from __future__ import annotations

import logging
from pathlib import Path

from movietitles.data.prepare import prepare
from movietitles.features.extract import extract_features

log = logging.getLogger(__name__)


def ensure_prepared(config: dict) -> None:
    if not (Path(config["data"]["prepared_dir"]) / "movies.csv").exists():
        log.info("no prepared dataset in %s: preparing it from %s",
                 config["data"]["prepared_dir"], config["data"]["root"])
        print("\n".join(prepare(config).lines()))


def ensure_features(config: dict, kinds) -> None:
    ensure_prepared(config)
    extract_features(config, kinds)
