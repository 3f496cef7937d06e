"""Write an evaluation run's results: metrics.json, metrics.csv and report.md.

A row may carry bootstrap intervals (`"ci": {metric: [lo, hi]}`, and `"f1_ci"` per genre); the
report then shows each value with its interval. Paired comparisons between rows (see
`bootstrap.Bootstrap.compare`) and a short answer section are optional.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from movietitles.evaluation.metrics import SUMMARY_KEYS
from movietitles.io import atomic_write_text
from movietitles.markdown import markdown_table

COLUMN_TITLES = {
    "micro_precision": "Micro P", "micro_recall": "Micro R", "micro_f1": "Micro F1",
    "macro_f1": "Macro F1", "samples_f1": "Samples F1", "weighted_f1": "Weighted F1",
}
Notes = Mapping[str, Any] | Sequence[str] | str | None


def _check_results(results: Mapping[str, dict]) -> list[str]:
    """Validate every row's metrics dict; return the genre names (shared by all rows)."""
    if not results:
        raise ValueError("write_report: results is empty")
    genres = supports = first = None
    for name, row in results.items():
        missing = [k for k in (*SUMMARY_KEYS, "per_genre") if k not in row]
        if missing:
            raise ValueError(f"write_report: results[{name!r}] lacks {missing} "
                             "(expected multilabel_metrics output)")
        row_supports = {g: m["support"] for g, m in row["per_genre"].items()}
        if genres is None:
            first, genres, supports = name, list(row["per_genre"]), row_supports
        elif row_supports != supports:
            raise ValueError(f"write_report: results[{name!r}] has other genres or supports than "
                             f"results[{first!r}]; every row must be scored on the same test set")
    return genres


def _bold_best(values: list[float], intervals: list | None = None) -> list[str]:
    shown = [f"{v:.3f}" for v in values]
    best = max(shown, key=float)
    cells = [f"**{s}**" if s == best else s for s in shown]
    if intervals is not None:
        cells = [cell if ci is None else f"{cell} [{ci[0]:.3f}, {ci[1]:.3f}]" for cell, ci in zip(cells, intervals)]
    return cells


def signed_interval(difference: float, ci: list[float]) -> str:
    """"+0.031 [+0.012, +0.050]": a difference a reader can scan."""
    return f"{difference:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _p_value(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def _comparison_lines(comparisons: Sequence[dict]) -> list[str]:
    if not comparisons:
        return []
    rows = [[c["row"], c["against"], COLUMN_TITLES[c["metric"]],
             signed_interval(c["difference"], c["ci"]), _p_value(c["p_value"])] for c in comparisons]
    return ["", "## Paired comparisons", "",
            "Differences on the same bootstrap resamples of the test movies, with their 95% interval "
            "and two-sided p-value; an interval that includes 0 is noise.", "",
            *_table(["Model", "Against", "Metric", "Difference [95% CI]", "p"], rows)]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return markdown_table(header, rows).splitlines()


def _notes_markdown(notes: Notes) -> list[str]:
    if notes is None:
        return []
    if isinstance(notes, str):
        body = [notes]
    else:
        body = _bullets(notes)
    return ["", "## Notes", "", *body]


def _bullets(items: Mapping[str, Any] | Sequence[Any], indent: str = "") -> list[str]:
    """Markdown bullets; nested mappings and lists become indented sub-bullets."""
    pairs = items.items() if isinstance(items, Mapping) else ((None, v) for v in items)
    lines = []
    for key, value in pairs:
        label = f"**{key}**" if key is not None else ""
        nested = isinstance(value, (Mapping, list, tuple))
        text = "" if nested else str(value)
        lines.append(f"{indent}- {label}{': ' if label and text else ''}{text}".rstrip())
        if nested:
            lines += _bullets(value, indent + "  ")
    return lines


