"""La-MAML's replay: a reservoir memory held in tf.Variables, and the random choices that fill
and read it, drawn on the host from the stream's structure alone.

Every random choice of a La-MAML stream step (each glance's reshuffle of the batch, the
replayed rows, the reservoir slot each new example is offered) depends only on how many
examples came before and how many the batch has, never on their values. `ReplayDraws` draws
them in the order the reference's loop does, from two seeded numpy generators, so a step's
draws are data: they travel with the batch through tf.data, the step that reads them is traced
once, and a resumed run derives them again from the stream's batch sizes (`skip`) instead of
checkpointing a generator. `ReplayMemory` is the reservoir itself, rows of tf.Variables
checkpointed with the network.

With `acceptance="uniform"` the n-th example of the stream is kept with probability
capacity / n (Vitter's algorithm R), so at any time the memory is a uniform sample without
replacement of everything seen so far. `acceptance="la_maml"` (the default) keeps it with
probability capacity / (n + 1), as La-MAML's reference code does (`random.randint(0, age)`
after counting the example), which slightly favours earlier examples. Replayed rows are drawn
with replacement, as the reference does.
"""

import numpy as np
import tensorflow as tf

ACCEPTANCE = {"uniform": 1, "la_maml": 2}


class ReplayDraws:
    """The random choices of a La-MAML learner with `glances` meta-updates per batch, replaying
    `replay_size` rows of a reservoir of `capacity` examples."""

    def __init__(self, capacity, replay_size, glances, seed=0, acceptance="la_maml"):
        if int(capacity) < 1:
            raise ValueError(f"the replay memory needs capacity >= 1, got {capacity}")
        if acceptance not in ACCEPTANCE:
            raise ValueError(f"reservoir acceptance must be one of {tuple(ACCEPTANCE)}, got "
                             f"{acceptance!r}")
        # Slots drawn from [0, seen + extra) once full: extra 1 is algorithm R, 2 the reference.
        self.extra = ACCEPTANCE[acceptance]
        self.capacity, self.replay_size = int(capacity), int(replay_size)
        self.glances = int(glances)
        self.seed, self.acceptance = seed, acceptance
        self.seen = 0
        self.reservoir_rng = np.random.default_rng(seed)
        self.shuffle_rng = np.random.default_rng([seed, 11])

    def restarted(self):
        """The same draws from the stream's beginning."""
        return ReplayDraws(self.capacity, self.replay_size, self.glances, self.seed,
                           self.acceptance)

    def kept(self):
        return min(self.seen, self.capacity)

    def next(self, n, first_pass=True):
        """The draws of a stream step of `n` examples, as int64 arrays:
        orders [glances, n]: glance g reshuffles the order glance g - 1 left;
        picks [glances, replay_size]: the rows glance g replays, its first counts[g] valid;
        counts [glances]: min(replay_size, examples kept before glance g);
        slots [n]: the row each example (in glance 0's order) takes; `capacity`: not kept
        (every example on a later pass). The batch enters after glance 0's replay draw."""
        orders = np.empty((self.glances, n), np.int64)
        picks = np.zeros((self.glances, self.replay_size), np.int64)
        counts = np.zeros(self.glances, np.int64)
        slots = np.full(n, self.capacity, np.int64)
        for glance in range(self.glances):
            orders[glance] = self.shuffle_rng.permutation(n)
            kept = self.kept()
            counts[glance] = min(self.replay_size, kept)
            if kept:
                picks[glance, :counts[glance]] = self.reservoir_rng.integers(
                    0, kept, size=int(counts[glance]))
            if first_pass and glance == 0:
                slots = self.offer(n)
        return orders, picks, counts, slots

    def offer(self, n):
        """Slots of `n` new examples offered in turn (`capacity`: turned away); of two that
        draw the same slot, the later keeps it."""
        slots = np.full(n, self.capacity, np.int64)
        for i in range(n):
            slot = (self.seen if self.seen < self.capacity
                    else int(self.reservoir_rng.integers(0, self.seen + self.extra)))
            if slot < self.capacity:
                slots[slots == slot] = self.capacity
                slots[i] = slot
            self.seen += 1
        return slots

    def skip(self, steps):
        """Draws and drops the steps [(n, first pass)] a resumed stream has already learned."""
        for n, first_pass in steps:
            self.next(n, first_pass)
        return self


def draws_spec(glances, replay_size, n=None):
    """tf.TensorSpecs of `ReplayDraws.next`'s arrays (n: the batch size, None when it varies)."""
    return (tf.TensorSpec([glances, n], tf.int64), tf.TensorSpec([glances, replay_size], tf.int64),
            tf.TensorSpec([glances], tf.int64), tf.TensorSpec([n], tf.int64))


class ReplayMemory:
    """The reservoir: `capacity` examples (x, y, task) in tf.Variables, plus one row that takes
    the examples the reservoir turns away, and `seen`, the examples offered so far."""

    def __init__(self, capacity, example_shape, dtype):
        self.capacity = int(capacity)
        rows = self.capacity + 1
        self.x = tf.Variable(tf.zeros([rows, *example_shape], dtype), trainable=False,
                             name="replay_x")
        self.y = tf.Variable(tf.zeros([rows], tf.int64), trainable=False, name="replay_y")
        self.task = tf.Variable(tf.zeros([rows], tf.int64), trainable=False, name="replay_task")
        self.seen = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="replay_seen")

    @property
    def variables(self):
        return [self.x, self.y, self.task, self.seen]

    def __len__(self):
        return min(int(self.seen.numpy()), self.capacity)

    def add(self, x, y, task, slots, first_pass):
        """Writes a batch at its `slots` (graph-safe); counts it as offered on a first pass."""
        index = tf.cast(slots, tf.int64)[:, None]
        self.x.scatter_nd_update(index, x)
        self.y.scatter_nd_update(index, tf.cast(y, tf.int64))
        self.task.scatter_nd_update(index, tf.fill(tf.shape(slots), tf.cast(task, tf.int64)))
        self.seen.assign_add(tf.where(first_pass, tf.size(slots, tf.int64),
                                      tf.constant(0, tf.int64)))
        return tf.no_op()

    def read(self, rows):
        """(x, y, task) of `rows` (graph-safe)."""
        return tf.gather(self.x, rows), tf.gather(self.y, rows), tf.gather(self.task, rows)
