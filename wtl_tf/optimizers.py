"""Outer-loop optimisers (one for the initialisation, one for the meta-parameters)."""

import keras

from wtl_tf.errors import ConfigError

KINDS = ("adam", "sgd", "sgd_nesterov")


def make_optimizer(kind, learning_rate, clip_value=None, momentum=0.9):
    """`adam`, plain `sgd`, or `sgd_nesterov` (momentum 0.9); optional element-wise clipping."""
    if not learning_rate > 0:
        raise ConfigError(f"outer learning rate must be > 0, got {learning_rate}")
    clip = {"clipvalue": float(clip_value)} if clip_value else {}
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate, **clip)
    if kind == "sgd":
        return keras.optimizers.SGD(learning_rate, **clip)
    if kind == "sgd_nesterov":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True, **clip)
    raise ConfigError(f"unknown optimizer {kind!r}; choose one of {KINDS}")
