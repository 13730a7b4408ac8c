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
