"""Warp-Leap: seconds per meta-iteration, the share of time in buffer replay, replay speed-ups
and the trajectory buffer's memory.

    python benchmarks/warpgrad.py                      # the reference protocol scaled to a CPU
    python benchmarks/warpgrad.py --tasks=20 --inner_steps=100 --task_batch=128   # reference

On the shared Omniglot alphabet tasks (20-way, 28x28, warped Conv4). Every time is the median
of --repeats compiled meta-iterations. Measured in the same run:
  full         one Warp-Leap meta-iteration (trajectories + replay + Leap), replay_batch=1
  trajectories the same step with the warp update off: the replay share is 1 - this / full
  batched      replay_batch=--replay_batch (states averaged per warp update)
  per-state    the replay as a Python loop calling one compiled warp update per stored state
               (how a straightforward port, e.g. the third-party reproduction, replays)
The last line is `median_s_per_meta_iteration=<seconds>`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks.hardware import cpu_name, median_time, peak_rss_mib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("tasks", 5, "tasks per meta-batch (reference 20)")
flags.DEFINE_integer("inner_steps", 10, "inner steps (reference 100)")
flags.DEFINE_integer("task_batch", 32, "examples per inner step (reference 128)")
flags.DEFINE_integer("channels", 64, "Conv4 channels (reference 64)")
flags.DEFINE_integer("replay_batch", 10, "states per warp update in the batched replay")
flags.DEFINE_integer("repeats", 3, "timed meta-iterations per variant (median reported)")
flags.DEFINE_bool("per_state", True, "also time the per-state Python-loop replay")
flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "..", "shared", "data", "omniglot"), "Omniglot archives")


def main(argv):
    del argv
    from wtl_tf.runtime import configure_cpu_threads, cpu_count

    policy = configure_cpu_threads("auto", FLAGS.tasks)
    import keras
    import tensorflow as tf

    from wtl_tf.data.alphabet_tasks import AlphabetTasks
    from wtl_tf import models, runners
    from wtl_tf.inner_loop import stream_seed
    from wtl_tf.warpgrad import WarpLeap

    rss_start = peak_rss_mib()
    tasks = AlphabetTasks(ways=20, shots=15, queries=5, seed=0, data_dir=FLAGS.data_dir)
    batch = next(iter(tasks.episodes("train", FLAGS.tasks)))
    batch = {k: v for k, v in batch.items() if k in ("support_x", "support_y", "query_x",
                                                     "query_y")}
    gpus = tf.config.list_physical_devices("GPU")
    device = "GPU" if gpus else f"{cpu_name()}, {cpu_count()} cores"
    states = FLAGS.tasks * FLAGS.inner_steps
    print(f"Warp-Leap, warped Conv4 ({FLAGS.channels} channels), 20-way alphabet tasks 28x28: "
          f"{FLAGS.tasks} tasks x {FLAGS.inner_steps} inner steps, task batch {FLAGS.task_batch}"
          f" -> {states} stored states")
    print(f"hardware: {device}; TensorFlow {tf.__version__}; thread policy: {policy}")

    def learner(**options):
        keras.utils.set_random_seed(0)
        net = models.warped_conv4(tasks.input_shape, 20, channels=FLAGS.channels)
        model = WarpLeap(net, 0.1, inner_steps=FLAGS.inner_steps, task_batch=FLAGS.task_batch,
                         parallel_tasks=max(2, cpu_count()), **options)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        return model

    results = {}
    for name, options in (("full", {}), ("trajectories", {"warp_update": False}),
                          ("batched", {"replay_batch": FLAGS.replay_batch})):
        model = learner(**options)
        step = tf.function(model.train_step)
        results[name] = median_time(lambda: float(step(batch)["loss"]), FLAGS.repeats)
        print(f"{name:13s} {results[name]:8.2f} s per meta-iteration")
    replay = results["full"] - results["trajectories"]
    print(f"replay share (replay_batch=1, in-graph loop): {100 * replay / results['full']:.0f}% "
          f"({replay:.2f} s for {states} warp updates, {1000 * replay / states:.1f} ms each)")
    batched_replay = results["batched"] - results["trajectories"]
    print(f"replay share (replay_batch={FLAGS.replay_batch}): "
          f"{100 * batched_replay / results['batched']:.0f}% ({batched_replay:.2f} s, "
          f"{states // FLAGS.replay_batch} warp updates)")

    if FLAGS.per_state:
        model = learner()
        params = model.read_params()
        episodes = [runners.episode(batch, t) for t in range(FLAGS.tasks)]
        stored = [model.trajectory(episodes[t], params, stream_seed(model.seed, 1, t))[0]
                  for t in range(FLAGS.tasks)]

        @tf.function
        def one_state(phi, episode, seed):
            warp = {v.path: tf.convert_to_tensor(v) for v in model.warp_variables}
            _, grads = model.warp_gradient(phi, warp, episode, model.read_params(), seed)
            for v in model.warp_variables:
                v.assign_sub(0.1 * grads[v.path])

        def python_replay():
            for t in range(FLAGS.tasks):
                for k in range(FLAGS.inner_steps):
                    one_state({p: s[k] for p, s in stored[t].items()}, episodes[t],
                              tf.constant([t, k], tf.int64))

        per_state = median_time(python_replay, max(1, FLAGS.repeats - 1))
        share = per_state / (results["trajectories"] + per_state)
        print(f"per-state Python-loop replay: {per_state:.2f} s ({100 * share:.0f}% of its "
              f"meta-iteration); in-graph replay is {per_state / max(replay, 1e-9):.2f}x faster")

    reference = WarpLeap(models.warped_conv4(tasks.input_shape, 20), 0.1, inner_steps=100)
    print(f"trajectory buffer: {learner().buffer_bytes(FLAGS.tasks) / 2**20:.0f} MiB here; "
          f"{reference.buffer_bytes(20) / 2**20:.0f} MiB for the reference 20 tasks x 100 steps "
          f"(64 channels)")
    print(f"peak memory: {peak_rss_mib():.0f} MiB RSS (grew {peak_rss_mib() - rss_start:.0f} MiB)")
    print(f"median_s_per_meta_iteration={results['full']:.3f}")


if __name__ == "__main__":
    app.run(main)
