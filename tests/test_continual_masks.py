"""The continual learners' masks and rates can learn, and La-MAML's stream handling follows
the authors' code: the slow step never ascends, each glance reshuffles, the reservoir takes
the batch during the first glance, replay draws min(replay, kept), reference acceptance and
initialisation; sparse-C-MAML's mask meta-gradient, its own mask rate, masks only where a
gradient arrives, and pretraining that learns the masks and rates with validation early
stopping."""

import numpy as np
import pytest
import tensorflow as tf

from wtl_tf import models
from wtl_tf.algorithms import learner_options
from wtl_tf.continual import osaka
from wtl_tf.continual.la_maml import REFERENCE_KERNEL_INIT, LaMAML
from wtl_tf.continual.replay import ReplayDraws
from wtl_tf.step_functions import binary_step

from helpers import tiny_la_maml_batch as tiny_batch


def tiny_la_maml(variant="la_maml", **options):
    model = models.mlp(input_dim=6, hidden=(5,), output_dim=3, dtype="float64")
    return LaMAML(model, **learner_options(variant), alpha_init=0.2, **options)




# ---------------------------------------------------------------------- La-MAML family
def test_slow_step_never_ascends_for_negative_rates():
    """rate_activation=identity (the split streams) steps the inner loop with raw alpha, but
    the slow step takes ReLU(alpha), as both reference files: alpha = -0.1 leaves theta."""
    learner = tiny_la_maml(rate_activation="identity", alpha_lr=0.0, clip=None)
    rng = np.random.default_rng(0)
    for m in learner.meta:
        m.assign(np.where(rng.random(m.shape) < 0.5, -0.1, 0.1))
    batch = tiny_batch(seed=1)
    theta0 = [v.numpy() for v in learner.theta]
    _, theta_grads, _ = learner.meta_gradients(*batch)
    learner.update(*batch)
    for v, t0, g, m in zip(learner.theta, theta0, theta_grads, learner.meta):
        negative = m.numpy() < 0
        np.testing.assert_array_equal(v.numpy()[negative], t0[negative])
        np.testing.assert_allclose(v.numpy(), t0 - np.maximum(m.numpy(), 0) * g.numpy(),
                                   rtol=1e-12, atol=1e-15)
    assert any(np.any(g.numpy()[m.numpy() < 0] != 0) for g, m in zip(theta_grads, learner.meta))


class _Recorder:
    """Stands in for the compiled update: records what each glance was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, chunks_x, chunks_y, meta_x, meta_y, *task):
        self.calls.append({k: v.numpy() for k, v in
                           (("chunks_y", chunks_y), ("meta_x", meta_x), ("meta_y", meta_y))})
        return tf.constant(0.0)


def _recorded_glances(learner, x, y, task=0, first_pass=True):
    """The step run eagerly (its loops run in Python), each glance's update recorded."""
    recorder = _Recorder()
    learner.update = recorder
    draws = learner.draws.next(len(y), first_pass)
    learner.stream_step(tf.constant(x), tf.constant(y), task, tf.constant(first_pass), *draws)
    return recorder.calls


def _distinct_batch(n=10):
    return np.arange(n * 6, dtype=np.float64).reshape(n, 6), np.arange(n) % 3


def test_each_glance_reshuffles_the_batch_reproducibly():
    x, y = _distinct_batch()
    orders = []
    for _ in range(2):
        learner = tiny_la_maml(glances=5, seed=4)
        calls = _recorded_glances(learner, x, y)
        # The inner-loop chunks, as rows of x, identify the order each glance used.
        orders.append([tuple(c["meta_x"][-len(y):, 0].astype(int)) for c in calls])
    first, again = orders
    assert first == again  # the same seed, the same reshuffles
    assert len(set(first)) == 5  # every glance in its own order
    for order in first:
        assert sorted(order) == sorted(x[:, 0].astype(int))


def test_the_batch_enters_the_reservoir_during_the_first_glance():
    """Glance 0 replays nothing (the buffer is empty); glances 1.. replay min(10, kept)
    examples, all from the current batch; a later pass adds nothing."""
    x, y = _distinct_batch(4)
    learner = tiny_la_maml(glances=3, replay_size=10, memories=50)
    calls = _recorded_glances(learner, x, y)
    assert [len(c["meta_y"]) for c in calls] == [4, 4 + 4, 4 + 4]
    for call in calls[1:]:
        assert set(call["meta_x"][:4, 0].astype(int)) <= set(x[:, 0].astype(int))
    assert len(learner.memory) == 4
    calls = _recorded_glances(learner, x + 1000, y, first_pass=False)
    assert len(learner.memory) == 4 and int(learner.memory.seen.numpy()) == 4
    assert all(len(c["meta_y"]) == 8 for c in calls)


