"""ResNet-12 as used by BOIL and the sparse-MAML reference (64-128-256-512 channels).

Four residual blocks, each 3 x [conv 3x3 (no bias) -> BatchNorm -> LeakyReLU] with the last
activation after the residual sum, a 1x1 conv + BatchNorm shortcut, and max-pooling: 2x2
stride 2 after blocks 1 and 2, the same with one pixel of (-inf) padding after block 3 (so
21 -> 11 at 84x84 input), none after block 4. Then global average pooling and a linear head.
LeakyReLU uses PyTorch's default slope 0.01, as the reference's `nn.LeakyReLU()` does;
BatchNorm normalises with batch statistics (wtl_tf.models.BatchNorm). Convs and the head use
Glorot-uniform initialisation (the reference's xavier_uniform_).
"""

import keras
import tensorflow as tf

from wtl_tf.models.layers import BatchNorm


@keras.saving.register_keras_serializable(package="wtl_tf")
class PaddedMaxPool(keras.layers.Layer):
    """2x2/2 max-pooling after `padding` pixels of -inf on every side (PyTorch's padding)."""

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        lowest = tf.constant(x.dtype.min, x.dtype)
        x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=lowest)
        return tf.nn.max_pool2d(x, 2, 2, "VALID")

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _residual_block(x, channels, pool_padding, slope, name, dtype):
    shortcut = keras.layers.Conv2D(channels, 1, use_bias=False, dtype=dtype,
                                   name=f"{name}_shortcut_conv")(x)
    shortcut = BatchNorm(dtype=dtype, name=f"{name}_shortcut_norm")(shortcut)
    for i in range(1, 4):
        x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, dtype=dtype,
                                name=f"{name}_conv{i}")(x)
        x = BatchNorm(dtype=dtype, name=f"{name}_norm{i}")(x)
        if i < 3:
            x = keras.layers.LeakyReLU(slope, dtype=dtype, name=f"{name}_relu{i}")(x)
    x = keras.layers.Add(dtype=dtype, name=f"{name}_add")([x, shortcut])
    x = keras.layers.LeakyReLU(slope, dtype=dtype, name=f"{name}_relu3")(x)
    if pool_padding is None:
        return x
    if pool_padding == 0:
        return keras.layers.MaxPool2D(2, dtype=dtype, name=f"{name}_pool")(x)
    return PaddedMaxPool(pool_padding, dtype=dtype, name=f"{name}_pool")(x)


def resnet12(input_shape, ways, channels=(64, 128, 256, 512), slope=0.01, dtype=None,
             name="resnet12"):
    inputs = keras.Input(tuple(input_shape), dtype=dtype)
    x = inputs
    for i, (width, pool_padding) in enumerate(zip(channels, (0, 0, 1, None))):
        x = _residual_block(x, width, pool_padding, slope, f"block{i + 1}", dtype)
    x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="avgpool")(x)
    outputs = keras.layers.Dense(ways, dtype=dtype, name="head")(x)
    return keras.Model(inputs, outputs, name=name)
