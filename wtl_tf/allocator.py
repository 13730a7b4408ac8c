"""The C library's heap, kept for the next step (glibc): set before TensorFlow starts.

A training step allocates and frees tens of MB of temporaries. By default glibc gives the
top of a heap back to the kernel as soon as it is free and takes it again at the next step,
so each step faults those pages in anew. Whether a process falls into this depends on its
history (a La-MAML stream under Keras `fit` does; the same traced step fed batch by batch
did not), and there a step takes up to twice as long: benchmarks/la_maml_paths.py measures
both. Keeping a pad of free memory at the top of each heap (glibc's M_TOP_PAD) avoids it and
leaves peak memory where the step puts it.

The pad must be set before the process's heaps take their shape, that is before TensorFlow
is imported: the console commands do it first (wtl_tf.cli); a script of one's own calls
`pad_heap_top()` before its first `import tensorflow`. The environment variable
WTL_HEAP_TOP_PAD_MB chooses the pad (0: the C library's own behaviour). This module imports
nothing but the standard library, so that it can run first.
"""

import ctypes
import os

DEFAULT_TOP_PAD_MB = 64
ENVIRONMENT = "WTL_HEAP_TOP_PAD_MB"
_M_TOP_PAD = -2  # glibc's mallopt parameter number (malloc.h)


class PadError(ValueError):
    """WTL_HEAP_TOP_PAD_MB is not a pad this process can take."""


def requested_pad_mb(environ=os.environ):
    """The pad WTL_HEAP_TOP_PAD_MB asks for, in MB (DEFAULT_TOP_PAD_MB when unset)."""
    text = environ.get(ENVIRONMENT, "").strip()
    if not text:
        return DEFAULT_TOP_PAD_MB
    try:
        mb = int(text)
    except ValueError:
        mb = -1
    if not 0 <= mb <= 1024:
        raise PadError(f"{ENVIRONMENT} must be a whole number of MB from 0 to 1024, got "
                       f"{text!r}: unset it for {DEFAULT_TOP_PAD_MB}, or 0 to leave the heap "
                       "to the C library")
    return mb


def pad_heap_top(mb=None):
    """Makes glibc keep `mb` MB of free memory at the top of each heap (None: the
    environment's choice, else DEFAULT_TOP_PAD_MB). Returns the pad applied in MB: 0 when
    `mb` is 0, or when the default meets another C library (which keeps its own policy); a
    pad asked for by name there is refused (PadError)."""
    asked = mb is not None or bool(os.environ.get(ENVIRONMENT, "").strip())
    mb = requested_pad_mb() if mb is None else mb
    if mb == 0:
        return 0
    mallopt = _glibc_mallopt()
    if mallopt is not None and mallopt(_M_TOP_PAD, mb << 20) == 1:
        return mb
    if asked:
        raise PadError(f"{ENVIRONMENT}={mb} needs glibc's mallopt, which this C library "
                       f"lacks: unset {ENVIRONMENT} or set it to 0")
    return 0


def _glibc_mallopt():
    """glibc's mallopt, or None (musl's mallopt exists and ignores the pad)."""
    try:
        library = ctypes.CDLL(None)
    except OSError:  # no C library to open by name (Windows)
        return None
    if not hasattr(library, "gnu_get_libc_version"):
        return None
    mallopt = library.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt
