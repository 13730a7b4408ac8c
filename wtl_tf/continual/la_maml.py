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

The rates are the weights of a chain of few-shot links (wtl_tf.continual.look_ahead; the
family's own: `learned_rates` for alpha, `masked_rates` for a * H(m), H the straight-through
step of sparse-MAML; `--update_rules` gives another chain, e.g. a mask on learned rates, and
the slow step then takes ReLU of the product of the chain's factors). Mask logits step at
eta_m, every other meta-learned weight at eta_alpha. They are checkpointed with the network;
the replay buffer (wtl_tf.continual.replay) has its own numpy state.
"""

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.continual.learner import StreamLearner, keeps_config
from wtl_tf.continual.look_ahead import LookAhead, default_links
from wtl_tf.continual.placement import RandomPlacement
from wtl_tf.continual.replay import ReservoirBuffer
from wtl_tf.errors import ConfigError
from wtl_tf.rules.base import Chain
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
        adam.build(learner.masks)
    if sparsity_trace is not None:
        if not learner.masked or learner.mask_lr != 0:
            raise ConfigError("a mask sparsity schedule places a frozen random mask: it needs "
                              "a mask link with --mask_lr=0")
        placement = RandomPlacement(sparsity_trace, learner.mask_paths,
                                    [m.numpy() for m in learner.masks], seed)
    return adam, placement


class LaMAML(LookAhead, StreamLearner):
    """A continual learner of the La-MAML family around a built Keras classifier.

    `rule` (an UpdateRule or a list of links; default: the `rates` kind's own) is the inner
    loop's chain, run by the core's InnerLoop one chunk per step; `rates` says whether its
    weights are meta-learned ("learned", "masked") or stay ("fixed")."""

    @keeps_config
    def __init__(self, model, rates="learned", slow_step="rates", *, rule=None, alpha_init=0.15,
                 alpha_lr=0.3, theta_lr=0.1, glances=5, replay_size=10, memories=200, clip=2.0,
                 inner_clip=None, chunk_size=1, first_order=True, rate_activation="relu",
                 gate_slow_update=True, mask_init="constant", mask_lr=None, class_task=None,
                 seed=0, reservoir="la_maml", mask_optimizer="sgd", mask_sparsity_trace=None):
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
        self.rates_kind, self.slow_step = rates, slow_step
        self.alpha_lr, self.theta_lr = float(alpha_lr), float(theta_lr)
        self.mask_lr = DEFAULT_MASK_LR if mask_lr is None else float(mask_lr)
        self.alpha_init = float(alpha_init)
        self.glances, self.replay_size, self.chunk_size = int(glances), int(replay_size), int(chunk_size)
        self.clip, self.inner_clip = clip, inner_clip
        self.gate_slow_update = bool(gate_slow_update)
        links = (default_links(rates, self.alpha_init, mask_init, rate_activation)
                 if rule is None else list(rule.links if isinstance(rule, Chain) else
                                           rule if isinstance(rule, (list, tuple)) else [rule]))
        self.build_look_ahead(model, links, inner_clip, class_task, first_order, seed,
                              slow_step_rates=slow_step == "rates")
        # Mask logits step at eta_m (`mask_lr`), rates and other links' weights at eta_alpha.
        self.masked = bool(self.masks)
        if rates == "masked" and not self.masked:
            raise ConfigError("rates='masked' needs a mask link in the chain (binary_mask, "
                              "masked_rates)")
        if self.masked:  # the initial pattern, checkpointed: how much the stream changed
            self.initial_open = [tf.Variable(binary_step(m), trainable=False,
                                             name=f"initial_open_{i}")
                                 for i, m in enumerate(self.masks)]
        self.mask_adam, self.placement = _mask_controls(self, mask_optimizer,
                                                        mask_sparsity_trace, seed)
        dtype = self.theta[0].dtype
        self.buffer = ReservoirBuffer(memories, model.input_shape[1:], seed=seed,
                                      dtype=np.dtype(dtype), acceptance=reservoir)
        self.shuffle_rng = np.random.default_rng([seed, 11])  # the glances' reshuffles
        self.observed = tf.Variable(0, dtype=tf.int64, name="observed_batches")
        # One compiled update per number of look-ahead chunks (the inner loop is unrolled
        # over them; a pass's last, smaller batch has fewer); within one, the meta-batch's
        # length may vary while the buffer fills.
        self._steps = {}

    def update(self, chunks_x, chunks_y, meta_x, meta_y, chunks_task=None, meta_task=None):
        loss, theta_grads, meta_grads = self.meta_gradients(chunks_x, chunks_y, meta_x, meta_y,
                                                            chunks_task, meta_task)
        if self.clip:
            theta_grads, _ = tf.clip_by_global_norm(theta_grads, self.clip)
            meta_grads, _ = tf.clip_by_global_norm(meta_grads, self.clip)
        if self.rates_kind != "fixed":
            masks = [(m, g) for m, g in zip(self.meta, meta_grads) if _among(m, self.masks)]
            if self.mask_adam is not None:
                self.mask_adam.apply([g for _, g in masks], [m for m, _ in masks])
            else:
                for m, g in masks:
                    m.assign_sub(self.mask_lr * g)
            for m, g in zip(self.meta, meta_grads):
                if not _among(m, self.masks):
                    m.assign_sub(self.alpha_lr * g)
        if self.slow_step == "rates" and (not self.masked or self.gate_slow_update):
            # The already-updated rates (the reference's order), never negative.
            factors = self.rule.factors()
            for v, g in zip(self.theta, theta_grads):
                v.assign_sub(tf.nn.relu(factors[v.path]) * g)
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
            self.placement.enter(task, self.masks)
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
        return self.rule.factors()

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
        closed = sum(int(np.sum(binary_step(m).numpy() == 0)) for m in self.masks)
        return closed / sum(int(np.prod(m.shape)) for m in self.masks)

    def mask_changes(self):
        """Masked rates: {layer path: fraction of mask entries open/shut differently from
        their initial value} (None without a mask)."""
        if not self.masked:
            return None
        return {path: float(np.mean(binary_step(m).numpy() != o.numpy()))
                for path, m, o in zip(self.mask_paths, self.masks, self.initial_open)}



def _among(variable, variables):
    return any(variable is v for v in variables)
