"""Geometry shared by the phantom generator, the renderer and the re-acquisition of real CTs:
triangle-mesh sampling, rotations about a coordinate axis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def axis_rotation(axis: int, deg: float) -> np.ndarray:
    """3x3 rotation by ``deg`` degrees about coordinate axis ``axis`` (0, 1, 2), right-handed."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


@dataclass(frozen=True)
class SurfaceSamples:
    """Points spread over triangles (at most ``step`` mm apart) with their triangle normals."""

    points: np.ndarray  # (N, 3) float32 mm
    normals: np.ndarray  # (N, 3) float32 unit, orientation as the mesh gives it
    triangle: np.ndarray  # (N,) int64 index into the triangle array passed in


def sample_surface(
    vertices: np.ndarray, triangles: np.ndarray, step: float, interior_only: bool = False
) -> SurfaceSamples:
    """Sample every triangle on a barycentric grid fine enough that edges are split <= step mm.

    With ``interior_only`` the grid points on the triangle's edges (corners included) are left
    out: callers that sample the mesh's vertices and edges themselves (once per shared edge)
    add only what lies strictly inside each triangle.
    """
    a, b, c = (vertices[triangles[:, i]].astype(np.float32) for i in range(3))
    edge = np.maximum.reduce(
        [
            np.linalg.norm(b - a, axis=1),
            np.linalg.norm(c - b, axis=1),
            np.linalg.norm(a - c, axis=1),
        ]
    )
    splits = np.maximum(1, np.ceil(edge / step)).astype(np.int64)
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    pts, nrm, tri = [], [], []
    for k in np.unique(splits):
        idx = np.flatnonzero(splits == k)
        i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
        ok = (i + j <= k - 1) & (i >= 1) & (j >= 1) if interior_only else i + j <= k
        if not ok.any():
            continue
        u = (i[ok] / k).astype(np.float32)[None, :, None]
        w = (j[ok] / k).astype(np.float32)[None, :, None]
        p = a[idx, None] + u * (b - a)[idx, None] + w * (c - a)[idx, None]
        pts.append(p.reshape(-1, 3))
        nrm.append(np.repeat(normal[idx], u.shape[1], axis=0))
        tri.append(np.repeat(idx, u.shape[1]))
    if not pts:
        return SurfaceSamples(
            np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
        )
    return SurfaceSamples(np.concatenate(pts), np.concatenate(nrm), np.concatenate(tri))
