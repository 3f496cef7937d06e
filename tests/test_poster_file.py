"""Poster files given on the command line: what is wrong is said in plain words, nothing that can block is opened,
and sizes are the file's own (the shared reader of `predict --poster` and `generate --poster`)."""

import io
import os

import pytest
from PIL import Image

from movietitles import generate
from movietitles.data.poster_file import PosterFileError, read_poster_file


def jpeg(width=30, height=45) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "good.jpg").write_bytes(jpeg())
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop2.jpg")
    (tmp_path / "loop2.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "page.jpg").write_bytes(b"<html>not found</html>")
    (tmp_path / "wide.jpg").write_bytes(jpeg(400, 300))
    (tmp_path / "big.jpg").write_bytes(jpeg() + b"\0" * 5000)
    return tmp_path


CASES = {"folder.jpg": "is a directory, not an image file", "fifo.jpg": "is a pipe",
         "loop.jpg": "is a loop of symbolic links", "dangling.jpg": "is a symbolic link to",
         "missing.jpg": "not found", "empty.jpg": "is empty (0 bytes)",
         "page.jpg": "is not a JPEG, PNG, GIF, BMP or WebP image (its 22 bytes start with b'<html>no'",
         "wide.jpg": "is 400 x 300 pixels, over the limit of 100,000 pixels",
         "big.jpg": "bytes, over the limit of 4,000 bytes"}


@pytest.mark.parametrize("name", CASES)
def test_each_bad_poster_path_is_named_with_what_it_is(paths, name):
    with pytest.raises(PosterFileError, match="^poster " + str(paths / name).replace(".", r"\.")) as caught:
        read_poster_file(paths / name, max_bytes=4000, max_pixels=100_000)
    assert CASES[name] in str(caught.value)


def test_the_real_size_is_reported_and_a_good_poster_is_read(paths):
    size = (paths / "big.jpg").stat().st_size
    with pytest.raises(PosterFileError, match=f"is {size:,} bytes"):
        read_poster_file(paths / "big.jpg", max_bytes=4000)
    assert read_poster_file(paths / "good.jpg", max_bytes=4000, max_pixels=100_000) == (paths / "good.jpg").read_bytes()


def test_a_process_substitution_pipe_is_refused_without_reading_it():
    read_end, write_end = os.pipe()  # nothing is ever written: reading it would wait for ever
    try:
        with pytest.raises(PosterFileError, match="is a pipe"):
            read_poster_file(f"/proc/self/fd/{read_end}", max_bytes=4000)
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("name", ["folder.jpg", "fifo.jpg", "loop.jpg", "empty.jpg", "wide.jpg", "big.jpg"])
def test_generate_names_the_poster_before_loading_any_model(paths, name, capsys):
    limits = ["--set", "encoders.image.max_pixels=100000", "--set", "encoders.image.max_bytes=4000"]
    assert generate.main(["--poster", str(paths / "good.jpg"), str(paths / name), *limits]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: poster {paths / name}") and CASES[name] in err


def test_command_line_posters_are_decoded_in_a_graph_as_the_export_does(paths, monkeypatch):
    """Eagerly, a 180-frame GIF took minutes on the command line against 0.7 s in the exported graph."""
    import tensorflow as tf

    from movietitles.encoders.image import ImageEncoder
    from movietitles.features.poster_files import embed_poster_files

    preprocess, modes = ImageEncoder.preprocess, []

    def recording(self, *args, **kwargs):
        modes.append(tf.executing_eagerly())
        return preprocess(self, *args, **kwargs)

    monkeypatch.setattr(ImageEncoder, "preprocess", recording)
    vectors = embed_poster_files({"name": "efficientnet_lite0", "pooling": "head"}, [paths / "good.jpg"])
    assert vectors.shape == (1, 1280) and modes and not any(modes)
