"""Evaluating another dataset: its prepared copy is keyed by the full source path and re-made when the
source changes; films the training split already holds are counted and left out unless kept."""

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from movietitles.artefacts import other_dataset_config
from movietitles.config import load_config, with_overrides
from movietitles.data.dataset import load_prepared
from movietitles.evaluate import load_target
from movietitles.evaluation.other_data import normalised_title


def write_manifest(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["id", "title", "genres", "poster"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def new_films(root: Path, genres: list[str], n: int = 8) -> list[dict]:
    """n films unlike the tiny dataset's: fresh ids, titles and posters."""
    (root / "posters").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    rows = []
    for k in range(n):
        poster = root / "posters" / f"new{k}.jpg"
        Image.fromarray(rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)).save(poster, quality=90)
        rows.append({"id": f"tt{700001 + k:07d}", "title": f"Quartz Lantern Number {k}",
                     "genres": genres[k % len(genres)], "poster": f"posters/new{k}.jpg"})
    return rows


def manifest_config(config: dict) -> dict:
    return with_overrides(config, {"data.source": "manifest"})


def test_datasets_in_folders_of_the_same_name_get_their_own_prepared_copy(tmp_path):
    config = load_config()
    a = other_dataset_config(config, tmp_path / "a" / "new-films")["data"]["prepared_dir"]
    b = other_dataset_config(config, tmp_path / "b" / "new-films")["data"]["prepared_dir"]
    assert a != b and Path(a).name.startswith("eval-new-films-") and Path(a).parent == Path("data")
    relative = os.path.relpath(tmp_path / "a" / "new-films")
    assert other_dataset_config(config, relative)["data"]["prepared_dir"] == a


def test_a_changed_source_is_prepared_and_embedded_again(tiny_config, tmp_path):
    config = manifest_config(tiny_config)
    root = tmp_path / "new-films"
    rows = new_films(root, tiny_config["data"]["genres"])
    write_manifest(root, rows)
    first, _, _ = load_target(config, str(root))
    assert sorted(first.movies["title"]) == sorted(r["title"] for r in rows)

    rows[0]["title"] = "A Completely Different Name"
    write_manifest(root, rows)
    shutil.copy(root / "posters" / "new2.jpg", root / "posters" / "new1.jpg")  # film 2's poster replaced by film 3's
    second, _, _ = load_target(config, str(root))
    assert "A Completely Different Name" in set(second.movies["title"])
    assert "Quartz Lantern Number 0" not in set(second.movies["title"])
    by_id = {mid: k for k, mid in enumerate(second.movies["id"])}
    np.testing.assert_array_equal(second.inputs["poster"][by_id["tt0700002"]],
                                  second.inputs["poster"][by_id["tt0700003"]])
    assert not np.array_equal(first.inputs["poster"][1], first.inputs["poster"][2])

    prepared = Path(other_dataset_config(config, str(root))["data"]["prepared_dir"])
    before = (prepared / "movies.csv").stat().st_mtime_ns
    load_target(config, str(root))  # nothing changed: the same copy, not prepared again
    assert (prepared / "movies.csv").stat().st_mtime_ns == before


def test_films_the_training_split_holds_are_counted_and_left_out(tiny_config, tmp_path):
    config = manifest_config(tiny_config)
    train = load_prepared(tiny_config["data"]["prepared_dir"]).movies
    ordinary = train["id"].str.startswith("tt01")  # the tiny dataset's ordinary films (plain JPEG posters)
    train = train[(train["split"] == "train") & ordinary & train["labelled"]].reset_index(drop=True)
    root = tmp_path / "with-overlap"
    rows = new_films(root, tiny_config["data"]["genres"])
    rows[0]["id"] = train["id"][0]                                       # the same id
    rows[1]["title"] = f"  {train['title'][1].upper()} !"               # the same title, written differently
    assert normalised_title(rows[1]["title"]) == normalised_title(train["title"][1])
    shutil.copy(train["poster"][2], root / "posters" / "copy.jpg")      # a byte-identical poster
    rows[2]["poster"] = "posters/copy.jpg"
    write_manifest(root, rows)

    target, description, summary = load_target(config, str(root))
    assert summary == {"films": 8, "same id": 1, "same normalised title": 1, "byte-identical poster": 1,
                       "any of these": 3, "evaluated": "without them (--keep-overlap keeps them)"}
    assert sorted(target.movies["id"]) == sorted(r["id"] for r in rows[3:])
    assert len(target.inputs["poster"]) == len(target.labels) == 5
    assert "less 3 that the training split already holds" in description

    kept, _, summary = load_target(config, str(root), keep_overlap=True)
    assert len(kept) == 8 and summary["evaluated"] == "with them (--keep-overlap)"
    assert pd.Series(kept.movies["id"]).isin(target.movies["id"]).sum() == 5

