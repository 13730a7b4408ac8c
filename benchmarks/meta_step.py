"""Seconds per compiled meta-step, first-trace time, peak memory and FLOP efficiency.

    python benchmarks/meta_step.py --config=omniglot
    python benchmarks/meta_step.py --config=sparse_maml_mini [--torch_reference]

omniglot          Conv4 28x28x1, 5-way 1-shot, 15 queries, meta-batch 32, 1 inner step,
                  second order (MAML)
sparse_maml_mini  Conv4 84x84x3, 5-way 5-shot, 15 queries, meta-batch 2, 35 inner steps,
                  first order, sparse-MAML

The same work as the PyTorch reference: the same images, layers, BatchNorm and gradients.
Every number is the median of --repeats runs; the hardware reference (3x3 conv throughput)
and, with --torch_reference, the PyTorch implementation are measured in the same run.
The last line is `median_s_per_meta_step=<seconds>`.
"""

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks.hardware import cpu_name, peak_rss_mib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("config", "omniglot", ["omniglot", "sparse_maml_mini", "resnet12_5shot"],
                  "benchmark setting")
flags.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"],
                  "compute the task network in this precision (weights stay float32)")
flags.DEFINE_integer("repeats", 7, "timed meta-steps (median reported)")
flags.DEFINE_enum("cpu_threads", "auto", ["auto", "tasks", "ops", "default"], "CPU threading")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the meta-step")
flags.DEFINE_bool("torch_reference", False, "also time the PyTorch reference (needs torch)")
flags.DEFINE_string("json_out", None, "also write the numbers to this JSON file")
flags.DEFINE_integer("unroll_inner_steps", None, "inner loops up to this length are unrolled "
                     "(default: the library's, wtl_tf.inner_options.default_unroll)")
flags.DEFINE_string("profile_dir", None, "write a TensorFlow profile of two meta-steps here")
flags.DEFINE_string("omniglot_dir", os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "..", "shared", "data", "omniglot"),
    "Omniglot archives for the episode-pipeline measurement (omniglot config)")
flags.DEFINE_integer("log_every", 500, "meta-iterations between TensorBoard summaries, for the "
                     "logging-overhead estimate")

CONFIGS = {
    "omniglot": dict(image=(28, 28, 1), ways=5, shots=1, queries=15, meta_batch=32, steps=1,
                     order="second", algorithm="maml", alpha=0.4, conv_probe=(75, 14, 64),
                     reference_s=2.5),
    "sparse_maml_mini": dict(image=(84, 84, 3), ways=5, shots=5, queries=15, meta_batch=2,
                             steps=35, order="first", algorithm="sparse_maml", alpha=0.25,
                             conv_probe=(25, 42, 64), reference_s=23.7),
    # The sparse-MAML reference's ResNet-12 runs: 35 steps, meta-batch 1, first order,
    # BatchNorm out of the inner loop (meant for GPUs: ~9 TFLOP per meta-step).
    "resnet12_5shot": dict(image=(84, 84, 3), ways=5, shots=5, queries=15, meta_batch=1,
                           steps=35, order="first", algorithm="sparse_maml", alpha=0.05,
                           conv_probe=(25, 42, 64), reference_s=None, model="resnet12",
                           adapt_batchnorm=False),
}


