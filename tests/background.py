"""Tests whose bodies only drive subprocesses (kill a run and rerun it, two cooperating
workers) run one after another in a background thread from the moment the suite's tests are
selected (tests/conftest.py): the main process goes on with other tests meanwhile, since
waiting on a child costs it nothing. The collected test joins its body and re-raises what it
raised, assertion errors included; run alone (pytest -k), it runs the body itself.

    @background.test()
    def test_sigkill_then_rerun_resumes(tmp_path, omniglot_dir):
        ...  # asserts as any test does; starts its processes with background.popen

    @background.test(params={"la": (LA_OPTIONS,), "osaka": (OSAKA_OPTIONS,)})
    def test_kill_9_mid_stream(tmp_path, omniglot_dir, options): ...

`popen` nices a body's processes below the main process and above the flagfile workers, and
kills them if the session ends first."""

import os
import pathlib
import shutil
import subprocess
import tempfile
import threading

import pytest

_SCENARIOS = {}  # (test module, test name with its case) -> _Scenario, in definition order
_PROCESSES = []
_STATE = {"thread": None, "stopping": False}
_LOCK = threading.Lock()
NICENESS = 3


class _Scenario:
    def __init__(self, function, args):
        self.function, self.args = function, args
        self.done = threading.Event()
        self.claimed = False  # by the background thread or by the test itself
        self.error = None

    def claim(self):
        with _LOCK:
            claimed, self.claimed = self.claimed, True
        return not claimed

    def run(self, omniglot_dir):
        directory = pathlib.Path(tempfile.mkdtemp(prefix="wtl-scenario-"))
        try:
            self.function(directory, omniglot_dir, *self.args)
        except BaseException as e:  # noqa: BLE001 - re-raised by the test that joins it
            self.error = e
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            self.done.set()


def test(params=None):
    """Registers the decorated body(tmp_path, omniglot_dir, *params[id]) and returns the test
    pytest collects in its place (parametrized by the ids of `params`)."""
    def register(body):
        module = body.__module__
        for case, args in (params or {None: ()}).items():
            _SCENARIOS[(module, body.__name__ if case is None else f"{body.__name__}[{case}]")] = \
                _Scenario(body, args)

        if params is None:
            def collected(omniglot_dir):
                result((module, body.__name__), omniglot_dir)
        else:
            @pytest.mark.parametrize("case", list(params))
            def collected(omniglot_dir, case):
                result((module, f"{body.__name__}[{case}]"), omniglot_dir)
        collected.__name__ = collected.__qualname__ = body.__name__
        collected.__doc__, collected.__module__ = body.__doc__, module
        return collected
    return register


def popen(args, niceness=NICENESS, **kwargs):
    """subprocess.Popen for a scenario's processes: niced, and killed by `stop`. Niced by the
    `nice` command, not a preexec_fn: Python code run between fork and exec in this threaded
    process can deadlock the child on a lock another thread held at the fork."""
    proc = subprocess.Popen(["nice", "-n", str(niceness), *args], **kwargs)
    _PROCESSES.append(proc)
    return proc


def start(selected, omniglot_dir):
    """Runs the bodies of the selected (module, test name) pairs in one thread, in order."""
    chosen = [s for key, s in _SCENARIOS.items() if key in selected]
    if not chosen or _STATE["thread"] is not None:
        return

    def work():
        for s in chosen:
            if _STATE["stopping"]:
                return
            if s.claim():
                s.run(omniglot_dir)

    _STATE["thread"] = threading.Thread(target=work, name="test-scenarios", daemon=True)
    _STATE["thread"].start()


def result(key, omniglot_dir):
    """Waits for the body of the test `key` (running it here if nothing started it) and
    re-raises its exception."""
    s = _SCENARIOS[key]
    if s.claim():
        s.run(omniglot_dir)
    s.done.wait()
    if s.error is not None:
        raise s.error


def kill(processes, directory=None):
    """Kills whichever of `processes` still run and removes `directory` (the session ends)."""
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def stop():
    _STATE["stopping"] = True
    kill(_PROCESSES)
    if _STATE["thread"] is not None:
        _STATE["thread"].join(timeout=30)
