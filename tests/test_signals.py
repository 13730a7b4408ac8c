"""SIGINT/SIGTERM: before a run has anything to save they stop it at once, in one line; a
second Ctrl-C while a checkpoint is pending does too (never an 80-line KeyboardInterrupt)."""

import os
import signal
import types

import pytest

import tensorflow as tf

from wtl_tf.callbacks import GracefulInterrupt, Interrupted, StopAtOnce
from wtl_tf.continual.checkpoints import StreamRunState
from wtl_tf.continual.learner import StreamLearner
from wtl_tf.continual.machinery import checkpoint_cadence, fit_stream


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_set_up_stops_at_once_in_one_line(signum):
    with pytest.raises(Interrupted) as caught:
        with StopAtOnce():
            os.kill(os.getpid(), signum)
            for _ in range(10_000_000):  # stands for building a stream: no step boundary
                pass
    assert caught.value.signal_number == signum
    assert "stopped at once" in str(caught.value) and "\n" not in str(caught.value)
    assert signal.getsignal(signal.SIGTERM) is not StopAtOnce  # handlers given back


class _Summing(StreamLearner):
    """A stream learner that adds up its stream and is sent SIGTERM during its third step."""

    def __init__(self):
        super().__init__("summing")
        self.total = tf.Variable(0, dtype=tf.int64)

    def learn(self, batch):
        self.total.assign_add(batch)
        if self.position == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return {"loss": 1.0}

    def checkpoint_variables(self):
        return [self.total]


def test_a_stream_run_checkpoints_at_the_next_step_boundary_and_resumes_there(tmp_path):
    config = types.SimpleNamespace(checkpoint_every_minutes=60, verbose=0,
                                   progress_every_seconds=60)
    learner = _Summing()
    run_state = StreamRunState(str(tmp_path), learner)
    periodic = checkpoint_cadence(run_state, run_state.restore(), config)
    with StopAtOnce():  # as train.py: the stream's fit installs its own handlers inside
        with pytest.raises(Interrupted, match="^SIGTERM at stream step 3: checkpoint saved; "
                                              "resume with the same command$"):
            fit_stream(learner, tf.data.Dataset.range(10), 10, periodic, config)
    resumed = _Summing()
    assert StreamRunState(str(tmp_path), resumed).restore() is not None
    assert resumed.position == 3 and int(resumed.total.numpy()) == 0 + 1 + 2
    run_state = StreamRunState(str(tmp_path), resumed)
    periodic = checkpoint_cadence(run_state, run_state.restore(), config)
    fit_stream(resumed, tf.data.Dataset.range(resumed.position, 10), 10, periodic, config)
    assert resumed.position == 10 and int(resumed.total.numpy()) == sum(range(10))


def test_a_second_ctrl_c_during_training_stops_at_once():
    saved = []
    interrupt = GracefulInterrupt(lambda: saved.append(True))
    interrupt.on_train_begin()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.received == signal.SIGINT and not saved
        with pytest.raises(Interrupted, match="SIGINT: stopped at once; the checkpoints "
                                              "already written are kept"):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000_000):
                pass
    finally:
        interrupt.on_train_end()


_BLOCKED_IN_ONE_CALL = r"""
import sys, time
import tensorflow as tf
from wtl_tf import signal_watch
from wtl_tf.callbacks import StopAtOnce

@tf.function
def spin(n, ready=False):  # one compiled call that runs for seconds: the main thread stays
    if ready:              # in it (no Python of its own) until it returns
        said = tf.py_function(lambda: print("ready", flush=True) or 0, [], tf.int32)
        n = n + 0 * said   # the loop starts once the call has said so
    return tf.while_loop(lambda i, x: i < n, lambda i, x: (i + 1, tf.sin(x) + 1.0),
                         (tf.constant(0), tf.constant(0.0)))[1]

spin(tf.constant(10))  # traced
signal_watch.GRACE_SECONDS = 0.5  # the write below outlasts it
signal_watch.watch("probe")
with StopAtOnce():
    with signal_watch.writing():  # a checkpoint being written when the signal comes
        spin(tf.constant(2_000_000), ready=True)
        open(sys.argv[1], "w").write("complete")
    spin(tf.constant(400_000_000))  # minutes: the watcher must not wait for it
print("returned", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_a_long_compiled_call_stops_within_seconds_after_a_pending_write(
        tmp_path, signum):
    import subprocess
    import sys
    import time

    written = tmp_path / "checkpoint"
    proc = subprocess.Popen([sys.executable, "-c", _BLOCKED_IN_ONE_CALL, str(written)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.stdout.readline().strip() == "ready"
    sent = time.monotonic()
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    waited = time.monotonic() - sent
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert "returned" not in stdout
    assert written.read_text() == "complete"  # the write in progress was finished
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == (
        f"probe: {name}: stopped inside a compiled step that had not returned after "
        "0.5 s; the checkpoints already written are kept (resume "
        "with the same command)")
    assert waited < 100  # not the minutes of the second call


def test_the_first_step_reports_how_far_it_is_while_it_runs(monkeypatch):
    import threading

    from wtl_tf.callbacks import ProgressLog

    lines, finish = [], threading.Event()
    learner = types.SimpleNamespace(progress_unit="meta-iteration", step_name="meta-step",
                                    step_progress=lambda: 0.25, iteration=lambda: 0)
    log = ProgressLog(1000, log=lambda text, *args: (lines.append(text % args),
                                                     len(lines) >= 2 and finish.set()))
    log.FIRST_STEP_LINES = (0.05, 0.05)
    log.set_model(learner)
    monkeypatch.setattr("wtl_tf.callbacks.current_step", lambda model: 0)
    log.on_train_begin()
    assert finish.wait(30)
    log.on_train_end()
    assert lines[0].startswith("meta-iteration 1/1000: the first meta-step (tracing included) "
                               "has run ")
    assert lines[0].endswith("% done, about 0.0 min to go") and "; 25% done" in lines[0]
