"""Typed errors. The CLI turns each into one line on stderr and its own exit code."""

from __future__ import annotations


class CtfaceError(Exception):
    """Base class of every error ctface reports to a user (exit code 1 is reserved for bugs)."""

    exit_code = 10


class MissingDataError(CtfaceError):
    """A required data file (face model, weights, shared data) is not where it was looked for."""

    exit_code = 3


class InvalidInputError(CtfaceError):
    """The input exists but is not usable (corrupt, wrong kind, absurd size, bad option value)."""

    exit_code = 4


class OutputError(CtfaceError):
    """The output cannot be written (exists and not empty, not writable, disk full)."""

    exit_code = 5


class NoFaceError(InvalidInputError):
    """The CT is readable but holds no usable face (none in the field of view, or covered)."""

    exit_code = 6


class FailureToAcquire(NoFaceError):
    """The CT's face is not usable for recognition (quality gate); ``code`` names why."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"failure to acquire ({code}): {reason}")
        self.code, self.reason = code, reason


class GalleryError(CtfaceError):
    """The gallery database cannot serve the request (another model's templates, not a ctface
    gallery, unknown patient or scan)."""

    exit_code = 7
