"""La-MAML's `pc_cnn` for its CIFAR / TinyImageNet experiments (docs/continual.md):
3x3 convolutions of stride 2 with 160 channels and ReLU, no BatchNorm or pooling, then a
two-layer ReLU MLP and the (task-masked) head. CIFAR-100 (32 -> 16 -> 8 -> 4) and 28 x 28
Omniglot (28 -> 14 -> 7 -> 4): three convolutions, 4 x 4 x 160 = 2560 features, MLP 320-320;
TinyImageNet (64 -> ... -> 4): four convolutions, the same 2560 features, MLP 640-640."""

import keras

from wtl_tf.models.layers import Conv2D


def pc_cnn(input_shape, classes, channels=160, hidden=320, convolutions=3, name="pc_cnn",
           kernel_initializer="glorot_uniform"):
    inputs = keras.Input(tuple(input_shape))
    x = inputs
    for i in range(convolutions):
        x = Conv2D(channels, 3, strides=2, padding="same", activation="relu",
                   name=f"conv{i + 1}", kernel_initializer=kernel_initializer)(x)
    x = keras.layers.Flatten()(x)
    for i in range(2):
        x = keras.layers.Dense(hidden, activation="relu", name=f"dense{i + 1}",
                               kernel_initializer=kernel_initializer)(x)
    outputs = keras.layers.Dense(classes, name="head",
                                 kernel_initializer=kernel_initializer)(x)
    return keras.Model(inputs, outputs, name=name)
