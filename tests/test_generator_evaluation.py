"""`evaluate --task generator` on a tiny trained decoder: perplexities under three poster conditions,
made-up title ranking, generated-title metrics, user pairs, and the embedding comparison."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movietitles.config import with_overrides
from movietitles.data.dataset import load_prepared
from movietitles import experiments
from movietitles.evaluation import generator_report
from movietitles.generator.data import poster_titles
from movietitles.generator.tokenizer import TitleTokenizer
from movietitles.training.generator import train_generator
from needs import need_path, need_program

BPEMB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "bpemb"
SMALL = {"generator.gru_units": 16, "generator.poster_projection": 8, "generator.batch_size": 16,
         "generator.warmup_epochs": 1, "generator.epochs": 1, "generator.patience": 5}


@pytest.fixture(scope="module")
def gen_config(tiny_config):
    for lang in ("en", "nl"):
        need_path(BPEMB_DIR / lang, f"BPEmb ({lang}), which the title generator needs,")
    config = with_overrides(tiny_config, {**SMALL, "encoders.bpemb.cache_dir": str(BPEMB_DIR)})
    train_generator(config)
    return config


def test_report_holds_every_table(gen_config):
    out = generator_report.evaluate_generator(gen_config, samples=5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["perplexity"]) == {"true poster", "zero poster", "shuffled posters"}
    for condition in metrics["perplexity"].values():
        assert condition["perplexity_per_token"] > 1 and condition["perplexity_per_char"] > 1
    ranking = metrics["made_up_titles"]
    assert set(ranking["rankers"]) == {"mean log-likelihood per token", "PMI", "summed log-likelihood"}
    assert ranking["posters"] == metrics["titles"] and 1 <= ranking["rankers"]["PMI"]["mean_rank"] <= ranking["candidates"]
    pmi = ranking["rankers"]["PMI"]
    assert pmi["recall_at_10_interval"][0] <= pmi["recall_at_10"] <= pmi["recall_at_10_interval"][1]
    swap = metrics["swap_test"]
    assert swap["gain_interval"][0] <= swap["gain_bits_per_char"] <= swap["gain_interval"][1]
    assert swap["bits_per_char_true"] == pytest.approx(metrics["perplexity"]["true poster"]["bits_per_char"])
    generated = metrics["generated"]
    assert generated["generated"] == metrics["titles"] and 0 <= generated["share_new"] <= 1
    assert 0 <= generated["share_real_words"] <= 1
    # The reference column: the test titles themselves, measured against the training titles.
    tokenizer = TitleTokenizer.from_config(gen_config)
    movies = load_prepared(gen_config["data"]["prepared_dir"]).movies
    known = {w for t in movies.loc[movies["split"] == "train", "title"] for w in tokenizer.normal_form(t).split()}
    test_titles = poster_titles(gen_config, "test", tokenizer).movies["title"]
    test_words = [w for t in test_titles for w in tokenizer.normal_form(t).split()]
    truth = metrics["true_titles"]
    assert truth["generated"] == metrics["titles"]
    assert truth["share_real_words"] == pytest.approx(np.mean([w in known for w in test_words]))
    html = (out / "report.html").read_text()
    row = re.search(r"<tr><td>share_real_words</td><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)</td></tr>", html)
    assert "<th>true titles</th>" in html and row is not None
    assert [float(row.group(1)), float(row.group(2))] == pytest.approx(
        [generated["share_real_words"], truth["share_real_words"]], abs=1e-3)
    report = (out / "report.md").read_text()
    for heading in ("swap test", "Cross-entropy", "Made-up titles", "Generated titles", "Samples"):
        assert heading in report
    assert (out / "title_lengths.png").stat().st_size > 0 and (out / "config.yaml").exists()


def test_html_report_opens_in_chromium_with_generated_titles_per_poster(gen_config, tmp_path):
    import re

    import browser

    need_program("chromium", "Debian's Chromium")
    out = generator_report.evaluate_generator(gen_config, samples=5)
    dom, _ = browser.render(out / "report.html", tmp_path)
    assert re.search(r'data-broken-images="(\d+)"', dom).group(1) == "0"
    assert int(re.search(r'data-images="(\d+)"', dom).group(1)) == 1 + 5   # the plot and five posters
    for table in ("swap-test", "perplexity", "made-up-titles", "generated"):
        assert f'id="{table}"' in dom
    cards = re.findall(r'<div class="card".*?</ol>', dom, re.S)
    assert len(cards) == 5 and all(card.count("<li>") == 3 for card in cards)


def test_user_pairs_are_scored(gen_config, tmp_path):
    movies = load_prepared(gen_config["data"]["prepared_dir"]).movies
    poster = movies.loc[movies["has_poster"], "poster"].iloc[0]
    csv = tmp_path / "pairs.csv"
    pd.DataFrame({"poster": [poster, poster], "title": ["The Silent Garden", "A much longer made up title"]}
                 ).to_csv(csv, index=False)
    scores = generator_report.score_pairs(gen_config, str(csv))
    assert list(scores.columns[-4:]) == ["mean_log_likelihood", "pmi", "summed_log_likelihood", "tokens"]
    assert (scores["summed_log_likelihood"] < 0).all() and scores["tokens"].iloc[1] > scores["tokens"].iloc[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("image,title\nx.jpg,Heat\n")
    with pytest.raises(ValueError, match="poster,title"):
        generator_report.score_pairs(gen_config, str(bad))


def test_embedding_comparison_trains_and_scores_each_variant(gen_config):
    """Two of the six variants (another language, trainable vectors): each one is a training run of its own."""
    names = ["BPEmb en, frozen", "BPEmb nl, trainable"]
    out, table = experiments.compare_embeddings(gen_config, names)
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == names
    # What each language's BPEmb leaves out of the titles, which bits per character do not pay for.
    assert re.search(r"by language: en \d+\.\d+%, nl \d+\.\d+%", (out / "report.md").read_text())
    assert "bits / char" in (out / "report.md").read_text()
    seconds = [line.rsplit("|", 2)[-2].strip() for line in table.splitlines()[2:]]
    assert all(float(s) > 0 for s in seconds), table  # each variant's training time, not "-"
    with pytest.raises(ValueError, match="unknown embedding variant.*'BPEmb fr'"):
        experiments.compare_embeddings(gen_config, ["BPEmb fr"])


def test_evaluation_on_another_dataset_scores_all_its_posters(gen_config, tmp_path):
    from tiny_dataset import make_tiny_movielens

    other_root = make_tiny_movielens(tmp_path / "new-films", n_with_poster=15, n_without_poster=3, seed=11)
    out = generator_report.evaluate_generator(gen_config, str(other_root), samples=3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert str(other_root) in metrics["evaluated_on"] and metrics["titles"] >= 15


def test_conditioning_ablation_trains_and_scores_each_variant(gen_config):
    """`evaluate --task conditioning` on two variants: each row holds that run's own test scores."""
    names = ["poster vector, par-inject", "poster vector + predicted genres"]
    config = with_overrides(gen_config, {"genre.models.poster.ensemble": 1})
    out, table = experiments.compare_conditioning(config, names)
    rows = [line for line in table.splitlines() if line.startswith("| poster vector")]
    assert [row.split("|")[1].strip() for row in rows] == names
    for name, row in zip(names, rows):
        variant = with_overrides(config, experiments.CONDITIONING_VARIANTS[name])
        # The variant's own evaluation, as compare_conditioning wrote it.
        metrics = json.loads((generator_report.evaluation_directory(variant) / "metrics.json").read_text())
        assert float(row.split("|")[2]) == pytest.approx(metrics["swap_test"]["bits_per_char_true"], abs=1e-3)
    assert rows[0] != rows[1]  # two different decoders
    reference = next(line for line in table.splitlines() if line.startswith("| the true titles"))
    truth = metrics["true_titles"]
    assert [float(c) for c in reference.split("|")[6:8]] == pytest.approx(
        [truth["share_real_words"], truth["share_new"]], abs=1e-3)
    assert (out / "report.md").read_text().count("| poster vector") == 2
    with pytest.raises(ValueError, match="unknown conditioning variant.*'posterior'"):
        experiments.compare_conditioning(config, ["posterior"])
