"""What lies under the face surface: a face is skin over soft tissue, a bare skull is not.

The renderer finds a surface wherever the CT crosses the skin threshold (-350 HU), so a bare
skull (no soft tissue) also gives a face-shaped surface, and the face separation keeps 26-37 %
of its image as face. ``soft_tissue_share`` tells them apart: on a ``GRID_MM`` grid over the
face (face frame x -50..50 mm, y -45..75 mm: brow to mouth) it samples the CT (trilinear) along
the view axis 1, 2, ... 6 mm behind the surface of the frontal depth image and returns the
share of the samples that are not air (>= -200 HU) and lie in the soft-tissue range
(-200..+250 HU: skin, fat, muscle, cartilage; also a thermoplastic RT mask, 180 HU). A face
has skin, fat and muscle there; a bare skull has bone (or, through the orbits and the nose,
air) right under its surface. Air is left out so that a mask standing off the skin, or the
holes in it, count neither way.

Measured (``gallery.acquire`` refuses under 0.35): coarse phantoms (0.9-1 mm pixels; 4
subjects each) 0.65-0.79 normal scans, 0.82-0.89 with an RT mask, 0.64-0.89 with nasogastric
and endotracheal tubes, 0.66-0.81 at 1 mm slices, 0.58-0.75 at 5 mm slices; real CTs:
invesalius_0051 0.93, vtk_headsq 0.92, visible_human (8-bit, approximate HU) 0.99,
ge_gantry_tilt renders no face (forehead only; refused ``no-face`` before this check). Bare
skulls made from these (every voxel under +250 HU set to air): phantoms 0.06-0.12,
invesalius_0051 0.11, visible_human 0.12 (vtk_headsq's bare skull renders no face).

The same samples, continued to ``BONE_SEARCH_MM`` behind the surface, tell whether there is a
skull behind the face and how thick the covering over it is. ``bone_share``: the share of the
grid points on the surface with bone (>= ``BONE_HU``) within 40 mm behind the surface; a head
phantom without a skull (water-equivalent plastic) or a mannequin has none. ``cover_mm``: at
the points that have bone, the non-air thickness in front of it (1 mm samples: skin, fat,
muscle, and whatever lies on the skin; air gaps under a mask are left out), its 10th
percentile: where the skin is thinnest (forehead, nasal bridge, cheekbones), so that a thick
mask or bolus on the face shows as the thickness it adds. Measured (``gallery.acquire`` refuses
``bone_share`` < 0.3 and ``cover_mm`` > 12): coarse phantoms bone_share 0.86-0.93, cover 2 mm;
with an RT mask (the standard one, and the held-out full mask at 4.5-5 mm slices) 0.82-0.92, 2
mm; real CTs (invesalius_0051, vtk_headsq, visible_human) 0.73-0.79, 3-5 mm; their
re-acquisitions (``benchmarks/reacquisition.py``) 0.66-0.79, 3-6 mm; 32 phantoms with every
device drawn often (``ctface phantom --subjects 16 --scans-min 1 --scans-max 1 --seed 9191
--nuisance benchmarks/results/evaluation/gate_stress_nuisance_dr.json``, and ``--seed 9292
--style heldout --nuisance ...gate_stress_nuisance_heldout.json``: masks thick and open-face,
blankets, pillows, straps, hair, beards, glasses, tubes, bite blocks) 0.69-0.94, 1-4 mm, none
refused; the first 20 people of the held-out cohort's command (``ctface phantom --subjects 20
--scans-min 2 --scans-max 3 --seed 1717 --style heldout --dicom-fraction 0.25 --nuisance H``,
README; 53 scans) 0.64-0.95, 1-3 mm, none refused; a phantom's face under a layer of 60 HU
added in front of it: 8 mm thick 0.86 / 10 mm, 12 mm thick 0.84 / 14 mm, 20 mm thick 0.69 / 22
mm; the phantom with every voxel of the head set to 20 HU (no skull) 0.00; ctface's own defaced
scans (``deid.deface``, 4 coarse phantoms): ``remove`` 0.34-0.38 / 0 mm, ``reface`` 0.35-0.48 /
3-15 mm (its generic face can stand well off the frontal bone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ctface.ingest.volume import CtVolume
from ctface.landmarks.frame import FaceFrame

SOFT_TISSUE_HU = (-200.0, 250.0)  # below: air (left out); above: bone, teeth, metal
DEPTHS_MM = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)  # behind the surface, along the view axis
SAMPLE_MM = 1.0  # the depths' step (DEPTHS_MM are the first six)
BONE_HU = 300.0  # cortical bone of the skull; above the soft-tissue range
BONE_SEARCH_MM = 40.0
COVER_PERCENTILE = 10.0
GRID_MM = 2.0
FACE_X_MM = (-50.0, 50.0)  # face frame, mm from the nose tip (x right, y up)
FACE_Y_MM = (-45.0, 75.0)


def face_grid() -> np.ndarray:
    """(N, 2) face-frame (x, y) mm of the sampling grid over the face."""
    x = np.arange(FACE_X_MM[0], FACE_X_MM[1] + 1e-6, GRID_MM)
    y = np.arange(FACE_Y_MM[0], FACE_Y_MM[1] + 1e-6, GRID_MM)
    gx, gy = np.meshgrid(x, y)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


@dataclass(frozen=True)
class UnderSkin:
    """What lies behind the frontal face surface: ``soft_tissue_share`` of the non-air samples
    1-6 mm behind it (0 when every sample is air), ``samples_n``, the number of those non-air
    samples; ``bone_share`` of the grid points with bone within ``BONE_SEARCH_MM``, and
    ``cover_mm``, the 10th percentile of the non-air thickness in front of that bone (None
    when there is no bone)."""

    soft_tissue_share: float
    samples_n: int
    bone_share: float
    cover_mm: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "soft_tissue_share": self.soft_tissue_share,
            "samples_n": float(self.samples_n),
            "bone_share": self.bone_share,
            "cover_mm": self.cover_mm,
        }


def under_skin(volume: CtVolume, frame: FaceFrame, surface: np.ndarray) -> UnderSkin:
    """``surface``: (N, 3) face-frame points on the frontal surface (z towards the viewer)."""
    hu = _samples_behind(volume, frame, surface)  # (depths, points)
    tissue = hu >= SOFT_TISSUE_HU[0]
    near = tissue[: len(DEPTHS_MM)]
    n = int(near.sum())
    share = float((near & (hu[: len(DEPTHS_MM)] <= SOFT_TISSUE_HU[1])).sum() / n) if n else 0.0
    bone = hu >= BONE_HU
    has_bone = bone.any(axis=0)
    first = bone.argmax(axis=0)[has_bone]
    before = np.cumsum(tissue, axis=0)[first, np.flatnonzero(has_bone)] - 1  # excl. the bone
    cover = (
        round(float(np.percentile(before, COVER_PERCENTILE)) * SAMPLE_MM, 1) if len(first) else None
    )
    bone_share = float(has_bone.mean()) if len(surface) else 0.0
    return UnderSkin(round(share, 3), n, round(bone_share, 3), cover)


def _samples_behind(volume: CtVolume, frame: FaceFrame, surface: np.ndarray) -> np.ndarray:
    """(depths, N) HU (trilinear) at 1, 2, ... ``BONE_SEARCH_MM`` mm behind each point."""
    depths = np.arange(1, int(BONE_SEARCH_MM / SAMPLE_MM) + 1) * SAMPLE_MM
    behind = np.concatenate([surface - [0.0, 0.0, d] for d in depths])
    ijk = volume.lps_to_ijk(frame.to_lps(behind))
    at = ijk[:, ::-1].T  # (k, j, i): the array's axis order
    hu = ndimage.map_coordinates(volume.hu, at, output=np.float32, order=1, cval=-1000.0)
    return hu.reshape(len(depths), len(surface))
