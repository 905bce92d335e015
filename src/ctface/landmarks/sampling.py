"""What the landmark networks see: cubes of the canonical CT sampled along any axes.

Both CT-FAN stages read a cube of ``n**3`` voxels with step ``step_mm``, centred on a point
and oriented by three axes (rows of ``axes``: the cube's x, y, z directions in LPS), from an
isotropic LPS ``Grid`` (the canonical volume, HU stored as uint8 over -1000..1000 HU):

- coarse: the whole head at 5.5 mm (48 voxels = 264 mm, centred on the head), scanner axes at
  inference and any rotation in training, output heatmaps at 11 mm for three *symmetric*
  features (both eyes, nose tip, both mouth corners): which eye is the patient's right is
  decided by geometry (``assign_sides``), not learned;
- fine: one 40 mm cube per landmark at 1.25 mm, in the face's own frame (``face_axes``: x to
  the patient's left, y up, z forward) from the coarse landmarks, output heatmaps at 2.5 mm.

The landmark is the heatmap-weighted mean position in a 5-cell window around the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ctface.ingest.canonical import canonicalize
from ctface.ingest.volume import CtVolume

LANDMARKS = ("right_eye", "left_eye", "nose_tip", "right_mouth", "left_mouth")
MIRROR = np.array([1, 0, 2, 4, 3])  # LANDMARKS order in a mirror image: right <-> left
HU_LO, HU_HI = -1000.0, 1000.0
BODY_HU = -500.0
SIGMA_CELLS = 1.0
WINDOW_CELLS = 2


@dataclass(frozen=True)
class Stage:
    """A cube geometry: ``n`` input voxels of ``step_mm``, output heatmaps ``n // 2`` cells."""

    n: int
    step_mm: float

    @property
    def out_n(self) -> int:
        return self.n // 2

    @property
    def out_step_mm(self) -> float:
        return 2 * self.step_mm


COARSE = Stage(48, 5.5)
FINE = Stage(32, 1.25)
COARSE_SOURCE_MM = 2.5


@dataclass(frozen=True)
class Grid:
    """An isotropic LPS grid of HU coded as uint8 (``encode_hu``): ``data[k, j, i]`` at
    ``origin + spacing_mm * (i, j, k)``."""

    data: np.ndarray
    origin: np.ndarray
    spacing_mm: float

    @classmethod
    def from_volume(cls, volume: CtVolume) -> Grid:
        """From a canonical volume (LPS identity direction, isotropic)."""
        if not np.allclose(volume.direction, np.eye(3), atol=1e-6):
            raise ValueError("landmark grids need a canonical (LPS identity) volume")
        return cls(encode_hu(volume.hu), volume.origin, float(volume.spacing[0]))

    def crop(self, lo_lps: np.ndarray, hi_lps: np.ndarray) -> Grid:
        """The part of the grid inside the LPS box [lo, hi] (kept whole if the box covers it)."""
        lo = np.clip(np.floor((lo_lps - self.origin) / self.spacing_mm).astype(int), 0, None)
        hi = np.ceil((hi_lps - self.origin) / self.spacing_mm).astype(int) + 1
        sl = tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))
        return Grid(self.data[sl].copy(), self.origin + lo * self.spacing_mm, self.spacing_mm)


def encode_hu(hu: np.ndarray) -> np.ndarray:
    """HU -> uint8 over [-1000, 1000] HU (7.8 HU steps; air and lower -> 0)."""
    x = (np.clip(hu.astype(np.float32), HU_LO, HU_HI) - HU_LO) * (255.0 / (HU_HI - HU_LO))
    return np.rint(x).astype(np.uint8)


def coarse_grid(volume: CtVolume) -> Grid:
    """The coarse stage's source: the canonical volume resampled to 2.5 mm."""
    return Grid.from_volume(canonicalize(volume, COARSE_SOURCE_MM))


def body_centre(grid: Grid) -> np.ndarray:
    """Centre of the coarse cube (LPS mm): centroid of the largest part above -500 HU after an
    opening (drops the table, head holder shells, tubes)."""
    level = encode_hu(np.array([BODY_HU]))[0]
    body = ndimage.binary_opening(grid.data > level, ndimage.generate_binary_structure(3, 1))
    lab, n = ndimage.label(body)
    if n == 0:
        return grid.origin + grid.spacing_mm * (np.array(grid.data.shape[::-1]) - 1) / 2
    big = 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    ijk = np.argwhere(lab == big)[:, ::-1]
    out: np.ndarray = grid.origin + grid.spacing_mm * ijk.mean(0)
    return out


def cube_points(centre: np.ndarray, axes: np.ndarray, n: int, step_mm: float) -> np.ndarray:
    """LPS of the cube's voxel centres, shape (n, n, n, 3) indexed [z, y, x] of the cube."""
    c = (np.arange(n) - (n - 1) / 2) * step_mm
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    pts: np.ndarray = centre + np.stack([x, y, z], -1) @ axes
    return pts


