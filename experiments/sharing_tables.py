"""The gradient-sharing sweep's tables, from its results file (experiments/gradient_sharing.py
writes it; experiments/results_report.py puts the tables into docs/results.md)."""

import numpy as np

from wtl_tf.meta_test import mean_ci95


def table(runs, algorithms=("maml", "grad_sharing")):
    lines = ["| inner lr | method | reached target | iterations to target (mean ± 95% CI over "
             "reaching seeds) | final test accuracy |", "|---|---|---|---|---|"]
    for alpha in sorted({r["inner_lr"] for r in runs}):
        for algorithm in algorithms:
            group = [r for r in runs if r["inner_lr"] == alpha and r["algorithm"] == algorithm]
            hits = [r["iterations_to_target"] for r in group if r["iterations_to_target"]]
            its = "—" if not hits else (f"{np.mean(hits):.0f} ± {mean_ci95(hits)[1]:.0f}"
                                       if len(hits) > 1 else f"{hits[0]}")
            accs = ", ".join(f"{100 * r['test_accuracy']:.1f} ± {100 * r['test_ci95']:.1f}"
                             for r in group)
            lines.append(f"| {alpha} | {algorithm} | {len(hits)}/{len(group)} | {its} | {accs} |")
    return "\n".join(lines)


def pairs_table(runs):
    """One row per (inner lr, seed): both methods' iterations to the target and test scores."""
    pairs = {}
    for r in runs:
        pairs.setdefault((r["inner_lr"], r["seed"]), {})[r["algorithm"]] = r

    def iterations(r):
        if r is None:
            return "not run yet"
        t = r["iterations_to_target"]
        last_iteration, last_accuracy = r["curve"][-1]  # (the run's own budget, not this call's)
        reached = f"{t}" if t else f"not within {last_iteration} ({100 * last_accuracy:.1f}% val)"
        return f"{reached} ({r['seconds']:.0f} s)"

    def accuracy(r):
        return "—" if r is None else f"{100 * r['test_accuracy']:.1f} ± {100 * r['test_ci95']:.1f}%"

    lines = ["| inner lr α | seed | MAML: iterations to target (wall s) | gradient sharing: "
             "iterations to target (wall s) | MAML test accuracy | gradient sharing test "
             "accuracy |", "|---|---|---|---|---|---|"]
    for (alpha, seed), pair in sorted(pairs.items()):
        m, g = pair.get("maml"), pair.get("grad_sharing")
        lines.append(f"| {alpha:g} | {seed} | {iterations(m)} | {iterations(g)} | {accuracy(m)} | "
                     f"{accuracy(g)} |")
    return "\n".join(lines)
