"""Non-differentiable forward functions with straight-through (identity) backward passes.

sparse-MAML's binary gradient mask is M = H(m) = (sign(m) + 1) / 2. The forward pass is a
hard 0/1 mask; the backward pass treats `sign` as the identity, so dM/dm = 1/2 (the factor
of the affine map around `sign` remains). sign(0) is defined as +1, so an entry exactly at
zero is *open* (M = 1): the reference describes the step as stopping gradient descent when
m is smaller than 0, and this keeps the forward output exactly binary.
"""

import tensorflow as tf


def straight_through_sign(x):
    """sign(x) with sign(0) = +1 forward; identity backward."""
    # Reading a variable first keeps custom_gradient from treating it as a captured variable.
    return _straight_through_sign(tf.convert_to_tensor(x))


@tf.custom_gradient
def _straight_through_sign(x):
    one = tf.ones_like(x)
    forward = tf.where(x >= 0, one, -one)

    def grad(upstream):
        return upstream

    return forward, grad


def binary_step(x):
    """H(x) = (sign(x) + 1) / 2: exactly 0 or 1 forward, dH/dx = 1/2 backward."""
    return 0.5 * (straight_through_sign(x) + 1.0)


def straight_through_relu(x):
    """max(x, 0) forward; identity backward, so a rate pushed below zero can come back."""
    return _straight_through_relu(tf.convert_to_tensor(x))


@tf.custom_gradient
def _straight_through_relu(x):

    def grad(upstream):
        return upstream

    return tf.nn.relu(x), grad
