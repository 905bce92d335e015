"""Where a CT's face is, and what defacing does to it: a ``FaceCut`` on the canonical grid.

The face is found by its five landmarks (``landmarks.detect_landmarks``); the eyes and the nose
tip must be in the field of view (a mouth corner below it is estimated: the face is cut where it
was scanned), or the scan is refused (``NoFaceError``, exit 6): a scan whose face could not be
found is never written as if it were defaced.

In the face frame of the landmarks (origin the nose tip, X along the eyes, Y up, Z out of the
face), with the scan's own eye distance ``e`` and eye-to-mouth height ``h``:

- the face box spans X within +-1.15 e (cheek to cheek), Y from 0.9 h below the mouth (under
  the chin) to 1.0 h above the eyes (the forehead), and everything in front of it;
- below the brows (0.3 h above the eyes) the cut takes every voxel within ``FACE_DEPTH_MM`` of
  the air outside the face and in front of a plane 0.75 e behind the eyes: skin, fat, muscle,
  cartilage, the nose and lips whole, the eyelids and the front of the eyes, and the surface of
  the facial bones; above the brows, only ``FOREHEAD_DEPTH_MM`` (the soft tissue over the
  frontal bone, which lies 10-15 mm above the brain);
- with ``ears``, the outer ears (``EAR_DEPTH_MM`` from the air, 0.9-2.0 e behind the eyes).

The air is the air outside the head, reached from in front of the face, with the body closed
over gaps up to about 8 mm first: the nostrils and a slightly open mouth are shut, so the nasal
cavity and the sinuses (whose roof borders the brain) are inside the head and not a surface the
depth is measured from. Nothing deeper than
``FACE_DEPTH_MM`` (19 mm) from that air is touched, so tissue more than 20 mm under the skin (the
brain behind the eyes) is unchanged by construction: a source voxel takes the label of its
nearest canonical voxel, at most 0.87 mm away. ``intracranial`` is that region, for checking.

``remove`` turns the cut into air. ``reface`` fills it with the generic face
(``deid.generic_face``) placed in the scan's face frame at the mean face's own size: soft tissue
behind the generic surface, air in front of it. The patient's eye distance and face height are
identity: scaled by them, the generic face let ctface re-identify more refaced phantoms.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import ndimage

from ctface.errors import NoFaceError
from ctface.ingest.volume import SKIN_HU, CtVolume
from ctface.landmarks.detect import CrossCheck, LandmarkSet
from ctface.landmarks.frame import FaceFrame
from ctface.landmarks.skin import voxel_box

FACE_DEPTH_MM = 19.0  # below the 20 mm of INTRACRANIAL_DEPTH_MM by more than half a voxel
FOREHEAD_DEPTH_MM = 8.0
EAR_DEPTH_MM = 10.0
MIN_REMOVED_ML = 100.0  # less than this under the cut: the landmarks missed the face
FRONT_MM = 40.0  # the box reaches this far in front of the nose tip (air, and the generic face)
AIR_HU = -1000
INTRACRANIAL_DEPTH_MM = 20.0  # the issue's "intracranial": deeper than this, behind the eyes
KEEP, AIR, TISSUE = 0, 1, 2  # FaceCut labels
CLOSE_VOXELS = 4  # the body closed over gaps up to ~8 mm (nostrils) before finding the outside
SLAB_VOXELS = 4_000_000  # grid voxels looked up at once


class DefaceMethod(StrEnum):
    """What replaces the face: air (``remove``) or the generic face (``reface``)."""

    REMOVE = "remove"
    REFACE = "reface"


@dataclass(frozen=True)
class FaceCut:
    """The defacing of one canonical volume: ``labels`` (int8, a box of the volume starting at
    voxel ``start`` = (k, j, i)) say per voxel KEEP, AIR or TISSUE (``tissue_hu``)."""

    labels: np.ndarray
    start: tuple[int, int, int]
    affine_lps: np.ndarray  # of the canonical volume the labels index
    tissue_hu: int
    method: DefaceMethod
    ears: bool
    frame: FaceFrame

    def apply(self, hu: np.ndarray) -> np.ndarray:
        """A copy of the canonical ``hu`` with the cut applied."""
        out = hu.copy()
        k, j, i = self.start
        nk, nj, ni = self.labels.shape
        box = out[k : k + nk, j : j + nj, i : i + ni]
        box[self.labels == AIR] = AIR_HU
        box[self.labels == TISSUE] = self.tissue_hu
        return out

    def on_grid(
        self, affine_lps: np.ndarray, shape_kji: tuple[int, ...]
    ) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        """The labels on another grid (``affine_lps``: its voxel (i, j, k) -> LPS; nearest
        canonical voxel): the box of that grid the cut reaches (k, j, i slices) and the labels
        there, or None when the cut misses the grid."""
        to_cut = np.linalg.inv(self.affine_lps) @ np.asarray(affine_lps, float)
        n = np.array(self.labels.shape[::-1])  # (ni, nj, nk) of the labels box
        lo_cut = np.array(self.start[::-1]) - 0.5
        corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
        cut_corners = lo_cut + corners * n  # canonical (i, j, k) of the labels box's corners
        ijk = (np.linalg.inv(to_cut) @ np.c_[cut_corners, np.ones(8)].T)[:3].T
        size = np.array(shape_kji[::-1])
        lo = np.clip(np.floor(ijk.min(0)).astype(int), 0, size)
        hi = np.clip(np.ceil(ijk.max(0)).astype(int) + 1, 0, size)
        if np.any(hi <= lo):
            return None
        k, j, i = (np.arange(lo[a], hi[a], dtype=np.float64) for a in (2, 1, 0))
        out = np.zeros((len(k), len(j), len(i)), np.int8)
        step = max(1, SLAB_VOXELS // (len(j) * len(i)))
        for k0 in range(0, len(k), step):
            out[k0 : k0 + step] = self._lookup(to_cut, i, j, k[k0 : k0 + step])
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        return box, out

    def _lookup(
        self, to_cut: np.ndarray, i: np.ndarray, j: np.ndarray, k: np.ndarray
    ) -> np.ndarray:
        """Labels at the grid voxels i x j x k (``to_cut``: grid index -> canonical index)."""
        idx = [np.rint(to_cut[a, 3] + to_cut[a, 0] * i[None, None, :] + to_cut[a, 1]
                       * j[None, :, None] + to_cut[a, 2] * k[:, None, None]).astype(np.int64)
               - self.start[2 - a] for a in range(3)]  # fmt: skip
        shape = self.labels.shape
        inside = ((idx[0] >= 0) & (idx[0] < shape[2]) & (idx[1] >= 0) & (idx[1] < shape[1])
                  & (idx[2] >= 0) & (idx[2] < shape[0]))  # fmt: skip
        out = np.zeros(inside.shape, np.int8)
        out[inside] = self.labels[idx[2][inside], idx[1][inside], idx[0][inside]]
        return out


@dataclass(frozen=True)
class _Face:
    """The face's measures in its own frame (mm)."""

    frame: FaceFrame
    eye_y: float
    eye_z: float
    mouth_y: float
    eyes: float  # eye distance
    height: float  # eye midpoint to mouth midpoint


