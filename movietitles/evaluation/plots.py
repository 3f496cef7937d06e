"""PNG figures for an evaluation run (matplotlib Agg; no pyplot global state)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import matplotlib
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
    """Grouped bar chart: one group per genre, one bar per model (multilabel_metrics output)."""
    if not results:
        raise ValueError("plot_per_genre_f1: results is empty")
    names = list(results)
    genres = list(results[names[0]]["per_genre"])
    width = 0.8 / len(names)
    x = np.arange(len(genres))
    fig = Figure(figsize=(float(np.clip(2 + 0.08 * len(genres) * len(names), 8, 18)), 5))
    ax = fig.add_subplot()
    colours = matplotlib.colormaps["tab20"].colors  # up to 20 models, each its own colour
    for i, name in enumerate(names):
        f1 = [results[name]["per_genre"][g]["f1"] for g in genres]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, f1, width, label=name, color=colours[i % len(colours)])
    ax.set_xticks(x, genres, rotation=45, ha="right")
    ax.set_ylabel("F1 (test)")
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.5, len(genres) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncol=min(len(names), 5), loc="lower center",
              bbox_to_anchor=(0.5, 1.01), title="Per-genre F1 by model")
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
