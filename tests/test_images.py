import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from movietitles.data.images import check_posters, inspect_poster
from needs import need_path

CFG = {"min_side": 32, "max_side": 10000, "max_aspect": 4.0}
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
POSTERS = SHARED / "datasets" / "movie-posters" / "posters"


def _save(path, img, **kwargs):
    img.save(path, **kwargs)
    return path


@pytest.fixture
def rgb():
    img = Image.new("RGB", (64, 96), (200, 30, 30))
    img.paste((20, 200, 20), (10, 10, 40, 60))
    return img


def test_good_jpeg_ok_with_hash(tmp_path, rgb):
    path = _save(tmp_path / "a.jpg", rgb, format="JPEG", quality=90)
    check = inspect_poster(path, CFG)
    assert (check.status, check.reason, check.width, check.height) == ("ok", None, 64, 96)
    assert check.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert check.fixed_image is None


@pytest.mark.parametrize("mode, code", [("L", "mode_L"), ("CMYK", "mode_CMYK")])
def test_non_rgb_jpeg_fixed(tmp_path, rgb, mode, code):
    path = _save(tmp_path / "a.jpg", rgb.convert(mode), format="JPEG", quality=90)
    check = inspect_poster(path, CFG)
    assert check.status == "fixed" and check.reason.startswith(code)
    assert check.fixed_image.mode == "RGB" and check.fixed_image.size == (64, 96)


def test_palette_png_named_jpg_fixed(tmp_path, rgb):
    path = _save(tmp_path / "a.jpg", rgb.convert("P"), format="PNG")
    check = inspect_poster(path, CFG)
    assert check.status == "fixed"
    assert check.reason.startswith("mode_P") and "PNG" in check.reason


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composited_on_white(tmp_path, rgb, mode):
    img = rgb.convert(mode)
    img.putalpha(0)  # fully transparent: the result must be pure white
    path = _save(tmp_path / "a.jpg", img, format="PNG")
    check = inspect_poster(path, CFG)
    assert check.status == "fixed" and check.reason.startswith(f"alpha_{mode}")
    assert check.fixed_image.mode == "RGB"
    assert check.fixed_image.getextrema() == ((255, 255),) * 3


def test_palette_with_transparency_composited(tmp_path):
    img = Image.new("P", (40, 40), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    path = _save(tmp_path / "a.png", img, format="PNG", transparency=0)
    check = inspect_poster(path, CFG)
    assert check.status == "fixed" and check.reason.startswith("alpha_P")
    assert check.fixed_image.getpixel((5, 5)) == (255, 255, 255)


def test_zero_byte_truncated_garbage_skipped(tmp_path, rgb):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=90)
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all")
    missing = tmp_path / "missing.jpg"

    assert inspect_poster(empty, CFG).reason == "empty_file"
    check = inspect_poster(truncated, CFG)
    assert check.status == "skipped" and check.reason.startswith(("truncated", "unreadable"))
    assert check.width == 64  # the header was read; decoding failed
    assert inspect_poster(garbage, CFG).reason.startswith("unreadable")
    assert inspect_poster(missing, CFG).status == "skipped"


@pytest.mark.parametrize("size", [(10, 2000), (20, 40), (500, 100), (100, 500)])
def test_absurd_sizes_skipped(tmp_path, size):
    path = _save(tmp_path / "a.jpg", Image.new("RGB", size), format="JPEG")
    check = inspect_poster(path, CFG)
    assert check.status == "skipped" and check.reason.startswith("absurd_size")
    assert (check.width, check.height) == size


def test_decompression_bomb_skipped(tmp_path, monkeypatch):
    path = _save(tmp_path / "a.png", Image.new("RGB", (400, 400)), format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    check = inspect_poster(path, CFG)
    assert check.status == "skipped" and check.reason.startswith("decompression_bomb")


def test_check_posters_writes_fixed_files_in_order(tmp_path, rgb):
    good = _save(tmp_path / "good.jpg", rgb, format="JPEG")
    gray = _save(tmp_path / "gray.jpg", rgb.convert("L"), format="JPEG")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    fixed = tmp_path / "fixed"
    checks = check_posters([(good, fixed / "1.jpg"), (gray, fixed / "2.jpg"), (bad, fixed / "3.jpg")],
                           CFG, workers=2, progress=False)
    assert [c.status for c in checks] == ["ok", "fixed", "skipped"]
    assert sorted(p.name for p in fixed.iterdir()) == ["2.jpg"]
    with Image.open(fixed / "2.jpg") as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 96))
    assert checks[1].fixed_image is None


def test_real_posters_sample():
    need_path(POSTERS, "the real posters")
    paths = sorted(POSTERS.glob("*.jpg"))[:200]
    checks = check_posters([(p, Path("/nonexistent") / p.name) for p in paths], CFG, progress=False)
    assert all(c.status == "ok" for c in checks), [c.reason for c in checks if c.status != "ok"][:5]
    assert all(c.width <= 160 and c.height <= 236 for c in checks)


def test_max_side_from_config(tmp_path, rgb):
    path = _save(tmp_path / "a.jpg", rgb, format="JPEG")
    check = inspect_poster(path, {**CFG, "max_side": 80})
    assert check.status == "skipped" and "max_side 80" in check.reason
