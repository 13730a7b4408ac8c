"""train.py's continual runs: settings, the same numbers as the library driven by hand,
TensorBoard, the SavedModel, and kill -9 mid-stream then rerun = an uninterrupted run."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import background  # noqa: E402
from wtl_tf.config import ExperimentConfig  # noqa: E402
from wtl_tf.errors import ConfigError  # noqa: E402

LA_SMALL = dict(algorithm="sparse_la_maml", stream_tasks=2, glances=2)
LA_ONE_TASK = dict(LA_SMALL, stream_tasks=1)  # 30 batches: enough to kill mid-stream
OSAKA_SMALL = dict(algorithm="sparse_continual_maml", stream_steps=16, pretrain_iterations=1,
                   conv_channels=8, inner_steps=2)


def test_continual_runs_refuse_few_shot_settings_and_vice_versa():
    with pytest.raises(ConfigError, match="--ways=5 is not read by --algorithm=la_maml"):
        ExperimentConfig(algorithm="la_maml", ways=5).resolved()
    with pytest.raises(ConfigError, match="--meta_iterations=3 is not read"):
        ExperimentConfig(algorithm="continual_maml", meta_iterations=3).resolved()
    with pytest.raises(ConfigError, match="--glances=3 is not read by --algorithm=maml"):
        ExperimentConfig(algorithm="maml", glances=3).resolved()
    with pytest.raises(ConfigError, match="--stationarity=0.9 is not read"):
        ExperimentConfig(algorithm="la_maml", stationarity=0.9).resolved()
    with pytest.raises(ConfigError, match="--gate_slow_update=False is not read"):
        ExperimentConfig(algorithm="la_maml", gate_slow_update=False).resolved()
    with pytest.raises(ConfigError, match="not a stream of --algorithm=la_maml"):
        ExperimentConfig(algorithm="la_maml", stream="osaka_omniglot").resolved()
    with pytest.raises(ConfigError, match="--chunk_size"):
        ExperimentConfig(algorithm="la_maml", chunk_size=20).resolved()


def test_continual_defaults_are_the_benchmarks_reference_values():
    c = ExperimentConfig(algorithm="c_maml", stream="permuted_omniglot").resolved()
    assert (c.glances, c.inner_lr, c.outer_lr, c.memories) == (5, 0.03, 0.1, 200)
    c = ExperimentConfig(algorithm="la_maml", stream="many_permuted_omniglot").resolved()
    assert (c.glances, c.inner_lr, c.meta_lr, c.memories, c.stream_tasks) == (10, .1, .1, 500,
                                                                              100)
    c = ExperimentConfig(algorithm="continual_maml", stationarity=0.9).resolved()
    assert (c.meta_batch_size, c.meta_lr, c.inner_steps, c.shift_threshold) == (8, 5e-4, 16, 2.0)
    c = ExperimentConfig(algorithm="sparse_la_maml").resolved()
    assert c.mask_init == "kaiming" and c.stream == "rotated_omniglot"
    assert c.resolved() == c  # a saved config resolves to itself


def _by_hand(config, class_images):
    """The same stream and learner driven from a user's own loop (wtl_tf.continual)."""
    import keras

    from wtl_tf.continual import metrics
    from wtl_tf.continual.building import build_la_maml, build_stream

    keras.utils.set_random_seed(config.seed)
    stream = build_stream(config, class_images)
    learner = build_la_maml(config, stream)
    r = []
    for task in stream.tasks:
        for x, y in task.train_batches(config.stream_batch):
            learner.observe(x.numpy(), y.numpy(), task.index)
        r.append([learner.accuracy(t.test_x, t.test_y) for t in stream.tasks])
    return metrics.summary(r), r


