"""Cross-domain meta-test at the end of a run (`--cross_domain=NAME:DIR,...`).

Each DIR is a directory of class folders (`DIR/<class>/<images>`, as `--dataset=folder`).
By default all its classes are test classes; `NAME:DIR:SPLIT` takes only the test classes of
a split file instead: the shipped `cub_sparse_maml` and `cars_sparse_maml` are the
sparse-MAML reference's CUB-200-2011 and Stanford Cars splits (DIR: CUB_200_2011/images, or
the folders datasets/stanford_cars_folders.py writes). The run's best-validation weights adapt to `--test_tasks`
episodes of it with the run's ways, shots and queries, the images converted to the trained
network's size and channels and normalised as its training data were; each dataset's
accuracy (mean and 95% interval) goes into results.json under `cross_domain`.
"""

import os

import tensorflow as tf

from wtl_tf import settings
from wtl_tf.data import folder
from wtl_tf.data.class_images import episode_source
from wtl_tf.data.registry import ImageTasks
from wtl_tf.data.split_files import load_split
from wtl_tf.errors import ConfigError, DataError
from wtl_tf.export import NORMALIZATIONS
from wtl_tf.meta_test import meta_test


settings.declare(settings.Setting(
    "cross_domain", "list", None, "after training, meta-test the best-validation weights on "
    "these class-folder datasets, NAME:DIR[:SPLIT],... (SPLIT: only its test classes, e.g. "
    "cub_sparse_maml, cars_sparse_maml; results.json: cross_domain)", group="the run",
    reads=lambda c: settings.few_shot(c) and c.dataset != "sinusoid",
    scope="few-shot image classification runs", resumable=True))


def parse(entries):
    """[(name, directory, split or None)] from NAME:DIR[:SPLIT] entries; a clear error for
    anything else."""
    parsed = []
    for entry in entries or ():
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise ConfigError(f"--cross_domain entry {entry!r} is not NAME:DIR or NAME:DIR:SPLIT "
                              "(for example cub:/data/CUB_200_2011/images:cub_sparse_maml)")
        if parts[0] in [p[0] for p in parsed]:
            raise ConfigError(f"--cross_domain names {parts[0]!r} twice")
        parsed.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    return parsed


def test_classes(name, directory, split=None):
    """The class folders of `directory` to test on: all of them, or the test classes of
    `split`, each of which must be there."""
    if not os.path.isdir(directory):
        raise DataError(f"--cross_domain {name}: {directory!r} is not a directory of class "
                        "folders")
    if split is None:
        return sorted(d for d in os.listdir(directory)
                      if os.path.isdir(os.path.join(directory, d)))
    classes = load_split(split).class_names("test")
    missing = [c for c in classes if not os.path.isdir(os.path.join(directory, c))]
    if missing:
        raise DataError(f"--cross_domain {name}: {directory!r} lacks {len(missing)} of the "
                        f"{len(classes)} test classes of split {split!r} (e.g. {missing[0]!r}); "
                        "point it at the dataset's class folders (CUB: CUB_200_2011/images; "
                        "Stanford Cars: the output of datasets/stanford_cars_folders.py)")
    return classes


def check_sources(entries):
    """Every --cross_domain directory and split usable: called before training, so that a
    wrong path fails at once rather than after the run."""
    for name, directory, split in parse(entries):
        test_classes(name, directory, split)


def cross_domain_tasks(name, directory, tasks, config, split=None):
    """An ImageTasks with one `test` split: the class folders `test_classes` picks."""
    classes = test_classes(name, directory, split)
    height, _, channels = tasks.input_shape
    images = folder.load(directory, classes, height, channels)
    mean, std = NORMALIZATIONS[tasks.preprocessing["normalization"]]

    def normalize(x):
        return (x / 255.0 - tf.constant(mean[:channels], x.dtype)) / tf.constant(
            std[:channels], x.dtype)

    source = episode_source(images, [(c, 0) for c in classes], f"{name} (cross-domain)")
    return ImageTasks(name, {"test": source}, config.ways, config.shots, config.queries,
                      config.seed, normalize, tasks.preprocessing["normalization"])


def cross_domain_results(learner, tasks, config):
    """{name: {metric: {mean, ci95}}} over --test_tasks episodes of each dataset."""
    results = {}
    for name, directory, split in parse(config.cross_domain):
        target = cross_domain_tasks(name, directory, tasks, config, split)
        _, stats = meta_test(learner, target.episodes("test", config.eval_batch_size),
                             config.test_tasks)
        results[name] = {"directory": directory, "split": split,
                         "classes": target.samplers["test"].source
                         .num_classes, "test_tasks": config.test_tasks,
                         **{metric: {"mean": m, "ci95": ci} for metric, (m, ci) in stats.items()}}
    return results
