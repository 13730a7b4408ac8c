"""The resolved configuration of one training run, with validation and dataset defaults.

Every field left as None takes the dataset's default (`DATASET_DEFAULTS`) or the
algorithm's (`wtl_tf.algorithms`); `resolved()` fills them in and checks every value, so a
bad value fails before any work starts, with a message naming the flag.
"""

import dataclasses

# Every module that declares settings, so that the declarations are complete here.
from wtl_tf import algorithms, distribute, experiment, learner, optimizers, runtime  # noqa: F401
from wtl_tf import cross_domain, preflight, rules, settings, warpgrad  # noqa: F401
from wtl_tf.continual import protocol as continual_protocol
from wtl_tf.continual import sine_run  # noqa: F401  (declares the sine settings)
from wtl_tf.data.registry import DATASET_DEFAULTS
from wtl_tf.errors import ConfigError
from wtl_tf.inner_options import default_unroll
from wtl_tf.models import factory  # noqa: F401


def settings_table(names=algorithms.FEW_SHOT_ALGORITHMS):
    """Markdown: which scoped setting each of the algorithms `names` reads (by its default
    chain).

    Rows: the settings that some of them read and not all of them do, by group and name. Settings of links no
    algorithm uses by default (e.g. gated_rates) and of other options (--dataset=folder, ...)
    are refused just the same; `--helpfull` lists them."""
    lines = ["| setting | read by | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    # By group and name: declaration order depends on which module a process imported first.
    for setting in sorted(settings.scoped(), key=lambda s: (s.group, s.name)):
        marks = []
        for name in names:
            algorithm = algorithms.get_algorithm(name)
            if name in algorithms.CONTINUAL_ALGORITHMS:  # its own defaults: stream, rates
                probe = ExperimentConfig(algorithm=name)
                continual_protocol.fill_in(probe)
            else:
                probe = ExperimentConfig(algorithm=name, dataset="omniglot", model="conv4")
                probe.update_rules = tuple(algorithm.links)
                probe.warp_layers = algorithm.warp_layers
                probe.warp_depth = 2
                probe.order = "first" if algorithm.first_order else "second"
            marks.append("✓" if setting.reads(probe) else "–")
        if "✓" not in marks or "–" not in marks and setting.scope.startswith("few-shot"):
            continue  # read by none, or by every few-shot run
        lines.append(f"| `--{setting.name}` | {setting.scope} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


class _Resolution:
    """The methods of ExperimentConfig (its fields come from the settings declarations)."""

    def resolved(self):
        """A copy with every default filled in; raises ConfigError on any invalid value or a
        setting the run would not read. Idempotent: a resolved (or saved) config resolves to
        itself."""
        settings.check_values(self)
        c = self._fill_in()
        c._refuse_unread(self)
        return c

    def _fill_in(self):
        algorithm = algorithms.get_algorithm(self.algorithm)
        if settings.continual(self):
            c = dataclasses.replace(self)
            continual_protocol.fill_in(c)
            return c
        c = dataclasses.replace(self)
        defaults = dict(DATASET_DEFAULTS[c.dataset])
        dataset_order = defaults.pop("order", None)
        dataset_vectorizes = defaults.pop("vectorize_tasks", False)
        for key, value in defaults.items():
            if getattr(c, key) is None:
                setattr(c, key, value)
        algorithm_order = "first" if algorithm.first_order else "second"
        if c.order not in (None, algorithm_order) and algorithm.order_is_definition:
            raise ConfigError(f"--algorithm={c.algorithm} is {algorithm_order}-order by "
                              f"definition: --order={c.order} contradicts it (drop --order"
                              + (f"; {algorithm.order_hint})" if algorithm.order_hint else ")"))
        if c.order is None:
            c.order = (algorithm_order if algorithm.order_is_definition or dataset_order is None
                       else dataset_order)
        if c.loss_scale is None:
            # float16: a static scale. Second order runs its backward pass through the inner
            # gradients too, and overflowed at 1024 on Conv4/Omniglot (finite at 8..64).
            c.loss_scale = ({"first": 1024.0, "second": 32.0}.get(c.order, 1.0)
                            if c.mixed_precision == "float16" else 1.0)
        for key, value in (("outer_optimizer", "adam"), ("meta_optimizer", "adam"),
                           ("learn_inner_lr", False),
                           ("test_tasks", 600), ("warp_layers", algorithm.warp_layers)):
            if getattr(c, key) is None:
                setattr(c, key, value)
        # Only the per-task meta-gradient loop of MetaLearner vectorises, and only networks
        # without per-task convolution filters (tf.vectorized_map cannot batch those).
        task_loop = (algorithm.learner == "episodic"
                     and not rules.chain_couples_tasks(c.update_rules or algorithm.links))
        if c.vectorize_tasks is None:
            c.vectorize_tasks = bool(dataset_vectorizes and task_loop and c.model == "mlp")
        elif c.vectorize_tasks and (c.model != "mlp" or not task_loop):
            raise ConfigError(f"--vectorize_tasks applies to MLP task networks meta-trained with "
                              f"a per-task loop; {c.model} with {c.algorithm} cannot be "
                              f"vectorised (convolution filters differ per task; gradient "
                              f"sharing and Warp-Leap run their own loops): drop the flag")
        if c.adapt is None:
            c.adapt = algorithm.adapt
        if c.adapt_batchnorm is None:
            c.adapt_batchnorm = algorithm.adapt_batchnorm
        c.update_rules = tuple(c.update_rules or algorithm.links)
        if c.meta_lr is None:
            c.meta_lr = c.outer_lr
        if c.unroll_inner_steps is None and isinstance(c.inner_steps, int) \
                and algorithm.learner == "episodic":
            c.unroll_inner_steps = default_unroll(c.inner_steps, c.recompute_inner_steps)
        if c.eval_batch_size is None:
            c.eval_batch_size = c.meta_batch_size
        c.eval_every = min(c.eval_every, c.meta_iterations)
        c._validate()
        return c

    def _refuse_unread(self, given):
        """Settings given a non-default value (in `given`, before defaults were filled in)
        that this run would not read."""
        settings.refuse_unread(self, given, lambda c: c._fill_in())

    def _validate(self):
        """What the settings' own bounds and choices cannot say: how values go together.
        (Each value alone is checked by settings.check_values, given and filled in.)"""
        settings.check_values(self)
        if self.image_channels not in (1, 3):
            raise ConfigError(f"--image_channels must be 1 or 3, got {self.image_channels}")
        if algorithms.get_algorithm(self.algorithm).learner == "trajectory" \
                and self.inner_steps < 1:
            raise ConfigError("--algorithm=warp_leap/leap needs --inner_steps >= 1 (the "
                              "trajectory buffer stores one state per step)")
        if self.dataset == "sinusoid" and self.ways != 1:
            raise ConfigError("sinusoid is a regression task: --ways does not apply (leave it "
                              f"unset or 1), got {self.ways}")
        for name in ("meta_iterations", "eval_every"):
            if getattr(self, name) % self.steps_per_execution:
                raise ConfigError(f"--{name} ({getattr(self, name)}) must be a multiple of "
                                  f"--steps_per_execution ({self.steps_per_execution})")
        if self.distribution != "none":
            coupled = ("leap/warp_leap (a trajectory buffer per replica)" if settings.trajectory_learner(self)
                       else "gradient sharing (its concurrent term couples the tasks of a "
                       "meta-batch)" if rules.chain_couples_tasks(self.update_rules) else None)
            if coupled:
                raise ConfigError(f"--distribution={self.distribution} does not support "
                                  f"--algorithm={self.algorithm}: {coupled} would differ from "
                                  "single-device training; use --distribution=none")
        cross_domain.parse(self.cross_domain)  # a malformed entry fails before training
        if (settings.maml_family(self) and self.warp_layers and self.warp_objective == "online"
                and (tuple(self.update_rules) != ("scale",) or self.learn_inner_lr)):
            raise ConfigError(f"--warp_objective=online takes its look-ahead step with the "
                              f"plain scale rule; --update_rules={','.join(self.update_rules)}"
                              f"{' with --learn_inner_lr' if self.learn_inner_lr else ''} needs "
                              "--warp_objective=backprop")
        unknown = [name for name in self.update_rules if name not in rules.LINKS]
        if unknown:
            raise ConfigError(f"unknown --update_rules link(s) {unknown}; choose from "
                              f"{sorted(rules.LINKS)}")

    def to_dict(self):
        return dataclasses.asdict(self)


# Every declared setting is a field, with its declared default.
ExperimentConfig = dataclasses.make_dataclass(
    "ExperimentConfig",
    [(s.name, object, dataclasses.field(default=s.default)) for s in settings.all_settings()],
    bases=(_Resolution,))
ExperimentConfig.__module__ = __name__
ExperimentConfig.__doc__ = ("One run's settings: a field per declared setting "
                            "(wtl_tf.settings); `resolved()` fills in the defaults and checks.")
