"""The update-rule interface, chains of links, and the registry of named links.

A link file in this package defines its link(s), registers each under the name the
command line uses (`register_link`), and declares the settings it reads next to it
(wtl_tf.settings); `wtl_tf.rules` imports every file here, so a new link is one new file.
"""

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from wtl_tf import settings
from wtl_tf.errors import ConfigError


def variable_name(path):
    # Keras variable names may not contain "/".
    return path.replace("/", ".")


class UpdateRule(keras.layers.Layer):
    """Base link: the identity at every hook.

    The hooks work on trees keyed by variable path, the adapted tensors' (as the inner loop's
    parameters): `initial(params)` and `project(params)` map {path: value} to {path: value},
    `transform(grads, params, step)` maps {path: gradient} to {path: update} (the step is
    phi - update). `setup` is given the adapted variables themselves, once."""

    is_mask = False  # its weights are mask logits (continual learners step them at --mask_lr)
    is_factor = False  # its step is g -> factors() * g, with no start or projection of its own

    def __init_subclass__(cls, **kwargs):
        # Every link is a Keras-serialisable object (its constructor arguments are its
        # config), so a learner saved to a .keras file finds its links again by name.
        super().__init_subclass__(**kwargs)
        keras.saving.register_keras_serializable(package="wtl_tf")(cls)

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

    # Links that couple the tasks of a meta-batch (their transform sees [B, ...] gradients
    # of every task at the same step) say so; the learner then runs the tasks in lock-step
    # (wtl_tf.runners.LockstepTasks) and calls `observe` with each step's batch-mean raw
    # inner gradient {path: tensor} after every meta-update.
    couples_tasks = False
    concurrent_at_eval = False  # coupled at meta-test too (one evaluation batch together)

    def observe(self, step_means):
        """Statistics a link keeps across meta-iterations (see `couples_tasks`)."""

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


class BoundRule:
    """A link bound to one task by `begin_task` that only changes the gradient: subclasses
    give `transform`; the start and the projection are the identity."""

    def initial(self, params):
        return params

    def project(self, params):
        return params


class FixedFactors(BoundRule):
    """g -> f * g with per-task factors already drawn (see MaskHypernetwork.begin_task)."""

    def __init__(self, factors):
        self.factors = factors

    def transform(self, grads, params, step):
        return {path: self.factors[path] * g for path, g in grads.items()}


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

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "links": [keras.saving.serialize_keras_object(link) for link in self.links]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        links = [keras.saving.deserialize_keras_object(link) for link in config.pop("links")]
        return cls(links, **config)

    def begin_task(self, params, seed=None, evaluation=False):
        seeds = [None if seed is None else tf.random.experimental.stateless_fold_in(seed, i)
                 for i in range(len(self.links))]
        return TaskChain([link.begin_task(params, s, evaluation)
                          for link, s in zip(self.links, seeds)])

    @property
    def couples_tasks(self):
        return any(link.couples_tasks for link in self.links)

    @property
    def concurrent_at_eval(self):
        return any(link.concurrent_at_eval for link in self.links)

    def observe(self, step_means):
        for link in self.links:
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


class FactorChain(Chain):
    """A chain of factor links (`is_factor`: g -> f_i * g) applied as one factor,
    g -> (f_1 * ... * f_n) * g: the product is formed once per task, then each inner step
    multiplies the gradient once. The same steps as `Chain` up to rounding, and the form of
    Continual-MAML's reference step, phi - (alpha * H(m)) * g."""

    def __init__(self, links, **kwargs):
        super().__init__(links, **kwargs)
        others = [type(link).__name__ for link in self.links if not link.is_factor]
        if others:
            raise ConfigError(f"a FactorChain takes links whose step is f * g; {others} are "
                              "not: use Chain")

    def begin_task(self, params, seed=None, evaluation=False):
        return FixedFactors(self.factors())

    def transform(self, grads, params, step):
        return FixedFactors(self.factors()).transform(grads, params, step)


