"""Genre models train on the tiny dataset's cached features, resume, distribute, and evaluate."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from movietitles.artefacts import feature_store, run_directory
from movietitles.config import with_overrides
from movietitles.evaluate import MODEL_ROWS, evaluate_genres
from movietitles.features.pipeline import load_split
from movietitles.models.genre_runs import GENRE_TASKS
from movietitles.training import loop
from movietitles.models.genre_runs import load_genre_run
from movietitles.training.genre import train_genre_model

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_each_run_keeps_model_thresholds_config_and_tensorboard_logs(tiny_config, trained):
    for task, run_dir in trained.items():
        model, thresholds, summary = load_genre_run(run_dir)
        # The default title and fusion models also read the raw title (their n-gram channel).
        expected = [*GENRE_TASKS[task], *(["title_text"] if task != "poster" else [])]
        assert sorted(summary["inputs"]) == sorted(expected)
        assert thresholds.shape == (len(tiny_config["data"]["genres"]),)
        assert sorted(t.name for t in model.inputs) == sorted(expected)
        assert yaml.safe_load((run_dir / "config.yaml").read_text()) == tiny_config
        events = {p.parent.name for p in (run_dir / "logs").rglob("events.out.tfevents.*")}
        assert {"logs", "train", "validation", "validation_final", "projector"} <= events  # each one a run
    title_summary = load_genre_run(trained["title"])[2]
    assert title_summary["training_title_only_movies"] > 0
    assert load_genre_run(trained["poster"])[2]["training_title_only_movies"] == 0
    # The default fusion model (modality_logits) learns from the title corpus too, with no poster.
    fusion_summary = load_genre_run(trained["fusion"])[2]
    assert fusion_summary["training_movies"] == title_summary["training_movies"]
    assert fusion_summary["training_title_only_movies"] == title_summary["training_title_only_movies"]


def test_a_concatenate_only_fusion_model_trains_on_poster_movies_only(tiny_config, tmp_path):
    config = with_overrides(tiny_config, {"genre.runs_dir": str(tmp_path / "runs"), "genre.epochs": 1,
                                          "genre.models.fusion.modality_logits": False})
    model, _, summary = load_genre_run(train_genre_model(config, "fusion"))
    assert summary["training_title_only_movies"] == 0
    assert summary["training_movies"] == len(load_split(feature_store(config), "train", GENRE_TASKS["fusion"]))
    assert "poster_logits" not in [layer.name for layer in model.layers]


def test_finished_run_is_not_retrained(tiny_config, trained):
    before = (trained["fusion"] / "model.keras").stat().st_mtime_ns
    assert train_genre_model(tiny_config, "fusion") == trained["fusion"]
    assert (trained["fusion"] / "model.keras").stat().st_mtime_ns == before


def test_interrupted_run_resumes_from_its_last_epoch(tiny_config, monkeypatch):
    config = with_overrides(tiny_config, {"genre.models.poster.dropout": 0.1})  # its own run directory
    original = loop._validation_logs
    epochs_seen = []

    def killed_in_third_epoch(*args):
        epochs_seen.append(len(epochs_seen))
        if len(epochs_seen) == 3:
            raise KeyboardInterrupt("killed")
        return original(*args)

    monkeypatch.setattr(loop, "_validation_logs", killed_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_genre_model(config, "poster")
    run_dir = run_directory(config, "poster")
    assert (run_dir / "backup").exists() and not (run_dir / "summary.json").exists()
    monkeypatch.setattr(loop, "_validation_logs", original)
    train_genre_model(config, "poster")
    summary = load_genre_run(run_dir)[2]
    assert summary["epochs_in_last_session"] == config["genre"]["epochs"] - 2


@pytest.fixture(scope="module")
def evaluated(tiny_config, trained):
    return evaluate_genres(tiny_config)


def test_evaluation_reports_every_row_on_the_test_split(tiny_config, evaluated):
    run_dir = evaluated
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = set(metrics["models"])
    assert set(MODEL_ROWS.values()) <= rows
    assert {f"late fusion: {h}" for h in ("mean", "product", "max", "union", "intersection")} <= rows
    assert {"baseline: label prior", "baseline: Comedy + Drama", "baseline: TF-IDF logreg (title)",
            "baseline: logreg on title+poster embeddings"} <= rows
    assert metrics["test_size"] > 0
    for row in metrics["models"].values():
        assert 0.0 <= row["macro_f1"] <= 1.0 and set(row["per_genre"]) == set(tiny_config["data"]["genres"])
    for name in ("report.md", "report.html", "metrics.csv", "per_genre_f1.png", "pr_curves.png", "config.yaml"):
        assert (run_dir / name).stat().st_size > 0


def test_evaluation_carries_intervals_paired_comparisons_and_an_answer(tiny_config, evaluated):
    run_dir = evaluated
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["bootstrap"]["resamples"] == tiny_config["evaluation"]["bootstrap_resamples"] >= 1000
    for name, row in metrics["models"].items():
        assert set(row["ci"]) == {"micro_precision", "micro_recall", "micro_f1", "macro_f1", "samples_f1",
                                  "weighted_f1"}
        for key, (lo, hi) in row["ci"].items():
            assert lo <= hi and 0.0 <= lo and hi <= 1.0, (name, key)
        assert all(len(g["f1_ci"]) == 2 for g in row["per_genre"].values())
    pairs = {(c["row"], c["against"], c["metric"]) for c in metrics["comparisons"]}
    title, poster, fusion = MODEL_ROWS["title"], MODEL_ROWS["poster"], MODEL_ROWS["fusion"]
    best_title_baseline = max(("baseline: TF-IDF logreg (title)", "baseline: logreg on title embedding"),
                              key=lambda r: metrics["models"][r]["macro_f1"])
    best_single = max((title, poster), key=lambda r: metrics["models"][r]["macro_f1"])
    assert (title, best_title_baseline, "macro_f1") in pairs
    assert (poster, "baseline: logreg on poster embedding", "micro_f1") in pairs
    assert (fusion, "baseline: logreg on title+poster embeddings", "macro_f1") in pairs
    assert (fusion, best_single, "macro_f1") in pairs
    for c in metrics["comparisons"]:
        rows = metrics["models"]
        assert c["difference"] == pytest.approx(rows[c["row"]][c["metric"]] - rows[c["against"]][c["metric"]])
        assert c["ci"][0] <= c["ci"][1] and 0.0 < c["p_value"] <= 1.0
    assert len(metrics["answer"]) == 5 and metrics["answer"][0].startswith("The title alone")
    report = (run_dir / "report.md").read_text()
    assert report.index("## Answer") < report.index("| Model |")
    assert "## Paired comparisons" in report
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["model", "micro_precision", "micro_precision_lo", "micro_precision_hi"]


def test_one_model_has_one_validation_score_in_training_and_evaluation(tiny_config, trained, evaluated):
    """Early stopping and the evaluation score a model on the same validation halvings (the config's seed)."""
    metrics = json.loads((evaluated / "metrics.json").read_text())
    for task in GENRE_TASKS:  # single models in the tiny config (ensembles have a test of their own)
        summary = json.loads((trained[task] / "summary.json").read_text())
        assert summary["best_val_oos_macro_f1"] == pytest.approx(
            metrics["validation_out_of_sample"][MODEL_ROWS[task]]["macro_f1"], abs=1e-9), task


def test_every_row_recomputed_with_scikit_learn_from_predictions_csv(tiny_config, evaluated):
    """predictions.csv holds each row's per-movie predictions: scikit-learn's own F1 of them is the reported one."""
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    from movietitles.data.dataset import load_prepared
    from movietitles.evaluation.predictions import read_predictions

    metrics = json.loads((evaluated / "metrics.json").read_text())
    table = read_predictions(evaluated / "predictions.csv")
    genres = tiny_config["data"]["genres"]
    assert list(dict.fromkeys(table["model"])) == list(metrics["models"])
    binarize = MultiLabelBinarizer(classes=genres)
    test_movies = load_prepared(tiny_config["data"]["prepared_dir"]).movies.set_index("id")
    for row, rows in table.groupby("model", sort=False):
        assert len(rows) == metrics["test_size"] and rows["id"].is_unique
        assert (rows["title"] == test_movies.loc[rows["id"], "title"].to_numpy()).all()
        truth = binarize.fit_transform([g.split("|") if g else [] for g in rows["genres"]])
        predicted = binarize.fit_transform([g.split("|") if g else [] for g in rows["predicted"]])
        for average in ("macro", "micro", "samples"):
            assert f1_score(truth, predicted, average=average, zero_division=0) == pytest.approx(
                metrics["models"][row][f"{average}_f1"], abs=1e-12), (row, average)
        probabilities = rows[[f"p_{g}" for g in genres]].to_numpy()
        if row in MODEL_ROWS.values():  # the predicted sets are the probabilities over the validation thresholds
            thresholds = json.loads((evaluated / "thresholds.json").read_text())[row]
            cut = np.array([thresholds[g] for g in genres])
            differs = predicted.astype(bool) != (probabilities >= cut)
            assert not differs[np.abs(probabilities - cut) > 1e-6].any(), row
        if row.startswith("late fusion: union") or row == "baseline: Comedy + Drama":
            assert np.isnan(probabilities).all()


def test_thresholds_are_fitted_on_validation_labels_only(tiny_config, trained, monkeypatch):
    import movietitles.evaluate as evaluate
    from movietitles.features.pipeline import load_split

    validation = load_split(feature_store(tiny_config), "validation").labels
    test = load_split(feature_store(tiny_config), "test").labels
    assert validation.shape != test.shape or not np.array_equal(validation, test)
    seen = []
    for name in ("fit_thresholds", "out_of_sample_f1"):
        original = getattr(evaluate, name)

        def spy(labels, *args, _original=original, **kwargs):
            seen.append(np.asarray(labels))
            return _original(labels, *args, **kwargs)

        monkeypatch.setattr(evaluate, name, spy)
    evaluate.evaluate_genres(tiny_config)
    assert len(seen) >= 2 * len(MODEL_ROWS)
    assert all(np.array_equal(labels, validation) for labels in seen)


def test_an_ensemble_averages_its_seeds_and_serves_as_one_model(tiny_config, tmp_path):
    from movietitles.training.genre import evaluation_features, model_inputs
    from movietitles.training.loop import predict_scores

    config = with_overrides(tiny_config, {"genre.runs_dir": str(tmp_path / "runs"), "genre.epochs": 2,
                                          "genre.models.fusion.ensemble": 2})
    run_dir = train_genre_model(config, "fusion")
    ensemble, thresholds, summary = load_genre_run(run_dir)
    assert summary["seeds"] == [config["seed"], config["seed"] + 1] and len(summary["members"]) == 2
    val = evaluation_features(config, "validation", "fusion")
    members = [load_genre_run(Path(member))[0] for member in summary["members"]]
    member_scores = [predict_scores(m, model_inputs(m, val)) for m in members]
    assert not np.allclose(member_scores[0], member_scores[1])  # different seeds, different models
    np.testing.assert_allclose(predict_scores(ensemble, model_inputs(ensemble, val)), np.mean(member_scores, axis=0),
                               atol=1e-6)
    assert thresholds.shape == (len(tiny_config["data"]["genres"]),)
    assert train_genre_model(config, "fusion") == run_dir  # finished: not retrained


def test_an_unsupported_monitor_is_refused_by_name(tiny_config):
    config = with_overrides(tiny_config, {"genre.monitor": "val_accuracy"})
    with pytest.raises(ValueError, match="val_accuracy.*val_oos_macro_f1"):
        train_genre_model(config, "poster")


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_one_model_together(tiny_config, tmp_path):
    config = with_overrides(tiny_config, {"genre.runs_dir": str(tmp_path / "runs"), "genre.epochs": 2})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "CUDA_VISIBLE_DEVICES": "-1"}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "movietitles.train", "--task", "poster", "--strategy", "multi_worker",
             "--config", str(config_path)],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)

    run_dir = run_directory(config, "poster")
    chief_model, _, summary = load_genre_run(run_dir)
    assert summary["replicas"] == 2 and summary["strategy"] == "CollectiveAllReduceStrategy"  # = MultiWorkerMirrored
    (worker_model_path,) = (run_dir / "workers").glob("*/model.keras")
    worker_model = keras.saving.load_model(worker_model_path)
    for chief_weight, worker_weight in zip(chief_model.get_weights(), worker_model.get_weights()):
        np.testing.assert_allclose(chief_weight, worker_weight, atol=1e-6)


