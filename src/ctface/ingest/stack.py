"""Turn a set of parallel DICOM planes into a regular (possibly sheared) voxel grid.

Slices are sorted by their true position along the slice normal ``n = row x col``, d = IPP . n.
- Gantry tilt: the IPPs step along ``n + s`` with an in-plane shear ``s`` (fitted by least
  squares; tilt = atan|s|). The output affine's k column is ``(n + s) * step``, so every voxel
  keeps its true LPS position; ``canonicalize`` later removes the shear when it resamples.
- Non-uniform steps or missing slices: the stack is resampled onto a uniform grid from the
  first to the last position with step ``max(smallest step, median step / 2)``, by linear
  interpolation between the two original slices that bracket each grid position; a grid
  position within 0.01 mm of an original slice copies it exactly. Written here rather than with
  SimpleITK/scipy because it is a 1-D interpolation along the sorted slice list: no 3-D
  resampler is needed and at most two source slices are held in memory. A uniform stack is
  used as it is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ctface.errors import InvalidInputError
from ctface.ingest.checks import (
    MAX_SLICES,
    MAX_SPACING_MM,
    check_shape,
    check_spacing,
    check_voxels,
)
from ctface.ingest.dicom_planes import Plane

UNIFORM_TOL_MM = 0.01
DUPLICATE_TOL_MM = 0.01


@dataclass
class StackPlan:
    planes: list[Plane]  # sorted by position along the normal, duplicates removed
    positions_mm: np.ndarray  # d = IPP . n of each plane in ``planes``
    affine: np.ndarray  # voxel (i, j, k, 1) -> LPS of the output grid
    sources: list[tuple[int, int, float]]  # output slice -> (a, b, weight of b) into ``planes``
    original_spacing: tuple[float, float, float]  # (di, dj, median step)
    notes: list[str] = field(default_factory=list)


def _key(p: Plane) -> tuple[object, ...]:
    return (tuple(np.round(p.iop, 3)), p.shape, tuple(np.round(p.pixel_spacing, 4)))


def _main_orientation(planes: list[Plane], notes: list[str]) -> list[Plane]:
    """The images of the commonest orientation, size and pixel spacing; others are ignored."""
    groups = Counter(_key(p) for p in planes)
    main, n_main = groups.most_common(1)[0]
    if n_main < len(planes):
        notes.append(f"{len(planes) - n_main} images with another orientation or size ignored")
    return [p for p in planes if _key(p) == main]


def _slice_axes(plane: Plane) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row and column directions and the slice normal ``row x col`` of a plane."""
    r, c = plane.iop[:3], plane.iop[3:]
    if abs(np.linalg.norm(r) - 1) > 1e-2 or abs(np.linalg.norm(c) - 1) > 1e-2 or abs(r @ c) > 1e-2:
        raise InvalidInputError("ImageOrientationPatient is not two orthogonal unit vectors.")
    r, c = r / np.linalg.norm(r), c / np.linalg.norm(c)
    return r, c, np.cross(r, c)


def _slice_positions(
    planes: list[Plane], n: np.ndarray, notes: list[str]
) -> tuple[list[Plane], np.ndarray]:
    """Planes sorted by position along the normal (d = IPP . n), duplicate positions dropped."""
    d_all = np.array([p.ipp @ n for p in planes])
    order = np.argsort(d_all, kind="stable")
    keep = [int(order[0])]
    for idx in order[1:]:
        if d_all[idx] - d_all[keep[-1]] > DUPLICATE_TOL_MM:
            keep.append(int(idx))
    if len(keep) < len(planes):
        notes.append(f"{len(planes) - len(keep)} images at duplicate positions ignored")
    return [planes[i] for i in keep], d_all[keep]


