"""First-trace seconds of every shipped meta-learning configuration, in fresh processes.

    python benchmarks/first_trace.py                          # every config, 3 processes each
    python benchmarks/first_trace.py --configs=mini_imagenet_conv4_5shot_sparse_maml
    python benchmarks/first_trace.py --record=docs/results/benchmarks/first_trace.json
    python benchmarks/first_trace.py --table [--write]        # docs/benchmarks.md from the record

Each worker is a fresh process (a trace in a warm process reuses what the first one built)
that reads the flagfile as train.py does, loads its task distribution (Omniglot from the real
archives; miniImageNet from files in the published pickle format with random pixels, since a
graph depends on shapes, not values), builds the learner with `wtl_tf.experiment.build_learner`
and times `tf.function(learner.train_step).get_concrete_function(batch)` on one meta-batch at
the configuration's real shapes: the first trace, the Python work that a user waits for
before the first meta-step starts (graph optimisation and the step's own run come after it;
benchmarks/meta_step.py times those). A continual configuration (configs/continual_*) is
timed the same way on its stream learner's `train_step` and the stream's first element
(La-MAML: a batch with its replay draws; Continual-MAML: a 10-way 5-shot batch, pretraining
not included; the warped sine: a meta-batch of task sequences). The per-config number is
the median over --processes.
"""

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))

from benchmarks.hardware import hardware_line  # noqa: E402
from records import commit, replace_between, write_record  # noqa: E402  (experiments/)

CONFIG_DIR = os.path.join(ROOT, "configs")
DOCUMENT = os.path.join(ROOT, "docs", "benchmarks.md")
RECORD = os.path.join(ROOT, "docs", "results", "benchmarks", "first_trace.json")
TABLE_MARKERS = ("<!-- first-trace table: benchmarks/first_trace.py --table --write -->",
                 "<!-- end of first-trace table -->")


def shipped_configs():
    """Every shipped flagfile (not the shared .base files)."""
    return sorted(f[:-4] for f in os.listdir(CONFIG_DIR)
                  if f.endswith(".cfg") and ".base." not in f)


def continual_step_and_element(config):
    """(the stream learner, the first element of its stream) of a continual configuration."""
    from wtl_tf import settings
    from wtl_tf.continual import building, run, sine_run, warp_sine

    kind = settings.learner_kind(config)
    if kind == "lookahead_replay":
        stream, learner = run.la_maml_stream_and_learner(config)
        dataset = learner.stream_dataset(stream, config.stream_batch, config.passes, 0)
    elif kind == "osaka":
        stream = building.build_stream(config, building.load_omniglot(config))
        learner = building.build_osaka(config, building.osaka_network(config))
        dataset = stream.dataset(0)
    else:
        tasks = warp_sine.SequentialSine(config.sine_subtasks, config.sine_points,
                                         seed=config.seed)
        learner = sine_run.build_learner(config)
        dataset = learner.stream_dataset(tasks, config.meta_batch_size, 1)
    return learner, next(iter(dataset))


def write_mini_imagenet(root, images_per_class):
    """mini-imagenet-cache-{train,val,test}.pkl with 5 classes of random 84x84x3 images."""
    import numpy as np

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        data, class_dict = [], {}
        for c in range(5):
            class_dict[f"n{split[:2]}{c:06d}"] = list(range(len(data),
                                                            len(data) + images_per_class))
            data.extend(rng.integers(0, 256, (images_per_class, 84, 84, 3), dtype=np.uint8))
        with open(os.path.join(root, f"mini-imagenet-cache-{split}.pkl"), "wb") as f:
            pickle.dump({"image_data": np.stack(data), "class_dict": class_dict}, f)


