"""Which rows of a genre evaluation are compared with which, and the report's short answer.

Every row belongs to a modality (title, poster, or fusion of both) or to none (constant
baselines). Each model row is compared with the best baseline of its modality, and each fusion row
with the best single-modality model. "Best" is by the test score of the metric compared: the
strongest opponent makes the comparison conservative.
"""

from __future__ import annotations

from typing import Mapping

from movietitles.evaluation.bootstrap import Bootstrap
from movietitles.evaluation.report import signed_interval

TITLE, POSTER, FUSION = "title", "poster", "fusion"
COMPARED_METRICS = ("macro_f1", "micro_f1")


def is_baseline(row: str) -> bool:
    return row.startswith("baseline")


def plan(modalities: Mapping[str, str | None], results: Mapping[str, dict], single_modality_rows: list[str],
         metric: str) -> list[tuple[str, str]]:
    """(row, against) pairs for one metric. `modalities` maps each row to title/poster/fusion or None."""
    def best(rows):
        rows = [r for r in rows if r in results]
        return max(rows, key=lambda r: results[r][metric]) if rows else None

    baseline_of = {m: best([r for r, rm in modalities.items() if rm == m and is_baseline(r)])
                   for m in (TITLE, POSTER, FUSION)}
    best_single = best(single_modality_rows)
    pairs = []
    for row, modality in modalities.items():
        if modality is None or is_baseline(row) or row not in results:
            continue
        if baseline_of[modality]:
            pairs.append((row, baseline_of[modality]))
        if modality == FUSION and best_single:
            pairs.append((row, best_single))
    return pairs


def compare_rows(bootstrap: Bootstrap, modalities: Mapping[str, str | None], results: Mapping[str, dict],
                 single_modality_rows: list[str]) -> list[dict]:
    return [bootstrap.compare(row, against, metric, results)
            for metric in COMPARED_METRICS
            for row, against in plan(modalities, results, single_modality_rows, metric)]


def _value(results: Mapping[str, dict], row: str, metric: str) -> str:
    lo, hi = results[row]["ci"][metric]
    return f"{results[row][metric]:.3f} [{lo:.3f}, {hi:.3f}]"


def answer(results: Mapping[str, dict], bootstrap: Bootstrap, title_row: str, poster_row: str,
           fusion_row: str) -> list[str]:
    """Lines answering "how much do a title, a poster and both say about a film's genres?"."""
    def reach(what, row):
        return (f"{what} ({row}): macro-F1 {_value(results, row, 'macro_f1')}, "
                f"micro-F1 {_value(results, row, 'micro_f1')}")

    lines = [reach("The title alone", title_row), reach("The poster alone", poster_row),
             reach("Both", fusion_row)]
    for metric, name in (("macro_f1", "macro-F1"), ("micro_f1", "micro-F1")):
        single = max((title_row, poster_row), key=lambda r: results[r][metric])
        c = bootstrap.compare(fusion_row, single, metric, results)
        lines.append(f"Fusion adds over the best single modality ({single}) {signed_interval(c['difference'], c['ci'])}"
                     f" {name} (p {c['p_value']:.3f})")
    return lines
