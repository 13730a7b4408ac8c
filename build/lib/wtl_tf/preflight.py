"""Checks a resolved configuration against the machine before any work starts.

`check(config)` estimates a lower bound on the memory the run will hold at once — the
meta-batch of episodes tf.data prepares (two in flight), one task's activations over its
inner steps, a continual stream's task data, its accuracy matrix and replay buffer, OSAKA's
stream schedule — and refuses, in one line naming the settings to lower, a run whose bound
exceeds the memory the machine has available (`--allow_large_memory` skips the check for
users who know better). The bounds leave out what they cannot know cheaply (the network's
deeper activations, TensorFlow's workspace), so a refused run could never have fit.
"""

import os

from wtl_tf import settings
from wtl_tf.continual.streams import CACHE_BYTES
from wtl_tf.errors import ConfigError


ALLOW = settings.declare(settings.Setting(
    "allow_large_memory", "bool", False, "skip the memory check that refuses, before work "
    "starts, a run whose estimated memory exceeds what the machine has available",
    group="runtime", resumable=True))
FLOAT = 4  # bytes
GIB = 1 << 30


def available_bytes():
    """MemAvailable of /proc/meminfo (Linux), else the physical memory, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _few_shot(c):
    """[(what, bytes, the settings that size it)]."""
    if c.dataset == "sinusoid":
        # x and y; two hidden layers of 40, each kept before and after its ReLU, and the
        # inner step's gradient of both.
        per_example, per_activation = 2, 4 * 2 * 40
    else:
        size = c.image_size or 28
        per_example = size * size  # one channel: a lower bound
        per_activation = size * size * (c.conv_channels or 32)  # the first layer's output
    examples = (c.ways or 1) * ((c.shots or 1) + (c.queries or 1))
    steps = (c.inner_steps or 0) + 1
    # Vectorised tasks (tf.vectorized_map) hold every task's activations at once.
    together = (c.meta_batch_size or 1) if c.vectorize_tasks else 1
    return [("the episodes of a meta-batch (two in flight)",
             2 * (c.meta_batch_size or 1) * examples * per_example * FLOAT,
             "--meta_batch_size, --shots, --queries, --ways"),
            ("the activations over the inner steps" + (
                " of every task of a meta-batch" if together > 1 else " of one task"),
             together * examples * per_activation * steps * FLOAT,
             "--shots, --queries, --ways, --inner_steps"
             + (", --meta_batch_size" if together > 1 else ""))]


def _continual(c):
    if settings.la_maml_family(c):
        tasks = c.stream_tasks or 20
        if "omniglot" in c.stream and not c.stream.startswith("split"):
            # Built lazily, at most CACHE_BYTES of tasks kept; the permutations up front.

            per_task = 400 * 784 * FLOAT
            data = ("the stream's task data", min(tasks * per_task, CACHE_BYTES)
                    + tasks * 784 * 2, "--stream_tasks")
        elif c.stream in ("rotated_mnist", "permuted_mnist"):
            data = ("the stream's task data", tasks * 2000 * 784 * FLOAT, "--stream_tasks")
        else:
            data = ("the stream's task data", 0, "--stream_tasks")
        return [data,
                ("the accuracy matrix R (tasks x tasks) and its evaluations",
                 tasks * tasks * 8, "--stream_tasks"),
                ("the replay buffer", (c.memories or 0) * 784 * FLOAT, "--memories")]
    if settings.osaka_learner(c):
        return [("the stream's schedule", (c.stream_steps or 0) * ((c.ways or 10) + 2) * 8,
                 "--stream_steps"),
                ("the pretraining meta-batch", 2 * (c.meta_batch_size or 1) * (c.ways or 10)
                 * 2 * (c.shots or 5) * 784 * FLOAT, "--meta_batch_size, --ways, --shots")]
    return []


def estimate(c):
    """[(what, bytes, settings)] of the run's largest allocations (lower bounds)."""
    return _continual(c) if settings.continual(c) else _few_shot(c)


def check(c, available=None):
    """Raises ConfigError when the estimate exceeds the available memory."""
    if c.allow_large_memory:
        return
    available = available_bytes() if available is None else available
    if available is None:
        return
    parts = estimate(c)
    total = sum(b for _, b, _ in parts)
    if total <= available:
        return
    what, largest, knobs = max(parts, key=lambda p: p[1])
    raise ConfigError(f"this run needs at least {total / GIB:.1f} GiB of memory ({what}: "
                      f"{largest / GIB:.1f} GiB) and the machine has {available / GIB:.1f} GiB "
                      f"available: lower {knobs}, or pass --allow_large_memory")
