"""TensorFlow's start-up lines that alarm without informing, kept off the command line.

Importing TensorFlow and finding its devices prints, through C++ logging that runs before
anything can configure it (TF_CPP_MIN_LOG_LEVEL is not read that early), a notice that
oneDNN is on, that no CUDA driver was found and — as an *error* — that cuInit failed, on
every machine without a GPU. `import_tensorflow()` does both with the process's stderr
(file descriptor 2) sent to a temporary file, then writes back every line except those
known notices, so anything else TensorFlow says at start-up still shows.
"""

import os
import re
import sys
import tempfile

NOTICES = (
    re.compile(r"All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"oneDNN custom operations are on"),
    re.compile(r"Could not find cuda drivers on your machine"),
    re.compile(r"failed call to cuInit"),
    re.compile(r"This TensorFlow binary is optimized to use available CPU instructions"),
    re.compile(r"To enable the following instructions: .* in other operations, rebuild"),
)


def _known_notice(line):
    return any(p.search(line) for p in NOTICES)


def import_tensorflow():
    """Imports TensorFlow and lists its devices with the known start-up notices dropped."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", "replace")
    kept = [line for line in text.splitlines() if line.strip() and not _known_notice(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)
