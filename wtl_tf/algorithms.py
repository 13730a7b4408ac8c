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
    # The learner kind (settings.LEARNER_KINDS): "episodic" (wtl_tf.learner.MetaLearner),
    # "trajectory" (Leap / Warp-Leap, wtl_tf.warpgrad), and the continual learners:
    # "lookahead_replay" (the La-MAML family), "osaka", "warp_sine".
    learner: str = "episodic"
    warp_layers: bool = False  # the task network gets warp layers (WarpGrad)
    description: str = ""
    # Facts other modules ask about instead of the name (settings.has_trait): "masked" (a
    # binary step mask on a continual update), "fixed_theta_rate" (theta's slow step at
    # --outer_lr), "learned_rates" (La-MAML's alpha meta-learned at --meta_lr).
    traits: frozenset = frozenset()
    # The learner's own options (the La-MAML family: how rates and the slow step work).
    options: tuple = ()
    # Reference hyperparameters per stream (the La-MAML family).
    stream_defaults: tuple = ()
    order_hint: str = ""  # appended when --order contradicts a first/second-order definition

    def __post_init__(self):
        settings.register_algorithm(self.name, self.learner, self.traits)


# La-MAML's reference hyperparameters (MNIST rows, here on their Omniglot analogues): glances,
# alpha0 (--inner_lr), eta_alpha (--meta_lr), eta_theta (--outer_lr), memories; the CIFAR-100
# row on Split-Omniglot and Split-CIFAR-100 (single pass), the TinyImageNet row.
_LA_MAML_REFERENCE = {
    "rotated_omniglot": {
        "la_maml": dict(glances=5, inner_lr=0.15, meta_lr=0.3),
        "sparse_la_maml": dict(glances=5, inner_lr=0.15),
        "c_maml": dict(glances=5, inner_lr=0.1, outer_lr=0.1),
        "sync_la_maml": dict(glances=5, inner_lr=0.15, meta_lr=0.1, outer_lr=0.3)},
    "permuted_omniglot": {
        "la_maml": dict(glances=5, inner_lr=0.15, meta_lr=0.3),
        "sparse_la_maml": dict(glances=5, inner_lr=0.15),
        "c_maml": dict(glances=5, inner_lr=0.03, outer_lr=0.1),
        "sync_la_maml": dict(glances=5, inner_lr=0.15, meta_lr=0.1, outer_lr=0.1)},
    "many_permuted_omniglot": {
        "la_maml": dict(glances=10, inner_lr=0.1, meta_lr=0.1, memories=500),
        "sparse_la_maml": dict(glances=10, inner_lr=0.1, memories=500),
        "c_maml": dict(glances=5, inner_lr=0.03, outer_lr=0.15, memories=500),
        "sync_la_maml": dict(glances=10, inner_lr=0.03, meta_lr=0.1, outer_lr=0.03,
                             memories=500)},
    "split": {
        "la_maml": dict(glances=10, inner_lr=0.1, meta_lr=0.25, grad_clip_norm=1.0),
        "sparse_la_maml": dict(glances=10, inner_lr=0.1, grad_clip_norm=1.0),
        "c_maml": dict(glances=2, inner_lr=0.075, outer_lr=0.075),
        "sync_la_maml": dict(glances=5, inner_lr=0.1, meta_lr=0.35, outer_lr=0.1)},
    "split_tiny_imagenet": {
        "la_maml": dict(glances=2, inner_lr=0.1, meta_lr=0.4, grad_clip_norm=1.0, memories=400),
        "sparse_la_maml": dict(glances=2, inner_lr=0.1, grad_clip_norm=1.0, memories=400),
        "c_maml": dict(glances=2, inner_lr=0.03, outer_lr=0.03, memories=400),
        "sync_la_maml": dict(glances=2, inner_lr=0.075, meta_lr=0.25, outer_lr=0.075,
                             memories=400)},
}
_STREAM_ROWS = {"rotated_omniglot": "rotated_omniglot", "rotated_mnist": "rotated_omniglot",
                "permuted_omniglot": "permuted_omniglot", "permuted_mnist": "permuted_omniglot",
                "many_permuted_omniglot": "many_permuted_omniglot",
                "split_omniglot": "split", "split_omniglot_alphabets": "split",
                "split_cifar100": "split", "split_tiny_imagenet": "split_tiny_imagenet"}


def la_maml_reference(name):
    """((stream, ((setting, value), ...)), ...): one learner's reference rows, hashable."""
    return tuple((stream, tuple(_LA_MAML_REFERENCE[row][name].items()))
                 for stream, row in _STREAM_ROWS.items())