REQUIRED = ("right_eye", "left_eye", "nose_tip")  # the mouth may lie outside the field of view


def _face(landmarks: LandmarkSet) -> _Face:
    """The face's measures; the estimate of a mouth corner outside the field of view stands in
    for it (the face is cut where it is scanned). Eyes or nose missing: NoFaceError."""
    missing = [n for n in REQUIRED if landmarks[n].lps is None]
    if missing:
        raise NoFaceError(
            "the face is not whole in the field of view (missing: "
            f"{', '.join(missing).replace('_', ' ')}): refusing to deface it"
        )
    pts = np.array(
        [lm.lps if lm.lps is not None else landmarks.estimate_lps[i]
         for i, lm in enumerate(landmarks.landmarks.values())], dtype=float
    )  # fmt: skip
    frame = landmarks.frame()
    f = frame.to_frame(pts)
    eyes = float(np.linalg.norm(pts[1] - pts[0]))
    height = float(np.linalg.norm((pts[0] + pts[1] - pts[3] - pts[4]) / 2))
    return _Face(frame, float(f[:2, 1].mean()), float(f[:2, 2].mean()), float(f[3:, 1].mean()),
                 eyes, height)  # fmt: skip


def _boxes(face: _Face, ears: bool) -> list[np.ndarray]:
    """Face-frame boxes (2, 3) [[x0, y0, z0], [x1, y1, z1]] of the face (and the ears)."""
    e, h = face.eyes, face.height
    out = [np.array([[-1.15 * e, face.mouth_y - 0.9 * h, face.eye_z - 0.75 * e],
                     [1.15 * e, face.eye_y + 1.0 * h, FRONT_MM]])]  # fmt: skip
    if ears:
        z = (face.eye_z - 2.0 * e, face.eye_z - 0.9 * e)
        y = (face.eye_y - 0.9 * h, face.eye_y + 0.45 * h)
        out.append(np.array([[-2.0 * e, y[0], z[0]], [2.0 * e, y[1], z[1]]]))
    return out


