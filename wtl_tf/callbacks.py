"""Keras callbacks for meta-training runs."""

import csv
import json
import math
import os
import signal
import threading
import time

import keras
import tensorflow as tf
from absl import logging

from wtl_tf import signal_watch
from wtl_tf.checkpoints import TrainClock
from wtl_tf.errors import NonFiniteLossError, WtlError
from wtl_tf.run_directory import write_json_atomic, write_weights_atomic
from wtl_tf.sparsity import sparsity_report


# The callbacks serve every learner, few-shot or continual: a learner says where it is
# (`iteration()`), what its steps are called (`progress_unit`, `step_name`) and what to do
# when its loss diverges (`divergence_advice`).

def current_step(model):
    """The learner's steps so far (meta-iterations, stream steps)."""
    return int(tf.convert_to_tensor(model.iteration()))


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training with NonFiniteLossError as soon as the meta-loss is NaN or infinite.
    (Keras' TerminateOnNaN ends `fit` normally: the run would go on to meta-test and export
    a diverged model; here it fails in one line and keeps its last checkpoint.)"""

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"meta-loss became {loss} at {self.model.progress_unit} "
                f"{current_step(self.model)}; {self.model.divergence_advice}")


class StopTraining(keras.callbacks.Callback):
    """Ends training after `iterations` meta-updates or `max_seconds` of training time
    (`clock`: counted over all resumes of the run), whichever comes first, mid-epoch if need
    be (Keras still validates the partial epoch)."""

    def __init__(self, iterations, max_seconds=None, clock=None):
        super().__init__()
        self.iterations, self.max_seconds = iterations, max_seconds
        self.clock = clock or TrainClock()
        self.reason = None

    def budget_spent(self):
        return bool(self.max_seconds) and self.clock.seconds >= self.max_seconds

    def on_train_begin(self, logs=None):
        if self.clock.started is None:
            self.clock.start()

    def on_train_batch_end(self, batch, logs=None):
        if current_step(self.model) >= self.iterations:
            self.model.stop_training, self.reason = True, "iterations"
        elif self.budget_spent():
            self.model.stop_training, self.reason = True, "time budget"


class Interrupted(WtlError):
    """SIGINT/SIGTERM stopped training; a checkpoint was written at a step boundary."""

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.signal_number = signal_number


def stop_at_once(signum, frame=None):
    """A signal handler for when there is nothing to save yet (or a second Ctrl-C while a
    checkpoint is pending): stop now, in one line."""
    if signal_watch.answered():
        return
    raise Interrupted(f"{signal.Signals(signum).name}: stopped at once; the checkpoints already "
                      "written are kept (resume with the same command)", signum)


class StopAtOnce:
    """SIGINT/SIGTERM raise `Interrupted` at once while in this context (the run's set-up:
    building data, compiling; nothing to save yet). A context that saves at step boundaries
    (GracefulInterrupt, the continual runs) installs its own handlers inside it."""

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, stop_at_once)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class GracefulInterrupt(keras.callbacks.Callback):
    """SIGINT (Ctrl-C) or SIGTERM during fit: finish the running meta-step, checkpoint, and
    raise `Interrupted` (no validation of the partial epoch). A second Ctrl-C stops at once
    (one line; the checkpoints already written are kept)."""

    def __init__(self, save):
        super().__init__()
        self.save, self.received, self.previous = save, None, {}

    def _handler(self, signum, frame):
        if signal_watch.answered():
            return
        if self.received is not None and signum == signal.SIGINT:
            stop_at_once(signum)
        self.received = signum

    def on_train_begin(self, logs=None):
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be caught on the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handler)

    def _restore_handlers(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def on_train_batch_end(self, batch, logs=None):
        if self.received is None:
            return
        self.save()
        self._restore_handlers()
        name = signal.Signals(self.received).name
        raise Interrupted(f"{name} at {self.model.progress_unit} {current_step(self.model)}: "
                          "checkpoint saved; resume with the same command", self.received)

    def on_train_end(self, logs=None):
        self._restore_handlers()


class ProgressLog(keras.callbacks.Callback):
    """One log line after the first step (tracing included) and then every `every_seconds`:
    the learner's step, where it is (`where(logs)`, e.g. the stream's task), loss, seconds
    per step, and the time to go: to `total` steps, or to the time budget when that ends
    training first (`time_left`: a function giving the seconds the time budget has left,
    None without one). Until the first step ends, which for a large compiled step (Warp-Leap:
    minutes) includes tracing and the whole step, a line every `FIRST_STEP_LINES` seconds
    says it is running, with how far it is and the time to go where the learner can tell
    (`step_progress()`: the fraction of the running step done)."""

    FIRST_STEP_LINES = (20.0, 30.0)  # the first after 20 s, then every 30 s

    def __init__(self, total_iterations, every_seconds=60.0, log=None, time_left=None,
                 where=None):
        super().__init__()
        self.total, self.every_seconds = total_iterations, every_seconds
        self.time_left, self.where = time_left, where
        self.log = log or logging.info
        self.start = self.last = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        self.first_done = threading.Event()
        threading.Thread(target=self._first_step_lines, daemon=True,
                         name="first-step-progress").start()

    def _first_step_lines(self):
        wait, every = self.FIRST_STEP_LINES
        unit, name = self.model.progress_unit, self.model.step_name
        first = current_step(self.model) + 1
        while not self.first_done.wait(wait):
            wait = every
            ran = time.perf_counter() - self.start
            done = getattr(self.model, "step_progress", lambda: None)()
            told = ""
            if done:
                told = (f"; {100 * done:.0f}% done, about "
                        f"{ran * (1 - done) / done / 60:.1f} min to go")
            self.log(f"{unit} %d/%d: the first {name} (tracing included) has run %.0f s%s",
                     first, self.total, ran, told)

    def on_train_end(self, logs=None):
        if self.start is not None:
            self.first_done.set()

    def on_train_batch_end(self, batch, logs=None):
        self.first_done.set()
        now = time.perf_counter()
        if self.last is not None and now - self.last < self.every_seconds:
            return
        iteration, unit, name = (current_step(self.model), self.model.progress_unit,
                                 self.model.step_name)
        where = f" ({self.where(logs or {})})" if self.where else ""
        loss = float((logs or {}).get("loss", float("nan")))
        if self.last is None:
            self.log(f"{unit} %d/%d{where}: loss %.4f; first {name} took %.1f s (tracing "
                     "included)", iteration, self.total, loss, now - self.start)
            self.steady = (now, iteration)
        else:
            per_step = (now - self.steady[0]) / max(iteration - self.steady[1], 1)
            to_go = per_step * max(self.total - iteration, 0)
            budget = self.time_left() if self.time_left else None
            limit = " (the time budget)" if budget is not None and budget < to_go else ""
            self.log(f"{unit} %d/%d{where}: loss %.4f; %.2f s per {name}; about %.0f min to "
                     "go%s", iteration, self.total, loss, per_step,
                     min(to_go, budget if limit else to_go) / 60, limit)
        self.last = now


class LearningCurve(keras.callbacks.Callback):
    """Appends one row per epoch to a CSV: iteration, wall time, metrics, mask sparsity.

    `resume_from(iteration)` drops rows a killed run wrote after its last checkpoint and
    continues the wall-time column where the kept rows end (Keras' CSVLogger would append
    them twice)."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.start = None
        self.elapsed_before = 0.0

    def resume_from(self, iteration):
        if not os.path.exists(self.path):
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= iteration]
        if rows:
            self.elapsed_before = float(rows[-1]["wall_time_s"])
            with open(self.path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            os.remove(self.path)

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"iteration": current_step(self.model),
               "wall_time_s": round(self.elapsed_before + time.perf_counter() - self.start, 3)}
        row.update({k: float(v) for k, v in sorted((logs or {}).items())})
        report = sparsity_report(self.model.update_rule)
        if report is not None:
            row["sparsity/overall"] = report["overall"]
            row.update({f"sparsity/{layer}": s for layer, s in report["per_layer"].items()})
        new_file = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the weights with the best validation metric, written atomically to `path`."""

    def __init__(self, path, monitor="val_accuracy", mode="max"):
        super().__init__()
        if not path.endswith(".weights.h5"):
            raise ValueError("the best-checkpoint path must end in .weights.h5")
        self.path, self.monitor, self.mode = path, monitor, mode
        self.record = path[:-len(".weights.h5")] + ".json"
        self.best, self.best_iteration = None, None
        if os.path.exists(self.record) and os.path.exists(self.path):  # resuming a run
            with open(self.record) as f:
                saved = json.load(f)
            if saved.get("monitor") == monitor:
                self.best, self.best_iteration = saved["value"], saved["iteration"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(value)
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best = value
            self.best_iteration = current_step(self.model)
            write_weights_atomic(self.model, self.path)
            write_json_atomic(self.record, {"monitor": self.monitor, "value": value,
                                            "iteration": self.best_iteration})