ALGORITHMS = {a.name: a for a in (
    Algorithm("maml", ("scale",), description="MAML (Finn et al. 2017), all tensors adapt"),
    Algorithm("fomaml", ("scale",), first_order=True, order_is_definition=True,
              order_hint="--algorithm=maml is second-order MAML",
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
              learner="trajectory", warp_layers=True,
              description="offline WarpGrad: warp layers by trajectory replay, Leap initialisation"),
    Algorithm("leap", ("scale",), first_order=True, order_is_definition=True,
              learner="trajectory", description="Leap alone: the Warp-Leap learner without warp "
                                               "layers"),
    Algorithm("warp_maml", ("scale",), warp_layers=True,
              description="online WarpGrad: MAML with meta-learned warp layers"),
    # Continual learners (wtl_tf.continual.run): they learn along a stream, not from episodes.
    # The La-MAML family's links: alpha (learned_rates: ReLU(alpha) g, the MNIST file) or
    # alpha0 H(m) (masked_rates); `rates` says whether the chain's weights are meta-learned.
    Algorithm("la_maml", ("learned_rates",), learner="lookahead_replay", first_order=True,
              traits=frozenset({"learned_rates"}),
              options=(("rates", "learned"), ("slow_step", "rates")),
              stream_defaults=la_maml_reference("la_maml"),
              description="La-MAML (Gupta et al. 2020): per-weight learned rates, replay"),
    Algorithm("sync_la_maml", ("learned_rates",), learner="lookahead_replay", first_order=True,
              traits=frozenset({"learned_rates", "fixed_theta_rate"}),
              options=(("rates", "learned"), ("slow_step", "fixed")),
              stream_defaults=la_maml_reference("sync_la_maml"),
              description="Sync-La-MAML: learned rates, theta at a fixed rate"),
    Algorithm("c_maml", ("learned_rates",), learner="lookahead_replay", first_order=True,
              traits=frozenset({"fixed_theta_rate"}),
              options=(("rates", "fixed"), ("slow_step", "fixed")),
              stream_defaults=la_maml_reference("c_maml"),
              description="La-MAML's C-MAML: fixed rates, replay (not OSAKA's Continual-MAML)"),
    Algorithm("sparse_la_maml", ("masked_rates",), learner="lookahead_replay", first_order=True,
              traits=frozenset({"masked"}),
              options=(("rates", "masked"), ("slow_step", "rates")),
              stream_defaults=la_maml_reference("sparse_la_maml"),
              description="sparse-La-MAML: binary step mask on the rates"),
    # Continual-MAML's chain: alpha per tensor (exp of a learned log-rate), under a mask.
    Algorithm("continual_maml", ("tensor_exp_rates",), learner="osaka", first_order=True, order_is_definition=True,
              description="OSAKA's Continual-MAML: fast/slow weights, shift detection"),
    Algorithm("sparse_continual_maml", ("binary_mask", "tensor_exp_rates"), learner="osaka", first_order=True,
              order_is_definition=True, traits=frozenset({"masked"}),
              description="sparse-C-MAML: binary step mask on the fast-weight step"),
    Algorithm("warpgrad_sine", (), learner="warp_sine", first_order=True,
              order_is_definition=True, warp_layers=True,
              description="WarpGrad's sequential sine: warp layers against forgetting"),
)}
FEW_SHOT_ALGORITHMS = tuple(n for n, a in ALGORITHMS.items()
                            if a.learner not in settings.CONTINUAL_LEARNERS)
CONTINUAL_ALGORITHMS = tuple(n for n in ALGORITHMS if n not in FEW_SHOT_ALGORITHMS)


ALGORITHM = settings.declare(settings.Setting(
    "algorithm", "enum", "sparse_maml", "the meta-learning method (docs/algorithms.md)",
    choices=tuple(ALGORITHMS), group="method"))
UPDATE_RULES = settings.declare(settings.Setting(
    "update_rules", "list", None, "explicit inner-loop chain overriding the algorithm's, e.g. "
    f"binary_mask,learned_rates; links: {', '.join(rules.LINKS)}", group="method",
    reads=settings.chain_learner, scope="MAML-family learners (not leap / warp_leap); the "
    "La-MAML family; continual_maml"))
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


def stream_defaults(algorithm, stream):
    """The reference settings of a continual learner on `stream` ({} when it has none)."""
    return dict(dict(get_algorithm(algorithm).stream_defaults).get(stream, ()))


def learner_options(name):
    """The learner's own options of algorithm `name` (La-MAML: rates, slow_step)."""
    return dict(get_algorithm(name).options)


def get_algorithm(name):
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def build_update_rule(links, config=None, context=None, **values):
    """A Chain of the named links, each built from the run's settings.

    `config` is a resolved ExperimentConfig; without one, `values` give the settings the
    links read (e.g. inner_lr=0.4) and every other setting takes its declared default.
    `context` (rules.LinkContext) tells links about the task network."""
    if config is None:  # the links' own settings are declared beside them (wtl_tf.rules)
        defaults = {s.name: s.default for s in settings.all_settings()}
        config = types.SimpleNamespace(**{**defaults, **values})
    elif values:
        raise TypeError("give a config or setting values, not both")
    return rules.build_chain(links, config, context or rules.LinkContext())