def _corners(box: np.ndarray) -> np.ndarray:
    return np.array([[box[a, 0], box[b, 1], box[c, 2]] for a in (0, 1) for b in (0, 1)
                     for c in (0, 1)])  # fmt: skip


def _frame_coords(
    volume: CtVolume, frame: FaceFrame, box: tuple[slice, slice, slice]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face-frame X, Y, Z (float32, the box's shape) of every voxel of a box of the volume."""
    m = frame.matrix() @ volume.affine_lps[:3, :3]  # (i, j, k) steps -> frame steps
    o = frame.to_frame(volume.affine_lps[:3, 3])[0]
    k, j, i = (np.arange(s.start, s.stop, dtype=np.float32) for s in box)
    return tuple(
        (
            o[a]
            + m[a, 0] * i[None, None, :]
            + m[a, 1] * j[None, :, None]
            + m[a, 2] * k[:, None, None]
        ).astype(np.float32)  # fmt: skip
        for a in range(3)
    )


def outside_air(hu: np.ndarray, front: tuple[int, int]) -> np.ndarray:
    """The air outside the head: air (< SKIN_HU) outside the body closed by ``CLOSE_VOXELS``
    (so the nostrils and a slightly open mouth are shut, and the nasal cavity and the sinuses
    behind them are inside the head, not outside), connected to the box's face ``front`` =
    (axis, index) that the face looks out of."""
    body = ndimage.binary_closing(hu >= SKIN_HU, np.ones((3, 3, 3), bool),
                                  iterations=CLOSE_VOXELS, border_value=0)  # fmt: skip
    labels, _ = ndimage.label(~body)
    face = np.take(labels, front[1], axis=front[0])
    ids = np.unique(face[face > 0])
    return np.isin(labels, ids) & (hu < SKIN_HU)


def _front(volume: CtVolume, frame: FaceFrame, shape: tuple[int, ...]) -> tuple[int, int]:
    """The box face (axis of hu, index) the face looks out of."""
    step = frame.forward @ volume.affine_lps[:3, :3]  # forward in (i, j, k) steps
    ax = int(np.argmax(np.abs(step)))  # i, j or k
    axis = 2 - ax  # hu is [k, j, i]
    return axis, (shape[axis] - 1 if step[ax] > 0 else 0)


def _depth(volume: CtVolume, outside: np.ndarray) -> np.ndarray:
    sampling = volume.spacing[::-1]
    return ndimage.distance_transform_edt(~outside, sampling=sampling).astype(np.float32)


def plan_deface(
    volume: CtVolume,
    landmarks: LandmarkSet,
    method: DefaceMethod = DefaceMethod.REMOVE,
    *,
    ears: bool = False,
) -> FaceCut:
    """The cut that defaces ``volume`` (canonical, from ``load_ct``) with its ``landmarks``.

    Raises NoFaceError when a landmark is missing or the face box misses the volume.
    """
    if landmarks.cross_check == CrossCheck.FAILED:
        raise NoFaceError(
            "the landmarks could not be confirmed (the face-model fit found no face): "
            "refusing to deface it"
        )
    face = _face(landmarks)
    boxes = _boxes(face, ears)
    corners = np.concatenate([face.frame.to_lps(_corners(b)) for b in boxes])
    margin = int(np.ceil(FACE_DEPTH_MM / min(volume.spacing))) + 2
    vbox = voxel_box(volume, corners, margin=margin)
    if vbox is None:
        raise NoFaceError("the face box lies outside the field of view: refusing to deface it")
    hu = volume.hu[vbox]
    x, y, z = _frame_coords(volume, face.frame, vbox)
    outside = outside_air(hu, _front(volume, face.frame, hu.shape))
    depth = _depth(volume, outside)
    cut = _face_cut(face, boxes[0], x, y, z, depth, outside)
    if ears:
        b = boxes[1]
        side = (np.abs(x) >= 0.75 * face.eyes) & (np.abs(x) <= b[1, 0])
        cut |= side & _between(y, b[:, 1]) & _between(z, b[:, 2]) & (depth < EAR_DEPTH_MM)
    removed_ml = float((cut & (hu >= SKIN_HU)).sum()) * float(np.prod(volume.spacing)) / 1000
    if removed_ml < MIN_REMOVED_ML:
        raise NoFaceError(
            f"the cut would remove only {removed_ml:.0f} ml of tissue (a face: 300-700 ml): the "
            "face is not where the landmarks put it; refusing to deface it"
        )
    labels = np.where(cut, AIR, KEEP).astype(np.int8)
    tissue_hu = _tissue_hu(hu, cut)
    if method == DefaceMethod.REFACE:
        labels[cut & _behind_generic_face(face, x, y, z)] = TISSUE
    start = (vbox[0].start, vbox[1].start, vbox[2].start)
    return FaceCut(labels, start, volume.affine_lps.copy(), tissue_hu, method, ears, face.frame)


def _between(v: np.ndarray, lim: np.ndarray) -> np.ndarray:
    return (v >= lim[0]) & (v <= lim[1])


def _face_cut(
    face: _Face,
    box: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    depth: np.ndarray,
    outside: np.ndarray,
) -> np.ndarray:
    brow = face.eye_y + 0.3 * face.height
    forehead = y >= brow
    floor = np.where(forehead, face.eye_z - 0.4 * face.eyes, box[0, 2])
    limit = np.where(forehead, FOREHEAD_DEPTH_MM, FACE_DEPTH_MM)
    inside = (np.abs(x) <= box[1, 0]) & _between(y, box[:, 1]) & (z > floor) & (z <= box[1, 2])
    return inside & (outside | (depth < limit))


def _tissue_hu(hu: np.ndarray, cut: np.ndarray) -> int:
    """Soft tissue HU for the generic face: the median of the cut's soft tissue (-100..100)."""
    soft = hu[cut & (hu > -200) & (hu < 200)]
    return int(np.clip(np.median(soft), -100, 100)) if soft.size else 20


def _behind_generic_face(face: _Face, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    from ctface.deid.generic_face import generic_face

    h = generic_face().height(x, y, 1.0)  # its own size: the patient's proportions identify
    return np.isfinite(h) & (z <= h)


def intracranial(volume: CtVolume, landmarks: LandmarkSet) -> np.ndarray:
    """The issue's intracranial region of a canonical volume: deeper than 20 mm under the skin
    (distance to the air outside the head) and behind the eyes (face-frame Z below theirs)."""
    face = _face(landmarks)
    whole = (slice(0, volume.hu.shape[0]), slice(0, volume.hu.shape[1]),
             slice(0, volume.hu.shape[2]))  # fmt: skip
    outside = outside_air(volume.hu, _front(volume, face.frame, volume.hu.shape))
    depth = _depth(volume, outside)
    z = _frame_coords(volume, face.frame, whole)[2]
    return (depth > INTRACRANIAL_DEPTH_MM) & (z < face.eye_z) & ~outside


def cut_summary(cut: FaceCut, hu: np.ndarray) -> dict[str, Any]:
    """Voxels changed (ml at the canonical spacing) by kind."""
    k, j, i = cut.start
    nk, nj, ni = cut.labels.shape
    box = hu[k : k + nk, j : j + nj, i : i + ni]
    ml = float(abs(np.linalg.det(cut.affine_lps[:3, :3]))) / 1000.0
    tissue_removed = (cut.labels != KEEP) & (box >= SKIN_HU)
    return {
        "method": str(cut.method),
        "ears": cut.ears,
        "removed_tissue_ml": round(float(tissue_removed.sum()) * ml, 1),
        "generic_face_ml": round(float((cut.labels == TISSUE).sum()) * ml, 1),
        "tissue_hu": cut.tissue_hu if cut.method == DefaceMethod.REFACE else None,
        "frame": cut.frame.to_json(),
    }
