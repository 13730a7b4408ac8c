"""Every flagfile in configs/ runs end to end: meta-training, validation, meta-test, export.

Each runs at its real algorithm, order, meta-batch size, ways, shots and inner steps (train
and evaluation). To keep the suite within its time budget only data are shrunk, as the
design allows: one meta-iteration, one validation, as many validation and test tasks as
one evaluation batch, 1 query per class where the config's episodes allow
(omniglot_alphabets keeps its fixed 15/5 split), 8 filters per conv layer (ResNet-12:
8-16-32-64), 16x16 images (Omniglot from the real archives; miniImageNet from small files
in the published pickle format, 5 classes per split, 6 images each). Inner loops run as tf.while_loops instead of being
unrolled (--unroll_inner_steps=0: the same computation, traced in a fraction of the time).
Omniglot configs use the real archives.
"""

import json
import os
import pickle
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

import train  # noqa: E402
from wtl_tf import experiment  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, "configs"))
                 if f.endswith(".cfg") and ".base." not in f)


@pytest.fixture(scope="module")
def mini_imagenet_dir(tmp_path_factory):
    """mini-imagenet-cache-{train,val,test}.pkl (the published pickle format), 5 classes of
    6 images per split: exactly 5-way 5-shot with 1 query."""
    root = tmp_path_factory.mktemp("mini_imagenet")
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        data, class_dict = [], {}
        for c in range(5):
            wnid = f"n{split[:2]}{c:06d}"
            class_dict[wnid] = list(range(len(data), len(data) + 6))
            data.extend(rng.integers(0, 256, (6, 84, 84, 3), dtype=np.uint8))
        with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": np.stack(data), "class_dict": class_dict}, f)
    return root


@pytest.fixture(autouse=True)
def _clean_flags():
    yield
    flags.FLAGS.unparse_flags()


def _config(cfg, tmp_path, data_dir):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", f"--flagfile={os.path.join(ROOT, 'configs', cfg)}"])
    real = train.config_from_flags().resolved()
    shrink = [f"--output_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'export'}",
              f"--data_dir={data_dir}", "--meta_iterations=1", "--eval_every=1",
              "--conv_channels=8", "--notensorboard", "--verbose=0",
              f"--validation_tasks={real.eval_batch_size}",
              f"--test_tasks={real.eval_batch_size}"]
    if real.unroll_inner_steps is not None:  # MAML family: loops, not unrolled (same results)
        shrink.append("--unroll_inner_steps=0")
    if real.dataset != "omniglot_alphabets":
        shrink.append("--queries=1")
    shrink.append("--image_size=16")
    if real.dataset == "mini_imagenet":
        shrink.append("--data_source=pickle")
    if real.max_train_minutes:
        shrink.append("--max_train_minutes=30")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", f"--flagfile={os.path.join(ROOT, 'configs', cfg)}", *shrink])
    return real, train.config_from_flags().resolved()


@pytest.mark.parametrize("cfg", CONFIGS)
def test_flagfile_runs_end_to_end(cfg, tmp_path, monkeypatch, omniglot_dir, mini_imagenet_dir):
    monkeypatch.chdir(ROOT)  # flagfiles include their base file by a repo-relative path
    data_dir = mini_imagenet_dir if "mini_imagenet" in cfg else omniglot_dir
    real, config = _config(cfg, tmp_path, data_dir)
    for name in ("algorithm", "order", "meta_batch_size", "ways", "shots", "inner_steps",
                 "inner_steps_eval", "update_rules", "model", "adapt", "adapt_batchnorm",
                 "inner_lr", "task_batch", "outer_optimizer", "meta_optimizer"):
        assert getattr(config, name) == getattr(real, name), name  # structure is unchanged
    start = time.perf_counter()
    results, _ = experiment.run(config)
    assert results["meta_iterations"] == 1 and results["stopped_by"] == "iterations"
    assert results["best_validation"]["iteration"] == 1
    test = results["test"]
    assert 0.0 <= test["accuracy"]["mean"] <= 1.0 and np.isfinite(test["loss"]["mean"])
    assert (tmp_path / "export" / "saved_model.pb").exists()
    exported = json.loads((tmp_path / "export" / "wtl_config.json").read_text())
    assert exported["algorithm"] == real.algorithm
    print(f"{cfg}: {time.perf_counter() - start:.1f} s")
