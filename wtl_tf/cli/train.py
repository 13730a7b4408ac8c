"""Meta-train a learner: flags -> data + task network + update rule -> fit -> meta-test.

    wtl-train                                        # sparse-MAML on sinusoid (offline)
    wtl-train --config=omniglot_small_alphabets_sparse_maml      # a shipped configuration
    wtl-train --flagfile=my_run.cfg     # nested --flagfile= paths: relative to the file
    wtl-train --algorithm=maml --order=second --inner_lr=0.4 ...

(`python train.py` in a checkout is the same program.) Every flag is a setting declared
next to the code that reads it (wtl_tf.settings); a flag left unset takes the dataset's or
the algorithm's default; the resolved values are written to <output_dir>/config.json and
<output_dir>/flags.txt.
"""

import logging as python_logging
import os
import sys

from absl import app, flags, logging

from wtl_tf import config as _every_declaration  # noqa: F401  (registers every setting)
from wtl_tf import experiment, settings, signal_watch
from wtl_tf.callbacks import Interrupted, StopAtOnce
from wtl_tf.cli import flagfiles
from wtl_tf.config import ExperimentConfig
from wtl_tf.errors import ConfigError, WtlError
from wtl_tf.runtime import configure_cpu_threads

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS, module_name=None):
    """The training flags: one per declared setting (idempotent)."""
    settings.define_flags(flag_values, module_name or sys.argv[0])


def config_from_flags(flag_values=FLAGS):
    """The ExperimentConfig the parsed flags describe (not yet resolved)."""
    return ExperimentConfig(**settings.values_from_flags(flag_values))


def read_flags(argv, flag_values=FLAGS):
    """absl's parsing of `argv` with --flagfile / --config expanded (wtl_tf.cli.flagfiles);
    a flag error is a ConfigError of one line."""
    try:
        return flag_values(flagfiles.expand(argv))
    except flags.Error as e:
        raise ConfigError(one_line(e)) from None


def parse_flags(argv, flag_values=FLAGS, program="train.py"):
    """`read_flags` for absl's app.run: an error is one line and exit status 2 (absl's own
    parser prints two, with a hint to --helpfull)."""
    try:
        return read_flags(argv, flag_values)
    except ConfigError as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except SystemExit as e:
        # absl's help flags print what was asked for and exit 1, as if it were an error.
        if e.code == 1 and asks_for_help(argv):
            sys.exit(0)
        raise


_HELP_FLAGS = {"help", "helpfull", "helpshort", "helpxml", "?"}


def asks_for_help(argv):
    """True when the command line holds one of absl's help flags (--help, --helpfull, ...)."""
    return any(arg.startswith("-") and arg.lstrip("-").split("=", 1)[0] in _HELP_FLAGS
               for arg in argv[1:] if arg != "--")


def one_line(error):
    return " ".join(str(error).split())


class _TensorFlowInfo:
    """A logging filter that drops TensorFlow's own INFO lines (one per checkpoint: "Sharding
    callback duration"): they tell a user nothing. Its warnings and errors still show."""

    @staticmethod
    def filter(record):
        return record.levelno > 20 or f"{os.sep}tensorflow{os.sep}" not in record.pathname


def quiet_tensorflow_info():
    for logger in (logging.get_absl_logger(), python_logging.getLogger("tensorflow")):
        if _TensorFlowInfo not in logger.filters:
            logger.addFilter(_TensorFlowInfo)


def main(argv):
    del argv
    quiet_tensorflow_info()
    signal_watch.watch("train.py")
    try:
        with StopAtOnce():  # until a run installs its own, checkpointing handlers
            config = config_from_flags().resolved()
            configure_cpu_threads(config.cpu_threads, config.meta_batch_size or 1)
            results, _ = experiment.run(config, flags_text=FLAGS.flags_into_string())
    except Interrupted as e:
        print(f"train.py: {e}", file=sys.stderr)
        signal_watch.exit_now(128 + e.signal_number)  # saved: no teardown to wait for
    except WtlError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(experiment.format_test_summary(results))
    logging.info("results written to %s", os.path.join(config.output_dir, "results.json"))


def run():
    """Console entry point (wtl-train)."""
    define_flags()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
