"""Shared test helpers (imported by test modules as `helpers`)."""

import os

import numpy as np


def random_classification_episodes(meta_batch, ways, shots, queries, input_shape, seed=0,
                                   dtype="float32"):
    """Random inputs and balanced labels, shaped like a meta-batch of episodes."""
    rng = np.random.default_rng(seed)

    def labels(per_class):
        return np.tile(np.repeat(np.arange(ways), per_class), (meta_batch, 1)).astype("int32")

    return {
        "support_x": rng.normal(size=(meta_batch, ways * shots, *input_shape)).astype(dtype),
        "support_y": labels(shots),
        "query_x": rng.normal(size=(meta_batch, ways * queries, *input_shape)).astype(dtype),
        "query_y": labels(queries),
    }


def sinusoid_batch(meta_batch, shots, queries, seed=0, dtype="float64"):
    """Sinusoid-like regression episodes generated with numpy (independent of wtl_tf.data)."""
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.1, 5.0, size=(meta_batch, 1, 1))
    phase = rng.uniform(0, np.pi, size=(meta_batch, 1, 1))
    xs = rng.uniform(-5, 5, size=(meta_batch, shots, 1))
    xq = rng.uniform(-5, 5, size=(meta_batch, queries, 1))
    return {"support_x": xs.astype(dtype), "support_y": (amp * np.sin(xs - phase)).astype(dtype),
            "query_x": xq.astype(dtype), "query_y": (amp * np.sin(xq - phase)).astype(dtype)}


def variable_values(variables):
    return [np.array(v.numpy()) for v in variables]


def assign_values(variables, values):
    for v, value in zip(variables, values):
        v.assign(value)


def gradient_lists(learner, grads):
    """A {path: gradient} tree as (initialisation, meta-parameter) lists, in the order of
    learner.initialization_variables and learner.meta_variables."""
    return ([grads[v.path] for v in learner.initialization_variables],
            [grads[v.path] for v in learner.meta_variables])


def gradient_list(learner, grads):
    """All of a {path: gradient} tree: initialisation then meta-parameters."""
    theta, meta = gradient_lists(learner, grads)
    return theta + meta


def weight_list(model, tree):
    """A {path: tensor} tree of a network's trainable weights, in its variables' order."""
    return [tree[v.path] for v in model.trainable_variables]


def tiny_la_maml_batch(seed=0, chunks=2):
    """(chunks_x, chunks_y, meta_x, meta_y) for a La-MAML learner on 6 inputs and 3 classes:
    `chunks` look-ahead chunks of one example, a meta-batch of 5."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(chunks, 1, 6))
    y = rng.integers(0, 3, size=(chunks, 1))
    meta_x, meta_y = rng.normal(size=(5, 6)), rng.integers(0, 3, size=(5,))
    return [tf.constant(a) for a in (x, y, meta_x, meta_y)]


def read_events(log_dir):
    """{run: {tag: [(step, value)]}} through TensorBoard's own reader (the event files a user's
    `tensorboard --logdir` reads); scalars as floats, other summaries as numpy arrays."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_multiplexer

    multiplexer = event_multiplexer.EventMultiplexer(size_guidance={"tensors": 0})
    multiplexer.AddRunsFromDirectory(log_dir)
    multiplexer.Reload()
    runs = {}
    for run in multiplexer.Runs():
        for tag in multiplexer.GetAccumulator(run).Tags()["tensors"]:
            values = []
            for event in multiplexer.Tensors(run, tag):
                array = tf.make_ndarray(event.tensor_proto)
                scalar = array.ndim == 0 and array.dtype.kind == "f"
                values.append((event.step, float(array) if scalar else array))
            runs.setdefault(os.path.normpath(run), {})[tag] = values
    return runs


def plugin_tags(log_dir, run, plugin):
    """The tags TensorBoard's `plugin` (scalars, histograms, images, text, hparams) lists."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        os.path.join(log_dir, run), size_guidance={"tensors": 0})
    accumulator.Reload()
    return set(accumulator.PluginTagToContent(plugin))
