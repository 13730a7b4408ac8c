"""Continual learning (docs/continual.md): La-MAML's meta-gradients, the sparse variant's masked
update, the reservoir buffer, the metrics and the Omniglot streams."""

import math

import numpy as np
import pytest
import tensorflow as tf

from wtl_tf import models
from wtl_tf.algorithms import learner_options
from wtl_tf.continual import metrics, streams
from wtl_tf.continual.la_maml import LaMAML
from wtl_tf.continual.replay import ReplayDraws, ReplayMemory
from wtl_tf.step_functions import binary_step

from helpers import tiny_la_maml_batch as tiny_batch


def tiny_learner(variant="la_maml", first_order=False, **options):
    model = models.mlp(input_dim=6, hidden=(5,), output_dim=3, dtype="float64")
    return LaMAML(model, **learner_options(variant), first_order=first_order, alpha_init=0.2,
                  **options)




def directional_fd(learner, variables, direction, batch, eps=1e-6):
    def loss():
        theta = [tf.convert_to_tensor(v) for v in learner.theta]
        meta = [tf.convert_to_tensor(v) for v in learner.meta]
        return float(learner.meta_loss(theta, meta, *batch))

    base = [v.numpy() for v in variables]
    for v, b, d in zip(variables, base, direction):
        v.assign(b + eps * d)
    plus = loss()
    for v, b, d in zip(variables, base, direction):
        v.assign(b - eps * d)
    minus = loss()
    for v, b in zip(variables, base):
        v.assign(b)
    return (plus - minus) / (2 * eps)


def check_fd(learner, variables, grads, batch):
    rng = np.random.default_rng(3)
    for _ in range(3):
        direction = [rng.normal(size=v.shape) for v in variables]
        analytic = sum(float(np.sum(g.numpy() * d)) for g, d in zip(grads, direction))
        np.testing.assert_allclose(analytic, directional_fd(learner, variables, direction, batch),
                                   rtol=1e-6, atol=1e-10)


def test_second_order_meta_gradients_of_theta_and_rates_match_finite_differences():
    learner = tiny_learner(first_order=False)
    batch = tiny_batch()
    _, theta_grads, rate_grads = learner.meta_gradients(*batch)
    assert all(np.any(g.numpy() != 0) for g in rate_grads)
    check_fd(learner, learner.theta, theta_grads, batch)
    check_fd(learner, learner.meta, rate_grads, batch)


def test_task_masked_second_order_meta_gradients_match_finite_differences():
    learner = tiny_learner(first_order=False, class_task=[0, 1, 1])
    batch = tiny_batch() + [tf.constant([[1], [1]], tf.int64),
                            tf.constant([0, 1, 1, 0, 1], tf.int64)]
    batch[1] = tf.constant([[1], [2]], batch[1].dtype)  # labels inside their task
    batch[3] = tf.constant([0, 1, 2, 0, 2], batch[3].dtype)
    _, theta_grads, rate_grads = learner.meta_gradients(*batch)
    check_fd(learner, learner.theta, theta_grads, batch)
    check_fd(learner, learner.meta, rate_grads, batch)


def test_first_order_meta_gradients_match_finite_differences_and_the_stopped_formula():
    """One chunk: the inner gradient at theta does not depend on the rates, so the first-order
    rate gradient is exact; theta's is the gradient at phi_1 (the inner gradient a constant)."""
    learner = tiny_learner(first_order=True)
    batch = tiny_batch(chunks=1)
    _, theta_grads, rate_grads = learner.meta_gradients(*batch)
    check_fd(learner, learner.meta, rate_grads, batch)
    x, y, meta_x, meta_y = batch
    theta = [tf.constant(v.numpy()) for v in learner.theta]
    with tf.GradientTape() as tape:
        tape.watch(theta)
        inner = learner.classification_loss(theta, x[0], y[0])
    g = tape.gradient(inner, theta)
    phi = [t - 0.2 * gi for t, gi in zip(theta, g)]  # ReLU(0.2) = 0.2
    with tf.GradientTape() as tape:
        tape.watch(phi)
        outer = learner.classification_loss(phi, meta_x, meta_y)
    for got, want in zip(theta_grads, tape.gradient(outer, phi)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)


