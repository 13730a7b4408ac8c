"""Random affine augmentation of WarpGrad's Omniglot protocol.

The official code draws, for every image, torchvision's RandomAffine(degrees=(0, 360),
translate=(0.2, 0.2), scale=(0.8, 1.2)): a rotation angle uniform in [0, 360), a shift of
up to 20% of the width and height (whole pixels), a scale uniform in [0.8, 1.2], no shear,
nearest-neighbour sampling and the outside filled with 0 (black, on Omniglot's white
background). Here the parameters are drawn statelessly from a seed, so an episode's
augmentation is a pure function of its index, like everything else in an episode stream.
"""

import math

import tensorflow as tf

DEGREES, TRANSLATE, SCALE = (0.0, 360.0), 0.2, (0.8, 1.2)


def affine(images, degrees, shift_x, shift_y, scale):
    """Each image [n, H, W, C] turned counter-clockwise by `degrees[i]` about its centre,
    scaled by `scale[i]` and shifted by (`shift_x[i]` right, `shift_y[i]` down) pixels;
    nearest neighbour, zero fill. The dtype is kept."""
    dtype = images.dtype
    x = tf.cast(images, tf.float32)
    height, width = x.shape[1], x.shape[2]
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    angle = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    scale = tf.cast(scale, tf.float32)
    # Output pixel p samples the input at c + R(-angle) (p - c - t) / scale; y grows
    # downwards, so a counter-clockwise turn on screen is clockwise in (x, y).
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    dx = cx + tf.cast(shift_x, tf.float32)
    dy = cy + tf.cast(shift_y, tf.float32)
    transforms = tf.stack([cos, -sin, cx - cos * dx + sin * dy,
                           sin, cos, cy - sin * dx - cos * dy,
                           tf.zeros_like(cos), tf.zeros_like(cos)], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.constant([height, width], tf.int32),
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT")
    return tf.cast(tf.round(out), dtype) if dtype.is_integer else tf.cast(out, dtype)


def random_affine(images, seed):
    """The official RandomAffine on every image of [n, H, W, C], drawn from `seed`
    (a stateless seed, shape [2])."""
    n = tf.shape(images)[0]
    width, height = images.shape[2], images.shape[1]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    degrees = tf.random.stateless_uniform([n], seeds[0], DEGREES[0], DEGREES[1])
    max_dx, max_dy = TRANSLATE * width, TRANSLATE * height
    shift_x = tf.round(tf.random.stateless_uniform([n], seeds[1], -max_dx, max_dx))
    shift_y = tf.round(tf.random.stateless_uniform([n], seeds[2], -max_dy, max_dy))
    scale = tf.random.stateless_uniform([n], seeds[3], SCALE[0], SCALE[1])
    return affine(images, degrees, shift_x, shift_y, scale)
