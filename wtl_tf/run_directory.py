"""A run's output directory as a transaction: one writer at a time, resumes that cannot
silently change what is being trained, an export path that cannot destroy anything.

    with RunLock(output_dir):          # a second run on the directory fails at once
        ExportLock(export_dir)         # ... and a second run exporting to the same path
        check_resume_of(output_dir, config, stored)  # a changed training setting is refused
        check_export_dir(export_dir, output_dir)   # before any training
"""

import errno
import fcntl
import gc
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from wtl_tf import settings, signal_watch
from wtl_tf.errors import ConfigError, WtlError

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"

# Settings that may differ when a run resumes: budgets and what happens after training.
# Everything else shapes the training trajectory and must match the saved run.
def changeable_on_resume():
    """Settings a resumed run may change (declared `resumable`: budgets, output, runtime)."""
    return settings.resumable()


def _readable(path):
    """Output files get the permissions of any tool's output (0644 under umask 022);
    tempfile.mkstemp creates them private (0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_text_atomic(path, text):
    """Writes `path` so that readers see either the old file or the complete new one."""
    with signal_watch.writing():
        _write_text_atomic(path, text)


def _write_text_atomic(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    _readable(tmp)
    os.replace(tmp, path)


def write_json_atomic(path, payload):
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True))


class RunLock:
    """An exclusive lock on an output directory, held for the whole run.

    flock(2): the kernel releases it when the process ends, however it ends (kill -9
    included), so a stale lock never blocks a resume. The lock file names its holder."""

    def __init__(self, output_dir):
        self.path = os.path.join(output_dir, LOCK_FILE)
        self.fd = None

    def busy(self, holder):
        return (f"output directory {os.path.dirname(self.path)!r} is in use by {holder}; wait "
                "for that run to finish or choose another --output_dir")

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.lseek(fd, 0, os.SEEK_SET)
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(self.busy(holder)) from None
        os.ftruncate(fd, 0)
        os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')} "
                      f"({' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]})"
                      ).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class ExportLock(RunLock):
    """The same lock on an export path, for the whole run that will write it: two runs
    exporting to one path at once would leave one results.json naming the other's model. The
    lock file is a hidden sibling (`.NAME.lock`): the export directory itself is replaced."""

    def __init__(self, export_dir):
        target = os.path.abspath(export_dir)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self.export_dir = export_dir
        self.path = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.lock")
        self.fd = None

    def busy(self, holder):
        return (f"--export_dir {self.export_dir!r} is being written by {holder}; wait for that "
                "run to finish or choose another --export_dir")


def saved_config(output_dir):
    """config.json of a run directory (None when there is none); one that cannot be read is
    a ConfigError: a resume must never guess the settings it continues."""
    path = os.path.join(output_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e).splitlines()[0][:80]
        raise _ConfigUnreadable(path, reason) from None
    return saved


class _ConfigUnreadable(Exception):
    def __init__(self, path, reason):
        super().__init__(path, reason)
        self.path, self.reason = path, reason


def check_resume_of(output_dir, config, stored):
    """Refuses to resume the run in `output_dir` (it holds checkpoints) unless `config` keeps
    its training settings, as recorded both in config.json and inside the newest checkpoint
    (`stored`): deleting or truncating config.json cannot switch the check off."""
    try:
        saved = saved_config(output_dir)
    except _ConfigUnreadable as e:
        keep = ("delete it to resume under the settings its checkpoints hold" if stored else
                "restore it from a copy")
        raise ConfigError(f"{e.path} cannot be read ({e.reason}), so a resume cannot be "
                          f"checked against the run's settings: {keep}, or start afresh with "
                          "another --output_dir") from None
    if saved is None and stored is None:
        raise ConfigError(f"{output_dir!r} holds checkpoints but no record of their settings "
                          "(no config.json, none inside the checkpoints): restore its "
                          "config.json, or start afresh with another --output_dir")
    for settings_of_run in (stored, saved):
        if settings_of_run is not None:
            check_resume(settings_of_run, config)


def check_resume(saved, config):
    """Refuses to resume a run whose training settings changed; names each one."""
    changed, changeable = [], changeable_on_resume()
    for name, value in config.items():
        if name in changeable or name not in saved:
            continue
        before = saved[name]
        if isinstance(value, (list, tuple)) or isinstance(before, (list, tuple)):
            same = list(value or []) == list(before or [])
        else:
            same = value == before
        if not same:
            changed.append(f"--{name} (saved {before!r}, now {value!r})")
    if changed:
        raise ConfigError(
            "this --output_dir holds a run with other settings: " + ", ".join(changed)
            + "; resume with the saved values (see its config.json), or start a new run with "
            "another --output_dir. May change on resume: "
            + ", ".join(f"--{n}" for n in changeable))


def is_export(path):
    """True for a directory written by wtl_tf.export (it may be replaced)."""
    return (os.path.isfile(os.path.join(path, "wtl_config.json"))
            and os.path.isfile(os.path.join(path, "saved_model.pb")))


def check_export_dir(export_dir, output_dir=None):
    """Refuses an export path that cannot be written or whose contents we did not write."""
    target = os.path.abspath(export_dir)
    if output_dir is not None:
        run = os.path.abspath(output_dir)
        if target == run or run.startswith(target + os.sep):
            raise ConfigError(f"--export_dir {export_dir!r} would replace the run directory "
                              f"{output_dir!r} (its checkpoints and logs); choose a separate "
                              "path, e.g. --export_dir=" + os.path.join(output_dir, "export"))
    if os.path.lexists(target):
        if not os.path.isdir(target):
            raise ConfigError(f"--export_dir {export_dir!r} exists and is not a directory; "
                              "choose a new path")
        if os.listdir(target) and not is_export(target):
            raise ConfigError(f"--export_dir {export_dir!r} holds files that are not a wtl_tf "
                              "export; an export replaces its directory, so choose a new or "
                              "empty path")
    parent = os.path.dirname(target)
    existing = parent
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--export_dir {export_dir!r} cannot be created: {existing!r} is a "
                          "file; choose another path")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"--export_dir {export_dir!r} cannot be created: {existing!r} is not "
                          "writable; choose another path")


class DiskFullError(WtlError):
    """The output directory's device filled up; the newest complete checkpoint is intact."""


