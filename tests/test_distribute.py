"""tf.distribute: a mirrored meta-step equals the single-device one; two workers on localhost."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

import background

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)


def test_mirrored_meta_step_on_two_logical_cpus_equals_single_device(tmp_path):
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from wtl_tf.distribute import make_strategy
        from wtl_tf.runtime import configure_cpu_threads
        configure_cpu_threads("tasks", 4)
        strategy = make_strategy("mirrored", cpu_replicas=2)
        import keras, tensorflow as tf
        from wtl_tf.data.registry import task_distribution
        from wtl_tf import MetaLearner, models, rules
        from wtl_tf.distribute import distributed_episodes
        assert strategy.num_replicas_in_sync == 2

        def learner(rule, first_order):
            keras.utils.set_random_seed(3)
            net = models.conv4((8, 8, 1), 1, channels=4, blocks=2)  # BatchNorm included
            model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(16),
                                      keras.layers.Reshape((4, 4, 1)), keras.layers.UpSampling2D(2),
                                      net])
            m = MetaLearner(model, rule, loss="mse", inner_steps=2, first_order=first_order)
            # SGD, not Adam: Adam turns the float noise of exactly-zero gradients (conv biases
            # before BatchNorm) into full-size steps, which would hide the comparison.
            m.compile(optimizer=keras.optimizers.SGD(1e-3), meta_optimizer=keras.optimizers.SGD(1e-3))
            return m

        tasks = task_distribution("sinusoid", ways=1, shots=5, queries=5, seed=0)
        arrays = {{}}
        for name, make_rule, first_order in (
                ("sparse_fo", lambda: rules.chain(rules.BinaryMask(), rules.Scale(0.05)), True),
                ("maml_so", lambda: rules.chain(rules.Scale(0.05)), False)):
            single = learner(make_rule(), first_order)
            single.fit(tasks.episodes("train", 4), steps_per_epoch=3, epochs=1, verbose=0)
            with strategy.scope():
                mirrored = learner(make_rule(), first_order)
            mirrored.fit(distributed_episodes(strategy, tasks, "train", 4), steps_per_epoch=3,
                         epochs=1, verbose=0)
            assert int(mirrored.optimizer.iterations.numpy()) == 3
            for i, (a, b) in enumerate(zip(single.weights, mirrored.weights)):
                arrays[f"{{name}}_single_{{i}}"] = a.numpy()
                arrays[f"{{name}}_mirrored_{{i}}"] = b.numpy()
        np.savez(sys.argv[1], **arrays)
        print("replicas", strategy.num_replicas_in_sync)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "w.npz")],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replicas 2" in proc.stdout
    weights = np.load(tmp_path / "w.npz")
    singles = [k for k in weights.files if "_single_" in k]
    assert len(singles) > 20
    for key in singles:
        np.testing.assert_allclose(weights[key.replace("_single_", "_mirrored_")], weights[key],
                                   rtol=1e-4, atol=1e-5, err_msg=key)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@background.test()
def test_two_worker_run_on_localhost_trains_and_checkpoints_once(tmp_path, omniglot_dir):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    out = tmp_path / "run"
    procs = []
    for index in range(2):
        env = dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": index}}))
        procs.append(background.popen(
            [sys.executable, os.path.join(ROOT, "train.py"), "--distribution=multi_worker",
             "--meta_batch_size=4", "--meta_iterations=20", "--eval_every=10",
             "--validation_tasks=8", "--test_tasks=20", f"--output_dir={out}"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["meta_iterations"] == 20
    checkpoints = sorted(f for f in os.listdir(out / "checkpoints") if f.endswith(".index"))
    assert checkpoints == ["ckpt-10.index", "ckpt-20.index"]
    assert "meta-test" in outputs[0][0]  # the chief reports
