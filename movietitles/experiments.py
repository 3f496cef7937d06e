"""Experiments that compare several variants of a model on the test split: they sit above training and evaluation
(they train, then evaluate), so neither of those imports the other.

    python -m movietitles.evaluate --task embeddings     # compare_embeddings: the generator's embeddings
    python -m movietitles.evaluate --task conditioning   # compare_conditioning: how the poster reaches it
    python benchmarks/genre_ablation.py --variant ...    # compare_genre_variants: trained genre models
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np

from movietitles.artefacts import finished_run
from movietitles.config import apply_override, with_overrides, write_config
from movietitles.evaluation.bootstrap import (
    percentile_interval, resample_counts, resampled_metrics, two_sided_p_value)
from movietitles.evaluation.generator_report import (
    condition_perplexities, evaluate_generator, text_table, with_interval)
from movietitles.evaluation.thresholds import out_of_sample_f1, predict
from movietitles.evaluation.title_scores import bpemb_coverage
from movietitles.generator.data import poster_titles
from movietitles.generator.runs import load_generator_run
from movietitles.io import atomic_write_text
from movietitles.models.genre_runs import load_genre_run, model_inputs, predict_scores
from movietitles.settings import GenreSettings
from movietitles.naming import comparison_name
from movietitles.training.generator import train_generator
from movietitles.training.genre import evaluation_features

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
                     with_interval(pmi, "recall_at_1"), with_interval(pmi, "recall_at_10"),
                     gen["share_real_words"], gen["share_new"]])
    truth = metrics["true_titles"]  # the same test titles for every variant
    rows.append(["the true titles (reference)", "-", "-", "-", "-", truth["share_real_words"], truth["share_new"]])
    table = text_table(["conditioning", "bits / char", "swap-test gain, bits / char [95% CI]", "PMI recall@1",
                        "PMI recall@10", "real words", "new titles"], rows)
    out = Path(config["genre"]["runs_dir"]) / comparison_name("conditioning", config, names)
    write_config(config, out)
    atomic_write_text(out / "report.md", f"# Conditioning ablation (test split)\n\n{table}\n")
    return out, table


def compare_embeddings(config: dict, names: list[str] | None = None) -> tuple[Path, str]:
    """Train (or reuse) one generator per embedding variant (`names`: some of EMBEDDING_VARIANTS, all by default);
    one table of test perplexities."""
    names = list(EMBEDDING_VARIANTS) if names is None else names
    unknown = sorted(set(names) - set(EMBEDDING_VARIANTS))
    if unknown:
        raise ValueError(f"unknown embedding variant(s) {unknown}; expected some of {list(EMBEDDING_VARIANTS)}")
    rows, coverage = [], {}
    for name in names:
        variant = with_overrides(config, EMBEDDING_VARIANTS[name])
        log.info("embedding variant %s", name)
        run = load_generator_run(train_generator(variant))
        test = poster_titles(variant, "test", run.tokenizer)
        c = condition_perplexities(run, test, config["seed"])
        coverage[variant["encoders"]["bpemb"]["lang"]] = bpemb_coverage(
            run.tokenizer, test.movies["title"].tolist())["share_of_characters_not_written"]
        rows.append([name, c["true poster"]["perplexity_per_token"], c["true poster"]["perplexity_per_char"],
                     c["true poster"]["bits_per_char"], c["zero poster"]["bits_per_char"],
                     c["shuffled posters"]["bits_per_char"], run.summary.get("seconds_in_last_session", "-")])
    table = text_table(["embeddings", "perplexity / token", "perplexity / char", "bits / char",
                        "bits / char, zero poster", "bits / char, shuffled", "train s (last session)"], rows)
    note = ("Per-token perplexities are not comparable across BPEmb languages (each splits titles into its own "
            "subwords); bits per character are closer to it, over the same characters, but each language's BPEmb "
            "drops the characters its vocabulary lacks, and the bits do not pay for them: a lower bound, as "
            "evaluate --task generator reports (share of characters not written, by language: "
            + ", ".join(f"{lang} {share:.2%}" for lang, share in coverage.items()) + ").")
    out = Path(config["genre"]["runs_dir"]) / comparison_name(
        "embedding", config, None if names == list(EMBEDDING_VARIANTS) else names)
    write_config(config, out)
    atomic_write_text(out / "report.md", f"# Embedding comparison (test split)\n\n{table}\n\n{note}\n")
    return out, table


def _interval(value: float, values) -> str:
    lo, hi = percentile_interval(values)
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def compare_genre_variants(config: dict, variants: list[tuple[str, str, list[str]]],
                           resamples: int = 1000) -> tuple[list[dict], int]:
    """One row per trained genre model (`variants`: name, task, `--set` overrides of `config`; each run trained
    already): validation macro/micro-F1 out of sample (how runs are chosen), test macro/micro-F1 with the
    run's validation thresholds and 95% bootstrap intervals, and the paired difference against the task's first
    variant (the same resamples of the test movies). Returns the rows and the number of test movies."""
    rows, first_of_task, counts = [], {}, None
    for name, task, overrides in variants:
        variant = copy.deepcopy(config)
        for override in overrides:
            apply_override(variant, override)
        model, thresholds, _ = load_genre_run(finished_run(variant, task))
        thresholds_settings = GenreSettings.from_config(variant).thresholds
        val, test = (evaluation_features(variant, split, task) for split in ("validation", "test"))
        oos = out_of_sample_f1(val.labels, predict_scores(model, model_inputs(model, val)),
                               **thresholds_settings.out_of_sample(variant["seed"]))
        predicted = predict(predict_scores(model, model_inputs(model, test)), thresholds)
        counts = resample_counts(len(test), resamples, seed=0) if counts is None else counts
        point = resampled_metrics(test.labels, predicted, np.ones((1, len(test))))  # the test set itself
        resampled = resampled_metrics(test.labels, predicted, counts)
        row = {"variant": name, "validation macro-F1 (oos)": f"{oos['macro_f1']:.3f}",
               "validation micro-F1 (oos)": f"{oos['micro_f1']:.3f}",
               "test macro-F1": _interval(point["macro_f1"][0], resampled["macro_f1"]),
               "test micro-F1": _interval(point["micro_f1"][0], resampled["micro_f1"])}
        if task in first_of_task:
            base_point, base = first_of_task[task]
            for metric in ("macro_f1", "micro_f1"):
                diff = resampled[metric] - base[metric]
                lo, hi = percentile_interval(diff)
                row[f"test {metric.replace('_f1', '-F1')} vs {task} row 1"] = (
                    f"{point[metric][0] - base_point[metric][0]:+.3f} [{lo:+.3f}, {hi:+.3f}], "
                    f"p {two_sided_p_value(diff):.3f}")
        else:
            first_of_task[task] = (point, resampled)
        rows.append(row)
        log.info("%s: %s", name, row)
    return rows, int(counts.shape[1])
