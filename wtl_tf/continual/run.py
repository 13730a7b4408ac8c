"""One continual-learning run: `train.py --algorithm=la_maml | sync_la_maml | c_maml |
sparse_la_maml | continual_maml | sparse_continual_maml`.

The stream is a pure function of --seed (wtl_tf.continual.streams / osaka), observed one
batch at a time. The run checkpoints the learner's variables together with its numpy state
(replay buffer and its random state, accumulated batches, the stream position, the metrics
so far; wtl_tf.continual.checkpoints) every --checkpoint_every_minutes, at every task end
and on SIGINT/SIGTERM, so rerunning the same command resumes where it stopped and ends with
the same metrics as an uninterrupted run. results.json holds, for the La-MAML family, the
accuracy matrix R with RA, LA and BTI (both normalisations); for Continual-MAML, the online
cumulative accuracy overall and per mode and the boundary detector's precision and recall;
for both, the mask sparsity per layer and the seconds per 1,000 stream steps.

Settings whose defaults are marked "the benchmark's reference" come from docs/continual.md
(section 1 for the La-MAML family, section 3 for Continual-MAML); choices marked (R) there
are reconstructions and stay settings.
"""

import functools
import os
import signal
import threading
import time

import keras
import numpy as np
from absl import logging

from wtl_tf import algorithms, settings
from wtl_tf.continual import la_maml, osaka
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
# 100 and 101, never the reported seeds) by experiments/continual_mask_lr.py, whose records
# are in docs/results/continual/validation/.
PRETRAIN_VALIDATION_CLASSES = 20  # of the pretraining alphabets, held out for early stopping
SPARSE_LA_MAML_MASK_LR = la_maml.DEFAULT_MASK_LR  # each learner owns its default
SPARSE_CONTINUAL_MAML_MASK_LR = osaka.DEFAULT_MASK_LR

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
                     reads=lambda c: settings.la_maml_family(c) and settings.masked_continual(c),
                     scope="sparse_la_maml"),
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
                     reads=lambda c: settings.osaka_learner(c) and settings.masked_continual(c),
                     scope="sparse_continual_maml"),
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
    settings.Setting("mask_lr", "float", None, "step size of the mask logits (unset: chosen on "
                     "validation streams: sparse_la_maml's SGD eta_m "
                     f"{SPARSE_LA_MAML_MASK_LR:g}, sparse_continual_maml's mask Adam "
                     f"{SPARSE_CONTINUAL_MAML_MASK_LR:g})", group=_GROUP,
                     reads=settings.masked_continual, scope="sparse_la_maml, "
                     "sparse_continual_maml", low=0),
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
        from wtl_tf.continual import sine_run

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
    if settings.masked_continual(c):
        defaults["mask_init"] = "kaiming"
        defaults["mask_lr"] = (SPARSE_LA_MAML_MASK_LR if la_family else
                               SPARSE_CONTINUAL_MAML_MASK_LR)
    for key, value in defaults.items():
        if getattr(c, key) is None:
            setattr(c, key, value)
    if la_family and c.stream in SPLIT_STREAMS and c.inner_clip is None:
        c.inner_clip = c.grad_clip_norm
    c.update_rules = ()
    _validate(c, la_family)


def _validate(c, la_family):
    def positive(name):
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"--{name} must be a positive integer, got {value!r}")

    def rate(name):
        value = getattr(c, name)
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
            raise ConfigError(f"--{name} must be a finite number >= 0, got {value!r}")

    for name in ("inner_lr", "meta_lr", "outer_lr", "mask_lr"):
        if getattr(c, name) is not None:
            rate(name)
    if la_family:
        for name in ("stream_batch", "glances", "passes", "memories", "replay_samples",
                     "chunk_size"):
            positive(name)
        if c.stream not in SPLIT_STREAMS or c.stream_tasks is not None:
            positive("stream_tasks")
        if c.inner_clip is not None:
            rate("inner_clip")
        positive("pc_cnn_channels")
        if c.chunk_size > c.stream_batch:
            raise ConfigError(f"--chunk_size ({c.chunk_size}) is larger than --stream_batch "
                              f"({c.stream_batch}): no batch would have a chunk")
        rate("grad_clip_norm")
        if c.order not in ("first", "second"):
            raise ConfigError(f"--order must be 'first' or 'second', got {c.order!r}")
    else:
        for name in ("stream_steps", "ways", "shots", "inner_steps", "meta_batch_size",
                     "conv_channels", "pretrain_eval_every", "pretrain_patience"):
            positive(name)
        if c.pretrain_iterations < 0:
            raise ConfigError(f"--pretrain_iterations must be >= 0, got {c.pretrain_iterations}")
        if not 0.0 <= c.stationarity <= 1.0:
            raise ConfigError(f"--stationarity (p) must be in [0, 1], got {c.stationarity}")
        rate("shift_threshold")
        rate("loss_modulation")
    for name in ("checkpoint_every_minutes", "progress_every_seconds"):
        value = getattr(c, name)
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ConfigError(f"--{name} must be a finite number > 0, got {value!r}")


