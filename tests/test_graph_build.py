"""The compiled meta-step builds the same graph in every process (issue: "N nodes in a cycle").

TensorFlow's oneDNN graph rewrite merges a BiasAddGrad with any Conv2DBackpropFilter that
reads the same output gradient; in a second-order graph there are two such readers and the
rewrite's choice depends on heap addresses, so some processes get a cycle (see
wtl_tf.models.layers.Conv2D). These tests check the graph as traced, on any CPU: the shipped
convolutional task networks leave no BiasAddGrad that shares its input with a
Conv2DBackpropFilter, so there is nothing for the rewrite to pair. benchmarks/graph_builds.py
checks the same end to end in 30+ fresh processes per configuration.
"""

import warnings

import helpers
import keras
import pytest
import tensorflow as tf

from wtl_tf import MetaLearner, models, rules


def _shared_bias_and_filter_gradients(graph_def):
    """(function, tensor) pairs read by both a BiasAddGrad (input 0) and a
    Conv2DBackpropFilter (input 2), in the graph and every function of its library."""
    found = []
    bodies = [("<graph>", graph_def.node)] + [(f.signature.name, f.node_def)
                                              for f in graph_def.library.function]
    for name, nodes in bodies:
        readers = {}
        for node in nodes:
            for index, tensor in enumerate(i for i in node.input if not i.startswith("^")):
                readers.setdefault(tensor, []).append((node.op, index))
        for tensor, ops in readers.items():
            if ("BiasAddGrad", 0) in ops and ("Conv2DBackpropFilter", 2) in ops:
                found.append((name, tensor))
    return found


def _meta_step_graph(task_model, rule=None, first_order=False):
    learner = MetaLearner(task_model, rule or rules.chain(rules.BinaryMask(), rules.Scale(0.4)),
                          inner_steps=1, first_order=first_order)
    learner.compile(optimizer="adam", meta_optimizer="adam")
    batch = {k: tf.constant(v) for k, v in
             helpers.random_classification_episodes(3, 5, 1, 2, (28, 28, 1)).items()}
    return tf.function(learner.train_step).get_concrete_function(batch).graph.as_graph_def()


def _keras_conv_net():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = models.BatchNorm(name="norm1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = keras.layers.Flatten()(keras.layers.MaxPool2D(4)(x))
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(x))


def test_the_detector_finds_the_pattern_of_keras_conv_layers():
    # keras.layers.Conv2D adds its bias with BiasAdd: the pattern the rewrite can mis-pair.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = _meta_step_graph(_keras_conv_net())
    assert _shared_bias_and_filter_gradients(graph)


@pytest.mark.parametrize("network", ["conv4", "warped_conv4", "conv4_warp"])
@pytest.mark.parametrize("first_order", [False, True])
def test_shipped_conv_networks_leave_nothing_to_mispair(network, first_order):
    task_model = {"conv4": lambda: models.conv4((28, 28, 1), 5, channels=8),
                  "warped_conv4": lambda: models.warped_conv4((28, 28, 1), 5, channels=8),
                  "conv4_warp": lambda: models.conv4((28, 28, 1), 5, channels=8, warp=True)}[network]()
    graph = _meta_step_graph(task_model, first_order=first_order)
    assert _shared_bias_and_filter_gradients(graph) == []
    ops = {node.op for f in graph.library.function for node in f.node_def}
    assert "Conv2DBackpropFilter" in ops  # the gradients are there, only not as BiasAddGrad


def test_conv2d_is_keras_conv2d_with_the_same_weights_and_outputs():
    x = tf.random.normal((2, 9, 9, 3))
    ours = models.Conv2D(4, 3, padding="same", bias_initializer="random_normal")
    theirs = keras.layers.Conv2D(4, 3, padding="same")
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    assert [v.path.split("/")[-1] for v in ours.weights] == ["kernel", "bias"]
    tf.debugging.assert_near(ours(x), theirs(x), atol=1e-6)
    with tf.GradientTape(persistent=True) as tape:
        y_ours, y_theirs = tf.reduce_sum(ours(x) ** 2), tf.reduce_sum(theirs(x) ** 2)
    for a, b in zip(tape.gradient(y_ours, ours.trainable_variables),
                    tape.gradient(y_theirs, theirs.trainable_variables)):
        tf.debugging.assert_near(a, b, rtol=1e-5, atol=1e-5)


def test_second_order_learner_warns_about_keras_conv_layers_under_onednn(monkeypatch):
    from wtl_tf import graph_checks

    monkeypatch.setattr(graph_checks, "_onednn_graph_rewrite_on", lambda: True)
    with pytest.warns(UserWarning, match="wtl_tf.models.Conv2D"):
        MetaLearner(_keras_conv_net(), rules.chain(rules.Scale(0.1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our layer, or first order: nothing to warn about
        MetaLearner(models.conv4((28, 28, 1), 5, channels=8), rules.chain(rules.Scale(0.1)))
        MetaLearner(_keras_conv_net(), rules.chain(rules.Scale(0.1)), first_order=True)


def test_the_fresh_process_checker_configurations_are_valid_runs():
    """benchmarks/graph_builds.py builds learners from these settings: they must stay
    settings a run accepts (a refused one made every Warp-Leap process fail)."""
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.graph_builds import CONFIGS
    from wtl_tf.config import ExperimentConfig

    for name, settings in CONFIGS.items():
        config = ExperimentConfig(**settings, dataset="omniglot", image_size=28).resolved()
        assert config.algorithm == settings["algorithm"], name
