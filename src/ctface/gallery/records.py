"""What the gallery keeps about a scan besides its template: no pixel data, names or dates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
