"""Find the head in a CT of any field of view and crop the volume to it.

On a coarse (4 mm) canonical copy: body = voxels above -500 HU, opened with a 3x3x3 cross (drops
thin shells: table top, head-holder shell, tubes) and reduced to its largest connected part.
The vertex is the highest axial slice with at least 4 cm2 of body. The volume is cropped (in
its own voxel grid, no resampling) to the slab from ``depth_mm`` below the vertex to 10 mm above
it, along the voxel axis closest to superior; nothing is cropped when the volume does not reach
that far down. No body at all, or a body that fills the top slice with more than 400 cm2 (a
trunk: an adult head is at most ~300 cm2 in cross-section) -> NoFaceError.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy import ndimage

from ctface.errors import NoFaceError
from ctface.ingest.canonical import canonicalize
from ctface.ingest.volume import CtVolume

COARSE_MM = 4.0
BODY_HU = -500.0
MIN_TOP_AREA_MM2 = 400.0  # 4 cm2
MAX_HEAD_AREA_MM2 = 40000.0  # 400 cm2
MIN_BODY_MM3 = 50_000.0  # 50 cm3
HEAD_DEPTH_MM = 250.0
MARGIN_MM = 10.0


def body_profile(volume: CtVolume) -> tuple[np.ndarray, np.ndarray]:
    """Body cross-section area (mm2) of each 4 mm axial slice and the slice heights (LPS z, mm)."""
    coarse = canonicalize(volume, COARSE_MM)
    body = ndimage.binary_opening(coarse.hu > BODY_HU, ndimage.generate_binary_structure(3, 1))
    labels, n = ndimage.label(body)
    if n:
        sizes = np.bincount(labels.ravel())[1:]
        body = labels == 1 + int(np.argmax(sizes))
    area = body.sum(axis=(1, 2)) * COARSE_MM**2
    z = coarse.origin[2] + COARSE_MM * np.arange(len(area))
    return area.astype(float), z


def _crop_axis(volume: CtVolume, lo: float, hi: float) -> tuple[int, int, int]:
    """Voxel axis closest to superior and the index range whose planes meet z in [lo, hi]."""
    a = volume.affine_lps
    axis = int(np.argmax(np.abs(a[2, :3]) / np.asarray(volume.spacing)))
    shape = volume.shape_ijk
    others = [o for o in range(3) if o != axis]
    spread = [a[2, o] * (shape[o] - 1) for o in others]
    idx = np.arange(shape[axis])
    z_plane = a[2, 3] + a[2, axis] * idx
    zmin = z_plane + sum(min(0.0, s) for s in spread)
    zmax = z_plane + sum(max(0.0, s) for s in spread)
    keep = np.nonzero((zmax >= lo) & (zmin <= hi))[0]
    return axis, int(keep[0]), int(keep[-1]) + 1


def find_head(volume: CtVolume, depth_mm: float = HEAD_DEPTH_MM) -> CtVolume:
    """Crop ``volume`` to the head: from the top of the body to ``depth_mm`` below it."""
    area, z = body_profile(volume)
    if area.sum() * COARSE_MM < MIN_BODY_MM3:
        raise NoFaceError(
            "No head in the field of view: no body or skin (nothing denser than -500 HU) found."
        )
    filled = np.nonzero(area >= MIN_TOP_AREA_MM2)[0]
    top_k = int(filled[-1]) if len(filled) else int(np.nonzero(area)[0][-1])
    if top_k == len(area) - 1 and area[top_k] > MAX_HEAD_AREA_MM2:
        raise NoFaceError(
            f"No head in the field of view: the body fills the top of the scan "
            f"({area[top_k] / 100:.0f} cm2 at its top slice; a head is under "
            f"{MAX_HEAD_AREA_MM2 / 100:.0f} cm2)."
        )
    z_top = float(z[top_k] + COARSE_MM / 2)
    lo, hi = z_top - depth_mm, z_top + MARGIN_MM
    axis, start, stop = _crop_axis(volume, lo, hi)
    meta: dict[str, Any] = copy.deepcopy(volume.metadata)
    n_axis = volume.shape_ijk[axis]
    meta["head"] = {"top_z_mm": round(z_top, 2), "cropped": stop - start < n_axis}
    meta.setdefault("notes", [])
    if stop - start == n_axis:
        return CtVolume(volume.hu, volume.affine_lps, meta)
    sl = [slice(None)] * 3
    sl[2 - axis] = slice(start, stop)
    affine = volume.affine_lps.copy()
    affine[:3, 3] += affine[:3, axis] * start
    meta["head"]["kept_z_mm"] = [round(lo, 2), round(hi, 2)]
    meta["notes"].append(
        f"cropped to the head: kept {stop - start} of {n_axis} planes "
        f"(z {lo:.0f} to {hi:.0f} mm, vertex at {z_top:.0f} mm)"
    )
    return CtVolume(np.ascontiguousarray(volume.hu[tuple(sl)]), affine, meta)