# ---------------------------------------------------------------------- building
def load_omniglot(config):
    return _omniglot(config.data_dir)


@functools.lru_cache(maxsize=2)
def _omniglot(data_dir):
    """The two small archives at 28 x 28, decoded once per process (the arrays are only
    read: streams copy what they transform)."""
    from wtl_tf.data import omniglot

    return omniglot.load(data_dir, ("images_background_small1", "images_background_small2"),
                         image_size=28, allow_download=data_dir is None)


def build_stream(config, class_images):
    from wtl_tf.continual import streams

    if config.stream in ("rotated_mnist", "permuted_mnist"):  # the IDX files in --data_dir
        from wtl_tf.data import idx

        x, y, tx, ty = idx.load(config.data_dir or MNIST_DIR, "mnist",
                                allow_download=config.data_dir is None)
        return streams.mnist_tasks((x, y), (tx, ty), config.stream.split("_")[0],
                                   tasks=config.stream_tasks, seed=config.seed)
    if config.stream in PHOTO_STREAMS:  # the archive in --data_dir (downloaded if unset)
        stream = photo_stream(config)
        stream.tasks = stream.tasks[:config.stream_tasks]
        return stream
    if config.stream in OSAKA_STREAMS:
        return osaka.osaka_stream(class_images, steps=config.stream_steps,
                                  p=config.stationarity, ways=config.ways, shots=config.shots,
                                  seed=config.seed, ood=osaka_ood(config),
                                  raw_ood_pixels=bool(config.raw_ood_pixels))
    if config.stream == "rotated_omniglot":
        return streams.rotated_omniglot(class_images, tasks=config.stream_tasks, seed=config.seed)
    if config.stream in SPLIT_STREAMS:
        stream = streams.split_omniglot(class_images, by="alphabets" if config.stream.endswith(
            "alphabets") else "characters", seed=config.seed)
        stream.tasks = stream.tasks[:config.stream_tasks]
        return stream
    if config.stream == "permuted_omniglot":
        return streams.permuted_omniglot(class_images, tasks=config.stream_tasks,
                                         seed=config.seed)
    stream = streams.permuted_omniglot(class_images, tasks=config.stream_tasks, seed=config.seed,
                                       train_examples=60)
    stream.name = "many_permuted_omniglot"
    return stream


def osaka_ood(config):
    """osaka_mnist: {"ood1": MNIST, "ood2": Fashion-MNIST} from their IDX training files."""
    if config.stream != "osaka_mnist":
        return None
    from wtl_tf.data import idx

    ood = {}
    for mode, dataset, directory in (("ood1", "mnist", config.mnist_dir),
                                     ("ood2", "fashion_mnist", config.fashion_mnist_dir)):
        x, y, _, _ = idx.load(directory or os.path.join(CACHE_DIR, dataset), dataset,
                              allow_download=directory is None)
        ood[mode] = osaka.mnist_classes(x, y, dataset)
    return ood


def photo_stream(config):
    from wtl_tf.continual import streams
    from wtl_tf.data import cifar100, photo_augment, tiny_imagenet

    cifar = config.stream == "split_cifar100"
    loader, protocol = ((cifar100, photo_augment.CIFAR100) if cifar else
                        (tiny_imagenet, photo_augment.TINY_IMAGENET))
    directory = config.data_dir or os.path.join(CACHE_DIR, config.stream[len("split_"):])
    x, y, tx, ty = loader.load(directory, allow_download=config.data_dir is None)[:4]
    return streams.split_photos(config.stream, (x, y), (tx, ty), protocol, seed=config.seed)


