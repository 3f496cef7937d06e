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

from movietitles.config import with_overrides
from movietitles.evaluate import MODEL_ROWS, evaluate_genres
from movietitles.training import loop
from movietitles.training.genre import GENRE_TASKS, load_genre_run, run_directory, train_genre_model

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_each_run_keeps_model_thresholds_config_and_tensorboard_logs(tiny_config, trained):
    for task, run_dir in trained.items():
        model, thresholds, summary = load_genre_run(run_dir)
        assert summary["inputs"] == list(GENRE_TASKS[task])
        assert thresholds.shape == (len(tiny_config["data"]["genres"]),)
        assert sorted(t.name for t in model.inputs) == sorted(GENRE_TASKS[task])
        assert yaml.safe_load((run_dir / "config.yaml").read_text()) == tiny_config
        events = {p.parent.name for p in (run_dir / "logs").rglob("events.out.tfevents.*")}
        assert {"logs", "train", "validation", "validation_final", "projector"} <= events  # each one a run
    title_summary = load_genre_run(trained["title"])[2]
    assert title_summary["training_title_only_movies"] > 0
    assert load_genre_run(trained["poster"])[2]["training_title_only_movies"] == 0


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


def test_evaluation_reports_every_row_on_the_test_split(tiny_config, trained):
    run_dir = evaluate_genres(tiny_config)
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
    from movietitles.evaluate import other_dataset_config

    other_root = make_tiny_movielens(tmp_path / "new-films", n_with_poster=20, n_without_poster=5, seed=7)
    run_dir = evaluate_genres(tiny_config, str(other_root))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    movies = load_prepared(other_dataset_config(tiny_config, str(other_root))["data"]["prepared_dir"]).movies
    assert metrics["test_size"] == int((movies["labelled"] & movies["has_poster"]).sum())
    assert str(other_root) in metrics["notes"]["test set"]
