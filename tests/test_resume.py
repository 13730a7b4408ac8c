"""Checkpoints: a SIGKILLed run resumes where it stopped and ends as if never interrupted."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import background

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(out):
    return [sys.executable, os.path.join(ROOT, "train.py"), "--meta_iterations=500",
            "--eval_every=125", "--validation_tasks=25", "--test_tasks=100",
            f"--output_dir={out}"]


def start(out, **pipes):
    return background.popen(command(out), cwd=ROOT, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), **pipes)


def finish(proc, out):
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def run(out):
    return finish(start(out, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)


def final_variables(out):
    reader = tf.train.load_checkpoint(str(out / "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "save_counter" not in name and "train_seconds" not in name}


def curve(out):
    with open(out / "learning_curve.csv", newline="") as f:
        return [(int(r["iteration"]), float(r["val_loss"])) for r in csv.DictReader(f)]


@background.test()
def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path, omniglot_dir):
    # the uninterrupted run and the one to be killed run side by side (independent processes)
    uninterrupted = start(tmp_path / "uninterrupted", stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    out = tmp_path / "killed"
    proc = start(out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = out / "checkpoints" / "checkpoint"
    deadline = time.time() + 300
    while not index.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert index.exists() and not (out / "results.json").exists()
    killed_at = int(tf.train.latest_checkpoint(str(out / "checkpoints")).rsplit("-", 1)[1])
    assert 125 <= killed_at < 500
    reference = finish(uninterrupted, tmp_path / "uninterrupted")

    resumed = run(out)
    assert resumed["resumed_at"] == killed_at and resumed["meta_iterations"] == 500
    assert curve(out) == curve(tmp_path / "uninterrupted")  # no row lost or duplicated
    a, b = final_variables(tmp_path / "uninterrupted"), final_variables(out)
    assert a.keys() == b.keys() and len(a) > 20
    for name in a:  # initialisation, masks, optimiser slots, step counters
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert resumed["test"] == reference["test"]
    assert resumed["best_validation"] == reference["best_validation"]

    again = run(out)  # a finished run rerun: nothing to train, same results
    assert again["resumed_at"] == 500 and again["test"] == reference["test"]


def test_half_written_checkpoint_never_replaces_a_good_one(tmp_path):
    import keras

    from wtl_tf import MetaLearner, models, rules
    from wtl_tf.checkpoints import RunCheckpoints

    def learner():
        model = MetaLearner(models.mlp(hidden=(4,)), rules.chain(rules.BinaryMask(),
                                                                rules.Scale(0.1)), loss="mse")
        model.compile(optimizer=keras.optimizers.Adam(0.1), meta_optimizer=keras.optimizers.Adam(0.1))
        return model

    first = learner()
    batch = {k: tf.random.normal((2, 5, 1)) for k in ("support_x", "support_y", "query_x", "query_y")}
    first.train_step(batch)
    RunCheckpoints(str(tmp_path), first).save()
    good = [v.numpy() for v in first.weights]
    # A later save that died half-way: its files exist, the index was never updated.
    (tmp_path / "ckpt-7.index").write_bytes(b"\x00garbage")
    (tmp_path / "ckpt-7.data-00000-of-00001").write_bytes(b"")

    second = learner()
    assert RunCheckpoints(str(tmp_path), second).restore() == 1
    for a, b in zip(good, second.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_only_the_newest_two_checkpoints_remain_across_resumes(tmp_path):
    """Every resume opens a new CheckpointManager; the checkpoints of earlier processes must
    still be pruned (they were kept forever: 4-6 after a few resumes)."""
    import keras

    from wtl_tf import MetaLearner, models, rules
    from wtl_tf.checkpoints import RunCheckpoints, _checkpoint_numbers

    batch = {k: tf.random.normal((2, 5, 1)) for k in ("support_x", "support_y", "query_x",
                                                      "query_y")}
    for resume in range(4):  # four processes, each resuming and saving twice
        learner = MetaLearner(models.mlp(hidden=(4,)), rules.chain(rules.Scale(0.1)),
                              loss="mse")
        learner.compile(optimizer=keras.optimizers.Adam(0.1), meta_optimizer=None)
        checkpoints = RunCheckpoints(str(tmp_path), learner)
        assert checkpoints.restore() == 2 * resume
        for _ in range(2):
            learner.train_step(batch)
            checkpoints.save()
    assert _checkpoint_numbers(str(tmp_path)) == [8, 7]
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-8")


def test_a_continual_resume_is_checked_against_the_settings_inside_its_checkpoint(
        tmp_path, omniglot_dir):
    import dataclasses

    from wtl_tf import experiment
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.errors import ConfigError

    config = ExperimentConfig(algorithm="la_maml", stream_tasks=2, data_dir=omniglot_dir,
                              output_dir=str(tmp_path / "run"), tensorboard=False, verbose=0)
    experiment.run(config)
    os.remove(tmp_path / "run" / "config.json")
    with pytest.raises(ConfigError, match=r"--inner_lr \(saved 0.15, now 0.05\)"):
        experiment.run(dataclasses.replace(config, inner_lr=0.05))
    (tmp_path / "run" / "config.json").write_text('{"algorithm": "la_m')
    with pytest.raises(ConfigError, match="config.json cannot be read"):
        experiment.run(config)
