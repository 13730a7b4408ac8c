"""MetaLearner behaviour: which tensors adapt, compilation, optimisers, models, BatchNorm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import (gradient_list, gradient_lists, random_classification_episodes,
                     variable_values, weight_list)
from wtl_tf import ConfigError, MetaLearner, models, rules
from wtl_tf.models import BatchNorm

SMALL_IMAGE = (8, 8, 1)


def tiny_conv(dtype=None, ways=3):
    return models.conv4(SMALL_IMAGE, ways, channels=4, blocks=2, dtype=dtype)


def adapted_params(learner, episodes, steps=2):
    adaptation = learner.adapt(episodes["support_x"][0], episodes["support_y"][0], steps=steps)
    return [p.numpy() for p in weight_list(learner.task_model, adaptation.params)]


@pytest.mark.parametrize("adapt,expect_changed", [
    ("head", lambda path: path.startswith("head/")),
    ("body", lambda path: not path.startswith("head/")),
    ("all", lambda path: True),
])
def test_anil_boil_adapt_exactly_the_intended_tensors(adapt, expect_changed):
    model = tiny_conv()
    episodes = random_classification_episodes(1, 3, 2, 2, SMALL_IMAGE)
    learner = MetaLearner(model, rules.chain(rules.Scale(0.5)), adapt=adapt)
    theta = variable_values(model.trainable_variables)
    for v, before, after in zip(model.trainable_variables, theta, adapted_params(learner, episodes)):
        if expect_changed(v.path):
            assert not np.array_equal(before, after), f"{v.path} should adapt under {adapt}"
        else:
            np.testing.assert_array_equal(before, after, err_msg=f"{v.path} must stay fixed")


def test_adapt_batchnorm_false_keeps_normalisation_fixed():
    model = tiny_conv()
    episodes = random_classification_episodes(1, 3, 2, 2, SMALL_IMAGE)
    learner = MetaLearner(model, rules.chain(rules.BinaryMask(), rules.Scale(0.5)),
                          adapt_batchnorm=False)
    assert not any("norm" in p for p in learner.update_rule.param_paths)
    theta = variable_values(model.trainable_variables)
    for v, before, after in zip(model.trainable_variables, theta, adapted_params(learner, episodes)):
        if "norm" in v.path:
            np.testing.assert_array_equal(before, after)


def test_regex_selection_and_empty_selection_error():
    learner = MetaLearner(tiny_conv(), rules.chain(rules.Scale(0.1)), adapt="regex:conv2/")
    assert learner.update_rule.param_paths == ["conv2/kernel", "conv2/bias"]
    with pytest.raises(ConfigError, match="selects no tensor"):
        MetaLearner(tiny_conv(), rules.chain(rules.Scale(0.1)), adapt="regex:nothing")
    with pytest.raises(ConfigError, match="unknown adapt mode"):
        MetaLearner(tiny_conv(), rules.chain(rules.Scale(0.1)), adapt="middle")


def test_conv4_parameter_counts_match_the_reference_architecture():
    # 4 x (3x3 conv + bias, BN gamma/beta) + linear head.
    net = models.conv4((28, 28, 1), 5)
    trainable = sum(int(np.prod(v.shape)) for v in net.trainable_variables)
    assert trainable == (9 * 1 * 64 + 64) + 3 * (9 * 64 * 64 + 64) + 4 * 128 + (64 * 5 + 5)
    assert trainable == 112_261 and net.count_params() == trainable + 4 * 128  # + BN statistics
    net = models.conv4((84, 84, 3), 5)
    assert sum(int(np.prod(v.shape)) for v in net.trainable_variables) == 121_093
    assert net.get_layer("head").kernel.shape == (5 * 5 * 64, 5)
    assert sum(int(np.prod(v.shape)) for v in models.mlp().trainable_variables) == 1761


def test_meta_step_is_traced_once_for_the_whole_run():
    learner = MetaLearner(tiny_conv(), rules.chain(rules.BinaryMask(), rules.Scale(0.4)),
                          inner_steps=1, inner_steps_eval=2)
    learner.compile(optimizer=keras.optimizers.Adam(1e-3), meta_optimizer=keras.optimizers.Adam(1e-3))
    batches = [random_classification_episodes(4, 3, 1, 2, SMALL_IMAGE, seed=s) for s in range(3)]
    data = tf.data.Dataset.from_tensor_slices(
        {k: np.stack([b[k] for b in batches]) for k in batches[0]}).repeat()
    learner.fit(data, steps_per_epoch=3, epochs=3, validation_data=data.take(2), verbose=0)
    assert learner.optimizer.iterations.numpy() == 9
    assert learner.trace_counter.counts == {"train_step": 1, "test_step": 1}


def _graph_size(learner, batch):
    """Ops in the traced train_step and every function it holds (loop bodies included)."""
    graph = tf.function(learner.train_step).get_concrete_function(batch).graph
    return len(graph.get_operations()) + sum(len(f.graph.get_operations())
                                             for f in graph._functions.values())


def test_long_inner_loops_trace_in_a_time_flat_in_their_length():
    """By default loops longer than UNROLL_INNER_STEPS run in a tf.while_loop: the traced
    graph (and so the first trace) does not grow with the loop, while a short loop is
    unrolled; settings resolve to the same default, recomputed steps stay unrolled."""
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.inner_options import UNROLL_INNER_STEPS

    batch = {k: tf.constant(v) for k, v in
             random_classification_episodes(2, 3, 1, 2, SMALL_IMAGE).items()}

    def size(steps):
        learner = MetaLearner(tiny_conv(), rules.chain(rules.BinaryMask(), rules.Scale(0.4)),
                              inner_steps=steps, first_order=True)
        learner.compile(optimizer=keras.optimizers.SGD(1e-3),
                        meta_optimizer=keras.optimizers.SGD(1e-3))
        return _graph_size(learner, batch)

    long_loop = UNROLL_INNER_STEPS + 2
    assert size(long_loop) == size(2 * long_loop)
    assert size(2) < size(3)  # unrolled
    resolved = ExperimentConfig(algorithm="sparse_maml", inner_steps=35).resolved()
    assert resolved.unroll_inner_steps == UNROLL_INNER_STEPS
    recomputed = ExperimentConfig(algorithm="maml", order="second", inner_steps=35,
                                  recompute_inner_steps=True).resolved()
    assert recomputed.unroll_inner_steps == 35


def _stateful_ops_in_loop_bodies(function, *args):
    """(the while loops anywhere in the step, the stateful ops inside their bodies and in
    what those bodies call). The step's function library holds every traced function: loop
    bodies, and nested tf.functions (the shared evaluation function), whose own reads of
    the variables, outside any loop, are what the design wants."""
    graph = function.get_concrete_function(*args).graph
    library = graph._functions
    loops, bodies = [], []
    for ops in [graph.get_operations()] + [f.graph.get_operations() for f in library.values()]:
        for op in ops:
            if op.type.endswith("While"):
                loops.append(op.type)
                bodies.append(op.get_attr("body").name)
    found, seen = [], set()
    while bodies:
        name = bodies.pop()
        if name in seen:
            continue
        seen.add(name)
        for op in library[name].graph.get_operations():
            if op._is_stateful:
                found.append(f"{name}:{op.type}")
            for attr in ("f", "body", "cond", "then_branch", "else_branch"):
                try:
                    bodies.append(op.get_attr(attr).name)
                except ValueError:
                    pass
    return loops, found


@pytest.mark.parametrize("rule", [
    lambda: rules.chain(rules.BinaryMask(), rules.Scale(0.4)),
    lambda: rules.chain(rules.MaskHypernetwork(8), rules.Scale(0.4)),
])
def test_meta_step_loops_are_pure(rule):
    """Variables are read once per meta-step, outside the loops over tasks and inner steps, so
    every loop body is free of stateful ops (a StatelessWhile, no control edges between its
    iterations). A stateful task loop failed on CI with 'nodes in a cycle'."""
    learner = MetaLearner(tiny_conv(), rule(), inner_steps=2, inner_steps_eval=3,
                          unroll_inner_steps=1)  # longer loops run in a tf.while_loop too
    learner.compile(optimizer=keras.optimizers.Adam(1e-3), meta_optimizer=keras.optimizers.Adam(1e-3))
    batch = {k: tf.constant(v) for k, v in
             random_classification_episodes(2, 3, 1, 2, SMALL_IMAGE).items()}
    for step in (learner.train_step, learner.test_step):
        loops, stateful = _stateful_ops_in_loop_bodies(tf.function(step), batch)
        assert loops and not stateful, (step.__name__, loops, stateful)


def test_separate_outer_optimisers_with_their_own_rates_and_clipping():
    model = models.mlp(hidden=(4,))
    learner = MetaLearner(model, rules.chain(rules.LearnedRates(), rules.Scale(1.0)), loss="mse")
    learner.compile(optimizer=keras.optimizers.SGD(0.1, clipvalue=1e-3),
                    meta_optimizer=keras.optimizers.SGD(0.01))
    rng = np.random.default_rng(0)
    batch = {k: tf.constant(rng.normal(size=(2, 5, 1)).astype("float32"))
             for k in ("support_x", "support_y", "query_x", "query_y")}
    theta = variable_values(learner.initialization_variables)
    meta = variable_values(learner.meta_variables)
    theta_grads, meta_grads = gradient_lists(learner, learner.meta_gradients(batch)[0])
    learner.train_step(batch)
    for before, g, v in zip(theta, theta_grads, learner.initialization_variables):
        np.testing.assert_allclose(v.numpy(), before - 0.1 * np.clip(g.numpy(), -1e-3, 1e-3),
                                   rtol=1e-5, atol=1e-8)
    for before, g, v in zip(meta, meta_grads, learner.meta_variables):
        np.testing.assert_allclose(v.numpy(), before - 0.01 * g.numpy(), rtol=1e-5, atol=1e-8)
    # Each optimiser holds state for its own variables only (Adam: two slots per variable).
    theta_adam, meta_adam = keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3)
    other = MetaLearner(models.mlp(hidden=(4,)), rules.chain(rules.LearnedRates(),
                                                             rules.Scale(1.0)), loss="mse")
    other.compile(optimizer=theta_adam, meta_optimizer=meta_adam)
    other.train_step(batch)
    for optimizer, owned in ((theta_adam, other.initialization_variables),
                             (meta_adam, other.meta_variables)):
        slots = sorted(tuple(v.shape) for v in optimizer.variables if len(v.shape) > 0)
        assert slots == sorted(2 * [tuple(v.shape) for v in owned])
        assert int(optimizer.iterations.numpy()) == 1
    with pytest.raises(ConfigError, match="no meta_optimizer"):
        MetaLearner(models.mlp(hidden=(4,)), rules.chain(rules.LearnedRates()),
                    loss="mse").compile(optimizer="sgd", meta_optimizer=None)


def _conv_bn_net(norm_layer, dtype):
    inputs = keras.Input(SMALL_IMAGE, dtype=dtype)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv", dtype=dtype)(inputs)
    x = norm_layer(x)
    x = keras.layers.ReLU(dtype=dtype)(x)
    x = keras.layers.MaxPool2D(2, dtype=dtype)(x)
    x = keras.layers.Flatten(dtype=dtype)(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head", dtype=dtype)(x))


def test_fused_batchnorm_second_order_matches_exact_float64_path():
    """float32 uses TensorFlow's fused kernel (and its second-order gradient); float64 uses
    the textbook formula, which the finite-difference test below validates."""
    exact = _conv_bn_net(BatchNorm(name="bn", dtype="float64"), "float64")
    fused = _conv_bn_net(BatchNorm(name="bn"), "float32")
    for v32, v64 in zip(fused.trainable_variables, exact.trainable_variables):
        v32.assign(v64.numpy().astype("float32"))
    episodes = random_classification_episodes(2, 3, 2, 3, SMALL_IMAGE, seed=5, dtype="float64")
    episodes32 = {k: v.astype("float32") if v.dtype == np.float64 else v for k, v in episodes.items()}
    learner64 = MetaLearner(exact, rules.chain(rules.Scale(0.5)), inner_steps=2)
    learner32 = MetaLearner(fused, rules.chain(rules.Scale(0.5)), inner_steps=2)
    g64 = gradient_list(learner64, learner64.meta_gradients(episodes)[0])
    g32 = gradient_list(learner32, learner32.meta_gradients(episodes32)[0])
    for a, b in zip(g32, g64, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5 * max(1.0, np.abs(b).max()))


def test_keras_batchnorm_second_order_is_inexact_and_the_learner_warns():
    """keras.layers.BatchNormalization computes the variance with tf.nn.moments, which stops
    the gradient through the mean: first-order exact, second-order not. The same network
    with wtl_tf's BatchNorm (same weights) matches central differences along the same
    direction, so the mismatch is Keras' layer, not the check."""
    from test_meta_gradients import directional_fd

    episodes = random_classification_episodes(2, 3, 2, 2, SMALL_IMAGE, seed=9, dtype="float64")
    direction = None
    errors = {}
    for name, norm in (("keras", keras.layers.BatchNormalization(momentum=0.0, name="bn",
                                                                 dtype="float64")),
                       ("wtl_tf", BatchNorm(name="bn", dtype="float64"))):
        keras.utils.set_random_seed(3)
        net = _conv_bn_net(norm, "float64")
        if name == "keras":
            with pytest.warns(UserWarning, match="wtl_tf.models.BatchNorm"):
                learner = MetaLearner(net, rules.chain(rules.Scale(0.5)), inner_steps=1)
        else:
            learner = MetaLearner(net, rules.chain(rules.Scale(0.5)), inner_steps=1)
        variables = learner.initialization_variables
        if direction is None:
            rng = np.random.default_rng(7)
            direction = [rng.normal(size=v.shape) for v in variables]
        grads, _ = gradient_lists(learner, learner.meta_gradients(episodes)[0])
        analytic = sum(float(np.sum(np.asarray(g) * d)) for g, d in zip(grads, direction))
        numeric = directional_fd(learner, variables, direction, episodes, 1e-7, False)
        errors[name] = abs(analytic - numeric) / abs(numeric)
    assert errors["wtl_tf"] < 1e-5, errors
    assert errors["keras"] > 100 * errors["wtl_tf"] and errors["keras"] > 1e-4, errors


