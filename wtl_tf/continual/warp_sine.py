"""WarpGrad's sequential sine (docs/continual.md; our reconstruction, every choice a setting).

A task is a sine y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi]; its input range
[-5, 5] is cut into `subtasks` consecutive intervals, learned one after the other with
`steps` SGD steps each (batches of `batch` points of the current interval). The task
network is an MLP 1-h-h-1 whose hidden layers are each followed by a linear warp layer
(h x h, initialised to the identity: models.mlp(warp=True)); only the warp layers are
meta-learned, the task weights start from one fixed seeded initialisation for every task.

Meta-objective (WarpGrad without backpropagating through the trajectory): at every state
phi_k of a task's sequence, stored as a constant, the one-step look-ahead loss on everything
seen so far,

    J_k(w) = MSE_{intervals <= current}(phi_k - alpha * grad MSE_current(phi_k; w); w),

averaged over the sequence and the meta-batch of tasks; w takes one Adam step per
meta-iteration. Plain SGD is the same learner with the identity warps frozen. Reported: the
MSE on every interval after the whole sequence (forgetting shows as high early-interval MSE).

A meta-iteration is one traced function (`stream_step`): each task's trajectory runs in a
`tf.while_loop`, its SGD batches drawn on the host (`SequentialSine.picks`, seeded by the
meta-iteration and the task's place in the meta-batch) and carried by the dataset
(`WarpedSine.stream_dataset`).
"""

import numpy as np
import tensorflow as tf

from wtl_tf import models
from wtl_tf.continual.learner import StreamLearner
from wtl_tf.data.generated import counted, generated
from wtl_tf.errors import ConfigError
from wtl_tf.inner_loop import InnerLoop, Params, value_and_gradient
from wtl_tf.inner_options import InnerLoopOptions
from wtl_tf.rules.base import Chain
from wtl_tf.rules.scale import Scale
from wtl_tf.warpgrad import OnlineWarpUpdate


class SequentialSine:
    """Sine tasks and their interval sequence, a pure function of (seed, task index)."""

    def __init__(self, subtasks=5, points=50, seed=0):
        self.subtasks, self.points, self.seed = int(subtasks), int(points), int(seed)
        self.edges = np.linspace(-5.0, 5.0, self.subtasks + 1)

    def task(self, index, split="train"):
        """(x [subtasks, points, 1], y [...]) of task `index`, interval by interval."""
        rng = np.random.default_rng([self.seed, {"train": 0, "test": 1}[split], index])
        amplitude, phase = rng.uniform(0.1, 5.0), rng.uniform(0.0, np.pi)
        x = np.stack([rng.uniform(lo, hi, size=(self.points, 1))
                      for lo, hi in zip(self.edges[:-1], self.edges[1:])])
        return x.astype(np.float32), (amplitude * np.sin(x - phase)).astype(np.float32)

    def picks(self, steps, batch, seed):
        """The points of each SGD step of a task's sequence [subtasks * steps, batch]: `steps`
        draws without replacement per interval, in order, from default_rng(seed)."""
        rng = np.random.default_rng(seed)
        return np.stack([rng.choice(self.points, size=batch, replace=False)
                         for _ in range(self.subtasks * steps)])

    def dataset(self, meta_batch, iterations, start=0):
        """Meta-batches of training tasks as tf.data from meta-iteration `start` on: (x, y),
        each [meta_batch, subtasks, points, 1]."""
        def batches():
            for step in range(start, iterations):
                tasks = [self.task(step * meta_batch + j) for j in range(meta_batch)]
                yield tuple(np.stack(part) for part in zip(*tasks))
        spec = tf.TensorSpec([meta_batch, self.subtasks, self.points, 1], tf.float32)
        return generated(batches, (spec, spec), iterations - start)


