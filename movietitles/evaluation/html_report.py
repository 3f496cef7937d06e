"""`report.html`: an evaluation run's tables, plots and a gallery of test posters in one
self-contained page (images embedded as data URIs; plain HTML and CSS, no JavaScript).

    write_html_report(run_dir, payload, plots={"Per-genre F1": path}, gallery=records, title="...")

`payload` is what the run writes to metrics.json: a genre evaluation's (`models`, `test_size`,
`notes`, and when present `ci` per row, `f1_ci` per genre, `comparisons`, `answer`) or the
generator evaluation's (`perplexity`, `made_up_titles`, `generated`). Gallery records:
`{"poster": path, "title": str, "true": [genres], "kind": "sample" | "confident right" | ...,
"models": {row: {"scores": {genre: p}, "predicted": [genres]}}, "generated": [titles]}`.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from movietitles.evaluation.metrics import SUMMARY_KEYS
from movietitles.io import atomic_write_text

THUMBNAIL = (150, 225)
COLUMN_TITLES = {"micro_precision": "Micro P", "micro_recall": "Micro R", "micro_f1": "Micro F1",
                 "macro_f1": "Macro F1", "samples_f1": "Samples F1", "weighted_f1": "Weighted F1"}
KINDS = ("confident right", "confident wrong", "sample")
KIND_NOTES = {
    "confident right": "predicted set equal to the true set, highest mean score of the predicted genres",
    "confident wrong": "at least one predicted genre the movie does not have, highest score of such a genre",
    "sample": "a random sample of the test set",
}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 1rem 1.5rem; color: #1d1d1f; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; }
table.data { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
table.data th, table.data td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right; white-space: nowrap; }
table.data th:first-child, table.data td:first-child { text-align: left; }
table.data thead th { background: #f3f3f5; position: sticky; top: 0; }
td.best { font-weight: bold; background: #e8f4ea; }
.ci { display: block; color: #666; font-size: 0.75rem; }
.answer { background: #f5f8ff; border-left: 4px solid #4063d8; padding: 0.5rem 1rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 0.8rem; }
.card { display: flex; gap: 0.6rem; border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem; font-size: 0.8rem; }
.card img.poster, .card .noposter { width: 100px; height: 150px; object-fit: contain; background: #222; flex: none; }
.card .noposter { color: #eee; display: flex; align-items: center; justify-content: center; }
.card h3 { font-size: 0.95rem; margin: 0 0 0.2rem; }
.card .kind { color: #666; margin: 0 0 0.3rem; font-style: italic; }
.card table { border-collapse: collapse; } .card td { vertical-align: top; padding: 0 0.3rem 0.15rem 0; }
.hit { color: #17702e; font-weight: 600; } .miss { color: #b3261e; } .none { color: #888; }
.card ol { margin: 0.2rem 0 0 1.1rem; padding: 0; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def data_uri(image: Image.Image, fmt: str = "JPEG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def poster_data_uri(path: str | Path) -> str | None:
    """A small JPEG of the poster, or None when the file cannot be read (the card says so)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", THUMBNAIL)
            image = image.convert("RGB")
            image.thumbnail(THUMBNAIL)
            return data_uri(image)
    except (OSError, ValueError):
        return None


