"""The title generator's evaluation: test perplexity, what the poster adds, made-up titles,
generated titles, and the embedding comparison. Writes report.md and metrics.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from movietitles.config import config_hash, enabled_section, with_overrides, write_config
from movietitles.data.dataset import load_prepared
from movietitles.evaluation.html_report import generator_gallery, write_html_report
from movietitles.evaluation.title_scores import (
    RANKERS, derangement, generation_metrics, made_up_title_ranking, perplexity, score_title_set, score_titles,
    swap_test)
from movietitles.generator.data import no_poster_text, poster_titles
from movietitles.generator.runs import load_generator_run, run_directory
from movietitles.generator.sampling import generate_titles
from movietitles.io import atomic_write_text
from movietitles.markdown import markdown_table
from movietitles.training.generator import train_generator

log = logging.getLogger(__name__)

# The embedding comparison: each variant is a set of config overrides of the generator.
EMBEDDING_VARIANTS = {
    "BPEmb en, frozen": {"generator.embeddings": "bpemb", "generator.trainable_embeddings": False},
    "BPEmb en, trainable": {"generator.embeddings": "bpemb", "generator.trainable_embeddings": True},
    "BPEmb nl, frozen": {"encoders.bpemb.lang": "nl", "generator.embeddings": "bpemb",
                         "generator.trainable_embeddings": False},
    "BPEmb nl, trainable": {"encoders.bpemb.lang": "nl", "generator.embeddings": "bpemb",
                            "generator.trainable_embeddings": True},
    "random, frozen": {"generator.embeddings": "random", "generator.trainable_embeddings": False},
    "random, trainable": {"generator.embeddings": "random", "generator.trainable_embeddings": True},
}


SHUFFLES = 5  # derangements averaged in the swap test


def poster_conditions(title_set, seed: int, pad_id: int) -> dict:
    """The titles with their true poster, with none (zero vector, no text: the warm-up's condition), and with
    another movie's poster (vector and text)."""
    return {"true poster": title_set, "zero poster": title_set.without_posters(pad_id),
            "shuffled posters": title_set.with_posters_of(derangement(len(title_set), seed))}


def _scores(run, title_set):
    return score_title_set(run.model, run.tokenizer, title_set)


def condition_perplexities(run, title_set, seed: int) -> dict[str, dict]:
    return {name: perplexity(_scores(run, condition), title_set.characters)
            for name, condition in poster_conditions(title_set, seed, run.tokenizer.pad_id).items()}


def poster_swap_test(run, title_set, seed: int, n_resamples: int = 1000) -> dict:
    """The headline: bits/char with shuffled real posters minus with the true poster (SHUFFLES derangements)."""
    shuffled = [_scores(run, title_set.with_posters_of(derangement(len(title_set), seed + k)))
                for k in range(SHUFFLES)]
    return swap_test(_scores(run, title_set), shuffled, title_set.characters, n_resamples, seed)


def _table(header: list[str], rows: list[list]) -> str:
    return markdown_table(header, rows, numbers=False)


def evaluation_set(config: dict, tokenizer, data_root: str | None):
    if data_root is None:
        return poster_titles(config, "test", tokenizer), "test split"
    from movietitles.evaluation.other_data import ensure_prepared, other_dataset_config
    from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE
    from movietitles.features.ensure import ensure_features

    other = other_dataset_config(config, data_root)
    ensure_prepared(other)
    reads_text = enabled_section(config["generator"], "poster_text")
    ensure_features(other, (TITLE, POSTER, POSTER_TEXT) if reads_text else (TITLE, POSTER))
    return poster_titles(other, "all", tokenizer), f"every movie with a poster in {data_root}"


def evaluate_generator(config: dict, data_root: str | None = None, samples: int = 20) -> Path:
    run = load_generator_run(run_directory(config))
    seed = config["seed"]
    test, description = evaluation_set(config, run.tokenizer, data_root)
    log.info("scoring %d titles of the %s", len(test), description)
    conditions = condition_perplexities(run, test, seed)
    swap = poster_swap_test(run, test, seed, config["evaluation"]["bootstrap_resamples"])
    distinct = len({run.tokenizer.normal_form(t) for t in test.movies["title"]})
    ranking = made_up_title_ranking(run.model, run.tokenizer, test, n_candidates=min(100, distinct), seed=seed)

    uses_genres = "genres" in run.model.input
    # This config's sampling section (not part of the run), one title per poster.
    sampling = {k: v for k, v in config["generator"]["sampling"].items() if k != "n"}
    generated = [t[0] for t in generate_titles(run, test.poster, test.genres if uses_genres else None, n=1,
                                               seed=seed, poster_text=test.poster_text, **sampling)]
    movies = load_prepared(config["data"]["prepared_dir"]).movies
    training_titles = movies.loc[movies["split"] == "train", "title"].tolist()
    real = test.movies["title"].tolist()
    generation = generation_metrics(generated, real, training_titles, run.tokenizer.normal_form)
    # What a generator that wrote each poster's own title would score: the ceiling of "real words" for a model
    # that reads the title off the poster (a test title's words are not all in the training titles).
    true_titles = generation_metrics(real, real, training_titles, run.tokenizer.normal_form)

    digest = config_hash([config, data_root])
    out = Path(config["genre"]["runs_dir"]) / f"generator-evaluation-{digest}"
    write_config(config, out)
    metrics = {"run": str(run.run_dir), "evaluated_on": description, "titles": len(test),
               "swap_test": swap, "perplexity": conditions, "made_up_titles": ranking, "generated": generation,
               "true_titles": true_titles, "sampling": sampling}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    rng = np.random.default_rng(seed)
    shown = rng.choice(len(test), min(samples, len(test)), replace=False)
    report = "\n\n".join([
        f"# Title generator evaluation\n\nRun `{run.run_dir}`; {len(test)} titles ({description}).",
        "## Does the poster help? (swap test)\n\n" + swap_test_text(swap),
        "## Cross-entropy (nats) and perplexity\n\n" + _table(
            ["poster", "per BPE token", "perplexity / token", "per character", "perplexity / char", "bits / char"],
            [[name, c["cross_entropy_per_token"], c["perplexity_per_token"], c["cross_entropy_per_char"],
              c["perplexity_per_char"], c["bits_per_char"]] for name, c in conditions.items()]),
        f"## Made-up titles\n\nEach of {ranking['posters']} posters ranks its true title among "
        f"{ranking['candidates'] - 1} other titles of the set. Mean length (BPE tokens with </s>) of the "
        f"candidates: {ranking['mean_tokens_of_candidates']:.2f}; of the true titles: "
        f"{ranking['mean_tokens_of_true_titles']:.2f}.\n\n" + _table(
            ["ranked by", "recall@1", "recall@10", "mean rank", "tokens of top-scored candidate"],
            [[name, _with_interval(r, "recall_at_1"), _with_interval(r, "recall_at_10"),
              _with_interval(r, "mean_rank", "{:.1f}"), r["mean_tokens_of_top_candidate"]]
             for name, r in ranking["rankers"].items()]
            + [["chance", ranking["rankers"][RANKERS[0]]["chance_recall_at_1"],
                ranking["rankers"][RANKERS[0]]["chance_recall_at_10"],
                ranking["rankers"][RANKERS[0]]["chance_mean_rank"], "-"]]),
        f"## Generated titles (one per poster; generator.sampling: {json.dumps(sampling)})\n\n"
        "Beside them, the same metrics of the true test titles: what a generator that wrote each poster's own "
        f"title would score. {true_titles['share_real_words']:.1%} of their words appear in the training titles, "
        "so a model that reads titles off posters cannot reach a higher share of real words without avoiding "
        "the rare ones.\n\n" + _table(
            ["metric", "generated", "true titles"], [[k, v, true_titles[k]] for k, v in generation.items()]),
        "## Samples\n\n" + _table(["true title", "generated"], [[real[i], generated[i]] for i in shown]),
    ]) + "\n"
    atomic_write_text(out / "report.md", report)
    _plot_lengths(generated, real, out / "title_lengths.png")
    shown_titles = generate_titles(run, test.poster[shown], test.genres[shown] if uses_genres else None, n=3,
                                   seed=seed, **sampling,
                                   poster_text=None if test.poster_text is None else test.poster_text[shown])
    write_html_report(out, metrics, {"Title lengths (words)": out / "title_lengths.png"},
                      generator_gallery(test.movies, shown, shown_titles), "Title generator evaluation")
    return out


def _with_interval(metrics: dict, key: str, fmt: str = "{:.3f}") -> str:
    low, high = metrics[f"{key}_interval"]
    return f"{fmt.format(metrics[key])} [{fmt.format(low)}, {fmt.format(high)}]"


def swap_test_text(swap: dict) -> str:
    low, high = swap["gain_interval"]
    verdict = ("the true poster makes titles cheaper to encode" if low > 0 else
               "no gain distinguishable from zero" if high >= 0 else "the true poster makes titles costlier")
    return (f"Bits per character of the true titles: **{swap['bits_per_char_true']:.3f}** with their own poster, "
            f"{swap['bits_per_char_shuffled']:.3f} with another movie's poster (mean of {swap['shuffles']} "
            f"shuffles). Gain: **{swap['gain_bits_per_char']:+.3f} bits/char [{low:+.3f}, {high:+.3f}]** "
            f"(95% bootstrap interval over titles, {swap['resamples']} resamples): {verdict}. "
            f"{swap['share_of_titles_cheaper_with_true_poster']:.1%} of titles are cheaper with their own poster.")


def _plot_lengths(generated: list[str], real: list[str], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = np.arange(0.5, 13.5)
    for titles, label in ((real, "real titles"), (generated, "generated")):
        ax.hist([min(len(t.split()), 12) for t in titles], bins=bins, alpha=0.6, label=label, density=True)
    ax.set_xlabel("words (12 = 12 or more)")
    ax.set_ylabel("share of titles")
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")


def score_pairs(config: dict, pairs_csv: str) -> pd.DataFrame:
    """Scores of a user's (poster, title) pairs: mean log-likelihood per token, PMI, summed log-likelihood."""
    from movietitles.features.poster_files import embed_poster_files, poster_text_of_files

    try:
        pairs = pd.read_csv(pairs_csv, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{pairs_csv}: not valid UTF-8 (byte {err.start}): titles must be UTF-8 text") from None
    missing = {"poster", "title"} - set(pairs.columns)
    if missing:
        raise ValueError(f"{pairs_csv}: needs the columns poster,title (missing {sorted(missing)})")
    blank = [row for row, title in enumerate(pairs["title"], start=2) if not title.strip()]
    if blank:  # an empty title would be scored as a bare </s>: nothing a real title is compared with
        raise ValueError(f"{pairs_csv}: row {blank[0]} has an empty or whitespace-only title "
                         f"({len(blank)} such row(s)); give every pair a real title")
    run = load_generator_run(run_directory(config))
    folder = Path(pairs_csv).parent
    paths = [p if Path(p).is_absolute() else folder / p for p in pairs["poster"]]
    posters = embed_poster_files(run.config["encoders"]["image"], paths)
    teacher = [run.tokenizer.teacher_forcing(run.tokenizer.encode(t)) for t in pairs["title"]]
    tokens, targets = [t for t, _ in teacher], [t for _, t in teacher]
    text = poster_text_of_files(run.config, run.tokenizer, paths)
    no_text = None if text is None else no_poster_text(text, run.tokenizer.pad_id)
    with_poster = score_titles(run.model, run.tokenizer, tokens, targets, posters, poster_text=text)
    zero = score_titles(run.model, run.tokenizer, tokens, targets, np.zeros_like(posters), poster_text=no_text)
    return pairs.assign(mean_log_likelihood=with_poster.mean_log_prob, pmi=with_poster.log_prob - zero.log_prob,
                        summed_log_likelihood=with_poster.log_prob, tokens=with_poster.tokens)


# The conditioning ablation: how the poster reaches the decoder. Each is a set of config overrides.
CONDITIONING_VARIANTS = {
    "no poster (language model only)": {"generator.poster_injection": "none"},
    "poster vector, par-inject": {"generator.poster_injection": "par_inject"},
    "poster vector, init-inject": {"generator.poster_injection": "init_inject"},
    "poster vector, par- and init-inject": {"generator.poster_injection": "both"},
    "poster vector + predicted genres": {"generator.predicted_genres": True},
    "text-masked poster vector": {"encoders.image.view": "text_masked"},
    "poster vector, 2 GRU layers": {"generator.gru_layers": 2},
    "poster vector + attention over its feature map": {"encoders.image.pooling": "grid",
                                                       "generator.poster_attention.enabled": True},
    "poster text only (OCR, copy)": {"generator.poster_injection": "none", "generator.poster_text.enabled": True},
    "poster vector + text (OCR, copy)": {"generator.poster_injection": "par_inject",
                                         "generator.poster_text.enabled": True},
}


def compare_conditioning(config: dict, names: list[str] | None = None) -> tuple[Path, str]:
    """Train (or reuse) and evaluate one generator per conditioning variant; one table of their test scores.

    Each variant is a full training run (~20-30 min on 2 cores once features are cached); finished runs are reused.
    """
    names = list(CONDITIONING_VARIANTS) if names is None else names
    unknown = sorted(set(names) - set(CONDITIONING_VARIANTS))
    if unknown:
        raise ValueError(f"unknown conditioning variant(s) {unknown}; expected some of {list(CONDITIONING_VARIANTS)}")
    rows = []
    for name in names:
        variant = with_overrides(config, CONDITIONING_VARIANTS[name])
        log.info("conditioning variant %s", name)
        train_generator(variant)
        metrics = json.loads((evaluate_generator(variant, samples=5) / "metrics.json").read_text())
        swap, pmi, gen = metrics["swap_test"], metrics["made_up_titles"]["rankers"]["PMI"], metrics["generated"]
        low, high = swap["gain_interval"]
        rows.append([name, swap["bits_per_char_true"], f"{swap['gain_bits_per_char']:+.3f} [{low:+.3f}, {high:+.3f}]",
                     _with_interval(pmi, "recall_at_1"), _with_interval(pmi, "recall_at_10"),
                     gen["share_real_words"], gen["share_new"]])
    truth = metrics["true_titles"]  # the same test titles for every variant
    rows.append(["the true titles (reference)", "-", "-", "-", "-", truth["share_real_words"], truth["share_new"]])
    table = _table(["conditioning", "bits / char", "swap-test gain, bits / char [95% CI]", "PMI recall@1",
                    "PMI recall@10", "real words", "new titles"], rows)
    digest = config_hash([config, names])
    out = Path(config["genre"]["runs_dir"]) / f"conditioning-comparison-{digest}"
    write_config(config, out)
    atomic_write_text(out / "report.md", f"# Conditioning ablation (test split)\n\n{table}\n")
    return out, table


def compare_embeddings(config: dict) -> tuple[Path, str]:
    """Train (or reuse) one generator per embedding variant; one table of test perplexities."""
    rows = []
    for name, overrides in EMBEDDING_VARIANTS.items():
        variant = with_overrides(config, overrides)
        log.info("embedding variant %s", name)
        run = load_generator_run(train_generator(variant))
        test = poster_titles(variant, "test", run.tokenizer)
        c = condition_perplexities(run, test, config["seed"])
        rows.append([name, c["true poster"]["perplexity_per_token"], c["true poster"]["perplexity_per_char"],
                     c["true poster"]["bits_per_char"], c["zero poster"]["bits_per_char"],
                     c["shuffled posters"]["bits_per_char"], run.summary.get("seconds_in_last_session", "-")])
    table = _table(["embeddings", "perplexity / token", "perplexity / char", "bits / char",
                    "bits / char, zero poster", "bits / char, shuffled", "train s (last session)"], rows)
    note = ("Per-token perplexities are not comparable across BPEmb languages (each splits titles into its own "
            "subwords); bits per character are.")
    digest = config_hash(config)
    out = Path(config["genre"]["runs_dir"]) / f"embedding-comparison-{digest}"
    write_config(config, out)
    atomic_write_text(out / "report.md", f"# Embedding comparison (test split)\n\n{table}\n\n{note}\n")
    return out, table
