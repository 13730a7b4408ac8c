"""Decoding encoded images into uint8 arrays, in parallel, with errors that name the file."""

import re

import numpy as np
import tensorflow as tf

from wtl_tf.data.class_images import ClassImages
from wtl_tf.errors import DataError
from wtl_tf.runtime import as_written


# TensorFlow's PNG decoder refuses width x height >= 2**29 ("PNG size too large for int").
PIXEL_LIMIT = 2**29 - 1
TOO_LARGE = re.compile(r"size too large\D*(\d+) by (\d+)")


def _decode_one(data, image_size, channels):
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size],
                            method="area", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def decode_images(encoded, image_size, channels=1, origins=None):
    """uint8 [n, size, size, channels] from encoded images (area resize, anti-aliased)."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(encoded, dtype=tf.string))
    ds = ds.map(as_written(lambda d: _decode_one(d, image_size, channels)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(512)
    try:
        return np.concatenate([batch.numpy() for batch in ds])
    except tf.errors.InvalidArgumentError:
        for i, blob in enumerate(encoded):  # find the culprit for the message
            try:
                _decode_one(blob, image_size, channels)
            except tf.errors.InvalidArgumentError as e:
                where = origins[i] if origins else f"image #{i}"
                too_large = TOO_LARGE.search(e.message)
                if too_large:
                    raise DataError(
                        f"{where} is too large to decode: {too_large.group(1)}x"
                        f"{too_large.group(2)} pixels, over TensorFlow's limit of "
                        f"{PIXEL_LIMIT:,} pixels per image; resize it first (every image is "
                        f"resized to {image_size}x{image_size} here)") from None
                raise DataError(f"{where} is not a decodable image (corrupt or truncated); "
                                "replace or delete it, or download the dataset again") from None
        raise


def decode_groups(groups, image_size, channels=1, origins=None):
    """ClassImages from {class: [encoded bytes]}; `origins` {class: [file names]} for errors."""
    names = sorted(groups)
    flat_origins = [o for n in names for o in origins[n]] if origins else None
    decoded = decode_images([blob for name in names for blob in groups[name]], image_size,
                            channels, flat_origins)
    bounds = np.cumsum([0] + [len(groups[name]) for name in names])
    return ClassImages.from_groups(
        {name: decoded[bounds[i]:bounds[i + 1]] for i, name in enumerate(names)})