def test_la_maml_updates_rates_then_theta_with_the_updated_rates():
    learner = tiny_learner(clip=None)
    batch = tiny_batch(seed=1)
    theta0 = [v.numpy() for v in learner.theta]
    alpha0 = [m.numpy() for m in learner.meta]
    _, theta_grads, rate_grads = learner.meta_gradients(*batch)
    learner.update(*batch)
    for a0, g, m in zip(alpha0, rate_grads, learner.meta):
        np.testing.assert_allclose(m.numpy(), a0 - learner.alpha_lr * g.numpy(), rtol=1e-12)
    for t0, g, m, v in zip(theta0, theta_grads, learner.meta, learner.theta):
        np.testing.assert_allclose(v.numpy(), t0 - np.maximum(m.numpy(), 0) * g.numpy(),
                                   rtol=1e-12, atol=1e-15)


def test_sparse_la_maml_with_an_all_ones_mask_is_la_maml_bit_for_bit():
    """With m >= 0 everywhere, a * H(m) = a: the inner loop, the meta-loss and (rates frozen,
    eta_alpha = 0) the slow step are La-MAML's with alpha = a, bit for bit."""
    dense = tiny_learner("la_maml", alpha_lr=0.0)
    sparse = tiny_learner("sparse_la_maml", mask_lr=0.0)
    for a, b in zip(sparse.theta, dense.theta):
        a.assign(b)
    for m in sparse.meta:
        m.assign(tf.ones_like(m))  # open everywhere
    batch = tiny_batch(seed=2)
    for learner in (dense, sparse):
        learner.update(*batch)
    for a, b in zip(sparse.theta, dense.theta):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_sparse_la_maml_masked_update_matches_an_independent_computation():
    learner = tiny_learner("sparse_la_maml", first_order=True, clip=None, mask_lr=7.0)
    rng = np.random.default_rng(4)
    for m in learner.meta:
        m.assign(rng.normal(size=m.shape))
    masks = [binary_step(m).numpy() for m in learner.meta]
    assert 0 < np.mean(np.concatenate([k.ravel() for k in masks])) < 1
    x, y, meta_x, meta_y = tiny_batch(seed=5, chunks=1)
    theta = [tf.constant(v.numpy()) for v in learner.theta]
    with tf.GradientTape() as tape:
        tape.watch(theta)
        inner = learner.classification_loss(theta, x[0], y[0])
    g = [gi.numpy() for gi in tape.gradient(inner, theta)]
    phi = [tf.constant(t.numpy() - 0.2 * k * gi) for t, k, gi in zip(theta, masks, g)]
    with tf.GradientTape() as tape:
        tape.watch(phi)
        outer = learner.classification_loss(phi, meta_x, meta_y)
    grad_phi = [v.numpy() for v in tape.gradient(outer, phi)]
    # dL/dm = dL/dphi * dphi/dH * dH/dm = grad_phi * (-a * g) * 1/2 (straight-through step).
    # The mask steps at its own rate eta_m = 7, not at La-MAML's eta_alpha (0.3 here).
    expected_m = [m.numpy() - 7.0 * (-0.2 * gi * gp * 0.5) for m, gi, gp in
                  zip(learner.meta, g, grad_phi)]
    theta0 = [t.numpy() for t in theta]
    learner.update(x, y, meta_x, meta_y)
    new_masks = [binary_step(m).numpy() for m in learner.meta]
    for m, want in zip(learner.meta, expected_m):
        np.testing.assert_allclose(m.numpy(), want, rtol=1e-10, atol=1e-14)
    for v, t0, k, gp in zip(learner.theta, theta0, new_masks, grad_phi):
        np.testing.assert_allclose(v.numpy(), t0 - 0.2 * k * gp, rtol=1e-10, atol=1e-14)
        assert np.all(v.numpy()[k == 0] == t0[k == 0])  # masked weights never move


