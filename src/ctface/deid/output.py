"""Defaced scans written in the format they came in: a DICOM series -> a DICOM series, NIfTI /
NRRD / MetaImage -> the same.

The cut (``deid.deface.FaceCut``) is planned on the canonical 1 mm grid and carried to every
voxel of the source by its patient position (nearest canonical voxel), so the output keeps the
source's own grid, pixel type and rescale; voxels outside the cut are bit-for-bit unchanged.

DICOM headers are de-identified by ``dicom-anonymizer`` (the DICOM PS3.15 Table E.1-1 Basic
Profile actions, 2026c tables; private tags removed; new Study, Series, SOP and Frame of
Reference UIDs, the same for every file of the series), then marked: PatientIdentityRemoved
YES, DeidentificationMethod, and DeidentificationMethodCodeSequence DCM 113100 (Basic
Application Confidentiality Profile) and 113102 (Clean Recognizable Visual Features Option).
Classic single-frame CT series only (enhanced multi-frame files are refused).

Volume files keep only their geometry and voxels (SimpleITK drops the source's free-text
header fields). Outputs are written to a hidden folder in ``out`` and moved into place when
whole: a refused or failed scan leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ctface.deid.deface import AIR, AIR_HU, TISSUE, FaceCut
from ctface.errors import InvalidInputError, OutputError
from ctface.ingest.volume import CtVolume

DICOM_TABLES = "dicomfields_2026c"  # dicom-anonymizer's PS3.15 tables
CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113102", "Clean Recognizable Visual Features Option"),
)


def _replace_values(
    values: np.ndarray, labels: np.ndarray, air: float, tissue: float,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:  # fmt: skip
    """``values`` with AIR / TISSUE labels set to the stored values of those HU, clamped to
    ``limits`` (default: the dtype's range; DICOM: the BitsStored range)."""
    if limits is None and values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        limits = (float(info.min), float(info.max))
    out = values.copy()
    for label, v in ((AIR, air), (TISSUE, tissue)):
        if limits is not None:
            v = float(np.clip(np.rint(v), *limits))
        out[labels == label] = v
    return out


def _stored_range(ds: Any) -> tuple[float, float]:
    bits = int(ds.BitsStored)
    if int(getattr(ds, "PixelRepresentation", 0)) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A hidden folder in ``out`` to write into; removed on leaving (moved-out files stay)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".deface-", dir=out))
    except OSError as e:
        raise OutputError(f"cannot write to {out}: {e.strerror or e}") from e
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_in(staged: Path, final: Path) -> None:
    if final.exists():
        raise OutputError(f"{final} already exists (choose another --out)")
    try:
        os.replace(staged, final)
    except OSError as e:
        raise OutputError(f"cannot write {final}: {e.strerror or e}") from e


# --- DICOM ---------------------------------------------------------------------------------


def _slice_affine(ds: Any) -> np.ndarray:
    """Voxel (column, row, 0) -> LPS mm of a classic DICOM slice."""
    ipp = np.asarray(ds.ImagePositionPatient, float)
    iop = np.asarray(ds.ImageOrientationPatient, float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    a = np.eye(4)
    a[:3, 0], a[:3, 1], a[:3, 3] = iop[:3] * dc, iop[3:] * dr, ipp
    a[:3, 2] = np.cross(iop[:3], iop[3:])
    return a


def _mark(ds: Any, method: str) -> None:
    from pydicom.dataset import Dataset

    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [
        f"PS3.15 Basic Profile (dicom-anonymizer, {DICOM_TABLES})",
        f"face {'removed' if method == 'remove' else 'replaced by a generic face'} (ctface deface)",
    ]
    seq = []
    for value, meaning in CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = seq
    image_type = list(getattr(ds, "ImageType", ["ORIGINAL", "PRIMARY"]))
    ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]


def _anonymizer() -> Any:
    """dicom-anonymizer's Basic Profile, with a fresh UID map (new UIDs for this series)."""
    from dicomanonymizer import simpledicomanonymizer as anon

    anon.dictionary.clear()
    return anon


