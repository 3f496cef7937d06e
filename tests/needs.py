"""What a test needs from outside the project: `../shared`, a packaged model, a program.

Missing, it skips the test on a developer's machine, and fails it under `CI=true` (where .ci/run installs
everything and `../shared` is mounted), so that a green CI run means every test ran.
"""

import importlib
import os
import shutil
from pathlib import Path

import pytest

ON_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str):
    if ON_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need_path(path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        missing(f"{what} is not available at {path}")
    return path


def need_module(name: str, what: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"{what} ({name}) is not installed")


def need_program(name: str, what: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing(f"{what} ({name}) is not on PATH (.ci/run installs it)")
    return found
