"""Poster size limits (read from headers, before decoding) and transparency, as training and serving see them."""

import io
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from movietitles.data.images import _to_rgb, inspect_poster
from movietitles.encoders import image as image_module
from movietitles.encoders.image import ImageEncoder, build_image_encoder

SMALL = {"name": "efficientnet_lite0", "weights": None, "resize": "squash", "image_size": 64}


def huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit grayscale PNG of width x height black pixels: about 48 KB for 20,000 x 20,000."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = zlib.compress(bytes((1 + (width + 7) // 8) * height), 9)  # each row: filter 0, then zeros
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def identity_encoder(size: int, **limits) -> ImageEncoder:
    """An encoder whose network input is the preprocessed poster itself (squash to size x size)."""
    model = keras.Sequential([keras.Input((size, size, 3)), keras.layers.GlobalAveragePooling2D()])
    return ImageEncoder("test", model, size, "squash", lambda x: x, 0.0, "test", **limits)


def _gif_with_small_screen() -> bytes:
    """A 3000 x 2000 frame in a GIF whose header claims a 10 x 10 screen (TF decodes the frame)."""
    data = bytearray(encode(Image.new("P", (3000, 2000)), "GIF"))
    data[6:10] = bytes([10, 0, 10, 0])
    return bytes(data)


RGB = Image.new("RGB", (300, 200), (10, 20, 30))
RGBA = Image.new("RGBA", (300, 200), (10, 20, 30, 40))
HEADERS = {
    "jpeg": (encode(RGB, "JPEG"), (200, 300)), "png": (encode(RGB, "PNG"), (200, 300)),
    "rgba_png": (encode(RGBA, "PNG"), (200, 300)), "gif": (encode(RGB, "GIF"), (200, 300)),
    "bmp": (encode(RGB, "BMP"), (200, 300)), "webp_lossy": (encode(RGB, "WEBP"), (200, 300)),
    "webp_lossless": (encode(RGB, "WEBP", lossless=True), (200, 300)),
    "webp_extended": (encode(RGB, "WEBP", exif=b"Exif\0\0MM\0*\0\0\0\x08\0\0"), (200, 300)),
    "gif_small_screen": (_gif_with_small_screen(), (2000, 3000)),
    "huge_png": (huge_png(), (20_000, 20_000)),
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_dimensions_come_from_the_header_of_every_format(case):
    data, expected = HEADERS[case]
    assert tuple(image_module.image_dimensions(tf.constant(data)).numpy()) == expected
    in_graph = tf.function(image_module.image_dimensions, input_signature=[tf.TensorSpec([], tf.string)])
    assert tuple(in_graph(tf.constant(data)).numpy()) == expected
    if case != "huge_png":  # what the decoder really allocates
        assert tuple(tf.io.decode_image(data, expand_animations=False).shape[:2]) == expected


def test_a_huge_png_is_refused_before_decoding_and_names_the_poster():
    data = huge_png()
    assert len(data) < 60_000
    encoder = identity_encoder(64)  # the default limits
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="posters/huge.png: 20000x20000 pixels .*over the limit of 25000000 pixels"):
        encoder.preprocess(tf.constant(data), label="posters/huge.png")


@pytest.mark.parametrize("case", ["jpeg", "png", "gif", "bmp", "webp_lossy", "gif_small_screen"])
def test_configured_pixel_limit_refuses_a_poster_one_pixel_over(case):
    data, (height, width) = HEADERS[case]
    at_limit = build_image_encoder({**SMALL, "max_pixels": height * width})
    assert at_limit.preprocess(tf.constant(data)).shape == (64, 64, 3)
    over = build_image_encoder({**SMALL, "max_pixels": height * width - 1})
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"poster: {width}x{height} pixels .*max_pixels"):
        over.preprocess(tf.constant(data))


def test_configured_byte_limit_refuses_a_larger_file():
    data = HEADERS["png"][0]
    encoder = build_image_encoder({**SMALL, "max_bytes": len(data) - 1})
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f"a.png: {len(data)} bytes is over the limit of {len(data) - 1} bytes"):
        encoder.preprocess(tf.constant(data), label="a.png")


