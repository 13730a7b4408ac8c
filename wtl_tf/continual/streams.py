"""Task streams for continual learning: built offline from Omniglot (docs/continual.md),
or from the originals users download (MNIST IDX files; CIFAR-100 and TinyImageNet archives,
`split_photos`).

A `Stream` is a sequence of `ContinualTask`s; each holds its training and test examples and
yields its training batches through `tf.data` in a seeded order, so a stream is a pure
function of (class images, seed) and a resumed run sees exactly the same batches.

- `rotated_omniglot`: the MNIST-rotations analogue. A seeded set of 20 characters (labels
  0..19), 15 training / 5 test drawings each; task t rotates every image by one angle drawn
  uniformly from the t-th of `tasks` equal bins of [0, 180) degrees (the GEM recipe).
- `permuted_omniglot`: the permuted-MNIST analogue: task t applies its own fixed random
  permutation of the 784 pixels. `many_permutations` is the Many-Permutations analogue
  (100 tasks of 60 training examples each).

Images are inverted to strokes-on-black ([0, 1], background 0, like MNIST) and flattened to
784 values, the input of La-MAML's MLP 784-100-100-N.
"""

import collections.abc
import dataclasses
import math
import threading

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.data import photo_augment
from wtl_tf.data.generated import generated
from wtl_tf.errors import DataError
from wtl_tf.runtime import as_written


@dataclasses.dataclass
class ContinualTask:
    index: int
    name: str
    train_x: np.ndarray  # float32 [n, 784]
    train_y: np.ndarray  # int64 [n]
    test_x: np.ndarray
    test_y: np.ndarray
    seed: int = 0
    # (uint8 batch, stateless seed) -> float32 batch: the photo streams' training
    # augmentation and normalisation, drawn from (task seed, batch position)
    transform: object = None

    def train_batches(self, batch_size, epochs=1):
        """The task's training examples in a seeded order (one pass per epoch), as tf.data:
        ceil(n / batch_size) batches per pass, the last of a pass possibly smaller (a batch
        never spans two passes, so the run's schedule can count them)."""
        data = tf.data.Dataset.from_tensor_slices((self.train_x, self.train_y))
        batches = (data.shuffle(len(self.train_y), seed=self.seed, reshuffle_each_iteration=True)
                   .batch(batch_size).repeat(epochs))
        if self.transform is None:
            return batches
        task_seed, transform = tf.constant(self.seed, tf.int64), self.transform
        return batches.enumerate().map(as_written(
            lambda i, xy: (transform(xy[0], tf.stack([task_seed, i])), xy[1])))


