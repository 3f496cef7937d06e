"""`python -m movietitles.predict --title "..." [--poster poster.jpg] [--model-dir saved_models] [--top N]`.

Predicts one movie's genres with the latest exported SavedModel (`python -m movietitles.export`):
genre_fusion when both a title and a poster are given, genre_title or genre_poster when one is.
Prints every genre by probability, the predicted ones (score >= the genre's tuned threshold) marked.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from movietitles.cli import UserError, add_common_arguments, entry_point
from movietitles.data.poster_file import PosterFileError, read_poster_file
from movietitles.data.titles import clean_title
from movietitles.encoders.image import error_reason
from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE
from movietitles.serving.genre import SIGNATURE_RAW, latest_version, load_serving_model, serving_name
from movietitles.settings import DEFAULT_MAX_BYTES


class PredictError(UserError):
    pass


def choose_task(title: str | None, poster: str | Path | None) -> str:
    if title is None and poster is None:
        raise PredictError("give a --title, a --poster, or both")
    return "fusion" if title is not None and poster is not None else TITLE if title is not None else POSTER


def predict_genres(model_dir: str | Path, title: str | None = None, poster: str | Path | None = None) -> dict:
    """One movie's prediction: {model, version_dir, title_given, title (as the model read it: cleaned), poster_text
    (the words read on the poster, for a model that reads them; else None), genres (names), probabilities [G],
    predicted [G] bool}."""
    import tensorflow as tf

    task = choose_task(title, poster)
    name = serving_name(task)
    version_dir = latest_version(Path(model_dir) / name)
    if version_dir is None:
        raise PredictError(f"no exported {name} model in {Path(model_dir) / name}: "
                           "run `python -m movietitles.export` first")
    inputs, text, cleaned = {}, None, None
    if title is not None:
        # The models were trained on cleaned titles ("Brave, The (1997)" -> "The Brave"); the graph takes them as sent.
        text = check_title(title).decode("utf-8")
        cleaned = clean_title(text).title or text
        inputs[TITLE] = tf.constant([cleaned.encode("utf-8")])
    model = load_serving_model(version_dir)
    if poster is not None:
        limit = model.max_poster_bytes.numpy() if hasattr(model, "max_poster_bytes") else DEFAULT_MAX_BYTES
        pixels = int(model.max_poster_pixels.numpy()) if hasattr(model, "max_poster_pixels") else None
        inputs[POSTER] = tf.constant([_read_poster(poster, int(limit), pixels)])
    words = None
    if hasattr(model, "poster_text_reader"):  # the model reads the poster's words: OCR them as it was trained
        from movietitles.features.poster_files import read_poster_words

        try:
            words = read_poster_words(json.loads(model.poster_text_reader.numpy()), [poster])[0]
        except (ValueError, ImportError) as e:
            raise PredictError(str(e)) from None
        inputs[POSTER_TEXT] = tf.constant([words.encode("utf-8")])
    try:
        out = model.signatures[SIGNATURE_RAW](**inputs)
    except tf.errors.InvalidArgumentError as e:  # the title is checked above: the poster failed
        reason = re.sub(r"^poster 0\b:? ?", "", error_reason(e.message))
        raise PredictError(f"poster {poster} {reason}" if reason.startswith("could not be decoded")
                           else f"poster {poster}: {reason}" if "over the limit" in reason
                           else f"poster {poster} could not be decoded: {reason}") from None
    return {"model": name, "version_dir": version_dir, "title_given": text, "title": cleaned, "poster_text": words,
            "genres": [g.decode() for g in model.genre_names.numpy()],
            "probabilities": out["probabilities"].numpy()[0], "predicted": out["predicted"].numpy()[0] == 1}


def check_title(title: str | bytes) -> bytes:
    """The title as UTF-8 bytes; an empty, whitespace-only or non-UTF-8 title is an error (the
    exported models refuse it too: the genre models were trained on real titles only)."""
    try:
        data = title if isinstance(title, bytes) else title.encode("utf-8")
        text = data.decode("utf-8")
    except UnicodeError:  # bytes from the command line arrive as surrogate escapes
        raise PredictError(f"the title {title!r} is not valid UTF-8") from None
    if not text.strip().strip("\ufeff"):
        raise PredictError(f"the title {title!r} is empty or only whitespace: give a real title, or only a --poster")
    return data


def _read_poster(poster: str | Path, max_bytes: int, max_pixels: int | None) -> bytes:
    try:
        return read_poster_file(poster, max_bytes, max_pixels)
    except PosterFileError as e:
        raise PredictError(str(e)) from None


def format_prediction(result: dict, top: int | None = None) -> str:
    order = np.argsort(-result["probabilities"], kind="stable")[:top]
    chosen = [g for g, p in zip(result["genres"], result["predicted"]) if p]
    width = max(len(g) for g in result["genres"])
    lines = [f"{result['model']} (version {result['version_dir'].name}): {'|'.join(chosen) or '(no genre)'}"]
    if result.get("title") != result.get("title_given"):
        lines.append(f"  (the title read as {result['title']!r}, the form the models were trained on)")
    if result.get("poster_text") is not None:
        lines.append(f"  (the poster's words, read by OCR: {result['poster_text']!r})")
    lines += [f"  {'*' if result['predicted'][k] else ' '} {result['genres'][k]:<{width}}  "
              f"{result['probabilities'][k]:.3f}" for k in order]
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movietitles.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, config=False)
    parser.add_argument("--title", help="the movie title")
    parser.add_argument("--poster", help="a poster image file (JPEG, PNG, GIF, BMP or WebP)")
    parser.add_argument("--model-dir", default="saved_models",
                        help="the export folder, as export writes it (default: saved_models)")
    parser.add_argument("--top", type=int, default=None, help="list only the N most probable genres")
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 1:
        parser.error("--top must be at least 1")
    print(format_prediction(predict_genres(args.model_dir, args.title, args.poster), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
