"""N-way K-shot Q-query episodes as a tf.data pipeline with static shapes.

Episode `i` of a stream is a pure function of (seed, split, i): N distinct classes are
drawn, then K + Q distinct images of each (so support and query never share an image), the
class's rotation is applied to that class's images, and labels are 0..N-1 in the order the
classes were drawn. Because nothing depends on iteration order, a resumed run continues the
same stream from any position (`start_batch`), and any two runs with one seed see the same
tasks. Images stay uint8 in memory (one copy, in a variable the pipeline reads) and are
converted to float per episode.
"""

import numpy as np
import tensorflow as tf

from wtl_tf.errors import ConfigError, DataError
from wtl_tf.runtime import as_written

SPLIT_KEYS = {"train": 0, "validation": 1, "test": 2}


def episode_indices(meta_batch_size, start_batch=0, num_batches=None, replicas=None):
    """The episode indices one input pipeline reads, in order.

    Meta-batch b holds episodes b*B .. b*B + B - 1. `replicas=(first, local, total)` splits
    each meta-batch over `total` replicas, of which this pipeline feeds `local`, starting at
    global replica `first`: it yields replica first's share of batch b, then first+1's, ...
    (tf.distribute hands consecutive elements to consecutive local replicas). Every replica
    thus sees its own slice of exactly the tasks a single device would see.
    """
    first, local, total = replicas or (0, 1, 1)
    if meta_batch_size % total:
        raise ConfigError(f"meta_batch_size {meta_batch_size} does not split over {total} "
                          "replicas; make it a multiple of the replica count")
    per_replica = meta_batch_size // total
    last = 2**62 // meta_batch_size if num_batches is None else start_batch + num_batches
    offsets = tf.constant([(first + r) * per_replica + t for r in range(local)
                           for t in range(per_replica)], tf.int64)
    indices = tf.data.Dataset.range(start_batch, last).flat_map(
        lambda b: tf.data.Dataset.from_tensor_slices(b * meta_batch_size + offsets))
    if num_batches is not None:
        # flat_map hides the length; Keras then warns "ran out of data" on a finite set
        indices = indices.apply(tf.data.experimental.assert_cardinality(
            num_batches * len(offsets)))
    return indices, per_replica


def rotate_classes(images, ks):
    """Rotates class i's images [N, per_class, H, W, C] by ks[i] quarter turns (0..3)."""
    n, per_class, h, w, c = images.shape
    if h != w:
        raise ConfigError(f"quarter-turn rotations need square images, got {h}x{w}")
    # A gather of pixel positions: tf.image.rot90 transposes, and oneDNN's transpose logs an
    # error line for uint8 on every call (falling back to Eigen); the gather is exact too.
    grid = np.arange(h * w).reshape(h, w)
    turns = tf.constant(np.stack([np.rot90(grid, k).reshape(-1) for k in range(4)]), tf.int32)
    pixels = tf.reshape(images, [n, per_class, h * w, c])
    moved = tf.gather(pixels, tf.gather(turns, ks), axis=2, batch_dims=1)
    return tf.reshape(moved, [n, per_class, h, w, c])


def check_episode_shape(source, ways, shots, queries, split="split"):
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
        if int(value) <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    if ways > source.num_classes:
        raise DataError(f"{ways}-way episodes need at least {ways} classes, but the {split} "
                        f"split has {source.num_classes}; lower --ways or use a larger split")
    short = np.flatnonzero(source.counts < shots + queries)
    if short.size:
        name = source.names[short[0]]
        raise DataError(f"class {name!r} of the {split} split has {source.counts[short[0]]} "
                        f"images but {shots} shots + {queries} queries need "
                        f"{shots + queries}; lower --shots/--queries")


