"""Sparsity of learned gradient masks: the fraction of entries whose update factor is 0."""

import collections

import numpy as np


def layer_of(path):
    """'conv1/kernel' -> 'conv1' (the task-network layer that owns the tensor)."""
    return path.rsplit("/", 1)[0] if "/" in path else path


def sparsity_report(update_rule):
    """{'per_tensor': {path: s}, 'per_layer': {layer: s}, 'overall': s} (s in [0, 1]).

    Returns None when the rule has no per-parameter factors (e.g. plain MAML).
    """
    factors = update_rule.factors()
    if not factors:
        return None
    per_tensor, zeros, sizes = {}, collections.Counter(), collections.Counter()
    for path, factor in factors.items():
        closed = int(np.sum(np.asarray(factor) == 0))
        size = int(np.size(np.asarray(factor)))
        per_tensor[path] = closed / size
        zeros[layer_of(path)] += closed
        sizes[layer_of(path)] += size
    per_layer = {layer: zeros[layer] / sizes[layer] for layer in sizes}
    return {"per_tensor": per_tensor, "per_layer": per_layer,
            "overall": sum(zeros.values()) / sum(sizes.values())}
