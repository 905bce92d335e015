"""A second visit of a scanned head: the same CT re-acquired in another pose, on another grid.

``reacquire(volume, visit)`` turns any ``CtVolume`` (native geometry from ``ingest.read_ct``, or
canonical from ``load_ct``) into what a second scan of the same head would look like:

- pose: the head turned rigidly about its centre (the centre of the bounding box of everything
  denser than -500 HU) by ``Visit.pitch_deg`` about L (> 0: chin up, as ``render.views``), then
  ``roll_deg`` about P and ``yaw_deg`` about S (``pose_rotation``);
- sampling: an axial LPS grid of ``pixel_mm`` pixels and contiguous ``slice_mm`` slices over the
  turned head's bounding box; each voxel is the mean of the source sampled (trilinear) at
  ``n x n x m`` points spread over its box (``SUBSAMPLE_MM`` or the source's finest step
  apart): the slice profile is a box over the thickness, the pixel aperture a box over the
  pixel;
- noise: white Gaussian, SD ``noise_hu_at_1mm / sqrt(slice_mm)`` (as ``phantom.params`` scales
  it), from ``Visit.seed``; rounded to int16 and clipped to -1024..3071.

What the source did not scan stays air (-1024 HU), and the scanned box (``metadata
["source_geometry"]``, which the field-of-view checks read) is the source's, turned with the
head: a field of view that cut the first visit (the Visible Human's nose tip, the GE sample's
face below the brow) cuts the second one too. The phantom scanner (``phantom.scanner``)
resamples a head *model* (signed distance and interior fields, skin partial volume from the
distance) rather than a CT, so none of its code applies here.

``second_visit(volume, visit)`` also crops to the head and resamples to the canonical 1 mm
grid, as ``load_ct`` does with a file: the result goes straight to ``api.acquire``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from ctface.geometry import axis_rotation
from ctface.ingest.canonical import canonicalize
from ctface.ingest.head import find_head
from ctface.ingest.volume import CtVolume

AIR_HU, HU_MAX = -1024, 3071
BODY_HU = -500.0
SUBSAMPLE_MM = 1.0  # sub-samples of a voxel's box at most this far apart (or the source's step)
SLAB_SAMPLES = 12_000_000  # fine samples resampled at once (48 MB of float32)
MAX_POSE_DEG = 12.0
SLICE_MM = (1.0, 3.0)


@dataclass(frozen=True)
class Visit:
    """How the second visit is scanned: head pose (deg), grid (mm), noise and its seed."""

    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    yaw_deg: float = 0.0
    pixel_mm: float = 0.7
    slice_mm: float = 2.0
    noise_hu_at_1mm: float = 15.0
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def draw_visit(
    rng: np.random.Generator,
    *,
    pixel_mm: tuple[float, float] = (0.45, 1.0),
    max_pose_deg: float = MAX_POSE_DEG,
) -> Visit:
    """A random second visit: pose within +-``max_pose_deg`` about each axis, 1-3 mm slices,
    ``pixel_mm`` pixels, noise SD 10-25 HU at 1 mm."""
    pose = rng.uniform(-max_pose_deg, max_pose_deg, 3)
    return Visit(
        pitch_deg=float(pose[0]),
        roll_deg=float(pose[1]),
        yaw_deg=float(pose[2]),
        pixel_mm=float(rng.uniform(*pixel_mm)),
        slice_mm=float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5, 3.0])),
        noise_hu_at_1mm=float(rng.uniform(10.0, 25.0)),
        seed=int(rng.integers(2**31)),
    )


def pose_rotation(visit: Visit) -> np.ndarray:
    """LPS rotation of the head about its centre: pitch about L (x), then roll about P (y),
    then yaw about S (z). Pitch > 0 is chin up, as for the render's views
    (``render.views.View``; the phantom scanner's pitch has the other sign)."""
    return (
        axis_rotation(2, visit.yaw_deg)
        @ axis_rotation(1, visit.roll_deg)
        @ axis_rotation(0, -visit.pitch_deg)
    )


def head_centre(volume: CtVolume) -> np.ndarray:
    """LPS centre (mm) of the bounding box of everything denser than ``BODY_HU``."""
    step = max(1, int(round(4.0 / min(volume.spacing))))
    k, j, i = np.nonzero(volume.hu[::step, ::step, ::step] > BODY_HU)
    if len(k) == 0:
        ni, nj, nk = volume.shape_ijk
        return volume.ijk_to_lps(np.array([(ni - 1) / 2, (nj - 1) / 2, (nk - 1) / 2]))[0]
    ijk = np.stack([i, j, k], axis=1) * step
    lps = volume.ijk_to_lps(np.array([ijk.min(0), ijk.max(0)]))
    return (lps[0] + lps[1]) / 2


def reacquire(volume: CtVolume, visit: Visit) -> CtVolume:
    """The second visit of ``volume``'s head, on its own scanner grid (int16 HU)."""
    if not SLICE_MM[0] <= visit.slice_mm <= 5.0 or not 0.2 <= visit.pixel_mm <= 5.0:
        raise ValueError(f"unsupported grid: {visit.pixel_mm} mm pixels, {visit.slice_mm} mm")
    rot = pose_rotation(visit)
    centre = head_centre(volume)
    # the turned head in the scanner: lps_new = rot @ (lps - centre) + centre
    posed = np.eye(4)
    posed[:3, :3] = rot
    posed[:3, 3] = centre - rot @ centre
    p, t = float(visit.pixel_mm), float(visit.slice_mm)
    spacing = np.array([p, p, t])
    # the axial grid covering the turned source's voxel centres
    ni, nj, nk = volume.shape_ijk
    corners = np.array([[a, b, c] for a in (0, ni - 1) for b in (0, nj - 1) for c in (0, nk - 1)])
    lps = volume.ijk_to_lps(corners) @ rot.T + posed[:3, 3]
    lo, hi = lps.min(axis=0), lps.max(axis=0)
    shape_ijk = np.floor((hi - lo) / spacing + 1e-6).astype(int) + 1
    out_affine = np.eye(4)
    out_affine[:3, :3] = np.diag(spacing)
    out_affine[:3, 3] = lo

    # sub-samples per voxel (i, j, k): finer than the source's own step would add nothing
    apart = max(SUBSAMPLE_MM, min(volume.spacing))
    n_sub = np.maximum(1, np.ceil(spacing / apart - 1e-6).astype(int))
    fine_step = spacing / n_sub
    fine_affine = np.eye(4)
    fine_affine[:3, :3] = np.diag(fine_step)
    fine_affine[:3, 3] = lo - spacing / 2 + fine_step / 2
    # fine index -> source index: fine -> LPS (scanner) -> LPS before the turn -> source
    m = np.linalg.inv(volume.affine_lps) @ np.linalg.inv(posed) @ fine_affine
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(m[:3, :3].ravel().tolist())
    transform.SetTranslation(m[:3, 3].tolist())
    image = sitk.GetImageFromArray(volume.hu)  # index space, as ``canonicalize`` does

    rng = np.random.default_rng(visit.seed)
    sd = float(visit.noise_hu_at_1mm) / float(np.sqrt(t))
    fi, fj = int(shape_ijk[0] * n_sub[0]), int(shape_ijk[1] * n_sub[1])
    per_slice = fi * fj * int(n_sub[2])
    slab = max(1, SLAB_SAMPLES // per_slice)
    out = np.empty((int(shape_ijk[2]), int(shape_ijk[1]), int(shape_ijk[0])), dtype=np.int16)
    for k0 in range(0, out.shape[0], slab):
        n = min(slab, out.shape[0] - k0)
        ref = sitk.Image([fi, fj, n * int(n_sub[2])], sitk.sitkFloat32)
        ref.SetOrigin((0.0, 0.0, float(k0 * n_sub[2])))
        part = sitk.Resample(image, ref, transform, sitk.sitkLinear, float(AIR_HU),
                             sitk.sitkFloat32)  # fmt: skip
        fine = sitk.GetArrayViewFromImage(part)
        boxes = fine.reshape(n, n_sub[2], out.shape[1], n_sub[1], out.shape[2], n_sub[0])
        vals = boxes.mean(axis=(1, 3, 5), dtype=np.float32)
        vals += sd * rng.standard_normal(vals.shape, dtype=np.float32)
        out[k0 : k0 + n] = np.clip(np.rint(vals), AIR_HU, HU_MAX)
    meta: dict[str, Any] = copy.deepcopy(volume.metadata)
    for key in ("original_spacing", "canonical", "spacing_mm", "head", "files"):
        meta.pop(key, None)
    # what was scanned: the source's own box, turned with the head (the rest of the new grid
    # is air that was never scanned), so a field of view that cut the face off (GE gantry
    # tilt: forehead only) still cuts it, at its edge, in the second visit
    scanned_affine, scanned_shape = volume.scanned_geometry()
    meta["source_geometry"] = {
        "affine_lps": (posed @ scanned_affine).tolist(),
        "shape_ijk": [int(x) for x in scanned_shape],
    }
    meta["source"] = ""
    meta["reacquired"] = visit.to_json()
    return CtVolume(out, out_affine, meta)


def second_visit(volume: CtVolume, visit: Visit) -> CtVolume:
    """``reacquire`` cropped to the head and on the canonical grid (what ``load_ct`` returns)."""
    return canonicalize(find_head(reacquire(volume, visit)))
