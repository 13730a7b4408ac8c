"""Data-parallel meta-batches with tf.distribute.

The tasks of a meta-batch are split over the replicas; each replica sums the outer
gradients of its tasks and the optimisers all-reduce (sum) them, so one distributed
meta-step equals the single-device meta-step on the same tasks. Each replica reads its own
slice of the deterministic episode stream (wtl_tf.episodes.episode_indices), so nothing
about which tasks are seen depends on the number of replicas.

    none          one device (default)
    mirrored      MirroredStrategy over this host's GPUs, or `cpu_replicas` logical CPUs
    multi_worker  MultiWorkerMirroredStrategy over the hosts named in TF_CONFIG
Only the chief writes checkpoints, TensorBoard logs, results and exports.
"""

import json
import os

import tensorflow as tf

from wtl_tf import settings
from wtl_tf.errors import ConfigError

KINDS = ("none", "mirrored", "multi_worker")
settings.declare(
    settings.Setting("distribution", "enum", "none", "split meta-batches over devices "
                     "(mirrored) or hosts in TF_CONFIG (multi_worker)", choices=KINDS,
                     group="runtime",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
    settings.Setting("cpu_replicas", "integer", None, "split the CPU into this many logical "
                     "devices (with --distribution=mirrored on a CPU-only host; for testing)",
                     group="runtime", reads=lambda c: c.distribution == "mirrored",
                     scope="--distribution=mirrored", low=1),
)


def split_cpu(replicas):
    """Makes `replicas` logical CPU devices (before TensorFlow starts its runtime)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
    except RuntimeError as e:
        raise ConfigError(f"cannot split the CPU into {replicas} devices once TensorFlow has "
                          f"started ({e}); set it before any other TensorFlow call") from None


def make_strategy(kind="none", cpu_replicas=None):
    if kind not in KINDS:
        raise ConfigError(f"unknown --distribution {kind!r}; choose one of {KINDS}")
    if cpu_replicas and cpu_replicas > 1:
        split_cpu(cpu_replicas)
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if "TF_CONFIG" not in os.environ:
        raise ConfigError("--distribution=multi_worker needs TF_CONFIG (cluster and this "
                          "task's type/index) in the environment of every worker")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief():
    """True for the chief (or worker 0 when the cluster has no chief) and single hosts."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and \
        "chief" not in config.get("cluster", {})


def distributed_episodes(strategy, tasks, split, meta_batch_size, start_batch=0,
                         num_batches=None):
    """The episode stream of `split`, one slice of every meta-batch per replica."""
    if strategy.num_replicas_in_sync == 1:
        return tasks.episodes(split, meta_batch_size, start_batch, num_batches)

    def per_pipeline(context):
        total = context.num_replicas_in_sync
        local = total // context.num_input_pipelines
        return tasks.episodes(split, meta_batch_size, start_batch, num_batches,
                              replicas=(context.input_pipeline_id * local, local, total))

    return strategy.distribute_datasets_from_function(per_pipeline)
