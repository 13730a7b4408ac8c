"""The resolved configuration of one training run, with validation and dataset defaults.

Every field left as None takes the dataset's default (`DATASET_DEFAULTS`) or the
algorithm's (`wtl_tf.algorithms`); `resolved()` fills them in and checks every value, so a
bad value fails before any work starts, with a message naming the flag.
"""

import dataclasses
import math

from wtl_tf import algorithms
from wtl_tf.errors import ConfigError

DATASET_DEFAULTS = {
    # Finn et al. 2017 sinusoid regression: K = 10, alpha 0.01, 1 step, meta-batch 25, second
    # order. With one step of alpha = 0.01 the first-order approximation drifts (held-out MSE
    # 0.40 at 8k iterations, 0.81 at 20k, versus 0.24 -> 0.28 second order), so sinusoid
    # overrides the first-order reference default of the sparse-MAML family.
    "sinusoid": dict(model="mlp", order="second", ways=1, shots=10, queries=10, meta_batch_size=25,
                     meta_iterations=20000, inner_steps=1, inner_steps_eval=1, inner_lr=0.01,
                     outer_lr=1e-3, meta_lr=1e-3, eval_every=2000, validation_tasks=100,
                     vectorize_tasks=True),
    # Finn et al. 2017 Omniglot 5-way 1-shot: meta-batch 32, alpha 0.4, 1 step (10 at test).
    "omniglot": dict(model="conv4", ways=5, shots=1, queries=15, meta_batch_size=32,
                     meta_iterations=60000, inner_steps=1, inner_steps_eval=10, inner_lr=0.4,
                     outer_lr=1e-3, eval_every=1000, validation_tasks=500,
                     split="omniglot_full_characters", image_size=28),
    # The sparse-MAML reference's Conv4 5-shot run (ALGORITHMS.md section 1).
    "mini_imagenet": dict(model="conv4", ways=5, shots=5, queries=15, meta_batch_size=2,
                          meta_iterations=40000, inner_steps=35, inner_steps_eval=35,
                          inner_lr=0.25, outer_lr=1e-3, meta_lr=7.5e-3, eval_every=500,
                          validation_tasks=500, image_size=84),
    # WarpGrad's Omniglot protocol (ALGORITHMS.md section 2): an alphabet is a 20-way task, 15
    # training / 5 held-out images per character, 20 tasks per meta-batch, 100 inner steps on
    # batches of 128, inner and outer learning rates 0.1 with plain SGD, 1,000 meta-iterations.
    "omniglot_alphabets": dict(model="warpgrad_conv4", ways=20, shots=15, queries=5,
                               meta_batch_size=20, meta_iterations=1000, inner_steps=100,
                               inner_steps_eval=100, inner_lr=0.1, outer_optimizer="sgd",
                               outer_lr=0.1, meta_optimizer="sgd", meta_lr=0.1, task_batch=128,
                               eval_every=100, validation_tasks=20, test_tasks=40,
                               split="warpgrad_omniglot_small", image_size=28),
    "folder": dict(model="conv4", ways=5, shots=5, queries=15, meta_batch_size=4,
                   meta_iterations=20000, inner_steps=5, inner_steps_eval=10, inner_lr=0.1,
                   outer_lr=1e-3, eval_every=500, validation_tasks=300, image_size=84),
}


def _maml_family(c):
    return algorithms.get_algorithm(c.algorithm).learner == "maml"


def _trajectory(c):
    return algorithms.get_algorithm(c.algorithm).learner == "warp_leap"


def _has_link(*names):
    return lambda c: _maml_family(c) and bool(set(c.update_rules) & set(names))


def _reads_inner_lr(c):
    links = set(c.update_rules)
    constant_init = c.mask_init == "constant"
    return _trajectory(c) or bool(links & {"scale", "relu_rates", "exp_rates"}) or (
        constant_init and bool(links & {"binary_mask", "weight_mask"}))


def _has_meta_parameters(c):
    if _trajectory(c):
        return False
    links = set(c.update_rules) - {"scale"}
    return bool(links) or c.learn_inner_lr or bool(c.warp_layers)


