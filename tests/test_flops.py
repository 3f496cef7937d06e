"""FLOP counts behind the benchmark's GFLOP/s figures."""

from types import SimpleNamespace

import tensorflow as tf

from movietitles.encoders.efficientnet_lite import build_efficientnet_lite
from movietitles.encoders.flops import BertFlops, keras_model_flops


def test_lite0_count_agrees_with_tf_profiler():
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = build_efficientnet_lite("lite0", image_size=224)
    counted = keras_model_flops(model)
    assert 0.76e9 < counted < 0.78e9  # EfficientNet-Lite0: about 385 M multiply-adds
    graph = convert_variables_to_constants_v2(tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, 224, 224, 3]))).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profiled = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    # The profiler also counts biases and the pooling's additions (~1%), which the count leaves out.
    assert counted <= profiled < 1.02 * counted


def test_bert_count_from_variable_shapes():
    def var(name, *shape):
        return SimpleNamespace(name=f"{name}:0", shape=shape)

    d, ff, heads = 8, 32, 2
    layer = [var(f"layer_0/attention/{n}/kernel", d, heads, d // heads) for n in ("query", "key", "value")]
    layer += [var("layer_0/attention/attention_output/kernel", heads, d // heads, d),
              var("layer_0/attention/query/bias", heads, d // heads),
              var("layer_0/intermediate/kernel", d, ff), var("layer_0/output/kernel", ff, d)]
    flops = BertFlops([var("token_embedding/embeddings", 100, d), *layer, var("pooled_dense/kernel", d, d)])
    length, batch = 5, 3
    per_token = 2 * (4 * d * d + 2 * d * ff) + 4 * length * d
    assert flops.batch(batch, length) == batch * (length * per_token + 2 * d * d)
