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
