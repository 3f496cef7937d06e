"""What a run shows in TensorBoard beyond the per-epoch scalars and histograms of the training loops.

Every summary goes into a run directory (a folder with an event file) through TF2's
`tf.summary` writers, so TensorBoard's dashboards find it:

- PR Curves: one curve per genre (`tensorboard.plugins.pr_curve.summary.pb`, written raw);
- Images: posters with their true and predicted genres (or their titles), drawn under the poster;
- Text: markdown tables (tuned thresholds, generated titles);
- Projector: title and poster vectors, title and genres as metadata, the posters as a sprite;
- HParams: a run's hyper-parameters (`hp.hparams`) and its final metrics as scalars beside them.
"""

from __future__ import annotations

import math
import re
import shutil
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont
from sklearn.metrics import f1_score
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.pr_curve import summary as pr_summary

from movietitles.config import enabled_section
from movietitles.evaluation.thresholds import predict
from movietitles.io import atomic_write_text
from movietitles.markdown import markdown_table

PR_THRESHOLDS = 101
SPRITE_SIDE = 64                # a sprite thumbnail is SPRITE_SIDE x SPRITE_SIDE (the projector wants squares)
SPRITE_MAX = 8192               # the projector's largest sprite image, in pixels per side
METRIC_PREFIX = "hparams/"      # final metrics of a run, beside its hyper-parameters


def _writer(logdir: str | Path):
    return tf.summary.create_file_writer(str(logdir))


def write_pr_curves(logdir: str | Path, labels: np.ndarray, scores: np.ndarray, genres: Sequence[str],
                    step: int = 0, description: str = "") -> None:
    """One precision-recall curve per genre (tag `<genre>/pr_curves`) in the run `logdir`."""
    labels, scores = np.asarray(labels), np.clip(np.asarray(scores, dtype=np.float32), 0.0, 1.0)
    if labels.shape != scores.shape or labels.shape[1] != len(genres):
        raise ValueError(f"write_pr_curves: labels {labels.shape}, scores {scores.shape}, {len(genres)} genres")
    writer = _writer(logdir)
    with writer.as_default():
        for g, genre in enumerate(genres):
            summary = pr_summary.pb(genre, labels[:, g].astype(bool), scores[:, g], num_thresholds=PR_THRESHOLDS,
                                    display_name=genre, description=description)
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
    writer.close()


