"""MetaLearner: MAML-family meta-training of any Keras model, as a keras.Model.

The task network runs functionally on fast weights through `Layer.stateless_call`; the
inner loop is a chain of update rules (wtl_tf.rules); second-order meta-gradients come
from nested `tf.GradientTape`s and first order from stopping the inner gradient.

`train_step` does one meta-update on a meta-batch of episodes, so `fit`, `evaluate`,
callbacks and progress bars work unchanged. The tasks of a meta-batch run in a
`tf.while_loop` inside the compiled step: it is traced once (an unrolled Python loop over
32 tasks takes ~50 s to trace), each task's outer gradient is computed inside the loop body
(so only one task's activations are alive per parallel iteration), and independent tasks
run concurrently on the CPU's inter-op threads.

An episode batch is a dict with `support_x`, `support_y`, `query_x`, `query_y`, each with a
leading meta-batch dimension and static shapes.
"""

import collections
import functools
import warnings

import keras
import tensorflow as tf

from wtl_tf import losses as losses_lib
from wtl_tf import settings
from wtl_tf.errors import ConfigError
from wtl_tf.rules import UpdateRule
from wtl_tf.selection import adapted_mask, leaf_layers, warp_mask

EPISODE_KEYS = ("support_x", "support_y", "query_x", "query_y")

_MAML = dict(reads=settings.maml_family, scope="MAML-family learners")
settings.declare(
    settings.Setting("inner_steps", "integer", None, "inner steps during meta-training "
                     f"({settings.UNSET_HELP})", group="inner loop"),
    settings.Setting("inner_steps_eval", "integer", None, "inner steps at evaluation "
                     f"({settings.UNSET_HELP})", group="inner loop"),
    settings.Setting("task_batch", "integer", None, "examples per inner step, drawn from the "
                     f"support set (unset: all; {settings.UNSET_HELP})", group="inner loop"),
    settings.Setting("recompute_inner_steps", "bool", False, "second order: recompute each "
                     "inner step in the outer backward pass instead of keeping its activations "
                     "(less memory for long inner loops, same results)", group="inner loop",
                     reads=lambda c: settings.maml_family(c) and c.order == "second",
                     scope="MAML-family learners, second order"),
    settings.Setting("unroll_inner_steps", "integer", None, "inner loops up to this length are "
                     "unrolled into the graph, longer ones run in a tf.while_loop: same results; "
                     "unrolled runs faster, a loop traces faster (default: max(40, "
                     "--inner_steps))", group="inner loop", resumable=True, **_MAML),
    settings.Setting("vectorize_tasks", "bool", None, "batch the tasks' meta-gradients with "
                     "tf.vectorized_map instead of looping over tasks: same gradients, faster "
                     "for small networks (default: on for sinusoid, off for convolutional "
                     "networks)", group="inner loop"),
    settings.Setting("transductive", "bool", True, "query BatchNorm uses query statistics "
                     "(reference); false: support statistics only", group="inner loop", **_MAML),
    settings.Setting("outer_reduction", "enum", "sum", "task losses summed (reference) or "
                     "averaged over the meta-batch", choices=("sum", "mean"), group="outer loop",
                     **_MAML),
    settings.Setting("loss_scale", "float", None, "static loss scale (default with float16: "
                     "1024 first order, 32 second order; else 1)", group="runtime"),
)

Adaptation = collections.namedtuple(
    "Adaptation", ["params", "initial_params", "state", "support_x", "support_losses"])

# The values of every variable a meta-step reads, as tensors: the task network's trainable
# weights (theta) and non-trainable state, and the update rule's weights (`rule`, in
# `update_rule.weights` order). Read once per meta-step, outside the loops over tasks and
# inner steps, so that those loops have pure bodies (StatelessWhile): no variable read inside
# a loop, hence no automatic control edges between its iterations.
Params = collections.namedtuple("Params", ["theta", "state", "rule"])


def _warn_about_inexact_second_order(task_model):
    inexact = [layer.name for layer in leaf_layers(task_model)
               if isinstance(layer, keras.layers.BatchNormalization)]
    if inexact:
        warnings.warn(
            f"layers {inexact} are keras.layers.BatchNormalization, whose training-mode variance "
            "(tf.nn.moments) stops the gradient through the batch mean: second-order "
            "meta-gradients through it are inexact. Use wtl_tf.models.BatchNorm, or first order.",
            UserWarning, stacklevel=3)


def _onednn_graph_rewrite_on():
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # pragma: no cover - a TensorFlow build without the query
        return True
    return bool(_pywrap_util_port.IsMklEnabled())


def _warn_about_bias_add_convolutions(task_model):
    """keras.layers.Conv2D adds its bias with a BiasAdd op; under oneDNN, second-order graphs
    through it can fail to build ("N nodes in a cycle"); see wtl_tf.models.layers.Conv2D."""
    from wtl_tf.models.layers import Conv2D

    risky = [layer.name for layer in leaf_layers(task_model)
             if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, Conv2D)
             and layer.use_bias]
    if risky and _onednn_graph_rewrite_on():
        warnings.warn(
            f"layers {risky} are keras.layers.Conv2D with a bias: with TensorFlow's oneDNN graph "
            "rewrite on (this CPU), second-order meta-steps through them can fail with 'N nodes "
            "in a cycle' in some processes. Use wtl_tf.models.Conv2D (same weights), first "
            "order, or set TF_ENABLE_ONEDNN_OPTS=0 before importing TensorFlow.",
            UserWarning, stacklevel=3)


