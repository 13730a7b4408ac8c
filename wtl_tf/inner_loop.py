"""The inner loop: pure functions over parameter trees keyed by variable path.

    fast = inner.adapt(params, support_x, support_y)      # an Adaptation
    outputs = inner.predict_adapted(fast, query_x)

`params` (a `Params`) holds tensors, never variables: `theta` every trainable weight of the
task network (warp layers included), `state` its non-trainable weights, `rule` the update
rule's weights, each a dict {variable path: tensor}. Nothing here reads a variable except
`read_params`, so a caller can differentiate the adapted weights with respect to any entry
of `params` (second order unless `first_order`), and loops over tasks and steps have pure
bodies. The task network runs on explicit weights through `Layer.stateless_call`.
"""

import collections
import functools

import keras
import tensorflow as tf

from wtl_tf import losses as losses_lib
from wtl_tf.errors import ConfigError
from wtl_tf.selection import adapted_mask, warp_mask

Params = collections.namedtuple("Params", ["theta", "state", "rule"])

# params / initial_params: theta trees whose adapted entries hold the fast / initial weights.
Adaptation = collections.namedtuple(
    "Adaptation", ["params", "initial_params", "state", "support_x", "support_losses"])


def value_and_gradient(fn, sources, loss_scale=1.0):
    """(fn(), d loss / d sources) where fn() returns the loss or a tuple (loss, *aux).

    The loss is multiplied by `loss_scale` inside the tape and the gradients divided by it
    (a static loss scale for float16; exact at 1). Unconnected sources get zeros. Static
    and here, not Keras' LossScaleOptimizer: the inner loop's gradients need the scale too,
    and they are taken with tapes, not by an optimiser."""
    with tf.GradientTape() as tape:
        tape.watch(sources)
        outputs = fn()
        loss = outputs[0] if isinstance(outputs, tuple) else outputs
        objective = loss if loss_scale == 1.0 else loss * tf.cast(loss_scale, loss.dtype)
    grads = tape.gradient(objective, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if loss_scale != 1.0:
        grads = tf.nest.map_structure(lambda g: g / tf.cast(loss_scale, g.dtype), grads)
    return outputs, grads


def metric_or_zero(is_classifier, labels, outputs):
    """Accuracy for classifiers, a zero of the outputs' dtype for regression."""
    return (losses_lib.accuracy(labels, outputs) if is_classifier
            else tf.zeros((), outputs.dtype))


def stream_seed(seed, stream, index):
    """The draw key (int64 [2]) of task `index` of stream `stream` (e.g. a meta-iteration):
    stochastic rules and task batches draw from it, so a resumed run redraws exactly."""
    return tf.stack([tf.constant(seed, tf.int64),
                     tf.cast(stream, tf.int64) * 1_000_003 + tf.cast(index, tf.int64)])


def _option(name):
    """An InnerLoopOptions field read as the loop's own attribute (one copy: `options`)."""
    return property(lambda self: getattr(self.options, name))


class InnerLoop:
    """The inner loop of one learner: which tensors adapt, the update rule, the loss.

    `options`: an InnerLoopOptions. `InnerLoop` holds no variables of its own."""

    inner_steps = _option("inner_steps")
    first_order = _option("first_order")
    transductive = _option("transductive")
    task_batch = _option("task_batch")
    recompute_inner_steps = _option("recompute_inner_steps")
    unroll_inner_steps = _option("unroll_inner_steps")
    loss_scale = _option("loss_scale")
    seed = _option("seed")
    support_transform = _option("support_transform")

    @property
    def inner_steps_eval(self):
        return (self.options.inner_steps if self.options.inner_steps_eval is None
                else self.options.inner_steps_eval)

    def __init__(self, task_model, update_rule, options):
        self.task_model, self.rule, self.options = task_model, update_rule, options
        loss, adapt, adapt_batchnorm = options.loss, options.adapt, options.adapt_batchnorm
        self.loss_fn = loss if callable(loss) else losses_lib.get_loss(loss)
        self.is_classifier = loss != "mse"
        variables = task_model.trainable_variables
        self.theta_paths = [v.path for v in variables]
        self.state_paths = [v.path for v in task_model.non_trainable_variables]
        adapted, warp = adapted_mask(task_model, adapt, adapt_batchnorm), warp_mask(task_model)
        self.adapted_paths = [v.path for v, a in zip(variables, adapted) if a]
        self.warp_paths = [v.path for v, w in zip(variables, warp) if w]
        self.initialization_paths = [v.path for v, w in zip(variables, warp) if not w]
        self.dtype = tf.as_dtype(next(v.dtype for v, w in zip(variables, warp) if not w))
        # `forward` returns float32 outputs (float64 for a float64 network): so are losses.
        self.loss_dtype = tf.float64 if self.dtype == tf.float64 else tf.float32
        paths = self.theta_paths + self.state_paths + [w.path for w in update_rule.weights]
        if len(set(paths)) != len(paths):
            repeated = sorted({p for p in paths if paths.count(p) > 1})
            raise ConfigError(f"variable paths must be unique to key the parameter trees; "
                              f"{repeated} repeat: give the layers distinct names")
        self.rule_variables = {w.path: w for w in update_rule.weights}

    # ------------------------------------------------------------------ parameters
    def read_params(self):
        """The current values of every variable the inner loop reads."""
        read = lambda variables: {v.path: tf.convert_to_tensor(v) for v in variables}  # noqa: E731
        return Params(read(self.task_model.trainable_variables),
                      read(self.task_model.non_trainable_variables), read(self.rule.weights))

    def rule_values(self, params):
        """A scope in which the update rule's variables read as `params.rule` (Keras'
        StatelessScope: reads are redirected, no variable is touched)."""
        return keras.StatelessScope([(self.rule_variables[p], v) for p, v in params.rule.items()])

    def gradient_sources(self, params):
        """{path: tensor} of `params` entries that are meta-learned: the initialisation, the
        warp layers and the rule's trainable weights."""
        sources = {p: params.theta[p] for p in self.initialization_paths + self.warp_paths}
        sources.update({w.path: params.rule[w.path] for w in self.rule.trainable_variables})
        return sources

    # ------------------------------------------------------------------ forward
    def cast_input(self, x):
        x = tf.convert_to_tensor(x)
        inputs = getattr(self.task_model, "inputs", None)
        dtype = inputs[0].dtype if inputs else self.task_model.compute_dtype
        return tf.cast(x, dtype) if x.dtype.is_floating and x.dtype != dtype else x

    def forward(self, theta, state, x, training):
        """The task network on explicit weights; returns (outputs, new state tree)."""
        outputs, new_state = self.task_model.stateless_call(
            [theta[p] for p in self.theta_paths], [state[p] for p in self.state_paths],
            self.cast_input(x), training=training)
        outputs = tf.cast(outputs, tf.float32 if outputs.dtype != tf.float64 else tf.float64)
        return outputs, dict(zip(self.state_paths, new_state))

    def predict_with(self, theta, adaptation, x):
        """Outputs on `x` with weights `theta`: transductive normalises `x` with its own batch
        statistics, otherwise one support pass at `theta` provides them."""
        if self.transductive:
            return self.forward(theta, adaptation.state, x, True)[0]
        _, support_state = self.forward(theta, adaptation.state, adaptation.support_x, True)
        return self.forward(theta, support_state, x, False)[0]

    def predict_adapted(self, adaptation, x):
        return self.predict_with(adaptation.params, adaptation, x)

    # ------------------------------------------------------------------ the inner step
    def batch_seed(self, task_seed):
        # Evaluation passes None: every evaluation task draws its `task_batch` indices with
        # one fixed key, so the draw never depends on where the task sits in a batch, and a
        # SavedModel draws exactly what the library does.
        seed = stream_seed(self.seed, 0, 0) if task_seed is None else task_seed
        return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 0x5EED)

    def support_batch(self, support_x, support_y, step, batch_seed):
        """The support examples inner step `step` trains on (all, without `task_batch`),
        each redrawn through `support_transform` when there is one (an augmentation drawn
        afresh every time an example is drawn, as WarpGrad's official data loader does)."""
        size = support_x.shape[0]
        step_key = tf.random.experimental.stateless_fold_in(batch_seed, tf.cast(step, tf.int64))
        if self.task_batch is not None and (size is None or self.task_batch < size):
            keys = tf.random.stateless_uniform(tf.shape(support_y)[:1], step_key)
            picks = tf.argsort(keys)[:self.task_batch]
            support_x, support_y = tf.gather(support_x, picks), tf.gather(support_y, picks)
        if self.support_transform is not None:
            support_x = self.support_transform(
                support_x, tf.random.experimental.stateless_fold_in(step_key, 0xAFF1))
        return support_x, support_y

    def begin(self, params, task_seed=None, evaluation=False):
        """(the rule bound to this task, phi_0 as a tree of the adapted tensors)."""
        adapted = {p: params.theta[p] for p in self.adapted_paths}
        rule = self.rule.begin_task(adapted, task_seed, evaluation)
        return rule, rule.initial(adapted)

    def step(self, rule, theta, state, adapted, support_x, support_y, step, first_order,
             batch_seed=None):
        """One inner step: (new adapted tree, support loss)."""
        # The normalisation state a forward pass returns is deliberately not carried from step
        # to step: with batch statistics it is never read, and as a loop variable it would make
        # the outer gradient of a tf.while_loop backpropagate through every support pass.
        if self.task_batch is not None or self.support_transform is not None:
            support_x, support_y = self.support_batch(
                support_x, support_y, step, self.batch_seed(None) if batch_seed is None
                else batch_seed)

        def support_loss():
            outputs, _ = self.forward({**theta, **adapted}, state, support_x, True)
            return self.loss_fn(support_y, outputs)

        # Second order differentiates this gradient again under the outer (scaled) loss:
        # scaling both would multiply the scales and overflow float16.
        loss, grads = value_and_gradient(support_loss, adapted,
                                         self.loss_scale if first_order else 1.0)
        grads = {p: tf.stop_gradient(grads[p]) if first_order else grads[p]
                 for p in self.adapted_paths}
        updates = rule.transform(grads, adapted, step)
        return rule.project({p: adapted[p] - updates[p] for p in self.adapted_paths}), loss

    # ------------------------------------------------------------------ adaptation
    def adapt(self, params, support_x, support_y, steps=None, first_order=None, task_seed=None,
              evaluation=False):
        """Runs the inner loop from `params`; returns an `Adaptation`.

        Up to `unroll_inner_steps` steps are unrolled into the graph; longer loops run the
        steps after the first in a `tf.while_loop`, so tracing time stays flat. `steps` may be
        a scalar tensor (a SavedModel's optional input): then every step runs in the loop."""
        with self.rule_values(params):
            return self._adapt(params, support_x, support_y, steps, first_order, task_seed,
                               evaluation)

    def _adapt(self, params, support_x, support_y, steps, first_order, task_seed, evaluation):
        first_order = self.first_order if first_order is None else first_order
        theta, state = params.theta, params.state
        rule, adapted = self.begin(params, task_seed, evaluation)
        initial_params = {**theta, **adapted}
        step_fn = functools.partial(self.step, rule, theta, state, support_x=support_x,
                                    support_y=support_y, first_order=first_order,
                                    batch_seed=self.batch_seed(None if evaluation
                                                               else task_seed))
        if tf.is_tensor(steps):
            losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True)

            def dynamic_body(step, adapted, losses):
                adapted, loss = step_fn(adapted, step=step)
                return step + 1, adapted, losses.write(step, tf.cast(tf.stop_gradient(loss),
                                                                     tf.float32))

            _, adapted, losses = tf.while_loop(lambda step, *_: step < steps, dynamic_body,
                                               (tf.constant(0), adapted, losses))
            return Adaptation({**theta, **adapted}, initial_params, state, support_x,
                              losses.stack())
        steps = self.inner_steps if steps is None else int(steps)
        support_losses = []
        if self.recompute_inner_steps and not first_order:
            if steps > self.unroll_inner_steps:
                raise ConfigError(f"recomputing inner steps needs them unrolled: raise "
                                  f"unroll_inner_steps to {steps} or more")
            step_fn = recomputed_step_fn(self, params, support_x, support_y, task_seed,
                                               evaluation)
        if steps <= self.unroll_inner_steps:
            for step in range(steps):
                adapted, loss = step_fn(adapted, step=step)
                support_losses.append(loss)
        else:
            # Every step in the loop, the first too: the step is traced once.
            losses = tf.TensorArray(self.loss_dtype, size=steps)

            def body(step, adapted, losses):
                adapted, loss = step_fn(adapted, step=step)
                # Losses are reported, never differentiated: keep them off the gradient path.
                return step + 1, adapted, losses.write(step, tf.stop_gradient(loss))

            _, adapted, losses = tf.while_loop(lambda step, *_: step < steps, body,
                                               (tf.constant(0), adapted, losses))
            support_losses = losses.stack()
        return Adaptation({**theta, **adapted}, initial_params, state, support_x,
                          support_losses)

    def adaptation_curve(self, params, episode, steps, task_seed=None):
        """Query loss and accuracy after 0, 1, ..., `steps` inner steps: [2, steps + 1]."""
        with self.rule_values(params):
            theta, state = params.theta, params.state
            rule, adapted = self.begin(params, task_seed, evaluation=True)
            adaptation = Adaptation({**theta, **adapted}, None, state, episode["support_x"], [])
            batch_seed = self.batch_seed(None)  # evaluation: see batch_seed

            def query_metrics(adapted):
                outputs = self.predict_with({**theta, **adapted}, adaptation, episode["query_x"])
                accuracy = metric_or_zero(self.is_classifier, episode["query_y"], outputs)
                return tf.cast(tf.stack([self.loss_fn(episode["query_y"], outputs), accuracy]),
                               tf.float32)

            def body(step, adapted, curve):
                curve = curve.write(step, query_metrics(adapted))
                adapted, _ = self.step(rule, theta, state, adapted, episode["support_x"],
                                       episode["support_y"], step, first_order=True,
                                       batch_seed=batch_seed)
                return step + 1, adapted, curve

            # A loop, not an unrolled graph: evaluation loops can be 100 steps long (WarpGrad).
            _, adapted, curve = tf.while_loop(
                lambda step, *_: step < steps, body,
                (tf.constant(0), adapted, tf.TensorArray(tf.float32, size=steps + 1)))
            return tf.transpose(curve.write(steps, query_metrics(adapted)).stack())