def render_markdown(results: Mapping[str, dict], test_size: int, notes: Notes = None,
                    title: str = "Genre prediction results", comparisons: Sequence[dict] = (),
                    answer: Sequence[str] = (), sections: Sequence[str] = ()) -> str:
    genres = _check_results(results)
    names = list(results)
    with_ci = any("ci" in results[n] for n in names)
    columns = [_bold_best([results[n][key] for n in names],
                          [results[n].get("ci", {}).get(key) for n in names] if with_ci else None)
               for key in SUMMARY_KEYS]
    summary_rows = [[n] + [col[i] for col in columns] for i, n in enumerate(names)]
    first = results[names[0]]["per_genre"]
    genre_rows = [[g, str(first[g]["support"])]
                  + _bold_best([results[n]["per_genre"][g]["f1"] for n in names])
                  for g in genres]
    intervals = " Values in brackets are 95% bootstrap intervals over the test movies." if with_ci else ""
    lines = [
        f"# {title}", "",
        *(["## Answer", "", *(f"- {line}" for line in answer), ""] if answer else []),
        f"Test set: {test_size} movies. Best value per column in bold.{intervals}", "",
        *_table(["Model"] + [COLUMN_TITLES[k] for k in SUMMARY_KEYS], summary_rows),
        *_comparison_lines(comparisons), "",
        "## Per-genre F1", "",
        "Best model per genre in bold.", "",
        *_table(["Genre", "Support"] + names, genre_rows),
        *(line for section in sections for line in ("", section.rstrip("\n"))),
        *_notes_markdown(notes),
    ]
    return "\n".join(lines) + "\n"


def render_csv(results: Mapping[str, dict]) -> str:
    """One line per model; with intervals, each metric is followed by its `_lo` and `_hi` columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    with_ci = any("ci" in row for row in results.values())
    if with_ci:
        writer.writerow(["model", *(f"{k}{end}" for k in SUMMARY_KEYS for end in ("", "_lo", "_hi"))])
    else:
        writer.writerow(["model", *SUMMARY_KEYS])
    for name, row in results.items():
        cells = []
        for key in SUMMARY_KEYS:
            cells.append(repr(float(row[key])))
            if with_ci:
                cells += [repr(float(v)) for v in row["ci"][key]] if "ci" in row else ["", ""]
        writer.writerow([name, *cells])
    return buffer.getvalue()


def write_report(run_dir: str | Path, results: Mapping[str, dict], test_size: int,
                 notes: Notes = None, title: str = "Genre prediction results",
                 comparisons: Sequence[dict] = (), answer: Sequence[str] = (),
                 extra: Mapping[str, Any] | None = None, sections: Sequence[str] = ()) -> dict[str, Path]:
    """Write metrics.json, metrics.csv and report.md into run_dir; return their paths.

    results maps a row (model) name to multilabel_metrics(...) output, all on one test set, with
    optional bootstrap intervals ("ci", and "f1_ci" per genre). notes (a string, a list of lines or
    a mapping, JSON-serialisable) goes to both metrics.json ("notes") and the end of report.md;
    comparisons and answer go to both too; extra (JSON-serialisable) to metrics.json only, and
    sections (markdown, each with its own heading) to report.md only, before the notes.
    """
    _check_results(results)
    run_dir = Path(run_dir)
    payload: dict[str, Any] = {
        "models": {name: {**{k: float(row[k]) for k in SUMMARY_KEYS},
                          **({"ci": row["ci"]} if "ci" in row else {}),
                          "per_genre": row["per_genre"]}
                   for name, row in results.items()},
        "test_size": int(test_size),
    }
    if comparisons:
        payload["comparisons"] = list(comparisons)
    if answer:
        payload["answer"] = list(answer)
    payload.update(extra or {})
    if notes is not None:
        payload["notes"] = notes
    paths = {"json": run_dir / "metrics.json", "csv": run_dir / "metrics.csv",
             "markdown": run_dir / "report.md"}
    atomic_write_text(paths["json"], json.dumps(payload, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["csv"], render_csv(results))
    atomic_write_text(paths["markdown"], render_markdown(results, test_size, notes, title, comparisons, answer,
                                                                 sections))
    return paths
