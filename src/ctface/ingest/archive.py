"""A DICOM archive folder as scans to enroll: one CT volume per (PatientID, study).

``list_archive`` reads the headers once (``scan_folder``), groups the series by the PatientID
and StudyInstanceUID tags, and picks each study's CT volume with the same rule as a single
folder (``choose``: the usable series through the head with the most slices). Series without
a PatientID, and studies without a usable CT series, are reported with the reason.
``load_archive_scan`` reads a listed scan as ``load_ct`` would (head crop, canonical grid; its
source is the folder holding the series' files);
``source_digest`` is the content hash that identifies a scan's files (resuming enrollment).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ctface.errors import InvalidInputError
from ctface.ingest.canonical import DEFAULT_SPACING_MM, canonicalize
from ctface.ingest.dicom_read import read_series
from ctface.ingest.dicom_scan import Series, choose, scan_folder
from ctface.ingest.head import find_head
from ctface.ingest.volume import CtVolume


@dataclass(frozen=True)
class ArchiveScan:
    """One study's CT series in an archive folder, with the PatientID of its headers."""

    patient_id: str
    study_uid: str
    series: Series
    study_series: tuple[Series, ...]  # every series of the study (the choice is among them)
    root: Path

    @property
    def label(self) -> str:
        return f"{self.patient_id}/{self.series.uid}"

    @cached_property
    def digest(self) -> str:
        """``source_digest`` of the series' files (computed once: it reads every file)."""
        return source_digest(self.series.paths)


def list_archive(
    folder: Path, *, unlabeled: bool = False
) -> tuple[list[ArchiveScan], list[tuple[str, str]]]:
    """Scans of ``folder`` (sorted by PatientID, study) and the skipped items (what, why).
    ``unlabeled``: studies without a PatientID are scans too (patient ID ""), not skipped."""
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder (--from-dicom-tags reads a folder).")
    found = scan_folder(folder)
    series = found.series
    skipped = [(str(p), "truncated or corrupt DICOM file") for p in found.broken]
    skipped += [(str(p), "cannot be read (permission denied)") for p in found.unreadable]
    if not series:
        raise InvalidInputError(f"{folder} holds {found.n_files} files but no DICOM images.")
    studies: dict[tuple[str, str], list[Series]] = {}
    for s in series:
        pid = str(s.first.get("PatientID", "")).strip()
        if not pid and not unlabeled:
            skipped.append((f"series {s.uid}", "no PatientID tag (enroll it with --patient-id)"))
            continue
        studies.setdefault((pid, str(s.first.get("StudyInstanceUID", ""))), []).append(s)
    scans = []
    for (pid, study), members in sorted(studies.items()):
        chosen = choose(members)
        if chosen is None:
            why = "; ".join(f"{s.uid}: {s.reason}" for s in members[:2])
            skipped.append((f"study {study} of {pid}", f"no usable CT series ({why})"))
            continue
        scans.append(ArchiveScan(pid, study, chosen, tuple(members), folder))
    return scans, skipped


def load_archive_scan(scan: ArchiveScan, spacing_mm: float = DEFAULT_SPACING_MM) -> CtVolume:
    """The scan's volume on the canonical grid, cropped to the head (as ``load_ct``)."""
    folder = Path(os.path.commonpath([str(p.parent) for p in scan.series.paths]))
    volume = read_series(scan.series, folder, list(scan.study_series))
    return canonicalize(find_head(volume), spacing_mm)


def source_digest(paths: Sequence[str | Path]) -> str:
    """SHA-256 over the files' own SHA-256 digests, sorted: the same for the same files,
    whatever their names, order or folder."""
    digests = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digests.append(h.hexdigest())
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()
