"""Poster image encoders: JPEG/PNG bytes -> fixed-size network input -> pooled feature vector.

`ImageEncoder.preprocess` is pure TensorFlow (usable in `tf.data` and inside a SavedModel);
`ImageEncoder.preprocess_batch` runs it over a batch of encoded images, and `ImageEncoder.embed`
runs the Keras model on a preprocessed batch.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from movietitles.encoders import efficientnet_lite
from movietitles.settings import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, poster_size_limits

ENCODER_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50")
RESIZE_POLICIES = ("squash", "pad", "center_crop")

# RGB mean that ResNet's caffe-style preprocessing subtracts: padding with it gives zeros.
_RESNET_MEAN_RGB = (123.68, 116.779, 103.939)

# Posters decoded at once by `preprocess_batch`: each may hold up to max_pixels pixels while it is decoded.
PARALLEL_DECODES = 8



class ImageEncoder:
    """A pretrained image network plus the exact preprocessing it expects.

    Attributes: name, dim (feature size), image_size (square input side), resize (policy),
    cache_key (unique per encoder, weights and preprocessing), batch_size, model, max_pixels and
    max_bytes (the largest poster accepted; they do not change the outputs, so not the cache key).
    """

    def __init__(self, name: str, model: keras.Model, image_size: int, resize: str,
                 normalize: Callable[[tf.Tensor], tf.Tensor], pad_value, cache_key: str,
                 batch_size: int = 64, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"resize: unknown policy {resize!r}; expected one of {RESIZE_POLICIES}")
        self.name = name
        self.model = model
        self.dim = int(model.output_shape[-1])
        self.image_size = int(image_size)
        self.resize = resize
        self.cache_key = cache_key
        self.batch_size = int(batch_size)
        self.max_pixels, self.max_bytes = int(max_pixels), int(max_bytes)
        self._normalize = normalize
        self._pad_value = tf.constant(pad_value, tf.float32)
        # A fixed-signature graph: ~2x faster than eager calls. (jit_compile=True is ~40x slower
        # on CPU: XLA's depthwise convolutions are poor.)
        self._forward = tf.function(
            lambda images: model(images, training=False),
            input_signature=[tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32)],
        )
        self._preprocess_batch = tf.function(self._preprocess_each,
                                             input_signature=[tf.TensorSpec([None], tf.string)] * 2)

    def preprocess(self, image_bytes: tf.Tensor, label="poster") -> tf.Tensor:
        """Encoded image (scalar string tensor) -> [S, S, 3] float32 network input.

        An image over `max_bytes` bytes or `max_pixels` pixels (read from its header, before any
        decoding) fails with an InvalidArgumentError naming `label` (a string or scalar string
        tensor: the file or the request index). Transparent images are composited onto white.
        """
        checks = [size_check(image_bytes, label, self.max_pixels, self.max_bytes)]
        with tf.control_dependencies(checks):
            image = decode_rgb(image_bytes)
        size = self.image_size
        # Resized as uint8 (the same floats as resizing its float32 cast, without a float copy of the whole image).
        if self.resize == "center_crop":
            image = _resize_short_side_center_crop(image, size)
        else:
            image = _resize_bilinear(image, size, preserve_aspect_ratio=self.resize == "pad")
        image = tf.cast(image, tf.float32)
        # Quantise like a uint8 image library would (bicubic also overshoots the pixel range).
        image = tf.round(tf.clip_by_value(image, 0.0, 255.0))
        if self.resize == "pad":
            shape = tf.shape(image)
            # pad_to_bounding_box pads with zeros: shift so that the padding becomes pad_value.
            image = tf.image.pad_to_bounding_box(image - self._pad_value, (size - shape[0]) // 2,
                                                 (size - shape[1]) // 2, size, size) + self._pad_value
        image = tf.ensure_shape(self._normalize(image), [size, size, 3])
        return image

    def _preprocess_each(self, image_bytes: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        return tf.map_fn(lambda item: self.preprocess(item[0], label=item[1]), (image_bytes, labels),
                         fn_output_signature=tf.TensorSpec([self.image_size] * 2 + [3], tf.float32),
                         parallel_iterations=PARALLEL_DECODES)

    def preprocess_batch(self, image_bytes: Sequence[bytes], labels: Sequence[str]) -> tf.Tensor:
        """Encoded images -> the network's input batch [B, S, S, 3], decoded in parallel in one graph call;
        `labels` (e.g. file names) name a bad image in the error."""
        return self._preprocess_batch(tf.constant(list(image_bytes), tf.string),
                                      tf.constant(list(labels), tf.string))

    def embed(self, images) -> np.ndarray:
        """Preprocessed batch [B, S, S, 3] float32 -> features [B, dim] float32."""
        return self._forward(tf.convert_to_tensor(images, tf.float32)).numpy()

    def __repr__(self) -> str:
        return f"ImageEncoder({self.cache_key!r}, dim={self.dim})"


def image_dimensions(image_bytes: tf.Tensor) -> tf.Tensor:
    """[height, width] int64 read from the header of a JPEG, PNG, GIF, BMP or WebP file, without
    decoding it; [0, 0] for anything else (which the decoder then refuses)."""
    # One branch runs: a JPEG (nearly every poster) skips the other formats' header arithmetic.
    return tf.case([(tf.io.is_jpeg(image_bytes),
                     lambda: tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64)),
                    (tf.equal(tf.strings.substr(image_bytes, 0, 3), b"GIF"), lambda: _gif_dimensions(image_bytes))],
                   default=lambda: _png_bmp_webp_dimensions(image_bytes), exclusive=True)


def _png_bmp_webp_dimensions(image_bytes: tf.Tensor) -> tf.Tensor:
    """[height, width] int64 from a PNG, BMP or WebP header; [0, 0] for anything else."""
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(image_bytes, 0, 32), "\0" * 32]), 0, 32)
    b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def starts(magic: bytes, offset: int = 0):
        return tf.equal(tf.strings.substr(head, offset, len(magic)), magic)

    def little(offset: int, n: int):
        return sum(b[offset + k] * (1 << (8 * k)) for k in range(n))

    def big(offset: int, n: int):
        return sum(b[offset + k] * (1 << (8 * (n - 1 - k))) for k in range(n))

    # (format test, height, width); BMP heights are negative for top-down rows.
    bmp_height = little(22, 4)
    formats = [
        (starts(b"\x89PNG"), big(20, 4), big(16, 4)),
        (starts(b"BM"), tf.abs(tf.where(bmp_height >= 1 << 31, bmp_height - (1 << 32), bmp_height)), little(18, 4)),
        (starts(b"WEBPVP8 ", 8), little(28, 2) % (1 << 14), little(26, 2) % (1 << 14)),
        (starts(b"WEBPVP8L", 8), 1 + b[22] // 64 + b[23] * 4 + (b[24] % 16) * 1024, 1 + b[21] + (b[22] % 64) * 256),
        (starts(b"WEBPVP8X", 8), 1 + little(27, 3), 1 + little(24, 3)),
    ]
    dims = tf.zeros([2], tf.int64)
    for test, height, width in reversed(formats):
        dims = tf.where(test, tf.stack([height, width]), dims)
    return dims


def _gif_dimensions(data: tf.Tensor) -> tf.Tensor:
    """[frames * tallest frame, widest frame] of a GIF: what TF's decoder allocates. (The header's
    screen size does not bound the frames, and every frame is decoded, so the blocks are walked.)"""
    length = tf.cast(tf.strings.length(data), tf.int64)

    def byte(pos):
        pos = tf.minimum(tf.cast(pos, tf.int64), length)
        padded = tf.strings.join([tf.strings.substr(data, pos, 1), "\0"])
        return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, 1), tf.uint8)[0], tf.int64)

    def color_table(flags):
        return tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)

    def step(pos, in_blocks, frames, height, width):
        b = byte(pos)
        # Inside an extension's or an image's data: sub-blocks of (size, bytes) up to a zero size.
        sub = (pos + 1 + b, b > 0, frames, height, width)
        is_image = tf.equal(b, 0x2C)
        frame_w, frame_h = byte(pos + 5) + 256 * byte(pos + 6), byte(pos + 7) + 256 * byte(pos + 8)
        image = (pos + 11 + color_table(byte(pos + 9)), True, frames + 1, tf.maximum(height, frame_h),
                 tf.maximum(width, frame_w))
        extension = (pos + 2, True, frames, height, width)
        block = [tf.where(is_image, i, e) for i, e in zip(image, extension)]
        ends = ~in_blocks & ~is_image & tf.not_equal(b, 0x21)  # trailer, junk or end of data
        pos = tf.where(ends, length + 1, tf.where(in_blocks, sub[0], block[0]))
        return (pos, *[tf.where(in_blocks, s, k) for s, k in zip(sub[1:], block[1:])])

    start = 13 + color_table(byte(10))
    zero = tf.constant(0, tf.int64)
    _, _, frames, height, width = tf.while_loop(
        lambda pos, *_: pos <= length, step, (start, tf.constant(False), zero, zero, zero))
    return tf.stack([frames * height, width])


def size_check(image_bytes: tf.Tensor, label, max_pixels: int, max_bytes: int) -> tf.Operation:
    """An assertion that the encoded image holds at most `max_bytes` bytes and, by its header, at
    most `max_pixels` pixels; its message names `label`."""
    nbytes = tf.strings.length(image_bytes)
    small = tf.debugging.Assert(nbytes <= max_bytes, [_message(
        label, ": ", nbytes, f" bytes is over the limit of {max_bytes} bytes (encoders.image.max_bytes)")])
    with tf.control_dependencies([small]):
        dims = image_dimensions(image_bytes)
    return tf.debugging.Assert(dims[0] * dims[1] <= max_pixels, [_message(
        label, ": ", dims[1], "x", dims[0], f" pixels (width x height) is over the limit of {max_pixels} pixels "
        "(encoders.image.max_pixels)")])


def _message(*parts) -> tf.Tensor:
    """Strings and integer tensors joined (tf.strings.format would quote the strings)."""
    return tf.strings.join([tf.strings.as_string(p) if isinstance(p, tf.Tensor) and p.dtype != tf.string else p
                            for p in parts])


def decode_rgb(image_bytes: tf.Tensor) -> tf.Tensor:
    """Any TF-readable image -> [H, W, 3] uint8; JPEGs with the accurate IDCT (what PIL uses).

    PNG and WebP transparency is composited onto white, exactly as `movietitles.data.images` does
    with Pillow when it prepares the training posters.
    """
    def png():
        return _composite_on_white(tf.io.decode_png(image_bytes, channels=4))

    def webp():
        image = tf.io.decode_webp(image_bytes, channels=0)[0]
        return tf.cond(tf.shape(image)[-1] == 4, lambda: _composite_on_white(image), lambda: image[..., :3])

    def other():
        return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)

    is_png = tf.equal(tf.strings.substr(image_bytes, 0, 4), b"\x89PNG")
    is_webp = tf.equal(tf.strings.substr(image_bytes, 8, 4), b"WEBP")
    return tf.ensure_shape(tf.case(
        [(tf.io.is_jpeg(image_bytes),
          lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE")),
         (is_png, png), (is_webp, webp)], default=other, exclusive=True), [None, None, 3])


def _composite_on_white(rgba: tf.Tensor) -> tf.Tensor:
    """[H, W, 4] uint8 over opaque white -> [H, W, 3] uint8, with Pillow's integer rounding
    (Image.alpha_composite: 7 extra bits of precision, divisions by 255 rounded)."""
    rgb, alpha = tf.cast(rgba[..., :3], tf.int32), tf.cast(rgba[..., 3:], tf.int32)
    mixed = (rgb * alpha + 255 * (255 - alpha)) * 128 + 128 * 128
    return tf.cast(((mixed // 256 + mixed) // 256) // 128, tf.uint8)


def _resize_bilinear(image: tf.Tensor, size: int, preserve_aspect_ratio: bool) -> tf.Tensor:
    """Bilinear resize to size x size (or to fit inside it), antialiased only when shrinking over 2x.

    Antialiasing (TF's ScaleAndTranslate) costs about 3x the whole decode + resize, and bilinear
    interpolation alone aliases only when it skips input pixels (scale below 1/2); posters
    (about 160x236 -> 224) never need it.
    """
    def resize(antialias: bool):
        return lambda: tf.image.resize(image, [size, size], method="bilinear", antialias=antialias,
                                       preserve_aspect_ratio=preserve_aspect_ratio)

    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_max(hw)  # the smallest scale factor, for both squash and fit-inside
    return tf.cond(scale < 0.5, resize(True), resize(False))


def _resize_short_side_center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """ImageNet evaluation crop: short side to round(size*256/224) (bicubic), centre crop size x size.

    The geometry of the reference preprocessing: long side scaled and rounded, crop offset
    rounded half to even (as in torchvision's CenterCrop).
    """
    short_target = round(size * 256 / 224)
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    new_hw = tf.cast(tf.round(short_target * shape / tf.reduce_min(shape)), tf.int32)
    image = tf.image.resize(image, new_hw, method="bicubic", antialias=True)
    top_left = tf.cast(tf.round(tf.cast(new_hw - size, tf.float32) / 2.0), tf.int32)
    return tf.image.crop_to_bounding_box(image, top_left[0], top_left[1], size, size)


def _lite_normalize(image: tf.Tensor) -> tf.Tensor:
    return (image - 127.0) / 128.0


def _file_tag(path: Path) -> str:
    """Stem plus a short content hash, so caches of different weight files never mix."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.stem}.{digest.hexdigest()[:8]}"


def _build_lite(name: str, weights, size: int, pooling: str = "head") -> tuple[keras.Model, str]:
    variant = name.removeprefix("efficientnet_")
    if weights in (None, "packaged"):
        return efficientnet_lite.build_efficientnet_lite(variant, image_size=size, pooling=pooling), name
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"encoders.image.weights: {name} weights file not found: {path} "
                                "(use null for the packaged ImageNet weights)")
    model = efficientnet_lite.build_efficientnet_lite(variant, weights_path=path, image_size=size, pooling=pooling)
    return model, f"{name}.{_file_tag(path)}"


def _build_resnet50(weights, size: int) -> tuple[keras.Model, str]:
    if weights is None:
        raise ValueError("encoders.image.weights is null, but resnet50 needs weights: \"imagenet\" "
                         "(downloaded from the network on first use) or the path of a local Keras weights "
                         "file. Offline, use an efficientnet_lite* encoder (packaged weights).")
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"encoders.image.weights: resnet50 weights file not found: {path}")
        tag = _file_tag(path)
    else:
        tag = "imagenet"
    try:
        model = keras.applications.ResNet50(include_top=False, pooling="avg", weights=str(weights),
                                            input_shape=(size, size, 3))
    except Exception as err:  # keras raises a bare Exception when the download fails
        if weights != "imagenet":
            raise ValueError(f"encoders.image.weights: cannot load ResNet50 weights from {weights}: "
                             f"{err}") from err
        raise RuntimeError(
            f"could not download the ResNet50 ImageNet weights ({err}). Connect to the network once "
            "(keras caches them in ~/.keras/models), set encoders.image.weights to a local weights file, "
            "or use an efficientnet_lite* encoder, whose weights are packaged."
        ) from None
    return model, f"resnet50.{tag}"


