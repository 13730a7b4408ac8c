"""One registry from `--algorithm` names to update-rule chains and defaults.

train.py, export and tests build learners through `build_update_rule` and never branch on
algorithm names themselves. A chain can also be given explicitly (`links=`), so combining a
mask with learned rates, say, is a configuration: links=("binary_mask", "learned_rates").
"""

import dataclasses
import types

from wtl_tf import rules, settings
from wtl_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    links: tuple
    adapt: str = "all"
    adapt_batchnorm: bool = True
    first_order: bool = False
    order_is_definition: bool = False  # FOMAML *is* first order; a dataset cannot change it
    # "maml": wtl_tf.learner.MetaLearner; "warp_leap": wtl_tf.warpgrad; the continual learners
    # (wtl_tf.continual): "la_maml", "osaka".
    learner: str = "maml"
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
    # Continual learners (wtl_tf.continual.run): they learn along a stream, not from episodes.
    Algorithm("la_maml", (), learner="la_maml", first_order=True,
              description="La-MAML (Gupta et al. 2020): per-weight learned rates, replay"),
    Algorithm("sync_la_maml", (), learner="la_maml", first_order=True,
              description="Sync-La-MAML: learned rates, theta at a fixed rate"),
    Algorithm("c_maml", (), learner="la_maml", first_order=True,
              description="La-MAML's C-MAML: fixed rates, replay (not OSAKA's Continual-MAML)"),
    Algorithm("sparse_la_maml", (), learner="la_maml", first_order=True,
              description="sparse-La-MAML: binary step mask on the rates"),
    Algorithm("continual_maml", (), learner="osaka", first_order=True, order_is_definition=True,
              description="OSAKA's Continual-MAML: fast/slow weights, shift detection"),
    Algorithm("sparse_continual_maml", (), learner="osaka", first_order=True,
              order_is_definition=True,
              description="sparse-C-MAML: binary step mask on the fast-weight step"),
    Algorithm("warpgrad_sine", (), learner="warp_sine", first_order=True,
              order_is_definition=True, warp_layers=True,
              description="WarpGrad's sequential sine: warp layers against forgetting"),
)}
FEW_SHOT_ALGORITHMS = tuple(n for n, a in ALGORITHMS.items()
                            if a.learner not in settings.CONTINUAL_LEARNERS)
CONTINUAL_ALGORITHMS = tuple(n for n in ALGORITHMS if n not in FEW_SHOT_ALGORITHMS)


ALGORITHM = settings.declare(settings.Setting(
    "algorithm", "string", "sparse_maml", f"one of: {', '.join(ALGORITHMS)}", group="method"))
UPDATE_RULES = settings.declare(settings.Setting(
    "update_rules", "list", None, "explicit inner-loop chain overriding the algorithm's, e.g. "
    f"binary_mask,learned_rates; links: {', '.join(rules.LINKS)}", group="method",
    reads=settings.maml_family, scope="MAML-family learners (not leap / warp_leap)"))
ORDER = settings.declare(settings.Setting(
    "order", "enum", None, f"meta-gradient order ({settings.UNSET_HELP})",
    choices=("first", "second"), group="method",
    reads=settings.either(settings.few_shot, settings.la_maml_family),
    scope="few-shot runs; the La-MAML family"))
ADAPT = settings.declare(settings.Setting(
    "adapt", "string", None, "tensors that adapt: all | head (ANIL) | body (BOIL) | "
    f"regex:<pattern> ({settings.UNSET_HELP})", group="method",
    reads=settings.few_shot, scope=settings.FEW_SHOT))
ADAPT_BATCHNORM = settings.declare(settings.Setting(
    "adapt_batchnorm", "bool", None, "BatchNorm gamma/beta adapt in the inner loop "
    f"({settings.UNSET_HELP})", group="method",
    reads=settings.few_shot, scope=settings.FEW_SHOT))


def get_algorithm(name):
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def build_update_rule(links, config=None, context=None, **values):
    """A Chain of the named links, each built from the run's settings.

    `config` is a resolved ExperimentConfig; without one, `values` give the settings the
    links read (e.g. inner_lr=0.4) and every other setting takes its declared default.
    `context` (rules.LinkContext) tells links about the task network."""
    if config is None:
        from wtl_tf import config as _every_setting  # noqa: F401  (imports every declaration)

        defaults = {s.name: s.default for s in settings.all_settings()}
        config = types.SimpleNamespace(**{**defaults, **values})
    elif values:
        raise TypeError("give a config or setting values, not both")
    return rules.build_chain(links, config, context or rules.LinkContext())
