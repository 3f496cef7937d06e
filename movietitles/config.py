"""Configuration: configs/default.yaml, a user's `--config` file merged over it key by key, then
`--set key.sub=value` flags. A key the defaults do not have is refused by its dotted name.

Every run writes the exact config it used beside its outputs (`write_config`).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import yaml

from movietitles.io import atomic_write_text
from movietitles.settings import ConfigError, check

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """The defaults, with the file at `path` (if any) merged over them, then the `overrides`."""
    config = read_yaml(DEFAULT_CONFIG)
    if path and Path(path).resolve() != DEFAULT_CONFIG:
        user = read_yaml(Path(path))
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: a config file is a YAML mapping of sections, got {type(user).__name__}")
        merge(config, user, source=str(path))
    for override in overrides or []:
        apply_override(config, override)
    check(config)
    return config


def read_yaml(path: Path):
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None


def merge(config: dict, user: dict, source: str = "config", prefix: str = "") -> None:
    """Merge `user` into `config` in place, section by section; every key must already be in `config`."""
    for key, value in user.items():
        dotted = f"{prefix}{key}"
        if key not in config:
            raise ConfigError(f"{source}: unknown key {dotted!r} (not in {DEFAULT_CONFIG.name}; "
                              f"known here: {', '.join(map(str, config))})")
        if isinstance(config[key], dict) and isinstance(value, dict):
            merge(config[key], value, source, f"{dotted}.")
        elif isinstance(config[key], dict) and config[key]:
            raise ConfigError(f"{source}: {dotted!r} is a section of the config (keys {', '.join(config[key])}), "
                              f"got {value!r}")
        else:
            config[key] = value


def apply_override(config: dict, override: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    dotted, raw = override.split("=", 1)
    keys = dotted.strip().split(".")
    node = config
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            raise ConfigError(f"override {override!r}: {key!r} is not a section of the config")
        node = node[key]
    if keys[-1] not in node:
        raise ConfigError(f"override {override!r}: unknown key {dotted!r}")
    node[keys[-1]] = yaml.safe_load(raw)


def get(config: dict, dotted: str, default: Any = None) -> Any:
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def enabled_section(section: dict, key: str) -> dict | None:
    """`section[key]`, an optional sub-section switched by its `enabled` key (e.g. generator.poster_text), or None
    when it is off or absent (configs written before it existed)."""
    sub_section = section.get(key) or {}
    return sub_section if sub_section.get("enabled") else None


def with_overrides(config: dict, overrides: dict[str, Any]) -> dict:
    """A deep copy of `config` with dotted-key overrides applied (values already parsed)."""
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        apply_override(config, f"{dotted}={yaml.safe_dump(value, default_flow_style=True).strip()}")
    return config


def write_config(config: dict, directory: str | Path, name: str = "config.yaml") -> Path:
    path = Path(directory) / name
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML file merged over configs/default.yaml: only the keys it changes")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set encoders.image.resize=pad (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> dict:
    return load_config(args.config, args.overrides)
