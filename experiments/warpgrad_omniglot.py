"""Warp-Leap against Leap and against fine-tuning a pre-trained network, equal budgets.

On the shared Omniglot alphabets (wtl_tf/data/splits/warpgrad_omniglot_small.json: 20 training
tasks = 5 alphabets x 4 rotations; held-out test alphabets Korean and Sanskrit), 20-way tasks
with 15 training and 5 held-out images per character, the WarpGrad Conv4:

    python experiments/warpgrad_omniglot.py --budget_minutes=15 --output=runs/warpgrad.json

  warp_leap  Warp-Leap (warp layers by trajectory replay, Leap initialisation)
  leap       the same learner and network without warp layers
  finetune   the network without warp layers pre-trained as one classifier over every
             training character (x rotation), then fine-tuned like the others
Each method trains for the same wall time. Every method is then evaluated the same way on
--test_tasks held-out tasks: a fresh zero head for fine-tuning, then --inner_steps_eval
steps of SGD (alpha, batches of --task_batch) on the task's training images, accuracy on its
held-out images (mean ± 95% CI over tasks). Prints a Markdown table.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks.hardware import hardware_line  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("methods", ["warp_leap", "leap", "finetune"], "methods compared")
flags.DEFINE_float("budget_minutes", 15.0, "meta-training (or pre-training) wall time per method")
flags.DEFINE_enum("budget_clock", "wall", ["wall", "cpu"], "what --budget_minutes counts: wall "
                  "time, or this process's CPU time (equal compute when other jobs share the "
                  "machine; run single-threaded, e.g. under taskset -c 0)")
flags.DEFINE_integer("meta_batch_size", 5, "tasks per meta-iteration (reference 20)")
flags.DEFINE_integer("inner_steps", 20, "inner steps in meta-training (reference 100)")
flags.DEFINE_integer("inner_steps_eval", 20, "inner steps at evaluation")
flags.DEFINE_integer("task_batch", 32, "examples per inner step (reference 128)")
flags.DEFINE_float("inner_lr", 0.1, "alpha (reference 0.1)")
flags.DEFINE_float("outer_lr", 0.1, "Leap's SGD rate for the initialisation (reference 0.1)")
flags.DEFINE_float("warp_lr", 0.1, "SGD rate of the warp layers in the replay (reference 0.1)")
flags.DEFINE_integer("replay_batch", 1, "stored states per warp update (1: reference)")
flags.DEFINE_enum("augment", "affine", ["affine", "none"], "the official random affine "
                  "augmentation (training images redrawn at every draw, held-out images once), "
                  "or none (README's first runs)")
flags.DEFINE_enum("warp_init", "random", ["random", "identity"], "warp kernels: PyTorch's conv "
                  "default as the official code, or the identity (README's runs)")
flags.DEFINE_enum("leap_segments", "stored", ["stored", "all"], "Leap's update over the K-1 "
                  "segments between stored states (official) or all K steps (README's runs)")
flags.DEFINE_integer("channels", 64, "Conv4 channels (reference 64)")
flags.DEFINE_integer("test_tasks", 40, "held-out 20-way tasks (random character subsets)")
flags.DEFINE_float("pretrain_lr", 1e-3, "Adam rate of the fine-tuning baseline's pre-training")
flags.DEFINE_integer("seed", 0, "seed")
flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "..", "shared", "data", "omniglot"), "Omniglot archives")
flags.DEFINE_string("output", "runs/warpgrad_omniglot.json", "results file")


def make_learner(tasks, warp, **options):
    from wtl_tf import models
    from wtl_tf.runtime import cpu_count
    from wtl_tf.warpgrad import WarpLeap

    net = models.warped_conv4(tasks.input_shape, 20, channels=FLAGS.channels, warp=warp,
                              warp_options={"kernel_initializer": FLAGS.warp_init})
    return WarpLeap(net, FLAGS.inner_lr, inner_steps=FLAGS.inner_steps,
                    inner_steps_eval=FLAGS.inner_steps_eval, task_batch=FLAGS.task_batch,
                    warp_lr=FLAGS.warp_lr, replay_batch=FLAGS.replay_batch,
                    leap_segments=FLAGS.leap_segments, parallel_tasks=max(2, cpu_count()),
                    seed=FLAGS.seed, support_transform=tasks.support_transform, **options)


def budget():
    """Stops training after --budget_minutes on the --budget_clock."""
    from wtl_tf.callbacks import StopTraining
    from wtl_tf.checkpoints import TrainClock

    if not FLAGS.budget_minutes > 0:  # StopTraining reads 0 as "no time limit"
        raise app.UsageError(f"--budget_minutes must be > 0, got {FLAGS.budget_minutes}")
    timer = time.process_time if FLAGS.budget_clock == "cpu" else time.perf_counter
    return StopTraining(10**9, FLAGS.budget_minutes * 60, clock=TrainClock(timer=timer))


def meta_train(tasks, warp):
    import keras

    from wtl_tf.callbacks import NonFiniteLossGuard

    learner = make_learner(tasks, warp)
    learner.compile(optimizer=keras.optimizers.SGD(FLAGS.outer_lr))
    learner.fit(tasks.episodes("train", FLAGS.meta_batch_size), steps_per_epoch=10,
                epochs=10**6, verbose=0, callbacks=[NonFiniteLossGuard(), budget()])
    return learner, {"meta_iterations": int(learner.optimizer.iterations.numpy())}


def training_characters(tasks):
    """(images, labels) of every training character x rotation: 15 images each."""
    import numpy as np

    sampler = tasks.samplers["train"]
    images = sampler.images.numpy()
    members, sizes = sampler.members.numpy(), sampler.sizes.numpy()
    rotations = sampler.rotations.numpy()
    xs, ys = [], []
    for task in range(sampler.num_tasks):
        for character in members[task][:sizes[task]]:
            start = int(sampler.offsets.numpy()[character])
            pictures = images[start:start + sampler.train_images]
            xs.append(np.rot90(pictures, int(rotations[task]), axes=(1, 2)))
            ys.append(np.full(len(pictures), len(ys)))
    return np.concatenate(xs), np.concatenate(ys)


def pretrain_then_finetune_learner(tasks):
    """Pre-trains the unwarped network as one classifier (Adam, batches of --task_batch) for
    the budget; returns a learner whose initialisation is that body with a zero 20-way head."""
    import keras
    import numpy as np
    import tensorflow as tf

    from wtl_tf import models

    x, y = training_characters(tasks)
    classes = int(y.max()) + 1
    body = models.warped_conv4(tasks.input_shape, classes, channels=FLAGS.channels, warp=False)
    body.compile(optimizer=keras.optimizers.Adam(FLAGS.pretrain_lr),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    data = (tf.data.Dataset.from_tensor_slices((x.astype("float32") / 255.0, y))
            .shuffle(len(y), seed=FLAGS.seed).repeat().batch(FLAGS.task_batch))
    if tasks.support_transform is not None:  # the same per-draw augmentation as the learners
        data = data.enumerate().map(lambda i, b: (tasks.support_transform(
            b[0], tf.stack([tf.constant(FLAGS.seed, tf.int64), i])), b[1]))
    history = body.fit(data, steps_per_epoch=50, epochs=10**6, verbose=0,
                       callbacks=[budget()])
    learner = make_learner(tasks, warp=False)
    by_path = {v.path: v for v in body.weights}
    for v in learner.task_model.weights:
        if v.path.startswith("head/"):
            v.assign(np.zeros(v.shape, v.dtype))  # a fresh head for each new task
        else:
            v.assign(by_path[v.path])
    return learner, {"pretrain_steps": int(body.optimizer.iterations.numpy()),
                     "classes": classes,
                     "pretrain_accuracy": float(history.history["accuracy"][-1])}


def main(argv):
    del argv
    from wtl_tf.runtime import configure_cpu_threads

    configure_cpu_threads("auto", FLAGS.meta_batch_size)
    import keras

    from wtl_tf.data.alphabet_tasks import AlphabetTasks
    from wtl_tf.meta_test import meta_test

    tasks = AlphabetTasks(ways=20, shots=15, queries=5, seed=FLAGS.seed, data_dir=FLAGS.data_dir,
                          augment=FLAGS.augment)
    runs = []
    if os.path.exists(FLAGS.output):
        with open(FLAGS.output) as f:
            runs = json.load(f)["runs"]
    for method in FLAGS.methods:
        if any(r["method"] == method for r in runs):
            continue
        keras.utils.set_random_seed(FLAGS.seed)
        started, started_cpu = time.perf_counter(), time.process_time()
        if method == "finetune":
            learner, info = pretrain_then_finetune_learner(tasks)
        else:
            learner, info = meta_train(tasks, warp=method == "warp_leap")
        train_s, train_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
        per_task, stats = meta_test(learner, tasks.episodes("test", 2), FLAGS.test_tasks)
        run = {"method": method, "hardware": hardware_line(), "train_seconds": round(train_s, 1),
               "train_cpu_seconds": round(train_cpu_s, 1), **info,
               "accuracy": stats["accuracy"][0], "ci95": stats["accuracy"][1],
               "pre_accuracy": stats["pre_accuracy"][0],
               "per_task_accuracy": per_task["accuracy"].tolist()}
        runs.append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "per_task_accuracy"}), flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output + ".partial", "w") as f:
            json.dump({"flags": FLAGS.flag_values_dict(), "runs": runs}, f, indent=1)
        os.replace(FLAGS.output + ".partial", FLAGS.output)
    print("| method | training | accuracy after adaptation (95% CI) |\n|---|---|---|")
    for r in runs:
        budget = (f"{r['meta_iterations']} meta-iterations" if "meta_iterations" in r
                  else f"{r['pretrain_steps']} pre-training steps")
        print(f"| {r['method']} | {budget}, {r['train_seconds'] / 60:.1f} min | "
              f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}% |")


if __name__ == "__main__":
    app.run(main)