def test_reservoir_keeps_a_uniform_sample():
    """Over 2,000 independent streams of 100 examples into a buffer of 10, each example is
    kept with probability 1/10. Chi-square test over the 100 positions, 99 degrees of
    freedom, threshold 148.2 (false-alarm rate 0.1%); the seeds are fixed, so the test is
    deterministic."""
    counts = np.zeros(100)
    for trial in range(2000):
        slots = ReplayDraws(10, 0, 1, seed=trial, acceptance="uniform").offer(100)
        counts[slots < 10] += 1
    expected = 2000 * 10 / 100
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 148.2, chi2
    assert counts.sum() == 2000 * 10


def test_draws_depend_only_on_the_streams_batch_sizes_so_a_resume_derives_them_again():
    steps = [(10, True)] * 4 + [(7, True), (10, False), (10, False)]
    whole = ReplayDraws(12, 5, 3, seed=1)
    drawn = [whole.next(n, first) for n, first in steps]
    resumed = ReplayDraws(12, 5, 3, seed=1).skip(steps[:4])
    for (n, first), expected in zip(steps[4:], drawn[4:]):
        for a, b in zip(resumed.next(n, first), expected):
            np.testing.assert_array_equal(a, b)
    orders, picks, counts, slots = drawn[0]
    assert list(counts) == [0, 5, 5] and np.all(slots == np.arange(10))  # fills in order
    assert all(sorted(o) == list(range(10)) for o in orders)
    assert np.all(drawn[-1][3] == 12)  # a later pass offers nothing


def test_the_memory_holds_what_a_sequential_reservoir_holds():
    """Written in one scatter per batch, the tf.Variable memory ends as the reference's loop
    (each example offered in turn, a later one overwriting an earlier one's slot) ends."""
    draws = ReplayDraws(6, 2, 1, seed=3)
    memory = ReplayMemory(6, (2,), tf.float32)
    reference = {}
    seen = 0
    rng = np.random.default_rng(3)  # the draws' reservoir generator, replayed by hand
    for batch in range(5):
        x = np.arange(16, dtype=np.float32).reshape(8, 2) + 100 * batch
        y = np.arange(8) + 10 * batch
        _, _, counts, slots = draws.next(8)
        if seen:  # the glance's replay draw comes first
            rng.integers(0, min(seen, 6), size=int(counts[0]))
        for i in range(8):
            slot = seen if seen < 6 else int(rng.integers(0, seen + 2))
            if slot < 6:
                reference[slot] = (x[i], y[i])
            seen += 1
        memory.add(tf.constant(x), tf.constant(y), batch, tf.constant(slots), tf.constant(True))
    assert int(memory.seen.numpy()) == seen == 40 and len(memory) == 6
    for slot, (x, y) in reference.items():
        np.testing.assert_array_equal(memory.x.numpy()[slot], x)
        assert memory.y.numpy()[slot] == y
def test_metrics_on_a_hand_computed_matrix():
    r = np.array([[0.9, 0.1, 0.2],
                  [0.7, 0.8, 0.1],
                  [0.6, 0.5, 0.95]])
    summary = metrics.summary(r)
    assert math.isclose(summary["retained_accuracy"], (0.6 + 0.5 + 0.95) / 3)
    assert math.isclose(summary["learning_accuracy"], (0.9 + 0.8 + 0.95) / 3)
    assert math.isclose(summary["backward_transfer"], ((0.6 - 0.9) + (0.5 - 0.8)) / 2)
    assert math.isclose(summary["backward_transfer_over_T"], ((0.6 - 0.9) + (0.5 - 0.8)) / 3)


def test_rotation_is_counter_clockwise_about_the_centre():
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 2:6, 20:24, 0] = 1.0  # a block near the top right
    turned = streams.rotate_images(image, 90.0)
    np.testing.assert_allclose(turned[0, :, :, 0], np.rot90(image[0, :, :, 0], k=1), atol=1e-5)
    np.testing.assert_allclose(streams.rotate_images(image, 0.0), image, atol=1e-6)


