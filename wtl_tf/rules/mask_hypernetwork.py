"""sparse-MAML+: conv-kernel masks drawn per task from a stochastic hypernetwork."""

import math

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.errors import ConfigError
from wtl_tf.meta_init import MetaParameterInitializer
from wtl_tf.rules.base import FixedFactors, UpdateRule, variable_name, register_link
from wtl_tf.step_functions import binary_step


class MaskHypernetwork(UpdateRule):
    """sparse-MAML+: conv-kernel masks drawn per task from a stochastic linear hypernetwork.

    z = eps * w1 + w2 (eps ~ N(0, I) per task, also at evaluation; w1 = 1, w2 = 0 at init);
    one linear layer maps z to every conv kernel's mask logits, which pass through the step
    function after adding `init_shift`. Adapted tensors that are not conv kernels keep a
    static learned mask (initialised by `static_init`). The linear layer starts like
    PyTorch's nn.Linear (weights and bias U[-1/sqrt(feature_size), 1/sqrt(feature_size)]).
    `factors()` reports the mask at eps = 0.
    """

    def __init__(self, feature_size, init_shift=0.0, static_init="kaiming", **kwargs):
        super().__init__(**kwargs)
        self.feature_size, self.init_shift = int(feature_size), float(init_shift)
        self.static_init = static_init

    def setup(self, params):
        dtype = params[0].dtype
        self.generated = [i for i, p in enumerate(params) if len(p.shape) == 4]
        if not self.generated:
            raise ConfigError("sparse-MAML+ generates conv-kernel masks, but no adapted tensor "
                              "is a conv kernel")
        self.sizes = [int(np.prod(params[i].shape)) for i in self.generated]
        self.shapes = [tuple(params[i].shape) for i in self.generated]
        bound = 1.0 / math.sqrt(self.feature_size)
        uniform = keras.initializers.RandomUniform(-bound, bound)
        self.w1 = self.add_weight(shape=(self.feature_size,), initializer="ones", dtype=dtype,
                                  name="noise_scale")
        self.w2 = self.add_weight(shape=(self.feature_size,), initializer="zeros", dtype=dtype,
                                  name="noise_shift")
        self.kernel = self.add_weight(shape=(self.feature_size, sum(self.sizes)),
                                      initializer=uniform, dtype=dtype, name="kernel")
        self.bias = self.add_weight(shape=(sum(self.sizes),), initializer=uniform, dtype=dtype,
                                    name="bias")
        static = MetaParameterInitializer(self.static_init, self.init_shift)
        self.static = {i: self.add_weight(shape=p.shape, initializer=static, dtype=p.dtype,
                                          name=variable_name(p.path))
                       for i, p in enumerate(params) if i not in self.generated}
        super().setup(params)

    def masks(self, noise):
        z = noise * self.w1 + self.w2
        logits = tf.linalg.matvec(self.kernel, z, transpose_a=True) + self.bias + self.init_shift
        chunks = tf.split(logits, self.sizes)
        generated = {i: binary_step(tf.reshape(c, shape))
                     for i, c, shape in zip(self.generated, chunks, self.shapes)}
        return {path: generated[i] if i in generated else binary_step(self.static[i])
                for i, path in enumerate(self.param_paths)}

    def begin_task(self, params, seed=None, evaluation=False):
        shape, dtype = [self.feature_size], self.w1.dtype
        noise = (tf.random.normal(shape, dtype=dtype) if seed is None
                 else tf.random.stateless_normal(shape, seed, dtype=dtype))
        return FixedFactors(self.masks(noise))

    def transform(self, grads, params, step):
        return FixedFactors(self.masks(tf.zeros_like(self.w1))).transform(grads, params, step)

    def factors(self):
        return self.masks(tf.zeros_like(self.w1))



register_link("mask_hypernetwork", lambda c, context: MaskHypernetwork(
    context.feature_size, c.init_shift, c.mask_init or "kaiming"), "H(hypernet(z)) * g")
