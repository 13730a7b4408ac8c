"""Command-line programs (console commands wtl-train, wtl-evaluate, wtl-export).

Importing this package imports TensorFlow first, with its start-up notices dropped
(wtl_tf.cli.quiet), so that every program module below can import the library at its top.
Each program defines its absl flags when it starts (`define_flags`), never at import, so the
library can be imported next to any other absl program.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wtl_tf.cli.quiet import import_tensorflow  # noqa: E402

import_tensorflow()