def test_rotated_and_permuted_omniglot_streams_follow_the_recipe(omniglot_small):
    rotated = streams.rotated_omniglot(omniglot_small, tasks=20, seed=0)
    assert len(rotated.tasks) == 20 and rotated.classes == 20
    for t, task in enumerate(rotated.tasks):
        assert 9 * t <= task.angle < 9 * (t + 1)  # one angle in each 9-degree bin of [0, 180)
        assert task.train_x.shape == (300, 784) and task.test_x.shape == (100, 784)
        assert sorted(np.bincount(task.train_y)) == [15] * 20
        assert sorted(np.bincount(task.test_y)) == [5] * 20
    # the same characters and drawings in every task; task 0 barely turned
    first, last = rotated.tasks[0], rotated.tasks[-1]
    np.testing.assert_array_equal(first.train_y, last.train_y)
    # no test drawing is a training drawing (compare the unrotated first task)
    train = {row.tobytes() for row in first.train_x}
    assert not any(row.tobytes() in train for row in first.test_x)
    again = streams.rotated_omniglot(omniglot_small, tasks=20, seed=0)
    np.testing.assert_array_equal(again.tasks[5].train_x, rotated.tasks[5].train_x)

    permuted = streams.permuted_omniglot(omniglot_small, tasks=3, seed=0)
    base = permuted.tasks[0].train_x[:, np.argsort(permuted.tasks[0].permutation)]
    for task in permuted.tasks:
        assert sorted(task.permutation) == list(range(784))
        np.testing.assert_array_equal(task.train_x, base[:, task.permutation])
    many = streams.many_permutations(omniglot_small)
    assert len(many.tasks) == 100 and all(len(t.train_y) == 60 for t in many.tasks)


def test_split_omniglot_tasks_are_disjoint_class_groups_with_held_out_drawings(omniglot_small):
    split = streams.split_omniglot(omniglot_small, seed=0)
    assert len(split.tasks) == 48 and split.classes == 240
    assert np.bincount(split.class_task).tolist() == [5] * 48
    seen = set()
    for task in split.tasks:
        classes = set(task.train_y.tolist())
        assert classes == set(task.test_y.tolist()) and len(classes) == 5
        assert all(split.class_task[c] == task.index for c in classes)
        assert not classes & seen  # every class in one task only
        seen |= classes
        assert task.train_x.shape == (70, 28, 28, 1) and task.test_x.shape == (15, 28, 28, 1)
        train = {image.tobytes() for image in task.train_x}
        assert not any(image.tobytes() in train for image in task.test_x)
    alphabets = streams.split_omniglot(omniglot_small, by="alphabets", seed=0)
    assert len(alphabets.tasks) == 8 and alphabets.classes == 242
    for task in alphabets.tasks:  # all of a task's characters from its alphabet
        names = {omniglot_small.names.index(n) for n in omniglot_small.names
                 if n.split("/")[0] == task.name}
        assert len(set(task.train_y.tolist())) == len(names)


def test_task_masked_head_is_the_cross_entropy_over_the_tasks_own_classes():
    """Each example's loss is the cross-entropy of its own task's logits alone (computed
    independently), so other tasks' classes get no gradient from it."""
    model = models.mlp(input_dim=6, hidden=(5,), output_dim=6, dtype="float64")
    class_task = [0, 0, 1, 1, 2, 2]
    learner = LaMAML(model, **learner_options("la_maml"), alpha_init=0.2, class_task=class_task)
    rng = np.random.default_rng(0)
    x, task = rng.normal(size=(4, 6)), np.array([0, 2, 1, 2])
    y = np.array([1, 4, 2, 5])
    theta = [tf.convert_to_tensor(v) for v in learner.theta]
    logits = learner.forward(theta, x).numpy()
    expected = []
    for i in range(4):
        own = logits[i, 2 * task[i]:2 * task[i] + 2]
        expected.append(np.log(np.sum(np.exp(own))) - logits[i, y[i]])
    np.testing.assert_allclose(float(learner.classification_loss(theta, x, y, task)), np.mean(expected),
                               rtol=1e-12)
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss = learner.classification_loss(theta, x[:1], y[:1], task[:1])
    head_bias = tape.gradient(loss, theta)[-1].numpy()
    assert np.all(head_bias[2:] == 0) and np.all(head_bias[:2] != 0)
    masked = learner.logits(x, task=2).numpy()
    assert np.all(np.argmax(masked, -1) >= 4)  # task 2 answers with classes 4 and 5


