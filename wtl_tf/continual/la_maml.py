"""La-MAML, Sync-La-MAML, C-MAML (Gupta et al. 2020) and sparse-La-MAML, one batch at a time.

`observe(x, y, task)` is docs/continual.md, repeated `glances` times per batch:

    bm = replay_sample(buffer, replay_size) + (x, y);  phi = theta
    for chunk c of (x, y):              # chunk_size examples per inner step (MNIST: 1)
        g = grad_phi CE(phi; c)         # first order: g a constant
        g = clip(g, +-inner_clip)       # optional (the CIFAR file)
        phi = phi - rate * g            # rate = ReLU(alpha) | alpha | a * H(m)
        L_i = CE(phi; bm)
    L = mean_i L_i                      # over every inner step, as the reference code
    clip_norm(grad_theta L), clip_norm(grad_alpha L)
    rates, slow_step (the algorithms that use them, wtl_tf.algorithms):
    learned, rates  (la_maml):        alpha -= eta_alpha grad_alpha; theta -= ReLU(alpha) grad_theta
    learned, fixed  (sync_la_maml):   alpha -= eta_alpha grad_alpha; theta -= eta_theta grad_theta
    fixed, fixed    (c_maml):         alpha stays alpha0;            theta -= eta_theta grad_theta
    masked, rates   (sparse_la_maml): m -= eta_m grad_m;             theta -= a H(m) grad_theta
                     (the mask gates the inner steps and, with gate_slow_update, the slow
                     step; our reconstruction, a setting); with mask_optimizer="adam" the
                     logits take Adam's step at rate eta_m instead. A mask sparsity trace
                     (wtl_tf.continual.placement) freezes the mask and places it at random.

The slow step always takes ReLU of the (already updated) rates, whatever the inner step
uses: both reference files do, so a rate pushed below zero stops its weight instead of
moving it up the gradient. sparse-La-MAML's mask has a step size of its own, eta_m
(`mask_lr`): dL/dm = a * dH/dm * (dL/drate) carries a = alpha0 and the straight-through
factor dH/dm = 1/2 (the same step function as few-shot sparse-MAML), about 0.075 of La-MAML's
dL/dalpha, so with eta_alpha the logits barely leave their initialisation.

Each glance reshuffles the batch (its own seeded generator, checkpointed), draws
min(replay_size, kept) replayed examples, and the batch enters the reservoir during the first
glance of its first pass, after that glance's replay draw: later glances can replay it, as
in the reference.

The rates (alpha, one per weight) or mask logits (m) are the weights of few-shot's links
(`learned_rates`, `binary_mask`: one implementation of the mask, H the straight-through step
function of sparse-MAML), checkpointed with the network; the replay buffer
(wtl_tf.continual.replay) has its own numpy state.
"""

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.continual.learner import StreamLearner
from wtl_tf.continual.placement import RandomPlacement
from wtl_tf.continual.replay import ReservoirBuffer
from wtl_tf.errors import ConfigError
from wtl_tf.rules.elementwise import BinaryMask, LearnedRates
from wtl_tf.step_functions import binary_step

RATES = ("learned", "fixed", "masked")
MASK_OPTIMIZERS = ("sgd", "adam")
SLOW_STEPS = ("rates", "fixed")
# sparse-La-MAML's eta_m, chosen on validation streams (docs/results/continual/validation/).
DEFAULT_MASK_LR = 0.03
# The reference's weights: kaiming-normal (gain sqrt(2), fan in, not truncated), zero biases.
# A config, not an instance, so that every layer deserialises its own initialiser.
REFERENCE_KERNEL_INIT = {"class_name": "VarianceScaling",
                         "config": {"scale": 2.0, "mode": "fan_in",
                                    "distribution": "untruncated_normal"}}


def _mask_controls(learner, optimizer, sparsity_trace, seed):
    """(Adam on the mask logits or None, a RandomPlacement or None) of a built learner."""
    adam = placement = None
    if learner.masked and optimizer == "adam":  # as few-shot sparse-MAML steps its masks
        adam = keras.optimizers.Adam(learner.mask_lr, name="mask_adam")
        adam.build(learner.meta)
    if sparsity_trace is not None:
        if not learner.masked or learner.mask_lr != 0:
            raise ConfigError("a mask sparsity schedule places a frozen random mask: it needs "
                              "the masked learner with --mask_lr=0")
        placement = RandomPlacement(sparsity_trace, [v.path for v in learner.theta],
                                    [m.numpy() for m in learner.meta], seed)
    return adam, placement


