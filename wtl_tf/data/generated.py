"""Datasets of a known number of elements from Python generators, ending by their count.

Keras `fit` tears its iterator down when its last step is done. If a tf.data thread then holds
generator state (a request for one element past the end, or a prefetch of the next), the
teardown waits for it while holding the GIL that the thread needs, for seconds: at the end of
every stream run, up to ten seconds on one core (benchmarks/stream_runs.py times whole runs).
So these datasets end by `take(count)`, which answers a request past the end itself, and run
their generator on the consumer's thread (no injected prefetch, no parallelised maps, no
autotuning threads): the generator never works on a thread the teardown must wait for.
"""

import tensorflow as tf


def counted(dataset, count):
    """`dataset`'s first `count` elements, with that cardinality (fit's progress), produced
    on the thread that asks for them."""
    count = max(int(count), 0)
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    options.experimental_optimization.map_parallelization = False
    options.autotune.enabled = False
    return dataset.with_options(options).take(count).apply(
        tf.data.experimental.assert_cardinality(count))


def generated(generator, output_signature, count):
    """The `count` elements of `generator()` as a dataset."""
    return counted(tf.data.Dataset.from_generator(generator, output_signature=output_signature),
                   count)