def test_evaluation_on_another_dataset_uses_every_labelled_movie(tiny_config, trained, tmp_path):
    from tiny_dataset import make_tiny_movielens

    from movietitles.data.dataset import load_prepared
    from movietitles.artefacts import other_dataset_config

    other_root = make_tiny_movielens(tmp_path / "new-films", n_with_poster=20, n_without_poster=5, seed=7)
    run_dir = evaluate_genres(tiny_config, str(other_root), keep_overlap=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    movies = load_prepared(other_dataset_config(tiny_config, str(other_root))["data"]["prepared_dir"]).movies
    assert metrics["test_size"] == int((movies["labelled"] & movies["has_poster"]).sum())
    assert str(other_root) in metrics["notes"]["test set"]
    # Its ids are the tiny dataset's: the report says how many films the training split holds.
    overlap = metrics["notes"]["films the training split already holds"]
    assert overlap["films"] == metrics["test_size"] and overlap["same id"] > 0
    assert overlap["evaluated"] == "with them (--keep-overlap)"
    from movietitles.evaluation.predictions import read_predictions

    predicted = read_predictions(run_dir / "predictions.csv")
    assert set(predicted["id"]) == set(movies.loc[movies["labelled"] & movies["has_poster"], "id"])


def test_poster_text_rows_read_the_words_and_answer_what_picture_and_words_add(tiny_config, trained):
    """With evaluation.poster_text the evaluation reads each poster's OCR words. Here every poster prints its genres
    (a cache of its own, written as the reader would), so the words row must find them."""
    from tiny_dataset import write_genre_words_cache

    from movietitles.evaluation.poster_words import ALL_ROW, PICTURE_WORDS_ROW, WORDS_ROW

    config = with_overrides(tiny_config, {"evaluation.poster_text": True, "encoders.ocr.det_limit_side_len": 321})
    write_genre_words_cache(config)

    metrics = json.loads((evaluate_genres(config) / "metrics.json").read_text())
    models = metrics["models"]
    for row in (WORDS_ROW, PICTURE_WORDS_ROW, ALL_ROW):
        assert row in models and models[row]["ci"]["macro_f1"][0] <= models[row]["macro_f1"]
    assert models[WORDS_ROW]["macro_f1"] >= 0.8 > models["baseline: label prior"]["macro_f1"]
    validation = metrics["validation_out_of_sample"]  # halves of a tiny validation split: noisier
    assert validation[WORDS_ROW]["macro_f1"] > validation["baseline: label prior"]["macro_f1"] + 0.2
    answer = metrics["answer"]
    assert len(answer) == 8 and answer[5].startswith("The poster's picture adds beyond its words")
    assert answer[6].startswith("The poster's words add beyond its picture")
    difference = models[PICTURE_WORDS_ROW]["macro_f1"] - models[MODEL_ROWS["poster"]]["macro_f1"]
    assert f"{difference:+.3f}" in answer[6]


def test_a_damaged_run_or_cache_is_one_line_naming_the_file_and_exit_2(tiny_config, trained, tmp_path, capsys):
    """A model.keras cut short (a full disk), a garbled thresholds.json, a truncated feature cache: exit 2 and one
    line naming the file and the command that makes it again, not a traceback."""
    import shutil

    from movietitles import evaluate, export
    from movietitles.config import write_config

    runs = shutil.copytree(tiny_config["genre"]["runs_dir"], tmp_path / "runs")
    features = shutil.copytree(tiny_config["features"]["cache_dir"], tmp_path / "features")
    config = with_overrides(tiny_config, {"genre.runs_dir": str(runs), "features.cache_dir": str(features)})
    config_file = str(write_config(config, tmp_path))
    model_file = run_directory(config, "poster") / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:1000])
    assert evaluate.main(["--config", config_file]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(model_file) in err and "is damaged" in err
    assert "python -m movietitles.train --task poster --fresh" in err

    (run_directory(config, "fusion") / "thresholds.json").write_text('{"Action": 0.')
    assert export.main(["--config", config_file, "--models", "fusion", "--model-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "thresholds.json is damaged" in err and "--task fusion --fresh" in err

    (merged,) = (features / "title").glob("*/*/features.npy")
    merged.write_bytes(merged.read_bytes()[:500])
    assert evaluate.main(["--config", config_file, "--set", "genre.runs_dir=" + tiny_config["genre"]["runs_dir"]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(merged) in err and "python -m movietitles.features --kinds title" in err


def test_the_main_job_ends_with_its_validation_scores_and_next_steps(tiny_config, trained, tmp_path, capsys):
    from movietitles import train
    from movietitles.config import write_config

    assert train.main(["--config", str(write_config(tiny_config, tmp_path)), "--task", "fusion"]) == 0
    out = capsys.readouterr().out.splitlines()
    summary = json.loads((trained["fusion"] / "summary.json").read_text())
    start = out.index(f"fusion model: {trained['fusion']}")
    assert out[start + 1].startswith(f"  validation macro-F1 {summary['best_val_oos_macro_f1']:.3f}: out of sample")
    assert out[start + 2] == f"  TensorBoard logs: {trained['fusion'] / 'logs'}"
    assert out[start + 3] == "next (with this job's --config/--set options):"
    assert out[start + 4].startswith("  python -m movietitles.evaluate   # the test split")
    assert "python -m movietitles.export" in out[start + 5] and "tensorboard --logdir" in out[start + 6]


def test_the_evaluation_is_computed_apart_from_its_files(tiny_config, trained, tmp_path):
    """`compute_genre_evaluation` writes nothing; `write_genre_evaluation` renders what it computed."""
    from movietitles.evaluate import compute_genre_evaluation, evaluation_directory
    from movietitles.evaluation.genre_report import write_genre_evaluation

    config = with_overrides(tiny_config, {"evaluation.bootstrap_resamples": 99})
    result = compute_genre_evaluation(config)
    assert not evaluation_directory(config).exists()
    assert set(MODEL_ROWS.values()) <= set(result.order) and result.headline in result.order
    assert result.bootstrap.n_resamples == 99
    write_genre_evaluation(result, tmp_path / "evaluation", seconds=1.5)
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["headline_fusion_row"] == result.headline and metrics["answer"] == result.answer
    for row in result.order:
        assert metrics["models"][row]["macro_f1"] == pytest.approx(result.results[row]["macro_f1"], abs=1e-12)
    assert metrics["notes"]["seconds"] == 1.5


def test_the_genre_variant_comparison_scores_trained_runs_with_paired_intervals(tiny_config, trained):
    """experiments.compare_genre_variants (benchmarks/genre_ablation.py): a variant against itself differs by
    exactly 0, and a row's test macro-F1 is scikit-learn's on the run's thresholded test scores."""
    from sklearn.metrics import f1_score

    from movietitles.evaluation.thresholds import predict
    from movietitles.experiments import compare_genre_variants
    from movietitles.models.genre_runs import model_inputs, predict_scores
    from movietitles.training.genre import evaluation_features

    rows, test_movies = compare_genre_variants(tiny_config, [("poster", "poster", []), ("title", "title", []),
                                                             ("poster again", "poster", [])], resamples=50)
    assert [row["variant"] for row in rows] == ["poster", "title", "poster again"]
    assert rows[2]["test macro-F1 vs poster row 1"] == "+0.000 [+0.000, +0.000], p 1.000"
    assert "test macro-F1 vs poster row 1" not in rows[1]
    model, thresholds, _ = load_genre_run(trained["poster"])
    test = evaluation_features(tiny_config, "test", "poster")
    expected = f1_score(test.labels, predict(predict_scores(model, model_inputs(model, test)), thresholds),
                        average="macro", zero_division=0)
    assert test_movies == len(test)
    assert rows[0]["test macro-F1"].startswith(f"{expected:.3f} [")
