"""report.html: tables (with intervals when present), embedded plots, and a gallery card per test
poster; rendered in headless Chromium, which must find every table and card and no broken image."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import browser
from tiny_dataset import plain_posters
from movietitles.evaluation.html_report import gallery_records, write_html_report
from movietitles.evaluation.metrics import SUMMARY_KEYS, multilabel_metrics
from movietitles.evaluation.plots import plot_main_rows_f1, plot_per_genre_f1
from needs import need_program

GENRES = ["Action", "Comedy", "Drama", "Horror"]
ROWS = ["title (BERT)", "poster (CNN)", "early fusion (Method 2)"]


def needs_chromium():
    need_program("chromium", "Debian's Chromium")


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """40 made-up test movies with posters (one poster file missing), three models' scores and predictions."""
    root = tmp_path_factory.mktemp("html")
    rng = np.random.default_rng(3)
    posters = plain_posters(root / "posters", 40, (80, 120), rng)
    posters[5] = str(root / "posters" / "missing.jpg")
    movies = pd.DataFrame({"title": [f"Film <{i}> & co" for i in range(40)], "poster": posters})
    labels = (rng.random((40, len(GENRES))) < 0.35).astype(np.int8)
    scores = {row: np.clip(labels * s + rng.random(labels.shape) * 0.6, 0, 1) for row, s in zip(ROWS, (.3, .2, .5))}
    predictions = {row: (v >= 0.5).astype(np.int8) for row, v in scores.items()}
    results = {row: multilabel_metrics(labels, predictions[row], GENRES) for row in ROWS}
    return root, movies, labels, scores, predictions, results


def with_intervals(results):
    """The payload of metrics.json after bootstrap intervals and paired comparisons were added."""
    models = {row: {**{k: r[k] for k in SUMMARY_KEYS}, "ci": {k: [r[k] - 0.05, r[k] + 0.04] for k in SUMMARY_KEYS},
                    "per_genre": {g: {**m, "f1_ci": [max(0, m["f1"] - 0.1), min(1, m["f1"] + 0.1)]}
                                  for g, m in r["per_genre"].items()}}
              for row, r in results.items()}
    return {"models": models, "test_size": 40, "notes": {"thresholds": "0.5", "data each model saw": {"title": "x"}},
            "comparisons": [{"row": ROWS[2], "against": ROWS[0], "metric": "macro_f1", "difference": 0.123,
                             "ci": [0.011, 0.234], "p_value": 0.0123}],
            "answer": ["Posters add 0.12 macro-F1 to titles."]}


def test_gallery_records_pick_confident_right_and_wrong_and_a_sample(evaluation):
    _, movies, labels, scores, predictions, _ = evaluation
    records = gallery_records(movies, labels, scores, predictions, GENRES, main_row=ROWS[2], n_sample=5,
                              n_confident=3, seed=0)
    kinds = [r["kind"] for r in records]
    assert kinds.count("sample") == 5 and 1 <= kinds.count("confident right") <= 3
    assert kinds.count("confident wrong") == 3
    titles = [r["title"] for r in records]
    assert len(set(titles)) == len(titles)   # no movie twice
    for record in records:
        i = int(movies.index[movies["title"] == record["title"]][0])
        true = {g for k, g in enumerate(GENRES) if labels[i, k]}
        assert set(record["true"]) == true and list(record["models"]) == ROWS
        main = record["models"][ROWS[2]]
        assert main["scores"][GENRES[0]] == pytest.approx(scores[ROWS[2]][i, 0])
        if record["kind"] == "confident right":
            assert set(main["predicted"]) == true
        if record["kind"] == "confident wrong":
            assert set(main["predicted"]) - true
    wrong = [r for r in records if r["kind"] == "confident wrong"]
    worst = [max(r["models"][ROWS[2]]["scores"][g] for g in set(r["models"][ROWS[2]]["predicted"]) - set(r["true"]))
             for r in wrong]
    assert worst == sorted(worst, reverse=True)