def build_la_maml(config, stream):
    from wtl_tf import models

    split = config.stream in SPLIT_STREAMS
    tiny = config.stream == "split_tiny_imagenet"  # 64 x 64: one more convolution, 640 wide
    model = (models.pc_cnn(stream.tasks[0].train_x.shape[1:], stream.classes,
                           channels=config.pc_cnn_channels, hidden=640 if tiny else 320,
                           convolutions=4 if tiny else 3,
                           kernel_initializer=la_maml.REFERENCE_KERNEL_INIT) if split else
             models.mlp(stream.tasks[0].train_x.shape[1], (100, 100), stream.classes,
                        kernel_initializer=la_maml.REFERENCE_KERNEL_INIT))
    return la_maml.LaMAML(
        model, **algorithms.learner_options(config.algorithm), alpha_init=config.inner_lr, mask_lr=config.mask_lr,
        alpha_lr=config.meta_lr or 0.0, theta_lr=config.outer_lr or 0.0,
        glances=config.glances, replay_size=config.replay_samples, memories=config.memories,
        clip=config.grad_clip_norm, chunk_size=config.chunk_size,
        first_order=config.order == "first", gate_slow_update=config.gate_slow_update,
        inner_clip=config.inner_clip, rate_activation=config.rate_activation,
        mask_init=config.mask_init or "constant",
        class_task=getattr(stream, "class_task", None), seed=config.seed)


def pretrain_osaka(config, learner, stream, class_images):
    """First-order MAML on the pretraining mode's classes with the learner's own meta-update
    (theta, the per-tensor rates and the masks under one Adam), the best validation accuracy
    on PRETRAIN_VALIDATION_CLASSES held-out characters kept. Returns the validation curve."""
    from wtl_tf.data.class_images import episode_source
    from wtl_tf.episodes import EpisodeSampler

    if not config.pretrain_iterations:
        return []
    pool = list(stream.classes_by_mode["pretrain"])
    held_out = set(np.random.default_rng([config.seed, 5]).choice(
        pool, size=PRETRAIN_VALIDATION_CLASSES, replace=False).tolist())
    split = {}
    for c in pool:
        split.setdefault("validation" if c in held_out else "train", []).append(
            (class_images.names[c], 0))
    samplers = {name: EpisodeSampler(episode_source(class_images, entries, name), config.ways,
                                     config.shots, config.shots, config.seed,
                                     name)
                for name, entries in split.items()}

    def unpack(batch):
        return [(batch["support_x"][i], batch["support_y"][i], batch["query_x"][i],
                 batch["query_y"][i]) for i in range(batch["support_y"].shape[0])]

    episodes = map(unpack, samplers["train"].dataset(config.meta_batch_size))
    validation = [e for b in samplers["validation"].dataset(10, num_batches=4) for e in unpack(b)]
    logging.info("pretraining: at most %d first-order MAML meta-iterations, validation every "
                 "%d", config.pretrain_iterations, config.pretrain_eval_every)
    return learner.pretrain(
        episodes, validation, config.pretrain_iterations, config.outer_lr,
        eval_every=config.pretrain_eval_every,
        patience=config.pretrain_patience,
        log=lambda i, a: logging.info("pretraining %d: validation accuracy %.4f", i, a))


def build_osaka(config, net):
    masked = settings.masked_continual(config)
    return osaka.ContinualMAML(
        net, inner_lr=config.inner_lr, inner_steps=config.inner_steps,
        mask_lr=config.mask_lr if masked else None, meta_lr=config.meta_lr,
        gamma=config.shift_threshold, lam=config.loss_modulation, modulation=config.modulation,
        accumulate=config.accumulate, mask=config.mask_granularity if masked else None,
        mask_init=config.mask_init if masked else "constant",
        learn_inner_lr=config.learn_inner_lr, ways=config.ways, shots=config.shots)


