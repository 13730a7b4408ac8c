"""StreamLearner: the Keras skeleton every continual learner shares.

A continual learner is a `keras.Model` whose `train_step(batch)` learns from one element of a
seeded `tf.data` stream (`observe`); `fit` drives it with the same callbacks as few-shot
meta-training (signals, progress, periodic checkpoints, the non-finite loss guard) plus the
stream's own (the accuracy matrix R, the mask trace, TensorBoard: wtl_tf.continual.callbacks).

Its steps run eagerly (`compile` sets `run_eagerly`): a stream learner keeps host-side state
between steps — a reservoir replay buffer and its random generator, OSAKA's previous batch and
boundary detector — that a traced step could not hold; each learner compiles the numeric
part of its step itself (`tf.function` per update).

A subclass implements `learn(batch) -> logs` and the checkpoint, mask and export hooks below.
"""

import keras
import numpy as np


class StreamLearner(keras.Model):
    """A learner of a stream, one batch per `train_step`."""

    progress_unit, step_name = "stream step", "step"
    divergence_advice = ("lower the learning rates (--inner_lr, --meta_lr, --outer_lr) or clip "
                         "(--grad_clip_norm); the last checkpoint is kept")

    def __init__(self, name):
        super().__init__(name=name)
        self.position = 0  # stream steps learned (restored from a checkpoint on resume)
        self.built = True

    def compile(self):
        super().compile(optimizer=None, run_eagerly=True)

    def iteration(self):
        return self.position

    def train_step(self, batch):
        logs = self.learn(batch)
        self.position += 1
        return logs

    def learn(self, batch):
        """Learns from one stream element; returns its logs ({"loss": ...} at least)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_variables(self):
        """The TensorFlow variables a checkpoint holds."""
        raise NotImplementedError

    def checkpoint_objects(self):
        """Optimisers (name -> object) a checkpoint holds besides the variables."""
        return {}

    def numpy_state(self):
        """Host-side state a checkpoint holds (name -> numpy array or JSON-able value)."""
        return {}

    def restore_numpy_state(self, state):
        pass

    # ------------------------------------------------------------------ masks
    def mask_factors(self):
        """{variable path: the per-weight factor of its step} (rates or masked rates)."""
        return {}

    def mask_sparsity(self):
        """The fraction of masked weights, or None for a learner without masks."""
        return None

    def mask_changes(self):
        return None

    def mask_sparsity_record(self):
        """{"overall", "per_layer": {path: fraction shut}, "changed": {path: fraction open or
        shut differently from the start}, "entries": {path: mask entries}}, or None."""
        if self.mask_sparsity() is None:
            return None
        changed = self.mask_changes()
        factors = {path: np.asarray(f) for path, f in self.mask_factors().items()
                   if path in changed}
        return {"overall": self.mask_sparsity(),
                "per_layer": {path: float(np.mean(f == 0)) for path, f in factors.items()},
                "changed": changed, "entries": {path: int(f.size) for path, f in factors.items()}}

    # ------------------------------------------------------------------ export
    def slow_weights(self):
        """The network's weights as tensors, in the order `forward_with` takes them."""
        raise NotImplementedError

    def forward_with(self, weights, x):
        """Logits of the network with `weights` on `x`."""
        raise NotImplementedError

    def fast_weights(self, x, y):
        """The weights after the learner's adaptation to (x, y) (graph-safe)."""
        raise NotImplementedError

    def call(self, x, training=False):
        return self.forward_with(self.slow_weights(), x)

    def get_config(self):
        raise NotImplementedError(_NOT_A_KERAS_FILE)

    def save(self, filepath, *args, **kwargs):
        raise NotImplementedError(_NOT_A_KERAS_FILE)


_NOT_A_KERAS_FILE = (
    "a continual learner is not kept in Keras' .keras format: its replay buffer and stream "
    "position are host-side state a config cannot rebuild. For use, rerun the training "
    "command with --export_dir (a SavedModel with adapt_and_predict and predict); to resume, "
    "rerun the same command (the run's checkpoints hold the whole state)")
