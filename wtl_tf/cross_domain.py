"""Cross-domain meta-test at the end of a run (`--cross_domain=NAME:DIR,...`).

Each DIR is a directory of class folders (`DIR/<class>/<images>`, as `--dataset=folder`);
all its classes are test classes. The run's best-validation weights adapt to `--test_tasks`
episodes of it with the run's ways, shots and queries, the images converted to the trained
network's size and channels and normalised as its training data were; each dataset's
accuracy (mean and 95% interval) goes into results.json under `cross_domain`.
"""

import os

import tensorflow as tf

from wtl_tf import settings
from wtl_tf.errors import ConfigError, DataError

settings.declare(settings.Setting(
    "cross_domain", "list", None, "after training, meta-test the best-validation weights on "
    "these class-folder datasets, NAME:DIR,... (results.json: cross_domain)", group="the run",
    reads=lambda c: settings.few_shot(c) and c.dataset != "sinusoid",
    scope="few-shot image classification runs", resumable=True))


def parse(entries):
    """[(name, directory)] from NAME:DIR entries; a clear error for anything else."""
    parsed = []
    for entry in entries or ():
        name, sep, directory = entry.partition(":")
        if not sep or not name or not directory:
            raise ConfigError(f"--cross_domain entry {entry!r} is not NAME:DIR (for example "
                              "cub:/data/CUB_200_2011/images)")
        if name in dict(parsed):
            raise ConfigError(f"--cross_domain names {name!r} twice")
        parsed.append((name, directory))
    return parsed


def cross_domain_tasks(name, directory, tasks, config):
    """An ImageTasks with one `test` split: every class folder of `directory`."""
    from wtl_tf.data import folder
    from wtl_tf.data.class_images import episode_source
    from wtl_tf.data.registry import ImageTasks
    from wtl_tf.export import NORMALIZATIONS

    if not os.path.isdir(directory):
        raise DataError(f"--cross_domain {name}: {directory!r} is not a directory of class "
                        "folders")
    classes = sorted(d for d in os.listdir(directory)
                     if os.path.isdir(os.path.join(directory, d)))
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
    from wtl_tf.meta_test import meta_test

    results = {}
    for name, directory in parse(config.cross_domain):
        target = cross_domain_tasks(name, directory, tasks, config)
        _, stats = meta_test(learner, target.episodes("test", config.eval_batch_size),
                             config.test_tasks)
        results[name] = {"directory": directory, "classes": target.samplers["test"].source
                         .num_classes, "test_tasks": config.test_tasks,
                         **{metric: {"mean": m, "ci95": ci} for metric, (m, ci) in stats.items()}}
    return results
