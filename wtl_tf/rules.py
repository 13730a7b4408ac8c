"""Inner-loop update rules as composable links (in the spirit of optax chains).

One inner step on the adapted tensors is

    phi <- project(phi - transform(g, phi, step))

and the first step starts from `initial(theta)`. `begin_task(params)` gives the rule as
applied to one task: stochastic links (sparse-MAML+'s mask hypernetwork) draw their per-task
sample there. Every MAML variant is a chain of links:

    MAML              chain(Scale(alpha))
    Meta-SGD          chain(LearnedRates())
    sparse-MAML       chain(BinaryMask(), Scale(alpha))
    sparse-MAML+      chain(MaskHypernetwork(feature_size), Scale(alpha))
    sparse-ReLU-MAML  chain(ReluRates(alpha))
    meta-exp          chain(ExpRates(alpha))
    weight-mask       chain(WeightMask(), Scale(alpha))
    mask + rates      chain(BinaryMask(), LearnedRates())

Links are Keras layers, so their meta-parameters are tracked, checkpointed and exported
with the learner; `setup(params)` creates them for the list of adapted tensors.
"""

import math

import keras
import numpy as np
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

    def begin_task(self, params, seed=None, evaluation=False):
        """This link as applied to one task (deterministic links: itself).

        `seed` (int64 [2]) makes a stochastic link's per-task draw reproducible;
        `evaluation` marks meta-test adaptation (links may behave differently there)."""
        return self

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


class TaskChain:
    """Links applied in order (the first link sees the raw gradient), for one task."""

    def __init__(self, links):
        self.links = list(links)

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


class FixedFactors:
    """g -> f * g with per-task factors already drawn (see MaskHypernetwork.begin_task)."""

    def __init__(self, factors):
        self.factors = factors

    def initial(self, params):
        return params

    def transform(self, grads, params, step):
        return [f * g for f, g in zip(self.factors, grads)]

    def project(self, params):
        return params


class Chain(UpdateRule):
    """A chain of links; `begin_task` binds every link to one task."""

    def __init__(self, links, **kwargs):
        super().__init__(**kwargs)
        if not links:
            raise ConfigError("an update chain needs at least one link, e.g. Scale(alpha)")
        self.links = list(links)

    def setup(self, params):
        for link in self.links:
            link.setup(params)
        super().setup(params)

    def begin_task(self, params, seed=None, evaluation=False):
        seeds = [None if seed is None else tf.random.experimental.stateless_fold_in(seed, i)
                 for i in range(len(self.links))]
        return TaskChain([link.begin_task(params, s, evaluation)
                          for link, s in zip(self.links, seeds)])

    @property
    def lockstep(self):
        return any(getattr(link, "lockstep", False) for link in self.links)

    @property
    def concurrent_at_eval(self):
        return any(getattr(link, "concurrent_at_eval", False) for link in self.links)

    def observe(self, step_means):
        for link in self.links:
            if hasattr(link, "observe"):
                link.observe(step_means)

    def initial(self, params):
        return TaskChain(self.links).initial(params)

    def transform(self, grads, params, step):
        return TaskChain(self.links).transform(grads, params, step)

    def project(self, params):
        return TaskChain(self.links).project(params)

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
                                          name=_variable_name(p.path))
                       for i, p in enumerate(params) if i not in self.generated}
        super().setup(params)

    def masks(self, noise):
        z = noise * self.w1 + self.w2
        logits = tf.linalg.matvec(self.kernel, z, transpose_a=True) + self.bias + self.init_shift
        chunks = tf.split(logits, self.sizes)
        generated = {i: binary_step(tf.reshape(c, shape))
                     for i, c, shape in zip(self.generated, chunks, self.shapes)}
        return [generated[i] if i in generated else binary_step(self.static[i])
                for i in range(len(self.param_paths))]

    def begin_task(self, params, seed=None, evaluation=False):
        shape, dtype = [self.feature_size], self.w1.dtype
        noise = (tf.random.normal(shape, dtype=dtype) if seed is None
                 else tf.random.stateless_normal(shape, seed, dtype=dtype))
        return FixedFactors(self.masks(noise))

    def transform(self, grads, params, step):
        return FixedFactors(self.masks(tf.zeros_like(self.w1))).transform(grads, params, step)

    def factors(self):
        return dict(zip(self.param_paths, self.masks(tf.zeros_like(self.w1))))


