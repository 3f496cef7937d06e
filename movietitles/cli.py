"""What every `python -m movietitles.<command>` shares: the common flags, old flag spellings kept
with a deprecation message, and user errors printed as one `error: ...` line with exit status 2.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

from movietitles.config import ConfigError, add_config_arguments
from movietitles.data.poster_file import PosterFileError
from movietitles.io import DamagedFile

USER_ERROR = 2  # argparse's own exit status for a bad command line


class UserError(Exception):
    """A mistake the user can fix; the message says what to run or change next."""


# FileNotFoundError: a missing input, named with the command that makes it (e.g. PreparedDataMissing);
# DamagedFile: an output of an earlier run that cannot be read back, named with the command that remakes it.
# PosterFileError: a poster file given on the command line that cannot be used, and why.
USER_ERRORS = (UserError, ConfigError, FileNotFoundError, DamagedFile, PosterFileError)


def add_common_arguments(parser: argparse.ArgumentParser, config: bool = True) -> None:
    """--config and --set (when the command reads the config), --no-progress and --verbose."""
    if config:
        add_config_arguments(parser)
    parser.add_argument("--no-progress", action=_NoProgress, help="hide progress bars")
    # Read before TensorFlow loads (movietitles.quiet_tensorflow); here so that the command line accepts it.
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own C++ log lines")


class _NoProgress(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ["TQDM_DISABLE"] = "1"  # the bars of worker processes, which import tqdm afresh
        import tqdm  # this process imported it already, and tqdm reads the variable on import only

        tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)
        setattr(namespace, self.dest, True)


def warn_deprecated(old: str, new: str) -> None:
    print(f"warning: {old} is deprecated and will be removed; use {new}", file=sys.stderr)


def add_deprecated_flag(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs) -> None:
    """`old` still sets `dest` (the value of `new`), with a deprecation message on stderr; hidden from --help."""

    class Deprecated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            warn_deprecated(option_string, new)
            setattr(namespace, self.dest, values)

    parser.add_argument(old, dest=dest, action=Deprecated, help=argparse.SUPPRESS, **kwargs)


def entry_point(main):
    """Wrap a `main(argv) -> int | None`: a user error becomes `error: <message>` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv) or 0
        except USER_ERRORS as e:
            print("error: " + " ".join(str(e).split()), file=sys.stderr)  # one line
            return USER_ERROR

    return wrapper
