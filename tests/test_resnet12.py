"""ResNet-12 (BOIL / sparse-MAML variant): architecture and inner-loop training."""

import keras
import numpy as np
import tensorflow as tf

from helpers import random_classification_episodes
from wtl_tf import MetaLearner, models, rules
from wtl_tf.models import PaddedMaxPool


def test_parameter_count_and_shapes_of_the_reference_architecture():
    net = models.resnet12((84, 84, 3), 5)
    # per block: three 3x3 convs and a 1x1 shortcut (no biases), four BatchNorms (gamma, beta)
    expected, c_in = 0, 3
    for c in (64, 128, 256, 512):
        expected += 9 * c_in * c + 2 * 9 * c * c + c_in * c + 4 * 2 * c
        c_in = c
    expected += 512 * 5 + 5
    trainable = sum(int(np.prod(v.shape)) for v in net.trainable_variables)
    assert trainable == expected == 7_999_365
    shapes = {layer.name: layer.output.shape[1:] for layer in net.layers}
    assert shapes["block1_pool"] == (42, 42, 64) and shapes["block2_pool"] == (21, 21, 128)
    assert shapes["block3_pool"] == (11, 11, 256) and shapes["avgpool"] == (512,)
    assert isinstance(net.get_layer("block1_relu1"), keras.layers.LeakyReLU)


def test_padded_max_pool_matches_pytorch_padding_semantics():
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 1)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    expected = np.array([[padded[0, 2 * i:2 * i + 2, 2 * j:2 * j + 2, 0].max() for j in range(3)]
                         for i in range(3)])
    np.testing.assert_array_equal(PaddedMaxPool(1)(x).numpy()[0, :, :, 0], expected)


def _grads(learner, episodes):
    grads, logs = learner.meta_gradients(episodes)
    return [grads[v.path].numpy() for v in learner.initialization_variables], float(logs["loss"])


def test_trains_through_the_inner_loop_first_and_second_order():
    episodes = random_classification_episodes(1, 2, 1, 2, (32, 32, 3), seed=4)
    net = models.resnet12((32, 32, 3), 2)
    results = {}
    for order in ("second", "first"):
        learner = MetaLearner(net, rules.chain(rules.BinaryMask(), rules.Scale(0.05)),
                              adapt_batchnorm=False, inner_steps=2,
                              first_order=order == "first")
        grads, _ = _grads(learner, episodes)
        assert all(np.all(np.isfinite(g)) for g in grads)
        assert all(np.any(g != 0) for g in grads[:-2]), "every body tensor gets a meta-gradient"
        results[order] = grads
    assert max(np.abs(a - b).max() for a, b in zip(results["first"], results["second"])) > 1e-7

    learner.compile(optimizer=keras.optimizers.Adam(1e-3), meta_optimizer=keras.optimizers.Adam(1e-2))
    batch = {k: tf.constant(v) for k, v in episodes.items()}
    losses = [float(learner.train_step(batch)["loss"]) for _ in range(6)]
    assert losses[-1] < losses[0], losses