# ---------------------------------------------------------------------- the loop
class _Signals:
    """SIGINT/SIGTERM between two stream steps: checkpoint, then stop (Interrupted). Before
    the stream's first step (building the stream, pretraining: nothing saved yet) and on a
    second Ctrl-C, stop at once."""

    def __init__(self):
        self.received, self.previous, self.armed = None, {}, False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handler)
        return self

    def _handler(self, signum, frame):
        from wtl_tf.callbacks import stop_at_once

        if not self.armed or (self.received is not None and signum == signal.SIGINT):
            stop_at_once(signum)
        self.received = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class StreamClock:
    """Stream seconds over all resumes, and when the next periodic checkpoint is due."""

    def __init__(self, before, every_seconds):
        self.before, self.started = float(before), time.perf_counter()
        self.every_seconds, self.last_save = every_seconds, time.perf_counter()

    @property
    def seconds(self):
        return self.before + time.perf_counter() - self.started

    def save_due(self):
        return time.perf_counter() - self.last_save >= self.every_seconds

    def saved(self):
        self.last_save = time.perf_counter()


class StreamProgress:
    """One log line after the first stream step (tracing included) and then every
    `every_seconds`: step, what the stream is at, loss, seconds per step, time to go."""

    def __init__(self, total, every_seconds, enabled=True, log=None):
        self.total, self.every_seconds, self.enabled = total, every_seconds, enabled
        self.log = log or logging.info
        self.start, self.last, self.steady = time.perf_counter(), None, None

    def step(self, step, loss, where=""):
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.last is not None and now - self.last < self.every_seconds:
            return
        where = f" ({where})" if where else ""
        if self.last is None:
            self.log("stream step %d/%d%s: loss %.4f; the first step took %.1f s (tracing "
                     "included)", step, self.total, where, loss, now - self.start)
            self.steady = (now, step)
        else:
            per_step = (now - self.steady[0]) / max(step - self.steady[1], 1)
            self.log("stream step %d/%d%s: loss %.4f; %.2f s per step; about %.0f min to go",
                     step, self.total, where, loss, per_step,
                     per_step * max(self.total - step, 0) / 60)
        self.last = now


