"""What every continual run's loop needs around its learner: signal handling between stream
steps, the stream clock and checkpoint cadence, progress lines, the finite-loss check and the
mask-sparsity record."""

import signal
import threading
import time

import numpy as np
from absl import logging

from wtl_tf.callbacks import stop_at_once
from wtl_tf.errors import WtlError


class Signals:
    """SIGINT/SIGTERM between two stream steps: checkpoint, then stop (Interrupted). Before
    the stream's first step (building the stream, pretraining: nothing saved yet) and on a
    second Ctrl-C, stop at once."""

    def __init__(self):
        self.received, self.previous, self.armed = None, {}, False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handler)
        return self

    def _handler(self, signum, frame):
        if not self.armed or (self.received is not None and signum == signal.SIGINT):
            stop_at_once(signum)
        self.received = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class StreamClock:
    """Stream seconds over all resumes, and when the next periodic checkpoint is due."""

    def __init__(self, before, every_seconds):
        self.before, self.started = float(before), time.perf_counter()
        self.every_seconds, self.last_save = every_seconds, time.perf_counter()

    @property
    def seconds(self):
        return self.before + time.perf_counter() - self.started

    def save_due(self):
        return time.perf_counter() - self.last_save >= self.every_seconds

    def saved(self):
        self.last_save = time.perf_counter()


class StreamProgress:
    """One log line after the first stream step (tracing included) and then every
    `every_seconds`: step, what the stream is at, loss, seconds per step, time to go."""

    def __init__(self, total, every_seconds, enabled=True, log=None):
        self.total, self.every_seconds, self.enabled = total, every_seconds, enabled
        self.log = log or logging.info
        self.start, self.last, self.steady = time.perf_counter(), None, None

    def step(self, step, loss, where=""):
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.last is not None and now - self.last < self.every_seconds:
            return
        where = f" ({where})" if where else ""
        if self.last is None:
            self.log("stream step %d/%d%s: loss %.4f; the first step took %.1f s (tracing "
                     "included)", step, self.total, where, loss, now - self.start)
            self.steady = (now, step)
        else:
            per_step = (now - self.steady[0]) / max(step - self.steady[1], 1)
            self.log("stream step %d/%d%s: loss %.4f; %.2f s per step; about %.0f min to go",
                     step, self.total, where, loss, per_step,
                     per_step * max(self.total - step, 0) / 60)
        self.last = now


def check_finite(loss, step):
    if not np.isfinite(loss):
        raise WtlError(f"the meta-loss became {loss} at stream step {step}; lower the learning "
                       "rates (--inner_lr, --meta_lr, --outer_lr) or clip (--grad_clip_norm); "
                       "the last checkpoint is kept")


def mask_sparsity_record(learner):
    """{"overall": fraction of masked weights, "per_layer": {path: fraction shut},
    "changed": {path: fraction open/shut differently from the start}, "entries": {path:
    mask entries}} (masked learners)."""
    if learner.mask_sparsity() is None:
        return None
    changed = learner.mask_changes()
    factors = {path: np.asarray(f) for path, f in learner.mask_factors().items()
               if path in changed}
    return {"overall": learner.mask_sparsity(),
            "per_layer": {path: float(np.mean(f == 0)) for path, f in factors.items()},
            "changed": changed, "entries": {path: int(f.size) for path, f in factors.items()}}
