"""One continual-learning run: `train.py --algorithm=la_maml | sync_la_maml | c_maml |
sparse_la_maml | continual_maml | sparse_continual_maml`.

The stream is a pure function of --seed (wtl_tf.continual.streams / osaka), observed one
batch at a time. The run checkpoints the learner's variables (La-MAML's replay memory,
OSAKA's buffered batches among them), the stream position and the run's records so far
(wtl_tf.continual.checkpoints) every --checkpoint_every_minutes, at every task end and on
SIGINT/SIGTERM, so rerunning the same command resumes where it stopped and ends with the
same metrics as an uninterrupted run. The output directory, results.json and the export
are the same transaction as a few-shot run's (wtl_tf.run_transaction). results.json holds,
for the La-MAML family, the accuracy matrix R with RA, LA and BTI (both normalisations); for
Continual-MAML, the online cumulative accuracy overall and per mode and the boundary
detector's precision and recall; for both, the mask sparsity per layer and the seconds per
1,000 stream steps.

Settings and their checks: wtl_tf.continual.protocol; the stream and the learner:
wtl_tf.continual.building; the learners are Keras models (wtl_tf.continual.learner)
learning the stream through `fit` (wtl_tf.continual.machinery), the accuracy matrix and
the online records are callbacks (wtl_tf.continual.callbacks).
"""

import os

from absl import logging

from wtl_tf import settings
from wtl_tf.continual import metrics, osaka
from wtl_tf.continual.building import (build_la_maml, build_osaka, build_stream, load_omniglot,
                                       osaka_network, pretrain_osaka)
from wtl_tf.continual.callbacks import AccuracyMatrix, OnlineRecords
from wtl_tf.continual.checkpoints import StreamRunState
from wtl_tf.continual.export import export_continual
from wtl_tf.continual.machinery import checkpoint_cadence, fit_stream
from wtl_tf.continual.sine_run import run_sine
from wtl_tf.continual.start_from import take_parameters
from wtl_tf.continual.tensorboard import StreamSummaries
from wtl_tf.errors import DataError
from wtl_tf.run_transaction import transaction


def la_maml_stream_and_learner(config):
    omniglot = load_omniglot(config) if "omniglot" in config.stream else None
    stream = build_stream(config, omniglot)
    return stream, build_la_maml(config, stream)


def run_la_maml(config, checkpoints_dir, summaries):
    stream, learner = la_maml_stream_and_learner(config)
    schedule = stream.schedule(config.stream_batch, config.passes)
    matrix = AccuracyMatrix(stream, schedule, summaries, at_task_end=lambda: periodic.save())
    run_state = StreamRunState(checkpoints_dir, learner, matrix.records,
                               run_settings=config.to_dict())
    state = run_state.restore()
    if state is not None:
        matrix.restore(state)
    elif config.start_from is not None:  # a fresh stream from another run's parameters
        take_parameters(learner, config.start_from)
    periodic = checkpoint_cadence(run_state, state, config)
    logging.info("%s on %s: stream steps %d to %d (%d tasks)", config.algorithm, config.stream,
                 learner.position, len(schedule), len(stream.tasks))
    fit_stream(learner, learner.stream_dataset(stream, config.stream_batch, config.passes,
                                               learner.position),
               len(schedule), periodic, config, [matrix], where=lambda logs: (
                   f"task {matrix.task_of_step(learner.position - 1) + 1}/{len(stream.tasks)}"))
    seconds = periodic.clock.seconds
    return {**metrics.summary(matrix.rows), "R": matrix.rows, "tasks": len(stream.tasks),
            "stream_steps": len(schedule), "seconds": round(seconds, 1),
            "seconds_per_1000_steps": round(1000 * seconds / len(schedule), 1),
            "mask_sparsity": learner.mask_sparsity_record(),
            "mask_trace": matrix.trace or None}, learner


