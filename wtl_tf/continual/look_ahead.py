"""The La-MAML family's look-ahead: the core's inner loop over a chain of links, one chunk
of an incoming batch per step.

    L = mean_k CE(phi_k; meta batch),  phi_k = InnerLoop.step(phi_{k-1}; chunk k)

`LookAhead` is the part of a La-MAML learner that computes (mixed into `LaMAML`): the chain
(`--update_rules`; the family's own are `learned_rates` and `masked_rates`, after an inner
clip when there is one), the InnerLoop that runs it, the meta-loss and its gradient through
`value_and_gradient`, and the adaptation the export replays. The lists the tests and the
update take (`theta`, `meta`) are in the order of `model.trainable_variables` and of the
chain's trainable weights.
"""

import tensorflow as tf

from wtl_tf import losses as losses_lib
from wtl_tf.errors import ConfigError
from wtl_tf.inner_loop import InnerLoop, Params, value_and_gradient
from wtl_tf.inner_options import InnerLoopOptions
from wtl_tf.rules.base import Chain
from wtl_tf.rules.clip import ClipGradient
from wtl_tf.rules.elementwise import LearnedRates, MaskedRates


def default_links(rates, alpha_init, mask_init="constant", rate_activation="relu"):
    """The La-MAML family's own chains: learned (or fixed) rates alpha, or alpha0 * H(m)."""
    if rates == "masked":
        return [MaskedRates(alpha_init, init=mask_init, init_value=abs(alpha_init))]
    return [LearnedRates(rate_activation, init="constant", init_value=alpha_init)]


def task_masked_cross_entropy(class_task):
    """Cross-entropy of a task-masked head: labels [n, 2] hold (class, task); the logits of
    classes of other tasks are set to -1e11. Labels [n] (no task) use every class."""
    def loss(labels, logits):
        if labels.shape.rank == 1:  # no task given (an export's adaptation): every class
            return losses_lib.cross_entropy(labels, logits)
        labels = tf.cast(labels, tf.int64)
        own = tf.equal(class_task[None, :], labels[:, 1:2])
        logits = tf.where(own, logits, tf.constant(-1e11, logits.dtype))
        return losses_lib.cross_entropy(labels[:, 0], logits)
    return loss


