"""OSAKA's Continual-MAML (Caccia et al. 2020) and its sparse variant, one stream batch at a time
(the stream: wtl_tf.continual.osaka_stream).

Continual-MAML, per step t with batch B_t (first order, as the best OSAKA configurations):

    acc_t, L_pre = accuracy and loss of phi_{t-1} on B_t        (before its labels are used)
    phi_t = adapt(start, B_t)          start: theta; `accumulate`: phi_{t-1}, theta after a boundary
    L_post = loss(phi_t; B_t);  boundary = L_pre - L_post >= gamma
    plain:      if not boundary: theta <- Adam(grad_theta w * L(adapt(theta, B_{t-1}); B_t))
    accumulate: same-task batches are buffered; on (boundary and a buffer) or more than
                2 N K buffered images: first half support, second half query, one weighted
                Adam step on theta; the buffer is cleared
    w = 1 - exp(-lambda L_pre) (`loss_smooth`), 1[L_pre > lambda] (`loss`), or 1 (`none`).

The fast step is the core's inner loop (wtl_tf.inner_loop.InnerLoop) over a chain of links:
Continual-MAML's own is `tensor_exp_rates` (alpha = exp(r), one r per tensor, learned with
`learn_inner_lr`); sparse-C-MAML (our reconstruction, cf. the `sparse_maml` branch) puts
`binary_mask` before it, so phi <- phi - (alpha * H(m)) * grad, H the library's
straight-through step (dH/dm = 1/2, as few-shot sparse-MAML), m per weight (or per tensor,
`mask="per_tensor"`); theta is not gated. A chain of factor links runs as one factor, their
product (rules.FactorChain, the reference's form; `--update_rules=binary_mask,learned_rates`
too); a chain with any other link runs link after link. Adam updates
theta, the chain's meta-learned weights and m, in pretraining (`pretrain`) and in every slow
update, the masks at a rate of their own (`mask_lr`, wtl_tf.continual.masked_adam). Tensors
whose gradient is cancelled — a bias feeding a batch-statistics BatchNorm — get no mask (a
mask link is set up on the other tensors): nothing could teach it. Metric: the online
cumulative accuracy (1/T) sum_t acc_t, overall and per mode, and the boundary detector's
precision and recall.

A stream step is one traced function (`stream_step`): the buffered batches and the previous
batch are variables, the boundary and the slow update are graph conditionals, and the step's
record (accuracy, losses, boundary, weight, updated) comes back as its logs, which the run's
`OnlineRecords` callback keeps as the history the metrics read.
"""

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.continual.learner import StreamLearner, keeps_config
from wtl_tf.continual.masked_adam import MaskedAdam
from wtl_tf.continual.osaka_stream import (  # noqa: F401  (the stream's names, here too)
    MODE_PROBABILITIES, MODES, OOD1_ALPHABETS, OOD2_ALPHABETS, PRETRAIN_ALPHABETS, OsakaStream,
    as_record, boundary_scores, mnist_classes, online_accuracy, osaka_stream)
from wtl_tf.errors import ConfigError
from wtl_tf.inner_loop import InnerLoop, Params, value_and_gradient
from wtl_tf.inner_options import InnerLoopOptions
from wtl_tf.models.layers import BatchNorm
from wtl_tf.rules.base import Chain, UpdateRule, fused
from wtl_tf.rules.elementwise import BinaryMask, ExpRates
from wtl_tf.step_functions import binary_step

# sparse-C-MAML's mask Adam rate, chosen on validation streams (docs/results/continual/validation/).
DEFAULT_MASK_LR = 1e-3


