"""Training state on disk: periodic checkpoints to resume from, written atomically.

A checkpoint holds the initialisation, the update rule's meta-parameters and any
non-trainable state (BatchNorm statistics, moving averages), both optimisers' slots, the step
counter and the training time spent so far (so a time budget counts over all resumes). The
data pipeline needs nothing more: episode streams are pure functions of (seed, split,
index), so the step counter is their position. TensorFlow writes a checkpoint's files first
and only then updates the `checkpoint` state file, so a write cut short leaves the previous
checkpoint in charge.

Each checkpoint also carries the run's settings (`run_settings`, JSON), so that a resume is
checked against what the checkpoint was trained with even when config.json is gone.

Restoring trusts the files, not the state file: checkpoints are found by their names, the
newest that reads back is used, one that does not (truncated, corrupt) is moved to
`corrupt/` with a warning, and a state file that cannot be parsed is set aside and rebuilt,
so it can never make a run start from 0 and rotate good checkpoints away.
"""

import json
import os
import re
import shutil
import time

import keras
import tensorflow as tf
from absl import logging

from wtl_tf import settings, signal_watch
from wtl_tf.errors import DataError

_CHECKPOINT = re.compile(r"^ckpt-(\d+)\.index$")


def _checkpoint_numbers(directory):
    if not os.path.isdir(directory):
        return []
    return sorted((int(m.group(1)) for m in map(_CHECKPOINT.match, os.listdir(directory)) if m),
                  reverse=True)


def has_checkpoints(directory):
    return bool(_checkpoint_numbers(directory))


def _is_mismatch(error):
    """A checkpoint that reads back but was written for other variables (not corruption)."""
    return isinstance(error, AssertionError) or (
        isinstance(error, ValueError) and "shape" in str(error).lower())


SETTINGS_KEY = "run_settings/.ATTRIBUTES/VARIABLE_VALUE"


def settings_variable(run_settings):
    """The run's training settings (those a resume may not change) as a string variable a
    checkpoint carries; None without settings."""
    if run_settings is None:
        return None
    not_training = {*settings.resumable(), "output_dir"}  # a moved copy still resumes
    training = {k: v for k, v in run_settings.items() if k not in not_training}
    return tf.Variable(json.dumps(training, sort_keys=True, default=str), dtype=tf.string,
                       trainable=False, name="run_settings")


def stored_settings(directory):
    """The settings saved inside the newest checkpoint of `directory` that reads back (either
    checkpoint format), or None when none holds them."""
    for number in _checkpoint_numbers(directory):
        try:
            reader = tf.train.load_checkpoint(os.path.join(directory, f"ckpt-{number}"))
            if not reader.has_tensor(SETTINGS_KEY):
                return None
            return json.loads(reader.get_tensor(SETTINGS_KEY).decode("utf-8"))
        except Exception:  # noqa: BLE001 - a truncated checkpoint: try the one before it
            continue
    return None


