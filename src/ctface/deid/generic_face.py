"""The generic face that ``deface --method reface`` puts in place of a patient's face.

It is the ICT-FaceKit face model's mean shape (MIT licence) seen from the front: a height field
``Z(X, Y)`` in the face frame of its own five landmarks (origin the nose tip, X along the eyes,
Y up, Z forward; ``landmarks.frame``), made with the renderer's frontal camera
(``render.depth.render_surface``). The field ships with the package (``generic_face.npz``, about
100 kB), so refacing needs no face model at run time; ``ctface train generic-face`` rebuilds it
from the face model.

A scan's face frame comes from its landmarks (pose and position); the generic face keeps the
mean face's size (``GenericFace.height`` can scale it: the patient's own proportions would
carry identity into the refaced scan).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ctface.errors import MissingDataError
from ctface.face_model.landmarks import five_landmarks
from ctface.face_model.model import load_face_model
from ctface.files import atomic_path
from ctface.landmarks.frame import FaceFrame, FrameMethod
from ctface.landmarks.sampling import face_axes
from ctface.landmarks.skin import mesh_surface
from ctface.render.depth import CENTRE_UP_MM, REFERENCE_MM, render_surface
from ctface.render.views import FIELD_MM, RENDER_PX, View

SHIPPED = Path(__file__).with_name("generic_face.npz")
# the face model's groups that make its outer face surface (eyeballs close the eye openings)
SURFACE_GROUPS = ("face", "head_neck", "eyeball_left", "eyeball_right")


@dataclass(frozen=True)
class GenericFace:
    """The mean face as a frontal height field: ``height_mm[row, col]`` is the face-frame Z of
    the surface (NaN = no surface), columns along X, rows down Y, ``mm_per_pixel`` apart, the
    centre pixel at (0, ``CENTRE_UP_MM``); ``eye_distance_mm`` and ``eye_mouth_mm`` are the mean
    face's own, for scaling to a scan."""

    height_mm: np.ndarray
    mm_per_pixel: float
    eye_distance_mm: float
    eye_mouth_mm: float

    def height(self, x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
        """Z of the generic face scaled by ``scale`` at face-frame (x, y) mm (NaN outside it)."""
        size = self.height_mm.shape[0]
        c = (size - 1) / 2
        col = np.rint(x / scale / self.mm_per_pixel + c).astype(np.int64)
        row = np.rint((CENTRE_UP_MM - y / scale) / self.mm_per_pixel + c).astype(np.int64)
        inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        z = np.full(np.shape(x), np.nan, np.float32)
        z[inside] = self.height_mm[row[inside], col[inside]] * scale
        return z


def face_measures(points: np.ndarray) -> tuple[float, float]:
    """Eye distance and eye-midpoint-to-mouth-midpoint distance (mm) of the five landmarks."""
    re, le, _, rm, lm = points
    return float(np.linalg.norm(le - re)), float(np.linalg.norm((re + le - rm - lm) / 2))


def build_generic_face(face_model: str | Path | None = None) -> GenericFace:
    """The height field of the face model's mean shape (``face_model``: the packed npz)."""
    model = load_face_model(face_model)
    v = model.neutral.astype(np.float64)
    marks = five_landmarks(model, v)
    pts = np.array([marks[n] for n in ("right_eye", "left_eye", "nose_tip", "right_mouth",
                                       "left_mouth")])  # fmt: skip
    axes = face_axes(pts)
    frame = FaceFrame(pts[2], axes[2], axes[1], FrameMethod.LANDMARKS)
    surface = mesh_surface(v, model.triangles[model.group_mask(*SURFACE_GROUPS)])
    depth = render_surface(surface, frame, [View(0.0, 0.0, 0.0)])[0]
    eyes, height = face_measures(pts)
    return GenericFace((depth - REFERENCE_MM).astype(np.float32), FIELD_MM / RENDER_PX, eyes,
                       height)  # fmt: skip


def save_generic_face(face: GenericFace, path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            height_mm=face.height_mm.astype(np.float16),
            mm_per_pixel=face.mm_per_pixel,
            eye_distance_mm=face.eye_distance_mm,
            eye_mouth_mm=face.eye_mouth_mm,
        )
    return path


@lru_cache(maxsize=1)
def generic_face(path: Path = SHIPPED) -> GenericFace:
    """The shipped generic face (read once per process)."""
    if not path.is_file():
        raise MissingDataError(
            f"the generic face {path.name} is missing from the package (rebuild it with "
            "`ctface train generic-face`)"
        )
    with np.load(path) as d:
        return GenericFace(d["height_mm"].astype(np.float32), float(d["mm_per_pixel"]),
                           float(d["eye_distance_mm"]), float(d["eye_mouth_mm"]))  # fmt: skip
