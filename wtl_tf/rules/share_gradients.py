"""Gradient sharing between the tasks of a meta-batch (our reconstruction)."""

import tensorflow as tf

from wtl_tf import settings
from wtl_tf.errors import ConfigError
from wtl_tf.rules.base import BoundRule, UpdateRule, register_link, variable_name
from wtl_tf.sparsity import layer_of


_READS = dict(group="gradient sharing", reads=settings.uses_link("share_gradients"),
              scope="link share_gradients")
SHARE_DECAY = settings.declare(settings.Setting(
    "share_decay", "float", 0.9, "gradient sharing: decay of the moving average of past "
    "batch-mean inner gradients", **_READS, low=0, high=1))
SHARE_PER_LAYER = settings.declare(settings.Setting(
    "share_per_layer", "bool", False, "gradient sharing: coefficients per inner step and layer "
    "(default: per inner step)", **_READS))
SHARE_CONCURRENT_AT_EVAL = settings.declare(settings.Setting(
    "share_concurrent_at_eval", "bool", False, "gradient sharing: adapt meta-test batches in "
    "lock-step, each task sharing the others' gradients (default: each task alone, as one new "
    "task would be)", **_READS))
SHARE_PAST_AT_EVAL = settings.declare(settings.Setting(
    "share_past_at_eval", "bool", True, "gradient sharing: keep the (frozen) moving-average "
    "term when adapting at meta-test", **_READS))


class ShareGradients(UpdateRule):
    """Gradient sharing between tasks (Chang & Lipson, 2023; our reconstruction):

        g_i <- g_i + lambda_c[k] * mean_{j != i} g_j + lambda_p[k] * h[k]

    for task i at inner step k. The concurrent term needs the other tasks' gradients of the
    same step, so a learner whose chain holds this link runs the tasks of a meta-batch in
    lock-step (`couples_tasks = True`); a single task (meta-test) has no concurrent term. h[k] is
    an exponential moving average (decay `decay`, not trained) of the batch-mean raw inner
    gradient at step k over earlier meta-iterations, updated by `observe` after each
    meta-update and frozen at evaluation (`past_at_eval=False` drops it there instead).
    lambda_c and lambda_p are meta-learned, one per inner step (`per_layer`: one per step
    and adapted layer), initialised to 0 so training starts as plain MAML. Steps beyond
    `steps` (longer evaluation loops) reuse the last step's coefficients and average.
    """

    couples_tasks = True

    def __init__(self, steps, decay=0.9, per_layer=False, past_at_eval=True,
                 concurrent_at_eval=False, **kwargs):
        super().__init__(**kwargs)
        self._concurrent_at_eval = bool(concurrent_at_eval)
        if int(steps) < 1:
            raise ConfigError("gradient sharing needs at least one inner step")
        self.steps, self.decay = int(steps), float(decay)
        self.per_layer, self.past_at_eval = bool(per_layer), bool(past_at_eval)
        if not 0.0 <= self.decay < 1.0:
            raise ConfigError(f"the moving-average decay must be in [0, 1), got {decay}")

    def setup(self, params):
        layers = sorted({layer_of(p.path) for p in params}) if self.per_layer else ["all"]
        self.group = [layers.index(layer_of(p.path)) if self.per_layer else 0 for p in params]
        dtype = params[0].dtype
        self.concurrent = self.add_weight(shape=(self.steps, len(layers)), initializer="zeros",
                                          dtype=dtype, name="concurrent_coefficients")
        self.past = self.add_weight(shape=(self.steps, len(layers)), initializer="zeros",
                                    dtype=dtype, name="past_coefficients")
        # aggregation="mean": under tf.distribute each replica observes its own tasks.
        self.average = [self.add_weight(shape=(self.steps, *p.shape), initializer="zeros",
                                        dtype=p.dtype, trainable=False, aggregation="mean",
                                        name=f"average.{variable_name(p.path)}")
                        for p in params]
        self.shapes = [tuple(p.shape) for p in params]
        super().setup(params)

    @property
    def concurrent_at_eval(self):
        return self._concurrent_at_eval

    def _step(self, step):
        return tf.minimum(step, self.steps - 1) if tf.is_tensor(step) else min(step, self.steps - 1)

    def begin_task(self, params, seed=None, evaluation=False):
        return _AtEvaluation(self) if evaluation else self

    def transform(self, grads, params, step, evaluation=False):
        k = self._step(step)
        out = {}
        for path, group, average, shape in zip(self.param_paths, self.group, self.average,
                                               self.shapes):
            g = grads[path]
            shared = g
            if g.shape.rank == len(shape) + 1:  # [tasks, ...]: lock-step meta-batch
                tasks = tf.cast(tf.shape(g)[0], g.dtype)
                others = (tf.reduce_sum(g, 0, keepdims=True) - g) / tf.maximum(tasks - 1.0, 1.0)
                shared = shared + self.concurrent[k, group] * others
            if not (evaluation and not self.past_at_eval):
                shared = shared + self.past[k, group] * average[k]
            out[path] = shared
        return out

    def observe(self, step_means):
        """Moves each h[k] towards this meta-batch's mean raw inner gradient at step k
        (`step_means`: one {adapted path: mean gradient} per step)."""
        for path, average in zip(self.param_paths, self.average):
            means = [step[path] for step in step_means]
            if len(means) < self.steps:  # fewer steps observed: keep the rest
                means = list(means) + [average[k] for k in range(len(means), self.steps)]
            average.assign(self.decay * average + (1.0 - self.decay) * tf.stack(means))


class _AtEvaluation(BoundRule):
    """ShareGradients bound to a meta-test task (h frozen, or dropped if configured)."""

    def __init__(self, link):
        self.link = link

    def transform(self, grads, params, step):
        return self.link.transform(grads, params, step, evaluation=True)


register_link("share_gradients", lambda c, context: ShareGradients(
    max(1, c.inner_steps), c.share_decay, c.share_per_layer, c.share_past_at_eval,
    c.share_concurrent_at_eval), "g_i + lambda_c * mean_j g_j + lambda_p * h",
    couples_tasks=ShareGradients.couples_tasks)
