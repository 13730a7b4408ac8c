"""Omniglot alphabets as tasks: the WarpGrad protocol (Flennerhag et al., 2020).

A task is one alphabet, or one alphabet turned by a multiple of 90 degrees (a new task):
`ways`-way classification of characters of that alphabet, trained on the first
`train_images` drawers' images of every character and tested on the remaining ones (15 and
5 of the 20 in the reference), every image under its own random affine transform when
`augment="affine"` (the official code's RandomAffine, wtl_tf.data.augment, which its data
loader draws afresh every time it samples an image: here each held-out image gets one in its
episode, and the training images leave the episode untouched and are redrawn by the learner
at every inner-loop draw, through `support_transform`). Episode `e`
of a split is task `e mod (number of tasks)` with
its `ways` characters drawn by a seeded permutation, so a run is reproducible and resumable
like every other episode stream (wtl_tf.episodes). Alphabets with fewer than `ways`
characters cannot form a task and are rejected by name.

Split files (wtl_tf/data/splits/warpgrad_*.json) list alphabets, not characters:
    {"archives": [...], "alphabets": {"train": [...], "validation": [...], "test": [...]},
     "rotations": {"train": [0, 90, 180, 270], "validation": [0], "test": [0]}}
"""

import tensorflow as tf

from wtl_tf.data import omniglot
from wtl_tf.data.augment import random_affine
from wtl_tf.data.split_files import SPLIT_NAMES, read_split_json
from wtl_tf.episodes import SPLIT_KEYS, episode_indices, rotate_classes
from wtl_tf.errors import ConfigError, DataError
from wtl_tf.runtime import as_written


AUGMENTATIONS = ("none", "affine")


def load_alphabet_split(spec):
    """`spec`: a shipped split name or a JSON path; returns the parsed file."""
    payload = read_split_json(spec, "alphabets")
    alphabets = payload["alphabets"]
    both = set(alphabets["train"]) & set(alphabets["test"])
    if both:
        raise DataError(f"alphabet split {spec!r} has {sorted(both)} in both train and test")
    return payload


