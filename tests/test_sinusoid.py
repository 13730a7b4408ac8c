"""The sinusoid task distribution and a real (short) meta-learning run on it."""

import numpy as np
import pytest

from wtl_tf.data.sinusoid import sinusoid_episodes
from wtl_tf import ConfigError, experiment
from wtl_tf.config import ExperimentConfig


def _first(ds):
    return {k: v.numpy() for k, v in next(iter(ds)).items()}


def test_episodes_are_seeded_reproducible_and_resumable():
    a = _first(sinusoid_episodes(5, 7, 4, seed=3))
    b = _first(sinusoid_episodes(5, 7, 4, seed=3))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["support_x"].shape == (4, 5, 1) and a["query_y"].shape == (4, 7, 1)
    other_seed = _first(sinusoid_episodes(5, 7, 4, seed=4))
    other_split = _first(sinusoid_episodes(5, 7, 4, seed=3, split="test"))
    assert not np.allclose(a["amplitude"], other_seed["amplitude"])
    assert not np.allclose(a["amplitude"], other_split["amplitude"])
    stream = list(sinusoid_episodes(5, 7, 4, seed=3).take(3))
    resumed = _first(sinusoid_episodes(5, 7, 4, seed=3, start_batch=2))
    np.testing.assert_array_equal(stream[2]["query_x"].numpy(), resumed["query_x"])


def test_episodes_follow_the_finn_task_distribution():
    batch = _first(sinusoid_episodes(10, 10, 500, seed=0))
    amp, phase = batch["amplitude"], batch["phase"]
    assert amp.min() >= 0.1 and amp.max() <= 5.0 and amp.std() > 1.0
    assert phase.min() >= 0.0 and phase.max() <= np.pi
    x = batch["support_x"]
    assert x.min() >= -5.0 and x.max() <= 5.0
    expected = amp[:, None, None] * np.sin(x - phase[:, None, None])
    np.testing.assert_allclose(batch["support_y"], expected, rtol=1e-5, atol=1e-5)


def test_bad_episode_sizes_are_rejected():
    with pytest.raises(ConfigError, match="shots must be a positive integer"):
        sinusoid_episodes(0, 5, 4)


def test_sparse_maml_learns_sinusoid(tmp_path):
    """A short real run: held-out MSE after one inner step is far below the MSE before it."""
    config = ExperimentConfig(algorithm="sparse_maml", meta_iterations=2000, eval_every=1000,
                              validation_tasks=50, test_tasks=300, output_dir=str(tmp_path),
                              verbose=0)
    results, learner = experiment.run(config)
    pre, post = results["test"]["pre_loss"], results["test"]["loss"]
    assert post["mean"] + post["ci95"] < 0.4 * (pre["mean"] - pre["ci95"]), results["test"]
    assert results["meta_iterations"] == 2000
    assert 0.0 < results["sparsity"]["overall"] < 1.0
    assert learner.trace_counter.counts["train_step"] == 1
