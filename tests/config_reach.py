"""Follow the configuration dictionary through a real call: which movietitles functions receive it."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from pathlib import Path

PACKAGE_DIR = str(Path(__file__).resolve().parents[1] / "movietitles")
SECTIONS = {"seed", "data", "encoders", "features", "genre", "generator"}


def is_whole_config(value) -> bool:
    return isinstance(value, dict) and SECTIONS <= value.keys()


@contextmanager
def config_reach():
    """Yields {module: {function, ...}} of every movietitles function called, inside the block, with an argument
    that is a whole configuration dictionary (any copy of one)."""
    reached: dict[str, set[str]] = {}

    def profile(frame, event, arg):
        if event != "call" or not frame.f_code.co_filename.startswith(PACKAGE_DIR):
            return
        code = frame.f_code
        arguments = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        if any(is_whole_config(frame.f_locals.get(name)) for name in arguments):
            reached.setdefault(frame.f_globals["__name__"], set()).add(code.co_qualname)

    previous = sys.getprofile()
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        yield reached
    finally:
        sys.setprofile(previous)
        threading.setprofile(None)
