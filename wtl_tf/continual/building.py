"""A continual run's pieces, built from its resolved settings: the stream (lazy where it can
be), the learner around its network, and sparse/Continual-MAML's pretraining."""

import functools
import os

import numpy as np
from absl import logging

from wtl_tf import algorithms, models, rules
from wtl_tf.continual import la_maml, osaka, placement, streams
from wtl_tf.continual.protocol import (CACHE_DIR, MNIST_DIR, OSAKA_STREAMS, PHOTO_STREAMS,
                                       PRETRAIN_VALIDATION_CLASSES, SPLIT_STREAMS)
from wtl_tf.data import cifar100, idx, omniglot, photo_augment, tiny_imagenet
from wtl_tf.data.class_images import episode_source
from wtl_tf.episodes import EpisodeSampler


def load_omniglot(config):
    return _omniglot(config.data_dir)


@functools.lru_cache(maxsize=2)
def _omniglot(data_dir):
    """The two small archives at 28 x 28, decoded once per process (the arrays are only
    read: streams copy what they transform)."""
    return omniglot.load(data_dir, ("images_background_small1", "images_background_small2"),
                         image_size=28, allow_download=data_dir is None)


def _mnist_stream(config, class_images):  # the IDX files in --data_dir
    x, y, tx, ty = idx.load(config.data_dir or MNIST_DIR, "mnist",
                            allow_download=config.data_dir is None)
    return streams.mnist_tasks((x, y), (tx, ty), config.stream.split("_")[0],
                               tasks=config.stream_tasks, seed=config.seed)


def _photo_stream(config, class_images):  # the archive in --data_dir (downloaded if unset)
    stream = photo_stream(config)
    stream.tasks = stream.tasks[:config.stream_tasks]
    return stream


def _osaka_stream(config, class_images):
    return osaka.osaka_stream(class_images, steps=config.stream_steps, p=config.stationarity,
                              ways=config.ways, shots=config.shots, seed=config.seed,
                              ood=osaka_ood(config), raw_ood_pixels=bool(config.raw_ood_pixels))


def _split_omniglot(config, class_images):
    stream = streams.split_omniglot(class_images, by="alphabets" if config.stream.endswith(
        "alphabets") else "characters", seed=config.seed)
    stream.tasks = stream.tasks[:config.stream_tasks]
    return stream


def _many_permuted_omniglot(config, class_images):
    stream = streams.permuted_omniglot(class_images, tasks=config.stream_tasks, seed=config.seed,
                                       train_examples=60)
    stream.name = "many_permuted_omniglot"
    return stream


# Each stream of --stream (but the sine, which run.py builds as its own comparison) and its
# builder(config, class_images); class_images is Omniglot's, None for the others.
STREAM_BUILDERS = {
    "rotated_omniglot": lambda config, images: streams.rotated_omniglot(
        images, tasks=config.stream_tasks, seed=config.seed),
    "permuted_omniglot": lambda config, images: streams.permuted_omniglot(
        images, tasks=config.stream_tasks, seed=config.seed),
    "many_permuted_omniglot": _many_permuted_omniglot,
    "rotated_mnist": _mnist_stream, "permuted_mnist": _mnist_stream,
    "split_omniglot": _split_omniglot, "split_omniglot_alphabets": _split_omniglot,
    **{name: _photo_stream for name in PHOTO_STREAMS},
    **{name: _osaka_stream for name in OSAKA_STREAMS},
}


def build_stream(config, class_images):
    return STREAM_BUILDERS[config.stream](config, class_images)


def osaka_ood(config):
    """osaka_mnist: {"ood1": MNIST, "ood2": Fashion-MNIST} from their IDX training files."""
    if config.stream != "osaka_mnist":
        return None

    ood = {}
    for mode, dataset, directory in (("ood1", "mnist", config.mnist_dir),
                                     ("ood2", "fashion_mnist", config.fashion_mnist_dir)):
        x, y, _, _ = idx.load(directory or os.path.join(CACHE_DIR, dataset), dataset,
                              allow_download=directory is None)
        ood[mode] = osaka.mnist_classes(x, y, dataset)
    return ood


def photo_stream(config):

    cifar = config.stream == "split_cifar100"
    loader, protocol = ((cifar100, photo_augment.CIFAR100) if cifar else
                        (tiny_imagenet, photo_augment.TINY_IMAGENET))
    directory = config.data_dir or os.path.join(CACHE_DIR, config.stream[len("split_"):])
    x, y, tx, ty = loader.load(directory, allow_download=config.data_dir is None)[:4]
    return streams.split_photos(config.stream, (x, y), (tx, ty), protocol, seed=config.seed)


def build_la_maml(config, stream):

    split = config.stream in SPLIT_STREAMS
    tiny = config.stream == "split_tiny_imagenet"  # 64 x 64: one more convolution, 640 wide
    model = (models.pc_cnn(stream.tasks[0].train_x.shape[1:], stream.classes,
                           channels=config.pc_cnn_channels, hidden=640 if tiny else 320,
                           convolutions=4 if tiny else 3,
                           kernel_initializer=la_maml.REFERENCE_KERNEL_INIT) if split else
             models.mlp(stream.tasks[0].train_x.shape[1], (100, 100), stream.classes,
                        kernel_initializer=la_maml.REFERENCE_KERNEL_INIT))
    return la_maml.LaMAML(
        model, **algorithms.learner_options(config.algorithm),
        rule=rules.build_chain(config.update_rules, config), alpha_init=config.inner_lr,
        mask_lr=config.mask_lr,
        alpha_lr=config.meta_lr or 0.0, theta_lr=config.outer_lr or 0.0,
        glances=config.glances, replay_size=config.replay_samples, memories=config.memories,
        clip=config.grad_clip_norm, chunk_size=config.chunk_size,
        first_order=config.order == "first", gate_slow_update=config.gate_slow_update,
        inner_clip=config.inner_clip, class_task=getattr(stream, "class_task", None), seed=config.seed,
        mask_optimizer=config.mask_optimizer,
        mask_sparsity_trace=(placement.load_trace(config.mask_sparsity_schedule)
                             if config.mask_sparsity_schedule else None))


def pretrain_osaka(config, learner, stream, class_images):
    """First-order MAML on the pretraining mode's classes with the learner's own meta-update
    (theta, the per-tensor rates and the masks under one Adam), the best validation accuracy
    on PRETRAIN_VALIDATION_CLASSES held-out characters kept. Returns the validation curve."""
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
    return osaka.pretrain(
        learner, episodes, validation, config.pretrain_iterations, config.outer_lr,
        eval_every=config.pretrain_eval_every,
        patience=config.pretrain_patience,
        log=lambda i, a: logging.info("pretraining %d: validation accuracy %.4f", i, a))


def build_osaka(config, net):
    return osaka.ContinualMAML(
        net, rule=rules.build_chain(config.update_rules, config), inner_lr=config.inner_lr,
        inner_steps=config.inner_steps, mask_lr=config.mask_lr, meta_lr=config.meta_lr,
        gamma=config.shift_threshold, lam=config.loss_modulation, modulation=config.modulation,
        accumulate=config.accumulate, ways=config.ways, shots=config.shots)



def osaka_network(config):
    return models.conv4((28, 28, 1), config.ways, channels=config.conv_channels)
