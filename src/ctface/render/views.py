"""Camera poses: the paper's 90 views (pitch x roll, yaw 0) and their rotation matrices.

Coordinates of the face frame (``FaceFrame``): X = image right (the patient's left in a frontal
view), Y = up (towards the top of the head), Z = forward (out of the face, towards the viewer);
origin at the nose tip. A view turns the head in front of a fixed camera that looks along -Z:

- ``pitch`` > 0: chin up (the nose moves up in the image), a rotation about X;
- ``roll`` > 0: the face turns counter-clockwise in the image, a rotation about Z (view axis);
- ``yaw`` > 0: the face turns towards the image's right, a rotation about Y.

``Q = R_roll @ R_pitch @ R_yaw`` maps face-frame coordinates to camera coordinates (same axes).
Rotations are about the nose tip, so the nose tip keeps its pixel and its depth in every view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ctface.errors import InvalidInputError

# The render's camera (the paper's): square depth images of RENDER_PX pixels over a FIELD_MM
# wide field at the face (0.86 mm/px); the networks read them pooled to 128 px (embed.images).
RENDER_PX = 256
FIELD_MM = 220.0


@dataclass(frozen=True)
class View:
    """A head pose in front of the camera, in degrees (conventions in the module docstring)."""

    pitch: float
    roll: float
    yaw: float = 0.0

    def rotation(self) -> np.ndarray:
        """3x3 matrix Q: face-frame (X right, Y up, Z forward) -> camera coordinates."""
        return _rot_z(self.roll) @ _rot_x(-self.pitch) @ _rot_y(self.yaw)

    def to_json(self) -> dict[str, float]:
        return {"pitch": round(self.pitch, 4), "roll": round(self.roll, 4), "yaw": self.yaw}


def _rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def grid_shape(n_views: int) -> tuple[int, int]:
    """(pitches, rolls) for ``n_views``: the most nearly square factor pair, pitches <= rolls.

    90 -> 9 x 10 (the paper), 12 -> 3 x 4, 16 -> 4 x 4, a prime p -> 1 x p (rolls only).
    """
    if n_views < 1:
        raise InvalidInputError(f"number of views must be >= 1, got {n_views}")
    p = max(d for d in range(1, math.isqrt(n_views) + 1) if n_views % d == 0)
    return p, n_views // p


def _levels(n: int, lo: float, hi: float) -> list[float]:
    if n == 1:
        return [(lo + hi) / 2]
    return [float(x) for x in np.linspace(lo, hi, n)]


def pose_grid(
    n_views: int = 90,
    pitch: tuple[float, float] = (-20.0, 20.0),
    roll: tuple[float, float] = (-25.0, 25.0),
) -> list[View]:
    """The paper's pose augmentation: a pitch x roll grid with yaw 0, ranges inclusive.

    ``n_views`` is factored by ``grid_shape`` (90 -> 9 pitches x 10 rolls); a single level sits
    at the middle of its range. Order: pitch outer (ascending), roll inner (ascending).
    """
    n_pitch, n_roll = grid_shape(n_views)
    if pitch[0] > pitch[1] or roll[0] > roll[1]:
        raise InvalidInputError(f"pose ranges must be (low, high): pitch {pitch}, roll {roll}")
    return [
        View(pitch=p, roll=r, yaw=0.0)
        for p in _levels(n_pitch, *pitch)
        for r in _levels(n_roll, *roll)
    ]