class WarpedSine(StreamLearner):
    """The sine's task network (models.mlp with DenseWarp layers), adapted by the core's inner
    loop (chain(Scale(alpha)), the MSE); the warp layers learn WarpGrad's one-step look-ahead
    objective (warpgrad.OnlineWarpUpdate.lookahead_loss) on the union of the intervals seen.
    Lists of tensors in and out: `phi` the task weights (model order), `warp` the warp
    kernels."""

    traced = True  # each step's SGD batches come with the dataset

    def __init__(self, hidden=40, inner_lr=0.01, steps=20, batch=10, meta_lr=1e-3,
                 learn_warp=True, seed=0, dtype="float32"):
        super().__init__(name="warped_sine")
        rng = np.random.default_rng(seed)

        def dense(fan_in, fan_out):
            bound = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot: small outputs at the start
            return [rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32),
                    np.zeros(fan_out, np.float32)]

        # One fixed seeded initialisation of the task weights for every task (not learned).
        self.theta0 = [*dense(1, hidden), *dense(hidden, hidden), *dense(hidden, 1)]
        self.model = models.mlp(1, (hidden, hidden), 1, dtype=dtype, warp=True,
                                name="warped_sine_mlp")
        rule = Chain([Scale(inner_lr)])
        self.inner = InnerLoop(self.model, rule, InnerLoopOptions(loss="mse", first_order=True))
        by_path = {v.path: v for v in self.model.trainable_variables}
        for path, value in zip(self.inner.adapted_paths, self.theta0):
            by_path[path].assign(value)
        rule.setup([by_path[p] for p in self.inner.adapted_paths])
        self.warp = [by_path[p] for p in self.inner.warp_paths]
        self.lookahead = OnlineWarpUpdate(inner_lr)
        self.inner_lr, self.steps, self.batch = float(inner_lr), int(steps), int(batch)
        self.learn_warp = bool(learn_warp)
        self.meta_optimizer = tf.keras.optimizers.Adam(meta_lr)
        self.meta_optimizer.build(self.warp)  # its slots exist before a checkpoint restores them
        self._compiled_step = tf.function(self.stream_step, autograph=False)

    def _trees(self, phi, warp):
        return (dict(zip(self.inner.adapted_paths, phi)),
                dict(zip(self.inner.warp_paths, [tf.convert_to_tensor(w) for w in warp])))

    def forward(self, phi, warp, x):
        adapted, warp = self._trees(phi, warp)
        return self.inner.forward({**adapted, **warp}, {}, x, True)[0]

    def mse(self, phi, warp, x, y):
        return self.inner.loss_fn(y, self.forward(phi, warp, x))

    def sgd_step(self, phi, warp, x, y):
        """One SGD step of the task weights: the inner loop's step over chain(Scale(alpha))."""
        adapted, warp = self._trees(phi, warp)
        new, _ = self.inner.step(self.inner.rule, warp, {}, adapted, x, y, 0, first_order=True)
        return [new[p] for p in self.inner.adapted_paths]

    def sequence(self, x, y, warp=None, seed=0):
        """The task's SGD trajectory through its intervals: [(phi_k, interval)] before each
        step, and the final weights."""
        warp = [tf.convert_to_tensor(w) for w in (warp or self.warp)]
        picks = SequentialSine(x.shape[0], x.shape[1]).picks(self.steps, self.batch, seed)
        phi, states = [tf.constant(t) for t in self.theta0], []
        for k, chosen in enumerate(picks):
            interval = k // self.steps
            states.append((phi, interval, chosen))
            phi = self.sgd_step(phi, warp, x[interval][chosen], y[interval][chosen])
        return states, phi

    def trajectory(self, warp, x, y, picks):
        """The states phi_k before each SGD step of a task's sequence (graph-safe), stacked:
        one [K, ...] tensor per weight."""
        def step(k, phi, states):
            interval = k // self.steps
            states = [s.write(k, p) for s, p in zip(states, phi)]
            phi = self.sgd_step(phi, warp, tf.gather(x[interval], picks[k]),
                                tf.gather(y[interval], picks[k]))
            return k + 1, phi, states

        count = picks.shape[0]
        states = [tf.TensorArray(tf.float32, size=count, element_shape=t.shape)
                  for t in self.theta0]
        _, _, states = tf.while_loop(lambda k, *_: k < count, step, (
            tf.constant(0), [tf.constant(t) for t in self.theta0], states))
        return [s.stack() for s in states]

    def lookahead_objective(self, phi, warp, x, y, interval, picks):
        """J_k(w): the union loss after one look-ahead step from the constant state phi."""
        seen = interval + 1
        task = {"support_x": tf.gather(x[interval], picks),
                "support_y": tf.gather(y[interval], picks),
                "query_x": tf.reshape(x[:seen], [-1, 1]), "query_y": tf.reshape(y[:seen], [-1, 1])}
        adapted, warp = self._trees(phi, warp)
        return self.lookahead.lookahead_loss(self.inner, adapted, warp, task, Params({}, {}, {}))

    def _meta_gradients(self, phis, picks, x, y):
        """(mean of J_k over the sequence's states, its gradient with respect to the warps),
        one state per loop iteration: traced once, however long the sequence."""
        warp = [tf.convert_to_tensor(w) for w in self.warp]
        count = picks.shape[0]

        def body(k, total, grad_sum):
            loss, grads = value_and_gradient(lambda: self.lookahead_objective(
                [p[k] for p in phis], warp, x, y, k // self.steps, picks[k]), warp)
            return k + 1, total + loss, [a + g for a, g in zip(grad_sum, grads)]

        _, total, grad_sum = tf.while_loop(lambda k, *_: k < count, body, (
            tf.constant(0), tf.zeros((), tf.float32), [tf.zeros_like(w) for w in warp]))
        return total / count, [g / count for g in grad_sum]

    def stream_step(self, xs, ys, picks):
        """One Adam step on the warp layers from a meta-batch of task sequences (graph-safe):
        xs, ys [B, intervals, points, 1], picks [B, K, batch]. Returns the mean objective."""
        warp = [tf.convert_to_tensor(w) for w in self.warp]
        losses, grads_sum = [], None
        for i in range(xs.shape[0]):
            phis = self.trajectory(warp, xs[i], ys[i], picks[i])
            loss, grads = self._meta_gradients(phis, picks[i], xs[i], ys[i])
            losses.append(loss)
            grads_sum = grads if grads_sum is None else [a + b for a, b in zip(grads_sum, grads)]
        if self.learn_warp:
            self.meta_optimizer.apply([g / len(losses) for g in grads_sum], self.warp)
        return tf.add_n(losses) / len(losses)

    def step_picks(self, sine, meta_batch, step):
        """The SGD batches of meta-iteration `step`'s tasks [meta_batch, K, batch]."""
        return np.stack([sine.picks(self.steps, self.batch, step * 1000 + j)
                         for j in range(meta_batch)])

    def meta_step(self, tasks, seed=0):
        """One Adam step on the warp layers from the sequences of `tasks` [(x, y)], their SGD
        batches drawn as meta-iteration `seed` draws them."""
        xs, ys = (np.stack(part) for part in zip(*tasks))
        sine = SequentialSine(xs.shape[1], xs.shape[2])
        return float(self._compiled_step(xs, ys, self.step_picks(sine, len(tasks), seed)))

    def stream_dataset(self, sine, meta_batch, iterations, start=0):
        """`sine.dataset(...)` with each meta-iteration's SGD batches: what `fit` learns from."""
        spec = tf.TensorSpec([meta_batch, sine.subtasks * self.steps, self.batch], tf.int64)
        count = iterations - start
        picks = generated(lambda: (self.step_picks(sine, meta_batch, step)
                                   for step in range(start, iterations)), spec, count)
        return counted(tf.data.Dataset.zip((sine.dataset(meta_batch, iterations, start), picks)),
                       count)

    progress_unit, step_name = "meta-iteration", "meta-step"

    def learn(self, batch):
        """((x, y) of a meta-batch of tasks, their SGD batches): `stream_step`."""
        if len(batch) != 2 or not isinstance(batch[0], (tuple, list)):
            raise ConfigError("a warped sine learns from learner.stream_dataset(sine, ...): its "
                             "elements carry the SGD batches")
        (xs, ys), picks = batch
        return {"loss": self.stream_step(xs, ys, picks)}

    def checkpoint_variables(self):
        return list(self.warp)

    def checkpoint_objects(self):
        return {"optimizer": self.meta_optimizer}

    def interval_mse(self, x, y, warp=None, seed=0):
        """MSE on every interval after learning the whole sequence."""
        warp = warp or self.warp
        _, phi = self.sequence(x, y, warp, seed)
        return [float(self.mse(phi, warp, x[i], y[i])) for i in range(x.shape[0])]
