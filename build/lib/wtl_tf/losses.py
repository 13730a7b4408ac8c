"""Task losses and metrics (mean over the examples of one task)."""

import tensorflow as tf

from wtl_tf.errors import ConfigError


def cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits))


def mean_squared_error(targets, predictions):
    return tf.reduce_mean(tf.square(predictions - tf.cast(targets, predictions.dtype)))


def accuracy(labels, logits):
    return tf.reduce_mean(tf.cast(
        tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.cast(labels, tf.int32)),
        logits.dtype))


LOSSES = {"cross_entropy": cross_entropy, "mse": mean_squared_error}


def get_loss(name):
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
