"""The La-MAML family and Continual-MAML run the core's inner loop over any chain of links:
--update_rules is accepted and meaningful (a mask on top of learned rates), a link in one new
file works, and a chain the learner cannot use is refused in one line."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from wtl_tf import models
from wtl_tf.config import ExperimentConfig
from wtl_tf.continual.la_maml import LaMAML
from wtl_tf.errors import ConfigError
from wtl_tf.rules.base import UpdateRule
from wtl_tf.rules.elementwise import BinaryMask, LearnedRates
from wtl_tf.step_functions import binary_step

from helpers import tiny_la_maml_batch
from test_one_file_link import SIGN_SGD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mask_and_rates_learner(**options):
    model = models.mlp(input_dim=6, hidden=(5,), output_dim=3, dtype="float64")
    rule = [BinaryMask(init="kaiming"), LearnedRates("relu", init="constant", init_value=0.2)]
    return LaMAML(model, rule=rule, first_order=False, alpha_lr=0.3, mask_lr=2.0, clip=None,
                  **options)


def test_mask_on_learned_rates_steps_each_weight_by_the_chain():
    learner = mask_and_rates_learner()
    mask, rates = learner.links
    assert learner.masks == mask.meta and learner.meta == [*mask.meta, *rates.meta]
    batch = tiny_la_maml_batch()
    theta0 = [v.numpy() for v in learner.theta]
    m0, a0 = [m.numpy() for m in mask.meta], [a.numpy() for a in rates.meta]
    _, theta_grads, meta_grads = learner.meta_gradients(*batch)
    learner.update(*batch)
    n = len(m0)
    for m, before, g in zip(mask.meta, m0, meta_grads[:n]):  # mask logits at mask_lr
        np.testing.assert_allclose(m.numpy(), before - 2.0 * g.numpy(), rtol=1e-12)
    for a, before, g in zip(rates.meta, a0, meta_grads[n:]):  # rates at alpha_lr
        np.testing.assert_allclose(a.numpy(), before - 0.3 * g.numpy(), rtol=1e-12)
    # the slow step: theta -= ReLU(H(m) * ReLU(alpha)) * grad, with the updated m and alpha
    for v, t0, g, m, a in zip(learner.theta, theta0, theta_grads, mask.meta, rates.meta):
        factor = binary_step(m).numpy() * np.maximum(a.numpy(), 0)
        np.testing.assert_allclose(v.numpy(), t0 - factor * g.numpy(), rtol=1e-12)
    assert any(np.any(binary_step(m).numpy() == 0) for m in mask.meta)  # the mask shuts some


def test_mask_on_learned_rates_meta_gradients_match_finite_differences():
    from test_continual import check_fd

    learner = mask_and_rates_learner()
    mask, rates = learner.links
    batch = tiny_la_maml_batch()
    _, theta_grads, meta_grads = learner.meta_gradients(*batch)
    assert all(np.any(g.numpy() != 0) for g in meta_grads[len(mask.meta):])
    check_fd(learner, learner.theta, theta_grads, batch)
    check_fd(learner, rates.meta, meta_grads[len(mask.meta):], batch)
    # the inner step itself: phi = theta - ReLU(alpha) * H(m) * grad, one chunk
    theta = {v.path: tf.convert_to_tensor(v) for v in learner.theta}
    x, y = batch[0][0], batch[1][0]
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss = learner.classification_loss([theta[p] for p in theta], x, y)
    grads = tape.gradient(loss, theta)
    phi = learner.adapt(x, y)
    for (path, t), p, m, a in zip(theta.items(), phi, mask.meta, rates.meta):
        expected = t - np.maximum(a.numpy(), 0) * binary_step(m).numpy() * grads[path]
        np.testing.assert_allclose(p.numpy(), expected.numpy(), rtol=1e-12)


def test_update_rules_are_read_by_the_la_maml_family_and_checked():
    c = ExperimentConfig(algorithm="la_maml", update_rules=("binary_mask", "learned_rates"),
                         mask_lr=1.0).resolved()
    assert c.update_rules == ("binary_mask", "learned_rates") and c.mask_init == "kaiming"
    assert ExperimentConfig(algorithm="sparse_la_maml").resolved().update_rules == (
        "masked_rates",)
    assert ExperimentConfig(algorithm="la_maml").resolved().update_rules == ("learned_rates",)
    with pytest.raises(ConfigError, match="--mask_lr=1.0 is not read by --algorithm=la_maml"):
        ExperimentConfig(algorithm="la_maml", mask_lr=1.0).resolved()
    with pytest.raises(ConfigError, match="couple the tasks of a meta-batch"):
        ExperimentConfig(algorithm="la_maml",
                         update_rules=("share_gradients", "learned_rates")).resolved()
    with pytest.raises(ConfigError, match="unknown --update_rules link"):
        ExperimentConfig(algorithm="c_maml", update_rules=("nope",)).resolved()


def test_the_slow_step_at_the_rates_needs_a_chain_with_rates():
    model = models.mlp(input_dim=6, hidden=(5,), output_dim=3)
    from wtl_tf.rules.scale import Scale

    with pytest.raises(ConfigError, match="the slow step at the rates needs per-weight rates"):
        LaMAML(model, rule=[Scale(0.1)])
    LaMAML(model, "fixed", "fixed", rule=[Scale(0.1)])  # C-MAML with a scalar rate


def _train(tree, *flags):
    return subprocess.run(
        [sys.executable, "-m", "wtl_tf.cli.train", "--update_rules=sign_sgd",
         "--stream_tasks=1", "--glances=1", "--tensorboard=false", *flags],
        capture_output=True, text=True, cwd=tree, timeout=600,
        env=dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3"))


def test_a_link_in_one_new_file_runs_in_la_maml(tmp_path, omniglot_dir):
    tree = tmp_path / "tree"
    shutil.copytree(os.path.join(ROOT, "wtl_tf"), tree / "wtl_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "wtl_tf" / "rules" / "sign_sgd.py").write_text(SIGN_SGD)
    run = tmp_path / "run"
    proc = _train(tree, "--algorithm=sync_la_maml", "--inner_lr=0.001",
                  f"--data_dir={omniglot_dir}", f"--output_dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["update_rules"] == ["sign_sgd"]
    assert 0.2 < results["continual"]["R"][0][0] <= 1  # 20 classes: above chance
    # La-MAML's slow step takes the chain's per-weight rates: sign_sgd has none
    proc = _train(tree, "--algorithm=la_maml", f"--data_dir={omniglot_dir}",
                  f"--output_dir={tmp_path / 'b'}")
    assert proc.returncode == 1
    assert "the slow step at the rates needs per-weight rates" in \
        proc.stderr.strip().splitlines()[-1]


def test_a_task_masked_learner_adapts_without_tasks_on_every_class():
    # an export's adapt_and_predict has no task ids: the loss then spans every class
    model = models.mlp(input_dim=6, hidden=(5,), output_dim=4, dtype="float64")
    learner = LaMAML(model, class_task=[0, 0, 1, 1], first_order=True, clip=None)
    x = tf.constant(np.random.default_rng(0).normal(size=(6, 6)))
    y = tf.constant([0, 1, 2, 3, 0, 2], tf.int64)
    phi = learner.adapt(x, y)
    theta = [tf.convert_to_tensor(v) for v in learner.theta]
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss = learner.classification_loss(theta, x, y)
    assert float(loss) > 0 and len(phi) == len(theta)
    assert any(np.any(p.numpy() != t.numpy()) for p, t in zip(phi, theta))


# ---------------------------------------------------------------------- Continual-MAML
def test_continual_maml_reads_update_rules_and_checks_them():
    from wtl_tf.continual import protocol
    from wtl_tf.continual.building import build_osaka, osaka_network
    from wtl_tf.rules.base import FactorChain

    assert ExperimentConfig(algorithm="continual_maml").resolved().update_rules == (
        "tensor_exp_rates",)
    assert ExperimentConfig(algorithm="sparse_continual_maml").resolved().update_rules == (
        "binary_mask", "tensor_exp_rates")
    c = ExperimentConfig(algorithm="continual_maml", update_rules=("binary_mask",
                                                                   "learned_rates"),
                         mask_granularity="per_tensor", conv_channels=4).resolved()
    # a mask link: the masks' defaults
    assert c.mask_init == "kaiming" and c.mask_lr == protocol.SPARSE_CONTINUAL_MAML_MASK_LR
    learner = build_osaka(c, osaka_network(c))
    assert isinstance(learner.rule, FactorChain) and learner.mask_kind == "per_tensor"
    mask, rates = learner.rule.links
    assert isinstance(mask, BinaryMask) and isinstance(rates, LearnedRates)
    assert learner.masks == mask.meta and all(m.shape == () for m in learner.masks)
    assert learner.meta_parameters == learner.theta + rates.meta + mask.meta
    with pytest.raises(ConfigError, match="--mask_granularity=per_tensor is not read"):
        ExperimentConfig(algorithm="continual_maml", mask_granularity="per_tensor").resolved()
    with pytest.raises(ConfigError, match="--mask_lr=0.1 is not read"):
        ExperimentConfig(algorithm="continual_maml", mask_lr=0.1).resolved()
    with pytest.raises(ConfigError, match="couple the tasks of a meta-batch"):
        ExperimentConfig(algorithm="continual_maml",
                         update_rules=("share_gradients", "tensor_exp_rates")).resolved()
    with pytest.raises(ConfigError, match="--learn_inner_lr=False is not read"):
        ExperimentConfig(algorithm="continual_maml", update_rules=("learned_rates",),
                         learn_inner_lr=False).resolved()


class HalvedSigns(UpdateRule):
    """A link written here: g -> 0.5 sign(g) (not a factor link, so the chain runs in turn)."""

    def transform(self, grads, params, step):
        return {path: 0.5 * tf.sign(g) for path, g in grads.items()}


def test_continual_maml_steps_with_any_chain_and_learns_its_weights():
    from wtl_tf.continual import osaka
    from wtl_tf.rules.base import Chain, FactorChain
    from wtl_tf.rules.clip import ClipGradient

    tf.keras.utils.set_random_seed(0)
    net = models.conv4((8, 8, 1), 3, channels=4, blocks=2)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 8, 8, 1)).astype("float32"), np.arange(6) % 3
    qx, qy = rng.normal(size=(6, 8, 8, 1)).astype("float32"), np.arange(6) % 3
    theta = [tf.convert_to_tensor(v) for v in net.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss, _ = osaka.ContinualMAML(net).loss_and_accuracy(theta, x, y)
    grads = tape.gradient(loss, theta)
    chains = {"clip then rates": ([ClipGradient(1e-3), LearnedRates(init="constant",
                                                                    init_value=0.2)],
                                  lambda g: 0.2 * np.clip(g, -1e-3, 1e-3)),
              "a link in this file": ([HalvedSigns()], lambda g: 0.5 * np.sign(g))}
    for name, (links, step) in chains.items():
        learner = osaka.ContinualMAML(net, rule=links, inner_steps=1, meta_lr=1e-2)
        assert type(learner.rule) is Chain, name  # not only factors: link after link
        for t, g, phi in zip(theta, grads, learner.adapt(theta, x, y)):
            np.testing.assert_allclose(phi.numpy(), t.numpy() - step(g.numpy()), atol=1e-6,
                                       err_msg=name)
    learner = osaka.ContinualMAML(net, rule=[LearnedRates(init="constant", init_value=0.2)],
                                  inner_steps=1, meta_lr=1e-2)
    assert type(learner.rule) is FactorChain
    rates = [r.numpy() for r in learner.rule_meta]
    learner.meta_update((x, y), (qx, qy), 1.0)
    cancelled = osaka.biases_cancelled_by_normalization(net)  # their gradient is zero
    moved = {p: np.any(r.numpy() != r0) for p, r, r0 in zip(
        learner.rule.links[0].param_paths, learner.rule_meta, rates)}
    assert moved == {p: p not in cancelled for p in moved} and cancelled
