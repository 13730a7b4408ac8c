"""README tables from the JSON files of experiments/continual.py.

    python experiments/continual_report.py rotated.json permuted.json sine.json osaka098.json

Every number is a mean over the runs' seeds with its 95% Student-t interval (4.30 standard
errors for 3 seeds).
Speeds: seconds per 1,000 incoming batches (La-MAML family: batches of 10, each with its
glances; OSAKA: 10-way 5-shot stream steps), from the runs themselves.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wtl_tf.meta_test import mean_ci95  # noqa: E402

BATCHES = {"rotated": 20 * 30, "permuted": 20 * 30}  # 20 tasks x 300 examples / 10


def mean_ci(values):
    values = np.asarray([v for v in values if v is not None and v == v], np.float64)
    if len(values) == 0:
        return "–"
    mean, half = mean_ci95(values)
    return f"{mean:.3f} ± {half:.3f}"


def la_maml_table(data):
    name = data["args"]["benchmark"]
    lines = ["| method | RA | LA | BTI (T−1) | BTI (T) | final mask sparsity | s / 1000 batches |",
             "|---|---|---|---|---|---|---|"]
    for method, runs in data["results"].items():
        speed = [1000 * r["seconds"] / BATCHES[name] for r in runs]
        lines.append(f"| {method} | " + " | ".join(mean_ci([r[k] for r in runs]) for k in (
            "retained_accuracy", "learning_accuracy", "backward_transfer",
            "backward_transfer_over_T", "mask_sparsity")) + f" | {np.median(speed):.0f} |")
    return "\n".join(lines)


def osaka_table(data):
    lines = ["| method | online accuracy | pretrain mode | ood1 (new alphabets) | ood2 "
             "(inverted, turned) | boundary precision | boundary recall | final mask "
             "sparsity | s / 1000 steps |", "|---|---|---|---|---|---|---|---|---|"]
    for method, runs in data["results"].items():
        cells = [mean_ci([r["online_accuracy"].get(k) for r in runs])
                 for k in ("overall", "pretrain", "ood1", "ood2")]
        cells += [mean_ci([r["boundaries"][k] for r in runs]) for k in ("precision", "recall")]
        cells.append(mean_ci([r["mask_sparsity"] for r in runs]))
        speed = np.median([r["seconds_per_1000_steps"] for r in runs])
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {speed:.0f} |")
    return "\n".join(lines)


def sine_table(data):
    runs = data["results"]
    intervals = len(runs["sgd"][0]["interval_mse"])
    lines = ["| method | " + " | ".join(f"interval {k + 1}" for k in range(intervals))
             + " | mean |", "|---|" + "---|" * (intervals + 1)]
    for method in ("warpgrad", "sgd"):
        per = np.array([r["interval_mse"] for r in runs[method]])
        lines.append(f"| {method} | " + " | ".join(mean_ci(per[:, k]) for k in range(intervals))
                     + f" | {mean_ci([r['mean_mse'] for r in runs[method]])} |")
    gap = [w["mean_mse"] - s["mean_mse"] for w, s in zip(runs["warpgrad"], runs["sgd"])]
    lines.append(f"\nwarpgrad − sgd (mean MSE, paired by seed): {mean_ci(gap)}")
    return "\n".join(lines)


def main():
    for path in sys.argv[1:]:
        with open(path) as f:
            data = json.load(f)
        benchmark = data["args"]["benchmark"]
        print(f"\n{path} ({benchmark}, seeds {data['args']['seeds']}, {data.get('hardware')})\n")
        print({"osaka": osaka_table, "sine": sine_table}.get(benchmark, la_maml_table)(data))


if __name__ == "__main__":
    main()