class CheckpointFiles:
    """Numbered TensorFlow checkpoints of `objects` in `directory` (the one format of every
    run): the newest that reads back is restored, corrupt ones are quarantined, a state file
    that cannot be parsed is rebuilt, and the newest `keep` are kept. `objects` are read on
    restore; they and the run's settings are written on save."""

    def __init__(self, directory, objects, keep=2, run_settings=None):
        self.directory, self.keep = directory, keep
        # Restored without the settings (checked before restoring, and absent from
        # checkpoints written without them); saved with them.
        self.checkpoint = tf.train.Checkpoint(**objects)
        settings = settings_variable(run_settings)
        self.saved = (self.checkpoint if settings is None else
                      tf.train.Checkpoint(**objects, run_settings=settings))
        self.manager = None

    def _quarantine(self, number, reason):
        corrupt = os.path.join(self.directory, "corrupt")
        os.makedirs(corrupt, exist_ok=True)
        prefix = f"ckpt-{number}."
        for name in os.listdir(self.directory):
            if name.startswith(prefix):
                shutil.move(os.path.join(self.directory, name), os.path.join(corrupt, name))
        logging.warning("skipped checkpoint %s: it does not read back (%s); moved to %s",
                        os.path.join(self.directory, f"ckpt-{number}"), reason, corrupt)

    def _rebuild_state(self):
        """Writes the state file from the checkpoints on disk (oldest first, newest last)."""
        state = os.path.join(self.directory, "checkpoint")
        try:  # TensorFlow logs a parse failure and returns None
            readable = tf.train.get_checkpoint_state(self.directory) is not None
        except Exception:  # noqa: BLE001 - any failure to read it: set the file aside
            readable = False
        if os.path.exists(state) and not readable:
            aside = f"{state}.unreadable-{int(time.time())}"
            os.replace(state, aside)
            logging.warning("checkpoint state file %s could not be read; kept as %s and rebuilt "
                            "from the checkpoint files", state, aside)
        numbers = sorted(_checkpoint_numbers(self.directory))
        if numbers:  # TensorFlow's text format of the state file, paths relative to it
            lines = [f'model_checkpoint_path: "ckpt-{numbers[-1]}"'] + [
                f'all_model_checkpoint_paths: "ckpt-{n}"' for n in numbers]
            partial = f"{state}.partial-{os.getpid()}"
            with open(partial, "w") as f:
                f.write("\n".join(lines) + "\n")
            os.replace(partial, state)
        elif os.path.exists(state):
            os.remove(state)

    def mismatch_advice(self):
        return ("it was written by a different configuration: use another --output_dir or "
                "delete its checkpoints/")

    def restore_newest(self):
        """Restores the newest checkpoint that reads back; returns its number (None if
        none). Corrupt ones are moved aside; one written for other variables is an error."""
        restored = None
        for number in _checkpoint_numbers(self.directory):
            path = os.path.join(self.directory, f"ckpt-{number}")
            try:
                self.checkpoint.restore(path).expect_partial().assert_existing_objects_matched()
            except Exception as e:  # noqa: BLE001 - TensorFlow raises many kinds on bad files
                if _is_mismatch(e):
                    raise DataError(f"checkpoint {path} does not fit this run ({type(e).__name__}"
                                    f"); {self.mismatch_advice()}") from None
                self._quarantine(number, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                                 if str(e) else type(e).__name__)
                continue
            restored = number
            break
        self._open_manager()
        return restored

    def _open_manager(self):
        os.makedirs(self.directory, exist_ok=True)
        self._rebuild_state()
        self.manager = tf.train.CheckpointManager(self.saved, self.directory,
                                                  max_to_keep=self.keep)

    def write(self, number):
        """Writes checkpoint `number` (once: the newest already being it, nothing)."""
        with signal_watch.writing():
            if self.manager is None:  # saving without restoring first (a fresh run)
                self._open_manager()
            latest = self.manager.latest_checkpoint
            if latest and os.path.basename(latest) == f"ckpt-{number}":
                return latest
            path = self.manager.save(checkpoint_number=number)
            self._prune()
            return path

    def _prune(self):
        """Keeps the newest `keep` checkpoints. The manager alone does not: those it finds
        from earlier processes carry no timestamps and count as preserved forever, so every
        resume left its checkpoints behind."""
        stale = _checkpoint_numbers(self.directory)[self.keep:]
        for number in stale:
            for name in os.listdir(self.directory):
                if name.startswith(f"ckpt-{number}."):
                    os.remove(os.path.join(self.directory, name))
        if stale:
            self._rebuild_state()
            self.manager = tf.train.CheckpointManager(self.saved, self.directory,
                                                      max_to_keep=self.keep)


class RunCheckpoints(CheckpointFiles):
    """A few-shot run's checkpoints, numbered by meta-iteration."""

    def __init__(self, directory, learner, keep=2, run_settings=None):
        # Every weight explicitly, in model order: TensorFlow's object tracking does not see
        # through Keras' tracked lists, and would miss non-trainable state such as gradient
        # sharing's moving averages.
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                         name="train_seconds")
        objects = {"weights": [v.value for v in learner.weights], "optimizer": learner.optimizer,
                   "train_seconds": self.train_seconds}
        if learner.meta_optimizer is not None:
            objects["meta_optimizer"] = learner.meta_optimizer
        self.learner = learner
        super().__init__(directory, objects, keep, run_settings)

    @property
    def iteration(self):
        return int(self.learner.optimizer.iterations.numpy())

    def restore(self):
        """Restores the newest checkpoint that reads back; returns its meta-iteration (0 if
        none)."""
        if self.restore_newest() is None:
            return 0
        logging.info("resumed from %s at meta-iteration %d", self.manager.latest_checkpoint,
                     self.iteration)
        return self.iteration

    def save(self, train_seconds=None):
        if train_seconds is not None:
            self.train_seconds.assign(train_seconds)
        return self.write(self.iteration)


class TrainClock:
    """Training seconds over all resumes of a run: those before this process plus this
    process's time inside fit(). `timer` is wall time by default; `time.process_time` counts
    this process's CPU seconds instead, so that a budget means the same compute when other
    jobs share the machine."""

    def __init__(self, before=0.0, timer=time.perf_counter):
        self.before, self.started, self.timer = float(before), None, timer

    def start(self):
        self.started = self.timer()

    @property
    def seconds(self):
        return self.before + (self.timer() - self.started if self.started else 0.0)


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves every `every_seconds` of training (at a step boundary), at the end of every epoch
    (= every validation) and when training ends."""

    def __init__(self, checkpoints, clock, every_seconds=180.0):
        super().__init__()
        self.checkpoints, self.clock, self.every_seconds = checkpoints, clock, every_seconds
        self.last = None

    def save(self):
        self.checkpoints.save(self.clock.seconds)
        self.last = time.perf_counter()

    def on_train_begin(self, logs=None):
        self.last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.every_seconds and time.perf_counter() - self.last >= self.every_seconds:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def on_train_end(self, logs=None):
        self.save()
