"""A full disk mid-run: one line naming the directory and the space needed, the newest
complete checkpoint intact byte for byte, and the same command resuming once there is room
(the failing write is injected: the second checkpoint dies half-written)."""

import errno
import os

import pytest

from wtl_tf import checkpoints, experiment
from wtl_tf.config import ExperimentConfig
from wtl_tf.run_directory import DiskFullError

SHORT = dict(meta_iterations=4, eval_every=2, validation_tasks=2, test_tasks=2,
             tensorboard=False, verbose=0)


def _files(directory):
    return {name: open(os.path.join(directory, name), "rb").read()
            for name in sorted(os.listdir(directory)) if name.startswith("ckpt-")}


def test_disk_full_keeps_the_newest_checkpoint_and_the_rerun_resumes(tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = ExperimentConfig(output_dir=str(out), **SHORT)
    real_save, calls, kept = checkpoints.RunCheckpoints.save, [], {}

    def save_until_full(self, *args, **kwargs):
        calls.append(self.iteration)
        if len(calls) == 1:
            return real_save(self, *args, **kwargs)
        kept.update(_files(self.directory))
        with open(os.path.join(self.directory, f"ckpt-{self.iteration}.data-00000-of-00001"),
                  "wb") as f:
            f.write(b"half a shard")  # what a full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.RunCheckpoints, "save", save_until_full)
    with pytest.raises(DiskFullError) as caught:
        experiment.run(config)
    message = str(caught.value)
    assert "\n" not in message
    assert f"no space left on the device of {out}" in message
    assert "MiB more are needed" in message and "checkpoint 2 is kept" in message
    after = _files(out / "checkpoints")
    assert kept and all(after[name] == data for name, data in kept.items())
    assert not (out / "results.json").exists()

    monkeypatch.setattr(checkpoints.RunCheckpoints, "save", real_save)  # space freed
    results, _ = experiment.run(config)
    assert results["resumed_at"] == 2 and (out / "results.json").exists()


def test_a_disk_too_full_for_the_best_weights_is_one_line(tmp_path, monkeypatch, capfd):
    from wtl_tf import run_directory

    out = tmp_path / "run"
    monkeypatch.setattr(run_directory, "free_bytes", lambda directory: 4096)
    with pytest.raises(DiskFullError) as caught:
        experiment.run(ExperimentConfig(output_dir=str(out), **SHORT))
    message = str(caught.value)
    assert "\n" not in message and f"no space left on the device of {out}" in message
    assert not any("partial" in name for name in os.listdir(out))
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture
def full_filesystem(tmp_path):
    """A 1 MiB tmpfs filled to the last byte (needs the right to mount; else skipped)."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_h5py_failing_on_a_full_disk_leaves_no_partial_file_and_no_traceback(
        full_filesystem, monkeypatch, capfd):
    import gc

    import keras

    from wtl_tf import run_directory

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(500)])
    monkeypatch.setattr(run_directory, "free_bytes", lambda directory: 1 << 40)  # h5py's turn
    path = str(full_filesystem / "best.weights.h5")
    with pytest.raises(OSError) as caught:
        run_directory.write_weights_atomic(model, path)
    gc.collect()
    assert run_directory.disk_full_error(caught.value, str(full_filesystem)) is not None
    assert sorted(os.listdir(full_filesystem)) == ["filler"]
    assert "Traceback" not in capfd.readouterr().err
