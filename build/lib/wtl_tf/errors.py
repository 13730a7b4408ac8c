"""Errors that name the problem and the fix.

Everything the library raises on bad input derives from `WtlError`, so entry points
(wtl-train, wtl-evaluate, wtl-export) can print one line instead of a TensorFlow traceback.
"""


class WtlError(Exception):
    """Base class of errors a user can act on."""


class ConfigError(WtlError, ValueError):
    """A flag, argument or configuration value is invalid."""


class DataError(WtlError, IOError):
    """A dataset is missing, corrupt or does not fit the requested episodes."""


class NonFiniteLossError(WtlError, FloatingPointError):
    """Training produced a NaN or infinite loss."""