def test_batchnorm_stores_support_statistics_for_non_transductive_queries():
    layer = BatchNorm()
    x = tf.random.normal((6, 4, 4, 3), mean=2.0, stddev=3.0)
    layer(x, training=True)
    mean, var = tf.nn.moments(x, axes=[0, 1, 2])
    np.testing.assert_allclose(layer.mean.numpy(), mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(layer.variance.numpy(), var.numpy(), rtol=1e-4)
    y = layer(x, training=False)  # normalised with the stored (support) statistics
    np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]).numpy(), 0.0, atol=1e-4)


def test_conv_second_order_meta_gradient_matches_fd_float64():
    from test_meta_gradients import check_against_fd

    model = tiny_conv(dtype="float64")
    episodes = random_classification_episodes(2, 3, 2, 2, SMALL_IMAGE, seed=9, dtype="float64")
    learner = MetaLearner(model, rules.chain(rules.Scale(0.5)), inner_steps=2, inner_steps_eval=2)
    grads, _ = gradient_lists(learner, learner.meta_gradients(episodes)[0])
    check_against_fd(learner, learner.initialization_variables, grads, episodes, directions=2,
                     eps=1e-7)


def test_non_transductive_queries_are_normalised_with_support_statistics_only():
    model = tiny_conv()
    episodes = random_classification_episodes(1, 3, 2, 4, SMALL_IMAGE, seed=2)
    xs, ys, xq = episodes["support_x"][0], episodes["support_y"][0], episodes["query_x"][0]
    outputs = {}
    for transductive in (True, False):
        learner = MetaLearner(model, rules.chain(rules.Scale(0.3)), transductive=transductive)
        adaptation = learner.adapt(xs, ys, steps=1)
        whole = learner.predict_adapted(adaptation, xq).numpy()
        alone = np.concatenate([learner.predict_adapted(adaptation, xq[i:i + 1]).numpy()
                                for i in range(len(xq))])
        outputs[transductive] = (whole, alone)
    whole, alone = outputs[False]
    np.testing.assert_allclose(whole, alone, rtol=1e-5, atol=1e-5)  # no query-batch leakage
    assert not np.allclose(*outputs[True], atol=1e-3)  # transductive: batch statistics matter


def _net_under_policy(precision, model, input_shape, outputs):
    import types

    from wtl_tf.models import build_task_model

    config = types.SimpleNamespace(mixed_precision=precision, model=model, warp_layers=False,
                                   conv_channels=32, warp_depth=1, warp_activation=None,
                                   warp_residual=False, warp_batchnorm=False, warp_init="random",
                                   algorithm="maml")
    return build_task_model(config, types.SimpleNamespace(input_shape=input_shape,
                                                          outputs=outputs))


@pytest.mark.parametrize("precision,loss_scale,tolerance", [("bfloat16", 1.0, 0.1),
                                                            ("float16", 32.0, 0.01)])
def test_mixed_precision_meta_gradients_track_float32(precision, loss_scale, tolerance):
    """A task network computing in bfloat16/float16 with float32 weights (second-order
    sparse-MAML, float16 with a static loss scale): on the smooth sinusoid problem the
    meta-gradients stay within rounding distance of float32's (measured relative error:
    0.6-4% bfloat16, 0.04% float16, over three seeds)."""
    from helpers import sinusoid_batch

    batch = {k: tf.constant(v) for k, v in sinusoid_batch(4, 10, 10, seed=1,
                                                          dtype="float32").items()}
    learners = {}
    for name, scale in (("none", 1.0), (precision, loss_scale)):
        keras.utils.set_random_seed(3)
        net = _net_under_policy(name, "mlp", (1,), 1)
        learners[name] = MetaLearner(net, rules.chain(rules.BinaryMask(), rules.Scale(0.01)),
                                     loss="mse", inner_steps=3, loss_scale=scale)
    reference, mixed = learners["none"], learners[precision]
    assert mixed.task_model.get_layer("dense1").compute_dtype == precision
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    for a, b in zip(mixed.weights, reference.weights):
        a.assign(b)
    got = np.concatenate([g.numpy().ravel() for g in
                          gradient_list(mixed, mixed.meta_gradients(batch)[0])])
    expected = np.concatenate([g.numpy().ravel() for g in
                               gradient_list(reference, reference.meta_gradients(batch)[0])])
    assert np.linalg.norm(got - expected) < tolerance * np.linalg.norm(expected)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_conv4_meta_step_on_omniglot(precision, omniglot_dir):
    """Conv4 with BatchNorm on a real meta-batch: half-precision compute, float32 weights and
    float32, finite meta-gradients; one meta-update runs."""
    from wtl_tf.data.registry import task_distribution

    tasks = task_distribution("omniglot", ways=5, shots=1, queries=5, seed=0,
                              data_dir=omniglot_dir, split="omniglot_small_alphabets")
    batch = next(iter(tasks.episodes("train", 2)))
    batch = {k: batch[k] for k in ("support_x", "support_y", "query_x", "query_y")}
    net = _net_under_policy(precision, "conv4", tasks.input_shape, 5)
    learner = MetaLearner(net, rules.chain(rules.BinaryMask(), rules.Scale(0.4)), inner_steps=2,
                          loss_scale=32.0 if precision == "float16" else 1.0)
    learner.compile(optimizer=keras.optimizers.Adam(1e-3), meta_optimizer="adam")
    assert net.get_layer("conv1").compute_dtype == precision
    assert net.get_layer("conv1").kernel.dtype == "float32"
    grads, logs = learner.meta_gradients(batch)
    assert all(g.dtype == tf.float32 and np.all(np.isfinite(g)) for g in grads.values())
    before = net.get_layer("conv1").kernel.numpy()
    learner.train_step(batch)
    assert not np.array_equal(before, net.get_layer("conv1").kernel.numpy())


