"""Outer-loop optimisers (one for the initialisation, one for the meta-parameters)."""

import keras

from wtl_tf import settings
from wtl_tf.errors import ConfigError
from wtl_tf.rules.base import chain_has_meta_parameters

KINDS = ("adam", "sgd", "sgd_nesterov")


def _has_meta_parameters(c):
    """A link with meta-parameters (masks, rates, a learned alpha: each link says) or warp
    layers, in a MAML-family learner (Warp-Leap's replay uses plain SGD)."""
    return settings.maml_family(c) and (chain_has_meta_parameters(c) or bool(c.warp_layers))


_OPTIMIZERS = tuple(KINDS)
settings.declare(
    settings.Setting("outer_optimizer", "enum", None, "optimiser of theta (unset: the "
                     "dataset's, else adam)", choices=_OPTIMIZERS, group="outer loop",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
    settings.Setting("outer_lr", "float", None, f"learning rate of theta ({settings.UNSET_HELP})",
                     group="outer loop",
                     reads=settings.either(settings.few_shot, settings.osaka_learner,
                                           settings.slow_rate_learner),
                     scope="few-shot runs; sync_la_maml and c_maml (eta_theta); continual_maml "
                           "(pretraining Adam)", low=0, low_open=True),
    settings.Setting("outer_clip", "float", None, "clip theta's gradients to [-c, c]",
                     group="outer loop",
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=0),
    settings.Setting("meta_optimizer", "enum", None, "optimiser of masks/rates/warp layers "
                     "(unset: the dataset's, else adam; Warp-Leap always uses SGD inside its "
                     "replay)", choices=_OPTIMIZERS, group="outer loop",
                     reads=_has_meta_parameters,
                     scope="learners with meta-parameters (masks, rates, warp layers, a learned "
                           "alpha); not warp_leap (SGD in its replay)"),
    settings.Setting("meta_lr", "float", None, "learning rate of masks/rates/warp layers "
                     "(default: --outer_lr)", group="outer loop",
                     reads=lambda c: _has_meta_parameters(c) or (
                         settings.trajectory_learner(c) and bool(c.warp_layers)) or (
                         settings.osaka_learner(c) or settings.sine_learner(c)
                         or settings.has_trait(c, "learned_rates")),
                     scope="learners with meta-parameters; warp_leap (its warp-layer rate); "
                           "La-MAML's eta_alpha; continual_maml's Adam (not sparse_la_maml, "
                           "whose mask steps at --mask_lr)", low=0, low_open=True),
    settings.Setting("meta_clip", "float", None, "clip the meta-parameters' gradients to "
                     "[-c, c]", group="outer loop", reads=_has_meta_parameters,
                     scope="learners with meta-parameters; not warp_leap", low=0),
)


def make_optimizer(kind, learning_rate, clip_value=None, momentum=0.9):
    """`adam`, plain `sgd`, or `sgd_nesterov` (momentum 0.9); optional element-wise clipping."""
    if not learning_rate > 0:
        raise ConfigError(f"outer learning rate must be > 0, got {learning_rate}")
    clip = {"clipvalue": float(clip_value)} if clip_value else {}
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate, **clip)
    if kind == "sgd":
        return keras.optimizers.SGD(learning_rate, **clip)
    if kind == "sgd_nesterov":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True, **clip)
    raise ConfigError(f"unknown optimizer {kind!r}; choose one of {KINDS}")
