"""Gradient sharing between the tasks of a meta-batch (our reconstruction, docs/algorithms.md §3)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_maml as ref
from helpers import (assign_values, gradient_list, gradient_lists, sinusoid_batch,
                     variable_values, weight_list)
from test_meta_gradients import check_against_fd
from wtl_tf import MetaLearner, models, rules

ALPHA = 0.1


def sharing_learner(model=None, steps=2, first_order=False, decay=0.9, dtype="float64"):
    model = model or models.mlp(hidden=(6, 6), dtype=dtype)
    rule = rules.chain(rules.ShareGradients(steps, decay=decay), rules.Scale(ALPHA))
    return MetaLearner(model, rule, loss="mse", inner_steps=steps, inner_steps_eval=steps,
                       first_order=first_order)


def support_gradients_by_hand(theta, episodes):
    """Each task's support-loss gradient at theta, with the plain-TensorFlow reference MLP."""
    grads = []
    for t in range(len(episodes["support_x"])):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            loss = ref.mse(ref.mlp_forward(theta, episodes["support_x"][t]), episodes["support_y"][t])
        grads.append([g.numpy() for g in tape.gradient(loss, theta)])
    return grads


def share_link(learner):
    return learner.update_rule.links[0]


def adapt_together(learner, episodes, steps, first_order):
    """(adapted {path: [B, ...]}, phi_0, step means, support losses) of the lock-step runner."""
    return learner.runner.adapt_together(learner.inner, episodes, learner.read_params(), steps,
                                         first_order)


def test_zero_coefficients_give_exactly_maml():
    episodes = sinusoid_batch(3, 5, 6, seed=1)
    shared = sharing_learner()
    maml = MetaLearner(shared.task_model, rules.chain(rules.Scale(ALPHA)), loss="mse",
                       inner_steps=2)
    assign_values(share_link(shared).average, [np.random.default_rng(0).normal(size=a.shape)
                                               for a in share_link(shared).average])
    adapted = adapt_together(shared, episodes, 2, first_order=False)[0]
    for t in range(3):
        alone = maml.adapt(episodes["support_x"][t], episodes["support_y"][t]).params
        for path, a in adapted.items():
            np.testing.assert_array_equal(a[t].numpy(), alone[path].numpy())
    grads_shared, _ = shared.meta_gradients(episodes)
    grads_maml, _ = maml.meta_gradients(episodes)
    for a, b in zip(gradient_list(shared, grads_shared)[:6], gradient_list(maml, grads_maml),
                    strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-15)


def test_concurrent_term_matches_a_hand_computation_on_three_tasks():
    episodes = sinusoid_batch(3, 5, 6, seed=2)
    learner = sharing_learner(steps=1)
    link = share_link(learner)
    link.concurrent.assign([[0.5]])
    theta = [tf.constant(v) for v in variable_values(learner.initialization_variables)]
    grads = support_gradients_by_hand(theta, episodes)
    adapted = [adapt_together(learner, episodes, 1, first_order=False)[0][v.path]
               for v in learner.adapted_variables]
    for t in range(3):
        others = [j for j in range(3) if j != t]
        for p, th, tensors in zip(adapted, theta, zip(*grads)):
            expected = th.numpy() - ALPHA * (tensors[t] + 0.5 * np.mean([tensors[j] for j in others],
                                                                        axis=0))
            np.testing.assert_allclose(p[t].numpy(), expected, rtol=1e-12, atol=1e-15)


def test_moving_average_follows_its_formula_after_each_meta_update():
    episodes = {k: tf.constant(v) for k, v in sinusoid_batch(4, 5, 5, seed=3).items()}
    learner = sharing_learner(steps=2, decay=0.75)
    learner.compile(optimizer=keras.optimizers.SGD(0.0), meta_optimizer=keras.optimizers.SGD(0.0))
    link = share_link(learner)
    before = variable_values(link.average)
    step_means = adapt_together(learner, episodes, 2, first_order=True)[2]
    learner.train_step(episodes)
    for path, old, new in zip(link.param_paths, before, link.average):
        expected = 0.75 * old + 0.25 * np.stack([step_means[k][path].numpy() for k in range(2)])
        np.testing.assert_allclose(new.numpy(), expected, rtol=1e-12, atol=1e-15)
    # step 0 of the average is exactly the batch-mean raw gradient at theta
    theta = [tf.constant(v) for v in variable_values(learner.initialization_variables)]
    mean0 = []
    for t in range(4):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            loss = ref.mse(ref.mlp_forward(theta, episodes["support_x"][t]), episodes["support_y"][t])
        mean0.append(tape.gradient(loss, theta))
    for i, avg in enumerate(link.average):
        np.testing.assert_allclose(avg.numpy()[0], 0.25 * np.mean([m[i] for m in mean0], axis=0),
                                   rtol=1e-10, atol=1e-14)


