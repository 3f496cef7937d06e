"""Command line:

    python -m movietitles.data download movielens [--variant ml-latest|ml-latest-small]   # titles and genres
    python -m movietitles.data download posters --kaggle-csv FILE_OR_URL                 # poster files
    python -m movietitles.data prepare [--config F] [--set data.root=...] [--no-progress]

`download` writes into `data.root` (`--set data.root=DIR`), in the layout `prepare` reads.
"""

from __future__ import annotations

import argparse
import sys

from movietitles.cli import add_common_arguments, entry_point
from movietitles.config import config_from_args, get
from movietitles.data.public_datasets import GROUPLENS, MOVIELENS
from movietitles.data.public_datasets import __doc__ as DOWNLOAD_HELP
from movietitles.settings import DataSettings


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movietitles.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare", help="read the source, check posters, write splits")
    add_common_arguments(prepare_parser)
    download_parser = commands.add_parser(
        "download", help="fetch MovieLens and/or poster files into data.root (resumable)",
        description=DOWNLOAD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    download_parser.add_argument("what", choices=["movielens", "posters"])
    download_parser.add_argument("--variant", choices=MOVIELENS, default="ml-latest",
                                 help="movielens: ml-latest (86k films, ~335 MB zip; the default data's source) "
                                      "or ml-latest-small (9.7k films, ~1 MB)")
    download_parser.add_argument("--base-url", default=GROUPLENS, help="movielens: where the zips are (a mirror)")
    download_parser.add_argument("--kaggle-csv", metavar="FILE_OR_URL",
                                 help="posters: the Kaggle 'Movie Genre from its Poster' CSV (MovieGenre.csv)")
    add_common_arguments(download_parser)
    args = parser.parse_args(argv)

    if args.command == "download":
        return download(args)
    if args.command == "prepare":
        from movietitles.data.prepare import prepare

        summary = prepare(DataSettings.from_config(config_from_args(args)), progress=not args.no_progress)
        print("\n".join(summary.lines()))
    return 0


def download(args) -> int:
    config = config_from_args(args)
    root, progress = get(config, "data.root"), not args.no_progress
    if args.what == "movielens":
        from movietitles.data.public_datasets import download_movielens

        folder = download_movielens(root, args.variant, args.base_url, progress=progress)
        print(f"MovieLens {args.variant}: {', '.join(sorted(p.name for p in folder.glob('*.csv')))} in {folder}")
    else:
        from movietitles.data.public_datasets import DatasetDownloadError, download_kaggle_posters

        if not args.kaggle_csv:
            raise DatasetDownloadError("download posters needs --kaggle-csv FILE_OR_URL (the Kaggle 'Movie Genre "
                                       "from its Poster' CSV, MovieGenre.csv)")
        have, failed = download_kaggle_posters(root, args.kaggle_csv, progress=progress,
                                               **DataSettings.from_config(config).download)
        print(f"posters: {have} in {root}/posters; {len(failed)} failed")
        for result in failed[:10]:
            print(f"  {result.id}: {result.reason} ({result.url})")
    print(f"next: python -m movietitles.data prepare --set data.root={root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