def _defaced_dicom(path: Path, cut: FaceCut, anon: Any) -> Any:
    import pydicom

    ds = pydicom.dcmread(path)
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise InvalidInputError(
            f"{path.name} is an enhanced multi-frame DICOM file: deface writes classic "
            "single-frame CT series only"
        )
    reached = cut.on_grid(_slice_affine(ds), (1, int(ds.Rows), int(ds.Columns)))
    if reached is not None and (reached[1] != 0).any():
        (_, rows, cols), labels = reached
        m = float(getattr(ds, "RescaleSlope", 1) or 1)
        b = float(getattr(ds, "RescaleIntercept", 0) or 0)
        pixels = ds.pixel_array.copy()
        pixels[rows, cols] = _replace_values(
            pixels[rows, cols], labels[0], (AIR_HU - b) / m, (cut.tissue_hu - b) / m
        )
        ds.set_pixel_data(pixels, ds.PhotometricInterpretation, int(ds.BitsStored),
                          generate_instance_uid=False)  # fmt: skip
    anon.anonymize_dataset(
        ds,
        None,
        True,
        lambda: anon.initialize_actions(DICOM_TABLES),
    )
    _mark(ds, str(cut.method))
    return ds


def _slice_key(path: Path) -> tuple[object, ...]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    iop = tuple(round(float(v), 3) for v in getattr(ds, "ImageOrientationPatient", []))
    return iop, int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0))


def stack_files(files: list[Path]) -> tuple[list[Path], int]:
    """The files of the series' image stack (the most common orientation and size), and how
    many others there are (localizers, odd slices): those are not written."""
    from collections import Counter

    keys = [_slice_key(f) for f in files]
    common = Counter(keys).most_common(1)[0][0]
    kept = [f for f, k in zip(files, keys, strict=True) if k == common]
    return kept, len(files) - len(kept)


def write_dicom(source: CtVolume, cut: FaceCut, out: Path, name: str) -> tuple[Path, int]:
    """The source's DICOM slices defaced and de-identified, as ``out/name/IM00001.dcm``...;
    files outside the image stack (localizers, other orientations) are left out (their number
    is returned): they are not cut the same way and must not be shared as if they were."""
    files = [Path(p) for p in source.metadata.get("files", [])]
    if source.metadata.get("format") != "dicom" or not files:
        raise InvalidInputError("deface writes classic single-frame DICOM CT series only")
    files, skipped = stack_files(files)
    anon = _anonymizer()
    final = out / name
    with staging(out) as tmp:
        folder = tmp / name
        folder.mkdir()
        for n, path in enumerate(files, 1):
            ds = _defaced_dicom(path, cut, anon)
            ds.save_as(folder / f"IM{n:05d}.dcm", enforce_file_format=True)
        _move_in(folder, final)
    return final, skipped


# --- NIfTI / NRRD / MetaImage --------------------------------------------------------------


def _image_affine(image: Any) -> np.ndarray:
    """Voxel (i, j, k) -> LPS mm of a SimpleITK image."""
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = d * np.asarray(image.GetSpacing(), float)
    a[:3, 3] = image.GetOrigin()
    return a


def _suffix(name: str) -> str:
    return ".nii.gz" if name.lower().endswith(".nii.gz") else Path(name).suffix


def write_volume_file(source: CtVolume, cut: FaceCut, out: Path, name: str) -> tuple[Path, int]:
    """The source volume file defaced, in its own format, as ``out/name``."""
    import SimpleITK as sitk

    path = Path(source.metadata["files"][0])
    image = sitk.ReadImage(str(path))
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(f"{path.name}: deface writes single-channel 3-D volumes only")
    arr = sitk.GetArrayFromImage(image)
    if arr.shape != source.hu.shape or not np.allclose(
        _image_affine(image), source.affine_lps, atol=1e-3
    ):
        raise InvalidInputError(
            f"{path.name}: its geometry reads differently in SimpleITK and in the reader (a "
            "NIfTI whose sform and qform disagree?): deface will not write a scan whose cut "
            "could land off the face"
        )
    reached = cut.on_grid(_image_affine(image), arr.shape)
    if reached is not None:
        box, labels = reached
        arr[box] = _replace_values(arr[box], labels, AIR_HU, cut.tissue_hu)
    result = sitk.GetImageFromArray(arr)
    result.CopyInformation(image)  # geometry only: the source's header fields are not copied
    final = out / name
    with staging(out) as tmp:
        sitk.WriteImage(result, str(tmp / name), useCompression=_suffix(name) != ".nii")
        for f in tmp.iterdir():  # a .mhd / .nhdr comes with its data file
            _move_in(f, out / f.name)
    return final, 0