def poster_thumbnail(path: str | Path, side: int) -> Image.Image:
    """The poster fitted into a `side` x `side` square (aspect kept, dark padding); grey if unreadable."""
    canvas = Image.new("RGB", (side, side), (24, 24, 24))
    try:
        with Image.open(path) as poster:
            poster.draft("RGB", (side, side))  # JPEG: decode at a reduced scale, much faster
            poster = poster.convert("RGB")
            poster.thumbnail((side, side))
            canvas.paste(poster, ((side - poster.width) // 2, (side - poster.height) // 2))
    except OSError:
        canvas.paste((128, 128, 128), (0, 0, side, side))
    return canvas


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def captioned_poster(path: str | Path, lines: Sequence[str], width: int = 320, poster_height: int = 240,
                     height: int = 400) -> np.ndarray:
    """The poster on top, `lines` of text under it: an RGB uint8 array for `tf.summary.image`.

    Narrow, so that the Images dashboard shows it near its real size and the text stays legible.
    """
    image = Image.new("RGB", (width, height), (255, 255, 255))
    poster = poster_thumbnail(path, poster_height)
    image.paste(poster, ((width - poster_height) // 2, 0))
    draw, font = ImageDraw.Draw(image), _font(15)
    y, chars = poster_height + 6, max(8, (width - 12) // 8)
    for line in lines:
        for piece in textwrap.wrap(line, chars) or [""]:
            if y <= height - 18:
                draw.text((6, y), piece, fill=(0, 0, 0), font=font)
            y += 18
        y += 4
    return np.asarray(image)


def write_posters(logdir: str | Path, tag: str, posters: Sequence[str | Path], captions: Sequence[Sequence[str]],
                  step: int = 0, description: str = "") -> None:
    """Posters with their captions, one image each (Images dashboard, tag `tag`)."""
    if not posters:
        return
    images = np.stack([captioned_poster(p, c) for p, c in zip(posters, captions)])
    writer = _writer(logdir)
    with writer.as_default():
        tf.summary.image(tag, images, step=step, max_outputs=len(images), description=description)
    writer.close()


def write_text(logdir: str | Path, tag: str, markdown: str, step: int = 0) -> None:
    writer = _writer(logdir)
    with writer.as_default():
        tf.summary.text(tag, markdown, step=step)
    writer.close()


def write_sprite(path: Path, posters: Sequence[str | Path]) -> int:
    """A square grid of square poster thumbnails, row by row (the projector's sprite layout).

    Returns the thumbnail side, smaller than SPRITE_SIDE when many posters would not fit.
    """
    grid = max(1, math.ceil(math.sqrt(len(posters))))
    side = min(SPRITE_SIDE, SPRITE_MAX // grid)
    sprite = Image.new("RGB", (grid * side, grid * side), (255, 255, 255))
    for i, poster in enumerate(posters):
        sprite.paste(poster_thumbnail(poster, side), ((i % grid) * side, (i // grid) * side))
    path.parent.mkdir(parents=True, exist_ok=True)
    sprite.save(path, format="PNG")
    return side


def _tsv_cell(text: str) -> str:
    return str(text).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def write_projector(logdir: str | Path, embeddings: Mapping[str, np.ndarray], titles: Sequence[str],
                    genres: Sequence[str], posters: Sequence[str | Path] | None = None,
                    about: str = "") -> Path:
    """Title and/or poster vectors in the embedding projector, in their own run `logdir/projector`.

    The projector lists a run only if its folder holds an event file, so a short text summary
    (`about`, the Text dashboard) is written there too. Rows of every embedding are the same movies.
    """
    logdir = Path(logdir) / "projector"
    logdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(logdir / "metadata.tsv", "title\tgenres\n" + "".join(
        f"{_tsv_cell(t)}\t{_tsv_cell(g).replace('|', ', ')}\n" for t, g in zip(titles, genres)))
    side = write_sprite(logdir / "sprite.png", posters) if posters is not None else None
    variables = {name: tf.Variable(np.asarray(values, np.float32), name=name) for name, values in embeddings.items()}
    tf.train.Checkpoint(**variables).save(str(logdir / "embeddings.ckpt"))
    config = projector.ProjectorConfig()
    for name in variables:
        embedding = config.embeddings.add()
        embedding.tensor_name = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = "metadata.tsv"
        if side:
            embedding.sprite.image_path = "sprite.png"
            embedding.sprite.single_image_dim.extend([side, side])
    projector.visualize_embeddings(str(logdir), config)
    shapes = ", ".join(f"{name} {np.shape(values)[1]}-d" for name, values in embeddings.items())
    write_text(logdir, "embeddings", f"{len(titles)} movies; vectors: {shapes}. {about}".strip())
    return logdir


def hparam_value(value):
    """HParams take bool, int, float or str: anything else (lists, None) becomes its text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "none" if value is None else str(value)


def write_hparams(logdir: str | Path, hparams: Mapping[str, object], metrics: Mapping[str, float],
                  trial_id: str | None = None, step: int = 0) -> None:
    """A session of the HParams dashboard in the run `logdir`: its hyper-parameters and final metrics
    (scalars `hparams/<name>`). Call again with only `metrics` (hparams={}) to add metrics later."""
    writer = _writer(logdir)
    with writer.as_default():
        if hparams:
            hp.hparams({k: hparam_value(v) for k, v in hparams.items()}, trial_id=trial_id)
        for name, value in metrics.items():
            tf.summary.scalar(METRIC_PREFIX + name, float(value), step=step)
    writer.close()


# --- What each task logs -------------------------------------------------------------------------

def f1_metrics(prefix: str, labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """F1 with the tuned per-genre thresholds (named like the training loop's `val_tuned_macro_f1`) and at 0.5."""
    tuned, fixed = predict(scores, thresholds), predict(scores, 0.5)
    return {f"{prefix}_tuned_micro_f1": f1_score(labels, tuned, average="micro", zero_division=0),
            f"{prefix}_tuned_macro_f1": f1_score(labels, tuned, average="macro", zero_division=0),
            f"{prefix}_macro_f1_at_0.5": f1_score(labels, fixed, average="macro", zero_division=0)}


def _genre_list(row: np.ndarray, genres: Sequence[str], scores: np.ndarray | None = None) -> str:
    names = [f"{g} {scores[k]:.2f}" if scores is not None else g for k, g in enumerate(genres) if row[k]]
    return ", ".join(names) or "(none)"


def log_genre_run(logdir: str | Path, hparams: dict, task: str, movies, labels: np.ndarray, scores: np.ndarray,
                  thresholds: np.ndarray, genres: Sequence[str], inputs: Mapping[str, np.ndarray],
                  best_epoch: int, n_posters: int = 8) -> None:
    """After training: validation PR curves, posters, thresholds, the projector and the HParams session.

    `hparams`: what the run is compared by (`settings.genre_hparams`); `movies`, `labels`, `scores` and `inputs` are
    the validation movies, row by row.
    """
    logdir = Path(logdir)
    final = logdir / "validation_final"   # the kept (best) model on the validation split
    about = f"{task} model at its best epoch ({best_epoch + 1}), validation split ({len(labels)} movies)"
    write_pr_curves(final, labels, scores, genres, step=best_epoch, description=about)
    predicted = predict(scores, thresholds)
    shown = np.sort(np.random.default_rng(hparams["seed"]).choice(len(labels), min(n_posters, len(labels)),
                                                                 replace=False))
    write_posters(final, "posters", movies["poster"].iloc[shown].tolist(),
                  [[movies["title"].iloc[i], f"true: {_genre_list(labels[i], genres)}",
                    f"predicted: {_genre_list(predicted[i], genres, scores[i])}"] for i in shown],
                  step=best_epoch, description=f"Fixed validation posters; predicted with tuned thresholds. {about}")
    per_genre = f1_score(labels, predicted, average=None, zero_division=0)
    write_text(final, "thresholds", markdown_table(
        ["genre", "threshold", "validation F1", "validation support"],
        [[g, float(thresholds[k]), float(per_genre[k]), int(labels[:, k].sum())] for k, g in enumerate(genres)]),
        step=best_epoch)
    write_projector(logdir, inputs, movies["title"].tolist(), movies["genres"].tolist(),
                    movies["poster"].tolist(), about="Validation movies; metadata: title, genres; sprite: posters.")
    write_hparams(logdir, hparams,
                  {**f1_metrics("val", labels, scores, thresholds), "best_epoch": best_epoch + 1},
                  trial_id=logdir.parent.name)


def slug(name: str) -> str:
    """A row name as a folder name: `early fusion (Method 2)` -> `early_fusion_Method_2`."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", name).strip("_")


def log_evaluation(eval_dir: str | Path, hparams: dict, labels: np.ndarray, scores: Mapping[str, np.ndarray],
                   results: Mapping[str, dict], genres: Sequence[str], description: str,
                   genre_rows: Mapping[str, Path | None]) -> None:
    """Test PR curves of every scored row (run `logs/<row>`), an HParams session for each row that is
    not a trained genre model, and the test metrics of each genre model into its own run's session.

    `hparams`: what the runs are compared by (`settings.genre_hparams`); `genre_rows`: row name -> that genre model's
    run directory (None: evaluated on another dataset,
    whose metrics are not the run's test metrics).
    """
    logdir = Path(eval_dir) / "logs"
    shutil.rmtree(logdir, ignore_errors=True)   # a re-run replaces the evaluation's runs, never adds to them
    shared = {k: v for k, v in hparams.items()
              if k in ("text_encoder", "image_encoder", "resize", "thresholds", "seed")}
    for row, row_scores in scores.items():
        write_pr_curves(logdir / slug(row), labels, row_scores, genres, description=f"{row}: {description}")
    for row, result in results.items():
        metrics = {f"test_{k}": result[k] for k in ("micro_f1", "macro_f1", "micro_precision", "micro_recall")}
        if row in genre_rows:
            if genre_rows[row] is not None:
                write_hparams(Path(genre_rows[row]) / "logs", {}, metrics)
        elif "@0.5" not in row:
            write_hparams(logdir / slug(row), {**shared, "task": row}, metrics, trial_id=f"{Path(eval_dir).name}/{row}")


def generator_hparams(config: dict) -> dict:
    gcfg, encoders = config["generator"], config["encoders"]
    bpemb = encoders["bpemb"]
    keys = ("embeddings", "trainable_embeddings", "use_genres", "poster_projection", "gru_units", "gru_layers",
            "dropout", "learning_rate", "batch_size", "warmup_epochs", "max_len")
    return {"task": "generator", "image_encoder": encoders["image"]["name"], "resize": encoders["image"]["resize"],
            "bpemb": f"{bpemb['lang']} vs{bpemb['vs']} d{bpemb['dim']}", "seed": config["seed"],
            **{k: gcfg[k] for k in keys},
            # absent from configs written before them
            "predicted_genres": bool(gcfg.get("predicted_genres")),
            "poster_attention": bool(enabled_section(gcfg, "poster_attention"))}