def _step_logs(logs):
    """The logs a train/test step returns. Keras 3.15 reduces a multi-worker run's per-replica
    logs with strategy.reduce("MEAN", v, axis=0), which fails on scalars: give them a leading
    axis there (the reduction removes it again)."""
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


class _TraceCounter:
    """Counts Python executions of a traced function body (once per trace)."""

    def __init__(self):
        self.counts = {}

    def hit(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1


class MetaLearner(keras.Model):
    """Meta-learns the initialisation of `task_model` and the meta-parameters of `update_rule`.

    Args:
      task_model: a built Keras model mapping inputs to logits (or regression outputs).
      update_rule: a wtl_tf.rules.UpdateRule (usually a Chain) applied in the inner loop.
      loss: "cross_entropy" (integer labels, logits) or "mse".
      adapt: which tensors adapt: "all", "head" (ANIL), "body" (BOIL) or "regex:<pattern>".
      adapt_batchnorm: False keeps normalisation layers out of the inner loop.
      inner_steps / inner_steps_eval: inner steps for meta-training / evaluation.
      first_order: stop the inner gradient in the outer gradient (FOMAML-style).
      transductive: True normalises the query with its own batch statistics (reference);
        False runs the query forward with training=False, i.e. on support statistics.
      outer_reduction: "sum" (reference) or "mean" of the task losses in a meta-batch.
      parallel_tasks: tasks of a meta-batch allowed to run concurrently.
      task_batch: each inner step uses a random batch of this many support examples (drawn
        without replacement, seeded per task and step; WarpGrad's task learner); None: the
        whole support set every step.
      recompute_inner_steps: second order only: the outer tape keeps each inner step's inputs
        (the fast weights), not its activations, and recomputes one step at a time in the
        outer backward pass (tf.recompute_grad). Memory then grows with the number of steps by
        one copy of the adapted weights per step instead of a step's activations; about one
        more forward and backward pass per step. Results are unchanged.
      loss_scale: the differentiated losses are multiplied by this and the gradients divided
        by it (a static loss scale: float16 task networks need one, e.g. 1024, so small
        gradients do not underflow; exact otherwise). In second order only the outer loss is
        scaled, since its backward pass also runs through the inner gradients.
      seed: keys the per-task draws of stochastic update rules (sparse-MAML+) and of batches.
      vectorize_tasks: compute the tasks' meta-gradients with tf.vectorized_map (one batched
        op per op of the per-task computation) instead of a tf.while_loop over tasks. Same
        gradients; much faster for small networks whose ops are too small to keep a CPU busy
        (sinusoid MLP: 7.8 -> 3.3 ms per meta-gradient). Convolutions with per-task weights
        do not batch, so it is off by default.
      unroll_inner_steps: inner loops up to this length are unrolled; longer ones run in a
        tf.while_loop: same results and flat tracing time, but on a 2-core CPU the nested
        loops overlap tasks less well (35-step sparse-MAML meta-step: 6.9 s unrolled with a
        10.6 s trace, 10-14 s in a while_loop with a 2.6 s trace).
    """

    updates_meta_itself = False  # True: train_step updates the meta-parameters (Warp-Leap)

    def __init__(self, task_model, update_rule, *, loss="cross_entropy", adapt="all",
                 adapt_batchnorm=True, inner_steps=1, inner_steps_eval=None, first_order=False,
                 transductive=True, outer_reduction="sum", parallel_tasks=2, unroll_inner_steps=40,
                 task_batch=None, recompute_inner_steps=False, loss_scale=1.0, seed=0,
                 vectorize_tasks=False, name="meta_learner"):
        super().__init__(name=name)
        if not isinstance(update_rule, UpdateRule):
            raise ConfigError(f"update_rule must be a wtl_tf.rules.UpdateRule, got {update_rule!r}")
        if not task_model.built:
            raise ConfigError("build the task network (give it an Input shape) before wrapping it")
        if inner_steps < 0 or (inner_steps_eval is not None and inner_steps_eval < 0):
            raise ConfigError(f"inner steps must be >= 0, got {inner_steps}/{inner_steps_eval}")
        if outer_reduction not in ("sum", "mean"):
            raise ConfigError(f"outer_reduction must be 'sum' or 'mean', got {outer_reduction!r}")
        self.task_model = task_model
        self.update_rule = update_rule
        self.loss_name = loss
        self.loss_fn = losses_lib.get_loss(loss)
        self.is_classifier = loss == "cross_entropy"
        self.inner_steps = int(inner_steps)
        self.inner_steps_eval = int(inner_steps if inner_steps_eval is None else inner_steps_eval)
        self.first_order = bool(first_order)
        self.transductive = bool(transductive)
        self.outer_reduction = outer_reduction
        self.parallel_tasks = max(1, int(parallel_tasks))
        self.unroll_inner_steps = int(unroll_inner_steps)
        self.seed = int(seed)
        if task_batch is not None and int(task_batch) <= 0:
            raise ConfigError(f"task_batch must be a positive integer or None, got {task_batch}")
        self.task_batch = None if task_batch is None else int(task_batch)
        self.recompute_inner_steps = bool(recompute_inner_steps)
        self.vectorize_tasks = bool(vectorize_tasks)
        if not loss_scale > 0:
            raise ConfigError(f"loss_scale must be > 0, got {loss_scale}")
        self.loss_scale = float(loss_scale)
        if self.task_batch is not None and self.lockstep:
            raise ConfigError("gradient sharing adapts on the whole support set; task_batch "
                              "does not apply to it")
        self.adapt_mode, self.adapt_batchnorm = adapt, adapt_batchnorm

        if not self.first_order:
            _warn_about_inexact_second_order(task_model)
            _warn_about_bias_add_convolutions(task_model)
        self.adapted = adapted_mask(task_model, adapt, adapt_batchnorm)
        self._adapted_index = [i for i, a in enumerate(self.adapted) if a]
        warp = warp_mask(task_model)
        self._warp_index = [i for i, w in enumerate(warp) if w]
        self._theta_index = [i for i, w in enumerate(warp) if not w]
        self.update_rule.setup([task_model.trainable_variables[i] for i in self._adapted_index])
        self.trace_counter = _TraceCounter()

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.support_loss_tracker = keras.metrics.Mean(name="support_loss")
        self.pre_loss_tracker = keras.metrics.Mean(name="pre_loss")
        self.pre_accuracy_tracker = keras.metrics.Mean(name="pre_accuracy")
        self.meta_optimizer = None
        self.built = True

    # ----------------------------------------------------------------- variables
    @property
    def initialization_variables(self):
        """theta: the task network's trainable weights (the meta-learned initialisation),
        warp layers excepted."""
        variables = self.task_model.trainable_variables
        return [variables[i] for i in self._theta_index]

    @property
    def warp_variables(self):
        """The task network's warp-layer weights (WarpGrad): meta-learned, never adapted."""
        variables = self.task_model.trainable_variables
        return [variables[i] for i in self._warp_index]

    @property
    def meta_variables(self):
        """Meta-parameters with their own optimiser: warp weights, then the update rule's
        trainable weights (masks, rates, ...)."""
        return self.warp_variables + self.update_rule.trainable_variables

    @property
    def adapted_variables(self):
        return [self.task_model.trainable_variables[i] for i in self._adapted_index]

    # ----------------------------------------------------------------- compile
    def compile(self, optimizer="adam", meta_optimizer="adam", jit_compile=False, **kwargs):
        """`optimizer` updates theta; `meta_optimizer` updates the meta-parameters (warp
        weights, masks, rates)."""
        if self.meta_variables and meta_optimizer is None and not self.updates_meta_itself:
            raise ConfigError("this learner has meta-parameters (" + ", ".join(
                v.path for v in self.meta_variables[:3]) + ", ...) but no meta_optimizer; "
                "pass one to compile(), e.g. meta_optimizer='adam'")
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        self.optimizer.build(self.initialization_variables)
        if self.meta_variables and meta_optimizer is not None:
            self.meta_optimizer = keras.optimizers.get(meta_optimizer)
            self.meta_optimizer.build(self.meta_variables)

    @property
    def metrics(self):
        tracked = [self.loss_tracker, self.support_loss_tracker, self.pre_loss_tracker]
        if self.is_classifier:
            tracked += [self.accuracy_tracker, self.pre_accuracy_tracker]
        return tracked

    # ----------------------------------------------------------------- functional core
    def _cast_input(self, x):
        x = tf.convert_to_tensor(x)
        inputs = getattr(self.task_model, "inputs", None)
        dtype = inputs[0].dtype if inputs else self.task_model.compute_dtype
        if x.dtype.is_floating and x.dtype != dtype:
            return tf.cast(x, dtype)
        return x

    def forward(self, params, state, x, training):
        """Runs the task network on explicit weights; returns (outputs, new_state)."""
        outputs, state = self.task_model.stateless_call(
            params, state, self._cast_input(x), training=training)
        return tf.cast(outputs, tf.float32 if outputs.dtype != tf.float64 else tf.float64), state

    def _merge(self, theta, adapted):
        params = list(theta)
        for i, value in zip(self._adapted_index, adapted):
            params[i] = value
        return params

    def scaled(self, loss):
        """The loss as differentiated: times `loss_scale` (call it inside the tape)."""
        return loss if self.loss_scale == 1.0 else loss * tf.cast(self.loss_scale, loss.dtype)

    def unscaled(self, grads):
        """Gradients of a `scaled` loss, divided back by `loss_scale`."""
        return grads if self.loss_scale == 1.0 else [g / tf.cast(self.loss_scale, g.dtype)
                                                     for g in grads]

    def _support_batch(self, support_x, support_y, step, batch_seed):
        """The support examples inner step `step` trains on (all, without `task_batch`)."""
        size = support_x.shape[0]
        if self.task_batch is None or (size is not None and self.task_batch >= size):
            return support_x, support_y
        keys = tf.random.stateless_uniform(
            tf.shape(support_y)[:1],
            tf.random.experimental.stateless_fold_in(batch_seed, tf.cast(step, tf.int64)))
        picks = tf.argsort(keys)[:self.task_batch]
        return tf.gather(support_x, picks), tf.gather(support_y, picks)

    def _batch_seed(self, task_seed):
        # Evaluation passes None: every evaluation task draws its `task_batch` indices with
        # one fixed key, so the draw never depends on where the task sits in a batch, and a
        # SavedModel draws exactly what the library does.
        seed = self._task_seed(0, 0) if task_seed is None else task_seed
        return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 0x5EED)

    def _inner_step(self, rule, theta, state, adapted, support_x, support_y, step, first_order,
                    batch_seed=None):
        # The normalisation state a forward pass returns is deliberately not carried from step
        # to step: with batch statistics it is never read, and as a loop variable it would make
        # the outer gradient of a tf.while_loop backpropagate through every support pass.
        if self.task_batch is not None:
            support_x, support_y = self._support_batch(support_x, support_y, step,
                                                       self._batch_seed(None) if batch_seed
                                                       is None else batch_seed)
        with tf.GradientTape() as tape:
            tape.watch(adapted)
            outputs, _ = self.forward(self._merge(theta, adapted), state, support_x, True)
            loss = self.loss_fn(support_y, outputs)
            # Second order differentiates this gradient again under the outer (scaled) loss:
            # scaling both would multiply the scales and overflow float16.
            objective = self.scaled(loss) if first_order else loss
        grads = tape.gradient(objective, adapted, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        grads = self.unscaled(grads) if first_order else grads
        if first_order:
            grads = [tf.stop_gradient(g) for g in grads]
        updates = rule.transform(grads, adapted, step)
        adapted = rule.project([p - u for p, u in zip(adapted, updates)])
        return adapted, loss

    def adapt(self, support_x, support_y, steps=None, first_order=None, task_seed=None,
              evaluation=False, params=None):
        """Runs the inner loop from the current initialisation; returns an `Adaptation`.

        Call it inside a `tf.GradientTape` to differentiate the adapted weights with respect
        to the initialisation and meta-parameters (second order unless `first_order`).
        `task_seed` (int64 [2]) fixes the draw of stochastic update rules for this task;
        `evaluation` tells the rules this is meta-test adaptation.
        Up to `unroll_inner_steps` steps are unrolled into the graph; longer loops run the
        steps after the first in a `tf.while_loop`, so tracing time stays flat. `steps` may be
        a scalar tensor (a SavedModel's optional input): then every step runs in the loop.
        `params` (a `Params`) gives the weights to adapt from; by default the variables are read.
        """
        params = self.read_params() if params is None else params
        with self.rule_values(params):
            return self._adapt(support_x, support_y, steps, first_order, task_seed, evaluation,
                               params)

    def _adapt(self, support_x, support_y, steps, first_order, task_seed, evaluation, params):
        first_order = self.first_order if first_order is None else first_order
        theta, state, rule, adapted, initial_params = self._begin(params, task_seed, evaluation)
        step_fn = functools.partial(self._inner_step, rule, theta, state, support_x=support_x,
                                    support_y=support_y, first_order=first_order,
                                    batch_seed=self._batch_seed(None if evaluation
                                                                else task_seed))
        if tf.is_tensor(steps):
            losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True)

            def dynamic_body(step, adapted, losses):
                adapted, loss = step_fn(adapted, step=step)
                return step + 1, adapted, losses.write(step, tf.cast(tf.stop_gradient(loss),
                                                                     tf.float32))

            _, adapted, losses = tf.while_loop(lambda step, *_: step < steps, dynamic_body,
                                               (tf.constant(0), adapted, losses))
            return Adaptation(self._merge(theta, adapted), initial_params, state, support_x,
                              losses.stack())
        steps = self.inner_steps if steps is None else int(steps)
        support_losses = []
        if self.recompute_inner_steps and not first_order:
            if steps > self.unroll_inner_steps:
                raise ConfigError(f"recomputing inner steps needs them unrolled: raise "
                                  f"unroll_inner_steps to {steps} or more")
            step_fn = self._recomputed_step_fn(params, state, support_x, support_y, task_seed,
                                               evaluation)
        if steps <= self.unroll_inner_steps:
            for step in range(steps):
                adapted, loss = step_fn(adapted, step=step)
                support_losses.append(loss)
        else:
            adapted, first_loss = step_fn(adapted, step=0)
            losses = tf.TensorArray(first_loss.dtype, size=steps)

            def body(step, adapted, losses):
                adapted, loss = step_fn(adapted, step=step)
                # Losses are reported, never differentiated: keep them off the gradient path.
                return step + 1, adapted, losses.write(step, tf.stop_gradient(loss))

            _, adapted, losses = tf.while_loop(
                lambda step, *_: step < steps, body,
                (tf.constant(1), adapted, losses.write(0, tf.stop_gradient(first_loss))))
            support_losses = losses.stack()
        return Adaptation(self._merge(theta, adapted), initial_params, state, support_x,
                          support_losses)

    def read_params(self):
        """The current values of every variable the inner loop reads (a `Params`)."""
        return Params([tf.convert_to_tensor(v) for v in self.task_model.trainable_variables],
                      [tf.convert_to_tensor(v) for v in self.task_model.non_trainable_variables],
                      [tf.convert_to_tensor(v) for v in self.update_rule.weights])

    def rule_values(self, params):
        """A scope in which the update rule's variables read as `params.rule` (Keras'
        StatelessScope: reads are redirected, no variable is touched)."""
        return keras.StatelessScope(list(zip(self.update_rule.weights, params.rule)))

    def _gradient_sources(self, params):
        """The entries of `params` that hold `initialization_variables + meta_variables`."""
        position = {id(v): i for i, v in enumerate(self.update_rule.weights)}
        return ([params.theta[i] for i in self._theta_index]
                + [params.theta[i] for i in self._warp_index]
                + [params.rule[position[id(v)]] for v in self.update_rule.trainable_variables])

    def _recomputed_step_fn(self, params, state, support_x, support_y, task_seed, evaluation):
        """An inner step whose activations the outer tape never holds.

        The step runs forward on stop_gradient copies of its inputs, so an outer tape records
        none of it (the step's own inner tape still works); a custom-gradient identity then
        ties the result to the inputs, and its backward pass recomputes the step under a fresh
        tape for the vector-Jacobian product. (tf.recompute_grad cannot be used: its forward
        runs with every tape stopped, so the inner gradient would vanish.) Everything the step
        reads that needs a gradient (fast weights, theta, the rule's values) is an explicit
        input, because the backward pass runs outside any scope active now."""
        n, m = len(self._adapted_index), len(params.theta)
        batch_seed = self._batch_seed(None if evaluation else task_seed)

        def run(step, flat):
            adapted, theta, rule_values = list(flat[:n]), list(flat[n:n + m]), flat[n + m:]
            with self.rule_values(Params(theta, state, rule_values)):
                rule = self.update_rule.begin_task(adapted, task_seed, evaluation)
                return self._inner_step(rule, theta, state, adapted, support_x, support_y,
                                        step, False, batch_seed)

        def step_fn(adapted, step):
            inputs = [*adapted, *params.theta, *params.rule]
            new, loss = run(step, [tf.stop_gradient(x) for x in inputs])

            @tf.custom_gradient
            def attach(*args):
                def grad(*upstream):
                    # After the upstream gradient exists: never scheduled early, never merged
                    # with the forward pass by graph optimisation.
                    with tf.control_dependencies(upstream):
                        again = [tf.identity(x) for x in args[:len(inputs)]]
                    with tf.GradientTape() as tape:
                        tape.watch(again)
                        recomputed, _ = run(step, again)
                    grads = tape.gradient(recomputed, again, output_gradients=list(upstream),
                                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
                    return [*grads, *[tf.zeros_like(r) for r in args[len(inputs):]]]

                return [tf.identity(r) for r in args[len(inputs):]], grad

            return list(attach(*inputs, *new)), tf.stop_gradient(loss)

        return step_fn

    def _begin(self, params, task_seed=None, evaluation=False):
        """theta, normalisation state, the rule bound to this task, phi_0 (and with theta).

        The rule reads its own variables unless `rule_values` redirects them."""
        theta, state = list(params.theta), list(params.state)
        adapted = [theta[i] for i in self._adapted_index]
        rule = self.update_rule.begin_task(adapted, task_seed, evaluation)
        adapted = rule.initial(adapted)
        return theta, state, rule, adapted, self._merge(theta, adapted)

    def adaptation_curve(self, episode, steps, task_seed=None, params=None):
        """Query loss and accuracy after 0, 1, ..., `steps` inner steps: [2, steps + 1]."""
        params = self.read_params() if params is None else params
        with self.rule_values(params):
            return self._adaptation_curve(episode, steps, task_seed, params)

    def _adaptation_curve(self, episode, steps, task_seed, params):
        theta, state, rule, adapted, initial_params = self._begin(params, task_seed,
                                                                  evaluation=True)
        adaptation = Adaptation(initial_params, initial_params, state, episode["support_x"], [])
        batch_seed = self._batch_seed(None)  # evaluation: see _batch_seed

        def query_metrics(adapted):
            outputs = self.predict_with(self._merge(theta, adapted), adaptation,
                                        episode["query_x"])
            accuracy = (losses_lib.accuracy(episode["query_y"], outputs) if self.is_classifier
                        else tf.zeros((), outputs.dtype))
            return tf.cast(tf.stack([self.loss_fn(episode["query_y"], outputs), accuracy]),
                           tf.float32)

        def body(step, adapted, curve):
            curve = curve.write(step, query_metrics(adapted))
            adapted, _ = self._inner_step(rule, theta, state, adapted, episode["support_x"],
                                          episode["support_y"], step, first_order=True,
                                          batch_seed=batch_seed)
            return step + 1, adapted, curve

        # A loop, not an unrolled graph: evaluation loops can be 100 steps long (WarpGrad).
        _, adapted, curve = tf.while_loop(
            lambda step, *_: step < steps, body,
            (tf.constant(0), adapted, tf.TensorArray(tf.float32, size=steps + 1)))
        return tf.transpose(curve.write(steps, query_metrics(adapted)).stack())

    def predict_with(self, params, adaptation, x):
        """Outputs on `x` with weights `params`; normalisation as the learner is configured.

        Transductive: `x` is normalised with its own batch statistics. Otherwise one forward
        pass of the support set at `params` provides the statistics.
        """
        if self.transductive:
            outputs, _ = self.forward(params, adaptation.state, x, True)
            return outputs
        _, support_state = self.forward(params, adaptation.state, adaptation.support_x, True)
        outputs, _ = self.forward(params, support_state, x, False)
        return outputs

    def predict_adapted(self, adaptation, x):
        """Outputs of the adapted task network on `x` (e.g. the query set)."""
        return self.predict_with(adaptation.params, adaptation, x)

    def call(self, x, training=False):
        return self.task_model(x, training=training)

    # ----------------------------------------------------------------- meta-batch loops
    def _episode(self, episodes, i):
        return {k: tf.convert_to_tensor(episodes[k])[i] for k in EPISODE_KEYS}

    def _meta_batch_size(self, episodes):
        """The number of tasks: static when the dataset was batched with drop_remainder
        (one trace per run); dynamic under MultiWorkerMirroredStrategy, which drops it."""
        size = episodes["support_x"].shape[0]
        return size if size is not None else tf.shape(episodes["support_x"])[0]

    def _parallel_tasks(self):
        # Under a multi-replica strategy the replicas already run side by side, and
        # overlapping loop iterations there can make TensorFlow build a graph with a cycle
        # (seen with masked BatchNorm parameters on MirroredStrategy, TF 2.21).
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            return 1
        return self.parallel_tasks

    def _iteration(self):
        optimizer = getattr(self, "optimizer", None)
        return optimizer.iterations if optimizer is not None else tf.constant(0, tf.int64)

    def _task_seed(self, stream, index):
        # Stochastic rules draw from (seed, stream, index): a resumed run redraws exactly.
        return tf.stack([tf.constant(self.seed, tf.int64),
                         tf.cast(stream, tf.int64) * 1_000_003 + tf.cast(index, tf.int64)])

    def episode_seed(self, support_x):
        """The draw key of an evaluation task: a pure function of (seed, its support set).

        Stochastic rules (sparse-MAML+'s noise) draw per task at evaluation too: the same
        episode always gets the same draw, different episodes independent ones, whatever
        their position in an evaluation batch or a SavedModel call. The key hashes the
        support tensor's bytes, so it is the same only for bit-identical inputs."""
        serialized = tf.reshape(tf.io.serialize_tensor(tf.convert_to_tensor(support_x)), [1])
        fingerprint = tf.bitcast(tf.fingerprint(serialized)[0], tf.int64)
        return tf.stack([tf.constant(self.seed, tf.int64), fingerprint])

    def task_gradients(self, episode, task_seed=None, params=None):
        """Query loss, accuracy, support loss and outer gradients for one episode.

        The gradients are with respect to theta and the meta-parameters, in the order of
        `initialization_variables + meta_variables`, evaluated at `params` (default: the
        variables' current values)."""
        params = self.read_params() if params is None else params
        # Local copies: inside a loop body the gradient must be taken with respect to tensors
        # of the body's own graph, not the captured outer ones.
        params = Params(*[[tf.identity(t) for t in group] for group in params])
        sources = self._gradient_sources(params)
        with tf.GradientTape() as tape:
            tape.watch(sources)
            adaptation = self.adapt(episode["support_x"], episode["support_y"],
                                    task_seed=task_seed, params=params)
            outputs = self.predict_adapted(adaptation, episode["query_x"])
            loss = self.loss_fn(episode["query_y"], outputs)
            objective = self.scaled(loss)
        grads = self.unscaled(tape.gradient(objective, sources,
                                            unconnected_gradients=tf.UnconnectedGradients.ZERO))
        accuracy = (losses_lib.accuracy(episode["query_y"], outputs) if self.is_classifier
                    else tf.zeros((), loss.dtype))
        losses = adaptation.support_losses  # a list if unrolled, a tensor from a loop
        support_loss = (losses[0] if tf.is_tensor(losses) or losses else loss)
        return loss, accuracy, support_loss, grads

    @property
    def lockstep(self):
        """True when the update rule couples the tasks of a meta-batch (gradient sharing)."""
        return bool(getattr(self.update_rule, "lockstep", False))

    def lockstep_adapt(self, episodes, steps, first_order, task_seed=None, evaluation=False):
        """Adapts all tasks of a meta-batch together, step by step (no Python loop per task).

        Returns the per-task adapted tensors [B, ...], theta, the normalisation state, phi_0,
        the raw batch-mean inner gradient of every step and the per-task support losses."""
        size = self._meta_batch_size(episodes)
        theta, state, rule, adapted, initial_params = self._begin(self.read_params(), task_seed,
                                                                  evaluation)
        adapted = [tf.repeat(p[None], size, axis=0) for p in adapted]
        loss_dtype = self.initialization_variables[0].dtype
        step_means, support_losses = [], []
        for step in range(steps):
            def task_gradient(i, adapted=adapted):
                params = [p[i] for p in adapted]
                with tf.GradientTape() as tape:
                    tape.watch(params)
                    outputs, _ = self.forward(self._merge(theta, params), state,
                                              episodes["support_x"][i], True)
                    loss = self.loss_fn(episodes["support_y"][i], outputs)
                    objective = self.scaled(loss)
                grads = self.unscaled(tape.gradient(
                    objective, params, unconnected_gradients=tf.UnconnectedGradients.ZERO))
                return grads, tf.cast(loss, loss_dtype)

            grads, losses = tf.map_fn(
                task_gradient, tf.range(size), parallel_iterations=self._parallel_tasks(),
                fn_output_signature=([tf.TensorSpec(p.shape[1:], p.dtype) for p in adapted],
                                     tf.TensorSpec([], loss_dtype)))
            if first_order:
                grads = [tf.stop_gradient(g) for g in grads]
            step_means.append([tf.reduce_mean(tf.stop_gradient(g), axis=0) for g in grads])
            updates = rule.transform(grads, adapted, step)
            adapted = rule.project([p - u for p, u in zip(adapted, updates)])
            support_losses.append(losses)
        return adapted, theta, state, initial_params, step_means, support_losses

    def _lockstep_meta_gradients(self, episodes):
        size = self._meta_batch_size(episodes)
        variables = self.initialization_variables + self.meta_variables
        with tf.GradientTape() as tape:
            adapted, theta, state, initial_params, step_means, support_losses = \
                self.lockstep_adapt(episodes, self.inner_steps, self.first_order,
                                    self._task_seed(self._iteration() + 1, 0))

            def query(i):
                params = self._merge(theta, [p[i] for p in adapted])
                adaptation = Adaptation(params, initial_params, state, episodes["support_x"][i], [])
                outputs = self.predict_adapted(adaptation, episodes["query_x"][i])
                accuracy = (losses_lib.accuracy(episodes["query_y"][i], outputs)
                            if self.is_classifier else tf.zeros((), outputs.dtype))
                return tf.stack([self.loss_fn(episodes["query_y"][i], outputs), accuracy])

            per_task = tf.map_fn(query, tf.range(size), parallel_iterations=self._parallel_tasks(),
                                 fn_output_signature=tf.TensorSpec([2], adapted[0].dtype))
            total = tf.reduce_sum(per_task[:, 0])
            objective = self.scaled(total)
        grads = self.unscaled(tape.gradient(objective, variables,
                                            unconnected_gradients=tf.UnconnectedGradients.ZERO))
        grads = self._reduce_over_tasks(grads, size)
        support = support_losses[0] if support_losses else per_task[:, 0]
        logs = {"loss": tf.cast(total, tf.float32) / tf.cast(size, tf.float32), "objective": total,
                "accuracy": tf.cast(tf.reduce_mean(per_task[:, 1]), tf.float32),
                "support_loss": tf.cast(tf.reduce_mean(support), tf.float32),
                "step_means": step_means}
        return grads, logs

    def meta_gradients(self, episodes):
        """Outer gradients summed (or averaged) over the tasks, plus per-batch metrics."""
        if self.lockstep:
            return self._lockstep_meta_gradients(episodes)
        size = self._meta_batch_size(episodes)
        variables = self.initialization_variables + self.meta_variables
        zero = tf.zeros((), tf.float32)

        stream = tf.convert_to_tensor(self._iteration()) + 1  # read here, not in the loop
        params = self.read_params()
        if self.vectorize_tasks:
            return self._vectorized_meta_gradients(episodes, size, stream, params)

        def body(i, loss_sum, acc_sum, support_sum, grad_sums):
            loss, acc, support_loss, grads = self.task_gradients(
                self._episode(episodes, i), self._task_seed(stream, i), params)
            grad_sums = [s + tf.cast(g, s.dtype) for s, g in zip(grad_sums, grads)]
            return (i + 1, loss_sum + tf.cast(loss, zero.dtype), acc_sum + tf.cast(acc, zero.dtype),
                    support_sum + tf.cast(support_loss, zero.dtype), grad_sums)

        init = (tf.constant(0), zero, zero, zero, [tf.zeros(v.shape, v.dtype) for v in variables])
        _, loss_sum, acc_sum, support_sum, grad_sums = tf.while_loop(
            lambda i, *_: i < size, body, init, parallel_iterations=self._parallel_tasks())
        grad_sums = self._reduce_over_tasks(grad_sums, size)
        count = tf.cast(size, tf.float32)
        return grad_sums, {"loss": loss_sum / count, "accuracy": acc_sum / count,
                           "support_loss": support_sum / count}

    def _reduce_over_tasks(self, grad_sums, size):
        if self.outer_reduction == "sum":
            return grad_sums
        # "mean": over the whole meta-batch, across replicas
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return [g / tf.cast(size * replicas, g.dtype) for g in grad_sums]

    def _vectorized_meta_gradients(self, episodes, size, stream, params):
        def one_task(elems):
            episode, i = elems
            return self.task_gradients(episode, self._task_seed(stream, i), params)

        episodes = {k: tf.convert_to_tensor(episodes[k]) for k in EPISODE_KEYS}
        try:
            losses, accs, support_losses, grads = tf.vectorized_map(
                one_task, (episodes, tf.range(size)), fallback_to_while_loop=False)
        except ValueError as e:  # an op without a vectorised form
            raise ConfigError(f"vectorize_tasks: this task network or update rule has an op that "
                              f"tf.vectorized_map cannot batch ({str(e).splitlines()[0][:200]}); "
                              "turn it off (--novectorize_tasks)") from e
        grad_sums = self._reduce_over_tasks([tf.reduce_sum(g, axis=0) for g in grads], size)
        mean = lambda x: tf.reduce_mean(tf.cast(x, tf.float32))  # noqa: E731
        return grad_sums, {"loss": mean(losses), "accuracy": mean(accs),
                           "support_loss": mean(support_losses)}

    def evaluate_tasks(self, episodes, steps=None):
        """Per-task pre- and post-adaptation query loss/accuracy (vectors of length B)."""
        size = self._meta_batch_size(episodes)
        steps = self.inner_steps_eval if steps is None else steps
        out_dtype = tf.float64 if self.initialization_variables[0].dtype == "float64" else tf.float32
        params = self.read_params()
        together = self.lockstep and getattr(self.update_rule, "concurrent_at_eval", False)
        if together:  # gradient sharing between the tasks of the evaluation batch
            adapted, theta, state, initial_params, _, _ = self.lockstep_adapt(
                episodes, steps, True, self.episode_seed(episodes["support_x"]), evaluation=True)

        def one_task(i):
            ep = self._episode(episodes, i)
            if together:
                adaptation = Adaptation(self._merge(theta, [p[i] for p in adapted]),
                                        initial_params, state, ep["support_x"], [])
            else:
                adaptation = self.adapt(ep["support_x"], ep["support_y"], steps=steps,
                                        first_order=True,
                                        task_seed=self.episode_seed(ep["support_x"]),
                                        evaluation=True, params=params)
            pre = self.predict_with(adaptation.initial_params, adaptation, ep["query_x"])
            post = self.predict_adapted(adaptation, ep["query_x"])
            values = [self.loss_fn(ep["query_y"], pre), self.loss_fn(ep["query_y"], post)]
            if self.is_classifier:
                values += [losses_lib.accuracy(ep["query_y"], pre),
                           losses_lib.accuracy(ep["query_y"], post)]
            return tf.stack([tf.cast(v, out_dtype) for v in values])

        per_task = tf.map_fn(one_task, tf.range(size), fn_output_signature=out_dtype,
                             parallel_iterations=self._parallel_tasks())
        names = ["pre_loss", "loss"] + (["pre_accuracy", "accuracy"] if self.is_classifier else [])
        return {name: per_task[:, j] for j, name in enumerate(names)}

    # ----------------------------------------------------------------- Keras hooks
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # A MetaLearner is fully built when constructed and compiles no Keras losses or
        # metrics, so Keras' symbolic build has nothing to do. Under MultiWorkerMirrored-
        # Strategy it would all-reduce the first episode batch, a dict, and fail (Keras 3.15).
        return

    def train_step(self, data):
        self.trace_counter.hit("train_step")
        grads, logs = self.meta_gradients(data)
        n_theta = len(self.initialization_variables)
        self.optimizer.apply(grads[:n_theta], self.initialization_variables)
        if self.meta_optimizer is not None:
            self.meta_optimizer.apply(grads[n_theta:], self.meta_variables)
        if "step_means" in logs:  # statistics kept by the rule across meta-iterations
            self.update_rule.observe(logs["step_means"])
        self.loss_tracker.update_state(logs["loss"])
        self.support_loss_tracker.update_state(logs["support_loss"])
        if self.is_classifier:
            self.accuracy_tracker.update_state(logs["accuracy"])
        return _step_logs({
            "loss": self.loss_tracker.result(), "support_loss": self.support_loss_tracker.result(),
            **({"accuracy": self.accuracy_tracker.result()} if self.is_classifier else {})})

    def test_step(self, data):
        self.trace_counter.hit("test_step")
        per_task = self.evaluate_tasks(data)
        trackers = {"loss": self.loss_tracker, "pre_loss": self.pre_loss_tracker,
                    "accuracy": self.accuracy_tracker, "pre_accuracy": self.pre_accuracy_tracker}
        for name, values in per_task.items():
            trackers[name].update_state(tf.reduce_mean(values))
        return _step_logs({name: trackers[name].result() for name in per_task})
