"""wtl_tf: where to learn — gradient-based meta-learning in TensorFlow/Keras.

    from wtl_tf import MetaLearner, rules, models
    net = models.conv4((28, 28, 1), ways=5)
    learner = MetaLearner(net, rules.chain(rules.BinaryMask(), rules.Scale(0.4)))
    learner.compile(optimizer="adam", meta_optimizer="adam")
    learner.fit(episodes, steps_per_epoch=100, epochs=10)

Names are imported on first use, so `import wtl_tf.cli.train` (the console commands) can set
up logging before TensorFlow loads.
"""

import importlib

_EXPORTS = {
    "Adaptation": "wtl_tf.learner", "MetaLearner": "wtl_tf.learner",
    "ConfigError": "wtl_tf.errors", "DataError": "wtl_tf.errors",
    "NonFiniteLossError": "wtl_tf.errors", "WtlError": "wtl_tf.errors",
}
_SUBMODULES = ("models", "rules")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'wtl_tf' has no attribute {name!r}")
