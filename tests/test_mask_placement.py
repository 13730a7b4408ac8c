"""The controls of the continual claim: a frozen random mask placed at a learned run's
per-layer sparsity (wtl_tf.continual.placement) and sparse-La-MAML's mask stepped by Adam."""

import json

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from wtl_tf import models
from wtl_tf.algorithms import learner_options
from wtl_tf.continual.la_maml import LaMAML
from wtl_tf.continual.placement import RandomPlacement, load_trace
from wtl_tf.errors import ConfigError
from wtl_tf.step_functions import binary_step

from helpers import tiny_la_maml_batch as tiny_batch


def tiny_sparse_la_maml(**options):
    model = models.mlp(input_dim=6, hidden=(5,), output_dim=3, dtype="float64")
    return LaMAML(model, **learner_options("sparse_la_maml"), alpha_init=0.2,
                  mask_init="kaiming", seed=3, **options)


def shut(logits):
    return np.asarray(binary_step(np.asarray(logits))) == 0


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 60), fraction=st.floats(0, 1), seed=st.integers(0, 99))
def test_placement_shuts_exactly_the_count_changing_as_few_entries_as_it_needs(size, fraction,
                                                                                seed):
    rng = np.random.default_rng(seed)
    logits, priority = rng.normal(size=size), rng.random(size)
    target = int(round(fraction * size))
    placed = np.asarray(RandomPlacement.placed(logits, priority, target))
    assert shut(placed).sum() == target
    assert (shut(placed) != shut(logits)).sum() == abs(target - shut(logits).sum())
    # Entries keep their magnitude (or the smallest flip) and only shut/open ones move.
    unchanged = shut(placed) == shut(logits)
    np.testing.assert_array_equal(placed[unchanged], logits[unchanged])
    np.testing.assert_array_equal(RandomPlacement.placed(placed, priority, target), placed)


def test_lowest_priorities_shut_first_and_highest_open_first():
    logits = np.array([1.0, 2.0, 3.0, -1.0, -2.0])
    priority = np.array([0.9, 0.1, 0.5, 0.2, 0.8])
    np.testing.assert_array_equal(shut(RandomPlacement.placed(logits, priority, 4)),
                                  [False, True, True, True, True])
    np.testing.assert_array_equal(shut(RandomPlacement.placed(logits, priority, 1)),
                                  [False, False, False, True, False])


def trace_for(learner, fractions):
    """A learned run's trace: {task t + 1: fractions[t]} (shut fraction leaving task t)."""
    return [{"task": t + 1, "per_layer": {v.path: f for v in learner.theta}}
            for t, f in enumerate(fractions)]


def layer_fractions(learner):
    return {v.path: float(np.mean(shut(m.numpy()))) for v, m in zip(learner.theta, learner.meta)}


def test_each_task_is_spent_at_the_learned_runs_midway_sparsity_and_the_mask_stays_frozen():
    probe = tiny_sparse_la_maml(mask_lr=0.0)
    learner = tiny_sparse_la_maml(mask_lr=0.0,
                                  mask_sparsity_trace=trace_for(probe, [0.6, 0.9, 0.2]))
    initial = learner.placement.initial
    x, y, task = np.random.default_rng(0).normal(size=(10, 6)), np.arange(10) % 3, 0
    learner.observe(x, y, task)
    for v in learner.theta:
        size = int(np.prod(v.shape))
        assert layer_fractions(learner)[v.path] == pytest.approx(
            round((initial[v.path] + 0.6) / 2 * size) / size)
    before = [m.numpy().copy() for m in learner.meta]
    learner.observe(x, y, task)  # the same task: nothing placed, mask_lr 0: nothing learned
    for m, b in zip(learner.meta, before):
        np.testing.assert_array_equal(m.numpy(), b)
    learner.observe(x, y, 1)
    for v in learner.theta:
        size = int(np.prod(v.shape))
        assert layer_fractions(learner)[v.path] == pytest.approx(round(0.75 * size) / size)


def test_a_resumed_control_places_the_same_mask():
    """Priorities and the first task's start come from the seed and the initial mask, not
    from the process: a fresh learner given the same trace places the same entries."""
    probe = tiny_sparse_la_maml(mask_lr=0.0)
    trace = trace_for(probe, [0.7, 0.4])
    runs = []
    for _ in range(2):
        tf.keras.utils.set_random_seed(5)  # what a run does before it builds its learner
        learner = tiny_sparse_la_maml(mask_lr=0.0, mask_sparsity_trace=trace)
        learner.placement.enter(0, learner.meta)
        learner.placement.enter(1, learner.meta)
        runs.append([m.numpy() for m in learner.meta])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_the_control_refuses_a_learning_mask_and_a_trace_of_another_network():
    probe = tiny_sparse_la_maml(mask_lr=0.0)
    with pytest.raises(ConfigError, match="mask_lr=0"):
        tiny_sparse_la_maml(mask_lr=1.0, mask_sparsity_trace=trace_for(probe, [0.5]))
    with pytest.raises(ConfigError, match="same network"):
        tiny_sparse_la_maml(mask_lr=0.0, mask_sparsity_trace=[
            {"task": 1, "per_layer": {"conv1/kernel": 0.5}}])


@pytest.mark.parametrize("where", ["top", "results", "continual"])
def test_the_trace_is_read_from_a_record_or_a_runs_results(tmp_path, where):
    trace = [{"task": 1, "per_layer": {"a": 0.5}}]
    document = {"top": {"mask_trace": trace}, "results": {"results": {"mask_trace": trace}},
                "continual": {"continual": {"mask_trace": trace}}}[where]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))
    assert load_trace(str(path)) == trace


def test_a_trace_that_is_missing_or_empty_is_refused_in_one_line(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"continual": {"mask_trace": None}}))
    with pytest.raises(ConfigError, match="no mask_trace"):
        load_trace(str(path))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_trace(str(tmp_path / "absent.json"))


def test_adam_steps_the_mask_logits_by_the_rate_against_the_gradients_sign():
    """Adam's first step (Keras' form, eps outside the bias-corrected root) is
    lr * g / (|g| + eps / sqrt(1 - beta2)): about lr against the sign of the (clipped)
    meta-gradient wherever it is not tiny; SGD's is lr * g."""
    rate = 1e-3
    batch = tiny_batch(seed=2)
    for optimizer in ("adam", "sgd"):
        learner = tiny_sparse_la_maml(mask_lr=rate, mask_optimizer=optimizer)
        _, _, grads = learner.meta_gradients(*batch)
        grads, _ = tf.clip_by_global_norm(grads, learner.clip)
        before = [m.numpy().copy() for m in learner.meta]
        learner.update(*batch)
        for m, b, g in zip(learner.meta, before, grads):
            g = g.numpy()
            expected = (rate * g / (np.abs(g) + 1e-7 / np.sqrt(1 - 0.999))
                        if optimizer == "adam" else rate * g)
            np.testing.assert_allclose(b - m.numpy(), expected, rtol=1e-5, atol=1e-12)
        assert any(np.abs(g.numpy()).max() > 1e-4 for g in grads)


def test_adam_state_is_checkpointed():
    learner = tiny_sparse_la_maml(mask_lr=1e-3, mask_optimizer="adam")
    names = [getattr(v, "path", v.name) for v in learner.checkpoint_variables()]
    assert any("mask_adam" in n for n in names), names
    assert len(names) > len(tiny_sparse_la_maml(mask_lr=1e-3).checkpoint_variables())
