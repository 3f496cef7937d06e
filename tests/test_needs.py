"""A test whose outside input is missing skips on a developer's machine and fails under CI=true."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

NEEDY_TEST = """
from needs import need_module, need_path

def test_shared_data():
    need_path("{missing}", "the shared posters")

def test_packaged_model():
    need_module("no_such_packaged_model_xyz", "a packaged model")
"""


@pytest.mark.parametrize("ci, outcome", [("", "2 skipped"), ("true", "2 failed")])
def test_missing_inputs_skip_locally_and_fail_on_ci(tmp_path, ci, outcome):
    (tmp_path / "test_needy.py").write_text(NEEDY_TEST.format(missing=tmp_path / "shared" / "posters"))
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(TESTS)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert outcome in done.stdout, done.stdout[-2000:]
    assert (done.returncode == 0) == (ci == ""), done.stdout[-2000:]
    if ci:
        assert "CI=true and the shared posters is not available" in done.stdout
