"""A reservoir replay buffer of single examples (La-MAML's memory), checkpointable.

Every example of the stream is kept with probability capacity / seen (Vitter's algorithm R),
so at any time the buffer is a uniform sample without replacement of everything seen so far;
`sample` draws with replacement, as the reference does. The buffer's arrays, its counter and
its random state are plain numpy state (`state()` / `restore()`), written with the run's
checkpoints, so a resumed stream replays exactly what an uninterrupted one would.
"""

import numpy as np


class ReservoirBuffer:
    def __init__(self, capacity, example_shape, seed=0, dtype=np.float32):
        if int(capacity) < 1:
            raise ValueError(f"the replay buffer needs capacity >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.x = np.zeros((self.capacity, *example_shape), dtype)
        self.y = np.zeros((self.capacity,), np.int64)
        self.task = np.zeros((self.capacity,), np.int64)
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return min(self.seen, self.capacity)

    def add(self, x, y, task):
        """Offers each example of a batch to the reservoir."""
        for xi, yi in zip(np.asarray(x), np.asarray(y)):
            if self.seen < self.capacity:
                slot = self.seen
            else:
                slot = int(self.rng.integers(0, self.seen + 1))
            if slot < self.capacity:
                self.x[slot], self.y[slot], self.task[slot] = xi, yi, task
            self.seen += 1

    def sample(self, n):
        """(x, y, task) of `n` examples drawn with replacement (empty while nothing is kept)."""
        if len(self) == 0:
            return self.x[:0], self.y[:0], self.task[:0]
        picks = self.rng.integers(0, len(self), size=int(n))
        return self.x[picks], self.y[picks], self.task[picks]

    def state(self):
        return {"x": self.x.copy(), "y": self.y.copy(), "task": self.task.copy(),
                "seen": np.int64(self.seen), "rng": self.rng.bit_generator.state}

    def restore(self, state):
        self.x[...], self.y[...], self.task[...] = state["x"], state["y"], state["task"]
        self.seen = int(state["seen"])
        self.rng.bit_generator.state = state["rng"]
