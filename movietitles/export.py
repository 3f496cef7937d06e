"""`python -m movietitles.export [--task genres|generator] [--models title poster fusion] [--model-dir saved_models]`.

Writes each trained genre model of the config as a TF Serving SavedModel,
`<model-dir>/genre_<task>/<version>/` (a new version each time), encoders and preprocessing included:
see movietitles.serving.genre for the signatures. With `--task generator`, the trained title generator
instead, as `<model-dir>/title_generator/<version>/`: see movietitles.serving.generator.
"""

from __future__ import annotations

import argparse
import logging
import sys

from movietitles.cli import UserError, add_common_arguments, add_deprecated_flag, entry_point
from movietitles.config import config_from_args
from movietitles.models.genre_runs import GENRE_TASKS
from movietitles.serving.genre import export_genre_models
from movietitles.serving.generator import export_title_generator


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movietitles.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--task", choices=("genres", "generator"), default="genres",
                        help="genres: the genre models (--models); generator: the title generator (default: genres)")
    parser.add_argument("--models", nargs="+", choices=list(GENRE_TASKS), default=list(GENRE_TASKS),
                        help="with --task genres: which trained genre models to export (default: all)")
    parser.add_argument("--model-dir", default="saved_models",
                        help="the export folder, as predict reads it (default: saved_models)")
    add_deprecated_flag(parser, "--out", "--model-dir", dest="model_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "tensorflow"):  # SavedModel saving logs every renamed graph input and asset folder
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = config_from_args(args)
    if args.task == "generator":
        try:
            exported = {"generator": export_title_generator(config, args.model_dir)}
        except ValueError as err:  # a run this exporter cannot serve (e.g. one that reads poster text)
            raise UserError(str(err)) from None
    else:
        exported = export_genre_models(config, tuple(dict.fromkeys(args.models)), args.model_dir)
    for task, version_dir in exported.items():
        print(f"{task} model: {version_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