# Settings that only some algorithms read: (who reads it, predicate on the resolved config).
# A setting given a value other than its default that the run does not read is refused,
# never silently kept; README's settings table is generated from this (`settings_table`).
SETTING_SCOPES = {
    "update_rules": ("MAML-family learners (not leap / warp_leap)", _maml_family),
    "mask_init": ("links binary_mask, mask_hypernetwork, relu_rates, weight_mask",
                  _has_link("binary_mask", "mask_hypernetwork", "relu_rates", "weight_mask")),
    "init_shift": ("links binary_mask, mask_hypernetwork, relu_rates, weight_mask",
                   _has_link("binary_mask", "mask_hypernetwork", "relu_rates", "weight_mask")),
    "inner_lr": ("links scale, relu_rates, exp_rates (and mask/rate links with "
                 "--mask_init=constant); leap, warp_leap", _reads_inner_lr),
    "learn_inner_lr": ("link scale in a MAML-family learner", _has_link("scale")),
    "share_decay": ("link share_gradients", _has_link("share_gradients")),
    "share_per_layer": ("link share_gradients", _has_link("share_gradients")),
    "share_past_at_eval": ("link share_gradients", _has_link("share_gradients")),
    "share_concurrent_at_eval": ("link share_gradients", _has_link("share_gradients")),
    "transductive": ("MAML-family learners", _maml_family),
    "outer_reduction": ("MAML-family learners", _maml_family),
    "unroll_inner_steps": ("MAML-family learners", _maml_family),
    "recompute_inner_steps": ("MAML-family learners, second order",
                              lambda c: _maml_family(c) and c.order == "second"),
    "replay": ("leap, warp_leap", _trajectory),
    "replay_batch": ("leap, warp_leap", _trajectory),
    "meta_optimizer": ("learners with meta-parameters (masks, rates, warp layers, a learned "
                       "alpha); not warp_leap (SGD in its replay)", _has_meta_parameters),
    "meta_clip": ("learners with meta-parameters; not warp_leap", _has_meta_parameters),
    "meta_lr": ("learners with meta-parameters; warp_leap (its warp-layer rate)",
                lambda c: _has_meta_parameters(c) or (_trajectory(c) and bool(c.warp_layers))),
    "warp_depth": ("task networks with warp layers", lambda c: bool(c.warp_layers)),
    "warp_residual": ("task networks with warp layers", lambda c: bool(c.warp_layers)),
    "warp_activation": ("warp layers with --warp_depth > 1",
                        lambda c: bool(c.warp_layers) and c.warp_depth > 1),
    "warp_batchnorm": ("warp layers with --warp_depth > 1",
                       lambda c: bool(c.warp_layers) and c.warp_depth > 1),
    "conv_channels": ("--model=conv4 / warpgrad_conv4 (filters per layer), resnet12 (first "
                      "stage; then x2, x4, x8)",
                      lambda c: c.model in ("conv4", "warpgrad_conv4", "resnet12")),
    "image_channels": ("--dataset=folder", lambda c: c.dataset == "folder"),
    "cpu_replicas": ("--distribution=mirrored", lambda c: c.distribution == "mirrored"),
}


