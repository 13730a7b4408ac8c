"""What a continual run reads: the streams and their settings, the reference defaults of each
learner on each stream, and the checks, filled in before any work starts (`fill_in`).

Settings whose defaults are marked "the benchmark's reference" come from the papers'
protocols (docs/continual.md); choices marked (R) there are reconstructions and stay
settings. The La-MAML family's reference rows live with the algorithms (wtl_tf.algorithms);
OSAKA's here, by stationarity.
"""

import os


from wtl_tf import algorithms, rules, settings
from wtl_tf.continual import la_maml, osaka, placement, sine_run, start_from
from wtl_tf.errors import ConfigError

_GROUP = "continual"
_OSAKA = "continual_maml, sparse_continual_maml"
STREAMS = ("rotated_omniglot", "permuted_omniglot", "many_permuted_omniglot", "rotated_mnist",
           "permuted_mnist", "split_omniglot", "split_omniglot_alphabets", "split_cifar100",
           "split_tiny_imagenet", "osaka_omniglot", "osaka_mnist", "sequential_sine")
OSAKA_STREAMS = ("osaka_omniglot", "osaka_mnist")
PHOTO_STREAMS = ("split_cifar100", "split_tiny_imagenet")
SPLIT_STREAMS = ("split_omniglot", "split_omniglot_alphabets", *PHOTO_STREAMS)
REFERENCE = "unset: the benchmark's reference value"
# sparse-La-MAML takes La-MAML's row with a mask step size eta_m (--mask_lr) instead of
# eta_alpha, and sparse-C-MAML a mask Adam rate; both chosen on validation streams (seeds
# 100 and 101, never the reported seeds) with experiments/continual_records.py, whose records
# are in docs/results/continual/validation/.
PRETRAIN_VALIDATION_CLASSES = 20  # of the pretraining alphabets, held out for early stopping
SPARSE_LA_MAML_MASK_LR = la_maml.DEFAULT_MASK_LR  # each learner owns its default
SPARSE_CONTINUAL_MAML_MASK_LR = osaka.DEFAULT_MASK_LR


def _masked_la_maml(c):
    """The La-MAML family with a mask link in its chain (sparse_la_maml's masked_rates, or
    binary_mask in --update_rules)."""
    return settings.la_maml_family(c) and (settings.masked_continual(c) or rules.chain_masks(c))


def _masked(c):
    """A continual learner with a mask link in its chain."""
    return settings.continual(c) and (settings.masked_continual(c) or rules.chain_masks(c))