def test_report_renders_in_chromium_with_every_table_plot_and_card(evaluation, tmp_path):
    needs_chromium()
    root, movies, labels, scores, predictions, results = evaluation
    payload = with_intervals(results)
    plots = {"Per-genre F1": plot_per_genre_f1(results, tmp_path / "f1.png"),
             "Main rows": plot_main_rows_f1(payload["models"], tmp_path / "main.png", ROWS)}
    gallery = gallery_records(movies, labels, scores, predictions, GENRES, main_row=ROWS[2], n_sample=40, seed=0)
    assert any(r["poster"].endswith("missing.jpg") for r in gallery)
    page = write_html_report(tmp_path / "run", payload, plots, gallery, "Genre prediction results")
    assert "<script" not in page.read_text()

    dom, screenshot = browser.render(page, tmp_path / "chromium")
    body = re.search(r"<body([^>]*)>", dom).group(1)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    assert re.search(r'data-broken-images="(\d+)"', body).group(1) == "0"
    assert images == len(plots) + len(gallery) - 1   # the missing poster is a "no poster" box, not a broken image
    for table in ("summary", "comparisons", "per-genre"):
        assert f'id="{table}"' in dom
    assert dom.count('class="card"') == len(gallery) == 40
    assert dom.count("no poster") == 1
    assert "Film &lt;7&gt; &amp; co" in dom and "[0.011, 0.234]" in dom and "Posters add 0.12" in dom
    summary = re.search(r'<table class="data" id="summary">(.*?)</table>', dom, re.S).group(1)
    assert summary.count("<tr>") == 1 + len(ROWS) and summary.count('class="ci"') == len(ROWS) * len(SUMMARY_KEYS)
    with Image.open(screenshot) as shot:
        assert shot.size == (1366, 768) and np.asarray(shot.convert("L")).std() > 5


def test_report_without_intervals_has_no_interval_cells(evaluation, tmp_path):
    _, _, _, _, _, results = evaluation
    payload = {"models": results, "test_size": 40}
    html = write_html_report(tmp_path, payload, {}, [], "Genre prediction results").read_text()
    assert 'id="summary"' in html and 'id="per-genre"' in html
    assert 'id="comparisons"' not in html and 'class="ci"' not in html and "Gallery" not in html


def test_per_genre_heatmap_fits_a_laptop_screen_with_many_models(tmp_path, evaluation):
    _, _, _, _, _, results = evaluation
    many = {f"model {k}": results[ROWS[k % 3]] for k in range(17)}
    with Image.open(plot_per_genre_f1(many, tmp_path / "f1.png")) as image:
        assert 600 <= image.width <= 1700 and image.height >= 300
    with pytest.raises(ValueError, match="none of the rows"):
        plot_main_rows_f1(results, tmp_path / "x.png", ["absent"])


def test_genre_evaluation_report_opens_in_chromium(tiny_config, trained, tmp_path):
    needs_chromium()
    from movietitles.evaluate import MODEL_ROWS, evaluate_genres

    run_dir = evaluate_genres(tiny_config)
    dom, _ = browser.render(run_dir / "report.html", tmp_path)
    assert re.search(r'data-broken-images="(\d+)"', dom).group(1) == "0"
    assert int(re.search(r'data-images="(\d+)"', dom).group(1)) >= 2 + 1   # two plots and posters
    assert 'id="summary"' in dom and 'id="per-genre"' in dom
    test_size = int(re.search(r"Test set: (\d+) movies", dom).group(1))
    cards = dom.count('class="card"')
    assert cards == test_size if test_size <= 12 else cards >= 12
    card = dom[dom.index('class="card"'):]
    headline = json.loads((run_dir / "metrics.json").read_text())["headline_fusion_row"]
    for row in (MODEL_ROWS["title"], MODEL_ROWS["poster"], MODEL_ROWS["fusion"], headline):
        assert f"<td>{row}</td>" in card[:card.index("</table>")]
