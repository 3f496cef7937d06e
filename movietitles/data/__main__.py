"""Command line: `python -m movietitles.data prepare [--config F] [--set data.root=...]`."""

from __future__ import annotations

import argparse
import sys

from movietitles.config import ConfigError, add_config_arguments, config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movietitles.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare", help="read the source, check posters, write splits")
    add_config_arguments(prepare_parser)
    prepare_parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)

    if args.command == "prepare":
        from movietitles.data.prepare import prepare
        from movietitles.data.sources import SourceError

        try:
            summary = prepare(config_from_args(args), progress=not args.no_progress)
        except (ConfigError, SourceError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
