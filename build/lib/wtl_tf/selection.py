"""Which tensors of a task network adapt in the inner loop.

    all    every trainable tensor (MAML)
    head   only the last layer that has weights (ANIL)
    body   everything except that layer (BOIL)
    regex:<pattern>  tensors whose variable path matches the pattern

`adapt_batchnorm=False` additionally keeps normalisation layers out of the inner loop (the
ResNet-12 reference). Warp layers (WarpGrad) never adapt, whatever the mode. Tensors that do
not adapt are still meta-learned by the outer loop.
"""

import re

import keras

from wtl_tf.errors import ConfigError
from wtl_tf.models.layers import BatchNorm


MODES = ("all", "head", "body")


def leaf_layers(model):
    """The layers that own weights directly, in model order (nested models flattened)."""
    leaves = []
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):
            leaves.extend(leaf_layers(layer))
        else:
            leaves.append(layer)
    return leaves


def is_normalization(layer):
    return isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
                              keras.layers.GroupNormalization, BatchNorm))


def is_warp(layer):
    return bool(getattr(layer, "is_warp", False))


def _owners(model):
    owner = {}
    for layer in leaf_layers(model):
        for v in layer.trainable_weights:
            owner[id(v)] = layer
    return owner


def warp_mask(model):
    """One bool per `model.trainable_variables` entry: True for warp-layer weights."""
    owner = _owners(model)
    return [is_warp(owner.get(id(v))) for v in model.trainable_variables]


def adapted_mask(model, mode="all", adapt_batchnorm=True):
    """One bool per `model.trainable_variables` entry: True where the tensor adapts."""
    variables = model.trainable_variables
    if not variables:
        raise ConfigError("the task network has no trainable weights; build it before use")
    owner = _owners(model)
    if mode == "all":
        chosen = [True] * len(variables)
    elif mode in ("head", "body"):
        with_weights = [layer for layer in leaf_layers(model)
                        if layer.trainable_weights and not is_warp(layer)]
        head = with_weights[-1] if with_weights else None
        is_head = [owner.get(id(v)) is head for v in variables]
        chosen = is_head if mode == "head" else [not h for h in is_head]
    elif mode.startswith("regex:"):
        pattern = re.compile(mode[len("regex:"):])
        chosen = [bool(pattern.search(v.path)) for v in variables]
    else:
        raise ConfigError(f"unknown adapt mode {mode!r}; use one of {MODES} or 'regex:<pattern>'")
    if not adapt_batchnorm:
        chosen = [c and not is_normalization(owner.get(id(v))) for c, v in zip(chosen, variables)]
    chosen = [c and not w for c, w in zip(chosen, warp_mask(model))]
    if not any(chosen):
        raise ConfigError(f"adapt mode {mode!r} (adapt_batchnorm={adapt_batchnorm}) selects no "
                          "tensor of the task network; nothing would adapt in the inner loop")
    return chosen
