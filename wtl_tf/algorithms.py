"""One registry from `--algorithm` names to update-rule chains and defaults.

train.py, export and tests build learners through `build_update_rule` and never branch on
algorithm names themselves. A chain can also be given explicitly (`links=`), so combining a
mask with learned rates, say, is a configuration: links=("binary_mask", "learned_rates").
"""

import dataclasses

from wtl_tf import rules
from wtl_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    links: tuple
    adapt: str = "all"
    adapt_batchnorm: bool = True
    first_order: bool = False
    order_is_definition: bool = False  # FOMAML *is* first order; a dataset cannot change it
    learner: str = "maml"  # "maml": wtl_tf.learner.MetaLearner; "warp_leap": wtl_tf.warpgrad
    warp_layers: bool = False  # the task network gets warp layers (WarpGrad)
    description: str = ""


ALGORITHMS = {a.name: a for a in (
    Algorithm("maml", ("scale",), description="MAML (Finn et al. 2017), all tensors adapt"),
    Algorithm("fomaml", ("scale",), first_order=True, order_is_definition=True,
              description="first-order MAML"),
    Algorithm("anil", ("scale",), adapt="head", description="ANIL: only the head adapts"),
    Algorithm("boil", ("scale",), adapt="body", description="BOIL: head frozen in the inner loop"),
    Algorithm("meta_sgd", ("learned_rates",), description="Meta-SGD: per-parameter rates"),
    Algorithm("sparse_maml", ("binary_mask", "scale"), first_order=True,
              description="sparse-MAML: learned binary gradient mask (reference: first order)"),
    Algorithm("sparse_maml_plus", ("mask_hypernetwork", "scale"), first_order=True,
              description="sparse-MAML+: conv masks from a stochastic hypernetwork"),
    Algorithm("sparse_relu_maml", ("relu_rates",), first_order=True,
              description="sparse-ReLU-MAML: ReLU(m) rates, identity backward"),
    Algorithm("meta_exp", ("exp_rates",), first_order=True,
              description="exp(m) per-parameter rates"),
    Algorithm("weight_mask", ("weight_mask", "scale"), first_order=True,
              description="learned binary mask on the weights themselves"),
    Algorithm("sparse_maml_meta_sgd", ("binary_mask", "learned_rates"), first_order=True,
              description="binary gradient mask combined with learned rates"),
    Algorithm("grad_sharing", ("share_gradients", "scale"),
              description="MAML with gradient sharing between tasks (Chang & Lipson 2023; "
                          "our reconstruction)"),
    Algorithm("sparse_maml_sharing", ("share_gradients", "binary_mask", "scale"),
              first_order=True, description="sparse-MAML with gradient sharing"),
    Algorithm("warp_leap", ("scale",), first_order=True, order_is_definition=True,
              learner="warp_leap", warp_layers=True,
              description="offline WarpGrad: warp layers by trajectory replay, Leap initialisation"),
    Algorithm("leap", ("scale",), first_order=True, order_is_definition=True,
              learner="warp_leap", description="Leap alone: the Warp-Leap learner without warp "
                                               "layers"),
    Algorithm("warp_maml", ("scale",), warp_layers=True,
              description="online WarpGrad: MAML with meta-learned warp layers"),
)}


@dataclasses.dataclass(frozen=True)
class RuleConfig:
    alpha: float = 0.01
    mask_init: str = None  # None: the link's own default (kaiming for masks, ...)
    init_shift: float = 0.0
    learn_alpha: bool = False
    feature_size: int = None  # sparse-MAML+'s hypernetwork input: the head's fan-in
    inner_steps: int = 1  # gradient sharing: one coefficient pair per inner step
    share_decay: float = 0.9
    share_per_layer: bool = False
    share_past_at_eval: bool = True
    share_concurrent_at_eval: bool = False


LINKS = {
    "scale": lambda c: rules.Scale(c.alpha, learnable=c.learn_alpha),
    "binary_mask": lambda c: rules.BinaryMask(init=c.mask_init, init_shift=c.init_shift,
                                              init_value=c.alpha),
    "mask_hypernetwork": lambda c: rules.MaskHypernetwork(c.feature_size, c.init_shift,
                                                          c.mask_init or "kaiming"),
    "learned_rates": lambda c: rules.LearnedRates(init_value=c.alpha),
    "share_gradients": lambda c: rules.ShareGradients(c.inner_steps, c.share_decay,
                                                      c.share_per_layer, c.share_past_at_eval,
                                                      c.share_concurrent_at_eval),
    "relu_rates": lambda c: rules.ReluRates(c.alpha, init=c.mask_init or "constant",
                                            init_shift=c.init_shift),
    "exp_rates": lambda c: rules.ExpRates(c.alpha),
    "weight_mask": lambda c: rules.WeightMask(init=c.mask_init, init_shift=c.init_shift,
                                              init_value=c.alpha),
}


def get_algorithm(name):
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def build_update_rule(links, config):
    """A Chain of the named links, each built from `config`."""
    unknown = [name for name in links if name not in LINKS]
    if unknown:
        raise ConfigError(f"unknown update-rule link(s) {unknown}; choose from {sorted(LINKS)}")
    return rules.Chain([LINKS[name](config) for name in links])
