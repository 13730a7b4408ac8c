"""WarpGrad: warp layers, the trajectory buffer, replay, the Leap update and Warp-MAML."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import random_classification_episodes, variable_values
from wtl_tf import MetaLearner, models, rules
from wtl_tf.inner_loop import stream_seed
from wtl_tf.models import WarpLayer, warped_conv4
from wtl_tf.runners import episode
from wtl_tf.warpgrad import WarpLeap

IMAGE = (8, 8, 1)
ALPHA = 0.3


def tiny(warp=True, dtype=None, **warp_options):
    return warped_conv4(IMAGE, 3, channels=3, blocks=2, warp=warp, dtype=dtype, **warp_options)


def tree_of(params, variables):
    """The entries of a parameter tree for `variables`."""
    return {v.path: params.theta[v.path] for v in variables}


def randomize_warp(learner, scale=0.2, seed=0):
    rng = np.random.default_rng(seed)
    for v in learner.warp_variables:
        v.assign(v.numpy() + scale * rng.normal(size=v.shape))


def episodes(tasks=2, dtype="float32", seed=0):
    batch = random_classification_episodes(tasks, 3, 4, 2, IMAGE, seed=seed, dtype=dtype)
    return {k: tf.constant(v) for k, v in batch.items()}


def manual_sgd_trajectory(model, x, y, steps, alpha=ALPHA):
    """Plain SGD on a task network, written without the library: [phi_0, ..., phi_K]."""
    weights = [tf.Variable(v) for v in model.trainable_variables]
    path = [[w.numpy() for w in weights]]
    for _ in range(steps):
        with tf.GradientTape() as tape:
            outputs, _ = model.stateless_call(weights, [v.value for v in
                                                        model.non_trainable_variables],
                                              x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, outputs))
        for w, g in zip(weights, tape.gradient(loss, weights)):
            w.assign_sub(alpha * g)
        path.append([w.numpy() for w in weights])
    return path


def test_warp_layers_start_as_identity_and_never_adapt():
    warped, plain = tiny(), tiny(warp=False)
    by_path = {v.path: v for v in warped.weights}
    for v in plain.weights:
        v.assign(by_path[v.path])
    x = tf.random.normal((5, *IMAGE))
    np.testing.assert_allclose(warped(x, training=True), plain(x, training=True), atol=1e-5)

    learner = MetaLearner(warped, rules.chain(rules.BinaryMask(), rules.Scale(ALPHA)))
    warp_paths = {v.path for v in learner.warp_variables}
    assert warp_paths == {f"warp{i}/conv1/{w}" for i in (1, 2) for w in ("kernel", "bias")}
    assert not warp_paths & set(learner.update_rule.param_paths)  # no mask on warp weights
    assert not warp_paths & {v.path for v in learner.initialization_variables}
    assert learner.meta_variables[:4] == learner.warp_variables  # warp: meta-optimiser
    for mode in ("head", "body"):
        assert not warp_paths & set(MetaLearner(warped, rules.chain(rules.Scale(0.1)),
                                                adapt=mode).update_rule.param_paths)


def test_warp_layer_variants_compute_what_they_describe():
    """depth 2, ReLU, residual, BatchNorm: y = x + conv2(relu(bn(conv1(x)))), checked
    against the same computation written with plain TensorFlow ops."""
    layer = WarpLayer(depth=2, activation="relu", residual=True, batchnorm=True,
                      kernel_initializer="glorot_uniform")
    x = tf.random.normal((4, 5, 5, 3))
    y = layer(x, training=True)
    assert len(layer.trainable_weights) == 2 * 2 + 2  # two convs, one BatchNorm between
    (k1, b1), (k2, b2) = [(c.kernel, c.bias) for c in layer.convs]
    h = tf.nn.conv2d(x, k1, 1, "SAME") + b1
    mean, variance = tf.nn.moments(h, [0, 1, 2])
    norm = layer.norms[0]
    h = (h - mean) / tf.sqrt(variance + norm.epsilon) * norm.gamma + norm.beta
    expected = x + tf.nn.conv2d(tf.nn.relu(h), k2, 1, "SAME") + b2
    np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    plain = WarpLayer(depth=2, kernel_initializer="glorot_uniform")  # linear: no BN, no ReLU
    z = plain(x)
    (k1, b1), (k2, b2) = [(c.kernel, c.bias) for c in plain.convs]
    np.testing.assert_allclose(z.numpy(), (tf.nn.conv2d(tf.nn.conv2d(x, k1, 1, "SAME") + b1, k2, 1,
                                                        "SAME") + b2).numpy(), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(WarpLayer()(x), x, atol=1e-6)  # default: linear identity


def test_buffer_holds_the_pre_step_states_and_identity_warp_is_plain_sgd():
    """K states for K steps, phi_0 = theta first, the final state excluded; with identity warp
    layers and no warp update the trajectory is plain SGD on the unwarped network."""
    steps = 3
    learner = WarpLeap(tiny(), ALPHA, inner_steps=steps, task_batch=None, warp_update=False)
    plain = tiny(warp=False)
    theta = {v.path: v.numpy() for v in learner.task_model.trainable_variables}
    for v in plain.trainable_variables:
        v.assign(theta[v.path])
    batch = episodes(1)
    states, final, _, _, _ = learner.trajectory(episode(batch, 0), learner.read_params(),
                                                stream_seed(learner.seed, 1, 0))
    expected = manual_sgd_trajectory(plain, batch["support_x"][0], batch["support_y"][0], steps)
    paths = [v.path for v in learner.adapted_variables]
    assert [v.path for v in plain.trainable_variables] == paths
    assert set(states) == set(final) == set(paths)
    for j, path in enumerate(paths):
        assert states[path].shape[0] == steps
        for k in range(steps):
            np.testing.assert_allclose(states[path][k], expected[k][j], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(final[path], expected[steps][j], rtol=1e-4, atol=1e-5)
    first = paths[0]
    assert not np.allclose(states[first][-1], final[first])  # the final state is not stored


@pytest.mark.parametrize("leap_segments,segments", [("stored", 2), ("all", 3)])
def test_leap_update_equals_the_formula_on_a_three_step_trajectory(leap_segments, segments):
    """theta <- theta - beta * sum_tasks sum_k (phi_k - phi_{k+1}) / ||.|| / tasks, the SGD
    trajectory computed by hand; the official code sums the K-1 segments between the stored
    states phi_0..phi_{K-1} (the default), `all` the K steps."""
    beta = 0.05
    learner = WarpLeap(tiny(warp=False), ALPHA, inner_steps=3, task_batch=None,
                       leap_segments=leap_segments)
    learner.compile(optimizer=keras.optimizers.SGD(beta))
    batch = episodes(2, seed=3)
    theta = variable_values(learner.initialization_variables)
    direction = [np.zeros_like(t) for t in theta]
    for task in range(2):
        path = manual_sgd_trajectory(learner.task_model, batch["support_x"][task],
                                     batch["support_y"][task], 3)
        for k in range(segments):
            step = [a - b for a, b in zip(path[k], path[k + 1])]
            norm = np.sqrt(sum(float(np.sum(s ** 2)) for s in step))
            direction = [d + s / norm for d, s in zip(direction, step)]
    learner.train_step(batch)
    for before, d, v in zip(theta, direction, learner.initialization_variables):
        np.testing.assert_allclose(v.numpy(), before - beta * d / 2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("replay", ["lookahead", "approximate"])
def test_warp_meta_gradient_matches_finite_differences(replay):
    learner = WarpLeap(tiny(dtype="float64"), ALPHA, inner_steps=2, task_batch=5, replay=replay)
    randomize_warp(learner)
    batch = episodes(1, dtype="float64", seed=4)
    task, params = episode(batch, 0), learner.read_params()
    phi, warp = tree_of(params, learner.adapted_variables), tree_of(params, learner.warp_variables)
    seed = tf.constant([3, 4], tf.int64)
    _, grads = learner.warp_gradient(phi, warp, task, params, seed)
    rng = np.random.default_rng(0)
    for _ in range(3):
        direction = {p: rng.normal(size=w.shape) for p, w in warp.items()}
        loss = lambda eps: float(learner.replay_loss(  # noqa: E731
            phi, {p: w + eps * direction[p] for p, w in warp.items()}, task, params, seed))
        eps = 1e-6
        numeric = (loss(eps) - loss(-eps)) / (2 * eps)
        analytic = sum(float(np.sum(grads[p].numpy() * d)) for p, d in direction.items())
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-10)


def test_stored_states_receive_no_gradient():
    learner = WarpLeap(tiny(), ALPHA, inner_steps=1, task_batch=None)
    params = learner.read_params()
    phi = {p: tf.identity(t) for p, t in tree_of(params, learner.adapted_variables).items()}
    warp = {p: tf.identity(t) for p, t in tree_of(params, learner.warp_variables).items()}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([phi, warp])
        loss = learner.replay_loss(phi, warp, episode(episodes(1), 0), params,
                                   tf.constant([0, 1], tf.int64))
    assert all(g is None for g in tape.gradient(loss, phi).values())
    assert all(g is not None for g in tape.gradient(loss, warp).values())


def test_batched_replay_applies_the_mean_warp_gradient_of_every_stored_state():
    """replay_batch = all states: one SGD step with the mean of the per-state gradients, each
    computed independently from the stored trajectory (full-batch, so no sampling)."""
    steps, warp_lr = 2, 0.5
    learner = WarpLeap(tiny(), ALPHA, inner_steps=steps, task_batch=None, warp_lr=warp_lr,
                       replay_batch=2 * steps, leap_update=False)
    learner.compile(optimizer=keras.optimizers.SGD(0.1))
    randomize_warp(learner)
    batch, params = episodes(2, seed=7), learner.read_params()
    warp = tree_of(params, learner.warp_variables)
    grads = []
    for index in range(2):
        task = episode(batch, index)
        states, *_ = learner.trajectory(task, params, stream_seed(learner.seed, 1, index))
        for k in range(steps):
            grads.append(learner.warp_gradient({p: s[k] for p, s in states.items()}, warp, task,
                                               params, tf.constant([0, 0], tf.int64))[1])
    theta = variable_values(learner.initialization_variables)
    learner.train_step(batch)
    for v in learner.warp_variables:
        expected = warp[v.path].numpy() - warp_lr * np.mean([g[v.path].numpy() for g in grads],
                                                            axis=0)
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-4, atol=1e-6)
    for before, v in zip(theta, learner.initialization_variables):  # Leap switched off
        np.testing.assert_array_equal(before, v.numpy())


def test_buffer_bytes_and_the_reference_protocol_size():
    learner = WarpLeap(tiny(), ALPHA, inner_steps=3, task_batch=None)
    batch = episodes(2)
    states, *_ = learner.trajectory(episode(batch, 0), learner.read_params(),
                                    stream_seed(learner.seed, 1, 0))
    assert learner.buffer_bytes(2) == 2 * sum(s.numpy().nbytes for s in states.values())
    reference = WarpLeap(warped_conv4((28, 28, 1), 20), 0.1, inner_steps=100)
    # 20 tasks x 100 steps of the 64-channel warped Conv4: under 1 GiB, kept on the host.
    assert 0.5 * 2**30 < reference.buffer_bytes(20) < 2**30


def test_fit_traces_once_and_reduces_the_training_loss():
    learner = WarpLeap(tiny(), 0.5, inner_steps=4, task_batch=6, inner_steps_eval=4,
                       replay_batch=2)
    from wtl_tf import ConfigError

    with pytest.raises(ConfigError, match="takes no meta_optimizer"):
        learner.compile(optimizer="sgd", meta_optimizer="adam")
    learner.compile(optimizer=keras.optimizers.SGD(0.1))
    data = tf.data.Dataset.from_tensors(episodes(2, seed=1)).repeat()
    history = learner.fit(data, steps_per_epoch=3, epochs=2, validation_data=data.take(1),
                          verbose=0)
    assert learner.trace_counter.counts == {"train_step": 1, "test_step": 1}
    logs = history.history
    assert all(np.isfinite(logs["loss"])) and "val_accuracy" in logs
    assert logs["final_support_loss"][-1] < logs["support_loss"][-1]  # the task learner learns


def test_warp_maml_meta_learns_warp_weights_with_masks():
    """Online Warp-MAML: warp layers inside the MAML learner; warp weights get meta-gradients
    (second order through the inner loop) and their own optimiser, masks cover task weights."""
    net = tiny(dtype="float64")
    learner = MetaLearner(net, rules.chain(rules.BinaryMask(), rules.Scale(ALPHA)),
                          inner_steps=2)
    learner.compile(optimizer=keras.optimizers.SGD(0.01), meta_optimizer=keras.optimizers.SGD(0.1))
    batch = episodes(2, dtype="float64", seed=2)
    grads, _ = learner.meta_gradients(batch)
    warp_grads = [grads[v.path] for v in learner.warp_variables]
    assert all(np.any(g.numpy() != 0) for g in warp_grads)
    from test_meta_gradients import check_against_fd

    check_against_fd(learner, learner.warp_variables, warp_grads, batch, directions=2, eps=1e-7)
    warp = variable_values(learner.warp_variables)
    learner.train_step(batch)
    for before, g, v in zip(warp, warp_grads, learner.warp_variables):
        np.testing.assert_allclose(v.numpy(), before - 0.1 * g.numpy(), rtol=1e-6, atol=1e-9)


def test_warped_export_runs_the_warped_inner_loop(tmp_path):
    """The SavedModel of a Warp-Leap learner holds the warp weights and adapts through them:
    its predictions equal the library's, and change when the warp weights change."""
    from wtl_tf.export import export_learner

    learner = WarpLeap(tiny(), ALPHA, inner_steps=2, inner_steps_eval=3, task_batch=5)
    randomize_warp(learner)
    preprocessing = {"image_size": IMAGE[0], "channels": 1, "normalization": "unit"}
    export_learner(learner, str(tmp_path / "export"), preprocessing, {"algorithm": "warp_leap"})
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    rng = np.random.default_rng(0)
    support = rng.integers(0, 256, size=(12, *IMAGE), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 4).astype(np.int32)
    query = rng.integers(0, 256, size=(6, *IMAGE), dtype=np.uint8)
    exported = loaded.adapt_and_predict(support_images=support, support_labels=labels,
                                        query_images=query)["logits"].numpy()
    xs, xq = tf.cast(support, tf.float32) / 255.0, tf.cast(query, tf.float32) / 255.0
    adaptation = learner.adapt(xs, labels, steps=3, first_order=True,
                               task_seed=learner.episode_seed(xs), evaluation=True)
    library = learner.predict_adapted(adaptation, xq).numpy()
    np.testing.assert_allclose(exported, library, rtol=1e-4, atol=1e-4)
    saved = {v.name.split(":")[0] for v in loaded.tracked_variables}
    assert {"warp1/conv1/kernel", "warp2/conv1/kernel"} <= saved, saved
    for v in learner.warp_variables:
        v.assign(v.numpy() * 0.5)
    changed = learner.predict_adapted(learner.adapt(xs, labels, steps=3, first_order=True,
                                                    task_seed=learner.episode_seed(xs),
                                                    evaluation=True), xq).numpy()
    assert not np.allclose(changed, exported, atol=1e-3)  # the warp layers matter