def run_osaka(config, checkpoints_dir, summaries):
    class_images = load_omniglot(config)
    stream = build_stream(config, class_images)
    learner = build_osaka(config, osaka_network(config))
    records, pretraining = OnlineRecords(stream, summaries), []

    def run_records():
        return {"pretraining": pretraining, **records.records()}

    run_state = StreamRunState(checkpoints_dir, learner, run_records,
                               run_settings=config.to_dict())
    state = run_state.restore()
    if state is not None:
        pretraining = state["pretraining"]
        records.restore(state)
    else:  # a fresh run, or every checkpoint unreadable: pretraining included
        if os.path.isdir(checkpoints_dir) and os.listdir(checkpoints_dir):
            learner = build_osaka(config, osaka_network(config))  # nothing half-restored
            run_state = StreamRunState(checkpoints_dir, learner, run_records,
                               run_settings=config.to_dict())
        pretraining = pretrain_osaka(config, learner, stream, class_images)
    periodic = checkpoint_cadence(run_state, state, config)
    if state is None:
        if learner.masks:
            records.trace.append({"step": 0, **learner.mask_sparsity_record()})
        periodic.save()  # the pretrained network: a resume never pretrains again
    logging.info("%s on %s: stream steps %d to %d", config.algorithm, config.stream,
                 learner.position, len(stream))
    fit_stream(learner, stream.dataset(learner.position), len(stream), periodic, config,
               [records], where=lambda logs: (
                   f"accuracy before adaptation {float(logs['accuracy']):.3f}"))
    seconds = periodic.clock.seconds
    return {"online_accuracy": osaka.online_accuracy(records.history, stream.modes),
            "boundaries": osaka.boundary_scores(records.history, stream.switches),
            "stream_steps": len(stream), "seconds": round(seconds, 1),
            "seconds_per_1000_steps": round(1000 * seconds / len(stream), 1),
            "mask_sparsity": learner.mask_sparsity_record(), "mask_trace": records.trace or None,
            "pretraining": pretraining}, learner


# Each continual learner kind (settings.learner_kind): how a run of it learns its stream
# (checkpoints_dir, summaries -> results, learner), and how its learner is built for
# wtl-export to restore (kinds that export). A new kind is an entry in each.
RUNS = {"lookahead_replay": run_la_maml, "osaka": run_osaka, "warp_sine": run_sine}
LEARNERS = {"lookahead_replay": lambda config: la_maml_stream_and_learner(config)[1],
            "osaka": lambda config: build_osaka(config, osaka_network(config))}


class StreamRecipe:
    """A continual run for the transaction (wtl_tf.run_transaction): learn the stream (or
    the warped sine's sequence) to its end, then export the learner."""

    export_retry = ("rerun the same command with a working --export_dir (a finished stream "
                    "is not learned again)")

    def __init__(self, config):
        self.config = config

    def train(self, checkpoints_dir):
        config = self.config
        summaries = StreamSummaries(os.path.join(config.output_dir, "tensorboard")
                                    if config.tensorboard else None, config.to_dict())
        try:
            results, learner = RUNS[settings.learner_kind(config)](config, checkpoints_dir,
                                                                    summaries)
        finally:
            summaries.close()
        return {"config": config.to_dict(), "algorithm": config.algorithm,
                "stream": config.stream, "continual": results}, learner

    def export(self, learner):
        return export_continual(learner, self.config.export_dir, self.config.to_dict())

    def export_checkpointed(self, checkpoints_dir):
        """The export of the run's newest checkpoint (nothing is learned)."""
        learner = LEARNERS[settings.learner_kind(self.config)](self.config)
        if StreamRunState(checkpoints_dir, learner).restore() is None:
            raise DataError(f"no checkpoint in {checkpoints_dir} reads back: rerun the "
                            "training command to learn the stream again")
        return self.export(learner)


def run(config, flags_text=None):
    """Runs (or resumes) the continual stream; writes results.json; returns (results,
    learner)."""
    return transaction(config, flags_text, StreamRecipe(config))


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