def _settings(cfg: dict) -> tuple[str, str, int]:
    """(name, resize policy, image size) of `config["encoders"]["image"]`, validated."""
    name = cfg.get("name")
    resize = cfg.get("resize", "squash")
    if name not in ENCODER_NAMES:
        raise ValueError(f"encoders.image.name: unknown image encoder {name!r}; expected one of {ENCODER_NAMES}")
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"encoders.image.resize: unknown policy {resize!r}; expected one of {RESIZE_POLICIES}")
    native = efficientnet_lite.NATIVE_IMAGE_SIZE.get(name.removeprefix("efficientnet_"), 224)
    size = cfg.get("image_size") or native
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"encoders.image.image_size must be an integer >= 32 or null, got {size!r}")
    pooling = cfg.get("pooling", "head")
    if pooling not in efficientnet_lite.POOLINGS or (pooling != "head" and name == "resnet50"):
        raise ValueError(f"encoders.image.pooling: {pooling!r} is not one of {efficientnet_lite.POOLINGS} "
                         "(multi_depth and grid are for efficientnet_lite* encoders)")
    if pooling == "grid" and cfg.get("flip_average"):
        raise ValueError("encoders.image.flip_average cannot be combined with pooling: grid (the mirror image's "
                         "feature map is not the poster's)")
    return name, resize, size