class LookAhead:
    """The look-ahead of a La-MAML learner over a built Keras classifier `model`."""

    def build_look_ahead(self, model, links, inner_clip, class_task, first_order, seed,
                         slow_step_rates):
        """Sets up the chain on the model's weights (`links`: UpdateRules, in order)."""
        self.model, self.first_order = model, bool(first_order)
        # Task-masked head (split streams): class c answers only examples of task
        # class_task[c]; the other logits are set to -1e11 in every loss and prediction.
        self.class_task = None if class_task is None else tf.constant(class_task, tf.int64)
        self.theta = list(model.trainable_variables)
        self.links = list(links)
        self.rule = Chain(([ClipGradient(inner_clip)] if inner_clip else []) + self.links)
        self.rule.setup(self.theta)
        self.inner = InnerLoop(model, self.rule, InnerLoopOptions(
            loss="cross_entropy" if self.class_task is None
            else task_masked_cross_entropy(self.class_task),
            first_order=self.first_order, seed=seed))
        mask_links = [link for link in self.links if link.is_mask]
        self.meta = list(self.rule.trainable_weights)
        self.masks = [m for link in mask_links for m in link.trainable_weights]
        self.mask_paths = [p for link in mask_links for p in link.param_paths]
        if slow_step_rates:
            missing = sorted(set(v.path for v in self.theta) - set(self.rule.factors()))
            if missing:
                raise ConfigError(f"the slow step at the rates needs per-weight rates, and the "
                                  f"chain gives none for {missing[:3]}: add a rates link "
                                  f"(learned_rates, masked_rates) or use a fixed slow step "
                                  f"(--algorithm=sync_la_maml)")

    def params(self, theta, meta):
        """The inner loop's Params from lists of tensors: `theta` the network's weights,
        `meta` the chain's meta-learned weights (its other weights read as they are)."""
        rule = {w.path: tf.convert_to_tensor(w) for w in self.rule.weights}
        rule.update({w.path: m for w, m in zip(self.meta, meta)})
        return Params(dict(zip(self.inner.theta_paths, theta)),
                      {v.path: tf.convert_to_tensor(v)
                       for v in self.model.non_trainable_variables}, rule)

    def labels(self, y, task):
        """Labels as the inner loop's loss takes them: (class, task) for a task-masked head."""
        if self.class_task is None or task is None:
            return y
        return tf.stack([tf.cast(y, tf.int64), tf.cast(task, tf.int64)], axis=-1)

    def forward(self, theta, x):
        theta = theta if isinstance(theta, dict) else dict(zip(self.inner.theta_paths, theta))
        state = {v.path: tf.convert_to_tensor(v) for v in self.model.non_trainable_variables}
        return self.inner.forward(theta, state, x, training=True)[0]

    def masked_logits(self, logits, task):
        """Logits with the classes of other tasks at -1e11 (no-op without a class_task)."""
        if self.class_task is None or task is None:
            return logits
        own = tf.equal(self.class_task[None, :], tf.cast(task, tf.int64)[:, None])
        return tf.where(own, logits, tf.constant(-1e11, logits.dtype))

    def classification_loss(self, theta, x, y, task=None):
        logits = self.masked_logits(self.forward(theta, x), task)
        return losses_lib.cross_entropy(y, logits)

    def look_ahead(self, params, chunks_x, chunks_y, chunks_task, each_step):
        """The inner loop over the chunks (unrolled), `each_step(phi)` after every step."""
        with self.inner.rule_values(params):
            rule, phi = self.inner.begin(params)
            for k in range(chunks_x.shape[0]):
                phi, _ = self.inner.step(
                    rule, params.theta, params.state, phi, chunks_x[k],
                    self.labels(chunks_y[k], None if chunks_task is None else chunks_task[k]),
                    k, self.first_order)
                each_step({**params.theta, **phi})
        return phi

    def meta_loss(self, theta, meta, chunks_x, chunks_y, meta_x, meta_y, chunks_task=None,
                  meta_task=None):
        """L = mean over inner steps of CE(phi_k; meta batch), phi_k after k chunks."""
        params, losses = self.params(theta, meta), []
        meta_labels = self.labels(meta_y, meta_task)
        self.look_ahead(params, chunks_x, chunks_y, chunks_task, lambda phi: losses.append(
            self.inner.loss_fn(meta_labels, self.inner.forward(phi, params.state, meta_x,
                                                                True)[0])))
        return tf.add_n(losses) / len(losses)

    def adapt(self, x, y, task=None):
        """The fast weights after the look-ahead steps over (x, y), chunk by chunk (the
        exported model's adaptation; graph-safe for any batch size)."""
        params = self.inner.read_params()
        chunks = tf.shape(y)[0] // self.chunk_size
        with self.inner.rule_values(params):
            rule, phi = self.inner.begin(params)

            def step(k, phi):
                part = slice(k * self.chunk_size, (k + 1) * self.chunk_size)
                labels = self.labels(y[part], None if task is None else task[part])
                return k + 1, self.inner.step(rule, params.theta, params.state, phi, x[part],
                                              labels, k, self.first_order)[0]

            _, phi = tf.while_loop(lambda k, _: k < chunks, step, (tf.constant(0), phi))
        return [phi[p] for p in self.inner.theta_paths]

    def meta_gradients(self, chunks_x, chunks_y, meta_x, meta_y, chunks_task=None,
                       meta_task=None):
        """(L, grads of theta, grads of the chain's meta-learned weights) at the current
        values."""
        theta = [tf.convert_to_tensor(v) for v in self.theta]
        meta = [tf.convert_to_tensor(v) for v in self.meta]
        loss, grads = value_and_gradient(
            lambda: self.meta_loss(theta, meta, chunks_x, chunks_y, meta_x, meta_y, chunks_task,
                                   meta_task), theta + meta)
        return loss, grads[:len(theta)], grads[len(theta):]
