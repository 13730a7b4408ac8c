"""FLOPs of a meta-step: an analytic count and TensorFlow's own per-op count, side by side.

Analytic: 2 FLOPs per multiply-add of the conv and dense layers (BatchNorm, ReLU, pooling
and the update rule are not counted). With F the forward FLOPs of one example and f1 those
of the first layer (whose input gradient is never needed):
  one inner step, first order  : forward + weight grads + input grads = (3F - f1) per example
  extra for second order       : gradients of both backward convs and of the forward conv
                                 again = (6F - 4 f1) per support example and step
  query (outer gradient)       : (3F - f1) per example
Graph: the flops statistics TensorFlow registers for Conv2D/Conv2DBackprop*/MatMul, summed
over the traced (unoptimised) graph of one task's meta-gradient, times the meta-batch.
"""

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops


def forward_flops_per_example(model):
    """[(layer name, forward FLOPs per example)] for the conv and dense layers, in order."""
    counts = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, ho, wo, _ = layer.output.shape
            counts.append((layer.name, 2 * ho * wo * kh * kw * cin * cout))
        elif isinstance(layer, keras.layers.Dense):
            fan_in, fan_out = layer.kernel.shape
            counts.append((layer.name, 2 * fan_in * fan_out))
    return counts


def analytic_meta_step_flops(model, support, query, inner_steps, meta_batch, second_order):
    per_layer = forward_flops_per_example(model)
    forward = sum(f for _, f in per_layer)
    first = per_layer[0][1]
    inner = (3 * forward - first) * support * inner_steps
    if second_order:
        inner += (6 * forward - 4 * first) * support * inner_steps
    outer = (3 * forward - first) * query
    return meta_batch * (inner + outer)


def graph_meta_step_flops(learner, episode, meta_batch):
    """TensorFlow's registered op FLOPs for one task's meta-gradient, times the meta-batch."""
    graph = tf.function(learner.task_gradients).get_concrete_function(episode).graph
    total = 0
    for op in graph.get_operations():
        try:
            stats = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops")
        except (LookupError, ValueError):
            continue
        total += stats.value or 0
    return meta_batch * int(total)


def conv_throughput(batch, size, channels, repeats=10, streams=1):
    """Measured GFLOP/s of a 3x3 conv's forward + both backward passes (`streams` at once)."""
    x = tf.random.normal((streams, batch, size, size, channels))
    w = tf.random.normal((streams, 3, 3, channels, channels))
    dy = tf.random.normal((streams, batch, size, size, channels))

    @tf.function
    def step():
        outs = []
        for s in range(streams):  # independent ops: the executor runs them side by side
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                y = tf.nn.conv2d(x[s], w[s], 1, "SAME")
            outs.append(tape.gradient(y, [x, w], output_gradients=dy[s]))
        return outs

    step()
    times = []
    for _ in range(repeats):
        start = tf.timestamp()
        tf.nest.map_structure(lambda t: t.numpy(), step())
        times.append(float(tf.timestamp() - start))
    flops = streams * 3 * 2 * batch * size * size * 9 * channels * channels
    return flops / np.median(times) / 1e9