def test_reference_reservoir_acceptance_is_capacity_over_n_plus_one():
    """The 11th example offered to a buffer of 10 is kept with probability 10/12 (the
    reference's randint(0, age) after counting it), 10/11 with algorithm R."""
    kept = {"la_maml": 0, "uniform": 0}
    trials = 6000
    for acceptance in kept:
        for trial in range(trials):
            slots = ReplayDraws(10, 0, 1, seed=trial, acceptance=acceptance).offer(11)
            kept[acceptance] += int(slots[10] < 10)
    # Binomial standard errors ~0.005: the two rates are 15 of them apart.
    assert abs(kept["la_maml"] / trials - 10 / 12) < 0.02
    assert abs(kept["uniform"] / trials - 10 / 11) < 0.02


def test_la_maml_networks_start_from_the_references_kaiming_normal():
    tf.keras.utils.set_random_seed(0)
    model = models.mlp(784, (100, 100), 20, kernel_initializer=REFERENCE_KERNEL_INIT)
    kernel = model.weights[0].numpy()
    std = np.sqrt(2.0 / 784)
    assert abs(kernel.std() / std - 1) < 0.02
    assert np.abs(kernel).max() > 3 * std  # not truncated at two standard deviations
    assert not np.array_equal(model.weights[2].numpy()[:100], kernel[:100])  # per layer
    assert all(np.all(b.numpy() == 0) for b in model.weights[1::2])


def test_sparse_la_maml_mask_steps_at_its_own_rate():
    """A known non-zero mask gradient moves the logits by mask_lr * gradient, not by La-MAML's
    eta_alpha: at mask_lr = 10 a single update moves them by a percent of their spread."""
    learner = tiny_la_maml("sparse_la_maml", mask_init="kaiming", clip=None, first_order=True,
                           mask_lr=10.0)
    batch = tiny_batch(seed=3)
    before = [m.numpy() for m in learner.meta]
    _, _, mask_grads = learner.meta_gradients(*batch)
    learner.update(*batch)
    for m, m0, g in zip(learner.meta, before, mask_grads):
        np.testing.assert_allclose(m.numpy(), m0 - learner.mask_lr * g.numpy(), rtol=1e-10,
                                   atol=1e-14)
    moved = max(float(np.abs(m.numpy() - m0).max()) for m, m0 in zip(learner.meta, before))
    spread = max(float(np.abs(m0).max()) for m0 in before)
    assert moved > 0.01 * spread, (moved, spread)
    assert learner.mask_lr != learner.alpha_lr


# ---------------------------------------------------------------------- sparse-C-MAML
def _tiny_conv4(seed=0):
    tf.keras.utils.set_random_seed(seed)
    return models.conv4((8, 8, 1), 3, channels=4, blocks=2)


def _conv_batch(seed, n=6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 1)).astype("float32"), np.arange(n) % 3


def test_no_masks_on_biases_that_batchnorm_cancels():
    learner = osaka.ContinualMAML(_tiny_conv4(), mask="per_weight", mask_init="kaiming")
    masked = set(learner.masked_paths())
    paths = [v.path for v in learner.theta]
    assert {"conv1/bias", "conv2/bias"}.isdisjoint(masked)
    assert masked == {p for p in paths if p not in ("conv1/bias", "conv2/bias")}
    # Those biases' gradient is zero: BatchNorm subtracts them again.
    x, y = _conv_batch(0)
    theta = [tf.convert_to_tensor(v) for v in learner.theta]
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss, _ = learner.loss_and_accuracy(theta, x, y)
    for p, g in zip(paths, tape.gradient(loss, theta)):
        if p.endswith("bias") and p.startswith("conv"):
            assert float(tf.reduce_max(tf.abs(g))) < 1e-5
    plain = osaka.ContinualMAML(models.mlp(4, (6,), 3), mask="per_weight")
    assert len(plain.masks) == 4  # dense biases feed no BatchNorm: all masked


