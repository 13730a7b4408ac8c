"""One La-MAML stream step, driven two ways, with and without the heap pad: what is slow?

    python benchmarks/la_maml_paths.py [--steps=150] [--rounds=2]

The same traced step (`LaMAML.stream_step`: five glances, the replay memory in tf.Variables)
on rotated Omniglot, each way in a fresh process, alternated over rounds:
- `observe`: the step as the learner's own tf.function, fed arrays batch by batch;
- `fit`: Keras `fit` over `learner.stream_dataset` (what `train.py` runs);
each with the C library's heap pad that the console commands set before TensorFlow starts
(wtl_tf.allocator) and without it (`_unpadded`: glibc's default, WTL_HEAP_TOP_PAD_MB=0).
Reported: the median milliseconds per stream step after the first 10 (the traces) and the
process's minor page faults, per way, and the machine.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WAYS = ("observe", "fit", "observe_unpadded", "fit_unpadded")


def one(way, steps, data_dir):
    """Runs `way` in this process; prints its median ms per step and its page faults."""
    import resource

    from wtl_tf.allocator import pad_heap_top

    pad_heap_top(0 if way.endswith("_unpadded") else None)  # before TensorFlow loads
    import keras
    import numpy as np

    from wtl_tf.config import ExperimentConfig
    from wtl_tf.continual import building

    config = ExperimentConfig(algorithm="la_maml", stream="rotated_omniglot",
                              stream_tasks=-(-steps // 30) + 1, data_dir=data_dir).resolved()
    keras.utils.set_random_seed(0)
    stream = building.build_stream(config, building.load_omniglot(config))
    learner = building.build_la_maml(config, stream)
    learner.compile()
    ends = []
    if way.startswith("observe"):
        for task in stream.tasks:
            for x, y in task.train_batches(config.stream_batch):
                if len(ends) == steps:
                    break
                learner.observe(x.numpy(), y.numpy(), task.index)
                ends.append(time.perf_counter())
    else:
        class Ends(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                ends.append(time.perf_counter())

        learner.fit(learner.stream_dataset(stream, config.stream_batch), steps_per_epoch=steps,
                    verbose=0, shuffle=False, callbacks=[Ends()])
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print(f"{faults} {1000 * float(np.median(np.diff(ends[10:]))):.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data_dir", default=os.environ.get("WTL_OMNIGLOT_DIR", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
        "omniglot")))
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args()
    if args.way:
        one(args.way, args.steps, args.data_dir)
        return
    from benchmarks.hardware import hardware_line

    print(f"hardware: {hardware_line()}", flush=True)
    times, faults = {way: [] for way in WAYS}, {way: [] for way in WAYS}
    for r in range(args.rounds):
        for way in (WAYS if r % 2 == 0 else WAYS[::-1]):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--way={way}",
                                  f"--steps={args.steps}", f"--data_dir={args.data_dir}"],
                                 capture_output=True, text=True, check=True,
                                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            faults[way].append(int(out.stdout.split()[-2]))
            times[way].append(float(out.stdout.split()[-1]))
            print(f"  round {r + 1} {way}: {times[way][-1]:.1f} ms per step, "
                  f"{faults[way][-1]} page faults", flush=True)
    for way in WAYS:
        print(f"{way}: median {statistics.median(times[way]):.1f} ms per stream step, "
              f"{statistics.median(faults[way]):.0f} minor page faults ({args.rounds} processes)")


if __name__ == "__main__":
    main()
