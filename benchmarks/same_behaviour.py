"""Does a change keep behaviour bit for bit? Short runs of two checkouts, compared.

    python benchmarks/same_behaviour.py --old=/path/to/old/checkout --new=. [--runs=NAME,...]

Each run is `train.py` with fixed flags and seed in a fresh process of each tree (the same
Python), one after the other; compared are results.json (without wall-clock fields and the
paths) and learning_curve.csv (without its wall-time column), exactly. Prints one line per
run (`same` or the first difference) and ends with `differences=N`. `--settings_may_differ=a,b`
leaves settings out of the comparison whose recorded values a change means to alter (e.g. the
La-MAML family's update_rules, recorded once its chain is named), never a result.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

DATA = os.environ.get("WTL_OMNIGLOT_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
    "omniglot"))

RUNS = {
    "default": [],  # `python train.py`: sparse-MAML on sinusoids
    "omniglot_sparse_maml": ["--config=omniglot_small_alphabets_sparse_maml",
                             "--meta_iterations=20", "--eval_every=10", "--validation_tasks=16",
                             "--test_tasks=32", f"--data_dir={DATA}"],
    # inner steps in a tf.while_loop (longer than the unrolled default), first order
    "omniglot_sparse_maml_looped": ["--config=omniglot_small_alphabets_sparse_maml",
                                    "--order=first", "--inner_steps=12", "--inner_steps_eval=12",
                                    "--meta_iterations=6", "--eval_every=3",
                                    "--validation_tasks=8", "--test_tasks=16",
                                    f"--data_dir={DATA}"],
    "la_maml": ["--algorithm=la_maml", "--stream=rotated_omniglot", "--stream_tasks=3",
                f"--data_dir={DATA}"],
    "sparse_la_maml": ["--algorithm=sparse_la_maml", "--stream=rotated_omniglot",
                       "--stream_tasks=3", f"--data_dir={DATA}"],
    # task-masked head, inner clip, identity rates, chunks of 2, second order
    "la_maml_split": ["--algorithm=la_maml", "--stream=split_omniglot", "--stream_tasks=2",
                      f"--data_dir={DATA}"],
    "osaka": ["--algorithm=sparse_continual_maml", "--stream_steps=40",
              "--pretrain_iterations=5", "--conv_channels=8", "--inner_steps=2",
              f"--data_dir={DATA}"],
    "osaka_dense": ["--algorithm=continual_maml", "--stream_steps=40",
                    "--pretrain_iterations=5", "--conv_channels=8", "--inner_steps=2",
                    f"--data_dir={DATA}"],
    "osaka_per_tensor": ["--algorithm=sparse_continual_maml", "--mask_granularity=per_tensor",
                         "--stream_steps=40", "--pretrain_iterations=5", "--conv_channels=8",
                         "--inner_steps=2", f"--data_dir={DATA}"],
    "warped_sine": ["--config=continual_sequential_sine_warpgrad", "--meta_iterations=3",
                    "--test_tasks=4", "--sine_subtasks=2"],
}
VOLATILE = {"train_seconds", "seconds", "seconds_per_1000_steps", "wall_time_s", "export_dir",
            "output_dir", "data_dir", "wall_seconds"}


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def run(tree, label, name, scratch, settings_may_differ=()):
    output_dir = os.path.join(scratch, f"{label}_{name}")
    command = [sys.executable, os.path.join(tree, "train.py"), *RUNS[name],
               f"--output_dir={output_dir}", "--tensorboard=false"]
    proc = subprocess.run(command, cwd=tree, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    with open(os.path.join(output_dir, "results.json")) as f:
        results = strip(json.load(f))
    for setting in settings_may_differ:
        results.get("config", {}).pop(setting, None)
    curve_path = os.path.join(output_dir, "learning_curve.csv")
    curve = None
    if os.path.exists(curve_path):
        with open(curve_path) as f:
            curve = [strip(row) for row in csv.DictReader(f)]
    return {"results": results, "curve": curve}


def first_difference(a, b, path=""):
    if type(a) is not type(b):
        return f"{path}: {a!r} against {b!r}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}/{key}: only in {'new' if key in b else 'old'}"
            found = first_difference(a[key], b[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} against {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    same = a == b or (isinstance(a, float) and a != a and b != b)  # NaN is NaN
    return None if same else f"{path}: {a!r} against {b!r}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default=".")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--keep", default=None, help="keep the outputs in this directory")
    parser.add_argument("--settings_may_differ", default="",
                        help="recorded settings left out of the comparison, comma-separated")
    args = parser.parse_args()
    differences = 0
    scratch = args.keep or tempfile.mkdtemp(prefix="wtl-same-")
    for name in args.runs.split(","):
        ignored = [s for s in args.settings_may_differ.split(",") if s]
        old, new = (run(args.old, "old", name, scratch, ignored),
                    run(args.new, "new", name, scratch, ignored))
        found = first_difference(old, new)
        differences += found is not None
        print(f"{name}: {'same' if found is None else 'DIFFERENT ' + found}", flush=True)
    print(f"differences={differences}")


if __name__ == "__main__":
    main()
