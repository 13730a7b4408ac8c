"""wtl_tf: where to learn — gradient-based meta-learning in TensorFlow/Keras.

    from wtl_tf import MetaLearner, rules, models
    net = models.conv4((28, 28, 1), ways=5)
    learner = MetaLearner(net, rules.chain(rules.BinaryMask(), rules.Scale(0.4)))
    learner.compile(optimizer="adam", meta_optimizer="adam")
    learner.fit(episodes, steps_per_epoch=100, epochs=10)
"""

from wtl_tf import models, rules
from wtl_tf.errors import ConfigError, DataError, NonFiniteLossError, WtlError
from wtl_tf.learner import Adaptation, MetaLearner

__all__ = ["Adaptation", "ConfigError", "DataError", "MetaLearner", "NonFiniteLossError",
           "WtlError", "models", "rules"]
