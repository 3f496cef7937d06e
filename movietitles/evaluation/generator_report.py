"""The title generator's evaluation: test perplexity, what the poster adds, made-up titles and
generated titles. Writes report.md and metrics.json. (Comparisons that train variants:
movietitles/experiments.py.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from movietitles.config import enabled_section, write_config
from movietitles.data.dataset import load_prepared
from movietitles.evaluation.html_report import generator_gallery, write_html_report
from movietitles.evaluation.title_scores import (
    RANKERS, bpemb_coverage, generation_metrics, made_up_title_ranking, perplexity, score_title_set, score_titles,
    swap_test)
from movietitles.generator.data import no_poster_text, poster_titles
from movietitles.generator.runs import load_generator_run, run_directory
from movietitles.generator.sampling import generate_titles
from movietitles.io import atomic_write_text
from movietitles.markdown import markdown_table
from movietitles.naming import generator_evaluation_name

log = logging.getLogger(__name__)

SHUFFLES = 5  # derangements averaged in the swap test


def poster_conditions(title_set, seed: int, pad_id: int) -> dict:
    """The titles with their true poster, with none (zero vector, no text: the warm-up's condition), and with
    another movie's poster (vector and text)."""
    return {"true poster": title_set, "zero poster": title_set.without_posters(pad_id),
            "shuffled posters": title_set.with_shuffled_posters(seed)}


def _scores(run, title_set):
    return score_title_set(run.model, run.tokenizer, title_set)


def condition_perplexities(run, title_set, seed: int) -> dict[str, dict]:
    return {name: perplexity(_scores(run, condition), title_set.characters)
            for name, condition in poster_conditions(title_set, seed, run.tokenizer.pad_id).items()}


def poster_swap_test(run, title_set, seed: int, n_resamples: int = 1000) -> dict:
    """The headline: bits/char with shuffled real posters minus with the true poster (SHUFFLES derangements)."""
    shuffled = [_scores(run, title_set.with_shuffled_posters(seed + k))
                for k in range(SHUFFLES)]
    return swap_test(_scores(run, title_set), shuffled, title_set.characters, n_resamples, seed)


def text_table(header: list[str], rows: list[list]) -> str:
    return markdown_table(header, rows, numbers=False)


def evaluation_set(config: dict, tokenizer, data_root: str | None):
    if data_root is None:
        return poster_titles(config, "test", tokenizer), "test split"
    from movietitles.artefacts import ensure_features, ensure_other_prepared, other_dataset_config
    from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE

    other = other_dataset_config(config, data_root)
    ensure_other_prepared(other)
    reads_text = enabled_section(config["generator"], "poster_text")
    ensure_features(other, (TITLE, POSTER, POSTER_TEXT) if reads_text else (TITLE, POSTER))
    return poster_titles(other, "all", tokenizer), f"every movie with a poster in {data_root}"


def evaluation_directory(config: dict, data_root: str | None = None) -> Path:
    """`<genre.runs_dir>/generator-evaluation-<hash of the config and the data evaluated on>`."""
    return Path(config["genre"]["runs_dir"]) / generator_evaluation_name(config, data_root)


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

    out = evaluation_directory(config, data_root)
    write_config(config, out)
    coverage = bpemb_coverage(run.tokenizer, real)
    metrics = {"run": str(run.run_dir), "evaluated_on": description, "titles": len(test),
               "swap_test": swap, "perplexity": conditions, "bpemb_coverage": coverage,
               "made_up_titles": ranking, "generated": generation,
               "true_titles": true_titles, "sampling": sampling}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    rng = np.random.default_rng(seed)
    shown = rng.choice(len(test), min(samples, len(test)), replace=False)
    report = "\n\n".join([
        f"# Title generator evaluation\n\nRun `{run.run_dir}`; {len(test)} titles ({description}).",
        "## Does the poster help? (swap test)\n\n" + swap_test_text(swap),
        "## Cross-entropy (nats) and perplexity\n\n" + coverage_text(coverage) + "\n\n" + text_table(
            ["poster", "per BPE token", "perplexity / token", "per character", "perplexity / char", "bits / char"],
            [[name, c["cross_entropy_per_token"], c["perplexity_per_token"], c["cross_entropy_per_char"],
              c["perplexity_per_char"], c["bits_per_char"]] for name, c in conditions.items()]),
        f"## Made-up titles\n\nEach of {ranking['posters']} posters ranks its true title among "
        f"{ranking['candidates'] - 1} other titles of the set. Mean length (BPE tokens with </s>) of the "
        f"candidates: {ranking['mean_tokens_of_candidates']:.2f}; of the true titles: "
        f"{ranking['mean_tokens_of_true_titles']:.2f}.\n\n" + text_table(
            ["ranked by", "recall@1", "recall@10", "mean rank", "tokens of top-scored candidate"],
            [[name, with_interval(r, "recall_at_1"), with_interval(r, "recall_at_10"),
              with_interval(r, "mean_rank", "{:.1f}"), r["mean_tokens_of_top_candidate"]]
             for name, r in ranking["rankers"].items()]
            + [["chance", ranking["rankers"][RANKERS[0]]["chance_recall_at_1"],
                ranking["rankers"][RANKERS[0]]["chance_recall_at_10"],
                ranking["rankers"][RANKERS[0]]["chance_mean_rank"], "-"]]),
        f"## Generated titles (one per poster; generator.sampling: {json.dumps(sampling)})\n\n"
        "Beside them, the same metrics of the true test titles: what a generator that wrote each poster's own "
        f"title would score. {true_titles['share_real_words']:.1%} of their words appear in the training titles, "
        "so a model that reads titles off posters cannot reach a higher share of real words without avoiding "
        "the rare ones.\n\n" + text_table(
            ["metric", "generated", "true titles"], [[k, v, true_titles[k]] for k, v in generation.items()]),
        "## Samples\n\n" + text_table(["true title", "generated"], [[real[i], generated[i]] for i in shown]),
    ]) + "\n"
    atomic_write_text(out / "report.md", report)
    _plot_lengths(generated, real, out / "title_lengths.png")
    shown_titles = generate_titles(run, test.poster[shown], test.genres[shown] if uses_genres else None, n=3,
                                   seed=seed, **sampling,
                                   poster_text=None if test.poster_text is None else test.poster_text[shown])
    write_html_report(out, metrics, {"Title lengths (words)": out / "title_lengths.png"},
                      generator_gallery(test.movies, shown, shown_titles), "Title generator evaluation")
    return out


def with_interval(metrics: dict, key: str, fmt: str = "{:.3f}") -> str:
    low, high = metrics[f"{key}_interval"]
    return f"{fmt.format(metrics[key])} [{fmt.format(low)}, {fmt.format(high)}]"


def coverage_text(coverage: dict) -> str:
    return ("Per character: the cost of BPEmb's form of each title (lowercased, digits as 0, unknown characters "
            "dropped, cut at generator.max_len) over the title's own characters, so a lower bound on the cost of "
            f"the exact title. Here BPEmb's form writes {coverage['share_of_titles_written_whole']:.1%} of the "
            f"titles whole (up to case and digits) and leaves out {coverage['share_of_characters_not_written']:.2%} "
            "of their characters.")


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
