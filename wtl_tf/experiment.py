"""One meta-training run from an ExperimentConfig: data, learner, fit, meta-test, results."""

import dataclasses
import math
import os
import tempfile

import keras
from absl import logging

from wtl_tf import algorithms, callbacks, models, preflight, rules, settings
from wtl_tf.checkpoints import (PeriodicCheckpoint, RunCheckpoints, TrainClock, has_checkpoints,
                                stored_settings)
from wtl_tf.continual import run as continual_run
from wtl_tf.cross_domain import check_sources, cross_domain_results
from wtl_tf.data.registry import task_distribution
from wtl_tf.distribute import distributed_episodes, is_chief, make_strategy
from wtl_tf.errors import ConfigError
from wtl_tf.export import export_learner
from wtl_tf.inner_options import InnerLoopOptions
from wtl_tf.learner import MetaLearner
from wtl_tf.meta_test import meta_test
from wtl_tf.optimizers import make_optimizer
from wtl_tf.run_directory import ExportLock, RunLock, check_export_dir, check_resume_of
from wtl_tf.run_transaction import transaction
from wtl_tf.runtime import cpu_count
from wtl_tf.sparsity import sparsity_report
from wtl_tf.tensorboard import MetaSummaries
from wtl_tf.warpgrad import OnlineWarpUpdate, WarpLeap


