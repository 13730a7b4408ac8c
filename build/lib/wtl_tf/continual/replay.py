"""A reservoir replay buffer of single examples (La-MAML's memory), checkpointable.

With `acceptance="uniform"` the n-th example of the stream is kept with probability
capacity / n (Vitter's algorithm R), so at any time the buffer is a uniform sample without
replacement of everything seen so far. `acceptance="la_maml"` (the default) keeps it with
probability capacity / (n + 1), as La-MAML's reference code does (`random.randint(0, age)`
after counting the example), which slightly favours earlier examples. `sample` draws with
replacement, as the reference does. The buffer's arrays, its counter and
its random state are plain numpy state (`state()` / `restore()`), written with the run's
checkpoints, so a resumed stream replays exactly what an uninterrupted one would.
"""

import numpy as np

ACCEPTANCE = {"uniform": 1, "la_maml": 2}


class ReservoirBuffer:
    def __init__(self, capacity, example_shape, seed=0, dtype=np.float32, acceptance="la_maml"):
        if int(capacity) < 1:
            raise ValueError(f"the replay buffer needs capacity >= 1, got {capacity}")
        if acceptance not in ACCEPTANCE:
            raise ValueError(f"reservoir acceptance must be one of {ACCEPTANCE}, got "
                             f"{acceptance!r}")
        # Slots drawn from [0, seen + extra) once full: extra 1 is algorithm R, 2 the reference.
        self.extra = ACCEPTANCE[acceptance]
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
                slot = int(self.rng.integers(0, self.seen + self.extra))
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
