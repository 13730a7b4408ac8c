"""TensorBoard summaries written with core TensorFlow only.

`tf.summary.scalar/histogram/image/text` live in the `tensorboard` package, which is not a
dependency of this project (it is only needed to *view* the logs). These functions write
the same records the TensorBoard plugins read, through the core `tf.summary.write`.
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin, data_class):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
        data_class=data_class)


def scalar(tag, value, step):
    return tf.summary.write(tag, tf.cast(value, tf.float32), step,
                            metadata=_metadata("scalars", summary_pb2.DATA_CLASS_SCALAR))


def histogram(tag, values, step, buckets=30):
    """Buckets as TensorBoard's histogram plugin stores them: [k, 3] (left, right, count)."""
    values = np.asarray(values, np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if high == low:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=buckets, range=(low, high))
    table = np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)
    return tf.summary.write(tag, tf.constant(table), step,
                            metadata=_metadata("histograms", summary_pb2.DATA_CLASS_TENSOR))


def image(tag, pixels, step):
    """`pixels`: float [n, h, w, c] in [0, 1] (or uint8)."""
    pixels = tf.image.convert_image_dtype(tf.convert_to_tensor(pixels), tf.uint8, saturate=True)
    encoded = tf.map_fn(tf.image.encode_png, pixels, fn_output_signature=tf.string)
    dims = tf.stack([tf.as_string(tf.shape(pixels)[2]), tf.as_string(tf.shape(pixels)[1])])
    return tf.summary.write(tag, tf.concat([dims, encoded], 0), step,
                            metadata=_metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE))


def text(tag, markdown, step):
    return tf.summary.write(tag, tf.constant(markdown), step,
                            metadata=_metadata("text", summary_pb2.DATA_CLASS_TENSOR))


def read_events(log_dir):
    """{run: {tag: [(step, value)]}} from the event files under `log_dir` (for tests/tools).

    Scalars come back as floats, other summaries as numpy arrays."""
    import glob
    import os

    runs = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        run = os.path.relpath(os.path.dirname(path), log_dir)
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                entry = float(array) if array.ndim == 0 and array.dtype.kind == "f" else array
                runs.setdefault(run, {}).setdefault(value.tag, []).append((event.step, entry))
    return runs
