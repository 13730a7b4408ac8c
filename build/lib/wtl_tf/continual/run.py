"""One continual-learning run: `train.py --algorithm=la_maml | sync_la_maml | c_maml |
sparse_la_maml | continual_maml | sparse_continual_maml`.

The stream is a pure function of --seed (wtl_tf.continual.streams / osaka), observed one
batch at a time. The run checkpoints the learner's variables together with its numpy state
(replay buffer and its random state, accumulated batches, the stream position, the metrics
so far; wtl_tf.continual.checkpoints) every --checkpoint_every_minutes, at every task end
and on SIGINT/SIGTERM, so rerunning the same command resumes where it stopped and ends with
the same metrics as an uninterrupted run. results.json holds, for the La-MAML family, the
accuracy matrix R with RA, LA and BTI (both normalisations); for Continual-MAML, the online
cumulative accuracy overall and per mode and the boundary detector's precision and recall;
for both, the mask sparsity per layer and the seconds per 1,000 stream steps.

Settings and their checks: wtl_tf.continual.protocol; the stream and the learner:
wtl_tf.continual.building; signals, clock and progress: wtl_tf.continual.machinery.
"""

import os
import signal

import keras
import numpy as np
from absl import logging

from wtl_tf import settings
from wtl_tf.callbacks import Interrupted
from wtl_tf.continual import metrics, osaka
from wtl_tf.continual.building import (build_la_maml, build_osaka, build_stream, load_omniglot,
                                       osaka_network, pretrain_osaka)
from wtl_tf.continual.checkpoints import StreamCheckpoints
from wtl_tf.continual.export import export_continual
from wtl_tf.continual.machinery import (Signals, StreamClock, StreamProgress, check_finite,
                                        mask_sparsity_record)
from wtl_tf.continual.sine_run import run_sine
from wtl_tf.continual.tensorboard import StreamSummaries
from wtl_tf.run_directory import (CONFIG_FILE, RunLock, check_export_dir, check_resume,
                                  prepare_output_dir, saved_config, write_json_atomic,
                                  write_text_atomic)