def worker(name, omniglot_dir):
    """Prints one JSON line: {"trace_s": seconds}."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from absl import flags

    import train
    from wtl_tf import experiment
    from wtl_tf.cli.flagfiles import expand
    from wtl_tf.runtime import configure_cpu_threads

    with tempfile.TemporaryDirectory() as scratch:
        argv = ["train.py", f"--config={name}.cfg", f"--output_dir={scratch}/run"]
        flags.FLAGS(expand(argv))
        config = train.config_from_flags().resolved()
        if config.dataset == "mini_imagenet":
            write_mini_imagenet(scratch, config.shots + config.queries)
            argv += [f"--data_dir={scratch}", "--data_source=pickle"]
        else:
            argv.append(f"--data_dir={omniglot_dir}")
        flags.FLAGS.unparse_flags()
        flags.FLAGS(expand(argv))
        config = train.config_from_flags().resolved()
        configure_cpu_threads(config.cpu_threads, config.meta_batch_size or 1)
        import tensorflow as tf

        if config.stream is not None:
            learner, batch = continual_step_and_element(config)
        else:
            tasks = experiment.run_tasks(config)
            learner = experiment.build_learner(config, tasks)
            batch = next(iter(tasks.episodes("train", config.meta_batch_size, num_batches=1)))
        step = tf.function(learner.train_step)
        start = time.perf_counter()
        step.get_concrete_function(batch)
        trace = time.perf_counter() - start
    print(json.dumps({"trace_s": trace}))


def measure(name, omniglot_dir, timeout):
    command = [sys.executable, os.path.abspath(__file__), "--worker", name,
               f"--omniglot_dir={omniglot_dir}"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"{name}: {lines[-1] if lines else proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(record):
    """The Markdown table of a record: the median first trace and its range per config."""
    lines = [f"Median of {record['processes']} fresh processes per configuration, measured on "
             f"{record['hardware']} with TensorFlow {record['tensorflow']} (the record, "
             f"`{os.path.relpath(RECORD, ROOT)}`, names the tree).", "",
             "| configuration | first trace (s), median | min | max |",
             "|---|---:|---:|---:|"]
    for name, runs in sorted(record["configs"].items()):
        traces = [run["trace_s"] for run in runs]
        lines.append(f"| {name} | {_median(traces):.2f} | {min(traces):.2f} | "
                     f"{max(traces):.2f} |")
    return "\n".join(lines)


def _median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def document(record, text):
    return replace_between(text, TABLE_MARKERS, table(record) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(shipped_configs()))
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per config")
    parser.add_argument("--omniglot_dir", default=os.environ.get(
        "WTL_OMNIGLOT_DIR", os.path.join(ROOT, "..", "shared", "data", "omniglot")))
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--record", help="write the measurements to this JSON file")
    parser.add_argument("--table", action="store_true", help="print docs/benchmarks.md's "
                        "table from the committed record instead of measuring")
    parser.add_argument("--write", action="store_true", help="with --table: rewrite the table "
                        "in docs/benchmarks.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.omniglot_dir)
    if args.table:
        with open(RECORD) as f:
            record = json.load(f)
        if not args.write:
            print(table(record))
            return 0
        with open(DOCUMENT) as f:
            text = f.read()
        with open(DOCUMENT, "w") as f:
            f.write(document(record, text))
        return 0
    import tensorflow as tf

    record = {"hardware": hardware_line(), "tensorflow": tf.__version__, "commit": commit(),
              "processes": args.processes, "configs": {}}
    print(f"hardware: {record['hardware']}; {args.processes} fresh processes per config",
          flush=True)
    for name in args.configs.split(","):
        runs = [measure(name, args.omniglot_dir, args.timeout) for _ in range(args.processes)]
        record["configs"][name] = [{k: round(v, 3) for k, v in run.items()} for run in runs]
        print(f"{name:48s} first trace: {_median([r['trace_s'] for r in runs]):6.2f} s (median; "
              f"{min(r['trace_s'] for r in runs):.2f}-{max(r['trace_s'] for r in runs):.2f})",
              flush=True)
    if args.record:
        os.makedirs(os.path.dirname(os.path.abspath(args.record)), exist_ok=True)
        write_record(args.record, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
