"""Markdown tables of finished train.py runs (the README's Omniglot result comes from these).

    python experiments/omniglot_report.py runs/omniglot_maml runs/omniglot_sparse_maml

For each run directory: the final meta-test (before and after adaptation, mean ± 95% CI),
the learning curve (validation accuracy against meta-iterations and wall time) and, for
masked algorithms, per-layer mask sparsity over training.
"""

import csv
import json
import os
import sys


def read(run):
    with open(os.path.join(run, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(run, "learning_curve.csv"), newline="") as f:
        curve = list(csv.DictReader(f))
    return results, curve


def summary_table(runs):
    lines = ["| run | algorithm, order | meta-iterations (training time) | best validation | "
             "test accuracy before adaptation | test accuracy after adaptation |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        results, curve = read(run)
        config, test = results["config"], results["test"]
        # A resumed run's train_seconds covers only its last process; the curve's clock spans all.
        minutes = max([results["train_seconds"]] + [float(r["wall_time_s"]) for r in curve]) / 60
        best = results["best_validation"]
        lines.append(
            f"| `{os.path.basename(run.rstrip('/'))}` | {config['algorithm']}, {config['order']} | "
            f"{results['meta_iterations']} ({minutes:.0f} min) | "
            f"{100 * best['val_accuracy']:.1f}% at {best['iteration']} | "
            f"{100 * test['pre_accuracy']['mean']:.1f} ± {100 * test['pre_accuracy']['ci95']:.1f}% | "
            f"**{100 * test['accuracy']['mean']:.1f} ± {100 * test['accuracy']['ci95']:.1f}%** |")
    return "\n".join(lines)


def curve_table(runs):
    curves = {os.path.basename(r.rstrip("/")): read(r)[1] for r in runs}
    lines = ["| run | " + " | ".join(f"{int(row['iteration'])} it" for row in
                                     max(curves.values(), key=len)) + " |"]
    lines.append("|---|" + "---|" * max(len(c) for c in curves.values()))
    for name, curve in curves.items():
        cells = [f"{100 * float(r['val_accuracy']):.1f}% ({float(r['wall_time_s']) / 60:.0f} min)"
                 for r in curve]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sparsity_table(run):
    _, curve = read(run)
    layers = [k for k in curve[0] if k.startswith("sparsity/") and k != "sparsity/overall"]
    if not layers:
        return None
    lines = ["| iteration | " + " | ".join(k.split("/", 1)[1] for k in layers) + " | overall |",
             "|---|" + "---|" * (len(layers) + 1)]
    for row in curve:
        lines.append(f"| {int(row['iteration'])} | " + " | ".join(
            f"{float(row[k]):.2f}" for k in layers) + f" | {float(row['sparsity/overall']):.2f} |")
    return "\n".join(lines)


def main(runs):
    print(summary_table(runs), end="\n\n")
    print("Validation accuracy (wall time) along training:\n")
    print(curve_table(runs), end="\n\n")
    for run in runs:
        table = sparsity_table(run)
        if table:
            print(f"Mask sparsity per layer, `{os.path.basename(run.rstrip('/'))}`:\n")
            print(table, end="\n\n")


if __name__ == "__main__":
    main(sys.argv[1:])