def _la_maml_schedule(stream, config):
    """[(task, pass, batch index)] of every incoming batch, in stream order."""
    sizes = getattr(stream.tasks, "train_size", None)  # lazy streams: without building them
    schedule = []
    for t in range(len(stream.tasks)):
        size = sizes(t) if sizes else len(stream.tasks[t].train_y)
        batches = -(-size // config.stream_batch)
        schedule += [(t, e, b) for e in range(config.passes) for b in range(batches)]
    return schedule


def check_finite(loss, step):
    from wtl_tf.errors import WtlError

    if not np.isfinite(loss):
        raise WtlError(f"the meta-loss became {loss} at stream step {step}; lower the learning "
                       "rates (--inner_lr, --meta_lr, --outer_lr) or clip (--grad_clip_norm); "
                       "the last checkpoint is kept")


def run_la_maml(config, checkpoints_dir, summaries, signals):
    from wtl_tf.continual import metrics
    from wtl_tf.continual.checkpoints import StreamCheckpoints

    omniglot = load_omniglot(config) if "omniglot" in config.stream else None
    stream = build_stream(config, omniglot)
    learner = build_la_maml(config, stream)
    checkpoints = StreamCheckpoints(checkpoints_dir, learner.checkpoint_variables())
    step, state = checkpoints.restore()
    rows, trace = [], []
    if state is not None:
        learner.restore_numpy_state(state)
        rows = [list(r) for r in state["R"]]
        trace = list(state.get("mask_trace", []))
    clock = StreamClock(state["seconds"] if state else 0.0, config.checkpoint_every_minutes * 60)
    schedule = _la_maml_schedule(stream, config)

    def save():
        checkpoints.save(step, {**learner.numpy_state(), "R": np.asarray(rows, np.float64)
                                .reshape(len(rows), len(stream.tasks)),
                                "seconds": float(clock.seconds), "mask_trace": trace})
        clock.saved()

    iterators = {}
    progress = StreamProgress(len(schedule), config.progress_every_seconds, config.verbose > 0)
    logging.info("%s on %s: stream steps %d to %d (%d tasks)", config.algorithm, config.stream,
                 step, len(schedule), len(stream.tasks))
    signals.armed = True
    while step < len(schedule):
        t, epoch, b = schedule[step]
        task = stream.tasks[t]
        if t not in iterators:  # the task's seeded batch order, from where the run stands
            iterators = {t: iter(task.train_batches(config.stream_batch, config.passes)
                                 .skip(epoch * -(-len(task.train_y) // config.stream_batch) + b))}
        x, y = next(iterators[t])
        loss = learner.observe(x.numpy(), y.numpy(), t, first_pass=epoch == 0)
        check_finite(loss, step)
        step += 1
        progress.step(step, loss, f"task {t + 1}/{len(stream.tasks)}")
        task_done = step == len(schedule) or schedule[step][0] != t
        if task_done:
            rows.append([learner.accuracy(u.test_x, u.test_y, task=u.index)  # task-aware test
                         for u in stream.tasks])
            if learner.mask_sparsity() is not None:
                trace.append({"step": step, "task": t + 1, **_sparsity(learner)})
            summaries.task_end(step, np.asarray(rows), learner.mask_factors(), loss)
        if task_done or clock.save_due() or signals.received:
            save()
        if signals.received:
            return None, learner, step, signals.received
    seconds = clock.seconds
    results = {**metrics.summary(rows), "R": rows, "tasks": len(stream.tasks),
               "stream_steps": len(schedule), "seconds": round(seconds, 1),
               "seconds_per_1000_steps": round(1000 * seconds / len(schedule), 1),
               "mask_sparsity": _sparsity(learner), "mask_trace": trace or None}
    return results, learner, step, None


def run_osaka(config, checkpoints_dir, summaries, signals):
    from wtl_tf.continual.checkpoints import StreamCheckpoints

    class_images = load_omniglot(config)
    stream = build_stream(config, class_images)
    learner = build_osaka(config, osaka_network(config))
    checkpoints = StreamCheckpoints(checkpoints_dir, learner.checkpoint_variables(),
                                    learner.optimizer.checkpoint_objects())
    step, state = checkpoints.restore()
    if state is not None:
        learner.restore_numpy_state(state)
        pretraining, trace = state["pretraining"], list(state["mask_trace"])
    else:  # a fresh run, or every checkpoint unreadable: pretraining included
        if os.path.isdir(checkpoints_dir) and os.listdir(checkpoints_dir):
            learner = build_osaka(config, osaka_network(config))  # nothing half-restored
            checkpoints = StreamCheckpoints(checkpoints_dir, learner.checkpoint_variables(),
                                            learner.optimizer.checkpoint_objects())
        pretraining, trace = pretrain_osaka(config, learner, stream, class_images), []
    clock = StreamClock(state["seconds"] if state else 0.0, config.checkpoint_every_minutes * 60)

    trace_every = max(1, len(stream) // 20)

    def save():
        checkpoints.save(step, {**learner.numpy_state(), "seconds": float(clock.seconds),
                                "pretraining": pretraining, "mask_trace": trace})
        clock.saved()

    if state is None:
        if learner.masks:
            trace.append({"step": 0, **_sparsity(learner)})
        save()  # the pretrained network: a resume never pretrains again
    progress = StreamProgress(len(stream), config.progress_every_seconds, config.verbose > 0)
    logging.info("%s on %s: stream steps %d to %d", config.algorithm, config.stream, step,
                 len(stream))
    signals.armed = True
    while step < len(stream):
        record = learner.observe(*stream.batch(step))
        check_finite(record["loss_pre"], step)
        summaries.osaka_step(step, record, bool(stream.switches[step]), learner, stream)
        step += 1
        progress.step(step, record["loss_pre"], f"accuracy before adaptation "
                      f"{record['accuracy']:.3f}")
        if learner.masks and (step % trace_every == 0 or step == len(stream)):
            trace.append({"step": step, **_sparsity(learner)})
        if step == len(stream) or clock.save_due() or signals.received:
            save()
        if signals.received:
            return None, learner, step, signals.received
    seconds = clock.seconds
    results = {"online_accuracy": osaka.online_accuracy(learner.history, stream.modes),
               "boundaries": osaka.boundary_scores(learner.history, stream.switches),
               "stream_steps": len(stream), "seconds": round(seconds, 1),
               "seconds_per_1000_steps": round(1000 * seconds / len(stream), 1),
               "mask_sparsity": _sparsity(learner), "mask_trace": trace or None,
               "pretraining": pretraining}
    return results, learner, step, None


def osaka_network(config):
    from wtl_tf import models

    return models.conv4((28, 28, 1), config.ways, channels=config.conv_channels)


def _sparsity(learner):
    """{"overall": fraction of masked weights, "per_layer": {path: fraction shut},
    "changed": {path: fraction open/shut differently from the start}, "entries": {path:
    mask entries}} (masked learners)."""
    if learner.mask_sparsity() is None:
        return None
    changed = learner.mask_changes()
    factors = {path: np.asarray(f) for path, f in learner.mask_factors().items()
               if path in changed}
    return {"overall": learner.mask_sparsity(),
            "per_layer": {path: float(np.mean(f == 0)) for path, f in factors.items()},
            "changed": changed, "entries": {path: int(f.size) for path, f in factors.items()}}


def run(config, flags_text=None):
    """Runs (or resumes) the continual stream; writes results.json; returns (results,
    learner)."""
    from wtl_tf.callbacks import Interrupted
    from wtl_tf.continual.export import export_continual
    from wtl_tf.continual.tensorboard import StreamSummaries
    from wtl_tf.experiment import prepare_output_dir
    from wtl_tf.run_directory import (CONFIG_FILE, RunLock, check_export_dir, check_resume,
                                      saved_config, write_json_atomic, write_text_atomic)

    prepare_output_dir(config.output_dir)
    with RunLock(config.output_dir):
        if config.export_dir:
            check_export_dir(config.export_dir, config.output_dir)
        checkpoints_dir = os.path.join(config.output_dir, "checkpoints")
        saved = saved_config(config.output_dir)
        if saved is not None and os.path.isdir(checkpoints_dir) and os.listdir(checkpoints_dir):
            check_resume(saved, config.to_dict())
        write_json_atomic(os.path.join(config.output_dir, CONFIG_FILE), config.to_dict())
        if flags_text is not None:
            write_text_atomic(os.path.join(config.output_dir, "flags.txt"), flags_text)
        keras.utils.set_random_seed(config.seed)
        summaries = StreamSummaries(os.path.join(config.output_dir, "tensorboard")
                                    if config.tensorboard else None, config.to_dict())
        from wtl_tf.continual.sine_run import run_sine

        body = (run_la_maml if settings.la_maml_family(config) else
                run_osaka if settings.osaka_learner(config) else run_sine)
        with _Signals() as signals:
            results, learner, step, received = body(config, checkpoints_dir, summaries, signals)
        summaries.close()
        if received is not None:
            raise Interrupted(f"{signal.Signals(received).name} at stream step {step}: "
                              "checkpoint saved; resume with the same command", received)
        results = {"config": config.to_dict(), "algorithm": config.algorithm,
                   "stream": config.stream, "continual": results}
        results_path = os.path.join(config.output_dir, "results.json")
        if config.export_dir:
            results["export_dir"] = export_continual(learner, config.export_dir,
                                                     config.to_dict())
        write_json_atomic(results_path, results)
        return results, learner


def format_summary(results):
    """Human-readable lines of a continual run's results."""
    r = results["continual"]
    if "interval_mse" in r:
        return (f"{results['algorithm']} on {results['stream']}: MSE per interval after the "
                f"sequence, {r['test_tasks']} test tasks: warpgrad "
                + " ".join(f"{v:.3f}" for v in r["interval_mse"]["warpgrad"]) + " (mean "
                f"{r['mean_mse']['warpgrad']:.3f}); sgd "
                + " ".join(f"{v:.3f}" for v in r["interval_mse"]["sgd"])
                + f" (mean {r['mean_mse']['sgd']:.3f})")
    if "retained_accuracy" in r:
        return (f"{results['algorithm']} on {results['stream']} ({r['tasks']} tasks): "
                f"RA {r['retained_accuracy']:.4f}  LA {r['learning_accuracy']:.4f}  "
                f"BTI {r['backward_transfer']:.4f} (/T: {r['backward_transfer_over_T']:.4f})"
                f"  {r['seconds_per_1000_steps']:.1f} s per 1000 batches")
    online = r["online_accuracy"]
    modes = "  ".join(f"{k} {v:.4f}" for k, v in online.items() if k != "overall")
    return (f"{results['algorithm']} on {results['stream']} ({r['stream_steps']} steps): online "
            f"accuracy {online['overall']:.4f} ({modes}); boundaries precision "
            f"{r['boundaries']['precision']:.3f} recall {r['boundaries']['recall']:.3f}; "
            f"{r['seconds_per_1000_steps']:.1f} s per 1000 steps")