def test_xla_compiled_meta_gradients_match():
    """--jit_compile (for GPUs) compiles the whole meta-gradient computation, loops included."""
    from helpers import sinusoid_batch

    batch = {k: tf.constant(v) for k, v in sinusoid_batch(4, 5, 5, dtype="float32").items()}
    learner = MetaLearner(models.mlp(), rules.chain(rules.BinaryMask(), rules.Scale(0.01)),
                          loss="mse", inner_steps=2)
    plain = tf.function(lambda b: learner.meta_gradients(b)[0])(batch)
    xla = tf.function(lambda b: learner.meta_gradients(b)[0], jit_compile=True)(batch)
    assert xla.keys() == plain.keys()
    for path in plain:
        np.testing.assert_allclose(xla[path].numpy(), plain[path].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rule, first_order, steps", [
    (lambda: rules.chain(rules.BinaryMask(), rules.Scale(0.1)), False, 2),  # sparse-MAML
    (lambda: rules.chain(rules.BinaryMask(), rules.LearnedRates()), False, 1),
    (lambda: rules.chain(rules.ReluRates(0.1)), True, 3),  # sparse-ReLU-MAML, first order
])
def test_vectorized_tasks_give_the_looped_meta_gradients(rule, first_order, steps):
    """vectorize_tasks (tf.vectorized_map over tasks, the sinusoid default) is a speed option."""
    from helpers import sinusoid_batch

    keras.utils.set_random_seed(3)
    batch = {k: tf.constant(v) for k, v in sinusoid_batch(5, 5, 5).items()}
    learner = MetaLearner(models.mlp(dtype="float64"), rule(), loss="mse", inner_steps=steps,
                          first_order=first_order)
    looped_fn = tf.function(learner.meta_gradients)
    want, want_logs = looped_fn(batch)
    learner.vectorize_tasks = True
    vectorized_fn = tf.function(learner.meta_gradients)
    got, got_logs = vectorized_fn(batch)
    loops = [[op.type for op in f.get_concrete_function(batch).graph.get_operations()
              if op.type.endswith("While")] for f in (looped_fn, vectorized_fn)]
    assert loops[0] and not loops[1], loops  # one batched computation, no loop over tasks
    assert got.keys() == want.keys() and len(want) > 6
    for path in want:
        np.testing.assert_allclose(got[path].numpy(), want[path].numpy(), rtol=1e-10, atol=1e-12)
    for name in ("loss", "support_loss"):
        np.testing.assert_allclose(got_logs[name].numpy(), want_logs[name].numpy(), rtol=1e-6)


