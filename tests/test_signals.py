"""SIGINT/SIGTERM: before a run has anything to save they stop it at once, in one line; a
second Ctrl-C while a checkpoint is pending does too (never an 80-line KeyboardInterrupt)."""

import os
import signal

import pytest

from wtl_tf.callbacks import GracefulInterrupt, Interrupted, StopAtOnce
from wtl_tf.continual.machinery import Signals


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


def test_a_continual_run_stops_at_once_before_its_first_step_and_waits_after():
    with Signals() as signals:
        with pytest.raises(Interrupted, match="SIGTERM: stopped at once"):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000_000):
                pass
        signals.armed = True  # the stream runs: the next step boundary checkpoints
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == signal.SIGTERM
        with pytest.raises(Interrupted, match="SIGINT: stopped at once"):  # a second Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000_000):
                pass


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
