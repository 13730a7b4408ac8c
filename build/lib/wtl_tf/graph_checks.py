"""Task networks whose second-order meta-gradients go wrong in TensorFlow: warnings raised when
a learner wraps one (wtl_tf.learner), with what to use instead."""

import os
import warnings

import keras

from wtl_tf.models.layers import Conv2D
from wtl_tf.selection import leaf_layers


def warn_about_inexact_second_order(task_model):
    inexact = [layer.name for layer in leaf_layers(task_model)
               if isinstance(layer, keras.layers.BatchNormalization)]
    if inexact:
        warnings.warn(
            f"layers {inexact} are keras.layers.BatchNormalization, whose training-mode variance "
            "(tf.nn.moments) stops the gradient through the batch mean: second-order "
            "meta-gradients through it are inexact. Use wtl_tf.models.BatchNorm, or first order.",
            UserWarning, stacklevel=3)


def _onednn_graph_rewrite_on():
    """Whether TensorFlow's oneDNN graph rewrite is on: TF_ENABLE_ONEDNN_OPTS when set, else
    TensorFlow's default on x86 Linux, which turns it on for CPUs with AVX512-VNNI, AVX512-BF16,
    AVX-VNNI or AMX (TensorFlow has no public query; the warning it gates errs on the side of
    showing)."""
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting is not None:
        return setting.strip().lower() in ("1", "true", "yes", "on")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return True
    return bool({"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile"} & set(flags))


def warn_about_bias_add_convolutions(task_model):
    """keras.layers.Conv2D adds its bias with a BiasAdd op; under oneDNN, second-order graphs
    through it can fail to build ("N nodes in a cycle"); see wtl_tf.models.layers.Conv2D."""
    risky = [layer.name for layer in leaf_layers(task_model)
             if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, Conv2D)
             and layer.use_bias]
    if risky and _onednn_graph_rewrite_on():
        warnings.warn(
            f"layers {risky} are keras.layers.Conv2D with a bias: with TensorFlow's oneDNN graph "
            "rewrite on (this CPU), second-order meta-steps through them can fail with 'N nodes "
            "in a cycle' in some processes. Use wtl_tf.models.Conv2D (same weights), first "
            "order, or set TF_ENABLE_ONEDNN_OPTS=0 before importing TensorFlow.",
            UserWarning, stacklevel=3)
