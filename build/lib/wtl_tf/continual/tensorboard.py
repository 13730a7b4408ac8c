"""TensorBoard summaries along a continual stream, written with `tf.summary`.

La-MAML family, at every task end (step = stream batches so far): the accuracy matrix R as
an image (rows: after task i; columns: task j; white = 1), the mean accuracy over the tasks
seen so far and over all tasks, the meta-loss, and per layer the fraction of weights whose
fast step is masked (sparse_la_maml) or whose learned rate is 0 (ReLU of a negative alpha).
Continual-MAML, at every step: the accuracy before adaptation, the online cumulative
accuracy, the pre-adaptation loss, the detected boundary and the true switch (0/1), and
every 100 steps the per-layer mask sparsity.
"""

import json

import numpy as np
import tensorflow as tf

from wtl_tf.tensorboard import write_settings


def r_matrix_image(r, cell=8):
    """[1, T*cell, T*cell, 1] image of an accuracy matrix (rows not yet learned are 0)."""
    r = np.asarray(r, np.float32)
    square = np.zeros((r.shape[1], r.shape[1]), np.float32)
    square[:len(r)] = r
    return np.kron(square, np.ones((cell, cell), np.float32))[None, :, :, None]


class StreamSummaries:
    def __init__(self, log_dir, config):
        self.writer = tf.summary.create_file_writer(log_dir) if log_dir else None
        self.accuracy_sum, self.steps = 0.0, 0
        if self.writer:
            with self.writer.as_default():
                write_settings(json.loads(json.dumps(config, default=str)))

    def _sparsity(self, step, factors):
        for path, factor in factors.items():
            tf.summary.scalar(f"sparsity/{path}", float(np.mean(np.asarray(factor) == 0)), step)

    def task_end(self, step, r, factors, loss):
        if not self.writer:
            return
        tasks_seen = len(r)
        with self.writer.as_default():
            tf.summary.image("stream/R", r_matrix_image(r), step)
            tf.summary.scalar("stream/accuracy_seen_tasks", float(np.mean(r[-1][:tasks_seen])),
                             step)
            tf.summary.scalar("stream/accuracy_all_tasks", float(np.mean(r[-1])), step)
            tf.summary.scalar("stream/meta_loss", float(loss), step)
            self._sparsity(step, factors)
        self.writer.flush()

    def osaka_step(self, step, record, switch, learner, stream):
        if not self.writer:
            return
        # Step 0's accuracy counts as 0 (OSAKA's convention); the cumulative sum restarts
        # on resume, so after a resume it covers this process's steps only.
        accuracy = 0.0 if step == 0 else record["accuracy"]
        self.accuracy_sum, self.steps = self.accuracy_sum + accuracy, self.steps + 1
        with self.writer.as_default():
            tf.summary.scalar("stream/accuracy", accuracy, step)
            tf.summary.scalar("stream/online_accuracy", self.accuracy_sum / self.steps, step)
            tf.summary.scalar("stream/loss_before_adaptation", record["loss_pre"], step)
            tf.summary.scalar("stream/boundary_detected", float(record["boundary"]), step)
            tf.summary.scalar("stream/true_switch", float(switch), step)
            if step % 100 == 0 and learner.masks:
                self._sparsity(step, learner.mask_factors())

    def close(self):
        if self.writer:
            self.writer.flush()
            self.writer.close()
