"""Offline WarpGrad ("Warp-Leap", Flennerhag et al., ICLR 2020), ALGORITHMS.md section 2.

One meta-iteration (`WarpLeap.train_step`), all in one compiled step:

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

import keras
import numpy as np
import tensorflow as tf

from wtl_tf import rules, settings
from wtl_tf.errors import ConfigError
from wtl_tf.learner import MetaLearner

REPLAY_MODES = ("lookahead", "approximate")
settings.declare(
    settings.Setting("replay", "enum", "lookahead", "Warp-Leap's warp objective: one-step "
                     "look-ahead (reference) or the loss at the stored state",
                     choices=REPLAY_MODES, group="WarpGrad",
                     reads=settings.trajectory_learner, scope="leap, warp_leap"),
    settings.Setting("replay_batch", "integer", 1, "Warp-Leap: stored states per warp update "
                     "(1: reference)", group="WarpGrad", reads=settings.trajectory_learner,
                     scope="leap, warp_leap"),
)


class WarpLeap(MetaLearner):
    """Meta-learns warp layers by trajectory replay and the initialisation by Leap.

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

    updates_meta_itself = True  # the warp weights' SGD runs inside the replay

    def __init__(self, task_model, inner_lr=0.1, *, inner_steps=100, inner_steps_eval=None,
                 task_batch=128, warp_lr=0.1, replay="lookahead", replay_batch=1,
                 warp_update=True, leap_update=True, loss="cross_entropy",
                 adapt="all", adapt_batchnorm=True, parallel_tasks=2, unroll_inner_steps=0,
                 loss_scale=1.0, seed=0, name="warp_leap"):
        if replay not in REPLAY_MODES:
            raise ConfigError(f"unknown replay {replay!r}; choose one of {REPLAY_MODES}")
        if int(replay_batch) < 1:
            raise ConfigError(f"replay_batch must be >= 1, got {replay_batch}")
        if not warp_lr > 0:
            raise ConfigError(f"the warp learning rate must be > 0, got {warp_lr}")
        if int(inner_steps) < 1:
            raise ConfigError("Warp-Leap needs at least one inner step to fill its buffer")
        super().__init__(task_model, rules.chain(rules.Scale(inner_lr)), loss=loss, adapt=adapt,
                         adapt_batchnorm=adapt_batchnorm, inner_steps=inner_steps,
                         inner_steps_eval=inner_steps_eval, first_order=True,
                         parallel_tasks=parallel_tasks, unroll_inner_steps=unroll_inner_steps,
                         task_batch=task_batch, loss_scale=loss_scale, seed=seed, name=name)
        self.inner_lr, self.warp_lr = float(inner_lr), float(warp_lr)
        self.replay, self.replay_batch = replay, int(replay_batch)
        self.warp_update = bool(warp_update) and bool(self.warp_variables)
        self.leap_update = bool(leap_update)
        self.final_loss_tracker = keras.metrics.Mean(name="final_support_loss")

    def compile(self, optimizer="sgd", jit_compile=False, **kwargs):
        """`optimizer` applies the Leap update to theta (SGD with beta_theta: the formula);
        the warp weights' SGD is part of the replay (`warp_lr`)."""
        if kwargs.pop("meta_optimizer", None) is not None:
            raise ConfigError("Warp-Leap updates its warp layers by SGD inside the replay "
                              "(warp_lr); it takes no meta_optimizer")
        super().compile(optimizer=optimizer, meta_optimizer=None, jit_compile=jit_compile,
                        **kwargs)

    @property
    def metrics(self):
        return super().metrics + [self.final_loss_tracker]

    def buffer_bytes(self, meta_batch_size, steps=None):
        """Bytes the trajectory buffer of one meta-iteration holds."""
        steps = self.inner_steps if steps is None else steps
        per_state = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                        for v in self.adapted_variables)
        return int(meta_batch_size * steps * per_state)

    # ----------------------------------------------------------------- pieces
    def _params_with(self, theta, adapted, warp):
        params = self._merge(theta, adapted)
        for i, value in zip(self._warp_index, warp):
            params[i] = value
        return params

    def _loss(self, theta, state, adapted, warp, x, y):
        outputs, _ = self.forward(self._params_with(theta, adapted, warp), state, x, True)
        return self.loss_fn(y, outputs)

    def trajectory(self, episode, params, task_seed, steps=None):
        """K steps of SGD from theta on one task's support set.

        Returns (states, final, leap, first_loss, final_loss): `states[j]` is a tensor
        [K, ...] of the j-th adapted tensor before each step (phi_0 = theta ... phi_{K-1});
        `final` is phi_K (not stored); `leap` is sum_k (phi_k - phi_{k+1}) /
        ||phi_k - phi_{k+1}||, the norm taken over all adapted tensors together."""
        steps = self.inner_steps if steps is None else int(steps)
        with self.rule_values(params):
            theta, state, rule, adapted, _ = self._begin(params, task_seed)
            batch_seed = self._batch_seed(task_seed)

            def body(k, adapted, buffers, leap, losses):
                new, loss = self._inner_step(rule, theta, state, adapted, episode["support_x"],
                                             episode["support_y"], k, first_order=True,
                                             batch_seed=batch_seed)
                steps_taken = [a - n for a, n in zip(adapted, new)]
                norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(d)) for d in steps_taken]))
                leap = [l + tf.math.divide_no_nan(d, norm) for l, d in zip(leap, steps_taken)]
                buffers = [b.write(k, a) for b, a in zip(buffers, adapted)]
                return k + 1, new, buffers, leap, losses.write(k, tf.cast(loss, tf.float32))

            buffers = [tf.TensorArray(a.dtype, size=steps, element_shape=a.shape)
                       for a in adapted]
            _, final, buffers, leap, losses = tf.while_loop(
                lambda k, *_: k < steps, body,
                (tf.constant(0), adapted, buffers, [tf.zeros_like(a) for a in adapted],
                 tf.TensorArray(tf.float32, size=steps)))
            losses = losses.stack()
        return [b.stack() for b in buffers], final, leap, losses[0], losses[-1]

    def replay_loss(self, phi, warp, episode, params, replay_seed):
        """The warp objective of one stored state `phi` (a constant): the look-ahead loss
        L(b2; phi - alpha * grad L(b1; phi, warp), warp), or L(b1; phi, warp) when
        approximate. Differentiable with respect to `warp`."""
        phi = [tf.stop_gradient(p) for p in phi]
        theta, state = params.theta, params.state
        seeds = [tf.random.experimental.stateless_fold_in(replay_seed, i) for i in (1, 2)]
        x1, y1 = self._support_batch(episode["support_x"], episode["support_y"], 0, seeds[0])
        if self.replay == "approximate":
            return self._loss(theta, state, phi, warp, x1, y1)
        x2, y2 = self._support_batch(episode["support_x"], episode["support_y"], 0, seeds[1])
        with tf.GradientTape() as inner:
            inner.watch(phi)
            objective = self.scaled(self._loss(theta, state, phi, warp, x1, y1))
        grads = self.unscaled(inner.gradient(objective, phi,
                                             unconnected_gradients=tf.UnconnectedGradients.ZERO))
        ahead = [p - self.inner_lr * g for p, g in zip(phi, grads)]
        return self._loss(theta, state, ahead, warp, x2, y2)

    def warp_gradient(self, phi, warp, episode, params, replay_seed):
        """(replay loss, its gradient with respect to the warp weights)."""
        warp = [tf.identity(w) for w in warp]
        with tf.GradientTape() as tape:
            tape.watch(warp)
            loss = self.replay_loss(phi, warp, episode, params, replay_seed)
            objective = self.scaled(loss)
        return loss, self.unscaled(tape.gradient(
            objective, warp, unconnected_gradients=tf.UnconnectedGradients.ZERO))

    # ----------------------------------------------------------------- the meta-iteration
    def train_step(self, data):
        self.trace_counter.hit("train_step")
        size = self._meta_batch_size(data)
        if not isinstance(size, int):
            raise ConfigError("Warp-Leap needs a static meta-batch size (drop_remainder=True)")
        steps, stream = self.inner_steps, tf.convert_to_tensor(self._iteration()) + 1
        params = self.read_params()

        def one_task(i):
            states, _, leap, first, last = self.trajectory(
                self._episode(data, i), params, self._task_seed(stream, i))
            return states, leap, first, last

        adapted_specs = [tf.TensorSpec(v.shape, v.dtype) for v in self.adapted_variables]
        states, leap, first, last = tf.map_fn(
            one_task, tf.range(size), parallel_iterations=self._parallel_tasks(),
            fn_output_signature=([tf.TensorSpec([steps, *s.shape], s.dtype)
                                  for s in adapted_specs], adapted_specs,
                                 tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32)))
        replay_loss = tf.zeros((), tf.float32)
        if self.warp_update:
            replay_loss = self._replay(data, states, params, stream)
        if self.leap_update:
            direction = [tf.reduce_sum(l, axis=0) / size for l in leap]
            grads = [tf.zeros(v.shape, v.dtype) for v in self.initialization_variables]
            position = {j: n for n, j in enumerate(self._theta_index)}
            for j, d in zip(self._adapted_index, direction):
                grads[position[j]] = d
            self.optimizer.apply(grads, self.initialization_variables)
        else:
            self.optimizer.iterations.assign_add(1)
        self.loss_tracker.update_state(replay_loss)
        self.support_loss_tracker.update_state(tf.reduce_mean(first))
        self.final_loss_tracker.update_state(tf.reduce_mean(last))
        return {"loss": self.loss_tracker.result(),
                "support_loss": self.support_loss_tracker.result(),
                "final_support_loss": self.final_loss_tracker.result()}

    def _replay(self, data, states, params, stream):
        """Shuffled replay of the buffer: SGD on the warp weights, `replay_batch` states per
        update, inside one compiled loop (the warp weights are loop variables)."""
        size, steps = data["support_x"].shape[0], self.inner_steps
        total = size * steps
        if total % self.replay_batch:
            raise ConfigError(f"replay_batch {self.replay_batch} does not divide the "
                              f"{total} stored states ({size} tasks x {steps} steps)")
        flat = [tf.reshape(s, [total, *s.shape[2:]]) for s in states]
        order = tf.argsort(tf.random.stateless_uniform(
            [total], tf.stack([tf.constant(self.seed, tf.int64), stream * 7919 + 17])))
        order = tf.reshape(order, [total // self.replay_batch, self.replay_batch])
        warp0 = [tf.convert_to_tensor(params.theta[i]) for i in self._warp_index]

        def state_gradient(index, warp):
            task = index // steps
            episode = self._episode(data, task)
            phi = [tf.gather(f, index) for f in flat]
            seed = tf.stack([tf.constant(self.seed, tf.int64),
                             stream * 1_000_003 + tf.cast(index, tf.int64) + 5_000_000_000])
            return self.warp_gradient(phi, warp, episode, params, seed)

        def body(g, warp, loss_sum):
            group = order[g]
            if self.replay_batch == 1:
                loss, grads = state_gradient(group[0], warp)
            else:
                loss, grads = tf.map_fn(
                    lambda index: state_gradient(index, warp), group,
                    parallel_iterations=self._parallel_tasks(),
                    fn_output_signature=(tf.TensorSpec([], loss_dtype),
                                         [tf.TensorSpec(w.shape, w.dtype) for w in warp]))
                loss, grads = tf.reduce_mean(loss), [tf.reduce_mean(x, 0) for x in grads]
            warp = [w - self.warp_lr * gw for w, gw in zip(warp, grads)]
            return g + 1, warp, loss_sum + tf.cast(loss, tf.float32)

        loss_dtype = self.initialization_variables[0].dtype
        _, warp, loss_sum = tf.while_loop(lambda g, *_: g < total // self.replay_batch, body,
                                          (tf.constant(0), warp0, tf.zeros((), tf.float32)))
        for variable, value in zip(self.warp_variables, warp):
            variable.assign(value)
        return loss_sum / tf.cast(total // self.replay_batch, tf.float32)
