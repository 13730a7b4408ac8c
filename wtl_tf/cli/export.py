"""Export a trained run as a SavedModel: the same flags as wtl-train, plus --export_dir.

    wtl-export --config=omniglot_small_alphabets_sparse_maml \
        --output_dir=runs/omniglot_sparse_maml --export_dir=exports/sparse_maml

Exports a few-shot run's best validation weights (else its newest checkpoint), or a continual
run's newest checkpoint, without training or testing; the flags must be the run's own
(checked as a resume is). Use it when a run's export failed, or to export a run trained
without --export_dir.
(`python -m wtl_tf.cli.export` is the same program.)
"""

import sys

from absl import app

from wtl_tf import experiment
from wtl_tf.cli import train as training
from wtl_tf.errors import WtlError

FLAGS = training.FLAGS


def main(argv):
    del argv
    training.quiet_tensorflow_info()
    try:
        path = experiment.export_run(training.config_from_flags())
    except WtlError as e:
        print(f"wtl-export: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"exported to {path}")


def run():
    """Console entry point (wtl-export)."""
    training.define_flags()
    app.run(main, flags_parser=lambda argv: training.parse_flags(argv, program="wtl-export"))


if __name__ == "__main__":
    run()