class ContinualMAML(StreamLearner):
    """Continual-MAML and sparse-C-MAML around a built (ideally MAML-pretrained) classifier."""

    traced = True  # the buffered and previous batches are variables

    @keeps_config
    def __init__(self, model, *, rule=None, inner_lr=0.1, inner_steps=8, meta_lr=1e-4,
                 gamma=2.5, lam=0.25, modulation="loss_smooth", accumulate=True, mask=None,
                 mask_init="constant", mask_lr=None, learn_inner_lr=True, ways=10, shots=5):
        super().__init__(name="continual_maml")
        if modulation not in ("loss_smooth", "loss", "none"):
            raise ConfigError(f"modulation must be loss_smooth, loss or none, got {modulation!r}")
        if mask not in (None, "per_weight", "per_tensor"):
            raise ConfigError(f"mask must be None, per_weight or per_tensor, got {mask!r}")
        self.model, self.inner_steps = model, int(inner_steps)
        self.gamma, self.lam, self.modulation = float(gamma), float(lam), modulation
        self.accumulate = bool(accumulate)
        self.buffer_limit = 2 * ways * shots
        self.theta = list(model.trainable_variables)
        self.state = list(model.non_trainable_variables)
        links = (default_links(inner_lr, mask, mask_init, learn_inner_lr) if rule is None else
                 list(rule.links if isinstance(rule, Chain) else
                      rule if isinstance(rule, (list, tuple)) else [rule]))
        # A mask link is set up on the tensors a mask can teach; every other link on all.
        cancelled = biases_cancelled_by_normalization(model)
        teachable = [v for v in self.theta if v.path not in cancelled]
        for link in links:
            link.setup(teachable if link.is_mask else self.theta)
        self.rule = fused(links)
        UpdateRule.setup(self.rule, self.theta)
        self.inner = InnerLoop(model, self.rule, InnerLoopOptions(
            loss="cross_entropy", first_order=True, inner_steps=self.inner_steps,
            unroll_inner_steps=0))  # every step in one graph loop: traced once
        mask_links = [link for link in links if link.is_mask]
        self.mask_kind = (mask if rule is None else None if not mask_links else "per_tensor"
                          if all(getattr(link, "per_tensor", False) for link in mask_links)
                          else "per_weight")
        self.masks = [m for link in mask_links for m in link.trainable_weights]
        self.mask_paths = [p for link in mask_links for p in link.param_paths]
        mask_ids = {id(m) for m in self.masks}
        self.rule_meta = [w for w in self.rule.trainable_weights if id(w) not in mask_ids]
        self.initial_open = [keras.Variable(binary_step(m), trainable=False,
                                            name=f"initial_open_{i}")
                             for i, m in enumerate(self.masks)]
        self.meta_parameters = self.theta + self.rule_meta + self.masks
        self.mask_lr = DEFAULT_MASK_LR if mask_lr is None else float(mask_lr)
        self.meta_optimizer = MaskedAdam(meta_lr, self.mask_lr, self.meta_parameters, self.masks)
        self.fast = [keras.Variable(tf.convert_to_tensor(v), trainable=False, name=f"fast_{i}")
                     for i, v in enumerate(self.theta)]  # phi_{t-1}
        # The stream-side state as variables of a varying first dimension, so that a stream
        # step is one traced function: the batches buffered since the last slow update
        # (`accumulate`), the previous batch (plain), and how many steps were observed.
        image_shape, x_dtype = model.input_shape[1:], model.inputs[0].dtype
        self.buffered_x, self.buffered_y, self.previous_x, self.previous_y = (
            tf.Variable(tf.zeros([0, *shape], d), shape=[None, *shape], trainable=False,
                        name=name)
            for name, shape, d in (("buffered_x", image_shape, x_dtype), ("buffered_y", (), "int64"),
                                   ("previous_x", image_shape, x_dtype), ("previous_y", (), "int64")))
        self.buffered_count, self.previous_count = (
            tf.Variable(0, trainable=False, name=name)
            for name in ("buffered_count", "previous_count"))
        self.observed = tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                    name="observed_steps")
        self._observe_step = tf.function(self.stream_step, reduce_retracing=True,
                                          autograph=False)
        # Pretraining and evaluation compile their pieces (the stream step is one function).
        self._compiled_adapt = tf.function(self._adapt, reduce_retracing=True,
                                           autograph=False)
        self._compiled_loss = tf.function(self.loss_and_accuracy, reduce_retracing=True,
                                          autograph=False)
        self._compiled_meta_gradients = tf.function(self._meta_gradients, reduce_retracing=True,
                                                    autograph=False)

    # ------------------------------------------------------------------ pieces
    def params(self, weights, meta=None):
        """The inner loop's Params: `weights` the network's (a list in theta's order), the
        chain's weights as they are, or `meta` for its meta-learned ones (rule_meta, then
        masks: meta_parameters' order after theta)."""
        rule = {w.path: tf.convert_to_tensor(w) for w in self.rule.weights}
        if meta is not None:
            rule.update({w.path: m for w, m in zip(self.rule_meta + self.masks, meta)})
        return Params(dict(zip(self.inner.theta_paths, weights)),
                      {v.path: tf.convert_to_tensor(v) for v in self.state}, rule)

    def loss_and_accuracy(self, weights, x, y):
        logits = self.forward_with(weights, x)  # the inner loop's forward pass
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y, tf.int32), logits=tf.cast(logits, tf.float32)))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64)),
                                          tf.float32))
        return loss, accuracy

    def adapt(self, start, x, y):
        """`inner_steps` first-order steps of the chain from `start` on (x, y) (compiled)."""
        return self._compiled_adapt([tf.convert_to_tensor(v) for v in start], x, y)

    def _adapt(self, start, x, y, meta=None):
        adaptation = self.inner.adapt(self.params(start, meta), x, y)
        return [adaptation.params[p] for p in self.inner.theta_paths]

    def weight(self, loss_pre):
        """The slow update's weight w of a step whose loss before adaptation is `loss_pre`
        (float64, as the reference computes it from the loss)."""
        loss_pre = tf.cast(loss_pre, tf.float64)
        if self.modulation == "loss_smooth":
            return 1.0 - tf.exp(-self.lam * loss_pre)
        if self.modulation == "loss":
            return tf.cast(loss_pre > self.lam, tf.float64)
        return tf.ones([], tf.float64)

    def _meta_gradients(self, support_x, support_y, query_x, query_y, weight):
        sources = [tf.convert_to_tensor(v) for v in self.meta_parameters]
        theta, meta = sources[:len(self.theta)], sources[len(self.theta):]

        def weighted_query_loss():
            fast = self._adapt(theta, support_x, support_y, meta)
            loss, _ = self.loss_and_accuracy(fast, query_x, query_y)
            return weight * loss, loss

        (_, loss), grads = value_and_gradient(weighted_query_loss, sources)
        return loss, grads

    def meta_update(self, support, query, weight):
        """One weighted Adam step on theta (and the rates and masks): the first-order MAML
        loss of adapting on `support` and answering `query`. Returns True (graph-safe)."""
        _, grads = self._meta_gradients(*support, *query, tf.cast(weight, tf.float32))
        self.meta_optimizer.apply(grads, self.meta_parameters)
        return tf.constant(True)

    # ------------------------------------------------------------------ the stream
    def stream_step(self, x, y):
        """One stream step (graph-safe); returns its record: accuracy and loss before
        adaptation, loss after, boundary, weight, whether theta was updated."""
        x, y = tf.convert_to_tensor(x, self.buffered_x.dtype), tf.cast(y, tf.int64)
        previous_fast = [tf.convert_to_tensor(v) for v in self.fast]
        loss_pre, accuracy = self.loss_and_accuracy(previous_fast, x, y)
        theta = [tf.convert_to_tensor(v) for v in self.theta]
        fast = self._adapt(previous_fast if self.accumulate else theta, x, y)
        loss_post, _ = self.loss_and_accuracy(fast, x, y)
        # In float64, as the reference compares the two losses.
        boundary = tf.logical_and(self.observed > 0, tf.cast(loss_pre, tf.float64) - tf.cast(
            loss_post, tf.float64) >= self.gamma)
        if self.accumulate:  # a new task: start again from theta
            fast = tf.cond(boundary, lambda: self._adapt(theta, x, y), lambda: fast)
        weight = self.weight(loss_pre)
        if self.accumulate:
            # Sizes come from the counts, never from the variables' shapes: the graph
            # optimiser may read a shape after a later assign has changed it.
            count, xs, ys = (tf.identity(v) for v in (self.buffered_count, self.buffered_x,
                                                       self.buffered_y))
            flush = tf.logical_and(count > 0,
                                   tf.logical_or(boundary, count > self.buffer_limit))
            half = count // 2
            updated = tf.cond(tf.logical_and(flush, half > 0), lambda: self.meta_update(
                (xs[:half], ys[:half]), (xs[half:count], ys[half:count]), weight),
                lambda: tf.constant(False))
            keep = tf.where(flush, 0, count)  # a flush empties the buffer
            with tf.control_dependencies([updated]):
                self.buffered_x.assign(tf.concat([xs[:keep], x], 0))
                self.buffered_y.assign(tf.concat([ys[:keep], y], 0))
                self.buffered_count.assign(keep + tf.size(y))
        else:
            count, previous_x, previous_y = (tf.identity(v) for v in (
                self.previous_count, self.previous_x, self.previous_y))
            updated = tf.cond(
                tf.logical_and(count > 0, tf.logical_not(boundary)),
                lambda: self.meta_update((previous_x[:count], previous_y[:count]), (x, y),
                                         weight),
                lambda: tf.constant(False))
            with tf.control_dependencies([updated]):
                self.previous_x.assign(x)
                self.previous_y.assign(y)
                self.previous_count.assign(tf.size(y))
        for variable, value in zip(self.fast, fast):
            variable.assign(value)
        self.observed.assign_add(1)
        return {"accuracy": accuracy, "loss_pre": loss_pre, "loss_post": loss_post,
                "boundary": boundary, "weight": weight, "updated": updated}

    def observe(self, x, y):
        """One stream step given as arrays; returns its record (Python numbers)."""
        record = self._observe_step(np.asarray(x, self.buffered_x.dtype.as_numpy_dtype),
                                    np.asarray(y, np.int64))
        return as_record(record)

    def learn(self, batch):
        """A stream element (x, y): `stream_step`; logs its record, the loss before
        adaptation as "loss"."""
        record = self.stream_step(*batch)
        return {**record, "loss": record["loss_pre"]}

    # ------------------------------------------------------------------ export
    def slow_weights(self):
        return [tf.convert_to_tensor(v) for v in self.theta]

    def forward_with(self, weights, x):
        return self.inner.forward(dict(zip(self.inner.theta_paths, weights)),
                                  {v.path: tf.convert_to_tensor(v) for v in self.state}, x,
                                  True)[0]

    def fast_weights(self, x, y):
        return self._adapt(self.slow_weights(), x, y)

    # ------------------------------------------------------------------ checkpointing
    def checkpoint_variables(self):
        rule = [w for w in self.rule.weights if all(w is not m for m in self.masks)]
        return [*self.theta, *self.state, *rule, *self.masks, *self.initial_open,
                *self.fast, self.buffered_x, self.buffered_y, self.buffered_count,
                self.previous_x, self.previous_y, self.previous_count, self.observed]

    def checkpoint_objects(self):
        return self.meta_optimizer.checkpoint_objects()

    def mask_factors(self):
        """{layer path: the chain's multiplier of the gradient (alpha * H(m)) of each weight /
        tensor}."""
        return self.rule.factors()

    def masked_paths(self):
        return list(self.mask_paths)

    def mask_sparsity(self):
        """The fraction of masked entries shut (tensors without a mask not counted)."""
        if not self.masks:
            return None
        closed = sum(int(np.sum(binary_step(m).numpy() == 0)) for m in self.masks)
        return closed / sum(max(1, int(np.prod(m.shape))) for m in self.masks)

    def mask_changes(self):
        """{layer path: fraction of mask entries open/shut differently from their initial
        value} (None without masks)."""
        if not self.masks:
            return None
        return {path: float(np.mean(binary_step(m).numpy() != o.numpy()))
                for path, m, o in zip(self.masked_paths(), self.masks, self.initial_open)}

    def mark_initial_masks(self):
        """Takes the current masks as the reference of `mask_changes` (after pretraining)."""
        for o, m in zip(self.initial_open, self.masks):
            o.assign(binary_step(m))

    def episode_accuracy(self, episodes):
        """Mean query accuracy after adapting theta on each episode's support set."""
        theta = [tf.convert_to_tensor(v) for v in self.theta]
        scores = [float(self._compiled_loss(self.adapt(theta, sx, sy), qx, qy)[1])
                  for sx, sy, qx, qy in episodes]
        return float(np.mean(scores))


