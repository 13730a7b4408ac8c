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

Each glance reshuffles the batch, draws min(replay_size, kept) replayed examples, and the
batch enters the reservoir during the first glance of its first pass, after that glance's
replay draw: later glances can replay it, as in the reference.

The rates are the weights of a chain of few-shot links (wtl_tf.continual.look_ahead; the
family's own: `learned_rates` for alpha, `masked_rates` for a * H(m), H the straight-through
step of sparse-MAML; `--update_rules` gives another chain, e.g. a mask on learned rates, and
the slow step then takes ReLU of the product of the chain's factors). Mask logits step at
eta_m, every other meta-learned weight at eta_alpha. They are checkpointed with the network,
as is the replay memory (wtl_tf.continual.replay).

A stream step is one traced function: the replay memory is tf.Variables, and the step's random
choices (reshuffles, replayed rows, reservoir slots) come with the batch, drawn on the host from
the stream's batch sizes (`stream_dataset`), so the learner keeps no host-side state.
"""

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.continual.learner import StreamLearner, keeps_config
from wtl_tf.continual.look_ahead import LookAhead, default_links
from wtl_tf.continual.placement import RandomPlacement
from wtl_tf.continual.replay import ReplayDraws, ReplayMemory, draws_spec
from wtl_tf.data.generated import counted, generated
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

    traced = True

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
        self.memory = ReplayMemory(memories, model.input_shape[1:], dtype)
        self.draws = ReplayDraws(memories, self.replay_size, self.glances, seed, reservoir)
        self.observed = tf.Variable(0, dtype=tf.int64, name="observed_batches")
        self._observe_step = tf.function(self.stream_step, autograph=False)
        # The batch sizes a traced step may meet when its input shape is not static (a
        # stream whose last batch of a task is smaller): one branch each.
        self.batch_sizes = ()

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
    def stream_step(self, x, y, task, first_pass, orders, picks, counts, slots):
        """One incoming batch (graph-safe): `glances` meta-updates, each on the batch
        reshuffled by `orders[g]` with the replayed rows picks[g, :counts[g]]; the batch goes
        to the reservoir at `slots` after the first glance. Returns the last meta-loss."""
        n = x.shape[0]
        if n is None:  # a traced step over batches of several sizes: one branch per size
            if not self.batch_sizes:
                raise ConfigError("a La-MAML step over batches of unknown size needs the "
                                  "stream's batch sizes: learn from learner.stream_dataset()")
            branches = [lambda n=n: self.stream_step(
                tf.ensure_shape(x, [n, *x.shape[1:]]), tf.ensure_shape(y, [n]), task,
                first_pass, tf.ensure_shape(orders, [self.glances, n]), picks, counts,
                tf.ensure_shape(slots, [n])) for n in self.batch_sizes]
            index = tf.argmax(tf.cast(tf.equal(tf.constant(self.batch_sizes, tf.int64),
                                               tf.shape(y, out_type=tf.int64)[0]), tf.int64))
            return tf.switch_case(tf.cast(index, tf.int32), branches)
        size = (n // self.chunk_size) * self.chunk_size
        if size == 0:
            raise ConfigError(f"a batch of {n} examples has no chunk of {self.chunk_size}")
        if self.placement is not None:
            self.placement.enter(task, self.masks)
        x, y = tf.cast(x, self.memory.x.dtype), tf.cast(y, tf.int64)
        tasks = tf.fill([n], tf.cast(task, tf.int64))

        def glance(g, x, y, _):
            # In a tf.while_loop, so that the meta-update is traced once, not once per glance.
            x, y = tf.gather(x, orders[g]), tf.gather(y, orders[g])
            chunks_x = tf.reshape(x[:size], [-1, self.chunk_size, *x.shape[1:]])
            chunks_y = tf.reshape(y[:size], [-1, self.chunk_size])
            replay_x, replay_y, replay_task = self.memory.read(picks[g, :counts[g]])
            inputs = [chunks_x, chunks_y, tf.concat([replay_x, x], 0),
                      tf.concat([replay_y, y], 0)]
            if self.class_task is not None:  # each example answers on its own task's logits
                inputs += [tf.reshape(tasks[:size], [-1, self.chunk_size]),
                           tf.concat([replay_task, tasks], 0)]
            loss = self.update(*inputs)
            with tf.control_dependencies([loss]):
                tf.cond(tf.equal(g, 0), lambda: self.memory.add(x, y, task, slots, first_pass),
                        tf.no_op)
            return g + 1, x, y, loss

        loss = tf.zeros([], self.memory.x.dtype)
        return tf.while_loop(lambda g, *_: g < self.glances, glance,
                             (tf.constant(0, tf.int64), x, y, loss))[-1]

    def observe(self, x, y, task, first_pass=True):
        """Learns from one incoming batch given as arrays, with the learner's own draws (they
        start at the stream's beginning: a restored learner goes on through
        `stream_dataset`). Returns the last meta-loss."""
        if self.draws.seen != int(self.memory.seen.numpy()):
            raise ConfigError("observe() draws from the stream's beginning, and this learner's "
                              "memory has seen other examples (it was restored or fitted): "
                              "continue with fit(learner.stream_dataset(stream, ...))")
        x, y = np.asarray(x, self.memory.x.dtype.as_numpy_dtype), np.asarray(y, np.int64)
        draws = self.draws.next(len(y), first_pass)
        return float(self._observe_step(x, y, tf.constant(task, tf.int64),
                                        tf.constant(bool(first_pass)), *draws))

    def stream_dataset(self, stream, batch_size, passes=1, start=0):
        """`stream.dataset(batch_size, passes, start)` with each step's replay draws: what
        `fit` learns from. The draws of the steps before `start` are drawn and dropped."""
        steps = stream.step_sizes(batch_size, passes)
        self.batch_sizes = tuple(sorted({n for n, _ in steps}))
        draws = self.draws.restarted().skip(steps[:start])

        def step_draws():
            for n, first_pass in steps[start:]:
                yield draws.next(n, first_pass)

        n = self.batch_sizes[0] if len(self.batch_sizes) == 1 else None
        batches = stream.dataset(batch_size, passes, start)
        if n is not None:
            batches = batches.map(lambda x, y, t, f: (tf.ensure_shape(x, [n, *x.shape[1:]]),
                                                      tf.ensure_shape(y, [n]), t, f))
        count = len(steps) - start
        return counted(tf.data.Dataset.zip((batches, generated(
            step_draws, draws_spec(self.glances, self.replay_size, n), count))), count)

    def learn(self, batch):
        """A stream element ((x, y, task, first pass), draws): `stream_step`."""
        if len(batch) != 2:
            raise ConfigError("a La-MAML learner learns from learner.stream_dataset(stream, "
                              "batch_size, passes): its elements carry the replay draws")
        return {"loss": self.stream_step(*batch[0], *batch[1])}

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
                self.observed, *self.memory.variables]

    def mask_factors(self):
        """{layer path: the rates (La-MAML) or a * H(m) (sparse-La-MAML) of each weight}."""
        return self.rule.factors()

    def logits(self, x, task=None):
        """Logits of the slow weights (task-masked when the head is and `task` is given)."""
        logits = self.model(np.asarray(x, self.memory.x.dtype.as_numpy_dtype), training=False)
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
