"""Read NIfTI (nibabel), NRRD and MetaImage (SimpleITK) files as CtVolumes in LPS.

NIfTI stores a voxel -> RAS affine; nibabel gives it unchanged (sform if set, else qform, shear
included) and we flip x, y to LPS. SimpleITK reports NRRD/MetaImage geometry already in LPS
(origin, spacing, direction). Values must already be HU (rescale/scl_slope applied by the
readers); a file without any air (1st percentile above -200) is refused as not HU. Headers are
checked before any voxel is read (:mod:`ctface.ingest.volume_headers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ctface.errors import InvalidInputError
from ctface.ingest.checks import HuStats, check_affine, check_shape, first_line, to_hu
from ctface.ingest.volume import LPS_TO_RAS, CtVolume
from ctface.ingest.volume_headers import check_metaimage, check_nifti, check_nrrd

SUFFIXES = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}


def file_format(path: Path) -> str | None:
    """'nifti', 'nrrd', 'metaimage' from the file name, or None."""
    name = path.name.lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def _nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib  # imported here: 0.13 s that DICOM input does not need

    img = nib.load(path)
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InvalidInputError(f"{path} is not a NIfTI image.")
    check_nifti(path, img.header, path.name.lower().endswith(".gz"))
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InvalidInputError(f"{path} is {len(img.shape)}-D; a 3-D CT volume is needed.")
    data = np.asanyarray(img.dataobj).reshape(shape)
    # data[i, j, k] -> hu[k, j, i]
    return np.ascontiguousarray(data.T), LPS_TO_RAS @ img.affine


def _itk(path: Path, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    (check_nrrd if fmt == "nrrd" else check_metaimage)(path)
    img = sitk.ReadImage(str(path))
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(f"{path} has several values per voxel (colour or vector image).")
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3:
        raise InvalidInputError(f"{path} is {img.GetDimension()}-D; a 3-D CT volume is needed.")
    direction = np.array(img.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(img.GetSpacing())
    affine[:3, 3] = img.GetOrigin()
    return sitk.GetArrayFromImage(img), affine  # array is [k, j, i]


def read_volume_file(path: Path, fmt: str) -> CtVolume:
    """Read ``path`` (format ``fmt`` from :func:`file_format`) as an int16 HU CtVolume."""
    try:
        with path.open("rb"):  # the readers would hide a permission error in their own words
            pass
        data, affine = _nifti(path) if fmt == "nifti" else _itk(path, fmt)
    except (InvalidInputError, PermissionError):
        raise
    except Exception as exc:  # nibabel/SimpleITK raise many types on bad files
        raise InvalidInputError(
            f"Cannot read {path} as {fmt} (truncated or corrupt file?): {first_line(exc)}."
        ) from exc
    if data.dtype.kind not in "iuf":
        raise InvalidInputError(f"{path} holds {data.dtype} values, not numbers.")
    check_affine(affine)
    nk, nj, ni = data.shape
    check_shape(ni, nj, nk)
    if data.size and float(np.percentile(data[:: max(1, nk // 16)], 1)) > -200:
        raise InvalidInputError(
            f"{path} does not look like Hounsfield units (no air below -200 in the image)."
        )
    stats = HuStats()
    hu = data if data.dtype == np.int16 and data.min() >= -1024 else to_hu(data, stats=stats)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    meta: dict[str, Any] = {
        "source": str(path),
        "format": fmt,
        "series_uid": None,
        "study_uid": None,
        "series_description": "",
        "patient_id": "",
        "study_date": "",
        "modality": "",
        "n_files": 1,
        "files": [str(path)],
        "chosen_from": [],
        "notes": stats.notes(),
        "original_spacing": [round(float(v), 6) for v in spacing],
    }
    return CtVolume(np.ascontiguousarray(hu), affine, meta)
