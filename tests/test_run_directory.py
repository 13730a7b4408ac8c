"""A run's output directory is a transaction (wtl_tf.run_directory, wtl_tf.checkpoints):
one run at a time, resumes that keep the training settings, exports that delete nothing they
did not write, corrupt checkpoints skipped, Ctrl-C/SIGTERM checkpointed, time budgets over
resumes. Runs are tiny sinusoid runs in this process (wtl_tf.experiment.run)."""

import json
import os
import signal
import stat
import subprocess
import sys

import pytest

import background
from wtl_tf import experiment, run_transaction
from wtl_tf.config import ExperimentConfig
from wtl_tf.errors import ConfigError
from wtl_tf.run_directory import RunLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(out, **overrides):
    settings = dict(dataset="sinusoid", meta_iterations=6, eval_every=3, validation_tasks=4,
                    test_tasks=4, meta_batch_size=2, tensorboard=False, verbose=0,
                    output_dir=str(out))
    settings.update(overrides)
    return ExperimentConfig(**settings)


def snapshot(directory):
    """Every file under `directory` with its bytes (lock files name their latest holder)."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            if name == ".lock":
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files


def test_a_second_run_on_a_locked_directory_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(str(out)):
        with pytest.raises(ConfigError, match=r"in use by pid \d+ on .*choose another --output_dir"):
            experiment.run(tiny(out))
    assert not (out / "config.json").exists()


def test_the_lock_dies_with_its_process(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from wtl_tf.run_directory import RunLock\n"
        "with RunLock(%r):\n    print('locked', flush=True); time.sleep(60)") % (ROOT, str(out))],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
        with RunLock(str(out)):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with RunLock(str(out)):  # kill -9 leaves no stale lock
        pass


def test_resume_with_a_changed_training_setting_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    experiment.run(tiny(out))
    before = snapshot(out)
    with pytest.raises(ConfigError) as error:
        experiment.run(tiny(out, outer_lr=0.002, inner_lr=0.02))
    message = str(error.value)
    assert "--outer_lr (saved 0.001, now 0.002)" in message
    assert "--inner_lr (saved 0.01, now 0.02)" in message and "another --output_dir" in message
    assert snapshot(out) == before
    # budgets and what happens after training may change
    results, _ = experiment.run(tiny(out, meta_iterations=9, test_tasks=2))
    assert results["resumed_at"] == 6 and results["meta_iterations"] == 9


@pytest.mark.parametrize("case", ["foreign_files", "output_dir", "parent_is_a_file"])
def test_a_bad_export_dir_is_refused_before_training_and_deletes_nothing(tmp_path, case):
    out = tmp_path / "run"
    if case == "foreign_files":
        export = tmp_path / "mine"
        export.mkdir()
        (export / "thesis.tex").write_text("months of work")
        expected = "holds files that are not a wtl_tf export"
    elif case == "output_dir":
        experiment.run(tiny(out))
        export = out
        expected = "would replace the run directory"
    else:
        (tmp_path / "a_file").write_text("x")
        export = tmp_path / "a_file" / "export"
        expected = "is a file"
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=expected):
        experiment.run(tiny(out, export_dir=str(export), meta_iterations=12))
    assert snapshot(tmp_path) == before


def test_an_export_replaces_only_an_earlier_export(tmp_path):
    out = tmp_path / "run"
    export = tmp_path / "export"
    experiment.run(tiny(out, export_dir=str(export)))
    assert json.loads((export / "wtl_config.json").read_text())["meta_iterations"] == 6
    results, _ = experiment.run(tiny(out, export_dir=str(export), meta_iterations=9))
    assert results["export_dir"] == str(export) and (export / "saved_model.pb").exists()
    assert json.loads((export / "wtl_config.json").read_text())["meta_iterations"] == 9
    assert not [p for p in tmp_path.iterdir() if ".previous-" in p.name or ".partial-" in p.name]


def test_export_failure_after_training_keeps_the_results(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(experiment, "export_learner", broken)
    out = tmp_path / "run"
    with pytest.raises(run_transaction.ExportError, match="rerun the same command with a working "
                                                     "--export_dir"):
        experiment.run(tiny(out, export_dir=str(tmp_path / "export")))
    results = json.loads((out / "results.json").read_text())
    assert results["meta_iterations"] == 6 and "No space left" in results["export_error"]
    # wtl-export: the same settings, the export alone (no training, no meta-test).
    monkeypatch.undo()
    path = experiment.export_run(tiny(out, export_dir=str(tmp_path / "export")))
    assert json.loads((tmp_path / "export" / "wtl_config.json").read_text())["meta_iterations"] == 6
    assert path == str(tmp_path / "export") and (tmp_path / "export" / "saved_model.pb").exists()
    assert json.loads((out / "results.json").read_text()) == results  # the run is untouched
    with pytest.raises(experiment.ConfigError, match="other settings: --seed"):
        experiment.export_run(tiny(out, export_dir=str(tmp_path / "other"), seed=5))


def test_output_files_are_readable_by_group_and_others(tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        experiment.run(tiny(out))
    finally:
        os.umask(old)
    for name in ("config.json", "results.json", "learning_curve.csv"):
        mode = stat.S_IMODE(os.stat(out / name).st_mode)
        assert mode & 0o044 == 0o044, (name, oct(mode))


def _checkpoint_numbers(out):
    return sorted(int(p.name[5:-6]) for p in (out / "checkpoints").glob("ckpt-*.index"))


def test_a_truncated_newest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
    out = tmp_path / "run"
    experiment.run(tiny(out, meta_iterations=3))
    experiment.run(tiny(out, meta_iterations=6))
    assert _checkpoint_numbers(out) == [3, 6]
    data = next((out / "checkpoints").glob("ckpt-6.data-*"))
    data.write_bytes(data.read_bytes()[:40])  # truncated
    good = (out / "checkpoints" / "ckpt-3.index").read_bytes()
    results, _ = experiment.run(tiny(out, meta_iterations=6))
    assert results["resumed_at"] == 3 and results["meta_iterations"] == 6
    assert "skipped checkpoint" in caplog.text and "ckpt-6" in caplog.text
    assert (out / "checkpoints" / "corrupt" / "ckpt-6.index").exists()
    assert (out / "checkpoints" / "ckpt-3.index").read_bytes() == good or \
        6 in _checkpoint_numbers(out)


def test_a_garbage_state_file_discards_no_checkpoint(tmp_path):
    out = tmp_path / "run"
    experiment.run(tiny(out, meta_iterations=3))
    experiment.run(tiny(out, meta_iterations=6))
    (out / "checkpoints" / "checkpoint").write_text("\x00\x01 not a proto {{{")
    results, _ = experiment.run(tiny(out, meta_iterations=6))
    assert results["resumed_at"] == 6  # resumed from the newest, not from 0
    assert _checkpoint_numbers(out) == [3, 6]
    assert list((out / "checkpoints").glob("checkpoint.unreadable-*"))


def test_checkpoints_come_on_a_clock_of_their_own_and_progress_is_logged(tmp_path, monkeypatch):
    from absl import logging

    lines = []
    monkeypatch.setattr(logging, "info", lambda message, *args: lines.append(message % args))
    out = tmp_path / "run"
    experiment.run(tiny(out, meta_iterations=8, eval_every=8, verbose=2,
                        checkpoint_every_minutes=1e-6, progress_every_seconds=1e-6))
    # one checkpoint per meta-step although validation comes only at 8 (keep=2: the last two)
    assert _checkpoint_numbers(out) == [7, 8]
    text = "\n".join(lines)
    assert "meta-iteration 1/8: loss" in text and "first meta-step took" in text
    assert "meta-iteration 2/8" in text and "s per meta-step" in text


def test_the_time_budget_counts_over_resumes(tmp_path):
    out = tmp_path / "run"
    first, _ = experiment.run(tiny(out, meta_iterations=100000, eval_every=2,
                                   max_train_minutes=0.02))
    assert first["stopped_by"] == "time budget" and first["train_seconds"] >= 1.2
    again, _ = experiment.run(tiny(out, meta_iterations=100000, eval_every=2,
                                   max_train_minutes=0.02))
    assert again["stopped_by"] == "time budget"
    assert again["meta_iterations"] == first["meta_iterations"]  # no further training


@background.test()
def test_sigint_checkpoints_at_a_step_boundary_and_says_how_to_resume(tmp_path, omniglot_dir):
    out = tmp_path / "run"
    args = [sys.executable, os.path.join(ROOT, "train.py"), "--meta_iterations=100000",
            "--eval_every=50000", "--validation_tasks=4", "--test_tasks=4",
            "--progress_every_seconds=0.5", f"--output_dir={out}", "--notensorboard"]
    proc = background.popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    lines = []
    for line in proc.stderr:  # the second progress line: tracing done, meta-steps under way
        lines.append(line)
        if "s per meta-step" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    stderr = "".join(lines) + rest
    assert proc.returncode == 128 + signal.SIGINT, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: SIGINT at meta-iteration ") and \
        last.endswith("checkpoint saved; resume with the same command")
    iteration = int(last.split("meta-iteration ")[1].split(":")[0])
    assert iteration > 0 and _checkpoint_numbers(out)[-1] == iteration
    assert "Traceback" not in stderr and not (out / "results.json").exists()


def test_the_meta_test_uses_the_best_validation_weights_not_the_last(tmp_path, monkeypatch):
    from wtl_tf.data.registry import task_distribution
    from wtl_tf import callbacks
    from wtl_tf.meta_test import meta_test

    class FirstValidationIsBest(callbacks.BestCheckpoint):  # the best point is iteration 3
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                super().on_epoch_end(epoch, logs)

    monkeypatch.setattr(callbacks, "BestCheckpoint", FirstValidationIsBest)
    out = tmp_path / "run"
    results, learner = experiment.run(tiny(out, test_tasks=8, outer_lr=0.05))
    assert results["best_validation"]["iteration"] == 3 and results["meta_iterations"] == 6
    config = tiny(out, test_tasks=8, outer_lr=0.05).resolved()
    tasks = task_distribution("sinusoid", ways=1, shots=config.shots, queries=config.queries,
                              seed=0)

    def test_loss():
        _, stats = meta_test(learner, tasks.episodes("test", config.eval_batch_size), 8)
        return stats["loss"][0]

    assert test_loss() == pytest.approx(results["test"]["loss"]["mean"], rel=1e-6)
    experiment.RunCheckpoints(str(out / "checkpoints"), learner).restore()  # iteration 6
    assert int(learner.optimizer.iterations.numpy()) == 6
    assert test_loss() != pytest.approx(results["test"]["loss"]["mean"], rel=1e-3)


def test_sigterm_checkpoints_at_the_step_where_it_arrives(tmp_path, monkeypatch):
    from wtl_tf import callbacks

    guard = callbacks.NonFiniteLossGuard.on_train_batch_end

    def terminate_at_step_2(self, batch, logs=None):  # runs before GracefulInterrupt's hook
        guard(self, batch, logs)
        if int(self.model.optimizer.iterations.numpy()) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(callbacks.NonFiniteLossGuard, "on_train_batch_end", terminate_at_step_2)
    previous = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    with pytest.raises(callbacks.Interrupted, match="SIGTERM at meta-iteration 2: checkpoint "
                                                    "saved; resume with the same command") as e:
        experiment.run(tiny(out, meta_iterations=60, eval_every=50))
    assert e.value.signal_number == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    assert _checkpoint_numbers(out) == [2] and not (out / "results.json").exists()
    monkeypatch.undo()
    results, _ = experiment.run(tiny(out, meta_iterations=60, eval_every=50))
    assert results["resumed_at"] == 2 and results["meta_iterations"] == 60


def test_wtl_export_prints_its_path_and_no_tensorflow_info_lines(tmp_path):
    out = tmp_path / "run"
    experiment.run(tiny(out))
    flags = ["--dataset=sinusoid", "--meta_iterations=6", "--eval_every=3",
             "--validation_tasks=4", "--test_tasks=4", "--meta_batch_size=2",
             "--notensorboard", "--verbose=0", f"--output_dir={out}",
             f"--export_dir={tmp_path / 'export'}"]
    done = subprocess.run([sys.executable, "-m", "wtl_tf.cli.export", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"exported to {tmp_path / 'export'}"
    for noise in ("Assets written", "Sharding callback", "fingerprint", "unsupported characters"):
        assert noise not in done.stderr, done.stderr
