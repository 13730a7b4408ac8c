"""`--start_from=RUN_DIR`: a La-MAML-family stream starts from another run's network and
meta-learned mask or rates (the meta-pretrained start), with its own stream-side state."""

import shutil

import numpy as np
import pytest

from wtl_tf.config import ExperimentConfig
from wtl_tf.errors import ConfigError

ONE_TASK = dict(stream_tasks=1, glances=1)


def _run(tmp_path, name, omniglot_dir, **settings):
    from wtl_tf import experiment

    config = ExperimentConfig(**ONE_TASK, data_dir=omniglot_dir, tensorboard=False,
                              output_dir=str(tmp_path / name), **settings).resolved()
    return experiment.run(config)


def test_a_stream_starts_from_a_held_out_runs_network_and_mask_and_learns_its_own(
        tmp_path, omniglot_dir):
    from wtl_tf.continual.building import build_la_maml, build_stream, load_omniglot
    from wtl_tf.continual.start_from import take_parameters

    _, held_out = _run(tmp_path, "held_out", omniglot_dir, algorithm="sparse_la_maml",
                       seed=100, mask_lr=10.0)
    learned = [v.numpy() for v in [*held_out.model.weights, *held_out.meta]]
    config = ExperimentConfig(**ONE_TASK, algorithm="sparse_la_maml", seed=0, mask_lr=0.0,
                              data_dir=omniglot_dir, output_dir=str(tmp_path / "test"),
                              tensorboard=False,
                              start_from=str(tmp_path / "held_out")).resolved()
    fresh = build_la_maml(config, build_stream(config, load_omniglot(config)))
    before = [v.numpy() for v in [*fresh.model.weights, *fresh.meta]]
    take_parameters(fresh, config.start_from)
    for taken, source, own in zip([*fresh.model.weights, *fresh.meta], learned, before):
        np.testing.assert_array_equal(taken.numpy(), source)
        assert not np.array_equal(own, source)  # a different start without it
    assert int(fresh.observed.numpy()) == 0 and fresh.position == 0  # a new stream
    assert set(fresh.mask_changes().values()) == {0.0}  # changes count from the taken mask

    # The run: starts there, and with --mask_lr=0 keeps the held-out run's mask exactly.
    results, learner = _run(tmp_path, "test", omniglot_dir, algorithm="sparse_la_maml", seed=0,
                            mask_lr=0.0, start_from=str(tmp_path / "held_out"))
    for mask, source in zip(learner.masks, learned[len(held_out.model.weights):]):
        np.testing.assert_array_equal(mask.numpy(), source)
    assert results["continual"]["mask_sparsity"]["overall"] == pytest.approx(
        held_out.mask_sparsity())
    assert not np.array_equal(learner.model.weights[0].numpy(), learned[0])  # theta learns

    # The source is read when the stream starts, never again: with it gone, the finished
    # run's settings still resolve (a resume, wtl-export).
    shutil.rmtree(tmp_path / "held_out")
    ExperimentConfig(**ONE_TASK, algorithm="sparse_la_maml", seed=0, mask_lr=0.0,
                     data_dir=omniglot_dir, output_dir=str(tmp_path / "test"), tensorboard=False,
                     start_from=str(tmp_path / "held_out")).resolved()


def test_a_source_of_another_algorithm_or_chain_or_without_checkpoints_is_refused(
        tmp_path, omniglot_dir):
    _run(tmp_path, "dense", omniglot_dir, algorithm="la_maml")
    with pytest.raises(ConfigError, match=r"is a run with --algorithm=la_maml, this run has "
                                          r"--algorithm=sparse_la_maml: start from a run of "
                                          r"the same algorithm and chain"):
        ExperimentConfig(algorithm="sparse_la_maml", data_dir=omniglot_dir,
                         start_from=str(tmp_path / "dense")).resolved()
    with pytest.raises(ConfigError, match=r"holds no checkpoint \(checkpoints/\)"):
        ExperimentConfig(algorithm="la_maml", start_from=str(tmp_path / "nothing")).resolved()
    with pytest.raises(ConfigError, match="--start_from=x is not read by --algorithm=maml"):
        ExperimentConfig(algorithm="maml", start_from="x").resolved()
