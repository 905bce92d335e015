"""Public entry points: ``read_ct`` (native geometry) and ``load_ct`` (read, head, canonical).

Formats: a folder of DICOM files (any names, nested, several series), one DICOM file (enhanced
multi-frame; a single classic slice reads its series from the folder), NIfTI (.nii, .nii.gz),
NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd). Every failure is a typed, one-sentence error.
"""

from __future__ import annotations

from pathlib import Path

from ctface.errors import InvalidInputError
from ctface.ingest.canonical import DEFAULT_SPACING_MM, canonicalize
from ctface.ingest.dicom_read import read_dicom_file, read_dicom_folder
from ctface.ingest.head import find_head
from ctface.ingest.volume import CtVolume
from ctface.ingest.volume_files import file_format, read_volume_file


def read_ct(path: str | Path, *, series_uid: str | None = None) -> CtVolume:
    """Read a CT in its native geometry (DICOM stacks regridded along the true slice positions).

    ``series_uid`` picks one series of a DICOM folder instead of the automatic choice.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{p} does not exist.")
    try:
        if p.is_dir():
            return read_dicom_folder(p, series_uid)
        fmt = file_format(p)
        if fmt is None:
            return read_dicom_file(p, series_uid)
        if series_uid is not None:
            raise InvalidInputError(f"series_uid applies only to DICOM input, not to {p.name}.")
        return read_volume_file(p, fmt)
    except PermissionError as exc:
        raise InvalidInputError(f"{exc.filename or p} cannot be read (permission denied).") from exc
    except MemoryError as exc:
        raise InvalidInputError(f"{p} is too large to read into memory.") from exc


def load_ct(
    path: str | Path,
    *,
    series_uid: str | None = None,
    spacing_mm: float = DEFAULT_SPACING_MM,
    crop_head: bool = True,
) -> CtVolume:
    """Read ``path``, crop to the head (``crop_head``) and resample to the canonical grid."""
    volume = read_ct(path, series_uid=series_uid)
    if crop_head:
        volume = find_head(volume)
    return canonicalize(volume, spacing_mm)