def test_random_warp_init_is_the_pytorch_conv_default_and_changes_the_function():
    """--warp_init=random (the official code's): kernels U(+-1/sqrt(fan_in)), seeded."""
    keras.utils.set_random_seed(0)
    random = models.warped_conv4((28, 28, 1), 5, channels=8,
                                 warp_options={"kernel_initializer": "random"})
    kernels = [v.numpy() for v in random.weights if "warp" in v.path and "kernel" in v.path]
    bound = 1.0 / np.sqrt(3 * 3 * 8)
    assert len(kernels) == 4
    for k in kernels:
        assert np.abs(k).max() <= bound and np.abs(k).max() > 0.8 * bound
        assert abs(float(np.std(k)) - bound / np.sqrt(3)) < 0.15 * bound  # uniform's std
    keras.utils.set_random_seed(0)
    again = models.warped_conv4((28, 28, 1), 5, channels=8,
                                warp_options={"kernel_initializer": "random"})
    for a, b in zip(random.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_warp_leap_evaluation_honours_notransductive():
    """--notransductive reaches Warp-Leap's evaluation: the adapted query is normalised with
    the support set's BatchNorm statistics (recomputed here by hand), not its own."""
    batch = episodes(1, seed=4)
    losses = {}
    for transductive in (True, False):
        keras.utils.set_random_seed(0)
        learner = WarpLeap(tiny(), ALPHA, inner_steps=2, task_batch=None,
                           transductive=transductive)
        losses[transductive] = float(learner.evaluate_tasks(batch)["loss"].numpy()[0])
        adaptation = learner.adapt(batch["support_x"][0], batch["support_y"][0], steps=2,
                                   evaluation=True)
        inner = learner.inner
        _, support_state = inner.forward(adaptation.params, adaptation.state,
                                         batch["support_x"][0], True)
        by_hand = inner.forward(adaptation.params, support_state if not transductive
                                else adaptation.state, batch["query_x"][0], transductive)[0]
        np.testing.assert_allclose(inner.predict_adapted(adaptation, batch["query_x"][0]),
                                   by_hand, rtol=1e-5, atol=1e-6)
    assert losses[True] != losses[False]


def test_online_warp_maml_objective_and_update_match_an_independent_computation():
    """--warp_objective=online: the warp gradient is d/dw of the mean, over tasks and the
    K stored states phi_k (constants), of L(query; phi_k - alpha grad L(support; phi_k, w),
    w), computed here with plain tapes over stateless calls; theta's update is MAML's
    meta-gradient (the same as without the online objective)."""
    from wtl_tf.warpgrad import OnlineWarpUpdate

    steps, beta, beta_w = 2, 0.05, 0.1
    net = tiny(dtype="float64")
    online = MetaLearner(net, rules.chain(rules.Scale(ALPHA)), inner_steps=steps,
                         outer=OnlineWarpUpdate(ALPHA))
    online.compile(optimizer=keras.optimizers.SGD(beta),
                   meta_optimizer=keras.optimizers.SGD(beta_w))
    randomize_warp(online)
    batch = episodes(2, dtype="float64", seed=5)
    trainable = list(net.trainable_variables)
    is_warp = ["warp" in v.path for v in trainable]
    state = [v.value for v in net.non_trainable_variables]
    values = [tf.constant(v.numpy()) for v in trainable]

    def loss(weights, x, y):
        outputs, _ = net.stateless_call(weights, state, x, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, outputs))

    def merge(task_weights, warp):
        t, w = iter(task_weights), iter(warp)
        return [next(w) if flag else next(t) for flag in is_warp]

    warp = [v for v, flag in zip(values, is_warp) if flag]
    objective, count = 0.0, 0
    with tf.GradientTape() as tape:
        tape.watch(warp)
        for task in range(2):
            x, y = batch["support_x"][task], batch["support_y"][task]
            qx, qy = batch["query_x"][task], batch["query_y"][task]
            phi = [v for v, flag in zip(values, is_warp) if not flag]
            for _ in range(steps):
                const = [tf.stop_gradient(p) for p in phi]
                with tf.GradientTape() as inner:
                    inner.watch(const)
                    support = loss(merge(const, warp), x, y)
                ahead = [p - ALPHA * g for p, g in zip(const, inner.gradient(support, const))]
                objective += loss(merge(ahead, warp), qx, qy)
                count += 1
                with tf.GradientTape() as sgd:  # the trajectory itself: plain SGD
                    sgd.watch(const)
                    step_loss = loss(merge(const, [tf.stop_gradient(w) for w in warp]), x, y)
                phi = [p - ALPHA * g for p, g in zip(const, sgd.gradient(step_loss, const))]
        objective = objective / count
    expected_warp_grads = tape.gradient(objective, warp)

    params = online.read_params()
    got_objective, got = online.outer.warp_gradients(online, batch, params,
                                                     tf.constant(1, tf.int64))
    np.testing.assert_allclose(float(got_objective), float(objective), rtol=1e-6)  # a float32 log
    for v, g in zip([v for v, flag in zip(trainable, is_warp) if flag], expected_warp_grads):
        np.testing.assert_allclose(got[v.path].numpy(), g.numpy(), rtol=1e-7, atol=1e-9)

    maml_grads, _ = online.meta_gradients(batch)
    before = {v.path: v.numpy() for v in trainable}
    online.train_step(batch)
    for v, g in zip([v for v, f in zip(trainable, is_warp) if f], expected_warp_grads):
        np.testing.assert_allclose(v.numpy(), before[v.path] - beta_w * g.numpy(), rtol=1e-7,
                                   atol=1e-9)
    for v in online.initialization_variables:
        np.testing.assert_allclose(v.numpy(), before[v.path] - beta * maml_grads[v.path].numpy(),
                                   rtol=1e-7, atol=1e-9)


def test_step_progress_counts_trajectories_and_replays_to_the_whole_step():
    learner = WarpLeap(tiny(), ALPHA, inner_steps=3, task_batch=None)
    assert learner.step_progress() is None  # no step yet
    learner.compile(optimizer="sgd")
    learner.train_step(episodes(2))
    # 2 tasks x 3 inner steps (1 each) + 6 look-ahead replays (3 each): all of it done
    assert float(learner.outer.work_total.numpy()) == 2 * 3 * (1 + 3)
    assert learner.step_progress() == 1.0
