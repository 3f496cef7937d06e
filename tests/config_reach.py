"""Follow the configuration dictionary through a real call: which movietitles functions receive it."""

from __future__ import annotations

import inspect
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

PACKAGE_DIR = str(Path(__file__).resolve().parents[1] / "movietitles")
SECTIONS = {"seed", "data", "encoders", "features", "genre", "generator"}


def is_whole_config(value) -> bool:
    return isinstance(value, dict) and SECTIONS <= value.keys()


def carries_whole_config(value) -> bool:
    """The dictionary itself, or an object (a result, a run, settings) holding it in one of its attributes."""
    if is_whole_config(value):
        return True
    try:
        attributes = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        return False
    return isinstance(attributes, dict) and not isinstance(value, type) and \
        any(is_whole_config(attribute) for attribute in list(attributes.values()))


def argument_values(frame) -> list:
    """The values a call received: named arguments, then each of its *args and **kwargs."""
    code, values = frame.f_code, frame.f_locals
    count = code.co_argcount + code.co_kwonlyargcount
    received = [values.get(name) for name in code.co_varnames[:count]]
    if code.co_flags & inspect.CO_VARARGS:
        received += list(values.get(code.co_varnames[count]) or ())
        count += 1
    if code.co_flags & inspect.CO_VARKEYWORDS:
        received += list((values.get(code.co_varnames[count]) or {}).values())
    return received


@contextmanager
def config_reach():
    """Yields {module: {function, ...}} of every movietitles function called, inside the block, with an argument
    that is a whole configuration dictionary (any copy of one) or holds one in an attribute."""
    reached: dict[str, set[str]] = {}

    def profile(frame, event, arg):
        if event != "call" or not frame.f_code.co_filename.startswith(PACKAGE_DIR):
            return
        if any(carries_whole_config(value) for value in argument_values(frame)):
            reached.setdefault(frame.f_globals["__name__"], set()).add(frame.f_code.co_qualname)

    previous = sys.getprofile()
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        yield reached
    finally:
        sys.setprofile(previous)
        threading.setprofile(None)