def grid_layout(cfg: dict) -> tuple[int, int, int] | None:
    """(pooled size, cells, channels) of the features of `pooling: grid` (see efficientnet_lite.grid_layout);
    None for the other poolings."""
    name, _, size = _settings(cfg)
    if cfg.get("pooling", "head") != "grid":
        return None
    return efficientnet_lite.grid_layout(name.removeprefix("efficientnet_"), size)


def error_reason(message: str) -> str:
    """A TensorFlow error message without its graph-execution framing and node names."""
    framing = ("Graph execution error", "Detected at node", "File \"", "<stack traces", "[[", "[Op:")
    lines = [line.strip() for line in message.splitlines()]
    reason = " ".join(line for line in lines if line and not line.startswith(framing))
    return re.sub(r"^assertion failed: \[(.*)\]$", r"\1", reason)


def image_cache_key(cfg: dict) -> str:
    """The feature-cache key of an encoder config, without building the model."""
    name, resize, size = _settings(cfg)
    weights = cfg.get("weights")
    if weights in (None, "packaged", "imagenet"):
        model_key = "resnet50.imagenet" if name == "resnet50" else name
    else:
        model_key = f"{name}.{_file_tag(Path(weights))}"
    return f"{model_key}-{resize}{size}{_pooling_suffix(cfg)}{_flip_suffix(cfg)}{_view_suffix(cfg)}"