def settings_table():
    """Markdown: which scoped setting each algorithm reads (by its default chain)."""
    names = list(algorithms.ALGORITHMS)
    lines = ["| setting | read by | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for setting, (who, reads) in SETTING_SCOPES.items():
        marks = []
        for name in names:
            algorithm = algorithms.get_algorithm(name)
            probe = ExperimentConfig(algorithm=name, dataset="omniglot", model="conv4")
            probe.update_rules = tuple(algorithm.links)
            probe.warp_layers = algorithm.warp_layers
            probe.warp_depth = 2
            probe.order = "first" if algorithm.first_order else "second"
            marks.append("✓" if reads(probe) else "–")
        lines.append(f"| `--{setting}` | {who} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


@dataclasses.dataclass
class ExperimentConfig:
    algorithm: str = "sparse_maml"
    dataset: str = "sinusoid"
    data_dir: str = None
    data_source: str = "auto"
    image_channels: int = 3
    split: str = None
    image_size: int = None
    model: str = None
    conv_channels: int = 64
    ways: int = None
    shots: int = None
    queries: int = None
    meta_batch_size: int = None
    meta_iterations: int = None
    max_train_minutes: float = None
    inner_steps: int = None
    inner_steps_eval: int = None
    inner_lr: float = None
    order: str = None
    adapt: str = None
    adapt_batchnorm: bool = None
    update_rules: tuple = None
    mask_init: str = None
    init_shift: float = 0.0
    learn_inner_lr: bool = False
    share_decay: float = 0.9
    share_per_layer: bool = False
    share_past_at_eval: bool = True
    share_concurrent_at_eval: bool = False
    warp_layers: bool = None
    warp_depth: int = 1
    warp_activation: str = None
    warp_residual: bool = False
    warp_batchnorm: bool = False
    task_batch: int = None
    recompute_inner_steps: bool = False
    unroll_inner_steps: int = None
    vectorize_tasks: bool = None
    mixed_precision: str = "none"
    loss_scale: float = None
    replay: str = "lookahead"
    replay_batch: int = 1
    outer_optimizer: str = None
    outer_lr: float = None
    outer_clip: float = None
    meta_optimizer: str = None
    meta_lr: float = None
    meta_clip: float = None
    outer_reduction: str = "sum"
    transductive: bool = True
    eval_every: int = None
    validation_tasks: int = None
    test_tasks: int = None
    eval_batch_size: int = None
    output_dir: str = "runs/default"
    export_dir: str = None
    tensorboard: bool = True
    checkpoint_every_minutes: float = 3.0
    progress_every_seconds: float = 60.0
    seed: int = 0
    jit_compile: bool = False
    steps_per_execution: int = 1
    cpu_threads: str = "auto"
    distribution: str = "none"
    cpu_replicas: int = None
    verbose: int = 2

    def resolved(self):
        """A copy with every default filled in; raises ConfigError on any invalid value or a
        setting the run would not read. Idempotent: a resolved (or saved) config resolves to
        itself."""
        c = self._fill_in()
        c._refuse_unread(self)
        return c

    def _fill_in(self):
        algorithm = algorithms.get_algorithm(self.algorithm)
        if self.dataset not in DATASET_DEFAULTS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of "
                              f"{', '.join(DATASET_DEFAULTS)}")
        c = dataclasses.replace(self)
        defaults = dict(DATASET_DEFAULTS[c.dataset])
        dataset_order = defaults.pop("order", None)
        dataset_vectorizes = defaults.pop("vectorize_tasks", False)
        for key, value in defaults.items():
            if getattr(c, key) is None:
                setattr(c, key, value)
        if c.order is None:
            algorithm_order = "first" if algorithm.first_order else "second"
            c.order = (algorithm_order if algorithm.order_is_definition or dataset_order is None
                       else dataset_order)
        if c.loss_scale is None:
            # float16: a static scale. Second order runs its backward pass through the inner
            # gradients too, and overflowed at 1024 on Conv4/Omniglot (finite at 8..64).
            c.loss_scale = ({"first": 1024.0, "second": 32.0}.get(c.order, 1.0)
                            if c.mixed_precision == "float16" else 1.0)
        for key, value in (("outer_optimizer", "adam"), ("meta_optimizer", "adam"),
                           ("test_tasks", 600), ("warp_layers", algorithm.warp_layers)):
            if getattr(c, key) is None:
                setattr(c, key, value)
        # Only the per-task meta-gradient loop of MetaLearner vectorises, and only networks
        # without per-task convolution filters (tf.vectorized_map cannot batch those).
        task_loop = (algorithm.learner == "maml"
                     and "share_gradients" not in (c.update_rules or algorithm.links))
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
                and algorithm.learner == "maml":
            c.unroll_inner_steps = max(40, c.inner_steps)
        if c.eval_batch_size is None:
            c.eval_batch_size = c.meta_batch_size
        c.eval_every = min(c.eval_every, c.meta_iterations)
        c._validate()
        return c

    def _refuse_unread(self, given):
        """Settings given a non-default value (in `given`, before defaults were filled in)
        that this run would not read."""
        defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}
        for name, (who, reads) in SETTING_SCOPES.items():
            value = getattr(given, name)
            if value is None or value == defaults[name] or reads(self):
                continue
            unset = dataclasses.replace(given, **{name: defaults[name]})._fill_in()
            if getattr(unset, name) == value or (name == "update_rules"
                                                 and tuple(value) == unset.update_rules):
                continue  # the value resolution itself fills in (a saved config)
            raise ConfigError(f"--{name}={value} is not read by --algorithm={self.algorithm} "
                              f"with these settings (it applies to: {who}); drop it")

    def _validate(self):
        def positive(name):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"--{name} must be a positive integer, got {value!r}")

        if self.dataset != "sinusoid":
            positive("image_size")
        if self.distribution not in ("none", "mirrored", "multi_worker"):
            raise ConfigError(f"--distribution must be none, mirrored or multi_worker, got "
                              f"{self.distribution!r}")
        if self.image_channels not in (1, 3):
            raise ConfigError(f"--image_channels must be 1 or 3, got {self.image_channels}")
        for name in ("ways", "shots", "queries", "meta_batch_size", "meta_iterations",
                     "eval_every", "validation_tasks", "test_tasks", "eval_batch_size",
                     "steps_per_execution"):
            positive(name)
        for name in ("inner_steps", "inner_steps_eval"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"--{name} must be an integer >= 0, got {value!r}")
        for name in ("checkpoint_every_minutes", "progress_every_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"--{name} must be a finite number > 0, got {value!r}")
        for name in ("inner_lr", "outer_lr", "meta_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"--{name} must be a finite number > 0, got {value!r}")
        if self.task_batch is not None:
            positive("task_batch")
        if self.unroll_inner_steps is not None and (
                not isinstance(self.unroll_inner_steps, int) or self.unroll_inner_steps < 0):
            raise ConfigError(f"--unroll_inner_steps must be an integer >= 0, got "
                              f"{self.unroll_inner_steps!r}")
        positive("replay_batch")
        positive("warp_depth")
        positive("conv_channels")
        if self.mixed_precision not in ("none", "bfloat16", "float16"):
            raise ConfigError(f"--mixed_precision must be none, bfloat16 or float16, got "
                              f"{self.mixed_precision!r}")
        if not (isinstance(self.loss_scale, (int, float)) and self.loss_scale > 0):
            raise ConfigError(f"--loss_scale must be > 0, got {self.loss_scale!r}")
        if self.replay not in ("lookahead", "approximate"):
            raise ConfigError(f"--replay must be lookahead or approximate, got {self.replay!r}")
        if algorithms.get_algorithm(self.algorithm).learner == "warp_leap" \
                and self.inner_steps < 1:
            raise ConfigError("--algorithm=warp_leap/leap needs --inner_steps >= 1 (the "
                              "trajectory buffer stores one state per step)")
        if self.order not in ("first", "second"):
            raise ConfigError(f"--order must be 'first' or 'second', got {self.order!r}")
        if self.outer_reduction not in ("sum", "mean"):
            raise ConfigError(f"--outer_reduction must be 'sum' or 'mean', got "
                              f"{self.outer_reduction!r}")
        if self.dataset == "sinusoid" and self.ways != 1:
            raise ConfigError("sinusoid is a regression task: --ways does not apply (leave it "
                              f"unset or 1), got {self.ways}")
        for name in ("meta_iterations", "eval_every"):
            if getattr(self, name) % self.steps_per_execution:
                raise ConfigError(f"--{name} ({getattr(self, name)}) must be a multiple of "
                                  f"--steps_per_execution ({self.steps_per_execution})")
        if self.distribution != "none":
            coupled = ("leap/warp_leap (a trajectory buffer per replica)" if _trajectory(self)
                       else "gradient sharing (its concurrent term couples the tasks of a "
                       "meta-batch)" if "share_gradients" in self.update_rules else None)
            if coupled:
                raise ConfigError(f"--distribution={self.distribution} does not support "
                                  f"--algorithm={self.algorithm}: {coupled} would differ from "
                                  "single-device training; use --distribution=none")
        unknown = [name for name in self.update_rules if name not in algorithms.LINKS]
        if unknown:
            raise ConfigError(f"unknown --update_rules link(s) {unknown}; choose from "
                              f"{sorted(algorithms.LINKS)}")

    def to_dict(self):
        return dataclasses.asdict(self)
