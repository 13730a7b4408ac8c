"""Fully connected task network (sinusoid regression: 1-40-40-1, ReLU)."""

import keras

from wtl_tf.models.warp import DenseWarp


def mlp(input_dim=1, hidden=(40, 40), output_dim=1, dtype=None, name="mlp",
        kernel_initializer="glorot_uniform", warp=False):
    """`warp`: a linear warp layer (DenseWarp, identity-initialised) after every hidden layer."""
    inputs = keras.Input((input_dim,), dtype=dtype)
    x = inputs
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, activation="relu", dtype=dtype, name=f"dense{i + 1}",
                               kernel_initializer=kernel_initializer)(x)
        if warp:
            x = DenseWarp(dtype=dtype, name=f"warp{i + 1}")(x)
    outputs = keras.layers.Dense(output_dim, dtype=dtype, name="head",
                                 kernel_initializer=kernel_initializer)(x)
    return keras.Model(inputs, outputs, name=name)
