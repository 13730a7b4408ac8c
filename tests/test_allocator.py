"""The heap pad (wtl_tf.allocator): read from the environment, refused in one line when it
cannot be taken, and set by the console commands before TensorFlow loads."""

import os
import subprocess
import sys

import pytest

from wtl_tf import allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("text, mb", [(None, allocator.DEFAULT_TOP_PAD_MB), ("", 64),
                                      (" 0 ", 0), ("256", 256)])
def test_the_environment_chooses_the_pad(text, mb):
    environ = {} if text is None else {allocator.ENVIRONMENT: text}
    assert allocator.requested_pad_mb(environ) == mb


@pytest.mark.parametrize("text", ["64MB", "-1", "1025", "1.5"])
def test_a_pad_that_is_not_a_size_is_refused_in_one_line(text):
    with pytest.raises(allocator.PadError, match="WTL_HEAP_TOP_PAD_MB must be a whole number") as e:
        allocator.requested_pad_mb({allocator.ENVIRONMENT: text})
    assert "\n" not in str(e.value) and repr(text) in str(e.value)


def test_another_c_library_keeps_its_policy_unless_a_pad_is_asked_for(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc_mallopt", lambda: None)
    monkeypatch.delenv(allocator.ENVIRONMENT, raising=False)
    assert allocator.pad_heap_top() == 0
    assert allocator.pad_heap_top(0) == 0
    with pytest.raises(allocator.PadError, match="needs glibc's mallopt"):
        allocator.pad_heap_top(32)
    monkeypatch.setenv(allocator.ENVIRONMENT, "32")
    with pytest.raises(allocator.PadError, match="WTL_HEAP_TOP_PAD_MB=32 needs glibc"):
        allocator.pad_heap_top()


@pytest.mark.skipif(allocator._glibc_mallopt() is None, reason="needs glibc")
def test_glibc_takes_the_pad():
    assert allocator.pad_heap_top(allocator.DEFAULT_TOP_PAD_MB) == allocator.DEFAULT_TOP_PAD_MB


def test_the_console_commands_pad_the_heap_before_tensorflow_loads():
    # Set later, the pad no longer helps: the heaps have taken their shape.
    probe = (
        "import sys\n"
        "from wtl_tf import allocator\n"
        "def pad(mb=None):\n"
        "    print('tensorflow loaded' if 'tensorflow' in sys.modules else 'first')\n"
        "    return 0\n"
        "allocator.pad_heap_top = pad\n"
        "import wtl_tf.cli.train\n"
        "assert 'tensorflow' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["first"]


def test_train_py_refuses_a_bad_pad_before_any_work():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py")], capture_output=True,
                          text=True, cwd=ROOT, timeout=60,
                          env=dict(os.environ, WTL_HEAP_TOP_PAD_MB="lots"))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: WTL_HEAP_TOP_PAD_MB must be a whole number of MB from 0 to 1024, got 'lots': "
        "unset it for 64, or 0 to leave the heap to the C library"]
