"""Datasets of a known number of elements, ending by their count.

Keras `fit` prefetches one element past its last step. When that request reaches a Python
generator (`tf.data.Dataset.from_generator`), the generator's thread needs the GIL while
`fit` tears its iterator down holding it, and the teardown waits about ten seconds for the
thread: a fixed cost at the end of every stream run (benchmarks/stream_runs.py times whole
runs). `take(count)` answers the request past the end itself, so the generator is never
asked (tests/test_generated_datasets.py).
"""

import tensorflow as tf


def counted(dataset, count):
    """`dataset`'s first `count` elements, with that cardinality (for fit's progress)."""
    count = max(int(count), 0)
    return dataset.take(count).apply(tf.data.experimental.assert_cardinality(count))


def generated(generator, output_signature, count):
    """The `count` elements of `generator()` as a dataset."""
    return counted(tf.data.Dataset.from_generator(generator, output_signature=output_signature),
                   count)
