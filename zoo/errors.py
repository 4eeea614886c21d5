"""User-facing error types.

Launchers catch :class:`ZooError` and print its message as one line, without a
traceback: these are problems with the user's input (files, config values,
workdirs), not bugs.
"""


class ZooError(Exception):
  """Base class of errors caused by bad user input; the message is one line."""


class ConfigError(ZooError, ValueError):
  """A config value is missing, out of range or inconsistent."""


class CheckpointError(ZooError):
  """A workdir/checkpoint is missing or unusable."""


class CaptionError(ZooError, ValueError):
  """A caption cannot be encoded (empty, or no token known to the vocabulary)."""


class NonFiniteLossError(ZooError, FloatingPointError):
  """Training produced a NaN/Inf loss; the last good checkpoint is kept."""
