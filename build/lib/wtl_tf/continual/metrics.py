"""Continual-learning metrics from the accuracy matrix R[i, j] (test accuracy on task j after
training on task i), as in GEM / La-MAML."""

import numpy as np


def retained_accuracy(r):
    """RA = (1/T) sum_j R[T, j]: mean accuracy over all tasks after the last one."""
    r = np.asarray(r, dtype=np.float64)
    return float(np.mean(r[-1]))


def learning_accuracy(r):
    """LA = (1/T) sum_j R[j, j]: each task's accuracy right after it was learned."""
    r = np.asarray(r, dtype=np.float64)
    return float(np.mean(np.diag(r)))


def backward_transfer(r, normalisation="T-1"):
    """BTI = (1/(T-1)) sum_{j<T} (R[T, j] - R[j, j]) (negative: forgetting).

    `normalisation="T"` divides by T instead, as the GEM-derived code does (its last term is
    0); report both when comparing with published numbers."""
    r = np.asarray(r, dtype=np.float64)
    tasks = r.shape[0]
    if r.shape != (tasks, tasks):
        raise ValueError(f"R must be square [T, T], got {r.shape}")
    total = float(np.sum(r[-1, :-1] - np.diag(r)[:-1]))
    if normalisation == "T-1":
        return total / (tasks - 1) if tasks > 1 else 0.0
    if normalisation == "T":
        return total / tasks
    raise ValueError(f"normalisation must be 'T-1' or 'T', got {normalisation!r}")


def summary(r):
    """RA, LA and both BTI normalisations of an accuracy matrix."""
    return {"retained_accuracy": retained_accuracy(r), "learning_accuracy": learning_accuracy(r),
            "backward_transfer": backward_transfer(r, "T-1"),
            "backward_transfer_over_T": backward_transfer(r, "T")}