@dataclasses.dataclass
class Stream:
    name: str
    tasks: collections.abc.Sequence  # a list, or LazyTasks
    classes: int

    def schedule(self, batch_size, passes):
        """[(task, pass, batch index)] of every incoming batch, in stream order (lazy
        streams count them without building their tasks)."""
        sizes = getattr(self.tasks, "train_size", None)
        schedule = []
        for t in range(len(self.tasks)):
            size = sizes(t) if sizes else len(self.tasks[t].train_y)
            batches = -(-size // batch_size)
            schedule += [(t, e, b) for e in range(passes) for b in range(batches)]
        return schedule

    def step_sizes(self, batch_size, passes):
        """[(examples, first pass)] of every incoming batch, in the order of `schedule`."""
        sizes = getattr(self.tasks, "train_size", None)
        return [(min(batch_size, (sizes(t) if sizes else len(self.tasks[t].train_y))
                     - b * batch_size), epoch == 0)
                for t, epoch, b in self.schedule(batch_size, passes)]

    def dataset(self, batch_size, passes, start=0):
        """The stream as tf.data from stream step `start` on: (x, y, task, first pass) per
        incoming batch, each task's batches in their seeded order; a task is built when the
        stream reaches it."""
        schedule = self.schedule(batch_size, passes)
        x_spec, y_spec = self.tasks[0].train_batches(batch_size).element_spec

        def batches():
            step = start
            while step < len(schedule):
                t, epoch, b = schedule[step]
                task = self.tasks[t]
                per_pass = -(-len(task.train_y) // batch_size)
                for x, y in task.train_batches(batch_size, passes).skip(epoch * per_pass + b):
                    yield x, y, t, schedule[step][1] == 0
                    step += 1
        return generated(batches, (x_spec, y_spec, tf.TensorSpec([], tf.int64),
                                   tf.TensorSpec([], tf.bool)), len(schedule) - start)


# What a lazy stream keeps of its built tasks (the rest are rebuilt on use).
CACHE_BYTES = 1 << 30


class LazyTasks(collections.abc.Sequence):
    """`count` tasks built on first use by `build(t)`, the most recently used kept within
    CACHE_BYTES: a stream's memory does not grow with its length. A task is a pure function
    of its index, so a rebuilt one is the same task. `train_size(t)`: its number of training
    examples, known without building it (a run's schedule counts batches up front)."""

    def __init__(self, count, build, task_bytes, train_size):
        self.count, self.build, self.train_size = int(count), build, train_size
        self.keep = max(2, CACHE_BYTES // max(int(task_bytes), 1))
        self._cache = collections.OrderedDict()
        self._lock = threading.Lock()  # the stream's tf.data thread and the run both use it

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(f"task {index} of a stream of {self.count}")
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
            task = self._cache[index] = self.build(index)
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
            return task


def rotate_images(images, degrees):
    """Rotates [n, H, W, 1] float images counter-clockwise by `degrees` about their centre
    (bilinear, zero fill)."""
    images = np.asarray(images, np.float32)
    height, width = images.shape[1:3]
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    # Output pixel (x, y) samples the input at R(-angle) (x - c) + c; y grows downwards, so a
    # counter-clockwise turn on screen is a clockwise one in (x, y).
    transform = [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0]
    out = keras.ops.image.affine_transform(
        images, np.tile(np.asarray(transform, np.float32), (len(images), 1)),
        interpolation="bilinear", fill_mode="constant", fill_value=0.0)
    return np.asarray(out, np.float32)


def _character_set(class_images, characters, train_per_class, test_per_class, seed):
    needed = train_per_class + test_per_class
    eligible = [c for c in range(len(class_images.names)) if class_images.counts[c] >= needed]
    if len(eligible) < characters:
        raise DataError(f"the stream needs {characters} characters with {needed} drawings each; "
                        f"the archives have {len(eligible)}")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(eligible, size=characters, replace=False).tolist())
    train, test = [], []
    for label, c in enumerate(chosen):
        start = class_images.offsets[c]
        drawings = rng.permutation(class_images.counts[c])[:needed] + start
        train += [(i, label) for i in drawings[:train_per_class]]
        test += [(i, label) for i in drawings[train_per_class:]]

    def arrays(pairs):
        index = np.array([i for i, _ in pairs])
        images = 1.0 - class_images.images[index].astype(np.float32) / 255.0
        return images, np.array([label for _, label in pairs], np.int64)

    return [class_images.names[c] for c in chosen], arrays(train), arrays(test)


def rotated_omniglot(class_images, tasks=20, characters=20, train_per_class=15,
                     test_per_class=5, seed=0):
    """20 rotation tasks of the same 20 characters (see the module docstring); built lazily
    (LazyTasks), only the angles drawn up front."""
    _, (train_x, train_y), (test_x, test_y) = _character_set(
        class_images, characters, train_per_class, test_per_class, seed)
    rng = np.random.default_rng(seed + 1)
    width = 180.0 / tasks
    angles = [float(rng.uniform(t * width, (t + 1) * width)) for t in range(tasks)]

    def build(t):
        task = ContinualTask(
            t, f"rotation {angles[t]:.1f}",
            rotate_images(train_x, angles[t]).reshape(len(train_y), -1), train_y,
            rotate_images(test_x, angles[t]).reshape(len(test_y), -1), test_y, seed + t)
        task.angle = angles[t]
        return task

    return Stream("rotated_omniglot", LazyTasks(tasks, build, 4 * (train_x.size + test_x.size),
                                                lambda t: len(train_y)), characters)


def permuted_omniglot(class_images, tasks=20, characters=20, train_per_class=15,
                      test_per_class=5, seed=0, train_examples=None):
    """Permutation tasks: task t reorders the 784 pixels by its own fixed permutation.
    `train_examples` keeps only that many (seeded) training examples per task. Built lazily
    (LazyTasks), only the permutations drawn up front."""
    _, (train_x, train_y), (test_x, test_y) = _character_set(
        class_images, characters, train_per_class, test_per_class, seed)
    train_x, test_x = train_x.reshape(len(train_y), -1), test_x.reshape(len(test_y), -1)
    rng = np.random.default_rng(seed + 2)
    permutations, keeps = [], []
    for _ in range(tasks):
        permutations.append(rng.permutation(train_x.shape[1]).astype(np.uint16))
        keeps.append(None if train_examples is None else
                     np.sort(rng.choice(len(train_y), size=train_examples, replace=False)))

    def build(t):
        permutation = permutations[t].astype(np.int64)
        keep = np.arange(len(train_y)) if keeps[t] is None else keeps[t]
        task = ContinualTask(t, f"permutation {t}", train_x[keep][:, permutation],
                             train_y[keep], test_x[:, permutation], test_y, seed + t)
        task.permutation = permutation
        return task

    sizes = len(train_y) if train_examples is None else train_examples
    return Stream("permuted_omniglot", LazyTasks(tasks, build, 4 * (train_x.size + test_x.size),
                                                 lambda t: sizes), characters)


def mnist_tasks(train, test, kind="rotated", tasks=20, train_per_task=1000, test_per_task=1000,
                seed=0):
    """MNIST-rotations / permutations (the GEM recipe, as La-MAML's MNIST benchmarks; our
    reading: each task its own seeded `train_per_task` training digits, all tasks scored on
    the same seeded `test_per_task` test digits), from the arrays wtl_tf.data.idx.load gives
    ([n, 28, 28, 1] uint8, labels). Images are scaled to [0, 1] (digits are already light
    on black) and flattened to 784 values; rotations draw one angle per 180/tasks bin."""
    (train_x, train_y), (test_x, test_y) = train, test
    if kind not in ("rotated", "permuted"):
        raise DataError(f"mnist_tasks kind must be rotated or permuted, got {kind!r}")
    if train_per_task > len(train_y) or test_per_task > len(test_y):
        raise DataError(f"the MNIST arrays hold {len(train_y)} / {len(test_y)} digits, fewer "
                        f"than {train_per_task} / {test_per_task} per task")
    rng = np.random.default_rng([seed, 5])
    test_pick = np.sort(rng.choice(len(test_y), size=test_per_task, replace=False))
    base_test = test_x[test_pick].astype(np.float32) / 255.0
    stream, width = [], 180.0 / tasks
    for t in range(tasks):
        pick = np.sort(rng.choice(len(train_y), size=train_per_task, replace=False))
        x = train_x[pick].astype(np.float32) / 255.0
        if kind == "rotated":
            angle = float(rng.uniform(t * width, (t + 1) * width))
            x, tx = rotate_images(x, angle), rotate_images(base_test, angle)
            name = f"rotation {angle:.1f}"
        else:
            permutation = rng.permutation(784)
            x = x.reshape(len(x), -1)[:, permutation]
            tx = base_test.reshape(len(base_test), -1)[:, permutation]
            name = f"permutation {t}"
        stream.append(ContinualTask(t, name, x.reshape(len(x), -1), train_y[pick].astype(
            np.int64), tx.reshape(len(tx), -1), test_y[test_pick].astype(np.int64), seed + t))
    return Stream(f"{kind}_mnist", stream, 10)


def split_omniglot(class_images, by="characters", classes_per_task=5, characters=240,
                   train_per_class=14, validation_per_class=3, test_per_class=3, seed=0):
    """The Split-CIFAR analogue (docs/continual.md): disjoint class sets learned one after
    the other, answered by a task-masked head. `by="characters"`: a seeded order of 240
    characters in tasks of `classes_per_task` (48 tasks of 5); `by="alphabets"`: one task per
    alphabet (8 tasks). Drawings per character: 14 train / 3 validation / 3 test (validation
    is held out, for choosing hyperparameters). Images stay [28, 28, 1] (strokes on black)
    for the pc_cnn; labels are global class indices; `class_task[c]` is the task of class c."""
    needed = train_per_class + validation_per_class + test_per_class
    eligible = [c for c in range(len(class_images.names)) if class_images.counts[c] >= needed]
    rng = np.random.default_rng([seed, 11])
    if by == "characters":
        if len(eligible) < characters or characters % classes_per_task:
            raise DataError(f"split_omniglot needs {characters} characters (a multiple of "
                            f"{classes_per_task}) with {needed} drawings; the archives have "
                            f"{len(eligible)}")
        order = rng.permutation(eligible)[:characters]
        groups = [order[i:i + classes_per_task] for i in range(0, characters, classes_per_task)]
        names = [f"characters {i * classes_per_task}-{(i + 1) * classes_per_task - 1}"
                 for i in range(len(groups))]
    elif by == "alphabets":
        by_alphabet = {}
        for c in eligible:
            by_alphabet.setdefault(class_images.names[c].split("/")[0], []).append(c)
        names = list(rng.permutation(sorted(by_alphabet)))
        groups = [np.asarray(by_alphabet[a]) for a in names]
    else:
        raise DataError(f"split_omniglot by={by!r}: choose characters or alphabets")
    class_task = np.concatenate([np.full(len(g), t) for t, g in enumerate(groups)])
    tasks, label = [], 0
    for t, group in enumerate(groups):
        parts = {"train": [[], []], "test": [[], []]}
        for c in group:
            start = class_images.offsets[c]
            drawings = rng.permutation(class_images.counts[c])[:needed] + start
            for split, picks in (("train", drawings[:train_per_class]),
                                 ("test", drawings[train_per_class + validation_per_class:])):
                parts[split][0].append(1.0 - class_images.images[picks].astype(np.float32) / 255)
                parts[split][1].extend([label] * len(picks))
            label += 1
        (train_x, train_y), (test_x, test_y) = (
            (np.concatenate(x), np.asarray(y, np.int64)) for x, y in parts.values())
        tasks.append(ContinualTask(t, str(names[t]), train_x, train_y, test_x, test_y, seed + t))
    stream = Stream(f"split_omniglot_{by}", tasks, label)
    stream.class_task = class_task
    return stream


def split_photos(name, train, test, protocol, classes_per_task=5, validation_fraction=0.1,
                 seed=0):
    """La-MAML's class-incremental CIFAR-100 (20 tasks of 5) and TinyImageNet (40 tasks of
    5) streams from `train` / `test` = (uint8 images [n, H, W, 3], labels): a seeded random
    class order, relabelled 0..C-1 in that order; task t learns classes [5t, 5t + 5) and is
    tested on their test images with a task-masked head. Each class's first
    `validation_fraction` (seeded) training images are held out for validation, as the
    reference's --validation 0.1. Training batches are augmented and normalised as they are
    drawn (wtl_tf.data.photo_augment, `protocol`); test images are normalised once."""
    (train_x, train_y), (test_x, test_y) = train, test
    classes = int(max(train_y.max(), test_y.max())) + 1
    if classes % classes_per_task:
        raise DataError(f"{name}: {classes} classes do not split into tasks of "
                        f"{classes_per_task}")
    rng = np.random.default_rng([seed, 17])
    order = rng.permutation(classes)  # order[k]: the original class learned k-th
    transform = photo_augment.training_transform(protocol)
    tasks = []
    for t in range(classes // classes_per_task):
        keep_train, keep_test, labels_train, labels_test = [], [], [], []
        for k in range(t * classes_per_task, (t + 1) * classes_per_task):
            own = np.flatnonzero(train_y == order[k])
            own = own[rng.permutation(len(own))][int(len(own) * validation_fraction):]
            own_test = np.flatnonzero(test_y == order[k])
            if len(own) == 0 or len(own_test) == 0:
                raise DataError(f"{name}: class {order[k]} has {len(own)} training (after "
                                f"validation) and {len(own_test)} test images; each needs one")
            keep_train.append(np.sort(own))
            keep_test.append(own_test)
            labels_train += [k] * len(own)
            labels_test += [k] * len(own_test)
        keep_train, keep_test = np.concatenate(keep_train), np.concatenate(keep_test)
        first, last = t * classes_per_task, (t + 1) * classes_per_task - 1
        tasks.append(ContinualTask(
            t, f"classes {first}-{last}", train_x[keep_train],
            np.asarray(labels_train, np.int64), photo_augment.normalized_array(
                test_x[keep_test], protocol), np.asarray(labels_test, np.int64), seed + t,
            transform=transform))
    stream = Stream(name, tasks, classes)
    stream.class_task = np.arange(classes) // classes_per_task
    stream.class_order = order
    return stream


def many_permutations(class_images, seed=0):
    """The Many-Permutations analogue: 100 permutation tasks of 60 training examples."""
    stream = permuted_omniglot(class_images, tasks=100, seed=seed, train_examples=60)
    stream.name = "many_permuted_omniglot"
    return stream
