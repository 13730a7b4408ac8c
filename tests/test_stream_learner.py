"""Continual learners are Keras models: `fit` over the stream's tf.data learns exactly what
observing it batch by batch learns, a stream resumed at any step continues it exactly, and
a learner saved to a .keras file mid-stream loads and goes on exactly as it would have."""

import keras
import numpy as np
import pytest

from wtl_tf import models
from wtl_tf.continual import metrics
from wtl_tf.continual.callbacks import AccuracyMatrix
from wtl_tf.continual.la_maml import LaMAML
from wtl_tf.continual.osaka_stream import as_record as osaka_record
from wtl_tf.continual.streams import ContinualTask, Stream

BATCH, PASSES = 8, 2


def _stream():
    rng = np.random.default_rng(0)
    tasks = [ContinualTask(t, f"task {t}", rng.random((20, 784), np.float32),
                           rng.integers(0, 5, 20), rng.random((6, 784), np.float32),
                           rng.integers(0, 5, 6), seed=t) for t in range(3)]
    return Stream("toy", tasks, classes=5)


def _learner(rates="masked"):
    keras.utils.set_random_seed(0)
    return LaMAML(models.mlp(784, (16,), 5), rates=rates, glances=2, replay_size=4,
                  memories=12, seed=0)


def _weights(learner):
    return [v.numpy() for v in learner.checkpoint_variables()]


