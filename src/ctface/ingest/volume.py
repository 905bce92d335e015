"""The canonical CT volume: Hounsfield units plus the geometry that places them in the patient.

Conventions (the same as DICOM and ITK):
- ``hu`` is indexed ``[k, j, i]``: slice, row, column.
- ``affine_lps`` maps the voxel index ``(i, j, k, 1)`` to patient coordinates in mm, LPS
  (+x towards the patient's left, +y posterior, +z superior).
- ``spacing`` is ``(di, dj, dk)`` in mm: column spacing, row spacing, slice spacing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# The skin: the HU level of the air/skin isosurface that every stage (face frame, landmark fit,
# rendering, the phantoms' QC pictures) uses by default. Air is -1000 HU, fat about -100, skin
# about 0; the paper uses -400..-300; -350 is its middle.
SKIN_HU = -350.0


@dataclass
class CtVolume:
    """A CT volume in HU with its voxel-to-patient (LPS, mm) geometry.

    Attributes
    ----------
    hu : ndarray, shape (K, J, I)
        Hounsfield units (int16 after ``load_ct``), indexed slice, row, column.
    affine_lps : ndarray, shape (4, 4)
        Voxel index ``(i, j, k, 1)`` -> patient LPS position in mm.
    metadata : dict
        What the reader knew: ``source``, ``format``, ``files``, DICOM UIDs and PatientID,
        ``original_spacing`` (mm), ``source_geometry`` (before resampling), ...
    """

    hu: np.ndarray
    affine_lps: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"hu must be 3-D [k, j, i], got shape {self.hu.shape}")
        self.affine_lps = np.asarray(self.affine_lps, dtype=float)
        if self.affine_lps.shape != (4, 4):
            raise ValueError("affine_lps must be 4x4")

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along i (columns), j (rows), k (slices)."""
        k, j, i = self.hu.shape
        return i, j, k

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (di, dj, dk) in mm."""
        s = np.linalg.norm(self.affine_lps[:3, :3], axis=0)
        return float(s[0]), float(s[1]), float(s[2])

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit LPS directions of i, j, k."""
        return self.affine_lps[:3, :3] / np.asarray(self.spacing)

    @property
    def origin(self) -> np.ndarray:
        """LPS position (mm) of the centre of voxel (0, 0, 0)."""
        return self.affine_lps[:3, 3].copy()

    @property
    def affine_ras(self) -> np.ndarray:
        """Voxel (i, j, k) -> RAS mm, as NIfTI stores it."""
        return LPS_TO_RAS @ self.affine_lps

    def scanned_geometry(self) -> tuple[np.ndarray, np.ndarray]:
        """(affine_lps, shape_ijk) of what was actually scanned: the source geometry recorded in
        ``metadata["source_geometry"]`` by resampling (which pads with air), else this volume's."""
        src = self.metadata.get("source_geometry")
        if isinstance(src, dict) and "affine_lps" in src and "shape_ijk" in src:
            return np.asarray(src["affine_lps"], float), np.asarray(src["shape_ijk"], float)
        return self.affine_lps, np.array(self.shape_ijk, dtype=float)

    def ijk_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices (N, 3) as (i, j, k) -> LPS mm (N, 3)."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
        return ijk @ self.affine_lps[:3, :3].T + self.affine_lps[:3, 3]

    def lps_to_ijk(self, lps: np.ndarray) -> np.ndarray:
        """LPS mm (N, 3) -> continuous voxel indices (i, j, k) (N, 3)."""
        lps = np.atleast_2d(np.asarray(lps, dtype=float))
        inv = np.linalg.inv(self.affine_lps)
        return lps @ inv[:3, :3].T + inv[:3, 3]
