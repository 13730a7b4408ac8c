"""Sigmoid-gated learned per-layer rates: g -> r_max * sigmoid(s_layer) * g.

One meta-learned gate logit s per task-network layer; every adapted tensor of the layer
steps with rate r_max * sigmoid(s), so a layer's rate stays in (0, r_max) and a layer can
learn to (almost) stop adapting. This file is the whole method: the link, its two settings
and its registration. `--update_rules=gated_rates --gate_init=... --max_rate=...`.
"""

import keras
import tensorflow as tf

from wtl_tf import settings
from wtl_tf.errors import ConfigError
from wtl_tf.rules.base import UpdateRule, register_link
from wtl_tf.sparsity import layer_of

_READS = dict(group="inner loop", reads=settings.uses_link("gated_rates"),
              scope="link gated_rates")
GATE_INIT = settings.declare(settings.Setting(
    "gate_init", "float", 0.0, "gated_rates: initial gate logit s of every layer (rate "
    "max_rate * sigmoid(s); 0 starts at half the maximum)", **_READS))
MAX_RATE = settings.declare(settings.Setting(
    "max_rate", "float", 0.1, "gated_rates: the largest rate a layer's gate can open to",
    **_READS, low=0, low_open=True))


class GatedRates(UpdateRule):
    """g -> max_rate * sigmoid(gate[layer]) * g, one gate per layer of the adapted tensors."""

    def __init__(self, gate_init=0.0, max_rate=0.1, **kwargs):
        super().__init__(**kwargs)
        if not max_rate > 0:
            raise ConfigError(f"--max_rate must be > 0, got {max_rate}")
        self.gate_init, self.max_rate = float(gate_init), float(max_rate)

    def setup(self, params):
        self.layers = sorted({layer_of(p.path) for p in params})
        self.layer_index = [self.layers.index(layer_of(p.path)) for p in params]
        self.shapes = [tuple(p.shape) for p in params]
        self.gates = self.add_weight(
            shape=(len(self.layers),), initializer=keras.initializers.Constant(self.gate_init),
            dtype=params[0].dtype if params else "float32", name="gates")
        super().setup(params)

    def rates(self):
        return self.max_rate * tf.sigmoid(self.gates)

    def transform(self, grads, params, step):
        rates = self.rates()
        return {path: rates[i] * grads[path] for path, i in zip(self.param_paths,
                                                                  self.layer_index)}

    def factors(self):
        rates = self.rates()
        return {path: tf.fill(shape, rates[i])
                for path, i, shape in zip(self.param_paths, self.layer_index, self.shapes)}


register_link("gated_rates", lambda c, context: GatedRates(c.gate_init, c.max_rate),
              "max_rate * sigmoid(gate per layer) * g")