def fused(links):
    """The links as one rule: a FactorChain when every link is a factor link, else a Chain."""
    links = list(links)
    return (FactorChain if links and all(link.is_factor for link in links) else Chain)(links)


def chain(*links):
    return Chain(links)



@dataclasses.dataclass(frozen=True)
class Link:
    """A named link: how to build it from a run's settings.

    `build(config, context)` gets the resolved configuration (attribute access by setting
    name) and a `LinkContext` of facts about the task network. `reads` names the shared
    settings (declared elsewhere, e.g. --inner_lr) the link reads: a name, or (name,
    predicate on the configuration) for one it reads only sometimes; a link's own settings
    say who reads them where they are declared. `meta_parameters` (a bool, or a predicate)
    says whether the built link has meta-learned variables, which --meta_lr, --meta_optimizer
    and --meta_clip configure; both decide which settings a run refuses as unread."""
    name: str
    build: Callable
    description: str = ""
    couples_tasks: bool = False  # what the built link's `couples_tasks` will say
    reads: tuple = ()
    meta_parameters: object = True
    masks: bool = False  # its weights are mask logits (the La-MAML family: stepped at --mask_lr)

    def reads_setting(self, name, config):
        for entry in self.reads:
            setting, when = (entry, None) if isinstance(entry, str) else entry
            if setting == name and (when is None or when(config)):
                return True
        return False

    def has_meta_parameters(self, config):
        return bool(self.meta_parameters(config) if callable(self.meta_parameters)
                    else self.meta_parameters)


@dataclasses.dataclass(frozen=True)
class LinkContext:
    feature_size: int = None  # the head's fan-in (sparse-MAML+'s hypernetwork input)


LINKS = {}


def register_link(name, build, description="", couples_tasks=False, reads=(),
                  meta_parameters=True, masks=False):
    """Makes a link available by name (`--update_rules`, the algorithm registry); see Link."""
    if name in LINKS:
        raise ValueError(f"update-rule link {name!r} is registered twice")
    LINKS[name] = Link(name, build, description, couples_tasks, tuple(reads), meta_parameters,
                       masks)
    return LINKS[name]


def _chain_links(config):
    return [LINKS[name] for name in config.update_rules or () if name in LINKS] \
        if settings.chain_learner(config) else []


def chain_masks(config):
    """Whether a link of the run's update chain learns a mask."""
    return any(link.masks for link in _chain_links(config))


def chain_reads(name):
    """A `reads=` predicate: the run's update chain has a link that reads setting `name`."""
    return lambda c: any(link.reads_setting(name, c) for link in _chain_links(c))


def chain_has_meta_parameters(config):
    """Whether a link of the run's update chain has meta-learned variables."""
    return any(link.has_meta_parameters(config) for link in _chain_links(config))


INNER_LR = settings.declare(settings.Setting(
    "inner_lr", "float", None, f"inner learning rate alpha ({settings.UNSET_HELP})",
    group="inner loop",
    reads=settings.either(chain_reads("inner_lr"), settings.trajectory_learner,
                          settings.continual),
    scope="links that read it (scale, relu_rates, exp_rates; binary_mask, weight_mask with "
          "--mask_init=constant); leap, warp_leap; the continual learners (alpha0)",
    low=0, low_open=True))


def chain_couples_tasks(names):
    """Whether a chain of the named links couples the tasks of a meta-batch."""
    return any(LINKS[name].couples_tasks for name in names if name in LINKS)


def build_chain(names, config, context=LinkContext()):
    """A Chain of the named links, each built from `config`."""
    unknown = [name for name in names if name not in LINKS]
    if unknown:
        raise ConfigError(f"unknown update-rule link(s) {unknown}; choose from {sorted(LINKS)}")
    return Chain([LINKS[name].build(config, context) for name in names])