def test_vectorized_tasks_train_with_one_trace():
    from helpers import sinusoid_batch

    learner = MetaLearner(models.mlp(), rules.chain(rules.BinaryMask(), rules.Scale(0.01)),
                          loss="mse", vectorize_tasks=True)
    learner.compile(optimizer=keras.optimizers.Adam(1e-3), meta_optimizer=keras.optimizers.Adam(1e-3))
    data = tf.data.Dataset.from_tensors(sinusoid_batch(4, 5, 5, dtype="float32")).repeat()
    history = learner.fit(data, steps_per_epoch=5, epochs=2, verbose=0)
    assert learner.trace_counter.counts == {"train_step": 1}
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize("vectorize", [False, True])
def test_mean_outer_reduction_divides_the_summed_meta_gradients_by_the_meta_batch(vectorize):
    from helpers import sinusoid_batch

    batch = {k: tf.constant(v) for k, v in sinusoid_batch(4, 5, 5).items()}
    learner = MetaLearner(models.mlp(dtype="float64"), rules.chain(rules.BinaryMask(),
                                                                  rules.Scale(0.1)),
                          loss="mse", vectorize_tasks=vectorize)
    summed = tf.function(learner.meta_gradients)(batch)[0]
    learner.outer_reduction = "mean"
    averaged = tf.function(learner.meta_gradients)(batch)[0]
    assert summed.keys() == averaged.keys()
    for path in summed:
        np.testing.assert_allclose(averaged[path].numpy() * 4, summed[path].numpy(), rtol=1e-12,
                                   atol=1e-14)
    assert any(np.abs(s.numpy()).max() > 0 for s in summed.values())
