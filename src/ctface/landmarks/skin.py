"""The skin isosurface of a CT inside a region, in LPS mm, and dense samples of it.

``skin_surface`` runs ``skimage.measure.marching_cubes`` at the scan's own voxel resolution
(anisotropic spacing through ``spacing=``), slab by slab of slices. Each slab is cut to the
columns and rows that hold something at or above the threshold (plus one voxel) inside the
requested voxel box, so the air around the head costs little. Vertices go to LPS through the
volume's affine (any direction matrix); triangle normals point outwards (tissue -> air).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import edt
import numpy as np
from skimage.measure import marching_cubes

from ctface.geometry import sample_surface
from ctface.ingest.volume import CtVolume

SLAB = 24  # slices per marching-cubes call (consecutive slabs share one slice)
AIR_HU = -1000.0
THREADS = min(4, os.cpu_count() or 1)  # threads for one scan's work (here and render.depth)

VoxelBox = tuple[slice, slice, slice]  # k, j, i


@dataclass(frozen=True)
class SkinSurface:
    """A triangle mesh in LPS mm with outward unit triangle normals."""

    vertices: np.ndarray  # (V, 3) float32
    triangles: np.ndarray  # (T, 3) int64
    normals: np.ndarray  # (T, 3) float32, outward (tissue -> air)
    areas: np.ndarray  # (T,) float32, mm2
    vertex_normals: np.ndarray  # (V, 3) float32, unit, area-weighted over the whole mesh

    @property
    def empty(self) -> bool:
        return len(self.triangles) == 0

    def subset(self, keep: np.ndarray) -> SkinSurface:
        """The mesh of the triangles where ``keep`` (bool, per triangle) is true."""
        tris = self.triangles[keep]
        used = np.zeros(len(self.vertices), bool)
        used[tris.ravel()] = True
        new_index = np.cumsum(used) - 1
        return SkinSurface(
            self.vertices[used],
            new_index[tris],
            self.normals[keep],
            self.areas[keep],
            self.vertex_normals[used],
        )


def _empty() -> SkinSurface:
    return SkinSurface(
        np.zeros((0, 3), np.float32),
        np.zeros((0, 3), np.int64),
        np.zeros((0, 3), np.float32),
        np.zeros(0, np.float32),
        np.zeros((0, 3), np.float32),
    )


def voxel_box(volume: CtVolume, lps_points: np.ndarray, margin: int = 2) -> VoxelBox | None:
    """Smallest voxel box (k, j, i slices) holding ``lps_points`` (e.g. box corners), clipped to
    the volume; None when it misses the volume or is thinner than 2 voxels."""
    ijk = volume.lps_to_ijk(lps_points)
    lo = np.floor(ijk.min(0)).astype(int) - margin
    hi = np.ceil(ijk.max(0)).astype(int) + margin + 1
    shape = np.array(volume.shape_ijk)
    lo, hi = np.clip(lo, 0, shape), np.clip(hi, 0, shape)
    if np.any(hi - lo < 2):
        return None
    k, j, i = (slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))
    return k, j, i


def _span(any_along: np.ndarray | np.bool_) -> tuple[int, int] | None:
    idx = np.flatnonzero(any_along)
    if len(idx) == 0:
        return None
    return int(idx[0]), int(idx[-1]) + 1


def open_thin_shells(
    hu: np.ndarray, spacing_kji: tuple[float, float, float], threshold_hu: float, radius_mm: float
) -> np.ndarray:
    """``hu`` (k, j, i) with the tissue (>= ``threshold_hu``) that a ball of ``radius_mm`` cannot
    reach from inside the body set to air: a binary morphological opening (erosion then
    dilation by the ball, through exact Euclidean distance transforms in mm). It removes any
    layer thinner than ``2 * radius_mm`` standing off the body (an immobilization mask's sheet
    over the eye sockets, the nose and the mouth; the walls of a tube or bite block in front of
    the face) and, of the face itself, what is that thin: the rims of the nostril wings, the lips
    of an open mouth, the ears. Where a sheet is fused to the skin (no air between them at the
    scan's resolution) it stays.

    The transforms run on the tissue's bounding box and one voxel of air around it (a third
    less work on a face box: the air in front of the face is most of what is left out). The
    result is the same as on the whole array: outside the box is air only, and a tissue voxel's
    nearest air is never farther than the box's own margin."""
    out = hu.copy()
    tissue = hu >= threshold_hu
    box = _tissue_box(tissue)
    if box is None:
        return out
    inside = tissue[box]
    core = _distance(inside, spacing_kji) > radius_mm
    reached = _distance(~core, spacing_kji) <= radius_mm
    out[box][inside & ~reached] = AIR_HU
    return out


