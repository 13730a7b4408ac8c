"""Task networks: plain Keras models (functional API)."""

from wtl_tf.models.conv4 import conv4
from wtl_tf.models.factory import build_task_model
from wtl_tf.models.layers import BatchNorm, Conv2D
from wtl_tf.models.mlp import mlp
from wtl_tf.models.pc_cnn import pc_cnn
from wtl_tf.models.resnet12 import PaddedMaxPool, resnet12
from wtl_tf.models.warp import WarpLayer, warped_conv4

__all__ = ["BatchNorm", "Conv2D", "PaddedMaxPool", "WarpLayer", "build_task_model", "conv4", "mlp",
           "pc_cnn", "resnet12", "warped_conv4"]