def sample_cube(
    grid: Grid, centre: np.ndarray, axes: np.ndarray, n: int, step_mm: float
) -> np.ndarray:
    """The cube as float32 in [-1, 1] (-1000..1000 HU); outside the grid is air (-1)."""
    pts = cube_points(centre, axes, n, step_mm)
    idx = ((pts - grid.origin) / grid.spacing_mm)[..., ::-1]  # (k, j, i) order
    u = ndimage.map_coordinates(
        grid.data, np.moveaxis(idx, -1, 0), output=np.float32, order=1, cval=0.0
    )
    return (u * (2.0 / 255.0) - 1.0).astype(np.float32)


def to_cells(lps: np.ndarray, centre: np.ndarray, axes: np.ndarray, stage: Stage) -> np.ndarray:
    """LPS points (N, 3) -> continuous output-cell coordinates (x, y, z) of the stage's cube."""
    rel = (np.atleast_2d(lps) - centre) @ axes.T
    out: np.ndarray = rel / stage.out_step_mm + (stage.out_n - 1) / 2
    return out


def from_cells(cells: np.ndarray, centre: np.ndarray, axes: np.ndarray, stage: Stage) -> np.ndarray:
    """Output-cell coordinates (N, 3) (x, y, z) -> LPS mm."""
    rel = (np.atleast_2d(cells) - (stage.out_n - 1) / 2) * stage.out_step_mm
    out: np.ndarray = centre + rel @ axes
    return out


def gaussian_heatmaps(cells: np.ndarray, present: np.ndarray, n: int) -> np.ndarray:
    """Target heatmaps (L, n, n, n), peak 1 at each present landmark, zeros for the absent."""
    c = np.arange(n, dtype=np.float32)
    out = np.zeros((len(cells), n, n, n), np.float32)
    for i, (p, ok) in enumerate(zip(cells, present, strict=True)):
        if not ok:
            continue
        g = [np.exp(-((c - p[a]) ** 2) / (2 * SIGMA_CELLS**2)) for a in range(3)]
        out[i] = g[2][:, None, None] * g[1][None, :, None] * g[0][None, None, :]
    return out


def decode_heatmaps(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L, n, n, n) heatmaps -> cell coordinates (L, 3) (x, y, z) and peak values (L,).

    Position: the heatmap-weighted mean (negative values clipped) in a 5-cell window around
    the maximum, so a second bump elsewhere cannot pull it."""
    n = maps.shape[-1]
    cells = np.zeros((len(maps), 3))
    peaks = np.zeros(len(maps))
    r = WINDOW_CELLS
    for i, h in enumerate(maps):
        top = np.array(np.unravel_index(int(np.argmax(h)), h.shape))  # (k, j, i)
        peaks[i] = float(h[tuple(top)])
        lo, hi = np.maximum(top - r, 0), np.minimum(top + r + 1, n)
        w = np.clip(h[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], 0, None).astype(np.float64)
        if w.sum() <= 0:
            cells[i] = top[::-1]
            continue
        idx = np.indices(w.shape).reshape(3, -1) + lo[:, None]  # (k, j, i) of each window cell
        cells[i] = (idx @ w.ravel() / w.sum())[::-1]
    return cells, peaks


def decode_peaks(heatmap: np.ndarray, k: int, suppress_cells: float) -> tuple[np.ndarray, ...]:
    """The ``k`` highest peaks of one heatmap, each at least ``suppress_cells`` from the ones
    before: cell coordinates (k, 3) and peak values (k,)."""
    h = heatmap.copy()
    grid = np.indices(h.shape).reshape(3, -1).T[:, ::-1]  # (x, y, z) of every cell
    cells, peaks = [], []
    for _ in range(k):
        c, p = decode_heatmaps(h[None])
        cells.append(c[0])
        peaks.append(p[0])
        far = np.linalg.norm(grid - c[0], axis=1) > suppress_cells
        h = np.where(far.reshape(h.shape), h, h.min())
    return np.array(cells), np.array(peaks)


def assign_sides(
    eyes: np.ndarray, nose: np.ndarray, mouths: np.ndarray, head_centre: np.ndarray
) -> np.ndarray:
    """Two eyes, the nose tip and two mouth corners (unlabelled) -> the five landmarks in
    ``LANDMARKS`` order: forward runs from the head's centre to the eyes and nose, up from the
    nose to the eyes, and the patient's left is up x forward (the mouth corners, often cut off
    or unclear, play no part in it)."""
    e_mid = eyes.mean(0)
    forward = (e_mid + nose) / 2 - head_centre
    forward = forward / max(float(np.linalg.norm(forward)), 1e-6)
    up = e_mid - nose
    left = np.cross(up - (up @ forward) * forward, forward)
    re, le = sorted(eyes, key=lambda p: float(p @ left))
    rm, lm = sorted(mouths, key=lambda p: float(p @ left))
    return np.stack([re, le, nose, rm, lm])


def face_axes(points: np.ndarray) -> np.ndarray:
    """Rows (x: patient's left, y: up, z: forward out of the face) from the five landmarks
    (order of ``LANDMARKS``): x along the eyes, y from the mouth towards the eyes."""
    re, le, _, rm, lm = points
    x = le - re
    x = x / max(float(np.linalg.norm(x)), 1e-6)
    y = (re + le) / 2 - (rm + lm) / 2
    y = y - (y @ x) * x
    y = y / max(float(np.linalg.norm(y)), 1e-6)
    return np.stack([x, y, np.cross(x, y)])
