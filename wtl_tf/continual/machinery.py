"""One run machinery for every stream learner: Keras `fit` over the stream's tf.data with the
callbacks every run shares — the non-finite loss guard, periodic checkpoints, SIGINT/SIGTERM
checkpointed at a step boundary, progress lines — and the stream's own metrics."""

from wtl_tf.callbacks import GracefulInterrupt, NonFiniteLossGuard, ProgressLog
from wtl_tf.checkpoints import PeriodicCheckpoint, TrainClock


def checkpoint_cadence(run_state, state, config):
    """Checkpoints every --checkpoint_every_minutes of stream time (counted over resumes
    from the restored `state`), at the end, and when a stream callback asks."""
    clock = TrainClock(state["seconds"] if state else 0.0)
    return PeriodicCheckpoint(run_state, clock, config.checkpoint_every_minutes * 60)


def fit_stream(learner, dataset, total, periodic, config, stream_callbacks=(), where=None):
    """Learns the stream `dataset` from the learner's position to `total` steps."""
    if learner.position >= total:
        return
    callbacks = [NonFiniteLossGuard(), *stream_callbacks, periodic,
                 GracefulInterrupt(periodic.save)]
    if config.verbose:
        callbacks.append(ProgressLog(total, config.progress_every_seconds, where=where))
    learner.compile()
    periodic.clock.start()
    learner.fit(dataset, steps_per_epoch=total - learner.position, epochs=1, verbose=0,
                shuffle=False, callbacks=callbacks)
