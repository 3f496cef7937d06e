"""What TensorBoard shows of a run, read back through TensorBoard itself: its event loader and plugin
metadata, and a real `tensorboard` server on 127.0.0.1 queried over HTTP."""

import io
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image
from sklearn.metrics import f1_score
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from tensorboard.util import tensor_util
from tiny_dataset import plain_posters

from movietitles.config import load_config
from movietitles.evaluate import MODEL_ROWS, evaluate_genres
from movietitles.evaluation.thresholds import predict
from movietitles.models.genre_runs import GENRE_TASKS
from movietitles.settings import genre_hparams
from movietitles.tensorboard_logs import PR_THRESHOLDS, log_genre_run

GENRES = ["Action", "Comedy", "Drama"]
DASHBOARDS = ("scalars", "pr_curves", "projector", "text", "images", "hparams")


def load_runs(logdir: Path) -> plugin_event_multiplexer.EventMultiplexer:
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return multiplexer


def tensor(multiplexer, run: str, tag: str):
    (event,) = multiplexer.Tensors(run, tag)
    return event.step, tensor_util.make_ndarray(event.tensor_proto)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """log_genre_run over 30 made-up validation movies with posters."""
    root = tmp_path_factory.mktemp("tb")
    rng = np.random.default_rng(0)
    posters = plain_posters(root / "posters", 30, (60, 90), rng)
    movies = pd.DataFrame({"title": [f"Film\t{i}" for i in range(30)], "genres": ["Action|Drama"] * 30,
                           "poster": posters})
    labels = (rng.random((30, 3)) < 0.4).astype(np.float32)
    labels[0] = labels[1] = 1  # every genre has positives
    scores = np.clip(labels * 0.4 + rng.random((30, 3)) * 0.6, 0, 1).astype(np.float32)
    thresholds = np.array([0.4, 0.5, 0.6], np.float32)
    inputs = {"title": rng.random((30, 8), dtype=np.float32), "poster": rng.random((30, 5), dtype=np.float32)}
    logdir = root / "runs" / "fusion-0123456789" / "logs"
    log_genre_run(logdir, genre_hparams(load_config(), "fusion"), "fusion", movies, labels, scores, thresholds, GENRES,
                  inputs, best_epoch=4)
    return logdir, labels, scores, thresholds, inputs


def test_pr_curves_per_genre_are_written_the_tf2_way(synthetic_run):
    logdir, labels, scores, _, _ = synthetic_run
    multiplexer = load_runs(logdir.parent.parent)
    run = "fusion-0123456789/logs/validation_final"
    assert set(multiplexer.PluginRunToTagToContent("pr_curves")[run]) == {f"{g}/pr_curves" for g in GENRES}
    for g, genre in enumerate(GENRES):
        step, data = tensor(multiplexer, run, f"{genre}/pr_curves")
        assert step == 4 and data.shape == (6, PR_THRESHOLDS)
        tp, fp, tn, fn, precision, recall = data
        positives = labels[:, g].sum()
        # Threshold 0: everything predicted positive.
        assert tp[0] == positives and fp[0] == len(labels) - positives and tn[0] == fn[0] == 0
        assert recall[0] == pytest.approx(1.0) and precision[0] == pytest.approx(positives / len(labels))
        k = 50  # threshold 0.5
        assert tp[k] == ((scores[:, g] >= 0.5) & (labels[:, g] == 1)).sum()
        assert np.all(np.diff(tp) <= 0) and np.all(np.diff(fp) <= 0)


def test_posters_thresholds_and_hparams_read_back(synthetic_run):
    logdir, labels, scores, thresholds, _ = synthetic_run
    multiplexer = load_runs(logdir.parent.parent)
    final = "fusion-0123456789/logs/validation_final"
    step, images = tensor(multiplexer, final, "posters")
    assert step == 4 and len(images) == 2 + 8   # width, height, then one PNG per poster
    assert (int(images[0]), int(images[1])) == (320, 400)
    with Image.open(io.BytesIO(images[2])) as first:
        assert first.size == (320, 400) and np.asarray(first).std() > 10   # a poster and text, not blank

    _, text = tensor(multiplexer, final, "thresholds")
    table = text.item().decode()
    for g, genre in enumerate(GENRES):
        assert f"| {genre} | {thresholds[g]:.3f} |" in table

    session = "fusion-0123456789/logs"
    content = multiplexer.PluginRunToTagToContent("hparams")[session][hparams_metadata.SESSION_START_INFO_TAG]
    start = hparams_metadata.parse_session_start_info_plugin_data(content)
    hparams = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
    assert hparams["task"] == "fusion" and hparams["imbalance"] == "pos_weight" and hparams["dropout"] == 0.6
    assert hparams["hidden_units"] == "[512]" and start.group_name == "fusion-0123456789"
    assert start.hparams["modality_logits"].bool_value  # the default fusion architecture
    (macro,) = multiplexer.Tensors(session, "hparams/val_tuned_macro_f1")
    expected = f1_score(labels, predict(scores, thresholds), average="macro", zero_division=0)
    assert float(tensor_util.make_ndarray(macro.tensor_proto)) == pytest.approx(expected, abs=1e-6)