def _value(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else _e(v)


def _table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    """`rows` hold ready-made HTML cells (`<td>...</td>`)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return (f'<div class="scroll"><table class="data" id="{table_id}">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _td(v: Any, best: bool = False, ci: Sequence[float] | None = None) -> str:
    interval = f'<span class="ci">[{ci[0]:.3f}, {ci[1]:.3f}]</span>' if ci else ""
    return f'<td{" class=best" if best else ""}>{_value(v)}{interval}</td>'


def _best_flags(values: list[float]) -> list[bool]:
    shown = [round(v, 3) for v in values]
    return [v == max(shown) for v in shown]


def genre_tables(payload: Mapping[str, Any]) -> str:
    models = payload["models"]
    names = list(models)
    parts = [f"<p>Test set: {_e(payload.get('test_size', '?'))} movies. Best value per column highlighted; "
             "95% intervals below the values where computed.</p>"]
    columns = {k: _best_flags([models[n][k] for n in names]) for k in SUMMARY_KEYS}
    rows = [[f"<td>{_e(n)}</td>"] + [_td(models[n][k], columns[k][i], models[n].get("ci", {}).get(k))
                                     for k in SUMMARY_KEYS] for i, n in enumerate(names)]
    parts.append(_table("summary", ["Model"] + [COLUMN_TITLES[k] for k in SUMMARY_KEYS], rows))
    if payload.get("comparisons"):
        rows = [[f"<td>{_e(c.get('row'))}</td>", f"<td>{_e(c.get('against'))}</td>", f"<td>{_e(c.get('metric'))}</td>",
                 _td(float(c["difference"]), ci=c.get("ci")),
                 _td(float(c["p_value"])) if c.get("p_value") is not None else "<td>-</td>"]
                for c in payload["comparisons"]]
        parts += ["<h2>Paired comparisons</h2>",
                  _table("comparisons", ["Model", "against", "metric", "difference (95% interval)", "p-value"], rows)]
    genres = list(models[names[0]]["per_genre"])
    rows = []
    for g in genres:
        f1 = [models[n]["per_genre"][g]["f1"] for n in names]
        flags = _best_flags(f1)
        rows.append([f"<td>{_e(g)}</td>", f"<td>{models[names[0]]['per_genre'][g]['support']}</td>"]
                    + [_td(v, flags[i], models[names[i]]["per_genre"][g].get("f1_ci")) for i, v in enumerate(f1)])
    parts += ["<h2>Per-genre F1</h2>", _table("per-genre", ["Genre", "Support", *names], rows)]
    return "\n".join(parts)


def generator_tables(payload: Mapping[str, Any]) -> str:
    parts = [f"<p>Run <code>{_e(payload.get('run', ''))}</code>; {_e(payload.get('titles', '?'))} titles "
             f"({_e(payload.get('evaluated_on', ''))}).</p>"]
    swap = payload.get("swap_test")
    if swap:
        low, high = swap["gain_interval"]
        parts += ['<h2 id="swap-test">Does the poster help? (swap test)</h2>',
                  f"<p>Bits per character: <b>{swap['bits_per_char_true']:.3f}</b> with the true poster, "
                  f"{swap['bits_per_char_shuffled']:.3f} with another movie's poster (mean of {swap['shuffles']} "
                  f"shuffles). Gain <b>{swap['gain_bits_per_char']:+.3f} bits/char [{low:+.3f}, {high:+.3f}]</b> "
                  "(95% bootstrap interval over titles).</p>"]
    keys = ["cross_entropy_per_token", "perplexity_per_token", "cross_entropy_per_char", "perplexity_per_char",
            "bits_per_char"]
    conditions = payload.get("perplexity", {})
    parts += ["<h2>Cross-entropy (nats) and perplexity</h2>", _table(
        "perplexity", ["poster", *keys],
        [[f"<td>{_e(name)}</td>"] + [_td(c.get(k, "-")) for k in keys] for name, c in conditions.items()])]
    ranking = payload.get("made_up_titles")
    if ranking:
        keys = ["recall_at_1", "recall_at_10", "mean_rank", "mean_tokens_of_top_candidate"]
        parts += ["<h2>Made-up titles</h2>",
                  f"<p>Each of {_e(ranking.get('posters'))} posters ranks its true title among "
                  f"{_e(ranking.get('candidates', 1) - 1)} other titles of the set.</p>",
                  _table("made-up-titles", ["ranked by", *keys],
                         [[f"<td>{_e(name)}</td>"] + [_td(r.get(k, "-")) for k in keys]
                          for name, r in ranking.get("rankers", {}).items()])]
    generated, truth = payload.get("generated"), payload.get("true_titles") or {}
    if generated:
        columns = ["metric", "generated"] + (["true titles"] if truth else [])
        parts += ["<h2>Generated titles</h2>", _table(
            "generated", columns, [[f"<td>{_e(k)}</td>", _td(v)] + ([_td(truth.get(k, "-"))] if truth else [])
                                   for k, v in generated.items()])]
    return "\n".join(parts)


def _notes(notes: Any) -> str:
    if isinstance(notes, Mapping):
        return "<ul>" + "".join(f"<li><b>{_e(k)}</b>: {_notes(v)}</li>" for k, v in notes.items()) + "</ul>"
    if isinstance(notes, (list, tuple)):
        return "<ul>" + "".join(f"<li>{_notes(v)}</li>" for v in notes) + "</ul>"
    return _e(notes)


def _predicted_cell(model: Mapping[str, Any], true: set[str]) -> str:
    scores, predicted = model.get("scores", {}), model.get("predicted", [])
    if not predicted:
        top = sorted(scores, key=scores.get, reverse=True)[:2]
        return '<span class="none">none; top: ' + ", ".join(f"{_e(g)} {scores[g]:.2f}" for g in top) + "</span>"
    spans = [f'<span class="{"hit" if g in true else "miss"}">{_e(g)}'
             + (f" {scores[g]:.2f}" if g in scores else "") + "</span>" for g in predicted]
    return ", ".join(spans)


def gallery_card(record: Mapping[str, Any]) -> str:
    uri = poster_data_uri(record["poster"]) if record.get("poster") else None
    image = (f'<img class="poster" src="{uri}" alt="poster of {_e(record.get("title", ""))}">' if uri
             else '<div class="noposter">no poster</div>')
    true = list(record.get("true", []))
    lines = [f"<h3>{_e(record.get('title', ''))}</h3>", f'<p class="kind">{_e(record.get("kind", ""))}</p>',
             f"<p><b>true:</b> {_e(', '.join(true) or '(none)')}</p>"]
    if record.get("models"):
        lines.append("<table>" + "".join(f"<tr><td>{_e(row)}</td><td>{_predicted_cell(m, set(true))}</td></tr>"
                                         for row, m in record["models"].items()) + "</table>")
    if record.get("generated"):
        lines.append("<b>generated:</b><ol>" + "".join(f"<li>{_e(t)}</li>" for t in record["generated"]) + "</ol>")
    return f'<div class="card" data-kind="{_e(record.get("kind", ""))}">{image}<div>{"".join(lines)}</div></div>'


def gallery_html(gallery: Sequence[Mapping[str, Any]]) -> str:
    kinds = [k for k in KINDS if any(r.get("kind") == k for r in gallery)]
    kinds += sorted({r.get("kind", "") for r in gallery} - set(kinds))
    parts = []
    for kind in kinds:
        note = f" <small>({_e(KIND_NOTES[kind])})</small>" if kind in KIND_NOTES else ""
        cards = "".join(gallery_card(r) for r in gallery if r.get("kind", "") == kind)
        parts.append(f"<h3>{_e(kind or 'posters')}{note}</h3><div class=\"gallery\">{cards}</div>")
    return "\n".join(parts)


def render_html(payload: Mapping[str, Any], plots: Mapping[str, str | Path], gallery: Sequence[Mapping[str, Any]],
                title: str) -> str:
    body = [f"<h1>{_e(title)}</h1>"]
    answer = payload.get("answer")
    if answer:
        lines = [answer] if isinstance(answer, str) else answer
        body.append('<div class="answer">' + "".join(f"<p>{_e(line)}</p>" for line in lines) + "</div>")
    if "models" in payload:
        body += ["<h2>Results</h2>", genre_tables(payload)]
    else:
        body.append(generator_tables(payload))
    if plots:
        body.append("<h2>Plots</h2>")
        for name, path in plots.items():
            with Image.open(path) as image:
                uri = data_uri(image.convert("RGB"), "PNG")
            body.append(f'<figure><img src="{uri}" alt="{_e(name)}"><figcaption>{_e(name)}</figcaption></figure>')
    if gallery:
        body += ["<h2>Gallery of test posters</h2>", gallery_html(gallery)]
    if payload.get("notes"):
        body += ["<h2>Notes</h2>", _notes(payload["notes"])]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_html_report(run_dir: str | Path, payload: Mapping[str, Any], plots: Mapping[str, str | Path],
                      gallery: Sequence[Mapping[str, Any]], title: str) -> Path:
    """Write `run_dir/report.html`; returns its path."""
    path = Path(run_dir) / "report.html"
    atomic_write_text(path, render_html(payload, plots, gallery, title))
    return path


def _genre_names(row: np.ndarray, genres: Sequence[str]) -> list[str]:
    return [g for k, g in enumerate(genres) if row[k]]


def gallery_records(movies, labels: np.ndarray, scores: Mapping[str, np.ndarray],
                    predictions: Mapping[str, np.ndarray], genres: Sequence[str], main_row: str | None = None,
                    n_sample: int = 12, n_confident: int = 6, seed: int = 0) -> list[dict]:
    """Gallery records of test movies: the most confident right and wrong ones of `main_row` (default: the
    first row of `scores`) and a random sample of the others; each with every row of `scores`."""
    main_row = main_row or next(iter(scores))
    labels = np.asarray(labels) > 0
    main_scores, main_pred = np.asarray(scores[main_row]), np.asarray(predictions[main_row]) > 0
    exact = (main_pred == labels).all(axis=1) & main_pred.any(axis=1)
    false_positive = main_pred & ~labels
    predicted_mean = np.where(main_pred, main_scores, 0).sum(axis=1) / np.maximum(main_pred.sum(axis=1), 1)
    worst_false = np.where(false_positive, main_scores, -1).max(axis=1)
    right = [i for i in np.argsort(-predicted_mean, kind="stable") if exact[i]][:n_confident]
    wrong = [i for i in np.argsort(-worst_false, kind="stable") if false_positive[i].any()][:n_confident]
    taken = set(right) | set(wrong)
    rest = np.array([i for i in range(len(labels)) if i not in taken], dtype=int)
    sample = np.random.default_rng(seed).choice(rest, min(n_sample, len(rest)), replace=False) if len(rest) else []
    records = []
    for kind, rows in (("confident right", right), ("confident wrong", wrong), ("sample", sorted(sample))):
        for i in rows:
            records.append({
                "poster": movies["poster"].iloc[i], "title": movies["title"].iloc[i], "kind": kind,
                "true": _genre_names(labels[i], genres),
                "models": {row: {"scores": {g: float(scores[row][i, k]) for k, g in enumerate(genres)},
                                 "predicted": _genre_names(np.asarray(predictions[row][i]) > 0, genres)}
                           for row in scores if row in predictions},
            })
    return records


def generator_gallery(movies, rows: Sequence[int], generated: Sequence[Sequence[str]], kind: str = "sample") -> list[dict]:
    """Gallery records of the generator: poster, true title and genres, the titles generated for it."""
    return [{"poster": movies["poster"].iloc[i], "title": movies["title"].iloc[i], "kind": kind,
             "true": [g for g in str(movies["genres"].iloc[i]).split("|") if g], "generated": list(titles)}
            for i, titles in zip(rows, generated)]
