"""Random placement at a learned run's sparsity: the control that separates *where* a learned
mask closes from *how much* of each layer it closes.

A learned run's record keeps its mask trace: at the end of each task, the fraction of each
layer's mask entries that are shut. The control starts from the same initial mask (the same
seed and initialiser) and, entering each task, shuts randomly chosen open entries, or opens
randomly chosen shut ones, until every layer's shut fraction is the learned run's midway
through that task (the mean of its fractions entering and leaving the task, so that both
spend the task at the same sparsity on average). Within a task its mask is frozen
(`--mask_lr=0`). Each entry has one random priority for the whole stream, so
the control changes as few entries as the counts need and the same entries go first.
"""

import json

import numpy as np
import tensorflow as tf

from wtl_tf.errors import ConfigError
from wtl_tf.step_functions import binary_step

# The magnitude given to a logit whose sign is flipped when it sits at zero, so that the
# straight-through step reads the new sign.
FLIPPED_LOGIT = 1e-3


def load_trace(path):
    """The mask trace of a learned run: from its run directory's results.json or a record of
    experiments/continual_records.py ({"task": t, "per_layer": {path: shut fraction}}, ...)."""
    try:
        with open(path) as f:
            document = json.load(f)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--mask_sparsity_schedule={path} cannot be read ({error}): give a "
                          "learned sparse run's results.json or record") from None
    for holder in (document, document.get("results", {}), document.get("continual", {}),
                   document.get("results", {}).get("continual", {})):
        if isinstance(holder, dict) and holder.get("mask_trace"):
            return holder["mask_trace"]
    raise ConfigError(f"--mask_sparsity_schedule={path} has no mask_trace: give the results of "
                      "a sparse_la_maml run with a learned mask (--mask_lr > 0)")


class RandomPlacement:
    """Entering task t, each layer's shut fraction becomes the mean of the learned run's
    entering t and leaving it (the trace's entries t and t + 1; entering the first task, that
    of `initial_logits`, the learned run's initial mask under the same seed). `paths` and
    `initial_logits` are the masked weights'. Graph-safe: a traced stream step places the mask
    itself; the task last placed is a variable (not checkpointed: placing is idempotent, so a
    resumed run places its task again and changes nothing)."""

    def __init__(self, trace, paths, initial_logits, seed):
        targets = {int(entry["task"]): entry["per_layer"] for entry in trace}
        missing = sorted(set(paths) - set(next(iter(targets.values()), {})))
        if missing:
            raise ConfigError(f"the mask sparsity schedule has no layers {missing}: it must "
                              "come from a run of the same network")
        self.paths = list(paths)
        initial = [np.asarray(binary_step(m)) == 0 for m in initial_logits]
        self.initial = {path: float(np.mean(shut)) for path, shut in zip(paths, initial)}
        self.priority = [tf.constant(np.random.default_rng([seed, 23, i]).random(shut.shape))
                         for i, shut in enumerate(initial)]
        # shut_counts[t, layer]: the entries shut entering task t; -1: the trace ends, leave it.
        tasks = max(targets, default=0)
        counts = np.full((max(tasks, 1), len(paths)), -1, np.int64)
        for task in range(tasks):
            if task + 1 in targets:
                entering = targets.get(task, self.initial)
                for i, (path, shut) in enumerate(zip(paths, initial)):
                    fraction = (entering[path] + targets[task + 1][path]) / 2
                    counts[task, i] = int(round(fraction * shut.size))
        self.shut_counts = tf.constant(counts)
        self.placed_task = tf.Variable(tf.constant(-1, tf.int64), trainable=False,
                                       name="placed_task")

    def enter(self, task, logits):
        """Sets the mask logits (tf.Variables, in `paths` order) for `task`; idempotent."""
        task = tf.cast(task, tf.int64)
        rows = self.shut_counts.shape[0]
        counts = tf.gather(self.shut_counts, tf.minimum(task, rows - 1))
        counts = tf.where(tf.logical_and(task < rows, tf.not_equal(task, self.placed_task)),
                          counts, tf.constant(-1, tf.int64))
        for i, (variable, priority) in enumerate(zip(logits, self.priority)):
            variable.assign(tf.cond(
                counts[i] >= 0, lambda v=variable, p=priority, c=counts[i]: self.placed(v, p, c),
                lambda v=variable: tf.identity(v)))
        self.placed_task.assign(task)

    @staticmethod
    def placed(logits, priority, shut_count):
        """`logits` with the lowest-priority open entries shut, or the highest-priority shut
        ones opened, until `shut_count` entries are shut (graph-safe)."""
        logits = tf.convert_to_tensor(logits)
        flat = tf.reshape(logits, [-1])
        flat_priority = tf.reshape(tf.convert_to_tensor(priority, tf.float64), [-1])
        is_open = tf.not_equal(binary_step(flat), 0)
        excess = tf.cast(shut_count, tf.int32) - tf.reduce_sum(
            tf.cast(tf.logical_not(is_open), tf.int32))
        inf = tf.constant(np.inf, tf.float64)
        # Shut `excess` open entries, lowest priority first; or open -excess shut ones, highest
        # priority first (priorities are distinct, so the order is unique).
        shut_first = tf.argsort(tf.where(is_open, flat_priority, inf))[:tf.maximum(excess, 0)]
        open_first = tf.argsort(tf.where(is_open, inf, -flat_priority))[:tf.maximum(-excess, 0)]
        magnitude = tf.maximum(tf.abs(flat), tf.constant(FLIPPED_LOGIT, flat.dtype))
        flat = tf.tensor_scatter_nd_update(flat, shut_first[:, None],
                                           -tf.gather(magnitude, shut_first))
        flat = tf.tensor_scatter_nd_update(flat, open_first[:, None],
                                           tf.gather(magnitude, open_first))
        return tf.reshape(flat, tf.shape(logits))