@pytest.mark.parametrize("key, value", [("max_pixels", 0), ("max_bytes", -5), ("max_pixels", "many")])
def test_bad_limits_are_a_clear_error(key, value):
    with pytest.raises(ValueError, match=f"encoders.image.{key} must be a positive integer"):
        build_image_encoder({**SMALL, key: value})


def _all_alpha_levels() -> Image.Image:
    """256 x 256 RGBA: every (channel value, alpha) pair, with other colours in the other channels."""
    value, alpha = np.meshgrid(np.arange(256), np.arange(256))
    rgba = np.stack([value, 255 - value, (value * 7) % 256, alpha], axis=-1).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


TRANSPARENT = {
    "rgba_png": lambda img: encode(img, "PNG"),
    "la_png": lambda img: encode(img.convert("LA"), "PNG"),
    "palette_png": lambda img: encode(img.convert("RGB").quantize(64), "PNG", transparency=5),
    "rgba_webp": lambda img: encode(img, "WEBP", lossless=True, exact=True),
}


@pytest.mark.parametrize("case", sorted(TRANSPARENT))
def test_transparent_posters_are_composited_onto_white_as_in_training(case):
    data = TRANSPARENT[case](_all_alpha_levels())
    training = _to_rgb(Image.open(io.BytesIO(data)))[0]  # what `data prepare` makes of the poster
    assert training.mode == "RGB"
    encoder = identity_encoder(256)  # 256 -> 256: the network sees the decoded pixels
    served = encoder.preprocess(tf.constant(data)).numpy()
    np.testing.assert_array_equal(served, np.asarray(training, np.float32))


def test_an_opaque_png_keeps_its_pixels():
    rgb = np.asarray(_all_alpha_levels())[..., :3]
    served = identity_encoder(256).preprocess(tf.constant(encode(Image.fromarray(rgb), "PNG"))).numpy()
    np.testing.assert_array_equal(served, rgb.astype(np.float32))


@pytest.mark.parametrize("resize", ["squash", "pad", "center_crop"])
def test_resizing_the_uint8_image_gives_the_float_path_bit_for_bit(resize):
    """The float copy of the full-size image is gone; the network input is unchanged."""
    rng = np.random.default_rng(0)
    encoder = build_image_encoder({**SMALL, "resize": resize})
    for height, width in ((236, 160), (600, 400), (50, 40), (64, 64)):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        data = tf.constant(encode(Image.fromarray(pixels), "PNG"))
        image = tf.constant(pixels, tf.float32)  # the old order: cast first, then resize
        if resize == "center_crop":
            image = image_module._resize_short_side_center_crop(image, 64)
        else:
            image = image_module._resize_bilinear(image, 64, preserve_aspect_ratio=resize == "pad")
        image = tf.round(tf.clip_by_value(image, 0.0, 255.0))
        if resize == "pad":
            shape = tf.shape(image)
            image = tf.image.pad_to_bounding_box(image - 127.0, (64 - shape[0]) // 2, (64 - shape[1]) // 2,
                                                 64, 64) + 127.0
        expected = image_module._lite_normalize(image).numpy()
        assert encoder.preprocess(data).numpy().view(np.uint32).tolist() == expected.view(np.uint32).tolist()


def test_prepare_skips_posters_over_the_encoder_limits(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(HEADERS["png"][0])
    cfg = {"min_side": 32, "max_side": 10000, "max_aspect": 4.0}
    assert inspect_poster(path, {**cfg, "max_pixels": 300 * 200, "max_bytes": path.stat().st_size}).status == "fixed"
    check = inspect_poster(path, {**cfg, "max_pixels": 300 * 200 - 1})
    assert check.status == "skipped" and check.reason == "absurd_size: 300x200 (over max_pixels 59999)"
    check = inspect_poster(path, {**cfg, "max_bytes": 100})
    assert check.status == "skipped" and check.reason.startswith(f"too_large: {path.stat().st_size} bytes")
