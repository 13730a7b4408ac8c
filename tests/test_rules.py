"""Step functions, update-rule links, mask initialisation and sparsity statistics."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import assign_values, sinusoid_batch, variable_values, weight_list
from wtl_tf import MetaLearner, models, rules
from wtl_tf.algorithms import build_update_rule
from wtl_tf.rules import LinkContext
from wtl_tf.errors import ConfigError
from wtl_tf.meta_init import MetaParameterInitializer
from wtl_tf.sparsity import sparsity_report
from wtl_tf.step_functions import binary_step, straight_through_relu, straight_through_sign


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_binary_step_forward_is_exactly_binary_and_zero_is_open(dtype):
    x = tf.constant([-3.0, -1e-30, 0.0, 1e-30, 2.5, -0.0], dtype)
    np.testing.assert_array_equal(binary_step(x).numpy(), [0, 0, 1, 1, 1, 1])
    values = binary_step(tf.random.normal([1000], dtype=dtype)).numpy()
    assert set(np.unique(values)) <= {0.0, 1.0}


def test_step_functions_have_identity_backward():
    x = tf.constant([-2.0, -0.5, 0.0, 0.5, 2.0])
    upstream = tf.constant([1.0, -2.0, 3.0, 0.25, 5.0])
    for fn, factor in ((straight_through_sign, 1.0), (binary_step, 0.5),
                       (straight_through_relu, 1.0)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(fn(x) * upstream)
        np.testing.assert_array_equal(tape.gradient(y, x).numpy(), factor * upstream.numpy())
    np.testing.assert_array_equal(straight_through_relu(x).numpy(), [0, 0, 0, 0.5, 2.0])


def _adapted(learner, episodes, steps=2):
    adaptation = learner.adapt(episodes["support_x"][0], episodes["support_y"][0], steps=steps)
    return [p.numpy() for p in weight_list(learner.task_model, adaptation.params)]


def test_all_ones_mask_gives_exactly_the_maml_update_and_all_zeros_freezes():
    episodes = sinusoid_batch(1, 5, 5, dtype="float32")
    model = models.mlp(hidden=(8, 8))
    theta = variable_values(model.trainable_variables)
    maml = MetaLearner(model, rules.chain(rules.Scale(0.3)), loss="mse")
    sparse = MetaLearner(model, rules.chain(rules.BinaryMask(), rules.Scale(0.3)), loss="mse")
    maml_params = _adapted(maml, episodes)
    assert any(not np.array_equal(a, b) for a, b in zip(maml_params, theta))

    for value in (1.0, 0.0):  # m = 0 opens the mask too (sign(0) := +1)
        assign_values(sparse.meta_variables, [np.full(m.shape, value) for m in sparse.meta_variables])
        for a, b in zip(_adapted(sparse, episodes), maml_params):
            np.testing.assert_array_equal(a, b)

    assign_values(sparse.meta_variables, [np.full(m.shape, -1.0) for m in sparse.meta_variables])
    for a, b in zip(_adapted(sparse, episodes), theta):
        np.testing.assert_array_equal(a, b)


def test_weight_mask_masks_initialisation_and_every_step():
    episodes = sinusoid_batch(1, 5, 5, dtype="float64")
    model = models.mlp(hidden=(8, 8), dtype="float64")
    learner = MetaLearner(model, rules.chain(rules.WeightMask(), rules.Scale(0.3)), loss="mse")
    masks = [binary_step(m).numpy() for m in learner.meta_variables]
    theta = variable_values(model.trainable_variables)
    adaptation = learner.adapt(episodes["support_x"][0], episodes["support_y"][0], steps=1)
    for p0, t, m in zip(weight_list(model, adaptation.initial_params), theta, masks):
        np.testing.assert_array_equal(p0.numpy(), t * m)
    # phi_1 = (phi_0 - alpha * g(phi_0)) * M, with g computed independently.
    phi0 = [tf.constant(t * m) for t, m in zip(theta, masks)]
    with tf.GradientTape() as tape:
        tape.watch(phi0)
        out, _ = model.stateless_call(phi0, [], tf.constant(episodes["support_x"][0]))
        loss = tf.reduce_mean(tf.square(out - episodes["support_y"][0]))
    grads = tape.gradient(loss, phi0)
    for p1, p, g, m in zip(weight_list(model, adaptation.params), phi0, grads, masks):
        np.testing.assert_allclose(p1.numpy(), (p.numpy() - 0.3 * g.numpy()) * m, rtol=1e-12)
        assert np.all(p1.numpy()[m == 0] == 0)


def test_mask_and_learned_rates_combine_by_configuration():
    episodes = sinusoid_batch(1, 5, 5, dtype="float64")
    model = models.mlp(hidden=(4,), dtype="float64")
    rule = build_update_rule(("binary_mask", "learned_rates"), inner_lr=0.1)
    learner = MetaLearner(model, rule, loss="mse")
    mask_link, rate_link = rule.links
    factors = rule.factors()
    for path, m, a in zip(mask_link.param_paths, mask_link.meta, rate_link.meta):
        np.testing.assert_array_equal(factors[path].numpy(), binary_step(m).numpy() * a.numpy())
    theta = variable_values(model.trainable_variables)
    x, y = tf.constant(episodes["support_x"][0]), tf.constant(episodes["support_y"][0])
    phi0 = [tf.constant(t) for t in theta]
    with tf.GradientTape() as tape:
        tape.watch(phi0)
        out, _ = model.stateless_call(phi0, [], x)
        loss = tf.reduce_mean(tf.square(out - y))
    grads = tape.gradient(loss, phi0)
    adapted = weight_list(model, learner.adapt(x, y, steps=1).params)
    for p1, t, g, path in zip(adapted, theta, grads, mask_link.param_paths):
        np.testing.assert_allclose(p1.numpy(), t - factors[path].numpy() * g.numpy(), rtol=1e-12)


def test_kaiming_mask_init_is_centred_on_the_shift_with_he_bound():
    init = MetaParameterInitializer("kaiming", shift=0.0)
    kernel = init((3, 3, 8, 16)).numpy()
    bound = np.sqrt(6.0 / (3 * 3 * 8))
    assert abs(kernel.mean()) < 1e-6
    assert kernel.max() - kernel.min() <= 2 * bound + 1e-6
    assert kernel.max() - kernel.min() > 1.8 * bound  # really spans the He range
    assert 0.45 < np.mean(kernel < 0) < 0.55  # about half masked at init_shift = 0
    bias = init((64,)).numpy()
    assert bias.max() - bias.min() <= 1.0 + 1e-6 and abs(bias.mean()) < 1e-6
    shifted = MetaParameterInitializer("kaiming", shift=0.3)((3, 3, 8, 16)).numpy()
    assert abs(shifted.mean() - 0.3) < 1e-6 and np.mean(shifted < 0) < 0.3


def test_constant_and_meta_sgd_inits():
    np.testing.assert_array_equal(
        MetaParameterInitializer("constant", value=0.05)((4, 3), "float64").numpy(), 0.05)
    rates = MetaParameterInitializer("meta_sgd")((5000,)).numpy()
    assert rates.min() >= 0.005 and rates.max() <= 0.1 and rates.std() > 0.02
    with pytest.raises(ConfigError, match="unknown meta-parameter init"):
        MetaParameterInitializer("xavier")


def test_sparsity_report_per_tensor_layer_and_overall():
    model = models.mlp(hidden=(4,))  # dense1 (1x4, 4), head (4x1, 1)
    learner = MetaLearner(model, rules.chain(rules.BinaryMask(), rules.Scale(0.1)), loss="mse")
    values = [np.array([[1.0, -1.0, -1.0, 1.0]]), np.array([-1.0, -1.0, -1.0, -1.0]),
              np.array([[1.0], [1.0], [1.0], [-1.0]]), np.array([1.0])]
    assign_values(learner.meta_variables, values)
    report = sparsity_report(learner.update_rule)
    assert report["per_tensor"] == {"dense1/kernel": 0.5, "dense1/bias": 1.0,
                                    "head/kernel": 0.25, "head/bias": 0.0}
    assert report["per_layer"] == {"dense1": 6 / 8, "head": 1 / 5}
    assert report["overall"] == 7 / 13
    assert sparsity_report(rules.chain(rules.Scale(0.1))) is None


def test_invalid_rules_are_rejected_with_clear_errors():
    with pytest.raises(ConfigError, match="inner learning rate must be > 0"):
        rules.Scale(0.0)
    with pytest.raises(ConfigError, match="unknown update-rule link"):
        build_update_rule(("scale", "momentum"), inner_lr=0.1)
    with pytest.raises(ConfigError, match="at least one link"):
        rules.Chain([])


def test_sparse_maml_plus_draws_binary_conv_masks_per_task_and_trains_the_hypernetwork():
    from helpers import random_classification_episodes

    model = models.conv4((8, 8, 1), 3, channels=4, blocks=2)
    rule = build_update_rule(("mask_hypernetwork", "scale"), context=LinkContext(feature_size=16),
                             inner_lr=0.3)
    learner = MetaLearner(model, rule, inner_steps=1, first_order=True)
    hyper = rule.links[0]
    adapted = learner.adapted_variables
    conv = [i for i, v in enumerate(adapted) if len(v.shape) == 4]
    assert len(conv) == 2 and len(hyper.static) == len(adapted) - 2
    tree = {v.path: v for v in adapted}
    draws = [list(hyper.begin_task(tree).factors.values()) for _ in range(2)]
    for masks in draws:
        for m in masks:
            assert set(np.unique(m.numpy())) <= {0.0, 1.0}
    assert not np.array_equal(draws[0][conv[0]].numpy(), draws[1][conv[0]].numpy())
    for i in set(range(len(adapted))) - set(conv):  # static masks do not change per task
        np.testing.assert_array_equal(draws[0][i].numpy(), draws[1][i].numpy())
    episodes = random_classification_episodes(2, 3, 1, 2, (8, 8, 1))
    grads, _ = learner.meta_gradients(episodes)
    by_name = {v.path: grads[v.path] for v in learner.meta_variables}
    for name in ("noise_scale", "noise_shift", "kernel", "bias"):
        g = by_name[f"{hyper.name}/{name}"].numpy()
        assert np.all(np.isfinite(g)) and np.any(g != 0), name


def test_sparse_maml_plus_draws_its_noise_per_evaluation_task_not_per_batch_position():
    from helpers import random_classification_episodes

    model = models.conv4((8, 8, 1), 3, channels=4, blocks=2)
    rule = build_update_rule(("mask_hypernetwork", "scale"), context=LinkContext(feature_size=16),
                             inner_lr=0.3)
    learner = MetaLearner(model, rule, inner_steps=1, inner_steps_eval=2, first_order=True)
    a = random_classification_episodes(3, 3, 2, 2, (8, 8, 1), seed=1)
    b = random_classification_episodes(3, 3, 2, 2, (8, 8, 1), seed=2)
    # batch 2 holds batch 1's first episode at position 1, and new episodes around it
    mixed = {k: np.stack([b[k][0], a[k][0], b[k][1]]) for k in a}
    first, second = learner.evaluate_tasks(a), learner.evaluate_tasks(mixed)
    assert float(first["loss"][0]) == float(second["loss"][1])  # same episode, same draw
    # the same support set at the same position of another batch, with other noise keys:
    seeds = [learner.episode_seed(a["support_x"][i]).numpy() for i in range(3)]
    assert len({tuple(s) for s in seeds}) == 3
    tree = {v.path: v for v in learner.adapted_variables}
    noise = [list(rule.links[0].begin_task(tree, tf.constant(s)).factors.values())
             for s in seeds[:2]]
    conv = [i for i, v in enumerate(learner.adapted_variables) if len(v.shape) == 4]
    assert not np.array_equal(noise[0][conv[0]].numpy(), noise[1][conv[0]].numpy())
