"""What the gallery keeps about a scan besides its template (no pixel data, names or dates),
and what an enrollment did with each scan."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ctface.errors import FailureCode

# Acquisition metadata kept in the gallery: no names, dates or pixels.
ACQUISITION_KEYS = ("format", "modality", "manufacturer", "original_spacing", "n_files")


@dataclass(frozen=True)
class ScanRecord:
    """What the gallery keeps about a scan besides its template (no pixel data, no dates)."""

    digest: str  # source_digest of the scan's files
    source: str
    series_uid: str | None
    study_uid: str | None
    dicom_patient_id: str  # the PatientID tag as read ("" for volume files)
    acquisition: dict[str, Any]
    quality: dict[str, Any]


class Status(StrEnum):
    """What happened to one scan of an enrollment (``Outcome.status``)."""

    ENROLLED = "enrolled"
    ALREADY_ENROLLED = "already-enrolled"
    FAILED = "failed"
    SKIPPED = "skipped"  # it failed in an earlier run (``retry_failed`` tries it again)


@dataclass(frozen=True)
class Outcome:
    """What happened to one scan."""

    source: str
    patient_id: str
    status: Status
    scan_key: int | None = None
    code: FailureCode | None = None  # failed, skipped: why
    reason: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}