class LaMAML(StreamLearner):
    """A continual learner of the La-MAML family around a built Keras classifier."""

    def __init__(self, model, rates="learned", slow_step="rates", *, alpha_init=0.15, alpha_lr=0.3, theta_lr=0.1,
                 glances=5, replay_size=10, memories=200, clip=2.0, inner_clip=None,
                 chunk_size=1, first_order=True, rate_activation="relu", gate_slow_update=True,
                 mask_init="constant", mask_lr=None, class_task=None, seed=0,
                 reservoir="la_maml", mask_optimizer="sgd", mask_sparsity_trace=None):
        super().__init__(name="la_maml_learner")
        if rates not in RATES or slow_step not in SLOW_STEPS:
            raise ConfigError(f"rates must be one of {RATES} and slow_step one of {SLOW_STEPS}, "
                              f"got {rates!r}, {slow_step!r}")
        if rate_activation not in ("relu", "identity"):
            raise ConfigError(f"rate_activation must be relu or identity, got {rate_activation!r}")
        if mask_optimizer not in MASK_OPTIMIZERS:
            raise ConfigError(f"mask_optimizer must be one of {MASK_OPTIMIZERS}, got "
                              f"{mask_optimizer!r}")
        if int(chunk_size) < 1 or int(glances) < 1:
            raise ConfigError("chunk_size and glances must be >= 1")
        self.model, self.rates_kind, self.slow_step = model, rates, slow_step
        self.masked = rates == "masked"
        self.alpha_lr, self.theta_lr = float(alpha_lr), float(theta_lr)
        self.mask_lr = DEFAULT_MASK_LR if mask_lr is None else float(mask_lr)
        self.alpha_init = float(alpha_init)
        self.glances, self.replay_size, self.chunk_size = int(glances), int(replay_size), int(chunk_size)
        self.clip, self.inner_clip = clip, inner_clip
        self.first_order, self.rate_activation = bool(first_order), rate_activation
        self.gate_slow_update = bool(gate_slow_update)
        # Task-masked head (split streams): class c answers only examples of task
        # class_task[c]; the other logits are set to -1e11 in every loss and prediction.
        self.class_task = None if class_task is None else tf.constant(class_task, tf.int64)
        self.theta = list(model.trainable_variables)
        dtype = self.theta[0].dtype
        # The rates or mask logits are the few-shot links' (wtl_tf.rules.elementwise): the
        # binary_mask link's m with H the straight-through step (the scalar rate a = alpha0),
        # or learned_rates' alpha per weight, started at alpha0.
        self.rule = (BinaryMask(init=mask_init, init_value=abs(self.alpha_init)) if self.masked
                     else LearnedRates(init="constant", init_value=self.alpha_init))
        self.rule.setup(self.theta)
        self.meta = list(self.rule.meta)
        if self.masked:  # the initial pattern, checkpointed: how much the stream changed
            self.initial_open = [tf.Variable(binary_step(m), trainable=False,
                                             name=f"initial_open_{i}")
                                 for i, m in enumerate(self.meta)]
        self.mask_adam, self.placement = _mask_controls(self, mask_optimizer,
                                                        mask_sparsity_trace, seed)
        self.buffer = ReservoirBuffer(memories, model.input_shape[1:], seed=seed,
                                      dtype=np.dtype(dtype), acceptance=reservoir)
        self.shuffle_rng = np.random.default_rng([seed, 11])  # the glances' reshuffles
        self.observed = tf.Variable(0, dtype=tf.int64, name="observed_batches")
        # One compiled update per number of look-ahead chunks (the inner loop is unrolled
        # over them; a pass's last, smaller batch has fewer); within one, the meta-batch's
        # length may vary while the buffer fills.
        self._steps = {}

    # ------------------------------------------------------------------ the update rule
    def rates(self, meta):
        """Per-weight inner learning rates from the meta-parameters."""
        if self.masked:
            return [self.alpha_init * self.rule.activation(m) for m in meta]
        if self.rate_activation == "relu":
            return [tf.nn.relu(m) for m in meta]
        return list(meta)

    def forward(self, theta, x):
        outputs, _ = self.model.stateless_call(list(theta), [], x)
        return outputs

    def masked_logits(self, logits, task):
        """Logits with the classes of other tasks at -1e11 (no-op without a class_task)."""
        if self.class_task is None or task is None:
            return logits
        own = tf.equal(self.class_task[None, :], tf.cast(task, tf.int64)[:, None])
        return tf.where(own, logits, tf.constant(-1e11, logits.dtype))

    def classification_loss(self, theta, x, y, task=None):
        logits = self.masked_logits(tf.cast(self.forward(theta, x), self.theta[0].dtype), task)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y, tf.int32), logits=logits))

    def inner_step(self, phi, rates, x, y, task=None):
        """phi - rate * clip(grad CE(phi; x, y)): one look-ahead step on one chunk."""
        with tf.GradientTape() as tape:
            tape.watch(phi)
            support = self.classification_loss(phi, x, y, task)
        grads = tape.gradient(support, phi)
        if self.first_order:
            grads = [tf.stop_gradient(g) for g in grads]
        if self.inner_clip:
            grads = [tf.clip_by_value(g, -self.inner_clip, self.inner_clip) for g in grads]
        return [p - r * g for p, r, g in zip(phi, rates, grads)]

    def meta_loss(self, theta, meta, chunks_x, chunks_y, meta_x, meta_y, chunks_task=None,
                  meta_task=None):
        """L = mean over inner steps of CE(phi_k; meta batch), phi_k after k chunks."""
        rates, phi, losses = self.rates(meta), list(theta), []
        for k in range(chunks_x.shape[0]):
            phi = self.inner_step(phi, rates, chunks_x[k], chunks_y[k],
                                  None if chunks_task is None else chunks_task[k])
            losses.append(self.classification_loss(phi, meta_x, meta_y, meta_task))
        return tf.add_n(losses) / len(losses)

    def adapt(self, x, y, task=None):
        """The fast weights after the look-ahead steps over (x, y), chunk by chunk (the
        exported model's adaptation; graph-safe for any batch size)."""
        rates = self.rates(self.meta)
        chunks = tf.shape(y)[0] // self.chunk_size

        def step(k, phi):
            part = slice(k * self.chunk_size, (k + 1) * self.chunk_size)
            return k + 1, self.inner_step(phi, rates, x[part], y[part],
                                          None if task is None else task[part])

        _, phi = tf.while_loop(lambda k, _: k < chunks, step,
                               (tf.constant(0), [tf.convert_to_tensor(v) for v in self.theta]))
        return phi

    def meta_gradients(self, chunks_x, chunks_y, meta_x, meta_y, chunks_task=None,
                       meta_task=None):
        """(L, grads of theta, grads of the rates / mask logits) at the current values."""
        theta = [tf.convert_to_tensor(v) for v in self.theta]
        meta = [tf.convert_to_tensor(v) for v in self.meta]
        with tf.GradientTape() as tape:
            tape.watch(theta + meta)
            loss = self.meta_loss(theta, meta, chunks_x, chunks_y, meta_x, meta_y, chunks_task,
                                  meta_task)
        grads = tape.gradient(loss, theta + meta,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return loss, grads[:len(theta)], grads[len(theta):]

    def update(self, chunks_x, chunks_y, meta_x, meta_y, chunks_task=None, meta_task=None):
        loss, theta_grads, meta_grads = self.meta_gradients(chunks_x, chunks_y, meta_x, meta_y,
                                                            chunks_task, meta_task)
        if self.clip:
            theta_grads, _ = tf.clip_by_global_norm(theta_grads, self.clip)
            meta_grads, _ = tf.clip_by_global_norm(meta_grads, self.clip)
        if self.rates_kind != "fixed":
            if self.mask_adam is not None:
                self.mask_adam.apply(meta_grads, self.meta)
            else:
                meta_rate = self.mask_lr if self.masked else self.alpha_lr
                for m, g in zip(self.meta, meta_grads):
                    m.assign_sub(meta_rate * g)
        if self.slow_step == "rates" and (not self.masked or self.gate_slow_update):
            # The already-updated rates (the reference's order), never negative.
            steps = [tf.nn.relu(r) for r in self.rates(self.meta)]
            for v, r, g in zip(self.theta, steps, theta_grads):
                v.assign_sub(r * g)
        else:
            for v, g in zip(self.theta, theta_grads):
                v.assign_sub(self.theta_lr * g)
        self.observed.assign_add(1)
        return loss

    # ------------------------------------------------------------------ the stream interface
    def observe(self, x, y, task, first_pass=True):
        """Learns from one incoming batch (`glances` meta-updates, each on a reshuffled
        batch); on the first pass over the stream its examples go to the reservoir during the
        first glance. Returns the last meta-loss."""
        x, y = np.asarray(x, self.buffer.x.dtype), np.asarray(y, np.int64)
        size = (len(y) // self.chunk_size) * self.chunk_size
        if size == 0:
            raise ConfigError(f"a batch of {len(y)} examples has no chunk of {self.chunk_size}")
        if self.placement is not None:
            self.placement.enter(task, self.meta)
        loss, tasks = None, np.full(len(y), task, np.int64)
        for glance in range(self.glances):
            order = self.shuffle_rng.permutation(len(y))
            x, y = x[order], y[order]
            chunks_x = x[:size].reshape(-1, self.chunk_size, *x.shape[1:])
            chunks_y = y[:size].reshape(-1, self.chunk_size)
            replay_x, replay_y, replay_task = self.buffer.sample(
                min(self.replay_size, len(self.buffer)))
            meta_x, meta_y = np.concatenate([replay_x, x]), np.concatenate([replay_y, y])
            inputs = [tf.constant(v) for v in (chunks_x, chunks_y, meta_x, meta_y)]
            if self.class_task is not None:  # each example answers on its own task's logits
                inputs += [tf.constant(tasks[:size].reshape(-1, self.chunk_size)),
                           tf.constant(np.concatenate([replay_task, tasks]))]
            chunks = len(chunks_y)
            if chunks not in self._steps:
                self._steps[chunks] = tf.function(self.update, reduce_retracing=True,
                                                    autograph=False)
            loss = self._steps[chunks](*inputs)
            if first_pass and glance == 0:
                self.buffer.add(x, y, task)
        return float(loss)

    def learn(self, batch):
        """A stream element (x, y, task, first pass): `observe`."""
        x, y, task, first_pass = batch
        return {"loss": self.observe(x.numpy(), y.numpy(), int(task), bool(first_pass))}

    # ------------------------------------------------------------------ export
    def slow_weights(self):
        return [tf.convert_to_tensor(v) for v in self.theta]

    def forward_with(self, weights, x):
        return self.forward(weights, x)

    def fast_weights(self, x, y):
        return self.adapt(x, y)

    # ------------------------------------------------------------------ checkpointing
    def checkpoint_variables(self):
        return [*self.model.weights, *self.meta, *getattr(self, "initial_open", []),
                *(self.mask_adam.variables if self.mask_adam is not None else []),
                self.observed]

    def numpy_state(self):
        return {**{f"buffer_{k}": v for k, v in self.buffer.state().items()},
                "shuffle_rng": self.shuffle_rng.bit_generator.state}

    def restore_numpy_state(self, state):
        self.buffer.restore({k[len("buffer_"):]: v for k, v in state.items()
                             if k.startswith("buffer_")})
        self.shuffle_rng.bit_generator.state = state["shuffle_rng"]

    def mask_factors(self):
        """{layer path: the rates (La-MAML) or a * H(m) (sparse-La-MAML) of each weight}."""
        return {v.path: r for v, r in zip(self.theta, self.rates(self.meta))}

    def logits(self, x, task=None):
        """Logits of the slow weights (task-masked when the head is and `task` is given)."""
        logits = self.model(np.asarray(x, self.buffer.x.dtype), training=False)
        if task is None or self.class_task is None:
            return logits
        return self.masked_logits(logits, np.broadcast_to(task, (len(x),)))

    def accuracy(self, x, y, batch_size=500, task=None):
        correct = 0
        for start in range(0, len(y), batch_size):
            logits = self.logits(x[start:start + batch_size], task)
            correct += int(np.sum(np.argmax(logits, axis=-1) == y[start:start + batch_size]))
        return correct / len(y)

    def mask_sparsity(self):
        """Masked rates: the fraction of weights whose inner and slow steps are masked."""
        if not self.masked:
            return None
        closed = sum(int(np.sum(binary_step(m).numpy() == 0)) for m in self.meta)
        return closed / sum(int(np.prod(m.shape)) for m in self.meta)

    def mask_changes(self):
        """Masked rates: {layer path: fraction of mask entries open/shut differently from
        their initial value} (None without a mask)."""
        if not self.masked:
            return None
        return {v.path: float(np.mean(binary_step(m).numpy() != o.numpy()))
                for v, m, o in zip(self.theta, self.meta, self.initial_open)}

