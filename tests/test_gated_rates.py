"""The gated per-layer rate link (wtl_tf/rules/gated_rates.py), added in one file.

Its meta-gradient against finite differences, and the whole product path from the
command line: its two flags, refusal where it is not used, the checkpoint, the SavedModel's
masks signature and TensorBoard.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from helpers import sinusoid_batch
from wtl_tf import MetaLearner, models
from wtl_tf.algorithms import build_update_rule
from wtl_tf.rules.gated_rates import GatedRates
from helpers import read_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _query_loss(learner, episodes):
    return float(tf.reduce_sum(learner.evaluate_tasks(episodes)["loss"]))


# Second order over two inner steps is exact; first order is exact for one step (the inner
# gradient at theta does not depend on the rates).
@pytest.mark.parametrize("first_order,steps", [(False, 2), (True, 1)])
def test_gate_meta_gradient_matches_finite_differences(first_order, steps):
    rule = build_update_rule(("gated_rates",), gate_init=0.3, max_rate=0.2)
    learner = MetaLearner(models.mlp(hidden=(5, 5), dtype="float64"), rule, loss="mse",
                          inner_steps=steps, inner_steps_eval=steps, first_order=first_order)
    gate = rule.links[0].gates
    assert gate.shape == (3,)  # dense1, dense2, head: one gate per layer
    episodes = sinusoid_batch(meta_batch=2, shots=5, queries=6, seed=1)
    grads, _ = learner.meta_gradients(episodes)
    analytic = np.asarray(grads[gate.path])
    assert np.all(np.abs(analytic) > 0)
    base, eps = gate.numpy(), 1e-4  # the loss is O(10): smaller steps drown in round-off
    for i in range(3):
        step = np.eye(3)[i] * eps
        gate.assign(base + step)
        plus = _query_loss(learner, episodes)
        gate.assign(base - step)
        minus = _query_loss(learner, episodes)
        gate.assign(base)
        np.testing.assert_allclose(analytic[i], (plus - minus) / (2 * eps), rtol=1e-6)


def test_rates_are_the_gated_maximum_per_layer():
    rule = GatedRates(gate_init=1.5, max_rate=0.05)
    net = models.mlp(hidden=(4,))
    rule.setup(net.trainable_variables)
    factors = rule.factors()
    expected = 0.05 / (1 + np.exp(-1.5))
    assert set(factors) == {v.path for v in net.trainable_variables}
    for path, factor in factors.items():
        np.testing.assert_allclose(np.asarray(factor), expected, rtol=1e-6)


def _train(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_usable_from_the_command_line_checkpointed_exported_and_logged(tmp_path):
    run, export = tmp_path / "run", tmp_path / "export"
    proc = _train("--algorithm=maml", "--update_rules=gated_rates", "--gate_init=-1.0",
                  "--max_rate=0.05", "--meta_iterations=4", "--eval_every=2",
                  "--validation_tasks=4", "--test_tasks=4", "--meta_batch_size=4", "--verbose=0",
                  f"--output_dir={run}", f"--export_dir={export}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert (config["update_rules"], config["gate_init"], config["max_rate"]) == (
        ["gated_rates"], -1.0, 0.05)

    # The checkpoint holds the learner's weights as a list: theta (6 tensors), then the gates.
    reader = tf.train.load_checkpoint(str(run / "checkpoints"))
    shapes = reader.get_variable_to_shape_map()
    gates = [reader.get_tensor(k) for k, shape in shapes.items()
             if k.startswith("weights/") and shape == [3]]
    assert len(gates) == 1, "the gates are not in the checkpoint"
    assert not np.allclose(gates[0], -1.0)  # meta-learned, and saved as such
    assert any(k.startswith("meta_optimizer/") and shape == [3] for k, shape in shapes.items())

    loaded = tf.saved_model.load(str(export))
    masks = loaded.masks()
    factor = masks["factor.head.kernel"].numpy()
    assert 0 < factor.min() <= factor.max() < 0.05

    meta = read_events(str(run / "tensorboard"))["meta"]
    assert "factors/head/kernel" in meta and "meta_parameters/gated_rates/gates" in meta


def test_its_flags_are_refused_where_the_link_is_not_used(tmp_path):
    proc = _train("--algorithm=maml", "--max_rate=0.2", f"--output_dir={tmp_path / 'run'}",
                  cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "train.py: error: --max_rate=0.2 is not read by --algorithm=maml with these settings "
        "(it applies to: link gated_rates); drop it")
