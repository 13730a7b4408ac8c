"""Meta-gradients of a meta-batch: a tf.while_loop over tasks against tf.vectorized_map.

    python benchmarks/task_vectorization.py               # sinusoid, sparse-MAML, second order

The Finn et al. sinusoid setting (MLP 1-40-40-1, 10 shots, 10 queries, meta-batch 25, one
inner step of 0.01 through a learned binary mask, second order). Both variants are compiled
and timed in the same run, alternating, each --repeats times over --calls meta-gradient
computations; medians are reported with their ratio, and the two gradients are compared.
The last line is `speedup=<looped / vectorized>`.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks.hardware import cpu_name  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("meta_batch_size", 25, "tasks per meta-batch")
flags.DEFINE_integer("inner_steps", 1, "inner steps")
flags.DEFINE_integer("repeats", 7, "timed repeats per variant (median reported)")
flags.DEFINE_integer("calls", 100, "meta-gradient computations per timed repeat")


def main(argv):
    del argv
    from wtl_tf.runtime import configure_cpu_threads, cpu_count

    policy = configure_cpu_threads("auto", FLAGS.meta_batch_size)
    import tensorflow as tf

    from wtl_tf.data.registry import task_distribution
    from wtl_tf import MetaLearner, models, rules

    tasks = task_distribution("sinusoid", ways=1, shots=10, queries=10, seed=0)
    batch = next(iter(tasks.episodes("train", FLAGS.meta_batch_size)))
    learner = MetaLearner(models.mlp(), rules.chain(rules.BinaryMask(), rules.Scale(0.01)),
                          loss="mse", inner_steps=FLAGS.inner_steps)
    compiled = {}
    for vectorized in (False, True):
        learner.vectorize_tasks = vectorized
        compiled[vectorized] = tf.function(lambda b: list(learner.meta_gradients(b)[0].values()))
        compiled[vectorized].get_concrete_function(batch)  # traced with this setting
    gradients = {v: f(batch) for v, f in compiled.items()}
    difference = max(float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(a)) + 1e-30))
                     for a, b in zip(gradients[False], gradients[True]))

    def per_call_seconds(f):
        start = time.perf_counter()
        for _ in range(FLAGS.calls):
            out = f(batch)
        out[0].numpy()
        return (time.perf_counter() - start) / FLAGS.calls

    times = {False: [], True: []}
    for _ in range(FLAGS.repeats):  # alternate, so drifting machine load hits both alike
        for v, f in compiled.items():
            times[v].append(per_call_seconds(f))
    import numpy as np

    looped, vectorized = (float(np.median(times[v])) for v in (False, True))
    print(f"hardware: {cpu_name()}, {cpu_count()} cores; TensorFlow {tf.__version__}; "
          f"thread policy: {policy}")
    print(f"sinusoid sparse-MAML, meta-batch {FLAGS.meta_batch_size}, {FLAGS.inner_steps} inner "
          f"step(s), second order; median of {FLAGS.repeats} x {FLAGS.calls} meta-gradients")
    print(f"tf.while_loop over tasks:  {1000 * looped:.2f} ms per meta-gradient")
    print(f"tf.vectorized_map:         {1000 * vectorized:.2f} ms per meta-gradient")
    print(f"largest relative gradient difference: {difference:.1e}")
    print(f"speedup={looped / vectorized:.2f}")


if __name__ == "__main__":
    app.run(main)
