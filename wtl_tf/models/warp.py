"""Warp layers (Flennerhag et al., WarpGrad, ICLR 2020) and the warped Conv4 of its Omniglot
experiments.

A warp layer sits between blocks of a task network. Its weights are meta-learned and never
adapt in the inner loop: they precondition the gradient of every task layer below them.
By default it is one linear 3x3 convolution that keeps the channel count, initialised to the
identity, so a freshly warped network computes exactly what the unwarped one does (and the
inner loop starts as plain SGD). `depth`, `activation`, `residual` and `batchnorm` give the
reference code's variants.
"""

import keras
import numpy as np

from wtl_tf.models.layers import BatchNorm, Conv2D


@keras.saving.register_keras_serializable(package="wtl_tf")
class IdentityConvInitializer(keras.initializers.Initializer):
    """A [k, k, c, c] kernel that maps every channel to itself (the centre tap is the
    identity matrix), so the convolution computes its input unchanged."""

    def __call__(self, shape, dtype=None):
        kh, kw, cin, cout = shape
        if cin != cout:
            raise ValueError(f"an identity warp kernel needs as many outputs as inputs, got "
                             f"{cin} -> {cout}")
        kernel = np.zeros(shape, dtype="float64")
        kernel[kh // 2, kw // 2] = np.eye(cin)
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")


@keras.saving.register_keras_serializable(package="wtl_tf")
class WarpLayer(keras.layers.Layer):
    """`depth` x [conv k x k (channels kept) -> BatchNorm? -> activation?], plus the input
    when `residual`. Identity-initialised unless `kernel_initializer` says otherwise
    ("random": PyTorch's default convolution init, as the official code; or any Keras
    initializer); the
    activation and BatchNorm are applied between convolutions (not after the last), so the
    default layer is linear."""

    is_warp = True  # wtl_tf.selection keeps warp weights out of the inner loop

    def __init__(self, depth=1, kernel_size=3, activation=None, residual=False,
                 batchnorm=False, kernel_initializer="identity", **kwargs):
        super().__init__(**kwargs)
        if int(depth) < 1:
            raise ValueError(f"a warp layer needs depth >= 1, got {depth}")
        self.depth, self.kernel_size = int(depth), int(kernel_size)
        self.activation = keras.activations.get(activation)
        self.activation_name = activation
        self.residual, self.batchnorm = bool(residual), bool(batchnorm)
        self.kernel_initializer = kernel_initializer

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if self.kernel_initializer == "identity":
            init = IdentityConvInitializer()
        elif self.kernel_initializer == "random":
            # PyTorch's Conv2d default (kaiming-uniform, a = sqrt(5): U(+-1/sqrt(fan_in))),
            # which the official WarpGrad code leaves its warp layers with.
            init = keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")
        else:
            init = keras.initializers.get(self.kernel_initializer)
        self.convs = [Conv2D(channels, self.kernel_size, padding="same",
                                          kernel_initializer=init, dtype=self.dtype_policy,
                                          name=f"conv{i + 1}") for i in range(self.depth)]
        self.norms = [BatchNorm(dtype=self.dtype_policy, name=f"norm{i + 1}")
                      for i in range(self.depth - 1)] if self.batchnorm else []
        shape = tuple(input_shape)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            if i < self.depth - 1 and self.norms:
                self.norms[i].build(shape)

    def call(self, x, training=False):
        y = x
        for i, conv in enumerate(self.convs):
            y = conv(y)
            if i < self.depth - 1:
                if self.norms:
                    y = self.norms[i](y, training=training)
                if self.activation is not None:
                    y = self.activation(y)
        return x + y if self.residual else y

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "kernel_size": self.kernel_size,
                "activation": self.activation_name, "residual": self.residual,
                "batchnorm": self.batchnorm, "kernel_initializer": self.kernel_initializer}


@keras.saving.register_keras_serializable(package="wtl_tf")
class DenseWarp(keras.layers.Layer):
    """A warp layer between fully connected layers: h -> h W, W (n x n) initialised to the
    identity (WarpGrad's sequential sine)."""

    is_warp = True

    def build(self, input_shape):
        width = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(width, width), initializer="identity",
                                      name="kernel")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel)


def warped_conv4(input_shape, ways, channels=64, blocks=4, warp=True, warp_options=None,
                 dtype=None, name="warped_conv4"):
    """The WarpGrad Omniglot network: `blocks` x [conv 3x3 -> max-pool 2 -> BatchNorm -> ReLU
    -> warp layer], flatten, linear head. `warp=False` builds the same task network without
    warp layers (the Leap baseline); `warp_options` are WarpLayer arguments (depth,
    activation, residual, batchnorm)."""
    inputs = keras.Input(tuple(input_shape), dtype=dtype)
    x = inputs
    for i in range(blocks):
        x = Conv2D(channels, 3, padding="same", dtype=dtype, name=f"conv{i + 1}")(x)
        x = keras.layers.MaxPool2D(2, dtype=dtype, name=f"pool{i + 1}")(x)
        x = BatchNorm(dtype=dtype, name=f"norm{i + 1}")(x)
        x = keras.layers.ReLU(dtype=dtype, name=f"relu{i + 1}")(x)
        if warp:
            x = WarpLayer(**(warp_options or {}), dtype=dtype, name=f"warp{i + 1}")(x)
    x = keras.layers.Flatten(dtype=dtype)(x)
    outputs = keras.layers.Dense(ways, dtype=dtype, name="head")(x)
    return keras.Model(inputs, outputs, name=name)