@pytest.mark.parametrize("rates", ["learned", "masked"])
def test_fit_over_the_stream_equals_observing_it_and_resumes_at_any_step(rates):
    stream = _stream()
    schedule = stream.schedule(BATCH, PASSES)
    observed = _learner(rates)
    for t, task in enumerate(stream.tasks):
        for i, (x, y) in enumerate(task.train_batches(BATCH, PASSES)):
            observed.observe(x.numpy(), y.numpy(), t, first_pass=i < -(-20 // BATCH))

    fitted = _learner(rates)
    assert isinstance(fitted, keras.Model)
    fitted.compile()
    fitted.fit(fitted.stream_dataset(stream, BATCH, PASSES), steps_per_epoch=len(schedule),
               verbose=0, shuffle=False)
    assert fitted.position == len(schedule)

    resumed, cut = _learner(rates), 7  # mid-task, in the second pass of task 1
    resumed.compile()
    resumed.fit(resumed.stream_dataset(stream, BATCH, PASSES), steps_per_epoch=cut, verbose=0,
                shuffle=False)
    resumed.fit(resumed.stream_dataset(stream, BATCH, PASSES, start=cut),
                steps_per_epoch=len(schedule) - cut,
                verbose=0, shuffle=False)
    for a, b, c in zip(_weights(observed), _weights(fitted), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert observed.accuracy(stream.tasks[0].test_x, stream.tasks[0].test_y) == \
        fitted.accuracy(stream.tasks[0].test_x, stream.tasks[0].test_y)


def test_the_stream_dataset_carries_task_ids_and_the_first_pass():
    stream = _stream()
    elements = [(int(t), bool(first)) for _, _, t, first in stream.dataset(BATCH, PASSES)]
    per_pass = -(-20 // BATCH)
    assert elements == [(t, p == 0) for t in range(3) for p in range(PASSES)
                        for _ in range(per_pass)]
    assert [(int(t), bool(f)) for _, _, t, f in stream.dataset(BATCH, PASSES, start=4)] == \
        elements[4:]


@pytest.mark.parametrize("rates", ["learned", "masked"])
def test_a_keras_file_mid_stream_loads_and_goes_on_exactly(rates, tmp_path):
    stream = _stream()
    steps, cut = len(stream.schedule(BATCH, PASSES)), 7
    whole = _learner(rates)
    whole.compile()
    whole.fit(whole.stream_dataset(stream, BATCH, PASSES), steps_per_epoch=steps, verbose=0,
              shuffle=False)
    first = _learner(rates)
    first.compile()
    first.fit(first.stream_dataset(stream, BATCH, PASSES), steps_per_epoch=cut, verbose=0,
              shuffle=False)
    first.save(str(tmp_path / "learner.keras"))
    keras.utils.set_random_seed(123)  # the file, not the process's seed, restores the learner
    loaded = keras.models.load_model(str(tmp_path / "learner.keras"))
    assert type(loaded) is LaMAML and loaded.position == cut and loaded.compiled
    # the replay memory came along
    assert int(loaded.memory.seen.numpy()) == int(first.memory.seen.numpy())
    keras.utils.set_random_seed(0)  # the stream's order: tf.data's seeds join the global one
    loaded.fit(loaded.stream_dataset(stream, BATCH, PASSES, start=cut), steps_per_epoch=steps - cut,
               verbose=0, shuffle=False)
    for a, b in zip(_weights(whole), _weights(loaded)):
        np.testing.assert_array_equal(a, b)


def test_a_continual_maml_learner_mid_stream_round_trips_a_keras_file(tmp_path):
    """Saved with two batches buffered, loaded, both go on to the same slow update."""
    from wtl_tf.continual.osaka import ContinualMAML

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batches = [(rng.random((5, 28, 28, 1), np.float32), rng.permutation(5)) for _ in range(4)]
    learner = ContinualMAML(models.conv4((28, 28, 1), 5, channels=4), mask="per_weight",
                            mask_init="kaiming", ways=5, shots=1, meta_lr=1e-2)
    learner.compile()
    for x, y in batches[:2]:
        learner.observe(x, y)
    assert int(learner.buffered_count.numpy()) == 10
    learner.save(str(tmp_path / "osaka.keras"))
    loaded = keras.models.load_model(str(tmp_path / "osaka.keras"))
    assert type(loaded) is ContinualMAML and loaded.mask_kind == "per_weight"
    np.testing.assert_array_equal(loaded.buffered_x.numpy(), learner.buffered_x.numpy())
    records = [[r.observe(x, y) for x, y in batches[2:]] for r in (learner, loaded)]
    assert records[0] == records[1] and [r["updated"] for r in records[0]] == [False, True]
    for a, b in zip(_weights(learner), _weights(loaded)):
        np.testing.assert_array_equal(a, b)


def test_continual_maml_learns_a_stream_in_one_traced_step_as_observe_does():
    """fit (a traced train_step, no run_eagerly) over a stream gives observe's records and
    weights; the plain variant's previous batch is a variable too."""
    import tensorflow as tf

    from wtl_tf.continual.osaka import ContinualMAML

    rng = np.random.default_rng(1)
    batches = [(rng.random((5, 28, 28, 1), np.float32), rng.permutation(5)) for _ in range(5)]
    for accumulate in (True, False):
        learners = []
        for _ in range(2):
            keras.utils.set_random_seed(0)
            learners.append(ContinualMAML(models.conv4((28, 28, 1), 5, channels=4), ways=5,
                                          shots=1, meta_lr=1e-2, accumulate=accumulate))
        observed, fitted = learners
        records = [observed.observe(x, y) for x, y in batches]

        class Logs(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.records = []

            def on_train_batch_end(self, batch, logs=None):
                self.records.append(osaka_record(logs))

        logs = Logs()
        fitted.compile()
        assert not fitted.run_eagerly
        fitted.fit(tf.data.Dataset.from_tensor_slices(
            (np.stack([x for x, _ in batches]), np.stack([y for _, y in batches]))),
            verbose=0, shuffle=False, callbacks=[logs])
        assert [r["updated"] for r in records] == (
            [False, False, False, True, False] if accumulate else [False] + [True] * 4)
        assert [(r["updated"], r["boundary"]) for r in logs.records] == [
            (r["updated"], r["boundary"]) for r in records]
        np.testing.assert_allclose([r["loss_pre"] for r in logs.records],
                                   [r["loss_pre"] for r in records], rtol=1e-5)
        for a, b in zip(_weights(observed), _weights(fitted)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert fitted.position == 5 and int(fitted.observed.numpy()) == 5


def test_the_accuracy_matrix_is_a_callback_of_fit_as_docs_continual_shows():
    stream = _stream()
    learner = _learner()
    learner.compile()
    matrix = AccuracyMatrix(stream, stream.schedule(BATCH, passes=1))
    learner.fit(learner.stream_dataset(stream, BATCH, passes=1), callbacks=[matrix], verbose=0,
                shuffle=False)
    assert np.shape(matrix.rows) == (3, 3)
    assert matrix.rows[-1] == [learner.accuracy(t.test_x, t.test_y) for t in stream.tasks]
    assert set(metrics.summary(matrix.rows)) >= {"retained_accuracy", "learning_accuracy"}


def test_the_continual_masks_are_the_few_shot_binary_mask_link():
    from wtl_tf.continual.osaka import ContinualMAML
    from wtl_tf.rules.elementwise import BinaryMask, LearnedRates

    sparse_la, la = _learner("masked"), _learner("learned")
    [mask], [rates] = sparse_la.links, la.links
    assert isinstance(mask, BinaryMask) and sparse_la.masks == sparse_la.meta == mask.meta
    assert isinstance(rates, LearnedRates) and la.meta == rates.meta and not la.masks
    net = models.conv4((28, 28, 1), 5, channels=4)
    for granularity, shape in (("per_weight", lambda v: v.shape), ("per_tensor", lambda v: ())):
        osaka = ContinualMAML(net, mask=granularity, mask_init="kaiming", ways=5, shots=1)
        mask_link, rates_link = osaka.rule.links
        assert isinstance(mask_link, BinaryMask) and osaka.masks == mask_link.meta
        masked = {v.path: v for v in osaka.theta}
        for path, m in zip(mask_link.param_paths, osaka.masks):
            assert tuple(m.shape) == tuple(shape(masked[path]))
        # the fast step's multiplier: alpha * H(m), broadcast over a tensor when per tensor
        rates = dict(zip(rates_link.param_paths, rates_link.meta))
        factors = osaka.mask_factors()
        for path, m in zip(mask_link.param_paths, osaka.masks):
            np.testing.assert_allclose(factors[path], np.exp(rates[path].numpy()) *
                                       (m.numpy() >= 0).astype(np.float32), rtol=1e-6)


def test_keras_predict_gives_the_slow_weights_logits():
    stream = _stream()
    learner = _learner()
    learner.compile()
    learner.fit(learner.stream_dataset(stream, BATCH, passes=1), verbose=0, shuffle=False)
    x = stream.tasks[0].test_x
    np.testing.assert_allclose(learner.predict(x, batch_size=4, verbose=0),
                               learner.logits(x).numpy(), rtol=1e-6, atol=1e-6)


def _arrays_in_keras_file(path):
    import io
    import zipfile

    import h5py

    shapes = []
    with zipfile.ZipFile(path) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            weights.visititems(lambda _, item: shapes.append(tuple(item.shape))
                               if isinstance(item, h5py.Dataset) else None)
    return sorted(shapes)


def test_a_keras_file_holds_each_variable_once(tmp_path):
    from wtl_tf.continual.osaka import ContinualMAML

    keras.utils.set_random_seed(0)
    for learner in (LaMAML(models.mlp(784, (16,), 5), rates="masked", glances=2, replay_size=4,
                           memories=12, seed=0, mask_optimizer="adam"),
                    ContinualMAML(models.conv4((28, 28, 1), 5, channels=4), mask="per_weight",
                                  mask_init="kaiming", ways=5, shots=1)):
        learner.compile()
        path = str(tmp_path / f"{learner.name}.keras")
        learner.save(path)
        assert _arrays_in_keras_file(path) == sorted(
            np.shape(v.numpy()) for v in learner.checkpoint_variables())


def test_la_maml_refuses_a_stream_without_draws_and_observe_after_fit_in_one_line():
    from wtl_tf.errors import ConfigError

    stream = _stream()
    learner = _learner()
    learner.compile()
    with pytest.raises(ConfigError, match="stream_dataset"):
        learner.fit(stream.dataset(BATCH, passes=1), verbose=0, shuffle=False)
    learner.fit(learner.stream_dataset(stream, BATCH, passes=1), steps_per_epoch=2, verbose=0,
                shuffle=False)
    x, y = stream.tasks[0].train_x[:BATCH], stream.tasks[0].train_y[:BATCH]
    with pytest.raises(ConfigError, match="stream_dataset"):
        learner.observe(x, y, 0)  # its own draws start at the stream's beginning


def test_a_stream_learners_train_step_is_traced_as_written_without_autograph(monkeypatch):
    """`tf.function(learner.train_step)` (a custom loop, benchmarks/first_trace.py) traces the
    step as written, as Keras' fit does and as the few-shot MetaLearner's step is
    (wtl_tf.runtime.as_written): AutoGraph's source rewriting of the learner's code was
    about half of a continual configuration's first trace."""
    import tensorflow as tf
    from tensorflow.python.autograph.impl import api

    from wtl_tf.continual.osaka import ContinualMAML

    converted = []
    convert = api._convert_actual

    def counting(entity, program_ctx):
        converted.append(getattr(entity, "__module__", "") or "")
        return convert(entity, program_ctx)

    monkeypatch.setattr(api, "_convert_actual", counting)
    learner = _learner()
    element = next(iter(learner.stream_dataset(_stream(), BATCH, PASSES)))
    tf.function(learner.train_step).get_concrete_function(element)
    rng = np.random.default_rng(1)
    osaka = ContinualMAML(models.conv4((28, 28, 1), 5, channels=4), ways=5, shots=1)
    tf.function(osaka.train_step).get_concrete_function(
        (tf.constant(rng.random((5, 28, 28, 1), np.float32)), tf.constant(rng.permutation(5))))
    assert [m for m in converted if m.startswith("wtl_tf")] == []
