"""Geometry on the face-model mesh: vertex normals, per-vertex tissue maps.

Surface sampling (``SurfaceSamples``, ``sample_surface``) lives in ``ctface.geometry`` (shared
with the renderer).

Everything here is in the model frame (mm): +x = the face's left, +y up, +z out of the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctface.face_model.model import FaceModel

# Groups whose union is the outer surface of the head once the sockets are closed by the eyeballs.
OUTER_GROUPS = (
    "face",
    "head_neck",
    "mouth_socket",
    "eye_socket_left",
    "eye_socket_right",
    "eyeball_left",
    "eyeball_right",
)
# Groups whose triangle normals all point out of the head (sockets point in; eyeballs mix).
OUTWARD_GROUPS = ("face", "head_neck")


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V, 3); orientation as the mesh gives it."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    fn = np.cross(b - a, c - a)
    vn = np.zeros_like(vertices, dtype=np.float64)
    for i in range(3):
        np.add.at(vn, triangles[:, i], fn)
    return (vn / (np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class TissueMaps:
    """Per-vertex tissue parameters of a generic adult, from forensic facial soft-tissue depths.

    bone_depth: skin-to-bone distance (mm); fat_fraction: share of it that is subcutaneous fat;
    has_bone: 0 where no bone lies under the skin (cartilaginous nose, neck), smooth in between;
    weight_gain: how much of a weight change (mm) the skin there moves outwards (cheeks, jowls).
    """

    bone_depth: np.ndarray
    fat_fraction: np.ndarray
    has_bone: np.ndarray
    weight_gain: np.ndarray


def _anchor_blend(
    v: np.ndarray, anchors: list[tuple[np.ndarray, float]], sigma: float
) -> np.ndarray:
    pos = np.array([p for p, _ in anchors], dtype=np.float64)
    val = np.array([x for _, x in anchors])
    d2 = ((v[:, None, :] - pos[None]) ** 2).sum(-1)
    w = np.exp(-d2 / (2 * sigma**2)) + 1e-9 / (1 + d2)
    return ((w * val).sum(1) / w.sum(1)).astype(np.float32)


def tissue_maps(model: FaceModel) -> TissueMaps:
    """Tissue maps on the neutral mesh; vertex correspondence carries them to every identity.

    Depths follow published adult means (e.g. Stephan & Simpson 2008): forehead ~4.5 mm,
    glabella ~5.5, nasion ~6.5, rhinion ~2.5, mid-philtrum ~11, lips ~12, chin ~11,
    zygion ~7, mid-buccal ~20, gonion ~13; scalp 5-7 mm.
    """
    v = model.neutral.astype(np.float64)
    lm = v[model.landmarks68]
    mid = np.array([1.0, 0, 0])

    def both(p: np.ndarray, val: float) -> list[tuple[np.ndarray, float]]:
        return [(p, val), (p * (1 - 2 * mid), val)]

    eye_r = lm[36:42].mean(0)
    depth = [
        ((lm[21] + lm[22]) / 2, 5.5),
        (lm[27], 6.5),
        (lm[27] + 0.6 * (lm[30] - lm[27]), 2.5),
        ((lm[33] + lm[51]) / 2, 11.0),
        (lm[51], 12.0),
        (lm[57], 12.5),
        (lm[8] + np.array([0, 12, 0]), 11.0),
        (lm[8], 7.5),
        (np.array([0, lm[19][1] + 45, lm[27][2] - 5]), 4.5),
        (np.array([0, v[:, 1].max(), 0.0]), 5.5),
        (np.array([0, eye_r[1] + 25, v[:, 2].min()]), 7.0),
        (np.array([0, lm[8][1] - 35, lm[8][2] - 30]), 30.0),
        (np.array([0, lm[8][1] - 30, v[:, 2].min() + 30]), 25.0),
    ]
    depth += both(lm[19], 6.0) + both(eye_r + np.array([0, -13, 0]), 7.0)
    depth += both(np.array([eye_r[0] - 8, eye_r[1] - 20, eye_r[2] - 8]), 7.0)
    depth += both(np.array([lm[48][0] - 18, lm[48][1] + 8, lm[48][2] - 18]), 20.0)
    depth += both(np.array([lm[4][0], lm[4][1], lm[4][2]]), 14.0)
    depth += both(lm[2] + np.array([0, -10, -10]), 13.0)
    depth += both(np.array([lm[0][0] + 5, lm[19][1], lm[0][2] - 5]), 11.0)
    depth += both(np.array([lm[0][0] - 20, lm[19][1] + 30, lm[0][2] - 60]), 6.0)
    bone_depth = _anchor_blend(v, depth, sigma=16.0)

    fat = [((lm[21] + lm[22]) / 2, 0.25), (lm[30], 0.15), ((lm[33] + lm[51]) / 2, 0.3)]
    fat += both(np.array([lm[48][0] - 18, lm[48][1] + 8, lm[48][2] - 18]), 0.65)
    fat += both(lm[4], 0.6) + both(lm[0], 0.35)
    fat += [(np.array([0, v[:, 1].max(), 0.0]), 0.35), (np.array([0, lm[8][1] - 35, 40.0]), 0.5)]
    fat_fraction = _anchor_blend(v, fat, sigma=25.0)

    gain = [(lm[30], 0.1), ((lm[21] + lm[22]) / 2, 0.1), (np.array([0, v[:, 1].max(), 0]), 0.05)]
    gain += both(np.array([lm[48][0] - 18, lm[48][1] + 8, lm[48][2] - 18]), 1.0)
    gain += both(lm[5], 1.0) + both(lm[2], 0.5)
    gain += [(lm[8] + np.array([0, -15, -20]), 1.0), (np.array([0, lm[8][1] - 40, 0.0]), 0.6)]
    weight_gain = np.clip(_anchor_blend(v, gain, sigma=18.0), 0, 1)

    # No bone under the cartilaginous lower nose, and none under the skin of the neck.
    nose_y0, nose_y1 = lm[33][1] - 2, (lm[27][1] + 2 * lm[30][1]) / 3
    in_nose = (np.abs(v[:, 0]) < 24) & (v[:, 1] > nose_y0) & (v[:, 1] < nose_y1)
    in_nose &= v[:, 2] > lm[31][2] - 6
    below_jaw = v[:, 1] < lm[8][1] - 8 + 0.4 * np.clip(lm[8][2] - v[:, 2], 0, 80)
    has_bone = (~(in_nose | below_jaw)).astype(np.float32)
    return TissueMaps(bone_depth, fat_fraction, has_bone, weight_gain)
