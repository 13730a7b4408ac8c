"""g -> clip(g, -limit, limit): the La-MAML family's inner clip (its CIFAR configuration)."""

import tensorflow as tf

from wtl_tf.errors import ConfigError
from wtl_tf.rules.base import UpdateRule


class ClipGradient(UpdateRule):
    """Clips every entry of the inner gradient to [-limit, limit] (before the links after it).

    Not a named link: the La-MAML family puts it first in its chain when --inner_clip is set."""

    def __init__(self, limit, **kwargs):
        super().__init__(**kwargs)
        if not limit > 0:
            raise ConfigError(f"the inner clip must be > 0, got {limit}")
        self.limit = float(limit)

    def transform(self, grads, params, step):
        return {path: tf.clip_by_value(g, -self.limit, self.limit) for path, g in grads.items()}
