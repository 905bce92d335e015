"""Normalized CT volumes for the paper's 3D-CNN baselines (Table I: "3D volume" rows).

The paper feeds the CT itself to 3D VGG16 / ResNet10/18/34, with or without cropping to the
face. ctface samples both inputs from the canonical volume (``load_ct``) on a small cube
(``VOLUME_SIZE``^3, reduced from the paper's full volumes to fit a CPU):

- ``face``: the face crop, in the face frame of the landmarks (X right, Y up, Z forward, origin
  at the nose tip): X -80..80 mm, Y -100..60 mm, Z -110..20 mm (5 x 5 x 4 mm voxels);
- ``head``: the whole head crop of ``load_ct``, uncropped, in scanner axes, its longest side
  fitted to the cube (isotropic voxels, centred).

HU are windowed to -1000..1000 and scaled to 0..1 (air 0). Trilinear sampling
(``scipy.ndimage.map_coordinates``), air outside the scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

from ctface.files import save_npz_atomic
from ctface.ingest.volume import CtVolume
from ctface.landmarks.frame import FaceFrame

VOLUME_SIZE = 32
FACE_BOX_MM = ((-80.0, 80.0), (-100.0, 60.0), (-110.0, 20.0))  # X, Y, Z in the face frame
HU_WINDOW = (-1000.0, 1000.0)


@dataclass(frozen=True)
class ScanVolumes:
    """One scan's baseline inputs, (S, S, S) float16 in 0..1, axes (Z, Y, X) of their grid."""

    scan_id: str
    subject_id: str
    face: np.ndarray
    head: np.ndarray

    def save(self, path: Path) -> None:
        face, head = self.face.astype(np.float16), self.head.astype(np.float16)
        save_npz_atomic(
            path, scan_id=self.scan_id, subject_id=self.subject_id, face=face, head=head
        )

    @classmethod
    def load(cls, path: Path) -> ScanVolumes:
        with np.load(path) as z:
            return cls(str(z["scan_id"]), str(z["subject_id"]), z["face"], z["head"])


def _sample(volume: CtVolume, lps: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """HU at LPS points (N, 3) -> windowed 0..1 values reshaped to ``shape``."""
    ijk = volume.lps_to_ijk(lps)
    kji = ijk[:, ::-1].T  # hu is indexed [k, j, i]
    hu = map_coordinates(volume.hu.astype(np.float32), kji, order=1, cval=HU_WINDOW[0])
    lo, hi = HU_WINDOW
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo)).reshape(shape).astype(np.float32)


def face_volume(volume: CtVolume, frame: FaceFrame, size: int = VOLUME_SIZE) -> np.ndarray:
    """The face crop of ``volume`` in the face frame, (size,)*3 as (Z, Y, X) of the frame."""
    axes = [np.linspace(a, b, size) for a, b in FACE_BOX_MM]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    xyz = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    return _sample(volume, frame.to_lps(xyz), (size, size, size))


def head_volume(volume: CtVolume, size: int = VOLUME_SIZE) -> np.ndarray:
    """The whole volume (no face crop) on an isotropic cube, (size,)*3 as (k, j, i)."""
    n = np.asarray(volume.shape_ijk, float)
    ext = (n - 1) * np.asarray(volume.spacing)
    step = ext.max() / (size - 1)
    centre = (n - 1) / 2
    g = (np.arange(size) - (size - 1) / 2) * step
    axes = [centre[a] + g / volume.spacing[a] for a in range(3)]
    k, j, i = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    return _sample(volume, volume.ijk_to_lps(ijk), (size, size, size))
