"""Peak memory of a second-order meta-step against the number of inner steps, with and
without recomputation of the inner steps (--recompute_inner_steps).

    python benchmarks/memory.py                             # Conv4 84x84x3, 5-way 5-shot
    python benchmarks/memory.py --model=resnet12 --steps=1,2,4

Each configuration runs in its own process (one traced and executed meta-step, meta-batch 1,
15 queries per class, second-order MAML); its peak resident memory (or the GPU's peak
allocation when a GPU is present) is compared with a process that only builds the learner.
The table shows the growth per inner step: with recomputation it is one copy of the adapted
weights per step (plus one step's activations once), without it every step's activations.
"""

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "conv4", ["conv4", "resnet12"], "task network")
flags.DEFINE_list("steps", ["1", "5", "10", "20", "35"], "inner-step counts measured")
flags.DEFINE_integer("shots", 5, "support images per class (5-way)")
flags.DEFINE_integer("image_size", 84, "image side")
flags.DEFINE_string("child", None, "internal: run one configuration, as JSON")


def child(spec):
    from wtl_tf.runtime import configure_cpu_threads

    configure_cpu_threads("ops", 1)
    import numpy as np
    import tensorflow as tf

    from wtl_tf import MetaLearner, models, rules

    size, ways = spec["image_size"], 5
    shape = (size, size, 3)
    net = (models.resnet12(shape, ways) if spec["model"] == "resnet12"
           else models.conv4(shape, ways))
    learner = MetaLearner(net, rules.chain(rules.Scale(0.01)), inner_steps=max(1, spec["steps"]),
                          recompute_inner_steps=spec["recompute"],
                          unroll_inner_steps=max(40, spec["steps"]))
    learner.compile(optimizer="adam")
    rng = np.random.default_rng(0)
    batch = {"support_x": tf.constant(rng.normal(size=(1, ways * spec["shots"], *shape)),
                                      tf.float32),
             "support_y": tf.constant(np.repeat(np.arange(ways), spec["shots"])[None], tf.int32),
             "query_x": tf.constant(rng.normal(size=(1, ways * 15, *shape)), tf.float32),
             "query_y": tf.constant(np.repeat(np.arange(ways), 15)[None], tf.int32)}
    gpu = bool(tf.config.list_physical_devices("GPU"))
    start = time.perf_counter()
    if spec["steps"]:
        step = tf.function(learner.train_step)
        float(step(batch)["loss"])
    seconds = time.perf_counter() - start
    peak = (tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpu
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"peak_mib": peak, "seconds": seconds, "gpu": gpu}))


def measure(steps, recompute):
    spec = {"model": FLAGS.model, "steps": steps, "recompute": recompute,
            "shots": FLAGS.shots, "image_size": FLAGS.image_size}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={json.dumps(spec)}"],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    if FLAGS.child:
        child(json.loads(FLAGS.child))
        return
    steps = [int(s) for s in FLAGS.steps]
    base = measure(0, False)
    print(f"{FLAGS.model} {FLAGS.image_size}x{FLAGS.image_size}x3, 5-way {FLAGS.shots}-shot, "
          f"15 queries, meta-batch 1, second order; peak {'GPU' if base.get('gpu') else 'RSS'} "
          f"of a process that only builds the learner: {base['peak_mib']:.0f} MiB")
    print("| inner steps | peak over baseline, plain (MiB) | with recomputation (MiB) | "
          "seconds plain | seconds recomputed |\n|---|---|---|---|---|")
    rows = {}
    for k in steps:
        plain, recomputed = measure(k, False), measure(k, True)
        rows[k] = (plain, recomputed)
        cells = []
        for r in (plain, recomputed):
            cells.append(f"{r['peak_mib'] - base['peak_mib']:.0f}" if "peak_mib" in r
                         else f"failed: {r['error'][:60]}")
        times = [f"{r['seconds']:.1f}" if "seconds" in r else "-" for r in (plain, recomputed)]
        print(f"| {k} | {cells[0]} | {cells[1]} | {times[0]} | {times[1]} |", flush=True)
    first, last = steps[0], steps[-1]
    for name, i in (("plain", 0), ("recomputed", 1)):
        a, b = rows[first][i], rows[last][i]
        if "peak_mib" in a and "peak_mib" in b and last > first:
            slope = (b["peak_mib"] - a["peak_mib"]) / (last - first)
            print(f"{name}: {slope:.1f} MiB per additional inner step "
                  f"(from {first} to {last} steps)")


if __name__ == "__main__":
    app.run(main)
