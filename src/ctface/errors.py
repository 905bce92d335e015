"""Typed errors. The CLI turns each into one line on stderr and its own exit code."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


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


class FailureCode(StrEnum):
    """Why a scan was not enrolled or identified (``FailureToAcquire.code``, an enrollment's
    ``Outcome.code``). The first six are failures to acquire: the quality gate
    (``gallery.acquire``) refused a readable scan; the others are not about the face.
    Members compare equal to, print and json.dumps as their string values."""

    NO_FACE = "no-face"
    THICK_SLICES = "thick-slices"
    FACE_INCOMPLETE = "face-incomplete"
    FACE_COVERED = "face-covered"
    NO_SOFT_TISSUE = "no-soft-tissue"
    NO_SKULL = "no-skull"
    UNREADABLE = "unreadable"  # the input cannot be read (enrollment only)
    CONFLICT = "conflict"  # the files are already enrolled as another patient (enrollment only)
    ERROR = "error"  # anything else (enrollment only)

    @property
    def is_failure_to_acquire(self) -> bool:
        return self not in (FailureCode.UNREADABLE, FailureCode.CONFLICT, FailureCode.ERROR)

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this failure: 6 (failure to acquire) or 4 (input error)."""
        return NoFaceError.exit_code if self.is_failure_to_acquire else InvalidInputError.exit_code

    @classmethod
    def exit_code_of(cls, codes: Iterable[FailureCode | None]) -> int:
        """The exit code of a run with these failures: 6 when every one is a failure to acquire,
        else 4 (a failure without a code counts as an error)."""
        if all(c is not None and c.is_failure_to_acquire for c in codes):
            return NoFaceError.exit_code
        return InvalidInputError.exit_code


class FailureToAcquire(NoFaceError):
    """The CT's face is not usable for recognition (quality gate); ``code`` names why."""

    def __init__(self, code: FailureCode, reason: str) -> None:
        super().__init__(f"failure to acquire ({code}): {reason}")
        self.code, self.reason = code, reason

    def __reduce__(self) -> tuple[type, tuple[FailureCode, str]]:
        return FailureToAcquire, (self.code, self.reason)  # crosses process pools whole


class GalleryError(CtfaceError):
    """The gallery database cannot serve the request (another model's templates, not a ctface
    gallery, unknown patient or scan)."""

    exit_code = 7


class UnknownEntryError(GalleryError):
    """No patient, scan or finding with the given ID in the gallery (the service: 404)."""


class RemoteError(CtfaceError):
    """A server ctface talks to (a PACS over DICOMweb) cannot be reached or refuses a request;
    what was done before stays done (the PACS loop resumes where it stopped). ``transient``:
    no answer, a timeout, 5xx or 429 (try again later); False: the server refused this request
    (4xx), which trying again will not change."""

    exit_code = 8
    transient = True
