import csv
import json

import numpy as np
import pytest
from PIL import Image

from movietitles.evaluation.metrics import SUMMARY_KEYS, multilabel_metrics
from movietitles.evaluation.plots import plot_per_genre_f1, plot_pr_curves
from movietitles.evaluation.report import write_report

GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = (rng.random((400, len(GENRES))) < [0.2, 0.35, 0.5, 0.1, 0.05]).astype(np.int8)
    scores = {name: np.clip(y * strength + rng.normal(0.3, 0.25, y.shape), 0, 1)
              for name, strength in [("title", 0.2), ("poster", 0.3), ("fusion | mean", 0.5),
                                     ("prior", 0.0)]}
    results = {name: multilabel_metrics(y, (s >= 0.5).astype(np.int8), GENRES)
               for name, s in scores.items()}
    return y, scores, results


def test_report_files_and_exact_json_schema(tmp_path, data):
    _, _, results = data
    notes = {"thresholds": "tuned per genre on validation",
             "data each model saw": {"title": "800 training titles", "poster": "600 posters"}}
    paths = write_report(tmp_path / "run", results, test_size=400, notes=notes)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "metrics.csv", "metrics.json", "report.md"]
    assert all(p.stat().st_size > 0 for p in paths.values())

    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(payload) == {"models", "test_size", "notes"}
    assert payload["test_size"] == 400 and payload["notes"] == notes
    assert list(payload["models"]) == list(results)
    for name, row in payload["models"].items():
        assert list(row) == [*SUMMARY_KEYS, "per_genre"]
        assert list(row["per_genre"]) == GENRES
        for genre_metrics in row["per_genre"].values():
            assert set(genre_metrics) == {"precision", "recall", "f1", "support"}
        assert row == results[name]

    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == list(results)
    assert list(rows[0]) == ["model", *SUMMARY_KEYS]
    assert float(rows[2]["macro_f1"]) == pytest.approx(results["fusion | mean"]["macro_f1"])

    md = (tmp_path / "run" / "report.md").read_text()
    for name in ["title", "poster", r"fusion \| mean", "prior", *GENRES]:
        assert f"| {name} |" in md
    assert "- **thresholds**: tuned per genre on validation" in md
    assert "- **data each model saw**\n  - **title**: 800 training titles" in md
    best_macro = max(r["macro_f1"] for r in results.values())
    assert f"**{best_macro:.3f}**" in md


def test_json_without_notes_has_only_models_and_test_size(tmp_path, data):
    write_report(tmp_path, data[2], test_size=400)
    assert set(json.loads((tmp_path / "metrics.json").read_text())) == {"models", "test_size"}


def test_rows_from_different_test_sets_are_refused(tmp_path, data):
    y, scores, results = data
    other = multilabel_metrics(y[:100], (scores["title"][:100] >= 0.5).astype(np.int8), GENRES)
    with pytest.raises(ValueError, match="same test set"):
        write_report(tmp_path, {**results, "other": other}, test_size=400)
    with pytest.raises(ValueError, match="lacks"):
        write_report(tmp_path, {"bad": {"micro_f1": 0.5}}, test_size=400)


def test_plots_write_readable_pngs(tmp_path, data):
    y, scores, results = data
    for path in (plot_per_genre_f1(results, tmp_path / "f1.png"),
                 plot_pr_curves(y, scores, tmp_path / "pr.png", top=3)):
        assert path.stat().st_size > 5000
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 300
    with pytest.raises(ValueError, match="shape"):
        plot_pr_curves(y, {"bad": scores["title"][:10]}, tmp_path / "bad.png")


def test_markdown_tables_escape_cells_and_align_numbers():
    from movietitles.markdown import markdown_table

    table = markdown_table(["Model", "F1"], [["title | n-grams", 0.51234], ["two\nlines", "0.4"]])
    assert table.splitlines() == ["| Model | F1 |", "|---|---:|", r"| title \| n-grams | 0.512 |", "| two lines | 0.4 |"]
    assert markdown_table(["#", "title"], [[1, "Heat"]], numbers=False).splitlines()[1] == "|---|---|"
