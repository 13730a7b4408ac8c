"""Meta-gradients against central finite differences (float64) and an independent oracle."""

import numpy as np
import pytest
import tensorflow as tf

import reference_maml as ref
from helpers import (assign_values, gradient_list, gradient_lists, sinusoid_batch,
                     variable_values)
from wtl_tf import MetaLearner, models, rules
from wtl_tf.step_functions import binary_step

ALPHA, STEPS = 0.1, 2


def make_learner(rule, first_order=False, steps=STEPS, model=None):
    model = model or models.mlp(hidden=(6, 6), dtype="float64")
    return MetaLearner(model, rule, loss="mse", inner_steps=steps, inner_steps_eval=steps,
                       first_order=first_order)


def meta_loss(learner, episodes, lockstep=False):
    if lockstep:  # the training objective of coupled tasks (gradient sharing)
        return float(learner.meta_gradients(episodes)[1]["objective"])
    return float(tf.reduce_sum(learner.evaluate_tasks(episodes)["loss"]))


def directional_fd(learner, variables, direction, episodes, eps=1e-5, lockstep=False):
    base = variable_values(variables)
    assign_values(variables, [b + eps * d for b, d in zip(base, direction)])
    plus = meta_loss(learner, episodes, lockstep)
    assign_values(variables, [b - eps * d for b, d in zip(base, direction)])
    minus = meta_loss(learner, episodes, lockstep)
    assign_values(variables, base)
    return (plus - minus) / (2 * eps)


def check_against_fd(learner, variables, grads, episodes, directions=3, rtol=1e-6, eps=1e-5,
                     lockstep_loss=False):
    """<grad, d> against central differences along random directions d.

    ReLU and max-pool kinks make differences over a step of eps wrong when a kink lies within
    eps of the point; conv nets therefore use a smaller eps (float64 keeps it accurate).
    """
    rng = np.random.default_rng(7)
    for _ in range(directions):
        direction = [rng.normal(size=v.shape) for v in variables]
        analytic = sum(float(np.sum(np.asarray(g) * d)) for g, d in zip(grads, direction))
        numeric = directional_fd(learner, variables, direction, episodes, eps, lockstep_loss)
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=1e-9)


def split_grads(learner, grads):
    return gradient_lists(learner, grads)


@pytest.fixture
def episodes():
    return sinusoid_batch(meta_batch=2, shots=5, queries=6, seed=3)


def test_maml_second_order_matches_fd_and_oracle(episodes):
    learner = make_learner(rules.chain(rules.Scale(ALPHA)))
    grads, logs = learner.meta_gradients(episodes)
    theta_grads, _ = split_grads(learner, grads)
    check_against_fd(learner, learner.initialization_variables, theta_grads, episodes)

    theta = variable_values(learner.initialization_variables)
    loss, oracle, _ = ref.meta_gradients(theta, episodes, STEPS, lambda m: [ALPHA] * 6, [])
    np.testing.assert_allclose(float(logs["loss"]) * 2, float(loss), rtol=1e-6)  # logged in float32
    for a, b in zip(theta_grads, oracle):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_meta_sgd_second_order_matches_fd_for_theta_and_rates(episodes):
    learner = make_learner(rules.chain(rules.LearnedRates()))
    grads, _ = learner.meta_gradients(episodes)
    theta_grads, rate_grads = split_grads(learner, grads)
    assert len(rate_grads) == 6 and all(np.any(np.asarray(g) != 0) for g in rate_grads)
    check_against_fd(learner, learner.initialization_variables, theta_grads, episodes)
    check_against_fd(learner, learner.meta_variables, rate_grads, episodes)

    theta = variable_values(learner.initialization_variables)
    rates = variable_values(learner.meta_variables)
    _, oracle_theta, oracle_rates = ref.meta_gradients(theta, episodes, STEPS, list, rates)
    for a, b in zip(theta_grads + rate_grads, oracle_theta + oracle_rates):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_meta_exp_starts_as_maml_and_its_meta_gradients_match_fd_and_oracle(episodes):
    """meta-exp: g -> exp(m) * g with m initialised to log(alpha): at initialisation it adapts
    exactly like MAML; its rates' meta-gradient is the Meta-SGD oracle's times exp(m)."""
    learner = make_learner(rules.chain(rules.ExpRates(ALPHA)))
    maml = make_learner(rules.chain(rules.Scale(ALPHA)))
    assign_values(maml.initialization_variables, variable_values(learner.initialization_variables))
    x, y = episodes["support_x"][0], episodes["support_y"][0]
    adapted, reference = learner.adapt(x, y).params, maml.adapt(x, y).params
    assert adapted.keys() == reference.keys()
    for path in adapted:
        np.testing.assert_allclose(adapted[path].numpy(), reference[path].numpy(), rtol=1e-12)
    for m in learner.meta_variables:  # move off the MAML point, so the check is general
        m.assign(m + np.random.default_rng(2).normal(scale=0.3, size=m.shape))
    grads, _ = learner.meta_gradients(episodes)
    theta_grads, m_grads = split_grads(learner, grads)
    check_against_fd(learner, learner.initialization_variables, theta_grads, episodes)
    check_against_fd(learner, learner.meta_variables, m_grads, episodes)
    theta = variable_values(learner.initialization_variables)
    rates = [np.exp(m) for m in variable_values(learner.meta_variables)]
    _, _, oracle_rates = ref.meta_gradients(theta, episodes, STEPS, list, rates)
    for g, rate, oracle in zip(m_grads, rates, oracle_rates):  # chain rule through exp
        np.testing.assert_allclose(g, oracle * rate, rtol=1e-9, atol=1e-12)


