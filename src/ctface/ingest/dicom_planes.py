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
from pydicom.sequence import Sequence

from ctface.errors import InvalidInputError
from ctface.ingest.checks import MAX_SLICES, shown


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


def header_number(value: Any, name: str, default: float) -> float:
    """A finite number from a header value ("" or absent: ``default``)."""
    if value is None or value == "":
        return default
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if not np.isfinite(x):
        raise InvalidInputError(f"{name} {shown(value)!r} is not a finite number.")
    return x


def _frames(ds: Dataset) -> int:
    """NumberOfFrames (1 if absent), refused when absurd before any per-frame work."""
    n = header_number(ds.get("NumberOfFrames", 1), "NumberOfFrames", 1)
    if not 1 <= n <= MAX_SLICES or n != int(n):
        raise InvalidInputError(f"NumberOfFrames {n:.0f} is absurd (1 to {MAX_SLICES}).")
    return int(n)


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    """The items of a sequence (none if absent or not a sequence, as in a corrupt file)."""
    value = ds.get(keyword)
    return [x for x in value if isinstance(x, Dataset)] if isinstance(value, Sequence) else []


def _geom(ds: Dataset, groups: list[Dataset], seq: str, attr: str) -> Any:
    """``attr`` from the first functional group holding ``seq`` (per-frame, then shared), else
    from the top level (classic images and some legacy-converted files)."""
    for group in groups:
        items = _items(group, seq)
        if items and attr in items[0]:
            return items[0].get(attr)
    return ds.get(attr)


def planes_of(ds: Dataset, file: int) -> list[Plane]:
    """Geometry of every frame in ``ds`` (classic single-frame or enhanced multi-frame)."""
    rows = int(header_number(ds.get("Rows"), "Rows", 0))
    cols = int(header_number(ds.get("Columns"), "Columns", 0))
    multi = "NumberOfFrames" in ds or "SharedFunctionalGroupsSequence" in ds
    n_frames = _frames(ds)
    shared = _items(ds, "SharedFunctionalGroupsSequence")[:1]
    per = _items(ds, "PerFrameFunctionalGroupsSequence")
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
                slope=header_number(slope, "RescaleSlope", 1.0),
                intercept=header_number(inter, "RescaleIntercept", 0.0),
            )
        )
    return out
