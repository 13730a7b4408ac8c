"""Checkpoints of a stream run: the learner's variables plus the run's records, by stream step.

A continual learner's whole state is TensorFlow variables (weights, rates or masks, fast
weights, the optimisers' slots, La-MAML's replay memory, OSAKA's buffered batches); beside it
a run keeps host-side records (the accuracy matrix so far, the per-step history, the mask
trace, the training seconds). Both halves of checkpoint n are written as a pair:
`ckpt-n.state.npz` (the records) first, to a temporary name then renamed, then TensorFlow's
`ckpt-n`, whose `.index` file is written last. A restore takes the newest n whose two halves
both read back, so a run killed at any instant resumes from a complete, consistent pair.
"""

import json
import os
import re

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from wtl_tf import signal_watch
from wtl_tf.checkpoints import settings_variable
from wtl_tf.errors import DataError

_INDEX = re.compile(r"^ckpt-(\d+)\.index$")
_STATE = re.compile(r"^ckpt-(\d+)\.state\.npz$")


def pack_state(state):
    """Host-side state (names -> numpy arrays or JSON-able values) as arrays for np.savez."""
    numeric = {k for k, v in state.items() if isinstance(v, (np.ndarray, np.generic))}
    arrays = {k: np.asarray(v) if k in numeric else np.array(json.dumps(v))
              for k, v in state.items()}
    arrays["_json"] = np.array(json.dumps(sorted(set(state) - numeric)))
    return arrays


def unpack_state(loaded):
    """What pack_state packed, from a dict of the loaded arrays."""
    loaded = dict(loaded)
    as_json = set(json.loads(str(loaded.pop("_json"))))
    return {k: json.loads(str(v)) if k in as_json else v for k, v in loaded.items()}


def _numbers(directory, pattern):
    if not os.path.isdir(directory):
        return set()
    return {int(m.group(1)) for m in map(pattern.match, os.listdir(directory)) if m}


def _tf_variable(v):
    return v.value if isinstance(v, keras.Variable) else v


class StreamCheckpoints:
    def __init__(self, directory, variables, optimizer=None, keep=2, run_settings=None):
        objects = {"variables": [_tf_variable(v) for v in variables]}
        if isinstance(optimizer, dict):  # several optimisers by name
            objects.update(optimizer)
        elif optimizer is not None:
            objects["optimizer"] = optimizer
        self.directory, self.keep = directory, keep
        self.checkpoint = tf.train.Checkpoint(**objects)  # read: settings are checked apart
        settings = settings_variable(run_settings)
        self.written = (self.checkpoint if settings is None else
                        tf.train.Checkpoint(**objects, run_settings=settings))

    def _state_path(self, step):
        return os.path.join(self.directory, f"ckpt-{step}.state.npz")

    def save(self, step, state):
        """Writes checkpoint `step`: `state` maps names to numpy arrays or JSON-able values."""
        with signal_watch.writing():
            self._save(step, state)

    def _save(self, step, state):
        os.makedirs(self.directory, exist_ok=True)
        arrays = pack_state(state)
        partial = self._state_path(step) + f".partial-{os.getpid()}.npz"
        np.savez(partial, **arrays)
        os.replace(partial, self._state_path(step))
        self.written.write(os.path.join(self.directory, f"ckpt-{step}"))
        self._prune()

    def _prune(self):
        complete = sorted(_numbers(self.directory, _INDEX) & _numbers(self.directory, _STATE))
        for step in complete[:-self.keep]:
            for name in os.listdir(self.directory):
                if name.startswith(f"ckpt-{step}."):
                    os.remove(os.path.join(self.directory, name))

    def restore(self):
        """(step, state) of the newest complete checkpoint, or (0, None) when there is none."""
        steps = _numbers(self.directory, _INDEX) & _numbers(self.directory, _STATE)
        for step in sorted(steps, reverse=True):
            path = os.path.join(self.directory, f"ckpt-{step}")
            try:
                with np.load(self._state_path(step)) as f:
                    loaded = {k: f[k] for k in f.files}
                self.checkpoint.read(path).expect_partial().assert_existing_objects_matched()
            except (AssertionError, ValueError) as e:
                if isinstance(e, AssertionError) or "shape" in str(e).lower():
                    raise DataError(f"checkpoint {path} holds other variables than this "
                                    "learner (another configuration, or a wtl_tf version whose "
                                    "learner kept other state): finish the run with the tree "
                                    "that started it, use another --output_dir, or delete its "
                                    "checkpoints/") from None
                logging.warning("skipped checkpoint %s: %s", path, str(e).splitlines()[0][:160])
                continue
            except Exception as e:  # noqa: BLE001 - truncated or corrupt files of many kinds
                logging.warning("skipped checkpoint %s: it does not read back (%s)", path,
                                type(e).__name__)
                continue
            state = unpack_state(loaded)
            logging.info("resumed from %s at stream step %d", path, step)
            return step, state
        return 0, None


class StreamRunState:
    """A stream run's checkpoints as `PeriodicCheckpoint` saves them (`save(seconds)`): the
    learner's variables and optimisers, the run's records so far (`records()`:
    the accuracy matrix, the mask trace, ...) and the training seconds, by stream position."""

    def __init__(self, directory, learner, records=dict, run_settings=None):
        self.checkpoints = StreamCheckpoints(directory, learner.checkpoint_variables(),
                                             learner.checkpoint_objects() or None,
                                             run_settings=run_settings)
        self.learner, self.records, self.saved_at = learner, records, None

    def restore(self):
        """The restored checkpoint's records (None if there was none); the learner's
        position is restored with them."""
        step, state = self.checkpoints.restore()
        if state is not None:
            self.learner.position = self.saved_at = step
        return state

    def save(self, seconds):
        position = self.learner.position
        if position == self.saved_at:
            return
        self.checkpoints.save(position, {**self.records(),
                                         "seconds": float(seconds)})
        self.saved_at = position
