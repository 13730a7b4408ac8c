"""Few-shot runs through `train.py` itself, one record per run: the flags given, the resolved
settings, the seed, the tree's commit, the machine, the learning curve (with per-layer mask
sparsity), every test episode's score and, for Omniglot, the same learner scored on episodes
whose classes all come from one held-out alphabet.

    python experiments/fewshot_records.py --name=omniglot_5way_maml \
        --config=omniglot_small_alphabets_maml --seeds=0,1,2 \
        --set=meta_iterations=500 --set=eval_every=100 --within_alphabet \
        --out=docs/results/fewshot
    python experiments/fewshot_records.py --name=sinusoid_sparse_maml --seeds=0 \
        --out=docs/results/fewshot                                   # the default command

`--set=NAME=VALUE` passes `--NAME=VALUE` to train.py. A record that already exists is
skipped, so an interrupted batch reruns only what is missing. Run it from a frozen copy of
the tree (a clean checkout of one commit): the records name it.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

from records import ROOT, commit, parse_value, write_record


def train(flags, output_dir):
    """Runs train.py with `flags`; returns its results.json and learning curve."""
    command = [sys.executable, os.path.join(ROOT, "train.py"), *flags,
               f"--output_dir={output_dir}", f"--export_dir={output_dir}/export"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    with open(os.path.join(output_dir, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(output_dir, "learning_curve.csv")) as f:
        curve = [{k: parse_value(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return results, curve, seconds


def within_alphabet_scores(results, episodes):
    """Per-episode accuracy of the exported learner on test episodes drawn from one alphabet."""
    from wtl_tf.cli.evaluate import evaluate_saved_model
    from wtl_tf.data.registry import task_distribution

    config = results["config"]
    tasks = task_distribution(
        config["dataset"], ways=config["ways"], shots=config["shots"],
        queries=config["queries"], seed=config["seed"], data_dir=config["data_dir"],
        split=config["split"], image_size=config["image_size"], source=config["data_source"],
        channels=config["image_channels"], episode_classes="within_alphabet")
    scores = evaluate_saved_model(results["export_dir"], tasks, "test", episodes,
                                  config["inner_steps_eval"])
    return [round(float(s), 6) for s in scores]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the record's name (file name prefix)")
    parser.add_argument("--config", default=None, help="a shipped configuration (--config=)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--within_alphabet", action="store_true",
                        help="also score the learner on one-alphabet test episodes")
    parser.add_argument("--data_dir", default=os.environ.get(
        "WTL_OMNIGLOT_DIR", os.path.join(ROOT, "..", "shared", "data", "omniglot")))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from benchmarks.hardware import hardware_line

    given = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    os.makedirs(args.out, exist_ok=True)
    tree = commit()
    for seed in (int(s) for s in args.seeds.split(",")):
        path = os.path.join(args.out, f"{args.name}_s{seed}.json")
        if os.path.exists(path):
            print(f"{path}: exists, skipped", flush=True)
            continue
        flags = ([f"--config={args.config}"] if args.config else []) + [
            f"--{k}={v}" for k, v in given.items()] + [f"--seed={seed}"]
        if args.config and args.config.startswith("omniglot"):
            flags.append(f"--data_dir={args.data_dir}")
        with tempfile.TemporaryDirectory() as output_dir:
            results, curve, seconds = train(flags, output_dir)
            within = (within_alphabet_scores(results, results["test_tasks"])
                      if args.within_alphabet else None)
        settings = dict(results.pop("config"))
        for machine_specific in ("output_dir", "data_dir", "export_dir"):
            settings.pop(machine_specific, None)
        results.pop("export_dir", None)
        results["learning_curve"] = curve
        if within is not None:
            results["test_within_alphabet_per_task"] = {"accuracy": within}
        record = {"name": args.name, "config": args.config, "seed": seed,
                  "given": given, "settings": settings, "commit": tree,
                  "hardware": hardware_line(), "wall_seconds": round(seconds, 1),
                  "results": results}
        write_record(path, record)
        print(f"{path}: written ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
