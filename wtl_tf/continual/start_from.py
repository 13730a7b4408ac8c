"""A La-MAML-family stream started from another run's parameters (`--start_from=RUN_DIR`):
the meta-pretrained start.

A run on held-out streams meta-learns theta and, through its chain, the per-weight rates or
the mask. `--start_from` takes exactly those from that run's newest checkpoint: the
network's weights and the chain's meta-learned weights (`LookAhead.meta`). What belongs to
a stream starts fresh, since this is a new stream: the replay memory, the optimisers' slots,
the position, and the record of which mask entries were open at the start (the mask's
changes are counted on this stream). Runs of several held-out streams chain: each starts
from the one before.
"""

import json
import os

import tensorflow as tf

from wtl_tf.checkpoints import has_checkpoints, stored_settings
from wtl_tf.errors import ConfigError
from wtl_tf.step_functions import binary_step

# What makes the source's checkpoint hold the same parameters in the same order.
STRUCTURE = ("algorithm", "update_rules", "mask_granularity")


def _newest_checkpoint(run_dir):
    directory = os.path.join(run_dir, "checkpoints")
    newest = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
    if newest is None:
        raise ConfigError(f"--start_from={run_dir} holds no checkpoint (checkpoints/): give the "
                          "output directory of a La-MAML-family run")
    return newest


def check_source(c):
    """Refuses, before any work, a source that is not a run of the same learner and chain.
    A run that already has checkpoints of its own (a resume, `wtl-export`) never reads the
    source again, so it is not checked then: it may be gone."""
    if c.output_dir and has_checkpoints(os.path.join(c.output_dir, "checkpoints")):
        return
    _newest_checkpoint(c.start_from)
    source = stored_settings(os.path.join(c.start_from, "checkpoints")) or {}
    for name in STRUCTURE:
        mine = json.loads(json.dumps(getattr(c, name), default=str))
        if source.get(name) != mine:
            raise ConfigError(f"--start_from={c.start_from} is a run with --{name}="
                              f"{source.get(name)}, this run has --{name}={mine}: start from "
                              "a run of the same algorithm and chain")


def take_parameters(learner, run_dir):
    """Assigns the network's and the chain's meta-learned weights of `run_dir`'s newest
    checkpoint to `learner` (a LaMAML); the stream-side state stays as built."""
    newest = _newest_checkpoint(run_dir)
    reader = tf.train.load_checkpoint(newest)
    parameters = [*learner.model.weights, *learner.meta]
    for i, variable in enumerate(parameters):  # StreamCheckpoints' list, network first
        key = f"variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"
        value = reader.get_tensor(key) if reader.has_tensor(key) else None
        if value is None or tuple(value.shape) != tuple(variable.shape):
            raise ConfigError(f"--start_from={run_dir}: its checkpoint does not hold this "
                              f"run's {variable.path} {tuple(variable.shape)}: start from a "
                              "run of the same network (stream) and chain")
        variable.assign(value)
    for opened, mask in zip(getattr(learner, "initial_open", []), learner.masks):
        opened.assign(binary_step(mask))
