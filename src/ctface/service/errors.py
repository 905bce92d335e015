"""Errors as the service answers them: ``{"error": {"code": ..., "message": ...}}`` with an
HTTP status. ctface's own errors map by kind: bad input 400, no usable face 422 (the code is
the failure-to-acquire code), an unknown patient, scan or finding 404, a gallery that cannot
serve the request (another model's) 409, missing data (no gallery yet, model files) 503."""

from __future__ import annotations

from ctface.errors import (
    CtfaceError,
    FailureCode,
    FailureToAcquire,
    GalleryError,
    InvalidInputError,
    MissingDataError,
    NoFaceError,
    UnknownEntryError,
)


class ServiceError(Exception):
    """An answer other than 2xx: status, code, one-line message, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(what: str) -> ServiceError:
    return ServiceError(404, "not-found", what)


def from_ctface(e: CtfaceError) -> ServiceError:
    """The HTTP answer to one of ctface's errors."""
    if isinstance(e, FailureToAcquire):
        return ServiceError(422, str(e.code), str(e))
    if isinstance(e, NoFaceError):
        return ServiceError(422, str(FailureCode.NO_FACE), str(e))
    if isinstance(e, InvalidInputError):
        return ServiceError(400, "bad-input", str(e))
    if isinstance(e, UnknownEntryError):
        return ServiceError(404, "not-found", str(e))
    if isinstance(e, GalleryError):
        return ServiceError(409, "gallery", str(e))
    if isinstance(e, MissingDataError):
        return ServiceError(503, "missing-data", str(e))
    return ServiceError(500, "error", str(e))


def from_failure(code: FailureCode | None, reason: str | None) -> ServiceError:
    """The answer to a scan a worker could not acquire (``gallery.enroll.acquire_job``)."""
    why = reason or "the scan could not be acquired"
    if code is not None and code.is_failure_to_acquire:
        return ServiceError(422, str(code), why)
    if code == FailureCode.UNREADABLE:
        return ServiceError(400, "bad-input", why)
    return ServiceError(500, str(code or FailureCode.ERROR), why)
