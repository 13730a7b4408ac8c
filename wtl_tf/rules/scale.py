"""MAML's scalar inner learning rate (optionally meta-learned)."""

import tensorflow as tf

from wtl_tf import settings
from wtl_tf.errors import ConfigError
from wtl_tf.rules.base import UpdateRule, register_link

LEARN_INNER_LR = settings.declare(settings.Setting(
    "learn_inner_lr", "bool", None, "meta-learn the scalar inner learning rate alpha (unset: "
    "no; continual_maml: yes, one per tensor)",
    group="inner loop",
    reads=settings.uses_link("scale", "tensor_exp_rates"),
    scope="links scale, tensor_exp_rates (continual_maml's alpha, one per tensor)"))


class Scale(UpdateRule):
    """g -> alpha * g (MAML's scalar inner learning rate; optionally meta-learned)."""

    def __init__(self, alpha, learnable=False, **kwargs):
        super().__init__(**kwargs)
        if not alpha > 0:
            raise ConfigError(f"inner learning rate must be > 0, got {alpha}")
        self.alpha_value, self.learnable = float(alpha), bool(learnable)

    def setup(self, params):
        dtype = params[0].dtype if params else "float32"
        self.alpha = self.add_weight(
            shape=(), initializer=lambda shape, dtype: tf.fill(shape, tf.constant(self.alpha_value, dtype)),
            trainable=self.learnable, name="alpha", dtype=dtype)
        super().setup(params)

    def transform(self, grads, params, step):
        return {path: self.alpha * g for path, g in grads.items()}



register_link("scale", lambda c, context: Scale(c.inner_lr, learnable=c.learn_inner_lr),
              "alpha * g", reads=("inner_lr",), meta_parameters=lambda c: bool(c.learn_inner_lr))
