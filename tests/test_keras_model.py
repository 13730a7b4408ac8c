"""MetaLearner as a whole Keras model: `predict` adapts to each episode and predicts its
queries exactly as the exported SavedModel does; weights round-trip; `save("x.keras")` and
`keras.models.load_model` round-trip the whole learner (network, links, options, both
optimisers), and what a config cannot rebuild is refused in one line."""

import json

import numpy as np
import pytest
import tensorflow as tf

from wtl_tf import MetaLearner, models, rules
from wtl_tf.data.registry import task_distribution
from wtl_tf.export import export_learner
from wtl_tf.inner_options import InnerLoopOptions


def _learner(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    options = InnerLoopOptions(loss="mse", inner_steps=2, inner_steps_eval=3, seed=seed)
    learner = MetaLearner(models.mlp(), rules.chain(rules.BinaryMask(), rules.Scale(0.01)),
                          options)
    learner.compile(optimizer="adam", meta_optimizer="adam")
    return learner


@pytest.fixture(scope="module")
def trained():
    tasks = task_distribution("sinusoid", ways=1, shots=10, queries=7, seed=3)
    learner = _learner()
    learner.fit(tasks.episodes("train", 5), steps_per_epoch=20, epochs=1, verbose=0)
    episodes = [next(iter(tasks.episodes("test", 4, num_batches=1))),
                next(iter(tasks.episodes("validation", 4, num_batches=1)))]
    return learner, episodes


def test_predict_returns_each_episodes_adapted_query_predictions(trained):
    learner, episodes = trained
    predicted = learner.predict(tf.data.Dataset.from_tensor_slices(episodes[0]).batch(4),
                                verbose=0)
    assert predicted["predictions"].shape == (4, 7, 1)
    for i in range(4):  # one episode at a time, through the library's own inner loop
        adaptation = learner.adapt(episodes[0]["support_x"][i], episodes[0]["support_y"][i],
                                   steps=3, first_order=True, evaluation=True,
                                   task_seed=learner.episode_seed(episodes[0]["support_x"][i]))
        expected = learner.predict_adapted(adaptation, episodes[0]["query_x"][i]).numpy()
        np.testing.assert_allclose(predicted["predictions"][i], expected, rtol=1e-6, atol=1e-7)
    before = learner.task_model(tf.reshape(episodes[0]["query_x"], [-1, 1])).numpy()
    assert not np.allclose(predicted["predictions"].reshape(-1, 1), before)  # it adapted


def test_predict_equals_the_exported_adapt_and_predict(trained, tmp_path):
    learner, episodes = trained
    loaded = tf.saved_model.load(export_learner(learner, str(tmp_path / "export")))
    for batch in episodes:
        predicted = learner.predict(tf.data.Dataset.from_tensors(batch), verbose=0)
        for i in range(4):
            exported = loaded.adapt_and_predict(
                support_x=tf.cast(batch["support_x"][i], tf.float32),
                support_y=tf.cast(batch["support_y"][i], tf.float32),
                query_x=tf.cast(batch["query_x"][i], tf.float32))["predictions"].numpy()
            np.testing.assert_allclose(predicted["predictions"][i], exported, rtol=1e-6,
                                       atol=1e-7)


def test_weights_round_trip_predicts_identically(trained, tmp_path):
    learner, episodes = trained
    path = str(tmp_path / "learner.weights.h5")
    learner.save_weights(path)
    again = _learner(seed=0)
    again.fit(tf.data.Dataset.from_tensors(episodes[0]).repeat(), steps_per_epoch=1, epochs=1,
              verbose=0)  # its own optimiser state, then overwritten
    again.load_weights(path)
    data = tf.data.Dataset.from_tensors(episodes[1])
    np.testing.assert_array_equal(learner.predict(data, verbose=0)["predictions"],
                                  again.predict(data, verbose=0)["predictions"])


def test_a_keras_file_round_trips_the_learner_and_its_training(trained, tmp_path):
    import keras

    learner, episodes = trained
    path = str(tmp_path / "learner.keras")
    learner.save(path)
    again = keras.models.load_model(path)
    as_json = lambda config: json.loads(json.dumps(config))  # noqa: E731 (tuples as lists)
    assert type(again) is MetaLearner
    assert as_json(again.get_config()) == as_json(learner.get_config())
    assert [type(link).__name__ for link in again.update_rule.links] == ["BinaryMask", "Scale"]
    for a, b in zip(learner.weights, again.weights):  # network, mask logits, both optimisers
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert again.meta_optimizer is not None and int(again.meta_optimizer.iterations) == 20
    data = tf.data.Dataset.from_tensors(episodes[1])
    np.testing.assert_array_equal(learner.predict(data, verbose=0)["predictions"],
                                  again.predict(data, verbose=0)["predictions"])
    # training goes on from the same state: one more meta-step each, the same weights
    step = tf.data.Dataset.from_tensors(episodes[0]).repeat()
    for model in (learner, again):
        model.fit(step, steps_per_epoch=1, epochs=1, verbose=0)
    for a, b in zip(learner.weights, again.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_a_learner_with_python_code_in_its_options_is_refused_a_keras_file(tmp_path):
    learner = MetaLearner(models.mlp(), rules.chain(rules.Scale(0.1)),
                          InnerLoopOptions(loss=lambda y, p: tf.reduce_mean((y - p) ** 2)))
    with pytest.raises(NotImplementedError, match="its loss is a Python function.*"
                       "export_learner.*save_weights"):
        learner.save(str(tmp_path / "x.keras"))


def test_options_are_one_object_and_keywords_override_it():
    options = InnerLoopOptions(loss="mse", inner_steps=4)
    learner = MetaLearner(models.mlp(), rules.chain(rules.Scale(0.1)), options, inner_steps=2)
    assert (learner.inner_steps, learner.inner_steps_eval, learner.loss_name) == (2, 2, "mse")
    with pytest.raises(TypeError, match="unknown arguments \\['inner_step'\\]"):
        MetaLearner(models.mlp(), rules.chain(rules.Scale(0.1)), inner_step=2)


def test_a_keras_file_round_trips_a_sparse_maml_conv4_learner(tmp_path):
    import keras

    from wtl_tf import algorithms

    keras.utils.set_random_seed(1)
    rule = algorithms.build_update_rule(algorithms.get_algorithm("sparse_maml").links,
                                        inner_lr=0.4)
    learner = MetaLearner(models.conv4((16, 16, 1), 3, channels=4), rule, inner_steps=2,
                          first_order=True)
    learner.compile(optimizer="adam", meta_optimizer="sgd")
    learner.save(str(tmp_path / "conv4.keras"))
    again = keras.models.load_model(str(tmp_path / "conv4.keras"))
    assert type(again.meta_optimizer).__name__ == "SGD"
    x = tf.random.stateless_uniform((6, 16, 16, 1), (1, 2))
    y = tf.constant([0, 1, 2, 0, 1, 2])
    for a, b in zip(learner.adapt(x, y).params.values(), again.adapt(x, y).params.values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
