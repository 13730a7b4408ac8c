"""Command-line programs (console commands wtl-train, wtl-evaluate, wtl-export).

Importing this package sets the C library's heap pad (wtl_tf.allocator: it must come before
TensorFlow's first allocation), then imports TensorFlow, with its start-up notices dropped
(wtl_tf.cli.quiet), so that every program module below can import the library at its top.
Each program defines its absl flags when it starts (`define_flags`), never at import, so the
library can be imported next to any other absl program.
"""

import os
import sys

from wtl_tf.allocator import PadError, pad_heap_top

try:
    pad_heap_top()
except PadError as e:
    sys.exit(f"error: {e}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from wtl_tf.cli.quiet import import_tensorflow  # noqa: E402

import_tensorflow()