def _gantry_tilt(
    ipp: np.ndarray, d: np.ndarray, n: np.ndarray, pixel_mm: float, notes: list[str]
) -> np.ndarray:
    """In-plane shear per mm along the normal of the slice positions (zero without tilt)."""
    # In-plane offset of each IPP, linear in d.
    rel = ipp - ipp[0]
    off = rel - np.outer(d - d[0], n)
    t = (d - d[0])[:, None]
    shear = np.linalg.lstsq(t, off, rcond=None)[0][0]
    resid = np.abs(off - t * shear).max()
    if resid > 0.5 * pixel_mm:
        raise InvalidInputError(
            f"Slice positions do not lie on one line (off by up to {resid:.1f} mm); "
            "the series mixes several stacks."
        )
    tilt = float(np.degrees(np.arctan(np.linalg.norm(shear))))
    if tilt <= 0.01:
        return np.zeros(3)
    notes.append(f"gantry tilt {tilt:.1f} deg corrected (sheared slice stack)")
    return shear


def _uniform_grid(
    d: np.ndarray, median: float, notes: list[str]
) -> tuple[float, list[tuple[int, int, float]]]:
    """Output slice step and, per output slice, the two source slices and the weight of the
    second (a uniform stack is used as it is)."""
    gaps = np.diff(d)
    if gaps.max() - gaps.min() <= UNIFORM_TOL_MM:
        step = float((d[-1] - d[0]) / (len(d) - 1))
        return step, [(k, k, 0.0) for k in range(len(d))]
    target = max(float(gaps.min()), median / 2)
    n_out = int(round((d[-1] - d[0]) / target)) + 1
    if n_out > MAX_SLICES:  # before the grid is built: a few tiny steps among large ones
        raise InvalidInputError(
            f"Slice steps {gaps.min():.2f}-{gaps.max():.2f} mm would be resampled to {n_out} "
            f"slices (at most {MAX_SLICES})."
        )
    step = float((d[-1] - d[0]) / (n_out - 1))
    grid = d[0] + step * np.arange(n_out)
    b = np.clip(np.searchsorted(d, grid, side="right"), 1, len(d) - 1)
    a = b - 1
    w = np.clip((grid - d[a]) / (d[b] - d[a]), 0.0, 1.0)
    sources = []
    for g, ak, bk, wk in zip(grid, a.tolist(), b.tolist(), w.tolist(), strict=True):
        if abs(g - d[ak]) <= DUPLICATE_TOL_MM:  # on an original slice: copy it
            sources.append((ak, ak, 0.0))
        elif abs(g - d[bk]) <= DUPLICATE_TOL_MM:
            sources.append((bk, bk, 0.0))
        else:
            sources.append((ak, bk, wk))
    notes.append(
        f"non-uniform slice steps {gaps.min():.2f}-{gaps.max():.2f} mm resampled to "
        f"{step:.3f} mm ({len(d)} -> {n_out} slices)"
    )
    if gaps.max() > 1.5 * median:
        notes.append(f"missing slices: largest gap {gaps.max():.2f} mm interpolated")
    return step, sources


def plan_stack(planes: list[Plane]) -> StackPlan:
    """Sort, check and grid ``planes``; raise InvalidInputError when they cannot form a volume."""
    notes: list[str] = []
    planes = _main_orientation(planes, notes)
    r, c, n = _slice_axes(planes[0])
    dj, di = planes[0].pixel_spacing
    check_spacing((di, dj), "pixel spacing")
    planes, d = _slice_positions(planes, n, notes)
    rows, cols = planes[0].shape
    check_shape(cols, rows, len(planes))
    gaps = np.diff(d)
    median = float(np.median(gaps))
    check_spacing([median], "slice spacing")
    if gaps.max() > MAX_SPACING_MM:
        raise InvalidInputError(
            f"Slices are missing: a gap of {gaps.max():.1f} mm between positions "
            f"{d[np.argmax(gaps)]:.1f} and {d[np.argmax(gaps) + 1]:.1f} mm."
        )
    ipp = np.array([p.ipp for p in planes])
    shear = _gantry_tilt(ipp, d, n, min(di, dj), notes)
    step, sources = _uniform_grid(d, median, notes)
    check_shape(cols, rows, len(sources))
    check_voxels(float(rows) * cols * len(sources))
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1] = r * di, c * dj
    affine[:3, 2] = (n + shear) * step
    affine[:3, 3] = ipp[0]
    return StackPlan(planes, d, affine, sources, (di, dj, median), notes)