def test_sparse_continual_maml_mask_meta_gradient_matches_an_independent_computation():
    """First order, two fast steps: phi_2 = theta - a H(m) (g_0 + g_1), g_k constants, so
    dL/dm = dL/dphi_2 * (-a (g_0 + g_1)) * dH/dm with dH/dm = 1/2 (straight through)."""
    learner = osaka.ContinualMAML(_tiny_conv4(1), mask="per_weight", mask_init="kaiming",
                                  inner_lr=0.3, inner_steps=2)
    (sx, sy), (qx, qy) = _conv_batch(1), _conv_batch(2)
    _, grads = learner._meta_gradients(sx, sy, qx, qy, tf.constant(1.0))
    by_variable = {id(v): g for v, g in zip(learner.meta_parameters, grads)}

    def gradient(weights, x, y):
        weights = [tf.convert_to_tensor(w) for w in weights]
        with tf.GradientTape() as tape:
            tape.watch(weights)
            loss, _ = learner.loss_and_accuracy(weights, x, y)
        return [g.numpy() for g in tape.gradient(loss, weights)]

    theta = [v.numpy() for v in learner.theta]
    factors = learner.mask_factors()
    sizes = [factors[v.path].numpy() for v in learner.theta]
    mask_link, rates_link = learner.rule.links
    mask_of = dict(zip(mask_link.param_paths, mask_link.meta))
    log_rate = dict(zip(rates_link.param_paths, rates_link.meta))
    g0 = gradient(theta, sx, sy)
    phi1 = [t - s * g for t, s, g in zip(theta, sizes, g0)]
    g1 = gradient(phi1, sx, sy)
    phi2 = [p - s * g for p, s, g in zip(phi1, sizes, g1)]
    outer = gradient(phi2, qx, qy)
    checked = 0
    for v, a0, a1, o in zip(learner.theta, g0, g1, outer):
        if v.path not in mask_of:
            continue
        m, a = mask_of[v.path], log_rate[v.path]
        want = o * (-np.exp(a.numpy()) * (a0 + a1)) * 0.5
        np.testing.assert_allclose(by_variable[id(m)].numpy(), want, rtol=2e-4, atol=1e-7)
        checked += 1
    assert checked == len(learner.masks)
    assert any(np.any(by_variable[id(m)].numpy() != 0) for m in learner.masks)


def test_sparse_continual_maml_masks_step_at_the_mask_rate():
    """Adam's first step is about its rate for every entry with a gradient: the masks move by
    ~mask_lr, theta by ~meta_lr."""
    learner = osaka.ContinualMAML(_tiny_conv4(2), mask="per_weight", mask_init="kaiming",
                                  meta_lr=1e-4, mask_lr=1e-2, inner_steps=1)
    before = [m.numpy() for m in learner.masks]
    theta0 = [v.numpy() for v in learner.theta]
    learner.meta_update(_conv_batch(3), _conv_batch(4), 1.0)
    steps = np.concatenate([np.abs(m.numpy() - b).ravel() for m, b in zip(learner.masks, before)])
    assert np.median(steps[steps > 0]) > 0.5e-2
    theta_steps = np.concatenate([np.abs(v.numpy() - t).ravel()
                                  for v, t in zip(learner.theta, theta0)])
    assert theta_steps.max() < 2e-4


def test_pretraining_learns_masks_and_rates_and_keeps_the_best_validation_point(monkeypatch):
    learner = osaka.ContinualMAML(_tiny_conv4(3), mask="per_weight", mask_init="kaiming",
                                  inner_steps=1, mask_lr=1e-2)
    masks0 = [m.numpy() for m in learner.masks]
    rates = learner.rule.links[1].meta
    rates0 = [r.numpy() for r in rates]
    scores = iter([0.5, 0.7, 0.6, 0.4, 0.9])
    monkeypatch.setattr(learner, "episode_accuracy", lambda episodes: next(scores))
    snapshots = {}

    def log(iteration, accuracy):
        snapshots[iteration] = [v.numpy() for v in learner.meta_parameters]

    def episodes():
        seed = 10
        while True:
            seed += 1
            yield [(*_conv_batch(seed), *_conv_batch(seed + 100)) for _ in range(2)]

    curve = osaka.pretrain(learner, episodes(), [], iterations=10, learning_rate=1e-3,
                           eval_every=1, patience=2, log=log)
    # Best at iteration 2; two evaluations without improvement end it at iteration 4.
    assert [c["iteration"] for c in curve] == [1, 2, 3, 4]
    for v, want in zip(learner.meta_parameters, snapshots[2]):
        np.testing.assert_array_equal(v.numpy(), want)
    assert any(np.any(m.numpy() != m0) for m, m0 in zip(learner.masks, masks0))
    assert any(r.numpy() != r0 for r, r0 in zip(rates, rates0))
    for f, t in zip(learner.fast, learner.theta):  # the stream starts from the kept theta
        np.testing.assert_array_equal(f.numpy(), t.numpy())
    assert learner.mask_changes() == {p: 0.0 for p in learner.masked_paths()}
