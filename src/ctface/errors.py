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
