"""The training augmentation and normalisation of La-MAML's CIFAR-100 and TinyImageNet streams
(docs/continual.md; the reference's `train_transforms` and `common_transforms`).

Training images: torchvision's RandomCrop(size, padding=4) (zero padding, then a crop of the
original size at a uniformly drawn offset), RandomHorizontalFlip (p = 0.5) and, for CIFAR
only, ColorJitter(brightness=63/255) (every pixel times one factor per image, uniform in
[1 - b, 1 + b], clipped to [0, 1]). Every image, training or test, is then scaled to [0, 1]
and normalised per channel. The random parameters are drawn statelessly from a seed, so a
batch's augmentation is a pure function of its position in the stream and a resumed run
sees the same images.
"""

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class PhotoProtocol:
    mean: tuple
    std: tuple
    padding: int = 4
    brightness: float = 0.0  # ColorJitter's b; 0: no brightness jitter


CIFAR100 = PhotoProtocol(mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761),
                         brightness=63 / 255)
# The reference comments ColorJitter out for TinyImageNet and uses ImageNet's statistics.
TINY_IMAGENET = PhotoProtocol(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def crop(images, offsets, padding):
    """Each image of [n, H, W, C] zero-padded by `padding` on every side, then cut back to
    H x W with its top-left corner at `offsets[i]` = (row, column) of the padded image."""
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    offsets = tf.cast(offsets, tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None, :]
    columns = offsets[:, 1:] + tf.range(width)[None, :]
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), columns, axis=2,
                     batch_dims=1)


def normalize(images, protocol):
    """uint8 or [0, 1] float images -> (x - mean) / std per channel, float32."""
    x = tf.convert_to_tensor(images)
    x = tf.cast(x, tf.float32) / 255.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
    return (x - tf.constant(protocol.mean, tf.float32)) / tf.constant(protocol.std, tf.float32)


def augment(images, seed, protocol):
    """uint8 images [n, H, W, C] -> augmented float32 images in [0, 1] (not yet normalised),
    drawn from `seed` (a stateless seed, shape [2])."""
    x = tf.cast(images, tf.float32) / 255.0
    n = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    span = 2 * protocol.padding + 1
    offsets = tf.random.stateless_uniform([n, 2], seeds[0], 0, span, dtype=tf.int32)
    x = crop(x, offsets, protocol.padding)
    flip = tf.random.stateless_uniform([n], seeds[1]) < 0.5
    x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
    if protocol.brightness:
        b = protocol.brightness
        factor = tf.random.stateless_uniform([n], seeds[2], max(0.0, 1.0 - b), 1.0 + b)
        x = tf.clip_by_value(x * factor[:, None, None, None], 0.0, 1.0)
    return x


def training_transform(protocol):
    """(uint8 batch, seed) -> the augmented, normalised float32 batch."""
    def transform(images, seed):
        return normalize(augment(images, seed, protocol), protocol)
    return transform


def normalized_array(images, protocol, batch_size=2000):
    """A uint8 array normalised to float32 numpy, in slices (test sets)."""
    out = np.empty(images.shape, np.float32)
    for i in range(0, len(images), batch_size):
        out[i:i + batch_size] = normalize(images[i:i + batch_size], protocol).numpy()
    return out
