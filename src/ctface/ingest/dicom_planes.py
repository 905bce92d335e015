"""Geometry and rescale of every 2-D image in a DICOM header, classic or enhanced multi-frame.

Enhanced (multi-frame) files keep per-frame values in PerFrameFunctionalGroupsSequence and
common ones in SharedFunctionalGroupsSequence (PlanePosition, PlaneOrientation, PixelMeasures,
PixelValueTransformation); classic files and some legacy-converted ones keep them at the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset


@dataclass
class Plane:
    """One 2-D image (a single-frame file or one frame of a multi-frame file) and its geometry."""

    file: int  # index into Series.paths
    frame: int  # frame index; -1 for a single-frame file
    ipp: np.ndarray  # ImagePositionPatient (LPS mm) of the centre of the first pixel
    iop: np.ndarray  # ImageOrientationPatient: row direction (i), column direction (j)
    pixel_spacing: tuple[float, float]  # DICOM order: (between rows = dj, between columns = di)
    shape: tuple[int, int]  # (Rows, Columns)
    slope: float
    intercept: float


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        a = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return a if a.shape == (n,) and np.all(np.isfinite(a)) else None


def _geom(ds: Dataset, groups: list[Dataset], seq: str, attr: str) -> Any:
    """``attr`` from the first functional group holding ``seq`` (per-frame, then shared), else
    from the top level (classic images and some legacy-converted files)."""
    for group in groups:
        if seq in group and len(group[seq].value) and attr in group[seq][0]:
            return group[seq][0].get(attr)
    return ds.get(attr)


def planes_of(ds: Dataset, file: int) -> list[Plane]:
    """Geometry of every frame in ``ds`` (classic single-frame or enhanced multi-frame)."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    multi = "NumberOfFrames" in ds or "SharedFunctionalGroupsSequence" in ds
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    shared = list(ds.get("SharedFunctionalGroupsSequence") or [])[:1]
    per = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    out = []
    for f in range(n_frames):
        groups = per[f : f + 1] + shared
        ipp = _floats(_geom(ds, groups, "PlanePositionSequence", "ImagePositionPatient"), 3)
        iop = _floats(_geom(ds, groups, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        ps = _floats(_geom(ds, groups, "PixelMeasuresSequence", "PixelSpacing"), 2)
        slope = _geom(ds, groups, "PixelValueTransformationSequence", "RescaleSlope")
        inter = _geom(ds, groups, "PixelValueTransformationSequence", "RescaleIntercept")
        if ipp is None or iop is None or ps is None or rows * cols == 0:
            continue
        out.append(
            Plane(
                file=file,
                frame=f if multi else -1,
                ipp=ipp,
                iop=iop,
                pixel_spacing=(float(ps[0]), float(ps[1])),
                shape=(rows, cols),
                slope=1.0 if slope in (None, "") else float(slope),
                intercept=0.0 if inter in (None, "") else float(inter),
            )
        )
    return out
