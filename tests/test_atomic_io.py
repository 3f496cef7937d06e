"""Atomic writes give outputs the usual permissions (not a temporary file's private 0600)."""

import os
import stat

import keras
import numpy as np
import pytest

from movietitles.io import atomic_save_model, atomic_save_npy, atomic_save_npz, atomic_write_text


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_outputs_get_the_usual_permissions(tmp_path, umask):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    writers = {"metadata.tsv": lambda p: atomic_write_text(p, "a\tb\n"),
               "features.npy": lambda p: atomic_save_npy(p, np.zeros(3)),
               "arrays.npz": lambda p: atomic_save_npz(p, x=np.zeros(3)),
               "best.keras": lambda p: atomic_save_model(model, p)}
    for name, write in writers.items():
        write(tmp_path / name)
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
        with open(tmp_path / f"plain-{name}", "w"):  # what a plain open() gives, for comparison
            pass
        assert stat.S_IMODE((tmp_path / f"plain-{name}").stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