def test_la_maml_run_matches_the_library_loop_and_writes_tensorboard_and_export(
        tmp_path, omniglot_dir, omniglot_small, monkeypatch):
    from helpers import plugin_tags, read_events
    from wtl_tf import callbacks, experiment

    config = ExperimentConfig(**LA_SMALL, data_dir=omniglot_dir,
                              output_dir=str(tmp_path / "run"), progress_every_seconds=1e-3,
                              export_dir=str(tmp_path / "export")).resolved()
    # absl's info lines, whatever verbosity an earlier test left absl at
    logged = []
    monkeypatch.setattr(callbacks.logging, "info", lambda fmt, *a: logged.append(fmt % a))
    results, learner = experiment.run(config)
    # the shared progress callback: a line after the first stream step, then on schedule
    progress = [line for line in logged if line.startswith("stream step ")]
    assert progress[0].startswith("stream step 1/60 (task 1/2): loss ") and \
        "first step took" in progress[0]
    steps = [int(line.split()[2].split("/")[0]) for line in progress]
    assert len(steps) >= 2 and steps == sorted(steps) and "s per step" in progress[1]
    summary, r = _by_hand(config, omniglot_small)
    got = results["continual"]
    assert got["R"] == r  # bit for bit: the run adds checkpoints, not arithmetic
    assert got["retained_accuracy"] == summary["retained_accuracy"]
    assert 0 < got["mask_sparsity"]["overall"] < 1
    assert set(got["mask_sparsity"]["per_layer"]) == {v.path for v in learner.theta}
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["continual"]["backward_transfer"] == got["backward_transfer"]

    logs = str(tmp_path / "run" / "tensorboard")
    assert "stream/R" in plugin_tags(logs, ".", "images")
    assert {"stream/accuracy_all_tasks", "sparsity/head/kernel"} <= plugin_tags(
        logs, ".", "scalars")
    events = read_events(logs)["."]
    assert {"stream/R", "stream/accuracy_seen_tasks", "sparsity/head/kernel"} <= set(events)
    # One point per task end (300 examples in batches of 10), the accuracy of the last row.
    assert events["stream/accuracy_all_tasks"] == [(30, pytest.approx(np.mean(r[0]))),
                                                   (60, pytest.approx(np.mean(r[1])))]
    assert events["stream/R"][-1][1].shape == (3,)  # width, height, PNG

    loaded = tf.saved_model.load(str(tmp_path / "export"))
    rng = np.random.default_rng(0)
    x = rng.random((10, 784), dtype=np.float32)
    y = rng.integers(0, 20, 10).astype(np.int32)
    fast = learner.adapt(tf.constant(x), tf.constant(y, tf.int64))
    expected = learner.forward(fast, x).numpy()
    np.testing.assert_allclose(loaded.adapt_and_predict(x, y, x)["logits"].numpy(), expected,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.predict(x)["logits"].numpy(),
                               learner.logits(x).numpy(), rtol=1e-5, atol=1e-5)
    masks = {k: v.numpy() for k, v in loaded.masks().items()}
    assert masks["sparsity.overall"] == pytest.approx(got["mask_sparsity"]["overall"])
    assert json.loads(loaded.config()["json"].numpy())["algorithm"] == "sparse_la_maml"
    # wtl-evaluate scores the export on its stream's tasks: the run's last row of R
    evaluate = subprocess.run([sys.executable, "-m", "wtl_tf.cli.evaluate",
                               f"--saved_model={tmp_path / 'export'}"], cwd=tmp_path,
                              capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                                       PYTHONPATH=ROOT))
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    lines = evaluate.stdout.strip().splitlines()
    scores = [float(s) for s in lines[-2].split(":")[1].split()]
    assert scores == pytest.approx(r[-1], abs=1e-9)
    assert lines[-1].startswith("accuracy over the 2 tasks of rotated_omniglot (test sets): "
                                f"{np.mean(r[-1]):.4f} ± ")
    # wtl-export: the same SavedModel from the run's newest checkpoint
    again = tf.saved_model.load(experiment.export_run(
        dataclasses.replace(config, export_dir=str(tmp_path / "again"))))
    for signature, args in (("adapt_and_predict", (x, y, x)), ("predict", (x,))):
        np.testing.assert_array_equal(getattr(again, signature)(*args)["logits"].numpy(),
                                      getattr(loaded, signature)(*args)["logits"].numpy())


def _train(out, options, omniglot_dir, extra=()):
    flags = [f"--{k}={v}" for k, v in options.items()]
    return background.popen(
        [sys.executable, os.path.join(ROOT, "train.py"), *flags, f"--data_dir={omniglot_dir}",
         f"--output_dir={out}", "--notensorboard", *extra], cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)


