"""Sinusoid regression (Finn et al., 2017) as a seeded tf.data episode pipeline.

A task is y = A sin(x - phase) with A ~ U[0.1, 5], phase ~ U[0, pi]; inputs x ~ U[-5, 5].
Episode `i` of a split is a pure function of (seed, split, i) (stateless RNG), so a run is
reproducible and a resumed run continues the same task stream from any position.
"""

import math

import tensorflow as tf

from wtl_tf.episodes import episode_indices
from wtl_tf.errors import ConfigError
from wtl_tf.runtime import as_written

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)
SPLITS = {"train": 0, "validation": 1, "test": 2}
INPUT_SHAPE = (1,)


def _split_key(seed, split):
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
    return tf.constant([seed, SPLITS[split]], tf.int64)


def sinusoid_episode(index, key, shots, queries):
    """Episode `index` of the stream `key`: support/query points and the task parameters."""
    seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(key, index), 3)
    params = tf.random.stateless_uniform([2], seeds[0])
    amplitude = AMPLITUDE[0] + (AMPLITUDE[1] - AMPLITUDE[0]) * params[0]
    phase = PHASE[0] + (PHASE[1] - PHASE[0]) * params[1]

    def points(n, seed):
        x = tf.random.stateless_uniform([n, 1], seed, minval=X_RANGE[0], maxval=X_RANGE[1])
        return x, amplitude * tf.sin(x - phase)

    support_x, support_y = points(shots, seeds[1])
    query_x, query_y = points(queries, seeds[2])
    return {"support_x": support_x, "support_y": support_y, "query_x": query_x,
            "query_y": query_y, "amplitude": amplitude, "phase": phase}


def sinusoid_episodes(shots, queries, meta_batch_size, seed=0, split="train", start_batch=0,
                      num_batches=None, replicas=None):
    """Meta-batches of sinusoid episodes: dict of tensors with leading dim `meta_batch_size`.

    `start_batch` skips that many meta-batches (resume); `num_batches=None` is endless;
    `replicas` splits meta-batches over tf.distribute replicas (wtl_tf.episodes).
    """
    for name, value in (("shots", shots), ("queries", queries),
                        ("meta_batch_size", meta_batch_size)):
        if int(value) <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    key = _split_key(seed, split)
    indices, batch = episode_indices(meta_batch_size, start_batch, num_batches, replicas)
    return (indices
            .map(as_written(lambda i: sinusoid_episode(i, key, shots, queries)),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))
