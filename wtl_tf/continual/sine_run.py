"""`train.py --algorithm=warpgrad_sine`: WarpGrad's sequential sine against plain SGD.

Meta-trains the warp layers of wtl_tf.continual.warp_sine for --meta_iterations (each on
--meta_batch_size fresh sine tasks, learned interval by interval), checkpointing the warps,
their Adam slots and the iteration (resumable, like every run), then scores both learners on
--test_tasks held-out tasks: the warped one and the same network with identity warps (plain
SGD, the baseline), each after the whole interval sequence. results.json: the MSE on every
interval (mean and 95% interval over test tasks, paired: the same tasks and SGD batches),
and their means. TensorBoard: the meta-objective per iteration and the final per-interval
MSEs of both.
"""

import numpy as np
import tensorflow as tf

from wtl_tf import settings
from wtl_tf.continual.callbacks import ScalarSummary
from wtl_tf.continual.checkpoints import StreamRunState
from wtl_tf.continual.machinery import checkpoint_cadence, fit_stream
from wtl_tf.continual.warp_sine import SequentialSine, WarpedSine
from wtl_tf.errors import ConfigError
from wtl_tf.meta_test import mean_ci95

_GROUP = "continual"
settings.declare(
    settings.Setting("sine_subtasks", "integer", 5, "consecutive intervals of [-5, 5] learned "
                     "in sequence", group=_GROUP, reads=settings.sine_learner,
                     scope="warpgrad_sine", low=1),
    settings.Setting("sine_points", "integer", 50, "points per interval", group=_GROUP,
                     reads=settings.sine_learner, scope="warpgrad_sine", low=1),
    settings.Setting("sine_hidden", "integer", 40, "width of the MLP's two hidden layers (and "
                     "of its warp layers)", group=_GROUP, reads=settings.sine_learner,
                     scope="warpgrad_sine", low=1),
)
DEFAULTS = dict(inner_lr=0.01, inner_steps=20, meta_lr=1e-3, meta_batch_size=4,
                meta_iterations=200, test_tasks=50)


def fill_in(c):
    for key, value in DEFAULTS.items():
        if getattr(c, key) is None:
            setattr(c, key, value)
    c.update_rules = ()
    if c.export_dir:
        raise ConfigError("--algorithm=warpgrad_sine writes no SavedModel (its result is the "
                          "per-interval comparison in results.json): drop --export_dir")
    settings.check_values(c)  # each value alone; below, how they go together
    if c.inner_steps < 1:
        raise ConfigError(f"--inner_steps must be >= 1 for warpgrad_sine (the warped SGD steps "
                          f"per interval), got {c.inner_steps}")
    if c.stream_batch > c.sine_points:
        raise ConfigError(f"--stream_batch ({c.stream_batch}) exceeds --sine_points "
                          f"({c.sine_points}): an SGD step draws its points without replacement")


def build_learner(config, learn_warp=True):
    return WarpedSine(hidden=config.sine_hidden, inner_lr=config.inner_lr,
                      steps=config.inner_steps, batch=config.stream_batch,
                      meta_lr=config.meta_lr, learn_warp=learn_warp, seed=config.seed)


def run_sine(config, checkpoints_dir, summaries):
    tasks = SequentialSine(config.sine_subtasks, config.sine_points, seed=config.seed)
    learner = build_learner(config)
    run_state = StreamRunState(checkpoints_dir, learner, run_settings=config.to_dict())
    periodic = checkpoint_cadence(run_state, run_state.restore(), config)
    fit_stream(learner, learner.stream_dataset(tasks, config.meta_batch_size,
                                               config.meta_iterations, learner.position),
               config.meta_iterations, periodic, config,
               [ScalarSummary(summaries.writer, "loss", "sine/meta_objective")])
    step = learner.position
    test = [tasks.task(i, "test") for i in range(config.test_tasks)]
    per_interval, means, per_task = {}, {}, {}
    for name, scored in (("warpgrad", learner), ("sgd", build_learner(config, learn_warp=False))):
        mse = np.array([scored.interval_mse(x, y, seed=i) for i, (x, y) in enumerate(test)])
        per_task[name] = mse.mean(1)
        mean, half = mean_ci95(mse, axis=0)
        per_interval[name], means[name] = mean.tolist(), float(mse.mean())
        per_interval[name + "_ci95"] = np.broadcast_to(half, mean.shape).tolist()
        if summaries.writer:
            with summaries.writer.as_default():
                for k, value in enumerate(mean):
                    tf.summary.scalar(f"sine/interval_{k}_mse/{name}", float(value), step)
    difference = mean_ci95(per_task["warpgrad"] - per_task["sgd"])  # paired by test task
    results = {"interval_mse": per_interval, "mean_mse": means, "test_tasks": config.test_tasks,
               "warpgrad_minus_sgd": {"mean": float(difference[0]),
                                      "ci95": float(difference[1])},
               "meta_iterations": step, "seconds": round(periodic.clock.seconds, 1)}
    return results, learner
