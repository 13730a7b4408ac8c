"""MetaLearner: meta-training of any Keras model, as a thin keras.Model shell.

The pieces it holds (each usable on its own):
- `inner` (wtl_tf.inner_loop.InnerLoop): pure functions over parameter trees keyed by
  variable path — adapt, predict, the inner step with its chain of update rules;
- `runner` (wtl_tf.runners): how a meta-batch's tasks run — a loop, vectorised, or in
  lock-step for rules that couple tasks;
- `outer` (wtl_tf.outer / wtl_tf.warpgrad): how theta and the meta-parameters move.

`train_step` is one meta-update and `test_step` reports query loss/accuracy before and after
adaptation, so `fit`, `evaluate`, callbacks and progress bars work unchanged. Second-order
meta-gradients come from nested `tf.GradientTape`s, first order from stopping the inner
gradient. An episode batch is a dict with `support_x`, `support_y`, `query_x`, `query_y`,
each with a leading meta-batch dimension and static shapes.
"""

import dataclasses

import keras
import tensorflow as tf

from wtl_tf import runners, settings
from wtl_tf.errors import ConfigError
from wtl_tf.graph_checks import warn_about_bias_add_convolutions, warn_about_inexact_second_order
from wtl_tf.inner_loop import Adaptation, InnerLoop, Params  # noqa: F401
from wtl_tf.inner_options import InnerLoopOptions
from wtl_tf.learner_files import KerasFile
from wtl_tf.outer import MetaGradientUpdate
from wtl_tf.rules import UpdateRule
from wtl_tf.runtime import as_written
from wtl_tf.selection import adapted_mask


EPISODE_KEYS = runners.EPISODE_KEYS