def recomputed_step_fn(inner, params, support_x, support_y, task_seed, evaluation):
    """An inner step whose activations the outer tape never holds.

    The step runs forward on stop_gradient copies of its inputs, so an outer tape records
    none of it (the step's own inner tape still works); a custom-gradient identity then
    ties the result to the inputs, and its backward pass recomputes the step under a fresh
    tape for the vector-Jacobian product. (tf.recompute_grad cannot be used: its forward
    runs with every tape stopped, so the inner gradient would vanish.) Everything the step
    reads that needs a gradient (fast weights, theta, the rule's values) is an explicit
    input, because the backward pass runs outside any scope active now."""
    adapted_paths, theta_paths = inner.adapted_paths, list(params.theta)
    rule_paths, n, m = list(params.rule), len(inner.adapted_paths), len(params.theta)
    batch_seed = inner.batch_seed(None if evaluation else task_seed)

    def run(step, flat):
        adapted = dict(zip(adapted_paths, flat[:n]))
        theta = dict(zip(theta_paths, flat[n:n + m]))
        scoped = Params(theta, params.state, dict(zip(rule_paths, flat[n + m:])))
        with inner.rule_values(scoped):
            rule = inner.rule.begin_task({p: adapted[p] for p in adapted_paths}, task_seed,
                                        evaluation)
            new, loss = inner.step(rule, theta, params.state, adapted, support_x, support_y,
                                  step, False, batch_seed)
            return [new[p] for p in adapted_paths], loss

    def step_fn(adapted, step):
        inputs = [*[adapted[p] for p in adapted_paths], *params.theta.values(),
                  *params.rule.values()]
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

        return dict(zip(adapted_paths, attach(*inputs, *new))), tf.stop_gradient(loss)

    return step_fn
