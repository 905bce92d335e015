"""Find the head in a CT of any field of view and crop the volume to it.

On a coarse (4 mm) canonical copy: body = voxels above -500 HU, opened with a 3x3x3 cross (drops
thin shells: table top, head-holder shell, tubes) and reduced to its largest connected part.
The vertex is the highest axial slice with at least 4 cm2 of body. The volume is cropped (in
its own voxel grid, no resampling) to the slab from ``depth_mm`` below the vertex to 10 mm above
it, and to 90 mm around the body's left-right and front-back extent in that slab (what the
renders can see: devices up to 80 mm in front of the nose tip); nothing is cropped where the
volume does not reach that far. No body at all, or a body that fills the top slice with more
than 400 cm2 (a trunk: an adult head is at most ~300 cm2 in cross-section) -> NoFaceError.
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
# kept around the body in x and y: the renders see up to 80 mm in front of the nose tip (devices,
# tubes) and 110 mm to each side of it
SIDE_MARGIN_MM = 90.0


def _body(volume: CtVolume) -> tuple[CtVolume, np.ndarray]:
    """The coarse canonical copy and its body mask (largest connected part, opened)."""
    coarse = canonicalize(volume, COARSE_MM)
    body = ndimage.binary_opening(coarse.hu > BODY_HU, ndimage.generate_binary_structure(3, 1))
    labels, n = ndimage.label(body)
    if n:
        sizes = np.bincount(labels.ravel())[1:]
        body = labels == 1 + int(np.argmax(sizes))
    return coarse, body


def _head_box(coarse: CtVolume, body: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """LPS box (2, 3) kept: the body's x and y extent in the slab z in [lo, hi] widened by
    ``SIDE_MARGIN_MM``, and the slab itself."""
    z = coarse.origin[2] + COARSE_MM * np.arange(body.shape[0])
    j, i = np.nonzero(body[(z >= lo) & (z <= hi)].any(axis=0))
    if not len(i):  # no body in the slab: keep the full width
        return np.array([[-np.inf, -np.inf, lo], [np.inf, np.inf, hi]])
    x = coarse.origin[0] + COARSE_MM * np.array([i.min(), i.max()])
    y = coarse.origin[1] + COARSE_MM * np.array([j.min(), j.max()])
    m = SIDE_MARGIN_MM
    return np.array([[x[0] - m, y[0] - m, lo], [x[1] + m, y[1] + m, hi]])


def _voxel_range(volume: CtVolume, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel index range [start, stop) (i, j, k) of ``volume`` holding the LPS ``box``."""
    n = np.array(volume.shape_ijk)
    finite = np.where(np.isfinite(box), box, np.where(box < 0, -1e6, 1e6))
    corners = np.array(
        [[x, y, z] for x in finite[:, 0] for y in finite[:, 1] for z in finite[:, 2]]
    )
    ijk = volume.lps_to_ijk(corners)
    start = np.clip(np.floor(ijk.min(axis=0) + 1e-6), 0, n).astype(int)
    stop = np.clip(np.ceil(ijk.max(axis=0) - 1e-6) + 1, 0, n).astype(int)
    return start, stop


def find_head(volume: CtVolume, depth_mm: float = HEAD_DEPTH_MM) -> CtVolume:
    """Crop ``volume`` to the head: from the top of the body to ``depth_mm`` below it, and to
    ``SIDE_MARGIN_MM`` around the body left-right and front-back."""
    coarse, body = _body(volume)
    area = body.sum(axis=(1, 2)).astype(float) * COARSE_MM**2
    if area.sum() * COARSE_MM < MIN_BODY_MM3:
        raise NoFaceError(
            f"No head in the field of view: no body or skin found (under "
            f"{MIN_BODY_MM3 / 1000:.0f} cm3 denser than {BODY_HU:.0f} HU once thin shells, "
            f"up to about two {COARSE_MM:g} mm voxels thick, are dropped: a table top, a "
            "hollow plastic head, a mask alone)."
        )
    filled = np.nonzero(area >= MIN_TOP_AREA_MM2)[0]
    top_k = int(filled[-1]) if len(filled) else int(np.nonzero(area)[0][-1])
    if top_k == len(area) - 1 and area[top_k] > MAX_HEAD_AREA_MM2:
        raise NoFaceError(
            f"No head in the field of view: the body fills the top of the scan "
            f"({area[top_k] / 100:.0f} cm2 at its top slice; a head is under "
            f"{MAX_HEAD_AREA_MM2 / 100:.0f} cm2)."
        )
    z_top = float(coarse.origin[2] + COARSE_MM * top_k + COARSE_MM / 2)
    lo, hi = z_top - depth_mm, z_top + MARGIN_MM
    start, stop = _voxel_range(volume, _head_box(coarse, body, lo, hi))
    meta: dict[str, Any] = copy.deepcopy(volume.metadata)
    n = np.array(volume.shape_ijk)
    cropped = bool(np.any(start > 0) or np.any(stop < n))
    meta["head"] = {"top_z_mm": round(z_top, 2), "cropped": cropped}
    meta.setdefault("notes", [])
    if not cropped:
        return CtVolume(volume.hu, volume.affine_lps, meta)
    affine = volume.affine_lps.copy()
    affine[:3, 3] += affine[:3, :3] @ start
    meta["head"]["kept_z_mm"] = [round(lo, 2), round(hi, 2)]
    meta["notes"].append(
        f"cropped to the head: kept {' x '.join(map(str, stop - start))} of "
        f"{' x '.join(map(str, n))} voxels (z {lo:.0f} to {hi:.0f} mm, vertex at {z_top:.0f} mm; "
        f"{SIDE_MARGIN_MM:g} mm around the body)"
    )
    hu = volume.hu[start[2] : stop[2], start[1] : stop[1], start[0] : stop[0]]
    return CtVolume(np.ascontiguousarray(hu), affine, meta)
