"""Task networks: plain Keras models (functional API)."""

from wtl_tf.models.conv4 import conv4
from wtl_tf.models.layers import BatchNorm
from wtl_tf.models.mlp import mlp
from wtl_tf.models.resnet12 import PaddedMaxPool, resnet12

__all__ = ["BatchNorm", "PaddedMaxPool", "conv4", "mlp", "resnet12"]