def test_la_maml_learns_a_short_rotated_stream_and_remembers(omniglot_small):
    """Real data, 3 rotation tasks of 20 characters, single pass with 2 glances: retained and
    learning accuracy well above chance (5%); the replay buffer full; sparse-La-MAML's
    kaiming-initialised mask both open and shut. (Measured: RA 0.28 / 0.24.)"""
    stream = streams.rotated_omniglot(omniglot_small, tasks=3, seed=0)
    for variant in ("la_maml", "sparse_la_maml"):
        tf.keras.utils.set_random_seed(0)
        model = models.mlp(input_dim=784, hidden=(100, 100), output_dim=20)
        learner = LaMAML(model, **learner_options(variant), glances=2, memories=200,
                         mask_init="kaiming")
        accuracy = []
        for task in stream.tasks:
            for x, y in task.train_batches(10):
                learner.observe(x.numpy(), y.numpy(), task.index)
            accuracy.append([learner.accuracy(t.test_x, t.test_y) for t in stream.tasks])
        summary = metrics.summary(accuracy)
        assert summary["retained_accuracy"] > 0.12 and summary["learning_accuracy"] > 0.12, (
            variant, summary)
        assert len(learner.memory) == 200 and learner.observed.numpy() == 2 * 90
        if variant == "sparse_la_maml":
            assert 0.05 < learner.mask_sparsity() < 0.95


# ---------------------------------------------------------------------- OSAKA
from wtl_tf.continual import osaka  # noqa: E402


def test_osaka_stream_switch_probability_modes_and_batches(omniglot_small):
    """Over 20,000 steps at p = 0.9 the switches (after step 0) are Binomial(19999, 0.1): the
    count lies within +-4.4 standard deviations (false alarm < 1e-5); modes of the draws
    follow (.5, .25, .25) within a chi-square bound (2 dof, 13.8 = 0.1% false alarm)."""
    stream = osaka.osaka_stream(omniglot_small, steps=20_000, p=0.9, seed=1)
    n, q = 19_999, 0.1
    switches = int(stream.switches[1:].sum())
    assert abs(switches - n * q) < 4.4 * np.sqrt(n * q * (1 - q)), switches
    drawn = np.bincount(stream.modes[stream.switches], minlength=3)
    expected = drawn.sum() * np.array(osaka.MODE_PROBABILITIES)
    assert float(np.sum((drawn - expected) ** 2 / expected)) < 13.8, drawn
    same = ~stream.switches[1:]
    assert np.all(stream.classes[1:][same] == stream.classes[:-1][same])
    names = omniglot_small.names
    for t in (0, 5, 17):
        mode = osaka.MODES[stream.modes[t]]
        alphabets = {"pretrain": osaka.PRETRAIN_ALPHABETS, "ood1": osaka.OOD1_ALPHABETS,
                     "ood2": osaka.OOD2_ALPHABETS}[mode]
        assert all(names[c].split("/")[0] in alphabets for c in stream.classes[t])
        x, y = stream.batch(t)
        assert x.shape == (50, 28, 28, 1) and sorted(np.bincount(y)) == [5] * 10
        again = stream.batch(t)
        np.testing.assert_array_equal(x, again[0])
    assert len(stream.classes_by_mode["pretrain"]) == 155
    assert len(stream.classes_by_mode["ood1"]) == 46 and len(stream.classes_by_mode["ood2"]) == 41