class AlphabetTaskSampler:
    """Episodes of one split: (alphabet, rotation) tasks over class-indexed images."""

    def __init__(self, class_images, entries, ways, train_images, seed, split, augment="none"):
        if augment not in AUGMENTATIONS:
            raise ConfigError(f"--augment must be one of {AUGMENTATIONS}, got {augment!r}")
        self.augment = augment
        self.ways, self.train_images = int(ways), int(train_images)
        index = class_images.index()
        by_alphabet = {}
        for name in class_images.names:
            by_alphabet.setdefault(name.split("/")[0], []).append(index[name])
        counts = class_images.counts
        per_character = int(counts.min())
        if int(counts.max()) != per_character:
            raise DataError("alphabet tasks need the same number of images per character")
        self.held_out = per_character - self.train_images
        if self.held_out <= 0:
            raise ConfigError(f"--shots (training images per character, {train_images}) must "
                              f"leave held-out images among the {per_character} per character")
        rows, sizes = [], []
        for alphabet, _ in entries:
            if alphabet not in by_alphabet:
                raise DataError(f"alphabet {alphabet!r} of the {split} split is not in the data; "
                                "check --data_dir and the split file")
            members = by_alphabet[alphabet]
            if len(members) < self.ways:
                raise DataError(f"alphabet {alphabet!r} has {len(members)} characters, fewer "
                                f"than {ways} ways; lower --ways or drop it from the split")
            rows.append(members)
            sizes.append(len(members))
        width = max(sizes)
        self.members = tf.constant([r + [0] * (width - len(r)) for r in rows], tf.int64)
        self.sizes = tf.constant(sizes, tf.int64)
        self.rotations = tf.constant([(r // 90) % 4 for _, r in entries], tf.int32)
        self.any_rotation = any(r % 360 for _, r in entries)
        self.offsets = tf.constant(class_images.offsets, tf.int64)
        with tf.device("/cpu:0"):
            self.images = tf.Variable(class_images.images, trainable=False, name="alphabet_images")
        self.key = tf.constant([seed, SPLIT_KEYS[split]], tf.int64)
        self.width = width
        self.num_tasks = len(entries)

    def episode(self, e, raw=False):
        task = e % self.num_tasks
        keys = tf.random.stateless_uniform([self.width],
                                           tf.random.experimental.stateless_fold_in(self.key, e))
        keys = tf.where(tf.range(self.width, dtype=tf.int64) < self.sizes[task], keys, 2.0)
        characters = tf.gather(self.members[task], tf.argsort(keys)[:self.ways])
        per_class = self.train_images + self.held_out
        ids = tf.gather(self.offsets, characters)[:, None] + tf.range(per_class, dtype=tf.int64)
        images = tf.gather(self.images, ids)  # [ways, per_class, H, W, C]
        if self.any_rotation:
            images = rotate_classes(images, tf.fill([self.ways], self.rotations[task]))
        if self.augment == "affine":  # each held-out image its own random affine, once
            shape = images.shape
            held_out = tf.reshape(images[:, self.train_images:], [-1, *shape[2:]])
            seed = tf.random.experimental.stateless_fold_in(self.key, e + (1 << 40))
            held_out = tf.reshape(random_affine(held_out, seed),
                                  [shape[0], self.held_out, *shape[2:]])
            images = tf.concat([images[:, :self.train_images], held_out], axis=1)
        if not raw:
            images = tf.cast(images, tf.float32) / 255.0
        shape = images.shape[2:]
        labels = tf.range(self.ways, dtype=tf.int32)
        return {
            "support_x": tf.reshape(images[:, :self.train_images],
                                    [self.ways * self.train_images, *shape]),
            "support_y": tf.repeat(labels, self.train_images),
            "query_x": tf.reshape(images[:, self.train_images:],
                                  [self.ways * self.held_out, *shape]),
            "query_y": tf.repeat(labels, self.held_out),
            "class_ids": tf.cast(characters, tf.int32),
            "task": tf.cast(task, tf.int32),
        }

    def dataset(self, meta_batch_size, start_batch=0, num_batches=None, raw=False, replicas=None):
        indices, batch = episode_indices(meta_batch_size, start_batch, num_batches, replicas)
        return (indices.map(as_written(lambda e: self.episode(e, raw)),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


class AlphabetTasks:
    """The task distribution of `--dataset=omniglot_alphabets` (see the module docstring)."""

    loss = "cross_entropy"

    def __init__(self, *, ways, shots, queries, seed, data_dir=None,
                 split="warpgrad_omniglot_small", image_size=28, augment="affine", **_):
        payload = load_alphabet_split(split or "warpgrad_omniglot_small")
        archives = tuple(payload.get("archives") or ("images_background", "images_evaluation"))
        images = omniglot.load(data_dir, archives, image_size)
        self.name, self.ways, self.seed, self.outputs = "omniglot_alphabets", ways, seed, ways
        self.input_shape = tuple(images.images.shape[1:])
        self.preprocessing = {"image_size": self.input_shape[0], "channels": 1,
                              "normalization": "unit"}
        rotations = payload.get("rotations", {})
        self.samplers = {
            split_name: AlphabetTaskSampler(
                images, [(a, r) for a in payload["alphabets"][split_name]
                         for r in rotations.get(split_name, [0])],
                ways, shots, seed, split_name, augment or "none")
            for split_name in SPLIT_NAMES}
        self.tasks = {s: sampler.num_tasks for s, sampler in self.samplers.items()}
        # the learner's per-draw augmentation of the training images (see the module doc)
        self.support_transform = random_affine if augment == "affine" else None
        held_out = self.samplers["train"].held_out
        if queries != held_out:
            raise ConfigError(f"alphabet tasks test on the images not used for training: with "
                              f"--shots={shots} that is --queries={held_out}, got {queries}")

    def episodes(self, split, meta_batch_size, start_batch=0, num_batches=None, raw=False,
                 replicas=None):
        return self.samplers[split].dataset(meta_batch_size, start_batch, num_batches, raw,
                                            replicas)

