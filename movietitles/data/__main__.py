"""Command line: `python -m movietitles.data prepare [--config F] [--set data.root=...] [--no-progress]`."""

from __future__ import annotations

import argparse
import sys

from movietitles.cli import add_common_arguments, entry_point
from movietitles.config import config_from_args


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movietitles.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare", help="read the source, check posters, write splits")
    add_common_arguments(prepare_parser)
    args = parser.parse_args(argv)

    if args.command == "prepare":
        from movietitles.data.prepare import prepare

        summary = prepare(config_from_args(args), progress=not args.no_progress)
        print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