def _flip_suffix(cfg: dict) -> str:
    flip = cfg.get("flip_average", False)
    if not isinstance(flip, bool):
        raise ValueError(f"encoders.image.flip_average must be true or false, got {flip!r}")
    return "-flipavg" if flip else ""


def with_flip_average(model: keras.Model) -> keras.Model:
    """The mean of the network's features of each image and of its mirror image (a test-time view, used in
    training, features and serving alike; twice the compute)."""
    images = keras.Input(model.input_shape[1:], name="images")
    mirrored = keras.ops.flip(images, axis=2)
    features = keras.layers.Average(name="flip_average")([model(images), model(mirrored)])
    return keras.Model(images, features, name=f"{model.name}_flip_average")


VIEWS = ("full", "text_masked")


def _view_suffix(cfg: dict) -> str:
    """Empty for the full poster; "-textmasked" for the view with its printed text painted out."""
    view = cfg.get("view", "full")
    if view not in VIEWS:
        raise ValueError(f"encoders.image.view: unknown view {view!r}; expected one of {VIEWS}")
    return "" if view == "full" else "-textmasked"


def _pooling_suffix(cfg: dict) -> str:
    """Empty for the default head pooling, so that existing caches keep their key."""
    pooling = cfg.get("pooling", "head")
    return "" if pooling == "head" else f"-{pooling.replace('_', '')}"


