"""Offline WarpGrad ("Warp-Leap", Flennerhag et al., ICLR 2020), docs/algorithms.md.

One meta-iteration (`LeapUpdate.train_step`, the outer strategy of `WarpLeap`), all in
one compiled step:

  trajectories  for each task of the meta-batch, K steps of SGD on the task weights only,
                each on a fresh batch of the task's training data; the weights *before*
                every step go into the buffer (K states per task, the final state never).
  replay        the buffer is shuffled; for each stored state phi_k, with two fresh batches
                b1, b2 of its task, the warp weights take one SGD step on
                    L(b2; phi_k - alpha * grad_phi L(b1; phi_k, w), w)
                (second order in w through the look-ahead; phi_k is a constant), or on
                L(b1; phi_k, w) with `replay="approximate"`. `replay_batch` > 1 averages the
                warp gradients of that many states per update (batched replay).
  leap          theta <- theta - beta_theta * sum_tau sum_k (phi_k - phi_{k+1}) /
                ||phi_k - phi_{k+1}|| / n_tasks (through the compiled theta optimiser;
                plain SGD gives exactly this formula).

The warp weights' SGD runs inside the replay loop with learning rate `warp_lr` (one update
per state or per `replay_batch` states: the reference's plain SGD); theta uses the optimiser
passed to `compile`. Evaluation, export and TensorBoard are the MetaLearner's: adaptation is
K steps of minibatch SGD on the task weights with the warp layers in place.

The buffer holds meta_batch x K copies of the adapted weights (`buffer_bytes`): 20 tasks x
100 steps of the warped Conv4 at 28x28 is 2000 x 113k float32 = 0.9 GB, wherever the step
runs (host memory on a CPU, device memory on a GPU).
"""

import numpy as np
import tensorflow as tf

from wtl_tf import rules, settings
from wtl_tf.errors import ConfigError
from wtl_tf.inner_loop import stream_seed, value_and_gradient
from wtl_tf.learner import MetaLearner
from wtl_tf.runners import episode, meta_batch_size

REPLAY_MODES = ("lookahead", "approximate")
LEAP_SEGMENTS = ("stored", "all")
settings.declare(
    settings.Setting("replay", "enum", "lookahead", "Warp-Leap's warp objective: one-step "
                     "look-ahead (reference) or the loss at the stored state",
                     choices=REPLAY_MODES, group="WarpGrad",
                     reads=settings.trajectory_learner, scope="leap, warp_leap"),
    settings.Setting("replay_batch", "integer", 1, "Warp-Leap: stored states per warp update "
                     "(1: reference)", group="WarpGrad", reads=settings.trajectory_learner,
                     scope="leap, warp_leap", low=1),
    settings.Setting("leap_segments", "enum", "stored", "Leap's initialisation update sums the "
                     "unit step directions between the stored states phi_0..phi_{K-1} (K-1 "
                     "segments, the official code) or over all K steps ('all': "
                     "one step direction per inner step)", choices=LEAP_SEGMENTS, group="WarpGrad",
                     reads=settings.trajectory_learner, scope="leap, warp_leap"),
    settings.Setting("warp_objective", "enum", "online", "Warp-MAML's warp layers: WarpGrad's "
                     "online objective (the look-ahead query loss at each trajectory state, "
                     "held constant; needs the plain scale rule) or backprop through the whole "
                     "inner loop (exact, memory grows with the steps)", choices=("online", "backprop"),
                     group="WarpGrad",
                     reads=lambda c: settings.maml_family(c) and bool(c.warp_layers),
                     scope="MAML-family learners with warp layers (warp_maml)"),
)