class EpisodeSampler:
    """Builds episode datasets for one split of class images."""

    def __init__(self, source, ways, shots, queries, seed=0, split="train", normalize=None,
                 groups=None):
        """`groups` (optional, one id per class): every episode draws its classes from one
        group, chosen uniformly among the groups with at least `ways` classes (Omniglot's
        within-alphabet tasks: the harder setting of the original one-shot benchmark)."""
        check_episode_shape(source, ways, shots, queries, split)
        self.source, self.ways, self.shots, self.queries = source, ways, shots, queries
        self.key = tf.constant([seed, SPLIT_KEYS[split]], tf.int64)
        self.normalize = normalize or (lambda x: x / 255.0)
        with tf.device("/cpu:0"):
            self.images = tf.Variable(source.images, trainable=False, name="episode_images")
        self.offsets = tf.constant(source.offsets, tf.int64)
        self.counts = tf.constant(source.counts, tf.int64)
        self.rotations = tf.constant(source.rotations, tf.int32)
        self.any_rotation = bool(np.any(source.rotations))
        self.max_count = int(source.counts.max())
        self.groups = None
        if groups is not None:
            groups = np.asarray(groups, np.int64)
            sizes = np.bincount(groups)
            eligible = np.flatnonzero(sizes >= ways)
            # Refused when episodes are asked for: a split that is never sampled (say a
            # validation split of 5 characters per alphabet) may have no such group.
            self.no_group = None if len(eligible) else (
                f"no group of the {split} split has {ways} classes (the largest has "
                f"{sizes.max()}): lower --ways or use --episode_classes=any")
            self.groups = tf.constant(groups)
            self.eligible_groups = tf.constant(eligible)

    def episode(self, index, raw=False):
        n, per_class = self.ways, self.shots + self.queries
        seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(self.key, index), 2)
        order = tf.random.stateless_uniform([self.source.num_classes], seeds[0])
        if self.groups is not None:  # one group per episode; the others' classes sort last
            pick = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(
                seeds[0], 1), maxval=tf.size(self.eligible_groups, tf.int64), dtype=tf.int64)
            order = tf.where(tf.equal(self.groups, self.eligible_groups[pick]), order, 2.0)
        classes = tf.argsort(order)[:n]
        counts = tf.gather(self.counts, classes)
        keys = tf.random.stateless_uniform([n, self.max_count], seeds[1])
        positions = tf.range(self.max_count, dtype=tf.int64)[None, :]
        keys = tf.where(positions < counts[:, None], keys, 2.0)  # never pick past a class's end
        picks = tf.cast(tf.argsort(keys, axis=1)[:, :per_class], tf.int64)
        image_ids = tf.gather(self.offsets, classes)[:, None] + picks  # [N, K + Q]
        images = tf.gather(self.images, image_ids)  # [N, K + Q, H, W, C] uint8
        if self.any_rotation:
            images = rotate_classes(images, tf.gather(self.rotations, classes))
        if not raw:  # raw: the uint8 pixels a user would hand to an exported model
            images = self.normalize(tf.cast(images, tf.float32))
        shape = images.shape[2:]
        return {
            "support_x": tf.reshape(images[:, :self.shots], [n * self.shots, *shape]),
            "support_y": tf.repeat(tf.range(n, dtype=tf.int32), self.shots),
            "query_x": tf.reshape(images[:, self.shots:], [n * self.queries, *shape]),
            "query_y": tf.repeat(tf.range(n, dtype=tf.int32), self.queries),
            "class_ids": tf.cast(classes, tf.int32),
            "image_ids": image_ids,
        }


    def dataset(self, meta_batch_size, start_batch=0, num_batches=None, raw=False,
                replicas=None):
        """Meta-batches (dicts with a leading `meta_batch_size` dim); endless if no count.

        `raw=True` yields uint8 images instead of normalised float32 ones; `replicas`: see
        `episode_indices` (then each element is one replica's share of a meta-batch)."""
        if int(meta_batch_size) <= 0:
            raise ConfigError(f"meta_batch_size must be a positive integer, got {meta_batch_size}")
        if self.groups is not None and self.no_group:
            raise DataError(self.no_group)
        indices, batch = episode_indices(meta_batch_size, start_batch, num_batches, replicas)
        return (indices
                .map(as_written(lambda i: self.episode(i, raw)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(batch, drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE))
