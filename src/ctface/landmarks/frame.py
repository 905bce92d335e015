"""Where the face is: a frame (nose tip, forward, up) in patient LPS mm.

``locate_face`` is the geometric rule (no learned landmarks), for head-first or feet-first
*supine* scans (the face looks towards anterior, LPS -y):

1. Body: voxels >= threshold on a ~2 mm grid, opened once (removes shells thinner than a grid
   step: tube walls, mask sheets, blankets), largest connected component (drops the table,
   head holder and anything not touching the head). Too small (< 300 cm3) -> NoFaceError.
2. Nose tip candidates: the body's surface points are pushed against 289 directions within
   +-40 deg (pitch and yaw) of anterior; each direction votes for its most extreme point, and
   the votes are clustered (10 mm). The nose tip is a corner of the head's convex hull with a
   wide cone of normals, so its cluster gathers many votes, where the forehead and chin are
   broad (each direction picks a different point). Where the field of view cuts the body, the
   cut face counts as surface (a head cut open in front shows a flat face, never a nose; a
   nose cut off in front keeps its flat tip); the edge of an axial or lateral cut (through
   the mouth or forehead) can gather votes too, so clusters there never count as a nose.
3. Face test over the 4 best clusters: of those that stand out of their surroundings, the one
   standing out most is the nose tip; if only clusters on an axial or lateral cut of the field
   of view stand out, the face is cut off -> NoFaceError. Standing out: on a ring 25-40 mm
   around it (coronal plane) the most anterior surface lies a median >= 10 mm behind it
   (phantom faces 20-30 mm, flat real noses 11-15; the back of a head ~6: a sphere of radius
   90 mm). None passes (the back of a head, a
   face cut off in front, a prone patient) -> NoFaceError.
4. Refinement at full resolution: the skin isosurface in a 40 mm cube around the coarse tip;
   origin = the most anterior point (depth) and the area-weighted centre of the surface cap
   within 2 mm of it (lateral position), so two scans of the same head at different voxel
   sizes give the same origin to a fraction of a millimetre.

forward = anterior (0, -1, 0) and up = superior (0, 0, 1): the patient axes of the scan, not
the face's own (head pitch/roll/yaw in the scanner stays in the images, like the paper's).

Known limits (real CTs in ../shared/data/real_ct): the flat cut nose of Visible Human stands
out only ~14 mm (its chin ~12 mm), so the margin is small on flattened cadaver faces; a scan
ending at the brow (GE gantry-tilt sample) has only side-cut candidates and is refused as "no
usable face". A prone patient or a face turned > 40 deg is not found. Landmarks will replace
this rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import ndimage

from ctface.errors import NoFaceError
from ctface.ingest.volume import SKIN_HU, CtVolume
from ctface.landmarks.skin import skin_surface, voxel_box

COARSE_MM = 2.0
MIN_BODY_CM3 = 300.0
VOTE_DEG = 40.0
VOTE_STEP_DEG = 5.0
CLUSTER_MM = 10.0
MAX_CANDIDATES = 4
RING_MM = (25.0, 40.0)
MIN_PROTRUSION_MM = 10.0
REFINE_MM = 20.0
CAP_MM = 2.0

ANTERIOR = np.array([0.0, -1.0, 0.0])
SUPERIOR = np.array([0.0, 0.0, 1.0])


class FrameMethod(StrEnum):
    """How a face frame was found (``FaceFrame.method``)."""

    LANDMARKS = "landmarks"  # from the five landmarks (``LandmarkSet.frame``, training truth)
    GEOMETRIC = "geometric"  # the geometric locator (``locate_face``)
    CT_FAN = "ct-fan"  # CT-FAN's estimates: where the landmarks' face-model fit starts


@dataclass(frozen=True)
class FaceFrame:
    """Where the face is, in LPS mm.

    origin: a point on the face (the nose tip or its estimate); forward: unit vector out of the
    face (towards a viewer in front of it); up: unit vector towards the top of the head,
    orthogonal to forward; method: how it was found (``FrameMethod``).
    """

    origin: np.ndarray
    forward: np.ndarray
    up: np.ndarray
    method: FrameMethod

    @property
    def right(self) -> np.ndarray:
        """Image right in a frontal view: up x forward (the patient's left)."""
        return np.cross(self.up, self.forward)

    def matrix(self) -> np.ndarray:
        """3x3 rows (right, up, forward): LPS offsets from ``origin`` -> face-frame X, Y, Z."""
        return np.stack([self.right, self.up, self.forward])

    def to_frame(self, lps: np.ndarray) -> np.ndarray:
        """LPS points (N, 3) -> face-frame coordinates (X right, Y up, Z forward), mm."""
        return (np.atleast_2d(lps) - self.origin) @ self.matrix().T

    def to_lps(self, xyz: np.ndarray) -> np.ndarray:
        """Face-frame coordinates (N, 3) -> LPS mm."""
        return np.atleast_2d(xyz) @ self.matrix() + self.origin

    def to_json(self) -> dict[str, Any]:
        return {
            "origin_lps": [round(float(x), 3) for x in self.origin],
            "forward_lps": [round(float(x), 6) for x in self.forward],
            "up_lps": [round(float(x), 6) for x in self.up],
            "method": self.method,
        }


def _directions() -> np.ndarray:
    a = np.radians(np.arange(-VOTE_DEG, VOTE_DEG + 1e-6, VOTE_STEP_DEG))
    pitch, yaw = np.meshgrid(a, a, indexing="ij")
    pitch, yaw = pitch.ravel(), yaw.ravel()
    return np.stack([np.sin(yaw) * np.cos(pitch), -np.cos(yaw) * np.cos(pitch), np.sin(pitch)], 1)


def _body(volume: CtVolume, threshold_hu: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Largest opened component of hu >= threshold on a ~2 mm strided grid, and its strides."""
    di, dj, dk = volume.spacing
    st = tuple(max(1, round(COARSE_MM / s)) for s in (dk, dj, di))
    above = volume.hu[:: st[0], :: st[1], :: st[2]] >= threshold_hu
    if not above.any():
        raise NoFaceError(
            f"no face in field of view: no voxel at or above the skin threshold {threshold_hu:g} HU"
        )
    body = ndimage.binary_opening(above, ndimage.generate_binary_structure(3, 1))
    lab, n = ndimage.label(body)
    if n == 0:
        raise NoFaceError("no face in field of view: only thin structures above the threshold")
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    big = int(counts.argmax())
    voxel_cm3 = float(np.prod(st) * di * dj * dk) / 1000.0
    if counts[big] * voxel_cm3 < MIN_BODY_CM3:
        raise NoFaceError(
            f"no face in field of view: the largest object is {counts[big] * voxel_cm3:.0f} cm3, "
            f"smaller than a head ({MIN_BODY_CM3:.0f} cm3)"
        )
    return lab == big, (int(st[0]), int(st[1]), int(st[2]))


def _surface_points(volume: CtVolume, body: np.ndarray, st: tuple[int, int, int]) -> np.ndarray:
    """LPS of the body's surface voxels; where the field of view cuts the body, the cut face
    counts as surface (so a head cut open in front shows a flat face, never a nose)."""
    cross = ndimage.generate_binary_structure(3, 1)
    surf = body & ~ndimage.binary_erosion(body, cross, border_value=0)
    ijk = np.argwhere(surf)[:, ::-1] * np.array(st[::-1])
    out: np.ndarray = volume.ijk_to_lps(ijk)
    return out


def _vote_clusters(pts: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(votes, centre) of the distinct 10 mm clusters of extreme points, most votes first."""
    front = -pts[:, 1]
    p = pts[front >= front.max() - 120.0]
    winners = p[np.argmax(p @ _directions().T, axis=0)]
    d = np.linalg.norm(winners[:, None] - winners[None], axis=2)
    support = (d <= CLUSTER_MM).sum(1)
    out: list[tuple[int, np.ndarray]] = []
    for i in np.argsort(-support, kind="stable"):
        centre = winners[d[i] <= CLUSTER_MM].mean(0)
        if all(np.linalg.norm(centre - c) > CLUSTER_MM for _, c in out):
            out.append((int(support[i]), centre))
    return out


def _on_side_cut(volume: CtVolume, p: np.ndarray, st: tuple[int, int, int]) -> bool:
    """Whether ``p`` lies on a face of the field of view that does not look anterior (an axial
    cut above or below, or a lateral one), where cut edges make false corners; an anterior cut
    (a nose cut off in front) is not one."""
    affine, shape = volume.scanned_geometry()
    inv4 = np.linalg.inv(affine)
    ijk = inv4[:3, :3] @ p + inv4[:3, 3]
    inv = inv4[:3, :3]
    # 1.5 analysis steps (``st``, in this volume's voxels) or 3 mm, in scanned voxels
    reach_mm = max(3.0, 1.5 * float(np.max(np.array(st) * np.array(volume.spacing)[::-1])))
    margin = reach_mm / np.linalg.norm(affine[:3, :3], axis=0)
    top = shape - 1 - margin
    for axis in range(3):
        for on, sign in ((ijk[axis] < margin[axis], -1.0), (ijk[axis] > top[axis], 1.0)):
            normal = sign * inv[axis] / np.linalg.norm(inv[axis])  # outward normal of that face
            if on and normal @ ANTERIOR < 0.5:
                return True
    return False


def _protrusion(pts: np.ndarray, tip: np.ndarray) -> float:
    """Median depth (mm, behind the tip along anterior) of the most anterior surface in 12
    sectors of a ring 25-40 mm around the tip (coronal plane); 0 if fewer than 8 sectors hold
    surface (a tip on the edge of the body or of the field of view)."""
    rel = pts - tip
    lateral = np.hypot(rel[:, 0], rel[:, 2])
    behind = rel[:, 1]  # LPS +y = posterior = behind the tip
    ring = (lateral >= RING_MM[0]) & (lateral <= RING_MM[1]) & (behind < 80.0)
    angle = np.arctan2(rel[ring, 2], rel[ring, 0])
    sector = np.clip(((angle + np.pi) / (2 * np.pi) * 12).astype(int), 0, 11)
    depth = np.full(12, np.inf)
    np.minimum.at(depth, sector, behind[ring])
    seen = np.isfinite(depth)
    return float(np.median(depth[seen])) if seen.sum() >= 8 else 0.0


def _refine(volume: CtVolume, tip: np.ndarray, threshold_hu: float) -> np.ndarray:
    corners = tip + REFINE_MM * np.array(
        [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float
    )
    box = voxel_box(volume, corners)
    if box is None:
        return tip
    surf = skin_surface(volume, threshold_hu, box)
    if surf.empty:
        return tip
    v, t = surf.vertices.astype(np.float64), surf.triangles
    a, b, c = (v[t[:, i]] for i in range(3))
    centre = (a + b + c) / 3
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    rel = centre - tip
    near = (np.hypot(rel[:, 0], rel[:, 2]) <= 15.0) & (surf.normals @ ANTERIOR > 0.2)
    if not near.any():
        return tip
    front = centre[near] @ ANTERIOR
    cap = front >= front.max() - CAP_MM
    w = area[near][cap]
    lateral = (centre[near][cap] * w[:, None]).sum(0) / w.sum()
    tri_front = np.concatenate([a[near] @ ANTERIOR, b[near] @ ANTERIOR, c[near] @ ANTERIOR])
    out = lateral.copy()
    out[1] = -float(tri_front.max())  # most anterior point of the skin (LPS y = -front)
    return out


def locate_face(volume: CtVolume, threshold_hu: float = SKIN_HU) -> FaceFrame:
    """Find the face by geometry (rule in the module docstring); NoFaceError if there is none."""
    body, st = _body(volume, threshold_hu)
    pts = _surface_points(volume, body, st)
    clusters = _vote_clusters(pts)[:MAX_CANDIDATES]
    # clusters on an axial or lateral cut of the field of view are tried last
    scored = [
        (_on_side_cut(volume, c, st), _protrusion(pts, c), c) for _, c in clusters
    ]  # the most protruding candidate off the field of view's side cuts is the nose tip
    passing = [x for x in scored if x[1] >= MIN_PROTRUSION_MM]
    best = max((x[1] for x in scored), default=0.0)
    inside = [x for x in passing if not x[0]]
    if inside:
        tip = max(inside, key=lambda x: x[1])[2]
    elif passing:
        raise NoFaceError(
            "no usable face: the field of view cuts the face off (the only nose-like "
            "point lies on an axial or lateral edge of the scanned volume)"
        )
    else:
        raise NoFaceError(
            "no face in field of view: nothing nose-like on the anterior surface (the most "
            f"prominent points stand <= {best:.0f} mm out of their surroundings, a nose "
            f">= {MIN_PROTRUSION_MM:.0f} mm); the face may be cut off or the patient prone"
        )
    return FaceFrame(
        _refine(volume, tip, threshold_hu), ANTERIOR.copy(), SUPERIOR.copy(), FrameMethod.GEOMETRIC
    )