class ShareGradients(UpdateRule):
    """Gradient sharing between tasks (Chang & Lipson, 2023; our reconstruction):

        g_i <- g_i + lambda_c[k] * mean_{j != i} g_j + lambda_p[k] * h[k]

    for task i at inner step k. The concurrent term needs the other tasks' gradients of the
    same step, so a learner whose chain holds this link runs the tasks of a meta-batch in
    lock-step (`lockstep = True`); a single task (meta-test) has no concurrent term. h[k] is
    an exponential moving average (decay `decay`, not trained) of the batch-mean raw inner
    gradient at step k over earlier meta-iterations, updated by `observe` after each
    meta-update and frozen at evaluation (`past_at_eval=False` drops it there instead).
    lambda_c and lambda_p are meta-learned, one per inner step (`per_layer`: one per step
    and adapted layer), initialised to 0 so training starts as plain MAML. Steps beyond
    `steps` (longer evaluation loops) reuse the last step's coefficients and average.
    """

    lockstep = True

    def __init__(self, steps, decay=0.9, per_layer=False, past_at_eval=True,
                 concurrent_at_eval=False, **kwargs):
        super().__init__(**kwargs)
        self.concurrent_at_eval = bool(concurrent_at_eval)
        if int(steps) < 1:
            raise ConfigError("gradient sharing needs at least one inner step")
        self.steps, self.decay = int(steps), float(decay)
        self.per_layer, self.past_at_eval = bool(per_layer), bool(past_at_eval)
        if not 0.0 <= self.decay < 1.0:
            raise ConfigError(f"the moving-average decay must be in [0, 1), got {decay}")

    def setup(self, params):
        from wtl_tf.sparsity import layer_of

        layers = sorted({layer_of(p.path) for p in params}) if self.per_layer else ["all"]
        self.group = [layers.index(layer_of(p.path)) if self.per_layer else 0 for p in params]
        dtype = params[0].dtype
        self.concurrent = self.add_weight(shape=(self.steps, len(layers)), initializer="zeros",
                                          dtype=dtype, name="concurrent_coefficients")
        self.past = self.add_weight(shape=(self.steps, len(layers)), initializer="zeros",
                                    dtype=dtype, name="past_coefficients")
        # aggregation="mean": under tf.distribute each replica observes its own tasks.
        self.average = [self.add_weight(shape=(self.steps, *p.shape), initializer="zeros",
                                        dtype=p.dtype, trainable=False, aggregation="mean",
                                        name=f"average.{_variable_name(p.path)}")
                        for p in params]
        self.shapes = [tuple(p.shape) for p in params]
        super().setup(params)

    def _step(self, step):
        return tf.minimum(step, self.steps - 1) if tf.is_tensor(step) else min(step, self.steps - 1)

    def begin_task(self, params, seed=None, evaluation=False):
        return _AtEvaluation(self) if evaluation else self

    def transform(self, grads, params, step, evaluation=False):
        k = self._step(step)
        out = []
        for g, group, average, shape in zip(grads, self.group, self.average, self.shapes):
            shared = g
            if g.shape.rank == len(shape) + 1:  # [tasks, ...]: lock-step meta-batch
                tasks = tf.cast(tf.shape(g)[0], g.dtype)
                others = (tf.reduce_sum(g, 0, keepdims=True) - g) / tf.maximum(tasks - 1.0, 1.0)
                shared = shared + self.concurrent[k, group] * others
            if not (evaluation and not self.past_at_eval):
                shared = shared + self.past[k, group] * average[k]
            out.append(shared)
        return out

    def observe(self, step_means):
        """Moves each h[k] towards this meta-batch's mean raw inner gradient at step k."""
        for average, means in zip(self.average, zip(*step_means)):
            if len(means) < self.steps:  # fewer steps observed: keep the rest
                means = list(means) + [average[k] for k in range(len(means), self.steps)]
            average.assign(self.decay * average + (1.0 - self.decay) * tf.stack(means))


class _AtEvaluation:
    """ShareGradients bound to a meta-test task (h frozen, or dropped if configured)."""

    def __init__(self, link):
        self.link = link

    def initial(self, params):
        return params

    def transform(self, grads, params, step):
        return self.link.transform(grads, params, step, evaluation=True)

    def project(self, params):
        return params