settings.declare(
    settings.Setting("stream", "enum", None, "the continual stream (unset: rotated_omniglot "
                     "for the La-MAML family, osaka_omniglot for continual_maml)",
                     choices=STREAMS, group=_GROUP, reads=settings.continual,
                     scope="the continual learners"),
    settings.Setting("stream_tasks", "integer", None, "tasks in the stream (split streams: "
                     "the first this many class groups, unset all; others unset: 20; "
                     "many_permuted_omniglot: 100)", group=_GROUP,
                     reads=settings.la_maml_family, scope="the La-MAML family", low=1),
    settings.Setting("stream_batch", "integer", 10, "examples per incoming batch (warpgrad_sine: "
                     "points per SGD step)", group=_GROUP,
                     reads=settings.either(settings.la_maml_family, settings.sine_learner),
                     scope="the La-MAML family; warpgrad_sine", low=1),
    settings.Setting("glances", "integer", None, f"meta-updates per incoming batch ({REFERENCE})",
                     group=_GROUP, reads=settings.la_maml_family, scope="the La-MAML family",
                     low=1),
    settings.Setting("passes", "integer", 1, "passes over each task's batches (1: single-pass; "
                     "more: multi-pass; the replay buffer takes each example on its first "
                     "pass)", group=_GROUP, reads=settings.la_maml_family,
                     scope="the La-MAML family", low=1),
    settings.Setting("memories", "integer", None, f"replay buffer capacity ({REFERENCE})",
                     group=_GROUP, reads=settings.la_maml_family, scope="the La-MAML family",
                     low=1),
    settings.Setting("replay_samples", "integer", 10, "replayed examples joined to each "
                     "incoming batch in the meta-loss", group=_GROUP,
                     reads=settings.la_maml_family, scope="the La-MAML family", low=1),
    settings.Setting("chunk_size", "integer", None, "examples per look-ahead inner step (unset: "
                     "1 as the MNIST reference; split streams 2, i.e. 5 steps per batch of 10 "
                     "as the CIFAR reference)", group=_GROUP, reads=settings.la_maml_family,
                     scope="the La-MAML family", low=1),
    settings.Setting("grad_clip_norm", "float", None, "clip the meta-gradients of theta and of "
                     f"the rates to this global norm (0: off; {REFERENCE}: 2, split streams "
                     "La-MAML 1)", group=_GROUP, reads=settings.la_maml_family,
                     scope="the La-MAML family", low=0),
    settings.Setting("inner_clip", "float", None, "clip each look-ahead gradient to [-c, c] "
                     "(unset: off; split streams: the --grad_clip_norm value, as the CIFAR "
                     "file)", group=_GROUP, reads=settings.la_maml_family,
                     scope="the La-MAML family", low=0),
    settings.Setting("rate_activation", "enum", None, "inner rates from alpha: ReLU(alpha) "
                     "(the MNIST file) or alpha itself (the CIFAR file; unset: relu, split "
                     "streams identity)", choices=("relu", "identity"), group=_GROUP,
                     reads=settings.la_maml_family, scope="the La-MAML family"),
    settings.Setting("pc_cnn_channels", "integer", 160, "channels of the pc_cnn's convolutions "
                     "(split streams; La-MAML's reference: 160)", group=_GROUP,
                     reads=lambda c: settings.la_maml_family(c) and c.stream in SPLIT_STREAMS,
                     scope="the La-MAML family on split streams", low=1),
    settings.Setting("gate_slow_update", "bool", True, "(R) the mask also gates the slow "
                     "step theta -= a H(m) grad", group=_GROUP,
                     reads=_masked_la_maml, scope="the La-MAML family with a mask link"),
    settings.Setting("stream_steps", "integer", 10_000, "stream length T", group=_GROUP,
                     reads=settings.osaka_learner, scope=_OSAKA, low=1),
    settings.Setting("stationarity", "float", 0.98, "p: the probability that the task stays "
                     "at a step", group=_GROUP, reads=settings.osaka_learner,
                     scope=_OSAKA, low=0, high=1),
    settings.Setting("shift_threshold", "float", None, "gamma: a loss drop of at least this "
                     f"after adaptation marks a task boundary ({REFERENCE} for p)",
                     group=_GROUP, reads=settings.osaka_learner, scope=_OSAKA, low=0),
    settings.Setting("loss_modulation", "float", 0.25, "lambda of the slow update's weight",
                     group=_GROUP, reads=settings.osaka_learner, scope=_OSAKA, low=0),
    settings.Setting("modulation", "enum", "loss_smooth", "slow-update weight: 1 - exp(-lambda "
                     "L) | 1[L > lambda] | 1", choices=("loss_smooth", "loss", "none"),
                     group=_GROUP, reads=settings.osaka_learner, scope=_OSAKA),
    settings.Setting("accumulate", "bool", True, "buffer same-task batches for the slow "
                     "update (the best OSAKA configuration)", group=_GROUP,
                     reads=settings.osaka_learner, scope=_OSAKA),
    settings.Setting("mask_granularity", "enum", "per_weight", "(R) one mask logit per weight "
                     "or per tensor", choices=("per_weight", "per_tensor"), group=_GROUP,
                     reads=lambda c: settings.osaka_learner(c) and rules.chain_masks(c),
                     scope="continual_maml with a mask link (sparse_continual_maml)"),
    settings.Setting("mnist_dir", "string", None, "osaka_mnist: the MNIST IDX files (unset: "
                     "~/.cache/wtl_tf/mnist, downloaded and checksummed)", group=_GROUP,
                     reads=lambda c: settings.osaka_learner(c) and c.stream == "osaka_mnist",
                     scope="continual_maml on osaka_mnist"),
    settings.Setting("fashion_mnist_dir", "string", None, "osaka_mnist: the Fashion-MNIST IDX "
                     "files (unset: ~/.cache/wtl_tf/fashion_mnist, downloaded and checksummed)",
                     group=_GROUP,
                     reads=lambda c: settings.osaka_learner(c) and c.stream == "osaka_mnist",
                     scope="continual_maml on osaka_mnist"),
    settings.Setting("raw_ood_pixels", "bool", False, "osaka_mnist: feed MNIST / Fashion-MNIST "
                     "as raw 0-255 floats beside Omniglot's [0, 1], as OSAKA's code does "
                     "(default: both in [0, 1])", group=_GROUP,
                     reads=lambda c: settings.osaka_learner(c) and c.stream == "osaka_mnist",
                     scope="continual_maml on osaka_mnist"),
    settings.Setting("pretrain_iterations", "integer", 500, "at most this many first-order "
                     "MAML meta-iterations on the pretraining alphabets before the stream",
                     group=_GROUP, reads=settings.osaka_learner, scope=_OSAKA, low=0),
    settings.Setting("pretrain_eval_every", "integer", 100, "pretraining: measure the "
                     f"validation accuracy ({PRETRAIN_VALIDATION_CLASSES} held-out characters) "
                     "every this many meta-iterations and keep the best parameters",
                     group=_GROUP, reads=settings.osaka_learner, scope=_OSAKA, low=1),
    settings.Setting("pretrain_patience", "integer", 10, "pretraining: stop after this many "
                     "validations without improvement", group=_GROUP,
                     reads=settings.osaka_learner, scope=_OSAKA, low=1),
    settings.Setting("mask_optimizer", "enum", "sgd", "sparse_la_maml: the mask logits' "
                     "update, SGD (--mask_lr times the gradient) or Adam at rate --mask_lr "
                     "(as few-shot sparse-MAML; give --mask_lr, whose default is SGD's)",
                     choices=la_maml.MASK_OPTIMIZERS, group=_GROUP, reads=_masked_la_maml,
                     scope="the La-MAML family with a mask link"),
    settings.Setting("mask_sparsity_schedule", "string", None, "sparse_la_maml with "
                     "--mask_lr=0: a frozen random mask whose per-layer sparsity within each "
                     "task is a learned run's midway through it (its results.json or record): "
                     "the control for learned placement", group=_GROUP, reads=_masked_la_maml,
                     scope="the La-MAML family with a mask link"),
    settings.Setting("start_from", "string", None, "the La-MAML family: start the stream from "
                     "another run's network and meta-learned rates or mask (the newest "
                     "checkpoint of its --output_dir; same algorithm and chain), e.g. one "
                     "meta-pretrained on held-out streams; replay memory and optimiser state "
                     "start fresh", group=_GROUP, reads=settings.la_maml_family,
                     scope="the La-MAML family"),
    settings.Setting("mask_lr", "float", None, "step size of the mask logits (unset: chosen on "
                     "validation streams: sparse_la_maml's SGD eta_m "
                     f"{SPARSE_LA_MAML_MASK_LR:g}, sparse_continual_maml's mask Adam "
                     f"{SPARSE_CONTINUAL_MAML_MASK_LR:g})", group=_GROUP,
                     reads=_masked, scope="the continual learners with a mask link "
                     "(sparse_la_maml, sparse_continual_maml)", low=0),
)

CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "wtl_tf")
MNIST_DIR = os.path.join(CACHE_DIR, "mnist")
# docs/continual.md, the best Omniglot configurations; outer_lr is the pretraining's
# Adam rate (our choice: the reference's pretraining is not in the table).
OSAKA_REFERENCE = {0.98: dict(meta_batch_size=4, meta_lr=1e-4, inner_steps=8,
                              shift_threshold=2.5),
                   0.90: dict(meta_batch_size=8, meta_lr=5e-4, inner_steps=16,
                              shift_threshold=2.0)}
OSAKA_COMMON = dict(inner_lr=0.1, outer_lr=1e-3, ways=10, shots=5, learn_inner_lr=True)


def fill_in(c):
    """Fills in a continual run's defaults in place and checks its values."""
    la_family = settings.la_maml_family(c)
    kind = "la_maml" if la_family else "osaka" if settings.osaka_learner(c) else "sine"
    own = {"osaka": OSAKA_STREAMS, "sine": ("sequential_sine",)}.get(
        kind, tuple(s for s in STREAMS if s not in (*OSAKA_STREAMS, "sequential_sine")))
    if c.stream is None:
        c.stream = own[0]
    if c.stream not in own:
        raise ConfigError(f"--stream={c.stream} is not a stream of --algorithm={c.algorithm}: "
                          "the La-MAML family learns the rotated / permuted / split streams, "
                          "continual_maml the osaka streams, warpgrad_sine the "
                          "sequential_sine")
    if kind == "sine":

        sine_run.fill_in(c)
        return
    if la_family:
        split = c.stream in SPLIT_STREAMS
        defaults = {"memories": 200, "order": "second" if split else "first",
                    "chunk_size": 2 if split else 1, "grad_clip_norm": 2.0,
                    "rate_activation": "identity" if split else "relu",
                    **algorithms.stream_defaults(c.algorithm, c.stream)}
        if not split:
            defaults["stream_tasks"] = 100 if c.stream == "many_permuted_omniglot" else 20
    else:
        row = OSAKA_REFERENCE[0.98 if c.stationarity >= 0.94 else 0.90]
        defaults = dict(OSAKA_COMMON, **row)
    c.update_rules = tuple(c.update_rules or algorithms.get_algorithm(c.algorithm).links)
    _check_chain(c)
    if _masked_la_maml(c):
        if c.mask_optimizer == "adam" and c.mask_lr is None:
            raise ConfigError("--mask_optimizer=adam needs --mask_lr: the default "
                              f"({SPARSE_LA_MAML_MASK_LR:g}) was chosen for SGD")
        if c.mask_sparsity_schedule is not None and c.mask_lr != 0:
            raise ConfigError("--mask_sparsity_schedule places a frozen random mask: add "
                              "--mask_lr=0")
    if _masked(c):
        defaults["mask_init"] = "kaiming"
        defaults["mask_lr"] = (SPARSE_LA_MAML_MASK_LR if la_family else
                               SPARSE_CONTINUAL_MAML_MASK_LR)
    for key, value in defaults.items():
        if getattr(c, key) is None:
            setattr(c, key, value)
    if la_family and c.stream in SPLIT_STREAMS and c.inner_clip is None:
        c.inner_clip = c.grad_clip_norm
    _validate(c, la_family)


