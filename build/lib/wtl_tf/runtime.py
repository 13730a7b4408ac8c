"""Process-level runtime settings that must be made before TensorFlow starts its runtime."""

import os

import tensorflow as tf
from absl import logging

from wtl_tf import settings
from wtl_tf.errors import ConfigError

POLICIES = ("auto", "tasks", "ops", "default")
settings.declare(settings.Setting(
    "cpu_threads", "enum", "auto", "CPU threading: tasks run side by side (tasks) or ops use all "
    "cores (ops)", choices=POLICIES, resumable=True, group="runtime"))


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def configure_cpu_threads(policy="auto", meta_batch_size=1):
    """Chooses how the CPU's cores are shared.

    `tasks`: one thread per op, one op stream per core, so the tasks of a meta-batch run
    side by side. On the 2-core machine this project targets this is ~15% faster per
    meta-step than letting each op use every core, because the per-task ops are small.
    `ops`: every op uses all cores and ops run one at a time (best for meta-batch 1).
    `auto`: `tasks` on a CPU-only host with meta-batch >= 2, else TensorFlow's defaults.
    Returns the policy applied.
    """
    if policy not in POLICIES:
        raise ConfigError(f"unknown CPU thread policy {policy!r}; choose one of {POLICIES}")
    if policy == "auto":
        has_gpu = bool(tf.config.list_physical_devices("GPU"))
        policy = "tasks" if not has_gpu and meta_batch_size >= 2 else "default"
    threads = {"tasks": (cpu_count(), 1), "ops": (1, cpu_count())}.get(policy)
    if threads is None:
        return policy
    try:
        tf.config.threading.set_inter_op_parallelism_threads(threads[0])
        tf.config.threading.set_intra_op_parallelism_threads(threads[1])
    except RuntimeError as e:  # the runtime already started: settings can no longer change
        logging.warning("CPU thread policy %r not applied: %s", policy, e)
        return "default"
    return policy


def as_written(fn):
    """`fn` traced as written, without AutoGraph's source rewriting (tf.data and tf.function
    apply it by default). The library's traced code loops with tf.while_loop / map_fn and
    branches on Python values only, so the rewriting changes nothing and cost ~3 s of
    tracing per process; tensor-valued Python control flow fails loudly at trace time."""
    return tf.autograph.experimental.do_not_convert(fn)
