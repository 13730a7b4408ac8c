"""Ctrl-C and SIGTERM answered within seconds, even inside one long compiled call.

Python runs a signal handler only when the main thread next executes Python code, so a
meta-step compiled into one TensorFlow call (a Warp-Leap step runs for minutes) holds a
Ctrl-C until it returns. `watch()` makes the C-level handler also write the signal's number
to a pipe (`signal.set_wakeup_fd`), read at once by a watcher thread, which gives the main
thread `GRACE_SECONDS` to answer: its handler runs (`answered()`), then a checkpoint at the
step boundary or a stop at once, as before. When it has not answered, the watcher stops
the process itself: it waits for a write in progress to finish (every checkpoint, weight,
JSON and export write holds `writing()`), prints one line and exits with 128 + the signal
number, keeping every checkpoint already written; the unfinished step is lost, as after a
`kill -9`, and the same command resumes from the newest checkpoint.

Only the command-line programs call `watch()`: inside a notebook the watcher would end the
kernel.
"""

import logging
import os
import signal
import sys
import threading
import time

GRACE_SECONDS = 3.0
WATCHED = (signal.SIGINT, signal.SIGTERM)

_writes = threading.RLock()
_held = threading.local()  # how deep this thread is inside writes
_counts = {"received": 0, "answered": 0}
_stopping = threading.Event()
_answer = threading.Condition()
_watcher = {}


class _Writing:
    def __enter__(self):
        _writes.acquire()
        _held.depth = getattr(_held, "depth", 0) + 1

    def __exit__(self, *exc):
        _held.depth -= 1
        _writes.release()
        if _stopping.is_set() and not _held.depth:
            _wait_for_the_end()


def writing():
    """A context held around every write the watcher must never cut in half."""
    return _Writing()


def _wait_for_the_end():
    threading.Event().wait()  # the watcher ends the process


def answered():
    """Called first by a Python-level handler of SIGINT/SIGTERM: the main thread is
    responsive. True when that is too late, the watcher stopping the process: the handler
    then does nothing, so that a write in progress finishes (its end waits for the end);
    outside a write this waits for the end itself."""
    if _stopping.is_set():
        if not getattr(_held, "depth", 0):
            _wait_for_the_end()
        return True
    with _answer:
        _counts["answered"] += 1
        _answer.notify_all()
    return False


def watch(program="train.py"):
    """Starts the watcher (once per process; from the main thread, before handlers run)."""
    if _watcher or threading.current_thread() is not threading.main_thread():
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    thread = threading.Thread(target=_watch, args=(read_end, program), daemon=True,
                              name="signal-watch")
    _watcher["thread"] = thread
    thread.start()


def _watch(read_end, program):
    while True:
        for signum in os.read(read_end, 64):
            if signum not in WATCHED:
                continue
            with _answer:
                _counts["received"] += 1
                wanted = _counts["received"]
                deadline = time.monotonic() + GRACE_SECONDS
                while _counts["answered"] < wanted and time.monotonic() < deadline:
                    _answer.wait(deadline - time.monotonic())
                if _counts["answered"] >= wanted:
                    continue
            _stop(signum, program)


def _stop(signum, program):
    _stopping.set()
    _writes.acquire()  # a checkpoint being written is finished first; none starts after
    name = signal.Signals(signum).name
    line = (f"{program}: {name}: stopped inside a compiled step that had not returned after "
            f"{GRACE_SECONDS:g} s; the checkpoints already written are kept (resume with the "
            "same command)\n")
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.write(2, line.encode())
    os._exit(128 + signum)


def exit_now(code):
    """Ends the process once its output is flushed, without the interpreter's teardown of
    TensorFlow (seconds to tens of seconds on a loaded machine): for a run that has saved
    everything and has only to stop."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
