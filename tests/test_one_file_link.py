"""A new inner-loop link is one new file in wtl_tf/rules/: it declares which shared settings
it reads and whether it has meta-parameters, and the command line follows (it accepts
--inner_lr and refuses --meta_lr, which nothing of such a run reads)."""

import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIGN_SGD = '''"""g -> alpha * sign(g): signSGD as an inner-loop link, with no meta-parameters."""

import tensorflow as tf

from wtl_tf.rules.base import UpdateRule, register_link


class SignSGD(UpdateRule):
    def __init__(self, alpha, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def transform(self, grads, params, step):
        return {path: self.alpha * tf.sign(g) for path, g in grads.items()}


register_link("sign_sgd", lambda c, context: SignSGD(c.inner_lr), "alpha * sign(g)",
              reads=("inner_lr",), meta_parameters=False)
'''


def _train(tree, *flags):
    return subprocess.run(
        [sys.executable, "-m", "wtl_tf.cli.train", "--algorithm=maml", "--update_rules=sign_sgd",
         "--meta_iterations=2", "--eval_every=1", "--validation_tasks=4", "--test_tasks=4",
         "--meta_batch_size=2", "--tensorboard=false", *flags],
        capture_output=True, text=True, cwd=tree, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3"))


def test_a_link_in_one_new_file_reads_inner_lr_and_refuses_meta_lr(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(os.path.join(ROOT, "wtl_tf"), tree / "wtl_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "wtl_tf" / "rules" / "sign_sgd.py").write_text(SIGN_SGD)

    run = tmp_path / "run"
    proc = _train(tree, "--inner_lr=0.05", f"--output_dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["update_rules"] == ["sign_sgd"] and config["inner_lr"] == 0.05
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["loss"]["mean"] > 0 and results["sparsity"] is None

    proc = _train(tree, "--inner_lr=0.05", "--meta_lr=0.01", f"--output_dir={tmp_path / 'b'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "train.py: error: --meta_lr=0.01 is not read by --algorithm=maml with these settings "
        "(it applies to: learners with meta-parameters; warp_leap (its warp-layer rate); "
        "La-MAML's eta_alpha; continual_maml's Adam (not sparse_la_maml, whose mask steps at "
        "--mask_lr)); drop it")
