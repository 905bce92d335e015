"""Read a DICOM CT series (classic one-file-per-slice or enhanced multi-frame) into a CtVolume.

The slice stack is gridded by :mod:`ctface.ingest.stack` (true positions along the normal, tilt
as shear); pixels are read with pydicom, rescaled per slice to HU (slope/intercept, also from
the functional groups of enhanced files), PixelPaddingValue (and PixelPaddingRangeLimit) and
anything below -1024 HU become air.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from ctface.errors import InvalidInputError
from ctface.ingest.checks import HuStats, check_data_bytes, first_line, shown, to_hu
from ctface.ingest.dicom_planes import Plane, header_number, planes_of
from ctface.ingest.dicom_scan import (
    PIXEL_DATA,
    UNDEFINED_LENGTH,
    Series,
    choose,
    has_preamble,
    read_header,
    scan_folder,
    unusable_reason,
)
from ctface.ingest.stack import StackPlan, plan_stack
from ctface.ingest.volume import CtVolume
from ctface.ingest.volume_files import file_format


class _Pixels:
    """Loads the HU image of each plane once; multi-frame files are decoded once per file."""

    def __init__(self, series: Series) -> None:
        self.series = series
        self.frames: dict[int, np.ndarray] = {}
        self.stats = HuStats()

    def _raw(self, plane: Plane) -> np.ndarray:
        path = self.series.paths[plane.file]
        try:
            if plane.frame < 0:
                return _pixels_once(self.series.headers[plane.file])
            if plane.file not in self.frames:
                arr = _pixels_once(self.series.headers[plane.file])
                self.frames = {plane.file: arr.reshape(-1, *arr.shape[-2:])}
            return self.frames[plane.file][plane.frame]
        except Exception as exc:  # pydicom/numpy raise many types on bad files
            codec = _compression(self.series.headers[plane.file])
            if codec is not None:
                raise InvalidInputError(
                    f"Cannot decode the pixel data of {path} ({codec}; a decoder such as "
                    f"pylibjpeg or GDCM may be missing, or the file is corrupt): {first_line(exc)}."
                ) from exc
            raise InvalidInputError(
                f"Cannot read the pixel data of {path} (truncated or corrupt file): "
                f"{first_line(exc)}."
            ) from exc

    def hu(self, plane: Plane) -> np.ndarray:
        raw = self._raw(plane)
        if raw.shape != plane.shape:
            path = self.series.paths[plane.file]
            raise InvalidInputError(f"The pixel data of {path} does not match its Rows/Columns.")
        ds = self.series.headers[plane.file]
        try:
            pad = header_number(ds.get("PixelPaddingValue"), "PixelPaddingValue", np.nan)
            limit = header_number(ds.get("PixelPaddingRangeLimit"), "PixelPaddingRangeLimit", pad)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"{self.series.paths[plane.file]} cannot be used: {exc}"
            ) from exc
        padding = None if np.isnan(pad) else (pad, limit)
        return to_hu(raw, plane.slope, plane.intercept, padding, self.stats)


def _compression(ds: Dataset) -> str | None:
    """The name of a compressed transfer syntax, None if native (or not a transfer syntax)."""
    meta = getattr(ds, "file_meta", None)
    try:
        uid = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else None
        return uid.name if uid is not None and uid.is_compressed else None
    except (ValueError, TypeError, AttributeError):  # a corrupt UID is "not a transfer syntax"
        return None


def _check_pixel_bytes(path: Path, ds: Dataset, plane: Plane) -> None:
    """Refuse pixel data too short for Rows x Columns x frames before decoding allocates it."""
    raw = ds.get_item(PIXEL_DATA) if PIXEL_DATA in ds else None
    if raw is None:
        raise InvalidInputError(f"{path} has no pixel data.")
    value = getattr(raw, "value", None)
    length = len(value) if isinstance(value, bytes | bytearray) else int(getattr(raw, "length", 0))
    undefined = int(getattr(raw, "length", 0)) == UNDEFINED_LENGTH
    bits = _int_or(ds.get("BitsAllocated"), 16)
    n = float(plane.shape[0]) * plane.shape[1] * _int_or(ds.get("SamplesPerPixel"), 1)
    n *= _int_or(ds.get("NumberOfFrames"), 1) if plane.frame >= 0 else 1
    compressed = undefined or _compression(ds) is not None
    check_data_bytes(
        n * max(bits, 1) / 8, length, compressed, f"Cannot read the pixel data of {path}"
    )


def _int_or(value: object, default: int) -> int:
    try:
        return max(1, int(str(value)))
    except ValueError:
        return default


def _pixels_once(ds: Dataset) -> np.ndarray:
    """Pixel array of a header read with deferred PixelData; then drop it from the dataset."""
    arr = np.asarray(ds.pixel_array)
    del ds.PixelData
    ds._pixel_array = None
    return arr


def _assemble(plan: StackPlan, pixels: _Pixels) -> np.ndarray:
    rows, cols = plan.planes[0].shape
    out = np.empty((len(plan.sources), rows, cols), dtype=np.int16)
    cache: dict[int, np.ndarray] = {}
    for k, (a, b, w) in enumerate(plan.sources):
        for old in [x for x in cache if x < a]:
            del cache[old]
        for idx in {a, b}:
            if idx not in cache:
                cache[idx] = pixels.hu(plan.planes[idx])
        if w == 0.0:
            out[k] = cache[a]
        else:
            mix = (1.0 - w) * cache[a].astype(np.float32) + w * cache[b].astype(np.float32)
            out[k] = np.rint(mix).astype(np.int16)
    return out


def read_series(series: Series, source: Path, found: list[Series]) -> CtVolume:
    """The chosen ``series`` as a CtVolume; ``found`` lists every series seen (for metadata)."""
    plan = plan_stack(series.planes)
    for i in sorted({p.file for p in plan.planes}):
        _check_pixel_bytes(series.paths[i], series.headers[i], plan.planes[0])
    pixels = _Pixels(series)
    hu = _assemble(plan, pixels)
    ds = series.first
    notes = list(plan.notes) + pixels.stats.notes()
    if len(found) > 1:
        notes.insert(0, f"chose series {series.uid} ({len(plan.planes)} slices) of {len(found)}")
    meta: dict[str, Any] = {
        "source": str(source),
        "format": "dicom-enhanced" if plan.planes[0].frame >= 0 else "dicom",
        "series_uid": series.uid,
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "series_description": str(ds.get("SeriesDescription", "")),
        "patient_id": str(ds.get("PatientID", "")),
        "study_date": str(ds.get("StudyDate", "")),
        "modality": str(ds.get("Modality", "")),
        "patient_position": str(ds.get("PatientPosition", "")),
        "manufacturer": str(ds.get("Manufacturer", "")),
        "n_files": len(series.paths),
        "files": [str(p) for p in series.paths],
        "chosen_from": [s.summary() for s in found],
        "notes": notes,
        "original_spacing": [round(v, 6) for v in plan.original_spacing],
        "slice_positions_mm": [round(float(v), 4) for v in plan.positions_mm],
    }
    return CtVolume(hu, plan.affine, meta)


def read_dicom_folder(folder: Path, series_uid: str | None = None) -> CtVolume:
    """Scan ``folder`` recursively, choose the CT series (or ``series_uid``) and read it."""
    found = scan_folder(folder)
    series, n_files, broken = found.series, found.n_files, found.broken
    if found.unreadable:
        raise PermissionError(13, "permission denied", str(found.unreadable[0]))
    if n_files == 0:
        raise InvalidInputError(f"The folder {folder} is empty (no files).")
    if not series and broken:
        raise InvalidInputError(
            f"The folder {folder} holds {len(broken)} DICOM files, all truncated or corrupt."
        )
    if not series:
        others = sorted(p.name for p in folder.rglob("*") if file_format(p) and p.is_file())
        hint = f" (it has {others[0]}: pass that file itself)" if others else ""
        raise InvalidInputError(
            f"The folder {folder} holds {n_files} files but no DICOM images{hint}."
        )
    if series_uid is not None:
        match = [s for s in series if s.uid == series_uid]
        if not match:
            uids = ", ".join(s.uid for s in series[:5])
            raise InvalidInputError(f"Series {series_uid} is not in {folder} (found: {uids}).")
        chosen: Series | None = match[0]
        assert chosen is not None
        if chosen.reason:
            raise InvalidInputError(f"Series {series_uid} cannot be used: {chosen.reason}.")
    else:
        chosen = choose(series)
        check_one_patient(folder, series)
    if chosen is None:
        why = "; ".join(f"{s.uid or '(no UID)'}: {s.reason}" for s in series[:3])
        more = f" and {len(series) - 3} more" if len(series) > 3 else ""
        raise InvalidInputError(f"No usable CT series in {folder} ({why}{more}).")
    volume = read_series(chosen, folder, series)
    if broken:
        names = ", ".join(p.name for p in broken[:3]) + (" ..." if len(broken) > 3 else "")
        volume.metadata["notes"].append(
            f"{len(broken)} truncated or corrupt DICOM files skipped ({names})"
        )
    return volume


def check_one_patient(folder: Path, series: list[Series]) -> None:
    """Without ``--series-uid`` a folder is one patient's: usable CT series of two patients
    are refused (which one is meant cannot be guessed)."""
    patients = sorted({shown(str(s.first.get("PatientID", "")).strip())
                       for s in series if s.reason is None})  # fmt: skip
    if len(patients) > 1:
        raise InvalidInputError(
            f"The folder {folder} holds CT series of {len(patients)} patients (PatientID "
            f"{', '.join(patients[:3])}): pass one patient's folder, or --series-uid."
        )


def read_dicom_file(path: Path, series_uid: str | None = None) -> CtVolume:
    """An enhanced multi-frame file, or one slice of a classic series (its folder is read)."""
    ds = read_header(path)
    if ds is None:
        if has_preamble(path):
            raise InvalidInputError(f"{path} is a truncated or corrupt DICOM file.")
        raise InvalidInputError(f"{path} is not a DICOM, NIfTI, NRRD or MetaImage file.")
    if "Rows" not in ds:
        sop = shown(ds.get("SOPClassUID", "unknown"))
        raise InvalidInputError(f"{path} is a DICOM file without an image (SOP class {sop}).")
    uid = str(ds.get("SeriesInstanceUID", ""))
    if series_uid is not None and series_uid != uid:
        raise InvalidInputError(f"{path} belongs to series {shown(uid)}, not {series_uid}.")
    if "NumberOfFrames" not in ds:
        vol = read_dicom_folder(path.parent, uid)
        vol.metadata["notes"].insert(0, f"single slice given: read series {uid} from its folder")
        return vol
    try:
        planes = planes_of(ds, 0)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path} cannot be used: {exc}") from exc
    series = Series(uid, [path], [ds], planes)
    series.reason = unusable_reason(series)
    if series.reason:
        raise InvalidInputError(f"{path} cannot be used: {series.reason}.")
    return read_series(series, path, [series])