_MAML = dict(reads=settings.maml_family, scope="MAML-family learners")
settings.declare(
    settings.Setting("inner_steps", "integer", None, "inner steps during meta-training "
                     f"({settings.UNSET_HELP})", group="inner loop",
                     reads=settings.either(settings.few_shot, settings.osaka_learner,
                                           settings.sine_learner),
                     scope="few-shot runs; continual_maml (fast-weight steps); warpgrad_sine (per "
                           "interval)", low=0),
    settings.Setting("inner_steps_eval", "integer", None, "inner steps at evaluation "
                     f"({settings.UNSET_HELP})", group="inner loop",
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=0),
    settings.Setting("task_batch", "integer", None, "examples per inner step, drawn from the "
                     f"support set (unset: all; {settings.UNSET_HELP})", group="inner loop",
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=1),
    settings.Setting("recompute_inner_steps", "bool", False, "second order: recompute each "
                     "inner step in the outer backward pass instead of keeping its activations "
                     "(less memory for long inner loops, same results)", group="inner loop",
                     reads=lambda c: settings.maml_family(c) and c.order == "second",
                     scope="MAML-family learners, second order"),
    settings.Setting("unroll_inner_steps", "integer", None, "inner loops up to this length are "
                     "unrolled into the graph, longer ones run in a tf.while_loop: same results, "
                     "a loop traces in a time flat in its length (default: 4; every step "
                     "with --recompute_inner_steps)", group="inner loop", resumable=True, **_MAML, low=0),
    settings.Setting("vectorize_tasks", "bool", None, "batch the tasks' meta-gradients with "
                     "tf.vectorized_map instead of looping over tasks: same gradients, faster "
                     "for small networks (default: on for sinusoid, off for convolutional "
                     "networks)", group="inner loop",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
    settings.Setting("transductive", "bool", True, "query BatchNorm uses query statistics "
                     "(reference); false: support statistics only", group="inner loop",
                     reads=settings.either(settings.maml_family, settings.trajectory_learner),
                     scope="MAML-family learners; leap, warp_leap (at evaluation)"),
    settings.Setting("outer_reduction", "enum", "sum", "task losses summed (reference) or "
                     "averaged over the meta-batch", choices=("sum", "mean"), group="outer loop",
                     **_MAML),
    settings.Setting("loss_scale", "float", None, "static loss scale (default with float16: "
                     "1024 first order, 32 second order; else 1)", group="runtime",
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=0, low_open=True),
)


def _step_logs(logs):
    """The logs a train/test step returns. Keras 3.15 reduces a multi-worker run's per-replica
    logs with strategy.reduce("MEAN", v, axis=0), which fails on scalars: give them a leading
    axis there (the reduction removes it again)."""
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


_ADVICE = ("lower the inner or outer learning rate (--inner_lr, --outer_lr, --meta_lr) or clip "
           "gradients (--outer_clip, --meta_clip)")


class TraceCounter:
    """Counts Python executions of a traced function body (once per trace)."""

    def __init__(self):
        self.counts = {}

    def hit(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1


@keras.saving.register_keras_serializable(package="wtl_tf")
class MetaLearner(KerasFile, keras.Model):
    """Meta-learns the initialisation of `task_model` and the meta-parameters of `update_rule`.

    Args:
      task_model: a built Keras model mapping inputs to logits (or regression outputs).
      update_rule: a wtl_tf.rules.UpdateRule (usually a Chain) applied in the inner loop.
      options: an InnerLoopOptions (how a task is adapted to); or give its fields as keyword
        arguments (`loss="mse", inner_steps=5`), which override the ones of `options`.
      outer_reduction: "sum" (reference) or "mean" of the task losses in a meta-batch.
      parallel_tasks: tasks of a meta-batch allowed to run concurrently.
      vectorize_tasks: the tasks' meta-gradients with tf.vectorized_map instead of a loop over
        tasks (same gradients; faster for small networks; convolutions with per-task weights
        do not batch, so it is off by default).
      outer: the outer-loop strategy (default: wtl_tf.outer.MetaGradientUpdate).

    `predict(episodes)` adapts to each episode's support set and predicts its queries, as the
    exported SavedModel's `adapt_and_predict` does. A meta-learner is kept as a SavedModel
    (wtl_tf.export) for use without wtl_tf, and as a `.keras` file (`save`,
    `keras.models.load_model`: network, links, options and both optimisers) or weights and
    checkpoints for training.
    """

    progress_unit, step_name, divergence_advice = "meta-iteration", "meta-step", _ADVICE

    def __init__(self, task_model, update_rule, options=None, *, outer_reduction="sum",
                 parallel_tasks=2, vectorize_tasks=False, outer=None, name="meta_learner",
                 **option_fields):
        super().__init__(name=name)
        if not isinstance(update_rule, UpdateRule):
            raise ConfigError(f"update_rule must be a wtl_tf.rules.UpdateRule, got {update_rule!r}")
        if not task_model.built:
            raise ConfigError("build the task network (give it an Input shape) before wrapping it")
        unknown = sorted(set(option_fields) - {f.name for f in dataclasses.fields(
            InnerLoopOptions)})
        if unknown:
            raise TypeError(f"MetaLearner got unknown arguments {unknown}")
        options = dataclasses.replace(options or InnerLoopOptions(), **option_fields)
        if outer_reduction not in ("sum", "mean"):
            raise ConfigError(f"outer_reduction must be 'sum' or 'mean', got {outer_reduction!r}")
        if options.task_batch is not None and update_rule.couples_tasks:
            raise ConfigError("gradient sharing adapts on the whole support set; task_batch "
                              "does not apply to it")
        self.task_model, self.update_rule = task_model, update_rule
        self.loss_name, self.parallel_tasks = options.loss, parallel_tasks
        self._outer_reduction, self._vectorize_tasks = outer_reduction, bool(vectorize_tasks)
        if not options.first_order:
            warn_about_inexact_second_order(task_model)
            warn_about_bias_add_convolutions(task_model)
        adapted = adapted_mask(task_model, options.adapt, options.adapt_batchnorm)
        update_rule.setup([v for v, a in zip(task_model.trainable_variables, adapted) if a])
        self.inner = InnerLoop(task_model, update_rule, options)
        self.runner = self._runner()
        self.outer = outer or MetaGradientUpdate()
        self.trace_counter = TraceCounter()
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (
            "loss", "accuracy", "support_loss", "pre_loss", "pre_accuracy",
            *self.outer.extra_metrics)}
        self.meta_optimizer = None
        self.built = True

    # ----------------------------------------------------------------- settings, read-only
    is_classifier = property(lambda self: self.inner.is_classifier)
    loss_fn = property(lambda self: self.inner.loss_fn)
    inner_steps = property(lambda self: self.inner.inner_steps)
    inner_steps_eval = property(lambda self: self.inner.inner_steps_eval)
    first_order = property(lambda self: self.inner.first_order)
    transductive = property(lambda self: self.inner.transductive)
    task_batch = property(lambda self: self.inner.task_batch)
    seed = property(lambda self: self.inner.seed)
    loss_scale = property(lambda self: self.inner.loss_scale)

    # How the tasks run can change between meta-steps (same gradients, other speed).
    def _runner(self):
        return runners.runner_for(self.update_rule, self._vectorize_tasks, self.parallel_tasks,
                                  self._outer_reduction)

    def _set_vectorize_tasks(self, value):
        self._vectorize_tasks, self.runner = bool(value), None  # (Keras tracks runner)
        self.runner = self._runner()

    def _set_outer_reduction(self, value):
        if value not in ("sum", "mean"):
            raise ConfigError(f"outer_reduction must be 'sum' or 'mean', got {value!r}")
        self._outer_reduction, self.runner = value, None
        self.runner = self._runner()

    vectorize_tasks = property(lambda self: self._vectorize_tasks, _set_vectorize_tasks)
    outer_reduction = property(lambda self: self._outer_reduction, _set_outer_reduction)

    # ----------------------------------------------------------------- variables
    def _variables_at(self, paths):
        by_path = {v.path: v for v in self.task_model.trainable_variables}
        return [by_path[p] for p in paths]

    @property
    def initialization_variables(self):
        """theta: the task network's trainable weights (the meta-learned initialisation),
        warp layers excepted."""
        return self._variables_at(self.inner.initialization_paths)

    @property
    def warp_variables(self):
        """The task network's warp-layer weights (WarpGrad): meta-learned, never adapted."""
        return self._variables_at(self.inner.warp_paths)

    @property
    def meta_variables(self):
        """Meta-parameters with their own optimiser: warp weights, then the rule's masks..."""
        return self.warp_variables + self.update_rule.trainable_variables

    @property
    def adapted_variables(self):
        return self._variables_at(self.inner.adapted_paths)

    # ----------------------------------------------------------------- compile
    def compile(self, optimizer="adam", meta_optimizer="adam", jit_compile=False, **kwargs):
        """`optimizer` updates theta; `meta_optimizer` updates the meta-parameters (warp
        weights, masks, rates)."""
        if self.meta_variables and meta_optimizer is None \
                and not self.outer.updates_meta_parameters:
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
        names = ["loss", "support_loss", "pre_loss"] + (
            ["accuracy", "pre_accuracy"] if self.is_classifier else [])
        return [self.trackers[n] for n in names + list(self.outer.extra_metrics)]

    # ----------------------------------------------------------------- the inner loop
    def read_params(self):
        """The current values of every variable the inner loop reads (a `Params`)."""
        return self.inner.read_params()

    def adapt(self, support_x, support_y, steps=None, first_order=None, task_seed=None,
              evaluation=False, params=None):
        """Runs the inner loop from the current initialisation (or `params`); returns an
        `Adaptation`. Call it inside a `tf.GradientTape` to differentiate the adapted weights
        (second order unless `first_order`); `task_seed` (int64 [2]) fixes the draw of
        stochastic rules; `evaluation` marks meta-test adaptation."""
        return self.inner.adapt(self.read_params() if params is None else params, support_x,
                                support_y, steps, first_order, task_seed, evaluation)

    def predict_adapted(self, adaptation, x):
        """Outputs of the adapted task network on `x` (e.g. the query set)."""
        return self.inner.predict_adapted(adaptation, x)

    def predict_with(self, params, adaptation, x):
        return self.inner.predict_with(params, adaptation, x)

    def adaptation_curve(self, episode, steps, task_seed=None, params=None):
        """Query loss and accuracy after 0, 1, ..., `steps` inner steps: [2, steps + 1]."""
        return self.inner.adaptation_curve(self.read_params() if params is None else params,
                                           episode, steps, task_seed)

    def episode_seed(self, support_x):
        return runners.episode_seed(self.seed, support_x)

    # ----------------------------------------------------------------- meta-batches
    def iteration(self):
        """Meta-updates so far (the stream index of the next meta-batch's draws)."""
        optimizer = getattr(self, "optimizer", None)
        return optimizer.iterations if optimizer is not None else tf.constant(0, tf.int64)

    def task_gradients(self, episode, task_seed=None, params=None):
        """(query loss, accuracy, support loss, {path: outer gradient}) for one episode."""
        params = self.read_params() if params is None else params
        return self.runner.task_gradients(self.inner, episode, task_seed, params)

    def meta_gradients(self, episodes):
        """Outer gradients {variable path: gradient} of theta and the meta-parameters,
        summed (or averaged) over the tasks, plus per-batch metrics."""
        stream = tf.convert_to_tensor(self.iteration()) + 1  # read here, not in the loop
        return self.runner.meta_gradients(self.inner, episodes, self.read_params(), stream)

    def evaluate_tasks(self, episodes, steps=None):
        """Per-task pre- and post-adaptation query loss/accuracy (vectors of length B)."""
        steps = self.inner_steps_eval if steps is None else steps
        return self.runner.evaluate(self.inner, episodes, self.read_params(), steps)

    def evaluation_function(self, steps=None):
        """`evaluate_tasks` as one tf.function per number of steps, shared by validation
        (test_step) and meta_test: a run builds its evaluation graph once."""
        cache = self.__dict__.setdefault("_evaluation_functions", {})  # untracked by Keras
        if steps not in cache:
            cache[steps] = tf.function(lambda episodes: self.evaluate_tasks(episodes, steps),
                                       autograph=False)  # (see wtl_tf.runtime.as_written)
        return cache[steps]

    # ----------------------------------------------------------------- Keras hooks
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # The one override of a Keras private member, for an open Keras bug (keras-team/
        # keras#20329: under MultiWorkerMirroredStrategy `fit` all-reduces the first batch,
        # a dict, and fails). A MetaLearner is built when constructed and compiles no Keras
        # losses or metrics: nothing to build (tests/test_distribute.py's two workers).
        return

    @as_written  # Keras would rewrite them with AutoGraph (wtl_tf.runtime.as_written)
    def train_step(self, data):
        self.trace_counter.hit("train_step")
        logs = self.outer.train_step(self, data)
        names = [n for n in ("loss", "support_loss", "accuracy", *self.outer.extra_metrics)
                 if n in logs and (n != "accuracy" or self.is_classifier)]
        for name in names:
            self.trackers[name].update_state(logs[name])
        return _step_logs({name: self.trackers[name].result() for name in names})

    @as_written
    def test_step(self, data):
        self.trace_counter.hit("test_step")
        per_task = self.evaluation_function()(data)
        for name, values in per_task.items():
            self.trackers[name].update_state(tf.reduce_mean(values))
        return _step_logs({name: self.trackers[name].result() for name in per_task})

    @as_written
    def predict_step(self, data):
        """Adapts to each episode's support set (the evaluation steps, first order, the
        evaluation draw) and predicts its queries, as the exported `adapt_and_predict` does:
        {"logits": [B, Q, ways], "predictions": [B, Q] labels} for classifiers,
        {"predictions": [B, Q, outputs]} for regression."""
        params, steps = self.read_params(), tf.constant(self.inner_steps_eval)

        def one_episode(i):
            episode = runners.episode(data, i)
            adaptation = self.inner.adapt(params, episode["support_x"], episode["support_y"],
                                          steps, True, self.episode_seed(episode["support_x"]),
                                          True)
            return tf.cast(self.inner.predict_adapted(adaptation, episode["query_x"]),
                           tf.float32)

        outputs = tf.map_fn(one_episode, tf.range(tf.shape(data["support_x"])[0]),
                            fn_output_signature=tf.float32)
        if not self.is_classifier:
            return {"predictions": outputs}
        return {"logits": outputs,
                "predictions": tf.argmax(outputs, axis=-1, output_type=tf.int32)}

    def call(self, x, training=False):
        return self.task_model(x, training=training)
