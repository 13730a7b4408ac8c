"""Meta-test an exported SavedModel: mean ± 95% CI over held-out episodes.

    wtl-evaluate --saved_model=DIR --dataset=omniglot --data_dir=DIR \
        [--split=omniglot_small_alphabets] [--episodes=600] [--eval_split=test]

Only the SavedModel's signatures are used (raw uint8 images in, predictions out); the
episode shape (ways, shots, queries) and the split default to the exported run's. A
La-MAML-family export is scored on its own stream's tasks instead (rebuilt from its settings,
--data_dir where the data moved): the accuracy of each task's test set, as the run's RA.
(`python -m wtl_tf.cli.evaluate` is the same program.)
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf
from absl import app, flags

from wtl_tf.cli.train import parse_flags, quiet_tensorflow_info
from wtl_tf.continual import score_export
from wtl_tf.data.registry import task_distribution
from wtl_tf.errors import WtlError
from wtl_tf.meta_test import mean_ci95

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """This program's flags (called when it starts, never at import)."""
    if "saved_model" in flag_values:
        return
    define = dict(flag_values=flag_values, module_name=sys.argv[0])  # listed by --help
    flags.DEFINE_string("saved_model", None, "directory written by train.py --export_dir",
                        **define)
    flags.DEFINE_string("dataset", None, "dataset to draw episodes from (default: the exported "
                        "run's)", **define)
    flags.DEFINE_string("data_dir", None, "the dataset's files", **define)
    flags.DEFINE_string("split", None, "class split (default: the exported run's)", **define)
    flags.DEFINE_integer("episodes", 600, "number of held-out episodes", **define)
    flags.DEFINE_enum("eval_split", "test", ["train", "validation", "test"], "which split",
                      **define)
    flags.DEFINE_integer("ways", None, "default: the exported run's", **define)
    flags.DEFINE_integer("shots", None, "default: the exported run's", **define)
    flags.DEFINE_integer("queries", None, "default: the exported run's", **define)
    flags.DEFINE_integer("inner_steps", None, "override the exported evaluation inner steps",
                         **define)
    flags.DEFINE_integer("seed", 0, "episode stream seed", **define)
    flags.DEFINE_enum("episode_classes", None, ["any", "within_alphabet"], "Omniglot: classes "
                      "from any alphabet or all from one (default: the exported run's)",
                      **define)

def evaluate_saved_model(saved_model, tasks, split, episodes, inner_steps=None):
    """Per-episode accuracy (classification) or MSE (regression) of the exported model."""
    loaded = tf.saved_model.load(saved_model)
    extra = {} if inner_steps is None else {"inner_steps": tf.constant(inner_steps, tf.int32)}
    scores = []
    for batch in tasks.episodes(split, 1, raw=True, num_batches=episodes):
        episode = {k: v[0] for k, v in batch.items()}
        if tasks.preprocessing:
            out = loaded.adapt_and_predict(support_images=episode["support_x"],
                                           support_labels=episode["support_y"],
                                           query_images=episode["query_x"], **extra)
            scores.append(float(np.mean(out["predictions"].numpy() == episode["query_y"].numpy())))
        else:
            out = loaded.adapt_and_predict(support_x=episode["support_x"],
                                           support_y=episode["support_y"],
                                           query_x=episode["query_x"], **extra)
            scores.append(float(np.mean((out["predictions"].numpy()
                                         - episode["query_y"].numpy()) ** 2)))
    return np.array(scores)


EPISODE_FLAGS = ("dataset", "split", "episodes", "eval_split", "ways", "shots", "queries",
                 "inner_steps", "seed", "episode_classes")


def check_stream_flags(given):
    """A continual export is scored on its own stream: the episode flags in `given` are
    refused."""
    unread = [name for name in EPISODE_FLAGS if name in given]
    if unread:
        raise WtlError(f"--{unread[0]} is not read for a continual export (it is scored on its "
                       "own stream's tasks, rebuilt from its settings): drop it")


def score_stream(exported):
    """A La-MAML-family export: its accuracy on each task of its stream (the run's RA)."""
    check_stream_flags({name for name in EPISODE_FLAGS if FLAGS[name].present})
    config = score_export.stream_config(exported, FLAGS.data_dir)
    scores = score_export.task_accuracies(FLAGS.saved_model, config)
    mean, ci = mean_ci95(scores)
    print("task accuracies: " + " ".join(f"{s:.4f}" for s in scores))
    print(f"accuracy over the {len(scores)} tasks of {config.stream} (test sets): "
          f"{mean:.4f} ± {ci:.4f} (95% CI over tasks)")


def main(argv):
    del argv
    quiet_tensorflow_info()
    try:
        if not FLAGS.saved_model or not os.path.exists(os.path.join(FLAGS.saved_model,
                                                                    "saved_model.pb")):
            raise WtlError(f"--saved_model={FLAGS.saved_model!r} is not a SavedModel directory "
                           "(written by train.py --export_dir)")
        with open(os.path.join(FLAGS.saved_model, "wtl_config.json")) as f:
            exported = json.load(f)
        if exported.get("stream"):
            score_stream(exported)
            return
        if FLAGS.ways and exported.get("ways") and FLAGS.ways != exported["ways"]:
            raise WtlError(f"--ways={FLAGS.ways} contradicts the export: its head answers "
                           f"{exported['ways']} classes; drop --ways or export a "
                           f"{FLAGS.ways}-way run")
        dataset = FLAGS.dataset or exported["dataset"]
        tasks = task_distribution(
            dataset, ways=FLAGS.ways or exported["ways"], shots=FLAGS.shots or exported["shots"],
            queries=FLAGS.queries or exported["queries"], seed=FLAGS.seed,
            data_dir=FLAGS.data_dir or exported.get("data_dir"),
            split=FLAGS.split or exported.get("split"), image_size=exported.get("image_size"),
            source=exported.get("data_source", "auto"),
            channels=exported.get("image_channels", 3),
            episode_classes=FLAGS.episode_classes or exported.get("episode_classes", "any"))
        scores = evaluate_saved_model(FLAGS.saved_model, tasks, FLAGS.eval_split, FLAGS.episodes,
                                      FLAGS.inner_steps)
    except WtlError as e:
        print(f"wtl-evaluate: error: {e}", file=sys.stderr)
        sys.exit(1)
    mean, ci = mean_ci95(scores)
    metric = "accuracy" if tasks.preprocessing else "mse"
    print(f"{metric} over {len(scores)} {FLAGS.eval_split} episodes: {mean:.4f} ± {ci:.4f} "
          "(95% CI)")


def run():
    """Console entry point (wtl-evaluate)."""
    define_flags()
    app.run(main, flags_parser=lambda argv: parse_flags(argv, program="wtl-evaluate"))


if __name__ == "__main__":
    run()
