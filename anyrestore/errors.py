"""Project error classes.

Every error a user can cause derives from :class:`AnyRestoreError`; the CLI prints its message as one line
on stderr and exits non-zero. Anything else escaping the CLI is a bug in anyrestore and keeps its traceback.
"""


class AnyRestoreError(Exception):
    """Base class for errors caused by the caller's input (files, names, options)."""


class ImageReadError(AnyRestoreError):
    """An image file is missing, empty, truncated, corrupt or not an image."""


class UnknownModelError(AnyRestoreError, KeyError):
    """A model, preset or architecture name is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnsafeCheckpointError(AnyRestoreError):
    """A checkpoint needs code execution (pickled globals) to load."""


class CheckpointMismatchError(AnyRestoreError):
    """A checkpoint's keys or shapes do not match the model it is loaded into."""


class ConfigError(AnyRestoreError):
    """A recipe or option is invalid (unknown key, wrong type, missing value)."""
