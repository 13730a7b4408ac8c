"""Training state on disk: periodic checkpoints to resume from, written atomically.

A checkpoint holds the initialisation, the update rule's meta-parameters and any
non-trainable state (BatchNorm statistics, moving averages), both optimisers' slots and
the step counter. The data pipeline needs nothing more: episode streams are pure functions
of (seed, split, index), so the step counter is their position. TensorFlow writes a
checkpoint's files first and only then updates the `checkpoint` index (atomically), so a
write cut short leaves the previous checkpoint in charge.
"""

import os

import keras
import tensorflow as tf
from absl import logging

from wtl_tf.errors import DataError


class RunCheckpoints:
    def __init__(self, directory, learner, keep=2):
        # Every weight explicitly, in model order: TensorFlow's object tracking does not see
        # through Keras' tracked lists, and would miss non-trainable state such as gradient
        # sharing's moving averages.
        objects = {"weights": [v.value for v in learner.weights], "optimizer": learner.optimizer}
        if learner.meta_optimizer is not None:
            objects["meta_optimizer"] = learner.meta_optimizer
        self.learner = learner
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)

    @property
    def iteration(self):
        return int(self.learner.optimizer.iterations.numpy())

    def restore(self):
        """Restores the newest complete checkpoint; returns its meta-iteration (0 if none)."""
        path = self.manager.latest_checkpoint
        if path is None:
            return 0
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as e:
            raise DataError(f"checkpoint {path} does not fit this run ({type(e).__name__}); it "
                            "was written by a different configuration: use another "
                            "--output_dir or delete its checkpoints/") from None
        logging.info("resumed from %s at meta-iteration %d", path, self.iteration)
        return self.iteration

    def save(self):
        if self.manager.latest_checkpoint and self.manager.checkpoint.save_counter is not None:
            latest = os.path.basename(self.manager.latest_checkpoint)
            if latest == f"ckpt-{self.iteration}":
                return self.manager.latest_checkpoint
        return self.manager.save(checkpoint_number=self.iteration)


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves at the end of every epoch (= every validation) and when training ends."""

    def __init__(self, checkpoints):
        super().__init__()
        self.checkpoints = checkpoints

    def on_epoch_end(self, epoch, logs=None):
        self.checkpoints.save()

    def on_train_end(self, logs=None):
        self.checkpoints.save()