def _la_maml_schedule(stream, config):
    """[(task, pass, batch index)] of every incoming batch, in stream order."""
    sizes = getattr(stream.tasks, "train_size", None)  # lazy streams: without building them
    schedule = []
    for t in range(len(stream.tasks)):
        size = sizes(t) if sizes else len(stream.tasks[t].train_y)
        batches = -(-size // config.stream_batch)
        schedule += [(t, e, b) for e in range(config.passes) for b in range(batches)]
    return schedule


def run_la_maml(config, checkpoints_dir, summaries, signals):
    omniglot = load_omniglot(config) if "omniglot" in config.stream else None
    stream = build_stream(config, omniglot)
    learner = build_la_maml(config, stream)
    checkpoints = StreamCheckpoints(checkpoints_dir, learner.checkpoint_variables())
    step, state = checkpoints.restore()
    rows, trace = [], []
    if state is not None:
        learner.restore_numpy_state(state)
        rows = [list(r) for r in state["R"]]
        trace = list(state.get("mask_trace", []))
    clock = StreamClock(state["seconds"] if state else 0.0, config.checkpoint_every_minutes * 60)
    schedule = _la_maml_schedule(stream, config)

    def save():
        checkpoints.save(step, {**learner.numpy_state(), "R": np.asarray(rows, np.float64)
                                .reshape(len(rows), len(stream.tasks)),
                                "seconds": float(clock.seconds), "mask_trace": trace})
        clock.saved()

    iterators = {}
    progress = StreamProgress(len(schedule), config.progress_every_seconds, config.verbose > 0)
    logging.info("%s on %s: stream steps %d to %d (%d tasks)", config.algorithm, config.stream,
                 step, len(schedule), len(stream.tasks))
    signals.armed = True
    while step < len(schedule):
        t, epoch, b = schedule[step]
        task = stream.tasks[t]
        if t not in iterators:  # the task's seeded batch order, from where the run stands
            iterators = {t: iter(task.train_batches(config.stream_batch, config.passes)
                                 .skip(epoch * -(-len(task.train_y) // config.stream_batch) + b))}
        x, y = next(iterators[t])
        loss = learner.observe(x.numpy(), y.numpy(), t, first_pass=epoch == 0)
        check_finite(loss, step)
        step += 1
        progress.step(step, loss, f"task {t + 1}/{len(stream.tasks)}")
        task_done = step == len(schedule) or schedule[step][0] != t
        if task_done:
            rows.append([learner.accuracy(u.test_x, u.test_y, task=u.index)  # task-aware test
                         for u in stream.tasks])
            if learner.mask_sparsity() is not None:
                trace.append({"step": step, "task": t + 1, **mask_sparsity_record(learner)})
            summaries.task_end(step, np.asarray(rows), learner.mask_factors(), loss)
        if task_done or clock.save_due() or signals.received:
            save()
        if signals.received:
            return None, learner, step, signals.received
    seconds = clock.seconds
    results = {**metrics.summary(rows), "R": rows, "tasks": len(stream.tasks),
               "stream_steps": len(schedule), "seconds": round(seconds, 1),
               "seconds_per_1000_steps": round(1000 * seconds / len(schedule), 1),
               "mask_sparsity": mask_sparsity_record(learner), "mask_trace": trace or None}
    return results, learner, step, None


def run_osaka(config, checkpoints_dir, summaries, signals):
    class_images = load_omniglot(config)
    stream = build_stream(config, class_images)
    learner = build_osaka(config, osaka_network(config))
    checkpoints = StreamCheckpoints(checkpoints_dir, learner.checkpoint_variables(),
                                    learner.optimizer.checkpoint_objects())
    step, state = checkpoints.restore()
    if state is not None:
        learner.restore_numpy_state(state)
        pretraining, trace = state["pretraining"], list(state["mask_trace"])
    else:  # a fresh run, or every checkpoint unreadable: pretraining included
        if os.path.isdir(checkpoints_dir) and os.listdir(checkpoints_dir):
            learner = build_osaka(config, osaka_network(config))  # nothing half-restored
            checkpoints = StreamCheckpoints(checkpoints_dir, learner.checkpoint_variables(),
                                            learner.optimizer.checkpoint_objects())
        pretraining, trace = pretrain_osaka(config, learner, stream, class_images), []
    clock = StreamClock(state["seconds"] if state else 0.0, config.checkpoint_every_minutes * 60)

    trace_every = max(1, len(stream) // 20)

    def save():
        checkpoints.save(step, {**learner.numpy_state(), "seconds": float(clock.seconds),
                                "pretraining": pretraining, "mask_trace": trace})
        clock.saved()

    if state is None:
        if learner.masks:
            trace.append({"step": 0, **mask_sparsity_record(learner)})
        save()  # the pretrained network: a resume never pretrains again
    progress = StreamProgress(len(stream), config.progress_every_seconds, config.verbose > 0)
    logging.info("%s on %s: stream steps %d to %d", config.algorithm, config.stream, step,
                 len(stream))
    signals.armed = True
    while step < len(stream):
        record = learner.observe(*stream.batch(step))
        check_finite(record["loss_pre"], step)
        summaries.osaka_step(step, record, bool(stream.switches[step]), learner, stream)
        step += 1
        progress.step(step, record["loss_pre"], f"accuracy before adaptation "
                      f"{record['accuracy']:.3f}")
        if learner.masks and (step % trace_every == 0 or step == len(stream)):
            trace.append({"step": step, **mask_sparsity_record(learner)})
        if step == len(stream) or clock.save_due() or signals.received:
            save()
        if signals.received:
            return None, learner, step, signals.received
    seconds = clock.seconds
    results = {"online_accuracy": osaka.online_accuracy(learner.history, stream.modes),
               "boundaries": osaka.boundary_scores(learner.history, stream.switches),
               "stream_steps": len(stream), "seconds": round(seconds, 1),
               "seconds_per_1000_steps": round(1000 * seconds / len(stream), 1),
               "mask_sparsity": mask_sparsity_record(learner), "mask_trace": trace or None,
               "pretraining": pretraining}
    return results, learner, step, None


def run(config, flags_text=None):
    """Runs (or resumes) the continual stream; writes results.json; returns (results,
    learner)."""
    prepare_output_dir(config.output_dir)
    with RunLock(config.output_dir):
        if config.export_dir:
            check_export_dir(config.export_dir, config.output_dir)
        checkpoints_dir = os.path.join(config.output_dir, "checkpoints")
        saved = saved_config(config.output_dir)
        if saved is not None and os.path.isdir(checkpoints_dir) and os.listdir(checkpoints_dir):
            check_resume(saved, config.to_dict())
        write_json_atomic(os.path.join(config.output_dir, CONFIG_FILE), config.to_dict())
        if flags_text is not None:
            write_text_atomic(os.path.join(config.output_dir, "flags.txt"), flags_text)
        keras.utils.set_random_seed(config.seed)
        summaries = StreamSummaries(os.path.join(config.output_dir, "tensorboard")
                                    if config.tensorboard else None, config.to_dict())

        body = (run_la_maml if settings.la_maml_family(config) else
                run_osaka if settings.osaka_learner(config) else run_sine)
        with Signals() as signals:
            results, learner, step, received = body(config, checkpoints_dir, summaries, signals)
        summaries.close()
        if received is not None:
            raise Interrupted(f"{signal.Signals(received).name} at stream step {step}: "
                              "checkpoint saved; resume with the same command", received)
        results = {"config": config.to_dict(), "algorithm": config.algorithm,
                   "stream": config.stream, "continual": results}
        results_path = os.path.join(config.output_dir, "results.json")
        if config.export_dir:
            results["export_dir"] = export_continual(learner, config.export_dir,
                                                     config.to_dict())
        write_json_atomic(results_path, results)
        return results, learner


def format_summary(results):
    """Human-readable lines of a continual run's results."""
    r = results["continual"]
    if "interval_mse" in r:
        return (f"{results['algorithm']} on {results['stream']}: MSE per interval after the "
                f"sequence, {r['test_tasks']} test tasks: warpgrad "
                + " ".join(f"{v:.3f}" for v in r["interval_mse"]["warpgrad"]) + " (mean "
                f"{r['mean_mse']['warpgrad']:.3f}); sgd "
                + " ".join(f"{v:.3f}" for v in r["interval_mse"]["sgd"])
                + f" (mean {r['mean_mse']['sgd']:.3f})")
    if "retained_accuracy" in r:
        return (f"{results['algorithm']} on {results['stream']} ({r['tasks']} tasks): "
                f"RA {r['retained_accuracy']:.4f}  LA {r['learning_accuracy']:.4f}  "
                f"BTI {r['backward_transfer']:.4f} (/T: {r['backward_transfer_over_T']:.4f})"
                f"  {r['seconds_per_1000_steps']:.1f} s per 1000 batches")
    online = r["online_accuracy"]
    modes = "  ".join(f"{k} {v:.4f}" for k, v in online.items() if k != "overall")
    return (f"{results['algorithm']} on {results['stream']} ({r['stream_steps']} steps): online "
            f"accuracy {online['overall']:.4f} ({modes}); boundaries precision "
            f"{r['boundaries']['precision']:.3f} recall {r['boundaries']['recall']:.3f}; "
            f"{r['seconds_per_1000_steps']:.1f} s per 1000 steps")
