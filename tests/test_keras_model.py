"""MetaLearner as a whole Keras model: `predict` adapts to each episode and predicts its
queries exactly as the exported SavedModel does; weights round-trip; `save` and `get_config`
say what to use instead."""

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


def test_save_and_get_config_say_what_to_use_instead(trained, tmp_path):
    learner, _ = trained
    for call in (lambda: learner.save(str(tmp_path / "x.keras")), learner.get_config):
        with pytest.raises(NotImplementedError, match="export_learner.*save_weights"):
            call()


def test_options_are_one_object_and_keywords_override_it():
    options = InnerLoopOptions(loss="mse", inner_steps=4)
    learner = MetaLearner(models.mlp(), rules.chain(rules.Scale(0.1)), options, inner_steps=2)
    assert (learner.inner_steps, learner.inner_steps_eval, learner.loss_name) == (2, 2, "mse")
    with pytest.raises(TypeError, match="unknown arguments \\['inner_step'\\]"):
        MetaLearner(models.mlp(), rules.chain(rules.Scale(0.1)), inner_step=2)
