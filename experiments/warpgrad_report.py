"""The README's WarpGrad table from the results files of experiments/warpgrad_omniglot.py, one
per seed (the same test tasks for every method of a seed, so differences are paired).

    python experiments/warpgrad_report.py runs/warpgrad_s0.json runs/warpgrad_s1.json runs/warpgrad_s2.json

A seed's methods may also come in separate files (one process per method and core).
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wtl_tf.meta_test import mean_ci95  # noqa: E402

NAMES = {"warp_leap": "Warp-Leap", "leap": "Leap", "finetune": "fine-tuning"}


def load(paths):
    """[(seed, {method: run})] in the order seeds first appear; a seed's methods may come
    from several files (one process per method), each method once."""
    by_seed = {}
    for path in paths:
        with open(path) as f:
            payload = json.load(f)
        runs = by_seed.setdefault(payload["flags"]["seed"], {})
        for run in payload["runs"]:
            if run["method"] in runs:
                sys.exit(f"{path}: seed {payload['flags']['seed']} {run['method']} is already "
                         "in an earlier file; pass each run once")
            runs[run["method"]] = run
    return list(by_seed.items())


def budget(run):
    if "meta_iterations" in run:
        return f"{run['meta_iterations']} meta-it"
    return f"{run['pretrain_steps']} pre-training steps"


def warp_leap_minus(runs, method):
    """Per-task accuracy differences of one seed (its methods share the test tasks)."""
    return np.subtract(runs["warp_leap"]["per_task_accuracy"], runs[method]["per_task_accuracy"])


def table(seeds):
    methods = [m for m in NAMES if all(m in runs for _, runs in seeds)]
    lines = ["| method | " + " | ".join(f"seed {s}: accuracy (training)" for s, _ in seeds)
             + " | all seeds (tasks pooled) | paired difference, Warp-Leap minus it |",
             "|---" * (len(seeds) + 3) + "|"]
    for method in methods:
        # intervals from the per-task scores, not the records' ci95 (older records: 1.96)
        cells = ["{:.1f} ± {:.1f}% ({})".format(
            *(100 * v for v in mean_ci95(runs[method]["per_task_accuracy"])), budget(runs[method]))
            for _, runs in seeds]
        pooled = np.concatenate([runs[method]["per_task_accuracy"] for _, runs in seeds])
        mean, ci = mean_ci95(pooled)
        if method == "warp_leap" or "warp_leap" not in methods:
            diff = "—"
        else:
            d = np.concatenate([warp_leap_minus(runs, method) for _, runs in seeds])
            dm, dc = mean_ci95(d)
            diff = (f"{100 * dm:+.1f} ± {100 * dc:.1f} points (better on "
                    f"{100 * np.mean(d > 0):.0f}% of {len(d)} tasks)")
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells)
                     + f" | {100 * mean:.1f} ± {100 * ci:.1f}% | {diff} |")
    return "\n".join(lines)


def per_seed_differences(seeds):
    """Warp-Leap minus each other method, seed by seed (each seed's tasks are paired)."""
    lines = []
    for seed, runs in seeds:
        if "warp_leap" not in runs:
            continue
        cells = []
        for method in (m for m in NAMES if m != "warp_leap" and m in runs):
            dm, dc = mean_ci95(warp_leap_minus(runs, method))
            cells.append(f"{NAMES[method]} {100 * dm:+.1f} ± {100 * dc:.1f}")
        if cells:
            lines.append(f"seed {seed}, Warp-Leap minus: " + ", ".join(cells) + " points")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    seeds = load(sys.argv[1:])
    print(table(seeds))
    print()
    print(per_seed_differences(seeds))
