"""A continual run's SavedModel scored on its stream's tasks (what `wtl-evaluate` does with
a La-MAML-family export): the stream is rebuilt from the exported settings, and each task's
test set is predicted by the exported `predict` signature (the slow weights; on a split
stream, with the classes of other tasks shut, as the run scored them)."""

import dataclasses

import numpy as np
import tensorflow as tf

from wtl_tf import settings
from wtl_tf.config import ExperimentConfig
from wtl_tf.continual import building
from wtl_tf.errors import WtlError


def stream_config(exported, data_dir=None):
    """The exported run's settings, with `data_dir` replacing the run's where given."""
    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(exported) - known)
    if unknown:
        raise WtlError(f"the export names settings this wtl_tf does not have ({unknown[0]}, ...): "
                       "score it with the version that wrote it")
    config = ExperimentConfig(**{**exported, **({"data_dir": data_dir} if data_dir else {})})
    if not settings.la_maml_family(config):
        raise WtlError(f"{exported['algorithm']} on {exported['stream']} is scored along its "
                       "stream, online (the run's results.json); to use the export, "
                       "tf.saved_model.load it and call adapt_and_predict(support_x, "
                       "support_y, query_x)")
    return config


def task_accuracies(saved_model, config, batch_size=500):
    """Accuracy of the export's slow weights on each task's test set, in stream order."""
    loaded = tf.saved_model.load(saved_model)
    images = building.load_omniglot(config) if "omniglot" in config.stream else None
    stream = building.build_stream(config, images)
    class_task = getattr(stream, "class_task", None)
    scores = []
    for task in stream.tasks:
        correct = 0
        for start in range(0, len(task.test_y), batch_size):
            x = np.asarray(task.test_x[start:start + batch_size], np.float32)
            logits = loaded.predict(tf.constant(x))["logits"].numpy()
            if class_task is not None:  # the head's classes of other tasks are shut
                logits = np.where(np.asarray(class_task)[None, :] == task.index, logits, -np.inf)
            correct += int(np.sum(np.argmax(logits, -1) == task.test_y[start:start + batch_size]))
        scores.append(correct / len(task.test_y))
    return np.array(scores)
