"""Floating-point work of the encoders, counted from their weight shapes.

A multiply-add counts as 2 FLOPs. Only convolutions, dense layers and attention's two matrix
products are counted; biases, batch norm, activations, layer norm, softmax and pooling are not
(they are a few percent of the total), so achieved GFLOP/s are slight underestimates.
"""

from __future__ import annotations

import math


def keras_model_flops(model) -> int:
    """FLOPs per example of a Keras model's convolutions and dense layers (fixed input size).

    Each output position of a layer with a kernel does one multiply-add per kernel entry that
    reaches it: kernel size (kh * kw * C_in/groups * C_out, or kh * kw * C * multiplier for a
    depthwise convolution, or in * out for a dense layer) times the positions (H_out * W_out).
    """
    total = 0
    for layer in _leaf_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        shape = tuple(layer.output.shape[1:-1])
        if any(d is None for d in shape):
            raise ValueError(f"{layer.name}: output shape {layer.output.shape} is not fixed; build the model "
                             "for one input size to count its FLOPs")
        total += 2 * math.prod(shape) * math.prod(kernel.shape)
    return total


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer


class BertFlops:
    """FLOPs of a BERT encoder for a batch of B sequences padded to length L.

    Per token: 2 x the transformer layers' dense kernel sizes (query/key/value/output, the
    feed-forward pair); per token and layer, 2 x 2 x L x (attention width) for the scores and the
    weighted sum; per sequence, 2 x the pooler's kernel size. Read from the variables of a loaded
    SavedModel (`hub.load`), named as keras-hub and the TF Model Garden name them.
    """

    def __init__(self, variables):
        dense, pooler, attention = 0, 0, []
        for v in variables:
            name, shape = v.name.lower(), tuple(v.shape)
            if not name.rsplit("/", 1)[-1].startswith("kernel") or len(shape) < 2 or "embedding" in name:
                continue
            if "pool" in name:
                pooler += math.prod(shape)
                continue
            dense += math.prod(shape)
            if "query" in name:
                attention.append(math.prod(shape[1:]))
        if not dense or not attention:
            raise ValueError("no transformer kernels found (expected .../query/kernel and dense kernels)")
        self.dense, self.pooler, self.attention = dense, pooler, attention

    def batch(self, batch_size: int, length: int) -> int:
        per_token = 2 * self.dense + sum(4 * length * width for width in self.attention)
        return batch_size * (length * per_token + 2 * self.pooler)

    @classmethod
    def of_hub_model(cls, model) -> "BertFlops":
        """From a loaded TF-Hub/SavedModel encoder (its variables, or those its call captures)."""
        variables = getattr(model, "variables", None)
        if not variables:
            variables = model.__call__.concrete_functions[0].variables
        return cls(variables)
