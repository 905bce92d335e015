"""Things on and in the face that hide it in real head CT: immobilization masks and tubes.

Both live in the head's model frame (they move with the head) and are written into
``HeadFields``: parts outside the skin into ``exterior_hu``, parts inside into ``interior_hu``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ctface.phantom.anatomy import HeadFields, tube_box

MASK_HU = 180.0  # thermoplastic (polycaprolactone) sheet, ~2 mm
TUBE_HU = 110.0  # PVC tube wall


def _exterior(head: HeadFields) -> np.ndarray:
    if head.exterior_hu is None:
        head.exterior_hu = np.full(head.sdf.shape, -1000.0, dtype=np.float32)
    return head.exterior_hu


def mask_distance(head: HeadFields, close_r: float) -> np.ndarray:
    """Distance (mm) outside the head closed by a ball of ``close_r`` mm (bridging the eye
    sockets, under the nose, the mouth); near the skin the exact skin distance takes over."""
    h = head.step
    # Morphological closing of the head by a ball (on a 2x coarser grid), then the distance
    # outside the closed head.
    inside = head.sdf[::2, ::2, ::2] < 0
    dil = ndimage.distance_transform_edt(~inside, sampling=2 * h) <= close_r
    closed = ndimage.distance_transform_edt(dil, sampling=2 * h) > close_r
    coarse = ndimage.distance_transform_edt(~closed, sampling=2 * h).astype(np.float32)
    dist = ndimage.affine_transform(
        coarse, np.full(3, 0.5), output_shape=head.sdf.shape, order=1, mode="nearest"
    )
    return np.maximum(dist - h, head.sdf)


def mask_sheet(
    head: HeadFields,
    dist: np.ndarray,
    g: tuple[np.ndarray, ...],
    gap: float,
    thick: float,
    pitch: float,
    hole_r: float,
) -> np.ndarray:
    """Weight of a sheet ``thick`` mm thick lying ``gap`` mm off the closed head, perforated by
    a hexagonal pattern of round holes (seen from the front)."""
    h = head.step
    gx, gy = g[0] / pitch, g[1] / (pitch * 0.866)
    row = np.floor(gy + 0.5)
    holes = (gx - np.floor(gx + 0.5 * (row % 2)) - 0.5 * (row % 2)) ** 2 * pitch**2 + (
        gy - row
    ) ** 2 * (pitch * 0.866) ** 2 < hole_r**2
    sheet = np.clip(1 - np.abs(dist - gap - thick / 2) / (thick / 2 + h / 2), 0, 1)
    return sheet * ~holes * (head.sdf > 0)


def add_mask(
    head: HeadFields, landmarks68: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """A perforated thermoplastic mask stretched over the face: it bridges the concavities
    (eye sockets, under the nose, mouth), lies gap mm off the skin, and covers brow to chin."""
    close_r = float(rng.uniform(6.0, 10.0))
    gap = float(rng.uniform(0.5, 2.5))
    thick = float(rng.uniform(1.5, 2.5))
    dist = mask_distance(head, close_r)
    g = head.grid.axes()
    lm = landmarks68
    front = g[2] > (lm[0][2] + lm[16][2]) / 2 - 5
    span = (g[1] > lm[8][1] - 25) & (g[1] < lm[19][1] + 70)
    pitch = float(rng.uniform(4.5, 6.5))
    hole_r = float(rng.uniform(0.8, 1.6))
    sheet = mask_sheet(head, dist, g, gap, thick, pitch, hole_r) * front * span
    ext = _exterior(head)
    ext += sheet * (MASK_HU + 1000.0)
    return {
        "gap_mm": gap,
        "thickness_mm": thick,
        "bridge_radius_mm": close_r,
        "hole_pitch_mm": pitch,
    }


def tube_path(kind: str, side: int, lm: np.ndarray) -> np.ndarray:
    """Centre line (model frame, mm) of a nasogastric or endotracheal tube."""
    nose, sub, mouth, chin = lm[30], lm[33], (lm[62] + lm[66]) / 2, lm[8]
    s = float(side)
    if kind == "nasogastric":
        return np.array(
            [
                [s * 6, sub[1] + 12, nose[2] - 75],
                [s * 7, sub[1] + 3, sub[2] - 14],
                [s * 7, sub[1] - 1, sub[2] + 1],
                [s * 10, sub[1] - 6, sub[2] + 7],
                [s * 32, mouth[1] - 4, mouth[2] - 2],
                [s * 48, chin[1] - 10, chin[2] - 30],
                [s * 60, chin[1] - 120, chin[2] - 30],
            ]
        )
    return np.array(
        [
            [0.0, chin[1] - 60, nose[2] - 75],
            [0.0, mouth[1] - 8, nose[2] - 72],
            [s * 2, mouth[1] - 2, mouth[2] - 30],
            [s * 4, mouth[1], mouth[2] + 25],
            [s * 20, mouth[1] - 15, mouth[2] + 45],
            [s * 30, mouth[1] - 150, mouth[2] + 60],
        ]
    )


def add_tube(head: HeadFields, kind: str, side: int, landmarks68: np.ndarray) -> dict[str, float]:
    """Draw a tube (wall + air lumen) along its path, inside and outside the head."""
    outer_r = 2.6 if kind == "nasogastric" else 5.5
    wall = 0.9 if kind == "nasogastric" else 1.3
    path = tube_path(kind, side, landmarks68)
    sl, d = tube_box(head.grid, path, outer_r)
    w = np.clip((outer_r + head.step / 2 - d) / head.step, 0, 1)
    lumen = np.clip((outer_r - wall + head.step / 2 - d) / head.step, 0, 1)
    value = TUBE_HU * (w - lumen) + (-1000.0) * lumen
    ext = _exterior(head)
    ext[sl] = ext[sl] * (1 - w) + value
    head.interior_hu[sl] = head.interior_hu[sl] * (1 - w) + value
    return {"outer_radius_mm": outer_r, "wall_mm": wall}