class GpuUtilisation:
    """Samples nvidia-smi's utilization.gpu every 0.2 s while the block runs."""

    def __init__(self, enabled):
        self.enabled, self.samples = enabled, []

    def __enter__(self):
        import threading

        self._stop = threading.Event()
        if self.enabled:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.2):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True,
                                     text=True, timeout=5).stdout.split()
                self.samples.append(float(out[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    def __exit__(self, *exc):
        self._stop.set()
        if self.enabled:
            self._thread.join()

    @property
    def mean(self):
        return sum(self.samples) / len(self.samples)


def synthetic_episodes(spec, seed=0):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    b, ways = spec["meta_batch"], spec["ways"]

    def labels(n):
        return tf.constant(np.tile(np.repeat(np.arange(ways), n), (b, 1)).astype("int32"))

    return {
        "support_x": tf.constant(rng.normal(size=(b, ways * spec["shots"], *spec["image"])), tf.float32),
        "support_y": labels(spec["shots"]),
        "query_x": tf.constant(rng.normal(size=(b, ways * spec["queries"], *spec["image"])), tf.float32),
        "query_y": labels(spec["queries"]),
    }


def torch_reference(spec, repeats, threads):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
    payload = dict(spec, masked=spec["algorithm"] == "sparse_maml", repeats=repeats,
                   threads=threads)
    proc = subprocess.run([sys.executable, script, json.dumps(payload)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return None, proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def measure_logging(learner, batch, repeats=3):
    """Median seconds of one MetaSummaries write (what happens at every validation)."""
    import tempfile

    import numpy as np

    from wtl_tf.tensorboard import MetaSummaries

    probe = {k: v[:8] for k, v in batch.items()}
    with tempfile.TemporaryDirectory() as log_dir:
        callback = MetaSummaries(log_dir, {"benchmark": FLAGS.config}, probe)
        callback.set_model(learner)
        callback.on_train_begin()
        callback.on_epoch_end(0, {"loss": 1.0})  # traces the adaptation-curve function
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            callback.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.0})
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_pipeline(spec, batches=100):
    """Episodes/s of the real Omniglot episode pipeline (None without the archives)."""
    from wtl_tf.data.registry import task_distribution

    if not os.path.exists(os.path.join(FLAGS.omniglot_dir, "images_background_small1.zip")):
        print(f"episode pipeline not measured: no Omniglot archives in {FLAGS.omniglot_dir}")
        return None
    tasks = task_distribution("omniglot", ways=spec["ways"], shots=spec["shots"],
                              queries=spec["queries"], seed=0, data_dir=FLAGS.omniglot_dir,
                              split="omniglot_small_alphabets")
    iterator = iter(tasks.episodes("train", spec["meta_batch"]))
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * spec["meta_batch"] / (time.perf_counter() - start)


def main(argv):
    del argv
    spec = CONFIGS[FLAGS.config]
    from wtl_tf.runtime import configure_cpu_threads, cpu_count

    policy = configure_cpu_threads(FLAGS.cpu_threads, spec["meta_batch"])
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks import flops as flops_lib
    from wtl_tf import MetaLearner, algorithms, models
    from wtl_tf.optimizers import make_optimizer

    gpus = tf.config.list_physical_devices("GPU")
    device = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
              if gpus else f"{cpu_name()}, {cpu_count()} cores")
    print(f"config: {FLAGS.config}  {spec}")
    print(f"hardware: {device}; TensorFlow {tf.__version__}; thread policy: {policy}; "
          f"XLA: {FLAGS.jit_compile}; precision: {FLAGS.mixed_precision}")

    rss_start = peak_rss_mib()
    probe_batch, probe_size, probe_channels = spec["conv_probe"]
    streams = 2 if policy == "tasks" else 1
    conv_gflops = flops_lib.conv_throughput(probe_batch, probe_size, probe_channels,
                                            streams=streams)
    print(f"measured 3x3 conv throughput ({probe_batch}x{probe_size}x{probe_size}x"
          f"{probe_channels}, fwd+bwd, {streams} stream(s)): {conv_gflops:.1f} GFLOP/s")

    algorithm = algorithms.get_algorithm(spec["algorithm"])
    rule = algorithms.build_update_rule(algorithm.links, inner_lr=spec["alpha"])
    policy_name = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}.get(
        FLAGS.mixed_precision)
    if policy_name:
        keras.config.set_dtype_policy(policy_name)
    build = models.resnet12 if spec.get("model") == "resnet12" else models.conv4
    net = build(spec["image"], spec["ways"])
    keras.config.set_dtype_policy("float32")
    loss_scale = ({"first": 1024.0, "second": 32.0}[spec["order"]]
                  if FLAGS.mixed_precision == "float16" else 1.0)
    learner = MetaLearner(net, rule, inner_steps=spec["steps"],
                          first_order=spec["order"] == "first", parallel_tasks=max(2, cpu_count()),
                          adapt_batchnorm=spec.get("adapt_batchnorm", True),
                          unroll_inner_steps=FLAGS.unroll_inner_steps, loss_scale=loss_scale)
    learner.compile(optimizer=make_optimizer("adam", 1e-3), meta_optimizer=make_optimizer("adam", 1e-3))
    batch = synthetic_episodes(spec)
    step = tf.function(learner.train_step, jit_compile=FLAGS.jit_compile)

    start = time.perf_counter()
    step.get_concrete_function(batch)
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    float(step(batch)["loss"])
    first_call_s = time.perf_counter() - start
    times = []
    with GpuUtilisation(enabled=bool(gpus)) as utilisation:
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            float(step(batch)["loss"])
            times.append(time.perf_counter() - start)
    median = float(np.median(times))
    if FLAGS.profile_dir:
        tf.profiler.experimental.start(FLAGS.profile_dir)
        for _ in range(2):
            float(step(batch)["loss"])
        tf.profiler.experimental.stop()
    rss_peak = peak_rss_mib()
    gpu_peak = (tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpus else None)

    support = spec["ways"] * spec["shots"]
    query = spec["ways"] * spec["queries"]
    analytic = flops_lib.analytic_meta_step_flops(net, support, query, spec["steps"],
                                                  spec["meta_batch"], spec["order"] == "second")
    one_task = {k: v[0] for k, v in batch.items()}
    graph = flops_lib.graph_meta_step_flops(learner, one_task, spec["meta_batch"])
    achieved = analytic / median / 1e9

    print(f"first trace: {trace_s:.2f} s; first call (trace + compile + run): {first_call_s:.2f} s")
    print(f"meta-step: median {median:.3f} s over {FLAGS.repeats} "
          f"(min {min(times):.3f}, max {max(times):.3f})")
    print(f"FLOPs per meta-step: {analytic / 1e9:.1f} GFLOP (analytic conv+dense), "
          f"{graph / 1e9:.1f} GFLOP (TensorFlow's per-op count of the traced graph)")
    print(f"achieved: {achieved:.1f} GFLOP/s = {100 * achieved / conv_gflops:.0f}% of the measured "
          f"conv throughput; floor at that throughput: {analytic / conv_gflops / 1e9:.2f} s")
    if utilisation.samples:
        print(f"GPU utilisation during the timed steps: mean {utilisation.mean:.0f}% over "
              f"{len(utilisation.samples)} nvidia-smi samples")
    if spec["reference_s"]:
        print(f"reference (PyTorch, issue's 2-core figure): {spec['reference_s']} s -> "
              f"{spec['reference_s'] / median:.2f}x faster")
    torch_result = None
    if FLAGS.torch_reference:
        torch_result, error = (torch_reference(spec, max(3, FLAGS.repeats // 2), cpu_count())
                               if spec.get("model", "conv4") == "conv4"
                               else (None, "the PyTorch reference is Conv4 only"))
        if torch_result:
            print(f"reference (PyTorch {torch_result['torch']}, measured now, same machine): "
                  f"{torch_result['median_s']:.3f} s -> {torch_result['median_s'] / median:.2f}x faster")
        else:
            print(f"reference (PyTorch) not measured: {error}")
    logging_s = measure_logging(learner, batch)
    print(f"TensorBoard summaries (metrics, sparsity, histograms, mask images, adaptation "
          f"curves on 8 tasks): {logging_s:.3f} s per write = "
          f"{100 * logging_s / (FLAGS.log_every * median):.2f}% of the meta-steps between two "
          f"writes at --eval_every={FLAGS.log_every}")
    pipeline = None
    if FLAGS.config == "omniglot":
        pipeline = measure_pipeline(spec)
        if pipeline:
            print(f"episode pipeline (Omniglot small archives, {spec['ways']}-way "
                  f"{spec['shots']}-shot, meta-batch {spec['meta_batch']}): {pipeline:.0f} "
                  f"episodes/s; the meta-step consumes {spec['meta_batch'] / median:.0f}/s")
    print(f"peak memory: {rss_peak:.0f} MiB RSS (grew {rss_peak - rss_start:.0f} MiB during the "
          f"benchmark)" + (f"; GPU peak {gpu_peak:.0f} MiB" if gpu_peak is not None else ""))
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump({"config": FLAGS.config, "device": device, "policy": policy,
                       "precision": FLAGS.mixed_precision, "xla": FLAGS.jit_compile,
                       "gpu_utilisation": utilisation.mean if utilisation.samples else None,
                       "median_s": median, "times_s": times, "trace_s": trace_s,
                       "first_call_s": first_call_s, "analytic_flops": analytic,
                       "graph_flops": graph, "conv_gflops": conv_gflops,
                       "peak_rss_mib": rss_peak, "gpu_peak_mib": gpu_peak,
                       "torch": torch_result, "logging_s": logging_s,
                       "pipeline_episodes_per_s": pipeline}, f, indent=2)
    print(f"median_s_per_meta_step={median:.4f}")


if __name__ == "__main__":
    app.run(main)
