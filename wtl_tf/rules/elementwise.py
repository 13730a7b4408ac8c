"""Per-parameter links g -> f(m) * g: masks (sparse-MAML) and learned rates."""

import math

import tensorflow as tf

from wtl_tf import settings
from wtl_tf.errors import ConfigError
from wtl_tf.meta_init import MetaParameterInitializer
from wtl_tf.rules.base import FixedFactors, UpdateRule, variable_name, register_link
from wtl_tf.step_functions import binary_step, straight_through_relu

_MASK_LINKS = ("binary_mask", "masked_rates", "mask_hypernetwork", "relu_rates", "weight_mask")
MASK_INIT = settings.declare(settings.Setting(
    "mask_init", "string", None, "mask/rate init: kaiming | uniform | constant | meta_sgd",
    group="inner loop",
    reads=settings.either(settings.uses_link(*_MASK_LINKS), settings.masked_continual),
    scope="links " + ", ".join(_MASK_LINKS) + "; sparse_la_maml, sparse_continual_maml"))
INIT_SHIFT = settings.declare(settings.Setting(
    "init_shift", "float", 0.0, "added to kaiming/uniform mask inits after centring",
    group="inner loop", reads=settings.uses_link(*_MASK_LINKS),
    scope="links " + ", ".join(_MASK_LINKS)))


class ElementwiseRule(UpdateRule):
    """g -> f(m) * g with one meta-learned tensor m per adapted tensor (`per_tensor`: one
    scalar per adapted tensor, as sparse-C-MAML's per-tensor masks)."""

    activation = staticmethod(tf.identity)
    default_init = "constant"
    is_factor = True

    def __init__(self, init=None, init_shift=0.0, init_value=0.0, per_tensor=False, **kwargs):
        super().__init__(**kwargs)
        self.init = init or self.default_init
        self.init_shift, self.init_value = float(init_shift), float(init_value)
        self.per_tensor = bool(per_tensor)

    def setup(self, params):
        initializer = MetaParameterInitializer(self.init, self.init_shift, self.init_value)
        self.meta = [
            self.add_weight(shape=() if self.per_tensor else p.shape, initializer=initializer,
                            dtype=p.dtype, name=variable_name(p.path))
            for p in params
        ]
        super().setup(params)

    def transform(self, grads, params, step):
        return {path: self.activation(m) * grads[path] for path, m in zip(self.param_paths,
                                                                            self.meta)}

    def factors(self):
        return {path: self.activation(m) for path, m in zip(self.param_paths, self.meta)}

    def begin_task(self, params, seed=None, evaluation=False):
        # f(m) is constant during a task's adaptation: computed once, so each inner step
        # traces one multiplication instead of the activation's ops.
        return FixedFactors(self.factors())


class BinaryMask(ElementwiseRule):
    """sparse-MAML: g -> H(m) * g, H the straight-through step function."""

    activation = staticmethod(binary_step)
    default_init = "kaiming"
    is_mask = True


class MaskedRates(BinaryMask):
    """sparse-La-MAML: g -> (a * H(m)) * g, a binary mask with its scalar rate a inside.

    binary_mask then scale gives the same steps up to rounding (a * (H(m) * g)); this link
    keeps the La-MAML family's order, in which the mask's gradient is (dL/dstep * g) * a."""

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)

    def activation(self, m):
        return self.rate * binary_step(m)


class LearnedRates(ElementwiseRule):
    """Meta-SGD: g -> a * g, a initialised U[0.005, 0.1]. With activation="relu" (La-MAML):
    g -> ReLU(a) * g, whose gradient stops at a < 0 (unlike relu_rates' identity backward)."""

    default_init = "meta_sgd"
    ACTIVATIONS = {"identity": tf.identity, "relu": tf.nn.relu}

    def __init__(self, activation="identity", **kwargs):
        if activation not in self.ACTIVATIONS:
            raise ConfigError(f"learned rates' activation must be one of "
                              f"{sorted(self.ACTIVATIONS)}, got {activation!r}")
        super().__init__(**kwargs)
        self.activation_name = activation
        self.activation = self.ACTIVATIONS[activation]


class ReluRates(ElementwiseRule):
    """sparse-ReLU-MAML: g -> ReLU(m) * g (identity backward), m initialised to alpha."""

    activation = staticmethod(straight_through_relu)

    def __init__(self, alpha=None, init="constant", **kwargs):
        kwargs.setdefault("init_value", alpha if alpha is not None else 0.0)
        super().__init__(init=init, **kwargs)


class ExpRates(ElementwiseRule):
    """meta-exp: g -> exp(m) * g, m initialised to log(alpha) so training starts as MAML."""

    activation = staticmethod(tf.exp)

    def __init__(self, alpha, init="constant", **kwargs):
        if not alpha > 0:
            raise ConfigError(f"meta-exp needs alpha > 0, got {alpha}")
        kwargs.setdefault("init_value", math.log(alpha))
        super().__init__(init=init, **kwargs)


class WeightMask(ElementwiseRule):
    """Masks the weights themselves: phi_0 = theta * M, phi_{k+1} = (phi_k - U(g)) * M."""

    activation = staticmethod(binary_step)
    default_init = "kaiming"
    is_mask = True
    is_factor = False

    def initial(self, params):
        return {path: params[path] * binary_step(m) for path, m in zip(self.param_paths,
                                                                        self.meta)}

    def transform(self, grads, params, step):
        return grads

    def begin_task(self, params, seed=None, evaluation=False):
        return self

    project = initial



def _constant_init(c):
    return c.mask_init == "constant"


def _per_tensor_mask(c):
    # Continual-MAML's masks may hold one logit per tensor (--mask_granularity).
    return settings.osaka_learner(c) and c.mask_granularity == "per_tensor"


register_link("binary_mask", lambda c, context: BinaryMask(
    init=c.mask_init, init_shift=c.init_shift, init_value=c.inner_lr,
    per_tensor=_per_tensor_mask(c)), "H(m) * g",
    reads=(("inner_lr", _constant_init),), masks=True)


def _learned_rates(c, context):
    if settings.la_maml_family(c):  # La-MAML's alpha: alpha0 everywhere, its activation
        return LearnedRates(c.rate_activation or "identity", init="constant",
                            init_value=c.inner_lr)
    return LearnedRates(init_value=c.inner_lr)


register_link("learned_rates", _learned_rates, "a * g (the La-MAML family: --rate_activation(a) "
              "* g, a from alpha0)")
register_link("masked_rates", lambda c, context: MaskedRates(
    c.inner_lr, init=c.mask_init, init_shift=c.init_shift, init_value=c.inner_lr),
    "(alpha H(m)) * g", reads=("inner_lr",), masks=True)
register_link("relu_rates", lambda c, context: ReluRates(
    c.inner_lr, init=c.mask_init or "constant", init_shift=c.init_shift), "ReLU(m) * g",
    reads=("inner_lr",))
register_link("exp_rates", lambda c, context: ExpRates(c.inner_lr), "exp(m) * g",
              reads=("inner_lr",))
register_link("tensor_exp_rates", lambda c, context: ExpRates(
    c.inner_lr, per_tensor=True, trainable=bool(c.learn_inner_lr)),
    "exp(m) * g, one m per tensor (Continual-MAML's alpha; learned with --learn_inner_lr)",
    reads=("inner_lr", "learn_inner_lr"), meta_parameters=lambda c: bool(c.learn_inner_lr))
register_link("weight_mask", lambda c, context: WeightMask(
    init=c.mask_init, init_shift=c.init_shift, init_value=c.inner_lr), "phi * H(m)",
    reads=(("inner_lr", _constant_init),), masks=True)
