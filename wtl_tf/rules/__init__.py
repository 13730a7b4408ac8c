"""Inner-loop update rules as composable links (in the spirit of optax chains).

One inner step on the adapted tensors is

    phi <- project(phi - transform(g, phi, step))

on trees keyed by variable path ({path: tensor}, as Flax keys parameters), and the first
step starts from `initial(theta)`. `begin_task(params)` gives the rule as
applied to one task: stochastic links (sparse-MAML+'s mask hypernetwork) draw their per-task
sample there. Every MAML variant is a chain of links:

    MAML              chain(Scale(alpha))
    Meta-SGD          chain(LearnedRates())
    sparse-MAML       chain(BinaryMask(), Scale(alpha))
    sparse-MAML+      chain(MaskHypernetwork(feature_size), Scale(alpha))
    sparse-ReLU-MAML  chain(ReluRates(alpha))
    meta-exp          chain(ExpRates(alpha))
    weight-mask       chain(WeightMask(), Scale(alpha))
    mask + rates      chain(BinaryMask(), LearnedRates())
    La-MAML           chain(LearnedRates("relu"))          (wtl_tf.continual.la_maml)
    sparse-La-MAML    chain(MaskedRates(alpha0))

Links are Keras layers, so their meta-parameters are tracked, checkpointed and exported
with the learner; `setup(params)` creates them for the adapted variables.

Links are named (`LINKS`, `register_link`) so `--update_rules` and the algorithm registry can
build chains by name; every module of this package is imported here, so a link in a new file
(with the settings it declares) is available everywhere without another edit.
"""

import importlib
import pkgutil

from wtl_tf.rules.base import (LINKS, Chain, FixedFactors, Link, LinkContext, TaskChain,
                               UpdateRule, build_chain, chain, chain_couples_tasks,
                               chain_masks, register_link)
from wtl_tf.rules.clip import ClipGradient
from wtl_tf.rules.elementwise import (BinaryMask, ElementwiseRule, ExpRates, LearnedRates,
                                      MaskedRates, ReluRates, WeightMask)
from wtl_tf.rules.mask_hypernetwork import MaskHypernetwork
from wtl_tf.rules.scale import Scale
from wtl_tf.rules.share_gradients import ShareGradients


def _import_every_link_file():
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_every_link_file()

__all__ = ["LINKS", "BinaryMask", "Chain", "ClipGradient", "ElementwiseRule", "ExpRates",
           "FixedFactors", "LearnedRates", "Link", "LinkContext", "MaskHypernetwork",
           "MaskedRates", "ReluRates", "Scale",
           "ShareGradients", "TaskChain", "UpdateRule", "WeightMask", "build_chain", "chain",
           "chain_couples_tasks", "chain_masks", "register_link"]
