"""Write a :class:`CtVolume` as NIfTI-1 or as a DICOM CT series (deterministic, atomic).

Units: HU for voxel values, mm for every length, LPS patient coordinates in DICOM and RAS in
NIfTI. The same inputs always give byte-identical files (no clock, no randomness).
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    PYDICOM_ROOT_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from ctface import __version__
from ctface.errors import InvalidInputError, OutputError
from ctface.files import atomic_path
from ctface.ingest.volume import CtVolume

__all__ = ["DicomSeriesInfo", "make_uid", "write_dicom_series", "write_nifti"]


@dataclass(frozen=True)
class DicomSeriesInfo:
    """Patient/study/series identity of an exported series; thickness in mm, kVp in kV."""

    patient_id: str
    patient_name: str
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    series_number: int = 1
    series_description: str = "ctface synthetic head CT"
    slice_thickness_mm: float | None = None  # None: the slice spacing
    signed: bool = True  # int16 + intercept 0, else uint16 + intercept -1024
    kvp: float = 120.0
    convolution_kernel: str = "STANDARD"
    manufacturer: str = "ctface"
    patient_sex: str = "O"
    patient_age: str | None = None  # e.g. "045Y"
    pixel_padding_value: int | None = None  # in HU; written in stored units


def make_uid(*parts: str) -> str:
    """A DICOM UID that depends only on ``parts`` (SHA-512 under the pydicom root)."""
    if not parts:
        raise ValueError("make_uid needs at least one string")
    return str(generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=list(parts)))


def _ds(x: float) -> str:
    """A DS string (<= 16 chars) for ``x``, rounded to 1e-8 so float noise does not show."""
    return format_number_as_ds(round(float(x), 8) + 0.0)


def _stored(hu: np.ndarray, signed: bool) -> np.ndarray:
    """HU -> stored values: int16 (clipped), or uint16 = HU + 1024 (HU clipped to -1024..64511)."""
    a = np.asarray(hu)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise InvalidInputError("The volume contains NaN or infinite HU values.")
        a = np.rint(a)
    a = a.astype(np.int64)
    if signed:
        return np.clip(a, -32768, 32767).astype("<i2")
    return (np.clip(a, -1024, 64511) + 1024).astype("<u2")


def write_nifti(volume: CtVolume, path: Path) -> Path:
    """Write ``volume`` as int16 HU NIfTI-1 (``.nii``/``.nii.gz``, RAS mm affine); return path."""
    path = Path(path)
    gz = path.name.endswith(".nii.gz")
    if not (gz or path.name.endswith(".nii")):
        raise InvalidInputError(f"NIfTI output must end in .nii or .nii.gz, got {path.name}.")
    hu = volume.hu if volume.hu.dtype == np.int16 else _stored(volume.hu, signed=True)
    # hu[k, j, i] in C order is exactly NIfTI's on-disk order of data[i, j, k]: hu.T is a view.
    img = nib.Nifti1Image(hu.T, volume.affine_ras)
    img.set_sform(volume.affine_ras, code=1)
    img.set_qform(volume.affine_ras, code=1)
    img.header.set_xyzt_units("mm")
    img.header.set_data_dtype(np.int16)
    raw = img.to_bytes()
    if gz:
        # ISA-L's gzip (python-isal): ~4x faster than zlib level 1 and smaller at level 2.
        raw = igzip.compress(raw, compresslevel=2, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)
    return path


def _check_geometry(volume: CtVolume) -> np.ndarray:
    """Return the 3x3 direction matrix; raise if it cannot describe a plain CT series."""
    d = volume.direction
    if not np.all(np.isfinite(d)) or min(volume.spacing) <= 0:
        raise InvalidInputError("The volume affine is degenerate (zero or non-finite spacing).")
    normal = np.cross(d[:, 0], d[:, 1])
    if abs(d[:, 0] @ d[:, 1]) > 1e-4 or abs(abs(d[:, 2] @ normal) - 1.0) > 1e-4:
        raise InvalidInputError(
            "The volume affine is sheared (rows, columns and slices are not orthogonal), "
            "so it cannot be written as a DICOM CT series."
        )
    return d


def _base_dataset(volume: CtVolume, info: DicomSeriesInfo, d: np.ndarray) -> Dataset:
    """The attributes shared by every slice of the series."""
    di, dj, dk = volume.spacing
    ni, nj, _ = volume.shape_ijk
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    for what in ("Study", "Series", "Acquisition", "Content"):
        setattr(ds, f"{what}Date", info.study_date)
        setattr(ds, f"{what}Time", info.study_time)
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = info.manufacturer
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = info.series_description
    ds.PatientName = info.patient_name
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = info.patient_sex
    if info.patient_age is not None:
        ds.PatientAge = info.patient_age
    ds.BodyPartExamined = "HEAD"
    thickness = dk if info.slice_thickness_mm is None else info.slice_thickness_mm
    ds.SliceThickness = _ds(thickness)
    ds.KVP = _ds(info.kvp)
    ds.SpacingBetweenSlices = _ds(dk)
    ds.ConvolutionKernel = info.convolution_kernel
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = info.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = info.series_number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [_ds(v) for v in (*d[:, 0], *d[:, 1])]
    ds.FrameOfReferenceUID = info.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = nj, ni
    ds.PixelSpacing = [_ds(dj), _ds(di)]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if info.signed else 0
    if info.pixel_padding_value is not None:
        pad = int(_stored(np.array([info.pixel_padding_value]), info.signed)[0])
        ds.add_new(0x00280120, "SS" if info.signed else "US", pad)
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.RescaleIntercept = "0" if info.signed else "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def write_dicom_series(volume: CtVolume, folder: Path, info: DicomSeriesInfo) -> list[Path]:
    """Write one CT Image Storage file per slice (IM00001.dcm, ...) into a new/empty folder."""
    folder = Path(folder)
    d = _check_geometry(volume)
    ni, nj, nk = volume.shape_ijk
    if max(ni, nj) > 65535:
        raise InvalidInputError(f"Slices of {ni}x{nj} pixels are too large for DICOM.")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OutputError(f"Output folder {folder} already exists and is not empty.")
    base = _base_dataset(volume, info, d)
    normal = np.cross(d[:, 0], d[:, 1])
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        for n in count():
            tmp = folder.with_name(f".{folder.name}.{os.getpid()}.{n}.partial")
            try:
                tmp.mkdir()
                break
            except FileExistsError:
                continue
    except OSError as exc:
        raise OutputError(
            f"Cannot create the output folder {folder}: {exc.strerror or exc}."
        ) from exc
    names = [f"IM{k + 1:05d}.dcm" for k in range(nk)]
    try:
        for k in range(nk):
            ds = copy.deepcopy(base)
            sop_uid = make_uid(info.series_uid, str(k))
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = k + 1
            ipp = volume.ijk_to_lps(np.array([0.0, 0.0, float(k)]))[0]
            ds.ImagePositionPatient = [_ds(v) for v in ipp]
            ds.SliceLocation = _ds(ipp @ normal)
            ds.add_new(0x7FE00010, "OW", _stored(volume.hu[k], info.signed).tobytes())
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = UID(sop_uid)
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            meta.ImplementationVersionName = f"CTFACE_{__version__}"
            ds.file_meta = meta
            ds.save_as(tmp / names[k], enforce_file_format=True)
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            msg = f"Cannot write the DICOM series to {folder}: {exc.strerror or exc}."
            raise OutputError(msg) from exc
        raise
    return [folder / name for name in names]
