"""Keras callbacks for meta-training runs."""

import csv
import math
import os
import time

import keras

from wtl_tf.errors import NonFiniteLossError
from wtl_tf.sparsity import sparsity_report


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training with NonFiniteLossError as soon as the meta-loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            step = int(self.model.optimizer.iterations.numpy())
            raise NonFiniteLossError(
                f"meta-loss became {loss} at meta-iteration {step}; lower the inner or outer "
                "learning rate (--inner_lr, --outer_lr, --meta_lr) or clip gradients "
                "(--outer_clip, --meta_clip)")


class StopAtIteration(keras.callbacks.Callback):
    """Ends training after exactly `iterations` meta-updates, mid-epoch if need be."""

    def __init__(self, iterations):
        super().__init__()
        self.iterations = iterations

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.iterations:
            self.model.stop_training = True


class LearningCurve(keras.callbacks.Callback):
    """Appends one row per epoch to a CSV: iteration, wall time, metrics, mask sparsity."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.start = None
        self.elapsed_before = 0.0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"iteration": int(self.model.optimizer.iterations.numpy()),
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