def test_sparse_maml_second_order_matches_fd(episodes):
    """theta: plain FD. m: the straight-through gradient is 1/2 * dL/dM at M = H(m), where
    dL/dM is checked by FD on the same learner with the mask as a continuous multiplier."""
    sparse = make_learner(rules.chain(rules.BinaryMask(), rules.Scale(ALPHA)))
    grads, _ = sparse.meta_gradients(episodes)
    theta_grads, mask_grads = split_grads(sparse, grads)
    check_against_fd(sparse, sparse.initialization_variables, theta_grads, episodes)

    masks = [binary_step(m).numpy() for m in sparse.meta_variables]
    assert 0 < np.mean(np.concatenate([m.ravel() for m in masks])) < 1
    continuous = make_learner(rules.chain(rules.LearnedRates(), rules.Scale(ALPHA)),
                              model=sparse.task_model)
    assign_values(continuous.meta_variables, masks)
    cont_grads, _ = continuous.meta_gradients(episodes)
    _, dl_dmask = split_grads(continuous, cont_grads)
    check_against_fd(continuous, continuous.meta_variables, dl_dmask, episodes)
    for g_m, g_mask in zip(mask_grads, dl_dmask):
        np.testing.assert_allclose(g_m, 0.5 * np.asarray(g_mask), rtol=1e-10, atol=1e-14)

    theta = variable_values(sparse.initialization_variables)
    _, oracle_theta, oracle_mask = ref.meta_gradients(
        theta, episodes, STEPS, lambda m: [ALPHA * x for x in m], masks)
    for a, b in zip(theta_grads, oracle_theta):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(mask_grads, oracle_mask):
        np.testing.assert_allclose(a, 0.5 * np.asarray(b), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["maml", "meta_sgd", "sparse_maml"])
def test_first_order_equals_second_order_with_inner_gradient_stopped(name, episodes):
    rule = {"maml": lambda: rules.chain(rules.Scale(ALPHA)),
            "meta_sgd": lambda: rules.chain(rules.LearnedRates()),
            "sparse_maml": lambda: rules.chain(rules.BinaryMask(), rules.Scale(ALPHA))}[name]()
    learner = make_learner(rule, first_order=True)
    grads, _ = learner.meta_gradients(episodes)
    theta = variable_values(learner.initialization_variables)
    meta = variable_values(learner.meta_variables)
    factor_fn, chain_factor = {
        "maml": (lambda m: [ALPHA] * 6, 1.0),
        "meta_sgd": (list, 1.0),
        "sparse_maml": (lambda m: [ALPHA * x for x in m], 0.5),
    }[name]
    if name == "sparse_maml":
        meta = [binary_step(m).numpy() for m in learner.meta_variables]
    _, oracle_theta, oracle_meta = ref.meta_gradients(theta, episodes, STEPS, factor_fn, meta,
                                                      stop_inner=True)
    _, second_theta, _ = ref.meta_gradients(theta, episodes, STEPS, factor_fn, meta)
    theta_grads, meta_grads = split_grads(learner, grads)
    for a, b in zip(theta_grads, oracle_theta):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(meta_grads, oracle_meta):
        np.testing.assert_allclose(a, chain_factor * np.asarray(b), rtol=1e-9, atol=1e-12)
    # and the stopped gradient really differs from the second-order one
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(oracle_theta, second_theta)) > 1e-6