def test_projector_files_are_a_run_with_metadata_and_sprite(synthetic_run):
    logdir, _, _, _, inputs = synthetic_run
    projector_dir = logdir / "projector"
    multiplexer = load_runs(logdir.parent.parent)
    assert "fusion-0123456789/logs/projector" in multiplexer.Runs()  # an event file: TensorBoard sees a run
    config = text_format.Parse((projector_dir / "projector_config.pbtxt").read_text(), ProjectorConfig())
    reader = tf.train.load_checkpoint(str(projector_dir))
    assert [e.tensor_name.split("/")[0] for e in config.embeddings] == list(inputs)
    for embedding in config.embeddings:
        np.testing.assert_array_equal(reader.get_tensor(embedding.tensor_name), inputs[embedding.tensor_name.split("/")[0]])
        assert embedding.sprite.image_path == "sprite.png" and list(embedding.sprite.single_image_dim) == [64, 64]
    metadata = (projector_dir / "metadata.tsv").read_text().splitlines()
    assert metadata[0] == "title\tgenres" and metadata[1] == "Film 0\tAction, Drama" and len(metadata) == 31
    with Image.open(projector_dir / "sprite.png") as sprite:
        assert sprite.size == (6 * 64, 6 * 64)   # 30 posters: a 6 x 6 grid
        pixels = np.asarray(sprite.convert("RGB"))
    assert pixels[32, 32].tolist() not in ([255, 255, 255], [24, 24, 24])   # the first poster is drawn
    assert pixels[-64:, -64:].tolist() == np.full((64, 64, 3), 255).tolist()          # cell 36 is empty


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def tensorboard_server(tiny_config, trained):
    """A real `tensorboard` over the tiny genre runs and their evaluation."""
    evaluation = evaluate_genres(tiny_config)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", tiny_config["genre"]["runs_dir"],
                               "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, listing = time.time() + 120, {}
        while time.time() < deadline:
            try:
                listing = get_json(f"{base}/data/plugins_listing")
                if all(listing.get(d, {}).get("enabled") for d in DASHBOARDS):
                    break
            except OSError:
                pass
            time.sleep(1)
        yield base, listing, evaluation
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_marks_every_dashboard_active(tensorboard_server):
    _, listing, _ = tensorboard_server
    assert {d: listing.get(d, {}).get("enabled") for d in DASHBOARDS} == {d: True for d in DASHBOARDS}


def test_tensorboard_serves_pr_curves_projector_images_and_hparams(tensorboard_server, trained):
    base, _, evaluation = tensorboard_server
    runs = {task: str(Path(run_dir).name) for task, run_dir in trained.items()}
    pr_tags = get_json(f"{base}/data/plugin/pr_curves/tags")
    genres = trained_genres(trained)
    for task, name in runs.items():
        assert set(pr_tags[f"{name}/logs/validation_final"]) == {f"{g}/pr_curves" for g in genres}
    test_run = f"{evaluation.name}/logs/early_fusion_Method_2"
    assert set(pr_tags[test_run]) == {f"{g}/pr_curves" for g in genres}
    query = urllib.parse.urlencode({"run": test_run, "tag": f"{genres[0]}/pr_curves"})
    (entry,) = get_json(f"{base}/data/plugin/pr_curves/pr_curves?{query}")[test_run]
    assert len(entry["precision"]) == len(entry["recall"]) == PR_THRESHOLDS and entry["recall"][0] == 1.0

    projector_runs = get_json(f"{base}/data/plugin/projector/runs")
    assert {f"{name}/logs/projector" for name in runs.values()} <= set(projector_runs)
    fusion = f"{runs['fusion']}/logs/projector"
    info = get_json(f"{base}/data/plugin/projector/info?" + urllib.parse.urlencode({"run": fusion}))
    embeddings = {e["tensorName"].split("/")[0]: e for e in info["embeddings"]}
    assert set(embeddings) == set(GENRE_TASKS["fusion"])
    validation_movies = json.loads((trained["fusion"] / "summary.json").read_text())["validation_movies"]
    for embedding in embeddings.values():
        assert embedding["tensorShape"][0] == validation_movies and embedding["sprite"]["imagePath"] == "sprite.png"
    query = urllib.parse.urlencode({"run": fusion, "name": info["embeddings"][0]["tensorName"]})
    with urllib.request.urlopen(f"{base}/data/plugin/projector/sprite_image?{query}", timeout=30) as response:
        with Image.open(io.BytesIO(response.read())) as sprite:
            assert sprite.format == "PNG" and sprite.width == sprite.height >= 64
    with urllib.request.urlopen(f"{base}/data/plugin/projector/metadata?{query}", timeout=30) as response:
        metadata = response.read().decode().splitlines()
    assert metadata[0] == "title\tgenres" and len(metadata) == validation_movies + 1

    images = get_json(f"{base}/data/plugin/images/tags")
    assert "posters" in images[f"{runs['poster']}/logs/validation_final"]
    text = get_json(f"{base}/data/plugin/text/tags")
    assert "thresholds" in text[f"{runs['title']}/logs/validation_final"]

    groups = get_json(f"{base}/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                  "STATUS_RUNNING"],
        "colParams": [], "startIndex": 0, "sliceSize": 100})["sessionGroups"]
    by_name = {g["name"]: g for g in groups}
    metrics_json = json.loads((evaluation / "metrics.json").read_text())["models"]
    for task, name in runs.items():
        group = by_name[name]
        assert group["hparams"]["task"] == task
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"] if m["name"]["group"] == ""}
        assert 0 <= values["hparams/val_tuned_macro_f1"] <= 1
        assert values["hparams/test_macro_f1"] == pytest.approx(metrics_json[MODEL_ROWS[task]]["macro_f1"], abs=1e-6)
    assert by_name[runs["fusion"]]["hparams"]["modality_logits"] is True  # the default fusion architecture
    late = by_name[f"{evaluation.name}/late fusion: mean"]
    assert late["hparams"]["task"] == "late fusion: mean"


def trained_genres(trained) -> list[str]:
    return list(json.loads((trained["title"] / "thresholds.json").read_text()))