class LeapUpdate:
    """The outer strategy of Leap / Warp-Leap: trajectories, warp-layer replay, Leap's theta
    update. Every method takes the learner's InnerLoop (`inner`) and parameter trees."""

    updates_meta_parameters = True  # the warp weights' SGD runs inside the replay
    extra_metrics = ("final_support_loss",)

    def __init__(self, inner_lr, warp_lr, replay="lookahead", replay_batch=1, warp_update=True,
                 leap_update=True, leap_segments="stored"):
        if replay not in REPLAY_MODES:
            raise ConfigError(f"unknown replay {replay!r}; choose one of {REPLAY_MODES}")
        if leap_segments not in LEAP_SEGMENTS:
            raise ConfigError(f"unknown leap_segments {leap_segments!r}; choose one of "
                              f"{LEAP_SEGMENTS}")
        self.leap_segments = leap_segments
        if int(replay_batch) < 1:
            raise ConfigError(f"replay_batch must be >= 1, got {replay_batch}")
        if not warp_lr > 0:
            raise ConfigError(f"the warp learning rate must be > 0, got {warp_lr}")
        self.inner_lr, self.warp_lr = float(inner_lr), float(warp_lr)
        self.replay, self.replay_batch = replay, int(replay_batch)
        self.warp_update, self.leap_update = bool(warp_update), bool(leap_update)
        # Work done in the running step (inner steps, replays weighted by their cost), read
        # by the progress log while the compiled step runs; never checkpointed.
        self.work_done = tf.Variable(0.0, trainable=False, name="step_work_done")
        self.work_total = tf.Variable(0.0, trainable=False, name="step_work_total")

    def step_progress(self):
        """The fraction of the running (or last) meta-step done; None before one starts."""
        total = float(self.work_total.numpy())
        return float(self.work_done.numpy()) / total if total else None

    def trajectory(self, inner, task, params, task_seed, steps=None):
        """K steps of SGD from theta on one task's support set.

        Returns (states, final, leap, first_loss, final_loss), trees keyed by adapted path:
        `states[p]` is a tensor [K, ...] of the tensor before each step (phi_0 = theta ...
        phi_{K-1}); `final` is phi_K (not stored); `leap` is sum_k (phi_k - phi_{k+1}) /
        ||phi_k - phi_{k+1}||, the norm taken over all adapted tensors together, for k < K-1
        (the segments between stored states, as the official code) or k < K
        (leap_segments="all")."""
        steps = inner.inner_steps if steps is None else int(steps)
        segments = steps - 1 if self.leap_segments == "stored" else steps
        paths = inner.adapted_paths
        with inner.rule_values(params):
            theta, state = params.theta, params.state
            rule, adapted = inner.begin(params, task_seed)
            batch_seed = inner.batch_seed(task_seed)

            def body(k, adapted, buffers, leap, losses):
                new, loss = inner.step(rule, theta, state, adapted, task["support_x"],
                                       task["support_y"], k, first_order=True,
                                       batch_seed=batch_seed)
                taken = {p: adapted[p] - new[p] for p in paths}
                norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(taken[p])) for p in paths]))
                counted = tf.cast(k < segments, norm.dtype)
                leap = {p: leap[p] + counted * tf.math.divide_no_nan(taken[p], norm)
                        for p in paths}
                buffers = {p: buffers[p].write(k, adapted[p]) for p in paths}
                return k + 1, new, buffers, leap, losses.write(k, tf.cast(loss, tf.float32))

            buffers = {p: tf.TensorArray(adapted[p].dtype, size=steps,
                                         element_shape=adapted[p].shape) for p in paths}
            _, final, buffers, leap, losses = tf.while_loop(
                lambda k, *_: k < steps, body,
                (tf.constant(0), adapted, buffers, {p: tf.zeros_like(adapted[p]) for p in paths},
                 tf.TensorArray(tf.float32, size=steps)))
            losses = losses.stack()
        return {p: b.stack() for p, b in buffers.items()}, final, leap, losses[0], losses[-1]

    def replay_loss(self, inner, phi, warp, task, params, replay_seed):
        """The warp objective of one stored state `phi` (a constant tree): the look-ahead
        loss L(b2; phi - alpha * grad L(b1; phi, warp), warp), or L(b1; phi, warp) when
        approximate. Differentiable with respect to `warp` ({warp path: tensor})."""
        phi = {p: tf.stop_gradient(t) for p, t in phi.items()}
        theta, state = params.theta, params.state

        def loss(adapted, x, y):
            outputs, _ = inner.forward({**theta, **adapted, **warp}, state, x, True)
            return inner.loss_fn(y, outputs)

        seeds = [tf.random.experimental.stateless_fold_in(replay_seed, i) for i in (1, 2)]
        x1, y1 = inner.support_batch(task["support_x"], task["support_y"], 0, seeds[0])
        if self.replay == "approximate":
            return loss(phi, x1, y1)
        x2, y2 = inner.support_batch(task["support_x"], task["support_y"], 0, seeds[1])
        _, grads = value_and_gradient(lambda: loss(phi, x1, y1), phi, inner.loss_scale)
        ahead = {p: phi[p] - self.inner_lr * grads[p] for p in phi}
        return loss(ahead, x2, y2)

    def warp_gradient(self, inner, phi, warp, task, params, replay_seed):
        """(replay loss, its gradient tree with respect to the warp weights)."""
        warp = {p: tf.identity(w) for p, w in warp.items()}
        return value_and_gradient(
            lambda: self.replay_loss(inner, phi, warp, task, params, replay_seed), warp,
            inner.loss_scale)

    def train_step(self, learner, data):
        inner = learner.inner
        size = meta_batch_size(data)
        if not isinstance(size, int):
            raise ConfigError("Warp-Leap needs a static meta-batch size (drop_remainder=True)")
        steps, stream = inner.inner_steps, tf.convert_to_tensor(learner.iteration()) + 1
        params = learner.read_params()
        replaying = self.warp_update and bool(inner.warp_paths)
        replay_cost = (3.0 if self.replay == "lookahead" else 1.0) if replaying else 0.0
        self.work_done.assign(0.0)
        self.work_total.assign(size * steps * (1.0 + replay_cost))

        def one_task(i):
            states, _, leap, first, last = self.trajectory(
                inner, episode(data, i), params, stream_seed(inner.seed, stream, i))
            with tf.control_dependencies([last]):
                self.work_done.assign_add(float(steps))
            return states, leap, first, last

        specs = {p: tf.TensorSpec(params.theta[p].shape, params.theta[p].dtype)
                 for p in inner.adapted_paths}
        states, leap, first, last = tf.map_fn(
            one_task, tf.range(size), parallel_iterations=learner.runner.parallel_iterations(),
            fn_output_signature=({p: tf.TensorSpec([steps, *s.shape], s.dtype)
                                  for p, s in specs.items()}, specs,
                                 tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32)))
        replay_loss = tf.zeros((), tf.float32)
        if replaying:
            replay_loss = self._replay(learner, data, states, params, stream, replay_cost)
        if self.leap_update:
            grads = [tf.reduce_sum(leap[v.path], axis=0) / size if v.path in leap
                     else tf.zeros(v.shape, v.dtype) for v in learner.initialization_variables]
            learner.optimizer.apply(grads, learner.initialization_variables)
        else:
            learner.optimizer.iterations.assign_add(1)
        return {"loss": replay_loss, "support_loss": tf.reduce_mean(first),
                "final_support_loss": tf.reduce_mean(last)}

    def _replay(self, learner, data, states, params, stream, replay_cost):
        """Shuffled replay of the buffer: SGD on the warp weights, `replay_batch` states per
        update, inside one compiled loop (the warp weights are loop variables)."""
        inner = learner.inner
        size, steps = data["support_x"].shape[0], inner.inner_steps
        total = size * steps
        if total % self.replay_batch:
            raise ConfigError(f"replay_batch {self.replay_batch} does not divide the "
                              f"{total} stored states ({size} tasks x {steps} steps)")
        flat = {p: tf.reshape(s, [total, *s.shape[2:]]) for p, s in states.items()}
        order = tf.argsort(tf.random.stateless_uniform(
            [total], tf.stack([tf.constant(inner.seed, tf.int64), stream * 7919 + 17])))
        order = tf.reshape(order, [total // self.replay_batch, self.replay_batch])
        warp0 = {p: tf.convert_to_tensor(params.theta[p]) for p in inner.warp_paths}

        def state_gradient(index, warp):
            phi = {p: tf.gather(f, index) for p, f in flat.items()}
            seed = tf.stack([tf.constant(inner.seed, tf.int64),
                             stream * 1_000_003 + tf.cast(index, tf.int64) + 5_000_000_000])
            return self.warp_gradient(inner, phi, warp, episode(data, index // steps), params,
                                      seed)

        def body(g, warp, loss_sum):
            group = order[g]
            if self.replay_batch == 1:
                loss, grads = state_gradient(group[0], warp)
            else:
                loss, grads = tf.map_fn(
                    lambda index: state_gradient(index, warp), group,
                    parallel_iterations=learner.runner.parallel_iterations(),
                    fn_output_signature=(tf.TensorSpec([], inner.dtype),
                                         {p: tf.TensorSpec(w.shape, w.dtype)
                                          for p, w in warp.items()}))
                loss, grads = tf.reduce_mean(loss), {p: tf.reduce_mean(x, 0)
                                                     for p, x in grads.items()}
            warp = {p: warp[p] - self.warp_lr * grads[p] for p in warp}
            with tf.control_dependencies([loss]):
                self.work_done.assign_add(self.replay_batch * replay_cost)
            return g + 1, warp, loss_sum + tf.cast(loss, tf.float32)

        _, warp, loss_sum = tf.while_loop(lambda g, *_: g < total // self.replay_batch, body,
                                          (tf.constant(0), warp0, tf.zeros((), tf.float32)))
        for variable in learner.warp_variables:
            variable.assign(warp[variable.path])
        return loss_sum / tf.cast(total // self.replay_batch, tf.float32)


class OnlineWarpUpdate:
    """Warp-MAML as WarpGrad's online algorithm (the paper's Algorithm 1): theta (and any
    rule meta-parameters) take MAML's meta-gradient through the short inner loop, while the
    warp layers w take the WarpGrad objective instead of backpropagating through it,

        J(w) = mean over tasks and stored states phi_k (k < K, constants) of
               L(query; phi_k - alpha * grad L(support; phi_k, w), w),

    the one-step look-ahead query loss, so its cost does not grow with the trajectory. Both
    go through the learner's meta-optimiser (the warp entries replaced)."""

    updates_meta_parameters = False
    extra_metrics = ("warp_objective",)

    def __init__(self, inner_lr):
        self.inner_lr = float(inner_lr)
        self.trajectories = LeapUpdate(inner_lr, warp_lr=1.0, leap_update=False)

    def lookahead_loss(self, inner, phi, warp, task, params):
        """L(query; phi - alpha * grad L(support; phi, w), w), phi held constant."""
        phi = {p: tf.stop_gradient(t) for p, t in phi.items()}
        theta, state = params.theta, params.state

        def loss(adapted, x, y):
            outputs, _ = inner.forward({**theta, **adapted, **warp}, state, x, True)
            return inner.loss_fn(y, outputs)

        _, grads = value_and_gradient(lambda: loss(phi, task["support_x"], task["support_y"]),
                                      phi, inner.loss_scale)
        ahead = {p: phi[p] - self.inner_lr * grads[p] for p in phi}
        return loss(ahead, task["query_x"], task["query_y"])

    def warp_gradients(self, learner, data, params, stream):
        """(J, {warp path: dJ/dw}) over the meta-batch's trajectories."""
        inner = learner.inner
        size, steps = meta_batch_size(data), inner.inner_steps
        warp = {p: tf.convert_to_tensor(params.theta[p]) for p in inner.warp_paths}
        total, grad_sum = tf.zeros((), tf.float32), {p: tf.zeros_like(w) for p, w in warp.items()}
        for i in range(size):
            task = episode(data, i)
            states, *_ = self.trajectories.trajectory(inner, task, params,
                                                      stream_seed(inner.seed, stream, i))

            def body(k, total, grad_sum, task=task, states=states):
                phi = {p: s[k] for p, s in states.items()}
                loss, grads = value_and_gradient(
                    lambda: self.lookahead_loss(inner, phi, warp, task, params), warp,
                    inner.loss_scale)
                return (k + 1, total + tf.cast(loss, tf.float32),
                        {p: grad_sum[p] + grads[p] for p in grad_sum})

            _, total, grad_sum = tf.while_loop(lambda k, *_: k < steps, body,
                                               (tf.constant(0), total, grad_sum))
        count = float(size * steps)
        return total / count, {p: g / count for p, g in grad_sum.items()}

    def train_step(self, learner, episodes):
        if not isinstance(meta_batch_size(episodes), int):
            raise ConfigError("online Warp-MAML needs a static meta-batch size")
        grads, logs = learner.meta_gradients(episodes)
        params = learner.read_params()
        objective, warp_grads = self.warp_gradients(
            learner, episodes, params, tf.convert_to_tensor(learner.iteration()) + 1)
        grads = {**grads, **warp_grads}
        learner.optimizer.apply([grads[v.path] for v in learner.initialization_variables],
                                learner.initialization_variables)
        learner.meta_optimizer.apply([grads[v.path] for v in learner.meta_variables],
                                     learner.meta_variables)
        if "step_means" in logs:
            learner.update_rule.observe(logs["step_means"])
        return {**logs, "warp_objective": objective}


class WarpLeap(MetaLearner):
    """A MetaLearner whose outer strategy is `LeapUpdate`: warp layers by trajectory replay,
    theta by Leap; evaluation, export and TensorBoard are the MetaLearner's (adaptation is K
    steps of minibatch SGD on the task weights with the warp layers in place).

    Args:
      task_model: a built Keras model whose warp layers (wtl_tf.models.WarpLayer) hold the
        warp weights; a model without warp layers gives Leap alone.
      inner_lr: alpha, the task learner's SGD rate.
      inner_steps / inner_steps_eval: K during meta-training / at evaluation.
      task_batch: examples per inner step and per replay batch (None: the whole support set).
      warp_lr: beta, the warp weights' SGD rate in the replay.
      replay: "lookahead" (reference) or "approximate" (no look-ahead step).
      replay_batch: stored states per warp update (1: the reference, one update per state).
      warp_update / leap_update: switch either meta-update off (ablations, tests).
    """

    def __init__(self, task_model, inner_lr=0.1, *, inner_steps=100, inner_steps_eval=None,
                 task_batch=128, warp_lr=0.1, replay="lookahead", replay_batch=1,
                 warp_update=True, leap_update=True, leap_segments="stored", transductive=True,
                 loss="cross_entropy",
                 adapt="all", adapt_batchnorm=True, parallel_tasks=2, unroll_inner_steps=0,
                 loss_scale=1.0, seed=0, support_transform=None, name="warp_leap"):
        if int(inner_steps) < 1:
            raise ConfigError("Warp-Leap needs at least one inner step to fill its buffer")
        outer = LeapUpdate(inner_lr, warp_lr, replay, replay_batch, warp_update, leap_update,
                           leap_segments)
        super().__init__(task_model, rules.chain(rules.Scale(inner_lr)), loss=loss, adapt=adapt,
                         adapt_batchnorm=adapt_batchnorm, inner_steps=inner_steps,
                         inner_steps_eval=inner_steps_eval, first_order=True,
                         transductive=transductive, parallel_tasks=parallel_tasks,
                         unroll_inner_steps=unroll_inner_steps,
                         task_batch=task_batch, loss_scale=loss_scale, seed=seed, outer=outer,
                         support_transform=support_transform, name=name)

    def compile(self, optimizer="sgd", jit_compile=False, **kwargs):
        """`optimizer` applies the Leap update to theta (SGD with beta_theta: the formula);
        the warp weights' SGD is part of the replay (`warp_lr`)."""
        if kwargs.pop("meta_optimizer", None) is not None:
            raise ConfigError("Warp-Leap updates its warp layers by SGD inside the replay "
                              "(warp_lr); it takes no meta_optimizer")
        super().compile(optimizer=optimizer, meta_optimizer=None, jit_compile=jit_compile,
                        **kwargs)

    def buffer_bytes(self, meta_batch_size, steps=None):
        """Bytes the trajectory buffer of one meta-iteration holds."""
        steps = self.inner_steps if steps is None else steps
        per_state = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                        for v in self.adapted_variables)
        return int(meta_batch_size * steps * per_state)

    # The strategy's pieces on this learner's inner loop (tests, tools).
    def trajectory(self, task, params, task_seed, steps=None):
        return self.outer.trajectory(self.inner, task, params, task_seed, steps)

    def replay_loss(self, phi, warp, task, params, replay_seed):
        return self.outer.replay_loss(self.inner, phi, warp, task, params, replay_seed)

    def warp_gradient(self, phi, warp, task, params, replay_seed):
        return self.outer.warp_gradient(self.inner, phi, warp, task, params, replay_seed)

    def step_progress(self):
        return self.outer.step_progress()
