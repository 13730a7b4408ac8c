"""The stream's metrics as Keras callbacks: what a continual run records along its stream,
beside the callbacks every run shares (wtl_tf.callbacks, wtl_tf.checkpoints)."""

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.continual.osaka_stream import as_record, history_arrays, history_from_arrays


class AccuracyMatrix(keras.callbacks.Callback):
    """At every task end of a task-incremental stream: R's next row (the task-aware test
    accuracy on every task of the stream), the mask trace of a masked learner, TensorBoard
    (`summaries`), then `at_task_end()` (the run checkpoints there).

    `schedule[i]` is the task of stream step i."""

    def __init__(self, stream, schedule, summaries=None, at_task_end=None):
        super().__init__()
        self.stream, self.schedule, self.summaries = stream, schedule, summaries
        self.at_task_end = at_task_end
        self.rows, self.trace = [], []

    def restore(self, state):
        """Continues a resumed run's rows and trace (a checkpoint's `records()`)."""
        self.rows = [list(r) for r in state["R"]]
        self.trace = list(state.get("mask_trace", []))

    def task_of_step(self, step):
        return self.schedule[step][0]

    def on_train_batch_end(self, batch, logs=None):
        learner, step = self.model, self.model.position
        task = self.task_of_step(step - 1)
        if step < len(self.schedule) and self.task_of_step(step) == task:
            return
        self.rows.append([learner.accuracy(u.test_x, u.test_y, task=u.index)
                          for u in self.stream.tasks])
        if learner.mask_sparsity() is not None:
            self.trace.append({"step": step, "task": task + 1, **learner.mask_sparsity_record()})
        if self.summaries is not None:
            self.summaries.task_end(step, np.asarray(self.rows), learner.mask_factors(),
                                    (logs or {})["loss"])
        if self.at_task_end is not None:
            self.at_task_end()

    def records(self):
        """What a checkpoint keeps of them."""
        return {"R": np.asarray(self.rows, np.float64).reshape(len(self.rows),
                                                               len(self.stream.tasks)),
                "mask_trace": self.trace}


class OnlineRecords(keras.callbacks.Callback):
    """Every step of an OSAKA stream: its record (the history the online accuracy and the
    boundary scores read), TensorBoard's online accuracy, losses and boundaries, and the
    masks' sparsity about 20 times along the stream."""

    def __init__(self, stream, summaries):
        super().__init__()
        self.stream, self.summaries, self.trace, self.history = stream, summaries, [], []
        self.trace_every = max(1, len(stream) // 20)

    def restore(self, state):
        """Continues a resumed run's history and trace (a checkpoint's `records()`)."""
        self.history = history_from_arrays(state)
        self.trace = list(state["mask_trace"])

    def records(self):
        """What a checkpoint keeps of them."""
        return {**history_arrays(self.history), "mask_trace": self.trace}

    def on_train_batch_end(self, batch, logs=None):
        learner, step = self.model, self.model.position
        self.history.append(as_record(logs))
        self.summaries.osaka_step(step - 1, self.history[-1],
                                  bool(self.stream.switches[step - 1]), learner, self.stream)
        if learner.masks and (step % self.trace_every == 0 or step == len(self.stream)):
            self.trace.append({"step": step, **learner.mask_sparsity_record()})


class ScalarSummary(keras.callbacks.Callback):
    """Writes a log of every step as one TensorBoard scalar (`writer`: None writes nothing)."""

    def __init__(self, writer, log_name, tag):
        super().__init__()
        self.writer, self.log_name, self.tag = writer, log_name, tag

    def on_train_batch_end(self, batch, logs=None):
        if self.writer:
            with self.writer.as_default():
                tf.summary.scalar(self.tag, (logs or {})[self.log_name],
                                  self.model.iteration())
