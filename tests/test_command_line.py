"""The command line as a user meets it: config files merged over the defaults, one flag convention
(old spellings still work, with a deprecation message), and user errors as one `error:` line, exit 2."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from movietitles.config import ConfigError, load_config, with_overrides

ROOT = Path(__file__).resolve().parents[1]


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The last line on stderr, after checking the command failed cleanly (exit 2, no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: "), result.stderr
    return lines[-1]


def test_a_partial_config_file_is_merged_over_the_defaults(tmp_path):
    defaults = load_config()
    config = load_config(write_yaml(tmp_path / "my.yaml", {"genre": {"epochs": 2, "models": {"poster": {"ensemble": 1}}}}))
    assert config["genre"]["epochs"] == 2 and config["genre"]["models"]["poster"]["ensemble"] == 1
    assert config["genre"]["models"]["poster"]["dropout"] == defaults["genre"]["models"]["poster"]["dropout"]
    assert config["data"] == defaults["data"] and config["encoders"] == defaults["encoders"]
    # --set applies after the file.
    assert load_config(tmp_path / "my.yaml", ["genre.epochs=5"])["genre"]["epochs"] == 5


@pytest.mark.parametrize("data, message", [
    ({"genre": {"epochz": 2}}, "unknown key 'genre.epochz'"),
    ({"encoders": {"image": {"nmae": "resnet50"}}}, "unknown key 'encoders.image.nmae'"),
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"genre": 3}, "'genre' is a section of the config"),
])
def test_a_config_file_with_an_unknown_key_is_refused_by_name(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_yaml(tmp_path / "my.yaml", data))


def test_the_sampling_section_is_one_schema():
    from movietitles.generator.sampling import sampling_settings

    config = load_config(overrides=["generator.sampling.n=3"])
    assert config["generator"]["sampling"]["n"] == 3
    assert sampling_settings(config["generator"]["sampling"])["n"] == 3
    assert sampling_settings(config["generator"]["sampling"], {"n": None, "p": 0.5}) == {
        **config["generator"]["sampling"], "p": 0.5}
    with pytest.raises(ConfigError, match="unknown key 'generator.sampling.top'"):
        with_overrides(config, {"generator.sampling.top": 3})
    with pytest.raises(ValueError, match=r"unknown generator.sampling setting\(s\) \['top'\]"):
        sampling_settings({"top": 3})


@pytest.fixture()
def missing(tmp_path):
    """Paths where nothing exists yet: data root, prepared data, features and runs."""
    return {"data": {"root": str(tmp_path / "no-such-dataset"), "prepared_dir": str(tmp_path / "prepared")},
            "features": {"cache_dir": str(tmp_path / "prepared" / "features")},
            "genre": {"runs_dir": str(tmp_path / "runs")}}


def test_train_with_a_partial_config_names_the_missing_data(tmp_path, missing):
    config = write_yaml(tmp_path / "my.yaml", missing)
    line = error_line(run("movietitles.train", "--task", "poster", "--config", str(config), "--no-progress"))
    assert "source file not found" in line and "--set data.root=" in line


def test_train_refuses_an_unknown_config_key(tmp_path, missing):
    config = write_yaml(tmp_path / "my.yaml", {**missing, "generator": {"sampling": {"temperatur": 1.0}}})
    line = error_line(run("movietitles.train", "--task", "poster", "--config", str(config)))
    assert "unknown key 'generator.sampling.temperatur'" in line


@pytest.mark.parametrize("setting, message", [
    ("genre.monitor=val_accuracy", "genre.monitor: unsupported early-stopping score 'val_accuracy'"),
    ("genre.imbalance=focal", "genre.imbalance must be pos_weight, sample_weight or none, got 'focal'"),
    ("genre.thresholds.strategy=best", "genre.thresholds.strategy: unknown threshold strategy 'best'"),
    ("genre.models.poster.ensemble=0", "genre.models.poster.ensemble must be a positive integer, got 0"),
    ("data.source=imdb", "data.source='imdb' is not one of movielens, kaggle, manifest"),
    ("encoders.image.max_bytes=-1", "encoders.image.max_bytes must be a positive integer, got -1"),
])
def test_a_bad_setting_is_refused_when_the_config_is_loaded_before_any_work(tmp_path, missing, setting, message):
    """Typed settings are checked at load: the data is missing too, but the setting is named first."""
    config = write_yaml(tmp_path / "my.yaml", missing)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(config, [setting])
    if setting.startswith("genre.monitor"):  # and through the command: one line, before the missing data
        line = error_line(run("movietitles.train", "--task", "poster", "--config", str(config), "--set", setting))
        assert message in line and "source file not found" not in line


@pytest.mark.parametrize("command, expected", [
    (["movietitles.evaluate"], "python -m movietitles.train --task title"),
    (["movietitles.evaluate", "--task", "generator"], "python -m movietitles.train --task generator"),
    (["movietitles.features", "--kinds", "poster"], "python -m movietitles.data prepare"),
    (["movietitles.data", "prepare"], "--set data.root="),
    (["movietitles.generate", "--poster", "{poster}"], "python -m movietitles.train --task generator"),
    (["movietitles.export", "--models", "poster"], "python -m movietitles.train --task poster"),
])
def test_every_entry_point_ends_a_user_error_in_one_line_naming_the_next_step(tmp_path, missing, command, expected):
    from PIL import Image

    config = write_yaml(tmp_path / "my.yaml", missing)
    Image.new("RGB", (40, 60), (200, 10, 10)).save(tmp_path / "poster.jpg")  # a real poster: the run is missing
    command = [part.format(poster=tmp_path / "poster.jpg") for part in command]
    line = error_line(run(*command, "--config", str(config), "--no-progress"))
    assert expected in line


def test_predict_takes_the_common_flags_and_names_the_export_command(tmp_path):
    line = error_line(run("movietitles.predict", "--title", "Heat", "--model-dir", str(tmp_path), "--no-progress"))
    assert "python -m movietitles.export" in line


@pytest.mark.parametrize("command, old, new", [
    (["movietitles.export", "--out", "{tmp}/exports"], "--out", "--model-dir"),
    (["movietitles.evaluate", "--data", "{tmp}/other"], "--data", "--eval-root"),
    (["movietitles.generate", "--poster", "p.jpg", "--genres", "Comedy,Drama"], "--genres with commas",
     "spaces: --genres Comedy Romance"),
])
def test_old_flag_spellings_still_work_with_a_deprecation_message(tmp_path, missing, command, old, new):
    config = write_yaml(tmp_path / "my.yaml", missing)
    result = run(*(arg.format(tmp=tmp_path) for arg in command), "--config", str(config))
    error_line(result)  # parsed: the command went on to its own check (no trained model here)
    assert f"warning: {old} is deprecated" in result.stderr and f"use {new}" in result.stderr


QUIET_CHECK = "import movietitles, tensorflow as tf; print(int(tf.constant(1) + 1))"


def test_tensorflows_cpp_log_lines_are_quiet_by_default_and_back_with_verbose():
    import re

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    absl_line = re.compile(r"^[IWE]\d{4} ", re.MULTILINE)
    quiet = subprocess.run([sys.executable, "-c", QUIET_CHECK], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=300)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "2", quiet.stderr[-2000:]
    assert not absl_line.search(quiet.stderr) and "InitializeLog" not in quiet.stderr, quiet.stderr[-2000:]
    verbose = subprocess.run([sys.executable, "-c", QUIET_CHECK, "--verbose"], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=300)
    assert verbose.returncode == 0 and absl_line.search(verbose.stderr), verbose.stderr[-2000:]


def test_no_progress_hides_the_bars_of_a_long_job(tiny_config, tmp_path):
    """tqdm reads TQDM_DISABLE when it is imported, before the flag is parsed: the flag must still hide the bars."""
    runs = {}
    for flags in ([], ["--no-progress"]):
        config = with_overrides(tiny_config, {"features.cache_dir": str(tmp_path / f"features{len(flags)}")})
        config_file = write_yaml(tmp_path / f"config{len(flags)}.yaml", config)
        runs[bool(flags)] = run("movietitles.features", "--kinds", "title", "--config", str(config_file), *flags)
        assert runs[bool(flags)].returncode == 0, runs[bool(flags)].stderr[-3000:]
    assert "row/s]" in runs[False].stderr  # the bar of the title embeddings
    assert "row/s]" not in runs[True].stderr and "titles (" in runs[True].stderr  # its log line stays
