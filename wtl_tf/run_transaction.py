"""One run's transaction, for every kind of run (few-shot meta-training, a continual stream, the
warped sine): the same guarantees around a per-kind recipe.

    transaction(config, flags_text, recipe) -> (results, learner)

The recipe is what differs between kinds: `recipe.train(checkpoints_dir)` builds the data and
the learner, restores the newest checkpoint and learns to the end, returning (results,
learner); `recipe.export(learner)` writes the SavedModel and returns its path;
`recipe.export_retry` says, in a sentence, how to get the export once it failed.

What the transaction guarantees, whatever the kind:
- the output directory is locked for the run (and --export_dir for the export), created
  before any work, and resumed only with the same training settings (wtl_tf.run_directory);
- config.json and flags.txt say what the run was asked for, and the seed is set;
- results.json is written when the run has finished, and kept when the export after it
  fails (with `export_error`; ExportError says how to get the export without training
  again);
- a disk that fills up during any write ends the run with one line (DiskFullError) that
  says which checkpoint is kept.
"""

import contextlib
import os

import keras
import tensorflow as tf

from wtl_tf.checkpoints import has_checkpoints, stored_settings
from wtl_tf.errors import WtlError
from wtl_tf.run_directory import (CONFIG_FILE, ExportLock, RunLock, check_export_dir,
                                  check_resume_of, disk_full_error, prepare_output_dir,
                                  write_json_atomic, write_text_atomic)


class ExportError(WtlError):
    """The run finished and results.json was written, but the export failed."""


def transaction(config, flags_text, recipe):
    """Runs `recipe` in config.output_dir with the guarantees above."""
    try:
        prepare_output_dir(config.output_dir)
        with RunLock(config.output_dir), contextlib.ExitStack() as export_lock:
            if config.export_dir:
                check_export_dir(config.export_dir, config.output_dir)
                export_lock.enter_context(ExportLock(config.export_dir))
            return _locked(config, flags_text, recipe)
    except (OSError, tf.errors.OpError) as e:  # a checkpoint, summary or export write
        full = disk_full_error(e, config.output_dir)
        if full is None:
            raise
        raise full from None


def _locked(config, flags_text, recipe):
    checkpoints_dir = os.path.join(config.output_dir, "checkpoints")
    if has_checkpoints(checkpoints_dir):
        check_resume_of(config.output_dir, config.to_dict(), stored_settings(checkpoints_dir))
    write_json_atomic(os.path.join(config.output_dir, CONFIG_FILE), config.to_dict())
    if flags_text is not None:
        write_text_atomic(os.path.join(config.output_dir, "flags.txt"), flags_text)
    keras.utils.set_random_seed(config.seed)
    results, learner = recipe.train(checkpoints_dir)
    results_path = os.path.join(config.output_dir, "results.json")
    if config.export_dir:
        try:
            results["export_dir"] = recipe.export(learner)
        except Exception as e:  # noqa: BLE001 - the run's results must survive any failure
            results["export_error"] = f"{type(e).__name__}: {e}"
            write_json_atomic(results_path, results)
            first_line = str(e).splitlines()[0][:200] if str(e) else ""
            raise ExportError(
                f"export to {config.export_dir!r} failed ({type(e).__name__}: {first_line}); "
                f"results.json and the checkpoints are kept: {recipe.export_retry}") from e
    write_json_atomic(results_path, results)
    return results, learner