def test_osaka_ood2_images_are_inverted_and_turned(omniglot_small):
    stream = osaka.osaka_stream(omniglot_small, steps=400, p=0.5, seed=2)
    t = int(np.flatnonzero(stream.modes == osaka.MODES.index("ood2"))[0])
    x, y = stream.batch(t)
    rng = np.random.default_rng([stream.seed, 7, t])  # the batch's own draw, replayed
    ci = omniglot_small
    raw = np.concatenate([ci.images[ci.offsets[c] + rng.integers(0, ci.counts[c], size=5)]
                          for c in stream.classes[t]]).astype(np.float32) / 255.0
    order = rng.permutation(50)
    np.testing.assert_allclose(x, np.rot90(1.0 - raw, k=1, axes=(1, 2))[order])


def _tiny_classifier():
    return models.mlp(input_dim=4, hidden=(6,), output_dim=3)


def _batch(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(6, 4)).astype("float32"), np.array([0, 1, 2, 0, 1, 2])


def test_masked_fast_step_matches_an_independent_computation():
    tf.keras.utils.set_random_seed(0)
    learner = osaka.ContinualMAML(_tiny_classifier(), inner_lr=0.3, inner_steps=1,
                                  mask="per_weight", mask_init="kaiming")
    masks = [binary_step(m).numpy() for m in learner.masks]
    assert 0 < np.mean(np.concatenate([m.ravel() for m in masks])) < 1
    x, y = _batch(0)
    theta = [tf.constant(v.numpy()) for v in learner.theta]
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss, _ = learner.loss_and_accuracy(theta, x, y)
    expected = [t.numpy() - 0.3 * m * g.numpy()
                for t, m, g in zip(theta, masks, tape.gradient(loss, theta))]
    for got, want in zip(learner.adapt(theta, x, y), expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)
    per_tensor = osaka.ContinualMAML(_tiny_classifier(), mask="per_tensor")
    assert all(m.shape == () for m in per_tensor.masks)


def test_loss_modulation_weights():
    learner = osaka.ContinualMAML(_tiny_classifier(), lam=0.25)
    np.testing.assert_allclose(learner.weight(2.0), 1 - np.exp(-0.5))
    learner.modulation = "loss"
    assert learner.weight(0.3) == 1.0 and learner.weight(0.2) == 0.0


@pytest.mark.parametrize("gamma, expect_updates", [(float("inf"), True), (-float("inf"), False)])
def test_slow_updates_follow_the_boundary_detector(gamma, expect_updates):
    """Plain Continual-MAML: theta moves after every step without a detected boundary and
    never when every step is a boundary."""
    learner = osaka.ContinualMAML(_tiny_classifier(), gamma=gamma, accumulate=False,
                                  meta_lr=1e-2, inner_steps=2)
    before = [v.numpy().copy() for v in learner.theta]
    records = [learner.observe(*_batch(s)) for s in range(4)]
    moved = any(not np.array_equal(b, v.numpy()) for b, v in zip(before, learner.theta))
    assert moved == expect_updates
    assert [r["updated"] for r in records] == [False] + [expect_updates] * 3
    assert [r["boundary"] for r in records] == [False] + [not expect_updates] * 3


def test_accumulate_flushes_its_buffer_past_2nk_images():
    learner = osaka.ContinualMAML(_tiny_classifier(), gamma=float("inf"), ways=1, shots=5,
                                  meta_lr=1e-2, inner_steps=1)
    records = [learner.observe(*_batch(s)) for s in range(4)]  # 6 images a step, limit 10
    assert [r["updated"] for r in records] == [False, False, True, False]


def test_online_accuracy_and_boundary_scores():
    history = [{"accuracy": a, "boundary": b} for a, b in
               [(0.9, False), (0.5, True), (0.7, False), (0.2, True)]]
    accuracy = osaka.online_accuracy(history, np.array([0, 1, 1, 2]))
    assert accuracy["overall"] == pytest.approx((0 + 0.5 + 0.7 + 0.2) / 4)
    assert accuracy["ood1"] == pytest.approx(0.6) and accuracy["pretrain"] == 0.0
    scores = osaka.boundary_scores(history, np.array([True, True, False, False]))
    assert scores["precision"] == 0.5 and scores["recall"] == 1.0


