"""Task networks: plain Keras models (functional API)."""

from wtl_tf.models.conv4 import conv4
from wtl_tf.models.layers import BatchNorm
from wtl_tf.models.mlp import mlp

__all__ = ["BatchNorm", "conv4", "mlp"]
