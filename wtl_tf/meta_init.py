"""Initialisers for per-parameter meta-parameters (masks and learned rates).

`kaiming`   He-uniform, bound sqrt(6 / fan_in), for tensors of rank > 1 and U[-0.5, 0.5]
            otherwise; then m <- m - mean(m) + init_shift, per tensor. With init_shift = 0
            about half of every tensor starts masked (the sparse-MAML reference).
`uniform`   U[-0.5, 0.5] for every tensor, then the same shift (the ResNet-12 reference).
`constant`  m = value everywhere (sparse-ReLU-MAML starts at m = alpha).
`meta_sgd`  U[0.005, 0.1] (Li et al., Meta-SGD).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.errors import ConfigError

KINDS = ("kaiming", "uniform", "constant", "meta_sgd")


def fan_in(shape):
    """Inputs feeding one output unit: all dimensions but the last (Keras layouts)."""
    return int(np.prod(shape[:-1])) if len(shape) > 1 else int(shape[0])


@keras.saving.register_keras_serializable(package="wtl_tf")
class MetaParameterInitializer(keras.initializers.Initializer):
    def __init__(self, kind="kaiming", shift=0.0, value=0.0, seed=None):
        if kind not in KINDS:
            raise ConfigError(f"unknown meta-parameter init {kind!r}; choose one of {KINDS}")
        self.kind, self.shift, self.value, self.seed = kind, float(shift), float(value), seed

    def __call__(self, shape, dtype=None):
        dtype = dtype or "float32"
        shape = tuple(shape)
        if self.kind == "constant":
            return tf.fill(shape, tf.constant(self.value, dtype))
        if self.kind == "meta_sgd":
            return keras.random.uniform(shape, 0.005, 0.1, dtype=dtype, seed=self.seed)
        if self.kind == "kaiming" and len(shape) > 1:
            bound = math.sqrt(6.0 / fan_in(shape))
        else:
            bound = 0.5
        m = keras.random.uniform(shape, -bound, bound, dtype=dtype, seed=self.seed)
        return m - keras.ops.mean(m) + self.shift

    def get_config(self):
        return {"kind": self.kind, "shift": self.shift, "value": self.value, "seed": self.seed}
