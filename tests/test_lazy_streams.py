"""Streams are built lazily: a 100,000-task stream costs its per-task parameters, not its
images; tasks are rebuilt identically when they fall out of the bounded cache."""

import time
import tracemalloc

import numpy as np
import pytest

from wtl_tf.continual import streams


@pytest.mark.parametrize("build", [streams.rotated_omniglot, streams.permuted_omniglot])
def test_a_long_stream_holds_a_bounded_number_of_tasks(build, omniglot_small, monkeypatch):
    monkeypatch.setattr(streams, "CACHE_BYTES", 8 << 20)  # a few tasks of 1.25 MB
    tracemalloc.start()
    try:
        start = time.perf_counter()
        stream = build(omniglot_small, tasks=100_000, seed=1)
        first = stream.tasks[0]
        for t in range(1, 40):
            stream.tasks[t * 2_500]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 60
    assert len(stream.tasks) == 100_000 and len(stream.tasks._cache) == stream.tasks.keep < 10
    assert peak < 400 << 20, peak  # all 100,000 tasks' images would be 125 GB
    again = stream.tasks[0]  # long evicted: rebuilt, the same task
    assert again is not first
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert stream.tasks.train_size(99_999) == len(stream.tasks[99_999].train_y)
