"""Meta-test: per-task adaptation on held-out episodes, mean and 95% confidence interval."""

import numpy as np

from wtl_tf.errors import DataError


def mean_ci95(values):
    """(mean, 1.96 * sample std / sqrt(n)) of a 1-D array."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(values.size))


def meta_test(learner, episodes, num_tasks, steps=None):
    """Adapts to `num_tasks` episodes; returns {metric: per-task np.array} plus summaries.

    `episodes` yields meta-batches (dict of tensors with a leading task dimension).
    """
    evaluate = learner.evaluation_function(steps)
    collected = {}
    seen = 0
    for batch in episodes:
        for name, values in evaluate(batch).items():
            collected.setdefault(name, []).append(values.numpy())
        seen += int(batch["support_x"].shape[0])
        if seen >= num_tasks:
            break
    if seen < num_tasks:
        raise DataError(f"the evaluation stream ended after {seen} of {num_tasks} episodes; "
                        "lower the number of evaluation tasks or provide more data")
    per_task = {name: np.concatenate(chunks)[:num_tasks] for name, chunks in collected.items()}
    return per_task, {name: mean_ci95(values) for name, values in per_task.items()}