def test_first_order_mask_gradient_formula():
    """dL/dm = -1/2 * alpha * sum_k g_k * grad_{phi_K} L_Q, and dL/dtheta = grad_{phi_K} L_Q."""
    steps = 3
    episodes = sinusoid_batch(meta_batch=1, shots=5, queries=7, seed=11)
    learner = make_learner(rules.chain(rules.BinaryMask(), rules.Scale(ALPHA)),
                           first_order=True, steps=steps)
    grads, _ = learner.meta_gradients(episodes)
    theta_grads, mask_grads = split_grads(learner, grads)

    theta = [tf.constant(v) for v in variable_values(learner.initialization_variables)]
    masks = [binary_step(m).numpy() for m in learner.meta_variables]
    recorded = []
    phi = ref.adapt(theta, episodes["support_x"][0], episodes["support_y"][0], steps,
                    [ALPHA * m for m in masks], record=recorded)
    with tf.GradientTape() as tape:
        tape.watch(phi)
        query_loss = ref.mse(ref.mlp_forward(phi, episodes["query_x"][0]), episodes["query_y"][0])
    grad_query = tape.gradient(query_loss, phi)
    assert len(recorded) == steps
    for i, (g_m, g_theta) in enumerate(zip(mask_grads, theta_grads)):
        inner_sum = sum(np.asarray(step[i]) for step in recorded)
        expected = -0.5 * ALPHA * inner_sum * np.asarray(grad_query[i])
        np.testing.assert_allclose(g_m, expected, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(g_theta, grad_query[i], rtol=1e-9, atol=1e-14)


def test_while_loop_inner_steps_match_unrolled_and_fd(episodes):
    """Long inner loops run in a tf.while_loop; second order through it is still exact."""
    model = models.mlp(hidden=(6, 6), dtype="float64")
    results = []
    for unroll in (10, 1):
        learner = MetaLearner(model, rules.chain(rules.LearnedRates()), loss="mse", inner_steps=4,
                              inner_steps_eval=4, unroll_inner_steps=unroll)
        if results:
            assign_values(learner.meta_variables, variable_values(results[0][0].meta_variables))
        grads, _ = tf.function(learner.meta_gradients)(episodes)
        results.append((learner, grads))
    unrolled, looped_grads = (gradient_list(learner, grads) for learner, grads in results)
    for a, b in zip(unrolled, looped_grads, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-15)
    looped = results[1][0]
    check_against_fd(looped, looped.initialization_variables + looped.meta_variables,
                     gradient_list(looped, results[1][1]), episodes, directions=2)


@pytest.mark.parametrize("rule", [lambda: rules.chain(rules.Scale(ALPHA)),
                                  lambda: rules.chain(rules.BinaryMask(), rules.Scale(ALPHA)),
                                  lambda: rules.chain(rules.MaskHypernetwork(4), rules.Scale(ALPHA))])
def test_recomputed_inner_steps_give_the_same_meta_gradients(rule):
    """tf.recompute_grad around every inner step: second-order meta-gradients (theta and
    meta-parameters) are unchanged."""
    from helpers import random_classification_episodes

    model = models.conv4((6, 6, 1), 3, channels=3, blocks=2, dtype="float64")
    episodes = random_classification_episodes(2, 3, 2, 2, (6, 6, 1), seed=1, dtype="float64")
    grads = {}
    for recompute in (False, True):
        learner = MetaLearner(model, rule(), inner_steps=3, recompute_inner_steps=recompute)
        if recompute:
            assign_values(learner.update_rule.weights, meta)
        meta = variable_values(learner.update_rule.weights)
        grads[recompute] = [g.numpy() for g in
                            gradient_list(learner, learner.meta_gradients(episodes)[0])]
    assert len(grads[True]) == len(grads[False]) == len(learner.initialization_variables) + len(
        learner.meta_variables)
    for a, b in zip(grads[True], grads[False]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
