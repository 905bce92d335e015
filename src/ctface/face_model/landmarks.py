"""The five landmarks on a face-model mesh: eye centres (on the surface in front of the
eyelid opening), nose tip and mouth corners (iBUG-68 points). The phantom generator's ground
truth and the face-model fit of ``landmarks.surface_fit`` use the same definition."""

from __future__ import annotations

import numpy as np

from ctface.face_model.model import FaceModel

FIVE_POINTS = {
    "right_eye": None,
    "left_eye": None,
    "nose_tip": 30,
    "right_mouth": 48,
    "left_mouth": 54,
}


def _ray_hit(v: np.ndarray, tris: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> float:
    """Smallest positive distance along a ray to a triangle (Moller-Trumbore); inf if none."""
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    e1, e2 = b - a, c - a
    pv = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, pv)
    ok = np.abs(det) > 1e-9
    inv = np.where(ok, 1.0 / np.where(ok, det, 1), 0)
    tv = origin - a
    u = np.einsum("ij,ij->i", tv, pv) * inv
    qv = np.cross(tv, e1)
    w = (qv @ direction) * inv
    t = np.einsum("ij,ij->i", e2, qv) * inv
    hit = ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0)
    return float(t[hit].min()) if hit.any() else float("inf")


def five_landmarks(model: FaceModel, v: np.ndarray) -> dict[str, np.ndarray]:
    """Model-frame positions of the five landmarks on the skin surface.

    Eye centre = the centre of the eyelid opening (mean of the six contour points) carried along
    the face's forward axis onto the outer surface (cornea, or lid when the eye is closed).
    """
    lm = v[model.landmarks68]
    tris = model.triangles[model.group_mask("face", "eyeball_left", "eyeball_right")]
    out: dict[str, np.ndarray] = {}
    fwd = np.array([0.0, 0.0, 1.0])
    for name, sl in (("right_eye", slice(36, 42)), ("left_eye", slice(42, 48))):
        c = lm[sl].mean(0).astype(np.float64)
        start = c + 25.0 * fwd
        t = _ray_hit(v.astype(np.float64), tris, start, -fwd)
        out[name] = start - t * fwd if np.isfinite(t) else c
    for name, idx in FIVE_POINTS.items():
        if idx is not None:
            out[name] = lm[idx].astype(np.float64)
    return out