def build_image_encoder(cfg: dict, masked_input: bool = False) -> ImageEncoder:
    """Build the encoder described by `config["encoders"]["image"]`.

    The `text_masked` view's features are computed from posters whose text was painted out
    (`movietitles.features` does it, `masked_input=True`); anything else given raw posters is refused.
    """
    if _view_suffix(cfg) and not masked_input:
        raise ValueError("encoders.image.view: text_masked is an analysis view: its features are computed by "
                         "`python -m movietitles.features` from the poster-text cache, and raw posters cannot be "
                         "embedded as it sees them; use view: full to embed, export or serve posters")
    name, resize, size = _settings(cfg)
    if name == "resnet50":
        model, model_key = _build_resnet50(cfg.get("weights"), size)
        normalize, pad_value = keras.applications.resnet50.preprocess_input, _RESNET_MEAN_RGB
    else:
        model, model_key = _build_lite(name, cfg.get("weights"), size, cfg.get("pooling", "head"))
        normalize, pad_value = _lite_normalize, 127.0
    if _flip_suffix(cfg):
        model = with_flip_average(model)
    cache_key = f"{model_key}-{resize}{size}{_pooling_suffix(cfg)}{_flip_suffix(cfg)}{_view_suffix(cfg)}"
    max_pixels, max_bytes = poster_size_limits(cfg)
    return ImageEncoder(name, model, size, resize, normalize, pad_value, cache_key=cache_key,
                        batch_size=cfg.get("batch_size", 64), max_pixels=max_pixels, max_bytes=max_bytes)
