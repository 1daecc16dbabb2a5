"""Exceptions raised by cnnlab.

Every error cnnlab raises on bad input says what is wrong and what was expected, so the
command line can print it as one line. Bad arguments are plain :class:`ValueError`
(or a subclass below); the subclasses let the CLI and callers tell the kinds apart.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or inconsistent (names the file)."""


class CheckpointError(ValueError):
    """A checkpoint or saved model cannot be read, or does not fit the model."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. NaN or Inf in the loss or a gradient)."""


class DownloadError(RuntimeError):
    """No mirror delivered a file with the expected checksum."""


class MissingDependencyError(ImportError):
    """An optional part of cnnlab needs a package that is not installed (the message
    says which extra to install, e.g. ``pip install 'cnnlab[onnx]'``)."""


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after writing a resumable checkpoint.

    Attributes
    ----------
    checkpoint : str
        Path of the checkpoint written at the interruption ("" until it is written;
        the message then says where it went).
    signal_number : int
        The signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
    """

    def __init__(self, message: str, checkpoint: str, signal_number: int) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signal_number = signal_number

    def __str__(self) -> str:
        message = super().__str__()
        if self.checkpoint:
            message += f"; checkpoint written to {self.checkpoint}"
        return message
