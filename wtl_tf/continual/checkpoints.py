"""Checkpoints of a stream run, in the format of every run (wtl_tf.checkpoints), numbered by
stream step.

A continual learner's whole state is TensorFlow variables (weights, rates or masks, fast
weights, the optimisers' slots, La-MAML's replay memory, OSAKA's buffered batches); the run's
records (the accuracy matrix so far, the per-step history, the mask trace, the training
seconds) travel in the same checkpoint as one JSON string variable, so a checkpoint is one
TensorFlow checkpoint, written and restored as one: a run killed at any instant resumes
from a complete one, and a corrupt one is quarantined like a few-shot run's.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from wtl_tf.checkpoints import CheckpointFiles


def _tf_variable(v):
    return v.value if isinstance(v, keras.Variable) else v


def _plain(value):
    """JSON for numpy arrays and numbers (float64 round-trips exactly through JSON)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"a stream record holds a {type(value).__name__}, which JSON cannot keep")


class StreamCheckpoints(CheckpointFiles):
    """`variables` and optimisers (`optimizer`: one, or several by name) with the run's
    records, by stream step."""

    def __init__(self, directory, variables, optimizer=None, keep=2, run_settings=None):
        self.records = tf.Variable("{}", dtype=tf.string, trainable=False, name="records")
        objects = {"variables": [_tf_variable(v) for v in variables], "records": self.records}
        if isinstance(optimizer, dict):
            objects.update(optimizer)
        elif optimizer is not None:
            objects["optimizer"] = optimizer
        super().__init__(directory, objects, keep, run_settings)

    def mismatch_advice(self):
        older = any(name.endswith(".state.npz") for name in os.listdir(self.directory))
        return ("it was written by a wtl_tf version that kept a stream run's records in "
                ".state.npz files: finish the run with that version, use another --output_dir, "
                "or delete its checkpoints/" if older else super().mismatch_advice())

    def save(self, step, state):
        """Writes checkpoint `step`: `state` maps names to numpy arrays or JSON-able values."""
        self.records.assign(json.dumps(state, default=_plain))
        return self.write(step)

    def restore(self):
        """(step, state) of the newest checkpoint that reads back, or (0, None)."""
        step = self.restore_newest()
        if step is None:
            return 0, None
        logging.info("resumed from %s at stream step %d", self.manager.latest_checkpoint, step)
        return step, json.loads(self.records.numpy().decode("utf-8"))


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
        self.checkpoints.save(position, {**self.records(), "seconds": float(seconds)})
        self.saved_at = position