def _mid_stream_checkpoint(out, proc, total):
    """Waits for a checkpoint strictly inside the stream; False if the run ended first."""
    directory = os.path.join(out, "checkpoints")
    while proc.poll() is None:
        if os.path.isdir(directory):
            steps = [int(n.split("-")[1].split(".")[0]) for n in os.listdir(directory)
                     if n.startswith("ckpt-") and n.endswith(".index")]
            if any(0 < s < total - 4 for s in steps):
                return True
        time.sleep(0.05)
    return False


@background.test(params={"sparse_la_maml": (LA_ONE_TASK, 30),
                         "sparse_continual_maml": (OSAKA_SMALL, 16)})
def test_kill_9_mid_stream_then_rerun_gives_the_uninterrupted_results(
        tmp_path, omniglot_dir, options, total):
    straight = _train(tmp_path / "straight", options, omniglot_dir)
    killed = _train(tmp_path / "killed", options, omniglot_dir,
                    ["--checkpoint_every_minutes=0.001"])
    assert _mid_stream_checkpoint(str(tmp_path / "killed"), killed, total), \
        "the run ended before a mid-stream checkpoint"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "results.json").exists()
    for proc in (straight, _train(tmp_path / "killed", options, omniglot_dir)):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    first, resumed = (json.loads((tmp_path / d / "results.json").read_text())["continual"]
                      for d in ("straight", "killed"))
    for key in ("seconds", "seconds_per_1000_steps"):
        first.pop(key), resumed.pop(key)
    assert resumed == first


def test_an_osaka_export_is_not_scored_by_task_and_says_how_to_use_it():
    from wtl_tf.continual import score_export
    from wtl_tf.errors import WtlError

    exported = ExperimentConfig(algorithm="continual_maml").resolved().to_dict()
    with pytest.raises(WtlError, match="is scored along its stream, online"):
        score_export.stream_config(exported)
    la = ExperimentConfig(algorithm="la_maml", stream="permuted_omniglot").resolved()
    assert score_export.stream_config(la.to_dict(), "/data").data_dir == "/data"
    with pytest.raises(WtlError, match="settings this wtl_tf does not have \\(from_the_future"):
        score_export.stream_config({**la.to_dict(), "from_the_future": 1})
    from wtl_tf.cli import evaluate

    evaluate.check_stream_flags({"data_dir", "saved_model"})  # what it reads
    with pytest.raises(WtlError, match="^--ways is not read for a continual export .*: drop "
                       "it$"):
        evaluate.check_stream_flags({"ways", "data_dir"})


def test_a_stream_checkpoint_of_other_variables_is_refused_in_one_line(tmp_path):
    """A run directory checkpointed by a learner that kept other state (another version's
    Continual-MAML kept its buffered batches in numpy) is refused, not half-restored."""
    from wtl_tf.continual.checkpoints import StreamCheckpoints
    from wtl_tf.errors import DataError

    weights = tf.Variable([1.0, 2.0])
    StreamCheckpoints(str(tmp_path), [weights]).save(5, {"history_accuracy": np.zeros(5)})
    buffered = tf.Variable(tf.zeros([0, 3]), shape=[None, 3])
    with pytest.raises(DataError, match="does not fit this run") as e:
        StreamCheckpoints(str(tmp_path), [weights, buffered]).restore()
    assert "\n" not in str(e.value) and "--output_dir" in str(e.value)
    step, state = StreamCheckpoints(str(tmp_path), [weights]).restore()
    assert step == 5 and state["history_accuracy"] == [0.0] * 5