def _check_chain(c):
    """The La-MAML family's chain: named links that work one stream batch at a time."""
    unknown = [name for name in c.update_rules if name not in rules.LINKS]
    if unknown:
        raise ConfigError(f"unknown --update_rules link(s) {unknown}; choose from "
                          f"{sorted(rules.LINKS)}")
    coupled = [name for name in c.update_rules if rules.LINKS[name].couples_tasks]
    if coupled:
        raise ConfigError(f"--update_rules link(s) {coupled} couple the tasks of a meta-batch; "
                          f"--algorithm={c.algorithm} learns one stream batch at a time: drop "
                          "them")


def _validate(c, la_family):
    """What the settings' own bounds cannot say: how values go together (each value alone is
    checked by settings.check_values, given and filled in)."""
    settings.check_values(c)
    if la_family and c.mask_sparsity_schedule is not None:
        placement.load_trace(c.mask_sparsity_schedule)  # unreadable: refused before work
    if la_family and c.start_from is not None:
        if c.mask_sparsity_schedule is not None:
            raise ConfigError("--mask_sparsity_schedule places a random mask from the "
                              "learner's own initial one; --start_from replaces it: use one")
        start_from.check_source(c)
    if la_family and c.chunk_size > c.stream_batch:
        raise ConfigError(f"--chunk_size ({c.chunk_size}) is larger than --stream_batch "
                          f"({c.stream_batch}): no batch would have a chunk")
