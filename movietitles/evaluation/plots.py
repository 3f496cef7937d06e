"""PNG figures for an evaluation run (matplotlib Agg; no pyplot global state)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import matplotlib
import matplotlib.patches
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

from movietitles.evaluation.thresholds import check_labels
from movietitles.io import atomic_write_bytes


def _save(fig: Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def plot_per_genre_f1(results: Mapping[str, dict], path: str | Path) -> Path:
    """Heatmap of per-genre F1: one row per genre, one column per model, the value in each cell
    (multilabel_metrics output). Columns are ordered as given; the best model per genre is boxed."""
    if not results:
        raise ValueError("plot_per_genre_f1: results is empty")
    names = list(results)
    genres = list(results[names[0]]["per_genre"])
    f1 = np.array([[results[n]["per_genre"][g]["f1"] for n in names] for g in genres])
    fig = Figure(figsize=(float(np.clip(2.5 + 0.55 * len(names), 6, 13)), float(np.clip(1.5 + 0.32 * len(genres), 3, 10))))
    ax = fig.add_subplot()
    image = ax.imshow(f1, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(len(genres)):
        best = int(np.argmax(f1[i]))
        for j in range(len(names)):
            ax.text(j, i, f"{f1[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if f1[i, j] > 0.6 else "white", fontweight="bold" if j == best else "normal")
        ax.add_patch(matplotlib.patches.Rectangle((best - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.2))
    supports = [results[names[0]]["per_genre"][g]["support"] for g in genres]
    ax.set_yticks(range(len(genres)), [f"{g} ({s})" for g, s in zip(genres, supports)], fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_title("Per-genre F1 on the test set (genre (support) x model; best per genre boxed)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="F1")
    return _save(fig, path)


def plot_main_rows_f1(results: Mapping[str, dict], path: str | Path, rows: list[str] | None = None) -> Path:
    """Per-genre F1 bars of a few main rows, with their 95% intervals (`per_genre[g]["f1_ci"]`) as error bars."""
    rows = [r for r in (rows or list(results)[:4]) if r in results]
    if not rows:
        raise ValueError("plot_main_rows_f1: none of the rows is in results")
    genres = list(results[rows[0]]["per_genre"])
    y, height = np.arange(len(genres)), 0.8 / len(rows)
    fig = Figure(figsize=(8, float(np.clip(1.5 + 0.28 * len(genres) * max(1, len(rows) / 2), 3, 11))))
    ax = fig.add_subplot()
    colours = matplotlib.colormaps["tab10"].colors
    for k, row in enumerate(rows):
        per_genre = results[row]["per_genre"]
        f1 = np.array([per_genre[g]["f1"] for g in genres])
        ci = np.array([per_genre[g].get("f1_ci", [v, v]) for g, v in zip(genres, f1)], dtype=float)
        errors = np.clip(np.stack([f1 - ci[:, 0], ci[:, 1] - f1]), 0, None)
        ax.barh(y + (k - (len(rows) - 1) / 2) * height, f1, height, xerr=errors, label=row,
                color=colours[k % len(colours)], error_kw={"elinewidth": 0.8, "capsize": 1.5})
    ax.set_yticks(y, genres, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (test), with 95% interval")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(rows), 4), frameon=False)
    return _save(fig, path)


def plot_pr_curves(y_true: np.ndarray, scores_by_model: Mapping[str, np.ndarray],
                   path: str | Path, top: int = 3) -> Path:
    """Micro-averaged precision-recall curves of the `top` models by micro average precision."""
    y = check_labels(y_true)
    if not scores_by_model:
        raise ValueError("plot_pr_curves: scores_by_model is empty")
    ap = {}
    for name, scores in scores_by_model.items():
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != y.shape:
            raise ValueError(f"plot_pr_curves: scores of {name!r} have shape {scores.shape}, "
                             f"labels {y.shape}")
        ap[name] = average_precision_score(y, scores, average="micro")
    best = sorted(ap, key=ap.get, reverse=True)[:top]
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for name in best:
        precision, recall, _ = precision_recall_curve(
            y.ravel(), np.asarray(scores_by_model[name], dtype=np.float64).ravel())
        ax.step(recall, precision, where="post", label=f"{name} (AP={ap[name]:.3f})")
    ax.axhline(y.mean(), color="grey", linestyle=":", label=f"chance ({y.mean():.3f})")
    ax.set_xlabel("Recall (micro)")
    ax.set_ylabel("Precision (micro)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Micro-averaged precision-recall (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    return _save(fig, path)
