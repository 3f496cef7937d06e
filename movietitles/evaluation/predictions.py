"""Per-movie predictions of every evaluation row, for error analysis and for checking a served model.

`predictions.csv`, one line per (row, movie): `model` (the row's name in metrics.json), `id`, `title` (as the
models saw it: cleaned, `The Brave`), `genres` (the true ones, joined by "|"), `predicted` (the row's predicted
genres, thresholds applied), then `p_<genre>`, the row's probability of each genre (empty for rows that predict
sets without scores: union, intersection, constant baselines).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from movietitles.io import atomic_write_text

FILE_NAME = "predictions.csv"
PROBABILITY_PREFIX = "p_"


def genre_sets(matrix: np.ndarray, genres: list[str]) -> list[str]:
    """0/1 rows [N, G] -> the genre names of each row joined by "|" ("" for none)."""
    return ["|".join(g for g, on in zip(genres, row) if on) for row in np.asarray(matrix, bool)]


def predictions_table(movies: pd.DataFrame, labels: np.ndarray, genres: list[str], rows: list[str],
                      predictions: dict[str, np.ndarray], scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """The long table described in the module docstring, rows in the order given."""
    truth = genre_sets(labels, genres)
    parts = []
    for row in rows:
        part = pd.DataFrame({"model": row, "id": movies["id"].to_numpy(), "title": movies["title"].to_numpy(),
                             "genres": truth, "predicted": genre_sets(predictions[row], genres)})
        probabilities = scores.get(row)
        for g, genre in enumerate(genres):
            part[PROBABILITY_PREFIX + genre] = np.nan if probabilities is None else probabilities[:, g]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def write_predictions(run_dir: Path, table: pd.DataFrame) -> Path:
    path = Path(run_dir) / FILE_NAME
    # 8 significant digits keep a float32 probability exact to about 1e-7.
    atomic_write_text(path, table.to_csv(index=False, float_format="%.8g"))
    return path


def read_predictions(path: str | Path) -> pd.DataFrame:
    """predictions.csv as written: text columns as strings (a title "NA" stays "NA"), probabilities as floats."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in table.columns:
        if column.startswith(PROBABILITY_PREFIX):
            table[column] = pd.to_numeric(table[column].replace("", np.nan))
    return table
