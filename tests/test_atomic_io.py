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


def test_a_directory_is_written_beside_its_target_then_renamed_into_place(tmp_path, umask):
    from movietitles.io import directory_in_progress

    target = tmp_path / "models" / "encoder"
    with directory_in_progress(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".encoder.") and tmp.is_dir()
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's private 0700
        (tmp / "saved_model.pb").write_bytes(b"graph")
        os.replace(tmp, target)
    assert (target / "saved_model.pb").read_bytes() == b"graph"
    with pytest.raises(RuntimeError):
        with directory_in_progress(target) as tmp:
            (tmp / "half").write_bytes(b"x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.parent.iterdir()) == ["encoder"]  # the half-written folder is gone
