"""Generator-backed datasets end by their count (wtl_tf.data.generated)."""

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.data.generated import generated


def test_fit_never_asks_the_generator_past_the_count():
    """Keras fit prefetches one element past its last step; the generator must not see that
    request (answered by `take`), or fit's teardown waits on the generator's thread."""
    asked = []

    def batches():
        while True:  # more than the count: only the count may be asked for
            asked.append(len(asked))
            yield np.ones((2, 3), np.float32), np.zeros((2, 1), np.float32)

    spec = (tf.TensorSpec([2, 3], tf.float32), tf.TensorSpec([2, 1], tf.float32))
    dataset = generated(batches, spec, 4)
    assert dataset.cardinality().numpy() == 4
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(dataset, epochs=1, verbose=0)
    assert len(asked) == 4
    assert len(list(generated(batches, spec, 0))) == 0


def test_the_generator_runs_on_the_thread_that_asks():
    """No tf.data thread of its own (prefetch, parallel map, autotuning) works on the
    generator, so a teardown never waits for one."""
    options = generated(lambda: iter([1]), tf.TensorSpec([], tf.int64), 1).options()
    assert options.experimental_optimization.inject_prefetch is False
    assert options.experimental_optimization.map_parallelization is False
    assert options.autotune.enabled is False