def pretrain(learner, episodes, validation, iterations, learning_rate, eval_every=100,
             patience=10, log=None):
    """First-order MAML on `episodes` (an iterator of meta-batches: lists of
    (support_x, support_y, query_x, query_y)) with one Adam (`learning_rate`; masks at
    the learner's `mask_lr`) on theta, the rates and the masks, as the stream's slow
    updates. Every `eval_every` iterations the query accuracy after adaptation on
    `validation` (a list of episodes) is measured; the best parameters are kept and
    pretraining stops after `patience` evaluations without improvement. Returns the
    validation curve."""
    optimizer = MaskedAdam(learning_rate, learner.mask_lr, learner.meta_parameters,
                           learner.masks)
    parameters = learner.meta_parameters
    best, best_values, waited, curve = -1.0, None, 0, []
    for iteration in range(1, int(iterations) + 1):
        batch = next(episodes)
        total = None
        for support_x, support_y, query_x, query_y in batch:
            _, grads = learner._compiled_meta_gradients(support_x, support_y, query_x,
                                                        query_y, tf.constant(1.0))
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        optimizer.apply([g / len(batch) for g in total], parameters)
        if iteration % int(eval_every) == 0 or iteration == int(iterations):
            accuracy = learner.episode_accuracy(validation)
            curve.append({"iteration": iteration, "validation_accuracy": accuracy})
            if log:
                log(iteration, accuracy)
            if accuracy > best:
                best, waited = accuracy, 0
                best_values = [tf.identity(v) for v in parameters]
            else:
                waited += 1
                if waited >= int(patience):
                    break
    if best_values is not None:
        for v, value in zip(parameters, best_values):
            v.assign(value)
    for variable, value in zip(learner.fast, learner.theta):
        variable.assign(value)
    learner.mark_initial_masks()
    return curve


def default_links(inner_lr, mask=None, mask_init="constant", learn_inner_lr=True):
    """Continual-MAML's chain: alpha = exp(r) per tensor, under a binary mask (per weight or
    per tensor) when `mask` says so."""
    rates = ExpRates(inner_lr, per_tensor=True, trainable=learn_inner_lr)
    if mask is None:
        return [rates]
    return [BinaryMask(init=mask_init, init_value=1.0, per_tensor=mask == "per_tensor"), rates]


def biases_cancelled_by_normalization(model):
    """Paths of the biases of layers whose output goes only into a batch-statistics
    BatchNorm, which subtracts it again: their gradient is zero."""
    consumers = {}
    for layer in model.layers:
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        for tensor in inputs:
            consumers.setdefault(id(tensor), []).append(layer)
    cancelled = set()
    for layer in model.layers:
        bias = getattr(layer, "bias", None)
        if bias is None or isinstance(layer, keras.layers.InputLayer):
            continue
        readers = consumers.get(id(layer.output), [])
        if readers and all(isinstance(r, (BatchNorm, keras.layers.BatchNormalization))
                           for r in readers):
            cancelled.add(bias.path)
    return cancelled
