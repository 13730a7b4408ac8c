"""InnerLoopOptions: how a learner adapts to one task, as one immutable object."""

import dataclasses
from typing import Callable

from wtl_tf.errors import ConfigError

# Longer inner loops run in a tf.while_loop by default. Unrolled, the first trace grows with
# every step (the 35-step sparse-MAML miniImageNet step: ~10 s against ~3 s looped; the 5-step
# second-order 20-way Omniglot step: ~4.8 s against ~3 s), for the same results and no slower
# steps on a 2-core CPU (docs/benchmarks.md); a loop of a few steps costs little to unroll.
UNROLL_INNER_STEPS = 4


def default_unroll(inner_steps, recompute_inner_steps=False):
    """How many inner steps are unrolled when the user does not say: up to
    UNROLL_INNER_STEPS, or every step when they are recomputed (which needs them unrolled)."""
    return max(UNROLL_INNER_STEPS, int(inner_steps)) if recompute_inner_steps \
        else UNROLL_INNER_STEPS


@dataclasses.dataclass(frozen=True)
class InnerLoopOptions:
    """How a learner adapts to one task (everything but the network and the update rule).

    loss: "cross_entropy" (integer labels, logits), "mse", or a classifier's own
      (labels, logits) -> mean loss (the La-MAML family's task-masked heads).
    adapt: which tensors adapt: "all", "head" (ANIL), "body" (BOIL) or "regex:<pattern>";
      adapt_batchnorm=False keeps normalisation layers out of the inner loop.
    inner_steps / inner_steps_eval: inner steps for meta-training / evaluation (None: the
      same as training).
    first_order: stop the inner gradient in the outer gradient (FOMAML-style).
    transductive: True normalises the query with its own batch statistics (reference);
      False runs the query forward with training=False, i.e. on support statistics.
    task_batch: each inner step uses a random batch of this many support examples (drawn
      without replacement, seeded per task and step; WarpGrad's task learner); None: the whole
      support set every step.
    recompute_inner_steps: second order only: the outer tape keeps each inner step's inputs
      (the fast weights), not its activations, and recomputes one step at a time in the outer
      backward pass: memory grows by one copy of the adapted weights per step instead of a
      step's activations, for about one more forward and backward pass per step; results are
      unchanged.
    unroll_inner_steps: inner loops up to this length are unrolled; longer ones run in a
      tf.while_loop (same results, tracing time flat in the loop's length). None:
      `default_unroll` (loops of up to UNROLL_INNER_STEPS unrolled; every step when they are
      recomputed, which needs them unrolled).
    loss_scale: the differentiated losses are multiplied by this and the gradients divided by
      it (a static loss scale: float16 task networks need one so that small gradients do not
      underflow; exact otherwise). In second order only the outer loss is scaled.
    seed: keys the per-task draws of stochastic update rules (sparse-MAML+) and of batches.
    support_transform: (images, stateless seed) -> images, applied to the support examples
      each inner step draws (WarpGrad's random affine, redrawn at every draw); None: as they
      are.
    """
    loss: object = "cross_entropy"
    adapt: str = "all"
    adapt_batchnorm: bool = True
    inner_steps: int = 1
    inner_steps_eval: int = None
    first_order: bool = False
    transductive: bool = True
    task_batch: int = None
    recompute_inner_steps: bool = False
    unroll_inner_steps: int = None
    loss_scale: float = 1.0
    seed: int = 0
    support_transform: Callable = None

    def __post_init__(self):
        if self.inner_steps < 0 or (self.inner_steps_eval is not None
                                    and self.inner_steps_eval < 0):
            raise ConfigError(f"inner steps must be >= 0, got {self.inner_steps}/"
                              f"{self.inner_steps_eval}")
        if self.task_batch is not None and int(self.task_batch) <= 0:
            raise ConfigError(f"task_batch must be a positive integer or None, got "
                              f"{self.task_batch}")
        if not self.loss_scale > 0:
            raise ConfigError(f"loss_scale must be > 0, got {self.loss_scale}")
        typed = dict(
            inner_steps=int(self.inner_steps),
            inner_steps_eval=None if self.inner_steps_eval is None else int(self.inner_steps_eval),
            first_order=bool(self.first_order), transductive=bool(self.transductive),
            task_batch=None if self.task_batch is None else int(self.task_batch),
            recompute_inner_steps=bool(self.recompute_inner_steps),
            unroll_inner_steps=default_unroll(self.inner_steps, self.recompute_inner_steps)
            if self.unroll_inner_steps is None else int(self.unroll_inner_steps),
            loss_scale=float(self.loss_scale),
            seed=int(self.seed))
        for name, value in typed.items():
            object.__setattr__(self, name, value)
