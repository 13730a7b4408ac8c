"""Meta-test: per-task adaptation on held-out episodes, mean and 95% confidence interval."""

import numpy as np

from wtl_tf.errors import DataError


# Student's t 97.5% quantiles for 1..30 degrees of freedom (two-sided 95%).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_critical_95(dof):
    """Two-sided 95% critical value of Student's t with `dof` degrees of freedom.

    A table to 30, beyond it the Cornish-Fisher expansion around 1.96 (error < 1e-4), so
    intervals over three seeds use 4.30 standard errors, not the normal 1.96.
    """
    if dof < 1:
        raise ValueError(f"a t interval needs at least 2 values (dof = {dof})")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = 1.959963984540054
    return (z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * dof ** 3))


def mean_ci95(values, axis=None):
    """(mean, half-width of the 95% t interval) along `axis` (all values when None).

    Half-width = t(n - 1) * sample std / sqrt(n); NaN when there are fewer than two values.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size if axis is None else values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        return _as_float(mean), _as_float(np.full_like(mean, np.nan))
    half = t_critical_95(n - 1) * values.std(ddof=1, axis=axis) / np.sqrt(n)
    return _as_float(mean), _as_float(half)


def _as_float(x):
    return float(x) if np.ndim(x) == 0 else x


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
