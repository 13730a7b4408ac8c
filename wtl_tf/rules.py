"""Inner-loop update rules as composable links (in the spirit of optax chains).

One inner step on the adapted tensors is

    phi <- project(phi - transform(g, phi, step))

and the first step starts from `initial(theta)`. Every MAML variant is a chain of links:

    MAML              chain(Scale(alpha))
    Meta-SGD          chain(LearnedRates())
    sparse-MAML       chain(BinaryMask(), Scale(alpha))
    sparse-ReLU-MAML  chain(ReluRates(alpha))
    meta-exp          chain(ExpRates(alpha))
    weight-mask       chain(WeightMask(), Scale(alpha))
    mask + rates      chain(BinaryMask(), LearnedRates())

Links are Keras layers, so their meta-parameters are tracked, checkpointed and exported
with the learner; `setup(params)` creates them for the list of adapted tensors.
"""

import math

import keras
import tensorflow as tf

from wtl_tf.errors import ConfigError
from wtl_tf.meta_init import MetaParameterInitializer
from wtl_tf.step_functions import binary_step, straight_through_relu


def _variable_name(path):
    # Keras variable names may not contain "/".
    return path.replace("/", ".")


class UpdateRule(keras.layers.Layer):
    """Base link: the identity at every hook."""

    def setup(self, params):
        """Creates this link's meta-parameters for `params` (the adapted variables)."""
        self.param_paths = [p.path for p in params]
        self.built = True

    def initial(self, params):
        return params

    def transform(self, grads, params, step):
        return grads

    def project(self, params):
        return params

    def factors(self):
        """Per-parameter multipliers of the gradient, by adapted-tensor path (or {})."""
        return {}

    def call(self, inputs):  # Layers must be callable; links are used through their hooks.
        raise TypeError(f"{type(self).__name__} is an update rule; use transform()/initial()")


class Chain(UpdateRule):
    """Applies links in order: the first link sees the raw gradient."""

    def __init__(self, links, **kwargs):
        super().__init__(**kwargs)
        if not links:
            raise ConfigError("an update chain needs at least one link, e.g. Scale(alpha)")
        self.links = list(links)

    def setup(self, params):
        for link in self.links:
            link.setup(params)
        super().setup(params)

    def initial(self, params):
        for link in self.links:
            params = link.initial(params)
        return params

    def transform(self, grads, params, step):
        for link in self.links:
            grads = link.transform(grads, params, step)
        return grads

    def project(self, params):
        for link in self.links:
            params = link.project(params)
        return params

    def factors(self):
        combined = {}
        for link in self.links:
            for path, factor in link.factors().items():
                combined[path] = combined[path] * factor if path in combined else factor
        return combined


def chain(*links):
    return Chain(links)


class Scale(UpdateRule):
    """g -> alpha * g (MAML's scalar inner learning rate; optionally meta-learned)."""

    def __init__(self, alpha, learnable=False, **kwargs):
        super().__init__(**kwargs)
        if not alpha > 0:
            raise ConfigError(f"inner learning rate must be > 0, got {alpha}")
        self.alpha_value, self.learnable = float(alpha), learnable

    def setup(self, params):
        dtype = params[0].dtype if params else "float32"
        self.alpha = self.add_weight(
            shape=(), initializer=lambda shape, dtype: tf.fill(shape, tf.constant(self.alpha_value, dtype)),
            trainable=self.learnable, name="alpha", dtype=dtype)
        super().setup(params)

    def transform(self, grads, params, step):
        return [self.alpha * g for g in grads]


class ElementwiseRule(UpdateRule):
    """g -> f(m) * g with one meta-learned tensor m per adapted tensor."""

    activation = staticmethod(tf.identity)
    default_init = "constant"

    def __init__(self, init=None, init_shift=0.0, init_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.init = init or self.default_init
        self.init_shift, self.init_value = float(init_shift), float(init_value)

    def setup(self, params):
        initializer = MetaParameterInitializer(self.init, self.init_shift, self.init_value)
        self.meta = [
            self.add_weight(shape=p.shape, initializer=initializer, dtype=p.dtype,
                            name=_variable_name(p.path))
            for p in params
        ]
        super().setup(params)

    def transform(self, grads, params, step):
        return [self.activation(m) * g for m, g in zip(self.meta, grads)]

    def factors(self):
        return {path: self.activation(m) for path, m in zip(self.param_paths, self.meta)}


class BinaryMask(ElementwiseRule):
    """sparse-MAML: g -> H(m) * g, H the straight-through step function."""

    activation = staticmethod(binary_step)
    default_init = "kaiming"


class LearnedRates(ElementwiseRule):
    """Meta-SGD: g -> a * g, a initialised U[0.005, 0.1]."""

    default_init = "meta_sgd"


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

    def initial(self, params):
        return [p * binary_step(m) for p, m in zip(params, self.meta)]

    def transform(self, grads, params, step):
        return grads

    project = initial