def test_a_stream_checkpoint_is_one_tensorflow_checkpoint_records_included(tmp_path):
    """The records travel inside the checkpoint (exactly: float64 through JSON); a corrupt
    newest checkpoint is quarantined and the one before it restored, as in few-shot runs;
    a directory of the older two-file format (records in .state.npz) is refused in one line
    that says so."""
    from wtl_tf.continual.checkpoints import StreamCheckpoints
    from wtl_tf.errors import DataError

    weights = tf.Variable([1.0, 2.0])
    rng = np.random.default_rng(0)
    rows = rng.random((3, 4))
    checkpoints = StreamCheckpoints(str(tmp_path / "run"), [weights])
    checkpoints.save(5, {"R": rows, "mask_trace": [{"step": 5, "overall": 0.25}]})
    weights.assign([3.0, 4.0])
    checkpoints.save(9, {"R": rows[:2], "mask_trace": []})
    assert sorted(os.listdir(tmp_path / "run")) == [
        "checkpoint", "ckpt-5.data-00000-of-00001", "ckpt-5.index",
        "ckpt-9.data-00000-of-00001", "ckpt-9.index"]
    (tmp_path / "run" / "ckpt-9.data-00000-of-00001").write_bytes(b"cut short")
    step, state = StreamCheckpoints(str(tmp_path / "run"), [weights]).restore()
    assert step == 5 and np.array_equal(np.array(state["R"]), rows)
    assert state["mask_trace"] == [{"step": 5, "overall": 0.25}]
    assert weights.numpy().tolist() == [1.0, 2.0]
    assert sorted(os.listdir(tmp_path / "run" / "corrupt")) == [
        "ckpt-9.data-00000-of-00001", "ckpt-9.index"]

    older = tmp_path / "older"
    tf.train.Checkpoint(variables=[weights]).write(str(older / "ckpt-3"))
    np.savez(older / "ckpt-3.state.npz", R=rows)
    with pytest.raises(DataError, match="kept a stream run's records in .state.npz files") as e:
        StreamCheckpoints(str(older), [weights]).restore()
    assert "\n" not in str(e.value)


def test_a_failed_continual_export_keeps_the_results_and_wtl_export_writes_it(
        tmp_path, omniglot_dir, monkeypatch):
    """A continual run is the same transaction as a few-shot run: results.json survives a
    failed export, and wtl-export then writes the run's SavedModel from its checkpoint
    without learning the stream again."""
    from wtl_tf import experiment, run_transaction
    from wtl_tf.continual import run as continual_run

    finished = []

    def broken(learner, *args, **kwargs):
        finished.append(learner)
        raise OSError("No space left on device")

    monkeypatch.setattr(continual_run, "export_continual", broken)
    config = ExperimentConfig(**OSAKA_SMALL, data_dir=omniglot_dir, verbose=0,
                              tensorboard=False, output_dir=str(tmp_path / "run"),
                              export_dir=str(tmp_path / "export"))
    with pytest.raises(run_transaction.ExportError, match="results.json and the checkpoints "
                       "are kept: rerun the same command with a working --export_dir"):
        experiment.run(config)
    kept = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "No space left" in kept["export_error"] and not (tmp_path / "export").exists()
    assert kept["continual"]["stream_steps"] == OSAKA_SMALL["stream_steps"]
    monkeypatch.undo()
    path = experiment.export_run(config)
    assert path == str(tmp_path / "export")
    loaded, learner = tf.saved_model.load(path), finished[0]
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 3], np.int32)
    np.testing.assert_allclose(loaded.predict(x)["logits"].numpy(), learner.forward_with(
        learner.slow_weights(), x).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        loaded.adapt_and_predict(x, y, x)["logits"].numpy(),
        learner.forward_with(learner.fast_weights(x, tf.constant(y, tf.int64)), x).numpy(),
        rtol=1e-5, atol=1e-5)


def test_every_continual_learner_kind_has_a_run_and_every_exporting_kind_a_restorable_learner():
    from wtl_tf import algorithms, settings
    from wtl_tf.continual import run as continual_run

    assert set(continual_run.RUNS) == set(settings.CONTINUAL_LEARNERS)
    exporting = set()
    for name in algorithms.CONTINUAL_ALGORITHMS:
        try:
            ExperimentConfig(algorithm=name, export_dir="/tmp/x").resolved()
        except ConfigError:
            continue  # refuses --export_dir (the warped sine)
        exporting.add(settings.learner_kind(ExperimentConfig(algorithm=name)))
    assert exporting and exporting == set(continual_run.LEARNERS)
