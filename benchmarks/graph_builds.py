"""Builds and runs the compiled meta-step in many fresh processes; prints the failure count.

    python benchmarks/graph_builds.py                       # every configuration, 30 each
    python benchmarks/graph_builds.py --configs=sparse_maml_2nd_mb8 --processes=50
    python benchmarks/graph_builds.py --keras_conv          # the old layer: shows the bug

Why fresh processes: a graph rewrite that depends on heap addresses (TensorFlow's oneDNN
layout pass, see wtl_tf.models.layers.Conv2D) can give a different graph in every process,
so one process proves nothing. Each worker builds the learner exactly as train.py does
(wtl_tf.experiment.build_learner) and runs one meta-step through keras' compiled train
function on episodes of the configuration's real shapes (synthetic pixels: the graph depends
on shapes, not values). `--keras_conv` builds Conv4 from keras.layers.Conv2D instead, the
layer that produced "N nodes in a cycle"; with it the script should report failures on a CPU
where oneDNN is on (TF prints "oneDNN custom operations are on").
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each configuration: ExperimentConfig fields (structure at the reference values).
CONFIGS = {
    "sparse_maml_2nd_mb8": dict(algorithm="sparse_maml", order="second", ways=5, shots=1,
                                queries=15, meta_batch_size=8, inner_steps=1, inner_lr=0.4),
    "sparse_maml_2nd_20way": dict(algorithm="sparse_maml", order="second", ways=20, shots=1,
                                  queries=5, meta_batch_size=4, inner_steps=1, inner_lr=0.1),
    "maml_2nd_mb8": dict(algorithm="maml", order="second", ways=5, shots=1, queries=15,
                         meta_batch_size=8, inner_steps=1, inner_lr=0.4),
    "grad_sharing_2nd": dict(algorithm="grad_sharing", order="second", ways=5, shots=1,
                             queries=15, meta_batch_size=8, inner_steps=2, inner_lr=0.4),
    "warp_leap": dict(algorithm="warp_leap", model="warpgrad_conv4", ways=20, shots=15,
                      queries=5, meta_batch_size=2, inner_steps=3, inner_lr=0.1, task_batch=32,
                      outer_optimizer="sgd", outer_lr=0.1, meta_lr=0.1),
}


def worker(name, keras_conv):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, ROOT)
    import numpy as np
    import tensorflow as tf

    from wtl_tf import experiment, models
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.runtime import configure_cpu_threads

    settings = dict(CONFIGS[name], dataset="omniglot", image_size=28, split=None)
    config = ExperimentConfig(**{k: v for k, v in settings.items() if k != "split"})
    config = config.resolved()
    configure_cpu_threads(config.cpu_threads, config.meta_batch_size)
    if keras_conv:  # the layer of the bug
        import keras

        models.conv4.__globals__["Conv2D"] = keras.layers.Conv2D
        models.warped_conv4.__globals__["Conv2D"] = keras.layers.Conv2D
    Tasks = collections.namedtuple("Tasks", "input_shape outputs loss preprocessing")
    tasks = Tasks((28, 28, 1), config.ways, "cross_entropy", None)
    learner = experiment.build_learner(config, tasks)
    rng = np.random.default_rng(0)
    b, ways = config.meta_batch_size, config.ways

    def labels(n):
        return np.tile(np.repeat(np.arange(ways), n), (b, 1)).astype("int32")

    episodes = {"support_x": rng.random((b, ways * config.shots, 28, 28, 1), "float32"),
                "support_y": labels(config.shots),
                "query_x": rng.random((b, ways * config.queries, 28, 28, 1), "float32"),
                "query_y": labels(config.queries)}
    data = tf.data.Dataset.from_tensors(episodes).repeat(2)
    history = learner.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    loss = history.history["loss"][-1]
    if not np.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss}")
    print(json.dumps({"ok": True, "loss": loss}))


def run_one(name, keras_conv, timeout):
    command = [sys.executable, os.path.abspath(__file__), "--worker", name]
    if keras_conv:
        command.append("--keras_conv")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        return "timeout"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else f"exit code {proc.returncode}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--processes", type=int, default=30, help="fresh processes per config")
    parser.add_argument("--parallel", type=int, default=1, help="processes at a time")
    parser.add_argument("--keras_conv", action="store_true")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.keras_conv)
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, ROOT)
    from benchmarks.hardware import hardware_line

    print(f"hardware: {hardware_line()}; layer: "
          f"{'keras.layers.Conv2D' if args.keras_conv else 'wtl_tf.models.Conv2D'}", flush=True)
    total_failures = 0
    for name in args.configs.split(","):
        start = time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            errors = list(pool.map(lambda _: run_one(name, args.keras_conv, args.timeout),
                                   range(args.processes)))
        failures = [e for e in errors if e]
        total_failures += len(failures)
        print(f"{name}: {len(failures)} failures in {args.processes} fresh processes "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        for error, count in collections.Counter(failures).most_common(3):
            print(f"    {count} x {error}")
    print(f"total_failures={total_failures}")
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
