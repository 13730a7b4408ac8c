"""Seconds per 1,000 stream steps of every continual learner, on its reference stream.

    python benchmarks/continual_steps.py [--steps=60] [--repeats=3] [--methods=...]

A stream step is one incoming batch: for the La-MAML family a batch of 10 (with its
`glances` meta-updates, the section-1 MNIST settings on rotated Omniglot; split_la_maml:
the CIFAR-row settings on Split-Omniglot, pc_cnn, second order), for Continual-MAML one
10-way 5-shot batch of the OSAKA stream (the p = 0.98 configuration: 8 inner steps, Conv4
with --channels). Each method is built and warmed up (5 steps: its traces), then --repeats blocks of
--steps consecutive steps are timed; the median block is reported, with its ratio to
la_maml's measured in the same run. The machine is printed with the numbers.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.hardware import hardware_line  # noqa: E402

METHODS = ("la_maml", "sync_la_maml", "c_maml", "sparse_la_maml", "split_la_maml",
           "continual_maml", "sparse_continual_maml")


def stepper(method, args):
    """A function doing the next stream step (after building and one warm-up step)."""
    import keras

    from wtl_tf.config import ExperimentConfig
    from wtl_tf.continual import building as run

    data_dir = args.data_dir
    if method.startswith("split"):
        config = ExperimentConfig(algorithm="la_maml", stream="split_omniglot",
                                  data_dir=data_dir).resolved()
    elif "continual" in method:
        config = ExperimentConfig(algorithm=method, conv_channels=args.channels,
                                  pretrain_iterations=0, data_dir=data_dir).resolved()
    else:
        config = ExperimentConfig(algorithm=method, data_dir=data_dir).resolved()
    keras.utils.set_random_seed(0)
    stream = run.build_stream(config, run.load_omniglot(config))
    if "continual" in method:
        learner = run.build_osaka(config, run.osaka_network(config))
        position = iter(range(10 ** 9))
        return lambda: learner.observe(*stream.batch(next(position)))
    learner = run.build_la_maml(config, stream)

    def batches():
        while True:
            for task in stream.tasks:
                for x, y in task.train_batches(config.stream_batch):
                    yield task.index, x.numpy(), y.numpy()

    source = batches()

    def step():
        task, x, y = next(source)
        learner.observe(x, y, task)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data_dir", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
        "omniglot"))
    args = parser.parse_args()
    methods = args.methods.split(",")
    if "la_maml" not in methods:
        methods.insert(0, "la_maml")  # the in-run reference
    print(f"machine: {hardware_line()}; {args.repeats} blocks of {args.steps} steps, median")
    medians = {}
    for method in methods:
        step = stepper(method, args)
        for _ in range(5):  # traces: the first batch meets an empty replay buffer
            step()
        blocks = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            blocks.append(time.perf_counter() - start)
        medians[method] = 1000 * float(np.median(blocks)) / args.steps
        print(f"{method:24s} {medians[method]:9.1f} s per 1000 stream steps   "
              f"x{medians[method] / medians['la_maml']:.2f} of la_maml", flush=True)


if __name__ == "__main__":
    main()
