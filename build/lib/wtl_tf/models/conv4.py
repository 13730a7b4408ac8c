"""The 4-block ConvNet of MAML / sparse-MAML (docs/algorithms.md).

4 x [conv 3x3, `channels` filters, padding 1, bias -> BatchNorm (batch statistics) -> ReLU
-> max-pool 2], flatten, linear head. Input size and channels come from the data.
`warp=True` adds a warp layer (wtl_tf.models.WarpLayer) after every block: Warp-MAML.
"""

import keras

from wtl_tf.models.layers import BatchNorm, Conv2D
from wtl_tf.models.warp import WarpLayer


def conv4(input_shape, ways, channels=64, blocks=4, warp=False, warp_options=None, dtype=None,
          name="conv4"):
    inputs = keras.Input(tuple(input_shape), dtype=dtype)
    x = inputs
    for i in range(blocks):
        x = Conv2D(channels, 3, padding="same", dtype=dtype, name=f"conv{i + 1}")(x)
        x = BatchNorm(dtype=dtype, name=f"norm{i + 1}")(x)
        x = keras.layers.ReLU(dtype=dtype, name=f"relu{i + 1}")(x)
        x = keras.layers.MaxPool2D(2, dtype=dtype, name=f"pool{i + 1}")(x)
        if warp:
            x = WarpLayer(**(warp_options or {}), dtype=dtype, name=f"warp{i + 1}")(x)
    x = keras.layers.Flatten(dtype=dtype)(x)
    outputs = keras.layers.Dense(ways, dtype=dtype, name="head")(x)
    return keras.Model(inputs, outputs, name=name)