def test_coefficient_meta_gradients_match_finite_differences():
    episodes = sinusoid_batch(3, 5, 6, seed=4)
    learner = sharing_learner(steps=2)
    link = share_link(learner)
    link.concurrent.assign([[0.3], [-0.2]])
    link.past.assign([[0.4], [0.1]])
    assign_values(link.average, [np.random.default_rng(1).normal(size=a.shape) * 0.3
                                 for a in link.average])
    grads, _ = learner.meta_gradients(episodes)
    assert np.all(grads[link.concurrent.path].numpy() != 0)
    theta_grads, meta_grads = gradient_lists(learner, grads)
    check_against_fd(learner, learner.meta_variables, meta_grads, episodes, lockstep_loss=True)
    check_against_fd(learner, learner.initialization_variables, theta_grads, episodes,
                     lockstep_loss=True)


def test_meta_test_drops_the_concurrent_term_and_freezes_the_average():
    episodes = sinusoid_batch(3, 5, 6, seed=5)
    learner = sharing_learner(steps=1)
    link = share_link(learner)
    link.concurrent.assign([[0.9]])
    link.past.assign([[0.5]])
    assign_values(link.average, [np.full(a.shape, 0.2) for a in link.average])
    frozen = variable_values(link.average)
    x, y = episodes["support_x"][0], episodes["support_y"][0]
    adapted = weight_list(learner.task_model, learner.adapt(x, y, steps=1, evaluation=True).params)
    theta = [tf.constant(v) for v in variable_values(learner.initialization_variables)]
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss = ref.mse(ref.mlp_forward(theta, x), y)
    for p, th, g in zip(adapted, theta, tape.gradient(loss, theta)):
        np.testing.assert_allclose(p.numpy(), th.numpy() - ALPHA * (g.numpy() + 0.5 * 0.2),
                                   rtol=1e-12)
    assert_evaluation_leaves_the_average_and_training_moves_it(learner, episodes, frozen)


def assert_evaluation_leaves_the_average_and_training_moves_it(learner, episodes, frozen):
    """Through Keras, as a run does: evaluate() (test_step) must not write h, while fit()
    (train_step -> observe) does, so this check can fail."""
    link = share_link(learner)
    learner.compile(optimizer=keras.optimizers.SGD(0.0), meta_optimizer=keras.optimizers.SGD(0.0))
    data = tf.data.Dataset.from_tensors({k: tf.constant(v) for k, v in episodes.items()})
    learner.evaluate(data, verbose=0)
    for a, b in zip(frozen, link.average):
        np.testing.assert_array_equal(a, b.numpy())
    learner.fit(data, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(frozen, link.average))


@pytest.mark.parametrize("past_at_eval", [True, False])
def test_concurrent_term_at_meta_test_is_a_switch(past_at_eval):
    """--share_concurrent_at_eval: an evaluation batch is adapted in lock-step, each task
    sharing the others' gradients; the average stays frozen (or is dropped)."""
    episodes = sinusoid_batch(3, 5, 6, seed=6)
    model = models.mlp(hidden=(6, 6), dtype="float64")
    rule = rules.chain(rules.ShareGradients(1, past_at_eval=past_at_eval,
                                            concurrent_at_eval=True), rules.Scale(ALPHA))
    learner = MetaLearner(model, rule, loss="mse", inner_steps=1, inner_steps_eval=1)
    link = share_link(learner)
    link.concurrent.assign([[0.5]])
    link.past.assign([[0.3]])
    assign_values(link.average, [np.full(a.shape, 0.2) for a in link.average])
    frozen = variable_values(link.average)
    theta = [tf.constant(v) for v in variable_values(learner.initialization_variables)]
    grads = support_gradients_by_hand(theta, episodes)
    past = 0.3 * 0.2 if past_at_eval else 0.0
    expected_losses = []
    for t in range(3):
        others = [j for j in range(3) if j != t]
        adapted = [th.numpy() - ALPHA * (g[t] + 0.5 * np.mean([g[j] for j in others], axis=0)
                                         + past) for th, g in zip(theta, zip(*grads))]
        expected_losses.append(float(ref.mse(ref.mlp_forward(adapted, episodes["query_x"][t]),
                                             episodes["query_y"][t])))
    losses = learner.evaluate_tasks(episodes)["loss"].numpy()
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-10)
    assert_evaluation_leaves_the_average_and_training_moves_it(learner, episodes, frozen)


def test_resume_restores_the_moving_average_exactly(tmp_path):
    from wtl_tf.checkpoints import RunCheckpoints

    episodes = {k: tf.constant(v) for k, v in sinusoid_batch(4, 5, 5, seed=6, dtype="float32").items()}
    first = sharing_learner(dtype="float32")
    first.compile(optimizer=keras.optimizers.Adam(1e-3), meta_optimizer=keras.optimizers.Adam(1e-3))
    for _ in range(3):
        first.train_step(episodes)
    RunCheckpoints(str(tmp_path), first).save()
    second = sharing_learner(dtype="float32")
    second.compile(optimizer=keras.optimizers.Adam(1e-3), meta_optimizer=keras.optimizers.Adam(1e-3))
    assert RunCheckpoints(str(tmp_path), second).restore() == 3
    for a, b in zip(share_link(first).average, share_link(second).average):
        assert np.any(a.numpy() != 0)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