def _tissue_box(tissue: np.ndarray) -> VoxelBox | None:
    """Bounding box of ``tissue`` with one voxel more on each side (clipped to the array);
    None when there is no tissue."""
    box = []
    for ax in range(3):
        span = _span(tissue.any(axis=tuple(a for a in range(3) if a != ax)))
        if span is None:
            return None
        box.append(slice(max(span[0] - 1, 0), min(span[1] + 1, tissue.shape[ax])))
    return box[0], box[1], box[2]


def _distance(inside: np.ndarray, spacing_kji: tuple[float, float, float]) -> np.ndarray:
    """Euclidean distance (mm) of each ``inside`` voxel to the nearest voxel outside (0 outside);
    the array's border is not outside. ``edt`` rather than ``scipy.ndimage``: the same values
    (within 1e-5 mm) ~10x faster, which matters at 0.5 mm voxels (28 s against 2.3 s)."""
    out: np.ndarray = edt.edt(inside, anisotropy=spacing_kji, black_border=False, parallel=THREADS)
    return out


def skin_surface(
    volume: CtVolume, threshold_hu: float, box: VoxelBox, open_mm: float = 0.0
) -> SkinSurface:
    """Isosurface at ``threshold_hu`` of the voxels in ``box`` (LPS mm, outward normals); with
    ``open_mm`` > 0, of the voxels opened by a ball of that radius first (``open_thin_shells``).

    The surface is open where the box or the field of view cuts the head (no caps).
    """
    di, dj, dk = volume.spacing
    hu = volume.hu[box]
    if open_mm > 0:
        hu = open_thin_shells(hu, (dk, dj, di), threshold_hu, open_mm)
    verts: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    n_verts = 0
    for s0 in range(0, max(1, hu.shape[0] - 1), SLAB):
        s1 = min(s0 + SLAB + 1, hu.shape[0])
        if s1 - s0 < 2:
            break
        sub = hu[s0:s1]
        above = sub >= threshold_hu
        rows, cols = _span(above.any(axis=(0, 2))), _span(above.any(axis=(0, 1)))
        if rows is None or cols is None or above.all():
            continue
        r0, r1 = max(rows[0] - 1, 0), min(rows[1] + 1, sub.shape[1])
        c0, c1 = max(cols[0] - 1, 0), min(cols[1] + 1, sub.shape[2])
        part = sub[:, r0:r1, c0:c1]
        if min(part.shape) < 2 or not (part.min() < threshold_hu <= part.max()):
            continue
        try:
            v, f, _, _ = marching_cubes(part, level=float(threshold_hu), spacing=(dk, dj, di))
        except (RuntimeError, ValueError):  # no crossing (e.g. only exact-threshold voxels)
            continue
        offset = np.array([box[2].start + c0, box[1].start + r0, box[0].start + s0], dtype=float)
        verts.append(v[:, ::-1] / np.array([di, dj, dk]) + offset)
        faces.append(f.astype(np.int64) + n_verts)
        n_verts += len(v)
    if not faces:
        return _empty()
    lps = volume.ijk_to_lps(np.concatenate(verts)).astype(np.float32)
    # skimage ('descent') orients faces so that, in its (k, j, i) coordinates, the cross product
    # points to higher values; (k, j, i) -> (i, j, k) -> LPS multiplies that orientation by
    # -sign(det(affine)), so outward (to air) = sign(det(affine)) * cross product in LPS.
    sign = float(np.sign(np.linalg.det(volume.affine_lps[:3, :3])))
    return mesh_surface(lps, np.concatenate(faces), orientation=sign)