_RUN, _OUTPUT = "the run", "output"
settings.declare(
    settings.Setting("meta_batch_size", "integer", None, "tasks per meta-update "
                     f"({settings.UNSET_HELP})", group="outer loop",
                     reads=settings.either(settings.few_shot, settings.osaka_learner,
                                           settings.sine_learner),
                     scope="few-shot runs; continual_maml (pretraining); warpgrad_sine", low=1),
    settings.Setting("meta_iterations", "integer", None, "meta-updates "
                     f"({settings.UNSET_HELP})", group=_RUN, resumable=True,
                     reads=settings.either(settings.few_shot, settings.sine_learner),
                     scope="few-shot runs; warpgrad_sine", low=1),
    settings.Setting("max_train_minutes", "float", None, "stop meta-training after this much "
                     "training time, counted over every resume (the meta-test still runs)",
                     group=_RUN, resumable=True,
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=0, low_open=True),
    settings.Setting("eval_every", "integer", None, "meta-iterations between validations "
                     f"({settings.UNSET_HELP})", group=_RUN,
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=1),
    settings.Setting("validation_tasks", "integer", None, "fixed validation episodes "
                     f"({settings.UNSET_HELP})", group=_RUN,
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=1),
    settings.Setting("test_tasks", "integer", None, "held-out episodes in the final meta-test "
                     f"({settings.UNSET_HELP}: 600 except for omniglot_alphabets)", group=_RUN,
                     resumable=True,
                     reads=settings.either(settings.few_shot, settings.sine_learner),
                     scope="few-shot runs; warpgrad_sine", low=1),
    settings.Setting("eval_batch_size", "integer", None, "episodes per evaluation batch "
                     "(default: meta-batch)", group=_RUN,
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=1),
    settings.Setting("output_dir", "string", "runs/default", "results, learning curve, resolved "
                     "flags, checkpoints (rerunning the same command resumes from them), "
                     "TensorBoard. One run at a time; a resume must keep every training "
                     "setting (may change: " + ", ".join(f"--{n}" for n in (
                         "meta_iterations", "max_train_minutes", "test_tasks", "export_dir"))
                     + " and the output/runtime flags)", group=_OUTPUT),
    settings.Setting("export_dir", "string", None, "write a SavedModel of the best meta-learned "
                     "model here (a new or empty directory, or an earlier export, which is "
                     "replaced)", group=_OUTPUT, resumable=True),
    settings.Setting("seed", "integer", 0, "seeds initialisation and every episode stream",
                     group=_RUN, low=0, high=2**31 - 1),
    settings.Setting("tensorboard", "bool", True, "write TensorBoard summaries to "
                     "<output_dir>/tensorboard", group=_OUTPUT, resumable=True),
    settings.Setting("checkpoint_every_minutes", "float", 3.0, "training minutes between "
                     "checkpoints (also at every validation, at the end, and on Ctrl-C/SIGTERM)",
                     group=_OUTPUT, resumable=True, low=0, low_open=True),
    settings.Setting("progress_every_seconds", "float", 60.0, "seconds between progress log "
                     "lines (the first comes after the first meta-step or stream step)",
                     group=_OUTPUT,
                     resumable=True, low=0, low_open=True),
    settings.Setting("jit_compile", "bool", False, "XLA-compile the meta-step (for GPUs; slow "
                     "on CPU)", group="runtime",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
    settings.Setting("steps_per_execution", "integer", 1, "meta-steps per compiled call",
                     group="runtime",
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=1),
    settings.Setting("verbose", "integer", 2, "Keras verbosity: 0 silent, 1 progress bar, 2 one "
                     "line/epoch (continual runs: 0 silences the progress lines)", group=_OUTPUT,
                     resumable=True, low=0, high=2),
)


def build_learner(config, tasks):
    task_model = models.build_task_model(config, tasks)
    support_transform = tasks.support_transform  # per-draw augmentation (WarpGrad's affine)
    algorithm = algorithms.get_algorithm(config.algorithm)
    outer = make_optimizer(config.outer_optimizer, config.outer_lr, config.outer_clip)
    if algorithm.learner == "trajectory":
        learner = WarpLeap(
            task_model, config.inner_lr, inner_steps=config.inner_steps,
            inner_steps_eval=config.inner_steps_eval, task_batch=config.task_batch,
            warp_lr=config.meta_lr, replay=config.replay, replay_batch=config.replay_batch,
            leap_segments=config.leap_segments, transductive=config.transductive,
            loss=tasks.loss, adapt=config.adapt, adapt_batchnorm=config.adapt_batchnorm,
            parallel_tasks=max(2, cpu_count()), loss_scale=config.loss_scale, seed=config.seed,
            support_transform=support_transform)
        learner.compile(optimizer=outer, jit_compile=config.jit_compile,
                        steps_per_execution=config.steps_per_execution)
        return learner
    rule = algorithms.build_update_rule(
        config.update_rules, config,
        rules.LinkContext(feature_size=task_model.layers[-1].input.shape[-1]))
    options = InnerLoopOptions(
        loss=tasks.loss, adapt=config.adapt, adapt_batchnorm=config.adapt_batchnorm,
        inner_steps=config.inner_steps, inner_steps_eval=config.inner_steps_eval,
        first_order=config.order == "first", transductive=config.transductive,
        task_batch=config.task_batch, recompute_inner_steps=config.recompute_inner_steps,
        unroll_inner_steps=config.unroll_inner_steps, loss_scale=config.loss_scale,
        seed=config.seed, support_transform=support_transform)
    learner = MetaLearner(
        task_model, rule, options, outer_reduction=config.outer_reduction,
        parallel_tasks=max(2, cpu_count()), vectorize_tasks=config.vectorize_tasks,
        outer=(OnlineWarpUpdate(config.inner_lr) if config.warp_layers
               and config.warp_objective == "online" else None))
    learner.compile(
        optimizer=outer,
        meta_optimizer=make_optimizer(config.meta_optimizer, config.meta_lr, config.meta_clip),
        jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
    return learner


def extra_callbacks(config, learner, tasks):
    """Callbacks that observe a run without steering it (TensorBoard)."""
    if not config.tensorboard:
        return []
    log_dir = os.path.join(config.output_dir, "tensorboard")
    probe = next(iter(tasks.episodes("validation", min(config.eval_batch_size, 8),
                                     num_batches=1)))
    return [MetaSummaries(log_dir, config.to_dict(), probe, config.inner_steps_eval)]


def _summary(stats):
    return {name: {"mean": mean, "ci95": ci} for name, (mean, ci) in stats.items()}


def run(config, flags_text=None):
    """Meta-trains, meta-tests on held-out tasks and writes results.json; returns the results.

    The output directory is a transaction (wtl_tf.run_transaction): locked for the run,
    resumed only with the same training settings, checkpointed every few minutes and on
    SIGINT/SIGTERM, and never written by the export."""
    config = config.resolved()
    preflight.check(config)  # before anything is written
    if settings.continual(config):
        return continual_run.run(config, flags_text)
    strategy = make_strategy(config.distribution, config.cpu_replicas)
    if not is_chief():  # workers train but write nothing that the chief writes
        config = dataclasses.replace(config, output_dir=tempfile.mkdtemp(
            prefix="wtl-worker-"), export_dir=None, tensorboard=False)
    return transaction(config, flags_text, FewShotRecipe(config, strategy))


def run_tasks(config):
    """The task distribution a run's settings describe."""
    return task_distribution(config.dataset, ways=config.ways, shots=config.shots,
                             queries=config.queries, seed=config.seed, data_dir=config.data_dir,
                             split=config.split, image_size=config.image_size,
                             source=config.data_source, channels=config.image_channels,
                             episode_classes=config.episode_classes, augment=config.augment)


def export_run(config):
    """Exports the run in --output_dir to --export_dir as a SavedModel, without training or
    testing (a few-shot run: its best validation weights, else its newest checkpoint; a
    continual run: its newest checkpoint); returns the export path. The flags must be the
    run's own (the same check as a resume)."""
    config = config.resolved()
    if not config.export_dir:
        raise ConfigError("--export_dir is needed: the directory to write the SavedModel to")
    checkpoint_dir = os.path.join(config.output_dir, "checkpoints")
    with RunLock(config.output_dir):
        if not has_checkpoints(checkpoint_dir):
            raise ConfigError(f"--output_dir={config.output_dir!r} holds no run to export (no "
                              "checkpoints): train it first with these flags")
        check_resume_of(config.output_dir, config.to_dict(), stored_settings(checkpoint_dir))
        check_export_dir(config.export_dir, config.output_dir)
        with ExportLock(config.export_dir):
            keras.utils.set_random_seed(config.seed)
            recipe = (continual_run.StreamRecipe(config) if settings.continual(config) else
                      FewShotRecipe(config, strategy=None))
            return recipe.export_checkpointed(checkpoint_dir)


class FewShotRecipe:
    """A few-shot run for the transaction: meta-train to --meta_iterations (or the time
    budget), meta-test the best validation point, export it."""

    export_retry = ("rerun the same command with a working --export_dir (the finished run "
                    "trains no further), or export without the meta-test: wtl-export "
                    "(python -m wtl_tf.cli.export) with the same flags")

    def __init__(self, config, strategy):
        self.config, self.strategy, self.tasks = config, strategy, None

    def export(self, learner):
        return export_learner(learner, self.config.export_dir, self.tasks.preprocessing,
                              self.config.to_dict())

    def export_checkpointed(self, checkpoint_dir):
        """The export of the checkpointed run: its best validation weights, else its newest
        checkpoint."""
        self.tasks = run_tasks(self.config)
        learner = build_learner(self.config, self.tasks)
        RunCheckpoints(checkpoint_dir, learner).restore()
        best = os.path.join(self.config.output_dir, "best.weights.h5")
        if os.path.exists(best):
            learner.load_weights(best)
        return self.export(learner)

    def train(self, checkpoint_dir):
        config, strategy = self.config, self.strategy
        check_sources(config.cross_domain)
        tasks = run_tasks(config)
        with strategy.scope():
            learner = build_learner(config, tasks)
        validation_batches = math.ceil(config.validation_tasks / config.eval_batch_size)
        validation = distributed_episodes(strategy, tasks, "validation", config.eval_batch_size,
                                          num_batches=validation_batches)
        monitor = ("val_accuracy", "max") if learner.is_classifier else ("val_loss", "min")
        best = callbacks.BestCheckpoint(os.path.join(config.output_dir, "best.weights.h5"),
                                        *monitor)
        curve = callbacks.LearningCurve(os.path.join(config.output_dir, "learning_curve.csv"))
        run_checkpoints = RunCheckpoints(checkpoint_dir, learner, run_settings=config.to_dict())
        resumed_at = run_checkpoints.restore()
        clock = TrainClock(float(run_checkpoints.train_seconds.numpy()))
        stop = callbacks.StopTraining(config.meta_iterations, (config.max_train_minutes or 0) * 60,
                                      clock)
        curve.resume_from(resumed_at)
        periodic = PeriodicCheckpoint(run_checkpoints, clock, config.checkpoint_every_minutes * 60)
        if resumed_at >= config.meta_iterations:
            stop.reason = "iterations"
        elif stop.budget_spent():
            stop.reason = "time budget"
            logging.info("the time budget (--max_train_minutes=%g) was spent by earlier runs of "
                         "this directory: no further training", config.max_train_minutes)
        else:
            logging.info("meta-training %s on %s: meta-iterations %d to %d, %d tasks each",
                         config.algorithm, config.dataset, resumed_at, config.meta_iterations,
                         config.meta_batch_size)
            clock.start()
            fit_callbacks = [callbacks.NonFiniteLossGuard(), stop,
                             callbacks.GracefulInterrupt(periodic.save), curve, best,
                             *extra_callbacks(config, learner, tasks), periodic]
            if config.verbose:
                budget = (config.max_train_minutes or 0) * 60
                fit_callbacks.append(callbacks.ProgressLog(
                    config.meta_iterations, config.progress_every_seconds,
                    time_left=(lambda: max(budget - clock.seconds, 0.0)) if budget else None))
            learner.fit(
                distributed_episodes(strategy, tasks, "train", config.meta_batch_size,
                                     start_batch=resumed_at),
                steps_per_epoch=config.eval_every, initial_epoch=resumed_at // config.eval_every,
                epochs=math.ceil(config.meta_iterations / config.eval_every),
                validation_data=validation, validation_steps=validation_batches, shuffle=False,
                verbose=config.verbose, callbacks=fit_callbacks)
        final_iteration = run_checkpoints.iteration
        if best.best_iteration is not None:  # meta-test the best validation point
            learner.load_weights(best.path)

        test = tasks.episodes("test", config.eval_batch_size)
        per_task, stats = meta_test(learner, test, config.test_tasks)
        results = {
            "config": config.to_dict(),
            "meta_iterations": final_iteration,
            "stopped_by": stop.reason or "iterations",
            "best_validation": {"iteration": best.best_iteration, monitor[0]: best.best},
            "resumed_at": resumed_at,
            "train_seconds": round(clock.seconds, 1),
            "learning_curve": "learning_curve.csv",
            "test_tasks": config.test_tasks,
            "test": _summary(stats),
            # every episode's score, so that intervals over tasks or paired differences between
            # runs can be recomputed from results.json alone
            "test_per_task": {name: [round(float(v), 6) for v in values]
                              for name, values in per_task.items()},
            "sparsity": sparsity_report(learner.update_rule),
        }
        if config.cross_domain:
            results["cross_domain"] = cross_domain_results(learner, tasks, config)
        self.tasks = tasks
        return results, learner


def format_test_summary(results):
    """Human-readable lines: '<metric> before/after adaptation: mean ± ci'."""
    if "continual" in results:
        return continual_run.format_summary(results)
    test = results["test"]
    lines = [f"meta-test on {results['test_tasks']} held-out tasks (mean ± 95% CI):"]
    for metric in ("loss", "accuracy"):
        if metric in test:
            pre, post = test["pre_" + metric], test[metric]
            lines.append(f"  {metric:8s} before adaptation: {pre['mean']:.4f} ± {pre['ci95']:.4f}"
                         f"   after: {post['mean']:.4f} ± {post['ci95']:.4f}")
    if results.get("sparsity"):
        lines.append(f"  mask sparsity (overall): {results['sparsity']['overall']:.3f}")
    return "\n".join(lines)
