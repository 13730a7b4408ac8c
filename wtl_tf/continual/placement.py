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
    `initial_logits` are the masked weights'."""

    def __init__(self, trace, paths, initial_logits, seed):
        self.targets = {int(entry["task"]): entry["per_layer"] for entry in trace}
        missing = sorted(set(paths) - set(next(iter(self.targets.values()), {})))
        if missing:
            raise ConfigError(f"the mask sparsity schedule has no layers {missing}: it must "
                              "come from a run of the same network")
        self.paths = list(paths)
        initial = [np.asarray(binary_step(m)) == 0 for m in initial_logits]
        self.initial = {path: float(np.mean(shut)) for path, shut in zip(paths, initial)}
        self.priority = [np.random.default_rng([seed, 23, i]).random(shut.shape)
                         for i, shut in enumerate(initial)]
        self.placed_task = None

    def enter(self, task, logits):
        """Sets the mask logits (tf.Variables, in `paths` order) for `task`; idempotent."""
        if task == self.placed_task:
            return
        self.placed_task = task
        leaving = self.targets.get(int(task) + 1)
        if leaving is None:
            return
        entering = self.targets.get(int(task), self.initial)
        for path, variable, priority in zip(self.paths, logits, self.priority):
            variable.assign(self.placed(variable.numpy(), priority,
                                        (entering[path] + leaving[path]) / 2))

    @staticmethod
    def placed(logits, priority, shut_fraction):
        """`logits` with the lowest-priority open entries shut, or the highest-priority shut
        ones opened, until round(shut_fraction * size) entries are shut."""
        flat_open = (np.asarray(binary_step(logits)) != 0).reshape(-1)
        flat_priority = priority.reshape(-1)
        out = logits.copy().reshape(-1)
        excess = int(round(shut_fraction * out.size)) - int(np.sum(~flat_open))
        if excess > 0:  # shut `excess` open entries, lowest priority first
            candidates = np.flatnonzero(flat_open)
            chosen = candidates[np.argsort(flat_priority[candidates])[:excess]]
            out[chosen] = -np.maximum(np.abs(out[chosen]), FLIPPED_LOGIT)
        elif excess < 0:  # open -excess shut entries, highest priority first
            candidates = np.flatnonzero(~flat_open)
            chosen = candidates[np.argsort(-flat_priority[candidates])[:-excess]]
            out[chosen] = np.maximum(np.abs(out[chosen]), FLIPPED_LOGIT)
        return out.reshape(logits.shape)