# ---------------------------------------------------------------------- WarpGrad sine
from wtl_tf.continual.warp_sine import SequentialSine, WarpedSine  # noqa: E402


def test_sine_sequence_intervals_and_identity_warps_are_plain_sgd():
    tasks = SequentialSine(subtasks=5, points=12, seed=3)
    x, y = tasks.task(0)
    assert x.shape == (5, 12, 1)
    for i in range(5):  # interval i covers [-5 + 2i, -3 + 2i)
        assert np.all(x[i] >= -5 + 2 * i) and np.all(x[i] <= -3 + 2 * i)
    np.testing.assert_array_equal(tasks.task(0)[1], y)
    assert not np.array_equal(tasks.task(0, "test")[1], y)
    learner = WarpedSine(hidden=6, steps=2, batch=4)
    states, final = learner.sequence(x, y, seed=1)
    assert [s[1] for s in states] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    phi = [tf.constant(t) for t in learner.theta0]  # by hand: x @ w (identity warp) SGD
    for (stored, interval, picks) in states:
        for a, b in zip(stored, phi):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
        xb, yb = x[interval][picks], y[interval][picks]
        with tf.GradientTape() as tape:
            tape.watch(phi)
            w1, b1, w2, b2, w3, b3 = phi
            out = tf.nn.relu(tf.nn.relu(xb @ w1 + b1) @ w2 + b2) @ w3 + b3
            loss = tf.reduce_mean(tf.square(out - yb))
        phi = [p - learner.inner_lr * g for p, g in zip(phi, tape.gradient(loss, phi))]
    for a, b in zip(final, phi):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_warp_meta_gradient_of_the_lookahead_objective_matches_finite_differences():
    tasks = SequentialSine(points=8, seed=4)
    x, y = (tf.constant(a, tf.float64) for a in tasks.task(1))
    learner = WarpedSine(hidden=5, steps=1, batch=4, inner_lr=0.05, dtype="float64")
    phi = [tf.constant(t, tf.float64) for t in learner.theta0]
    rng = np.random.default_rng(0)
    warp = [tf.constant(np.eye(5) + 0.1 * rng.normal(size=(5, 5))) for _ in range(2)]
    picks = tf.constant([0, 2, 5, 7])
    with tf.GradientTape() as tape:
        tape.watch(warp)
        objective = learner.lookahead_objective(phi, warp, x, y, 2, picks)
    grads = tape.gradient(objective, warp)
    for _ in range(2):
        direction = [rng.normal(size=(5, 5)) for _ in range(2)]
        value = lambda eps: float(learner.lookahead_objective(  # noqa: E731
            phi, [w + eps * d for w, d in zip(warp, direction)], x, y, 2, picks))
        numeric = (value(1e-6) - value(-1e-6)) / 2e-6
        analytic = sum(float(np.sum(g.numpy() * d)) for g, d in zip(grads, direction))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_the_warped_sine_learns_in_one_traced_step_as_meta_step_does():
    """fit over stream_dataset (a traced train_step, the SGD batches drawn on the host) gives
    meta_step's warps; a dataset without the batches is refused in one line."""
    import keras

    from wtl_tf.errors import ConfigError

    sine = SequentialSine(subtasks=2, points=8, seed=5)
    stepped, fitted = (WarpedSine(hidden=5, steps=2, batch=4, meta_lr=1e-2) for _ in range(2))
    for step in range(2):
        tasks = [sine.task(step * 2 + j) for j in range(2)]
        stepped.meta_step(tasks, seed=step)
    fitted.compile()
    assert not fitted.run_eagerly
    fitted.fit(fitted.stream_dataset(sine, 2, 2), verbose=0, shuffle=False)
    assert fitted.position == 2
    for a, b in zip(stepped.warp, fitted.warp):
        assert not np.allclose(a.numpy(), np.eye(5))
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="stream_dataset"):
        keras.Model.fit(fitted, sine.dataset(2, 1), verbose=0)