def _is_disk_full(error):
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error)
    return "No space left on device" in text or "ENOSPC" in text


def disk_full_error(error, output_dir):
    """A one-line DiskFullError for `error` when it is the disk filling up, else None."""
    if not _is_disk_full(error):
        return None
    checkpoints = os.path.join(output_dir, "checkpoints")
    newest, size = None, 0
    if os.path.isdir(checkpoints):
        names = os.listdir(checkpoints)
        complete = [int(m.group(1)) for m in map(re.compile(r"^ckpt-(\d+)\.index$").match,
                                                 names) if m]  # the index is written last
        if complete:
            newest = max(complete)
            size = sum(os.path.getsize(os.path.join(checkpoints, n)) for n in names
                       if n.startswith(f"ckpt-{newest}."))
    free = shutil.disk_usage(output_dir).free if os.path.isdir(output_dir) else 0
    needed = max(2 * size, 16 << 20)  # the next checkpoint beside the last, and the logs
    kept = (f"checkpoint {newest} is kept" if newest is not None else
            "no checkpoint had been written")
    return DiskFullError(f"no space left on the device of {output_dir} ({free / 2**20:.0f} MiB "
                         f"free; about {needed / 2**20:.0f} MiB more are needed): {kept}; free "
                         "space and rerun the same command to resume")


def free_bytes(directory):
    return shutil.disk_usage(directory).free


def write_weights_atomic(model, path):
    """`model.save_weights(path)` through a sibling partial file renamed into place, with a
    full disk one OSError(ENOSPC) for `disk_full_error`: refused before writing when the
    weights cannot fit, and otherwise h5py's failure with its partial file removed and the
    tracebacks its half-closed handles print on collection dropped."""
    directory = os.path.dirname(os.path.abspath(path))
    needed = sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in model.weights)
    needed += 1 << 20  # HDF5's layout and names
    free = free_bytes(directory)
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device: {free} bytes free, {needed} "
                                    f"needed to write {path}")
    partial = path[:-len(".weights.h5")] + ".partial.weights.h5"
    hook = sys.unraisablehook

    def quiet_when_full(unraisable):
        if not _is_disk_full(unraisable.exc_value):
            hook(unraisable)

    sys.unraisablehook = quiet_when_full
    try:
        with signal_watch.writing():
            model.save_weights(partial)
            os.replace(partial, path)
    except BaseException:
        gc.collect()  # h5py's handles close (and complain) now, while the hook is quiet
        if os.path.exists(partial):
            os.remove(partial)
        raise
    finally:
        sys.unraisablehook = hook


def prepare_output_dir(path):
    """Creates `path` and proves it writable, or raises ConfigError naming the fix."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"output directory {path!r} is not writable ({e.strerror or e}); "
                          "choose another --output_dir") from None