def mesh_surface(
    vertices: np.ndarray, triangles: np.ndarray, orientation: float = 1.0
) -> SkinSurface:
    """A ``SkinSurface`` of any triangle mesh (mm); outward normal = ``orientation`` x
    (b - a) x (c - a). Degenerate triangles are dropped."""
    lps = np.asarray(vertices, np.float32)
    tris = np.asarray(triangles, np.int64)
    a, b, c = (lps[tris[:, n]] for n in range(3))
    nrm = np.float32(orientation) * np.cross(b - a, c - a)
    length = np.linalg.norm(nrm, axis=1)
    keep = length > 1e-9
    tris, unit, areas = tris[keep], nrm[keep] / length[keep, None], 0.5 * length[keep]
    return SkinSurface(
        lps,
        tris,
        unit.astype(np.float32),
        areas.astype(np.float32),
        _vertex_normals(tris, unit, areas, len(lps)),
    )


def _vertex_normals(tris: np.ndarray, unit: np.ndarray, areas: np.ndarray, n_v: int) -> np.ndarray:
    """Area-weighted unit vertex normals (zero for unused vertices)."""
    weighted = unit * areas[:, None]
    vn = np.zeros((n_v, 3), np.float64)
    for corner in range(3):
        for axis in range(3):
            vn[:, axis] += np.bincount(tris[:, corner], weighted[:, axis], minlength=n_v)
    length = np.linalg.norm(vn, axis=1, keepdims=True)
    out: np.ndarray = (vn / np.maximum(length, 1e-12)).astype(np.float32)
    return out


def dense_samples(surface: SkinSurface, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points over the whole mesh with outward unit normals, such that every point of the
    surface lies within ``step / sqrt(3)`` of a sample (the covering radius of a barycentric
    grid whose sub-triangles have edges <= ``step``).

    Every vertex is a sample (its normal from the whole mesh, so a subset renders like the
    whole); each *distinct* edge longer than
    ``step`` adds its inner split points once (normals interpolated from its ends); triangles
    split more than twice add their inner grid points (``sample_surface``, triangle normal).
    """
    v, t, vn = surface.vertices, surface.triangles, surface.vertex_normals
    n_v = len(v)
    used = np.zeros(n_v, bool)
    used[t.ravel()] = True
    pts, nrm = [v[used]], [vn[used]]
    e0 = np.concatenate([t[:, 0], t[:, 1], t[:, 2]])
    e1 = np.concatenate([t[:, 1], t[:, 2], t[:, 0]])
    length = np.linalg.norm(v[e1] - v[e0], axis=1)
    longest = length.reshape(3, -1).max(axis=0)
    long = length > step
    key = np.sort(np.minimum(e0[long], e1[long]) * n_v + np.maximum(e0[long], e1[long]))
    key = key[np.concatenate([[True], key[1:] != key[:-1]])] if len(key) else key  # distinct
    a, b = key // n_v, key % n_v
    splits = np.ceil(np.linalg.norm(v[b] - v[a], axis=1) / step).astype(np.int64)
    for k in np.unique(splits[splits > 1]):
        sel = np.flatnonzero(splits == k)
        u = (np.arange(1, k, dtype=np.float32) / k)[None, :, None]
        pts.append((v[a[sel], None] + u * (v[b[sel]] - v[a[sel]])[:, None]).reshape(-1, 3))
        nrm.append((vn[a[sel], None] + u * (vn[b[sel]] - vn[a[sel]])[:, None]).reshape(-1, 3))
    big = np.flatnonzero(longest > 2 * step)  # only these have grid points inside
    if len(big):
        inner = sample_surface(v, t[big], step, interior_only=True)
        pts.append(inner.points)
        nrm.append(surface.normals[big][inner.triangle])
    normals = np.concatenate(nrm)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + np.float32(1e-12)
    return np.concatenate(pts).astype(np.float32), normals.astype(np.float32)
