"""CT acquisition of a head phantom: pose in the scanner, sampling grid, partial volume, noise.

Scanner frame = patient LPS for a head-first supine patient (i -> left, j -> posterior,
k -> superior; slices inferior to superior). The head's model frame is turned by the pose and
placed near the isocentre; the fields are resampled with SimpleITK (linear), in slabs of slices
so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ctface.geometry import axis_rotation
from ctface.ingest.volume import CtVolume
from ctface.phantom.anatomy import HeadFields
from ctface.phantom.params import ScanParams

MATRIX = 512
SLAB = 40
HU_MIN, HU_MAX = -1024, 3071
# Model frame (+x face's left, +y up, +z anterior) -> LPS for a neutral supine head.
MODEL_TO_LPS = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])


@dataclass(frozen=True)
class Placement:
    """Rigid model -> LPS map of one scan: lps = rotation @ model + translation."""

    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, p: np.ndarray) -> np.ndarray:
        return np.atleast_2d(p) @ self.rotation.T + self.translation


def fov_radius_mm(scan: ScanParams) -> float:
    """Radius of the reconstruction circle (mm)."""
    return MATRIX * scan.pixel_mm / 2


def place_head(scan: ScanParams, head_vertices: np.ndarray, nose_tip: np.ndarray) -> Placement:
    """Pose (pitch about L, roll about P, yaw about S) and placement of the head: the skull
    (not the neck) is centred in the field of view, then shifted if needed so that the nose tip
    lies >= 12 mm inside the reconstruction circle, as a radiographer would centre a head."""
    pitch = scan.pitch_deg
    rot = (
        axis_rotation(2, scan.yaw_deg)
        @ axis_rotation(1, scan.roll_deg)
        @ axis_rotation(0, pitch)
        @ MODEL_TO_LPS
    )
    skull = head_vertices[head_vertices[:, 1] > nose_tip[1] - 60.0]
    centre = (skull.min(0) + skull.max(0)) / 2
    offset = np.array([scan.fov_offset_mm[0], scan.fov_offset_mm[1], 0.0])
    t = -rot @ centre + offset
    rel = (rot @ nose_tip + t - offset)[:2]
    reach, limit = float(np.hypot(*rel)), fov_radius_mm(scan) - 12.0
    if reach > limit:
        t[:2] -= rel * (1 - limit / reach)
    return Placement(rot, t)


def slice_range(
    scan: ScanParams, place: Placement, head_v: np.ndarray, landmarks68: np.ndarray, neck_y: float
) -> tuple[float, int]:
    """First slice position (mm, S) and slice count covering the head, with FOV cuts."""
    lps = place.apply(head_v)
    lm = place.apply(landmarks68)
    top = lps[:, 2].max() + 6.0 - scan.cut_top_mm
    neck = place.apply(head_v[head_v[:, 1] < neck_y + 6])[:, 2].max() + 2.0
    chin, mouth = lm[8, 2], lm[62, 2]
    bottom = max(neck, chin - 40.0)
    if scan.cut_chin:
        bottom = chin + 0.55 * (mouth - chin)
    n = int(np.floor((top - bottom) / scan.slice_spacing_mm)) + 1
    return float(bottom), max(n, 8)


def _resample(
    img: sitk.Image,
    inv: sitk.AffineTransform,
    origin: np.ndarray,
    size: tuple[int, int, int],
    spacing: tuple[float, float, float],
    default: float,
) -> sitk.Image:
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetOrigin(tuple(float(x) for x in origin))
    ref.SetSpacing(spacing)
    return sitk.Resample(img, ref, inv, sitk.sitkLinear, default, sitk.sitkFloat32)


def _model_image(field: np.ndarray, head: HeadFields) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(field.transpose(2, 1, 0)))
    img.SetOrigin(tuple(float(x) for x in head.origin))
    img.SetSpacing((head.step,) * 3)
    return img


def _plane_box(
    lo: np.ndarray, hi: np.ndarray, place: Placement, origin_xy: np.ndarray, p: float
) -> tuple[slice, slice, float, float]:
    """Scanner rows j, columns i and S range (mm) that can hold a model-frame box [lo, hi]."""
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    lps = place.apply(corners)
    a = np.clip(np.floor((lps[:, :2].min(0) - origin_xy) / p).astype(int) - 1, 0, MATRIX)
    b = np.clip(np.ceil((lps[:, :2].max(0) - origin_xy) / p).astype(int) + 2, 0, MATRIX)
    rows, cols = slice(int(a[1]), int(b[1])), slice(int(a[0]), int(b[0]))
    return rows, cols, float(lps[:, 2].min()), float(lps[:, 2].max())


def _device_box(head: HeadFields) -> tuple[np.ndarray, np.ndarray] | None:
    """Model-frame corners of the voxels where devices lie outside the skin (None: no devices)."""
    if head.exterior_hu is None:
        return None
    occupied = head.exterior_hu > -999.0
    spans = [
        np.flatnonzero(occupied.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)
    ]
    if any(len(x) == 0 for x in spans):
        return None
    lo = np.array([x[0] - 1 for x in spans]) * head.step + head.origin
    hi = np.array([x[-1] + 1 for x in spans]) * head.step + head.origin
    return lo, hi


def _support_mask(
    xy: tuple[np.ndarray, np.ndarray], contact: np.ndarray, radius: float
) -> np.ndarray:
    """2-D HU of a curved head holder (carbon shell + foam) and the table below it."""
    x, y = xy
    cy = contact[1] + 3.0 - radius  # the shell's inner surface passes 3 mm below the head
    r = np.sqrt((x - contact[0]) ** 2 + (y - cy) ** 2)
    hu = np.full(np.broadcast_shapes(x.shape, y.shape), np.nan, dtype=np.float32)
    cradle = (y > cy + 0.35 * radius) & (np.abs(x - contact[0]) < 0.9 * radius)
    hu[cradle & (r > radius) & (r < radius + 25)] = -820.0  # foam pad
    hu[cradle & (r >= radius + 25) & (r < radius + 29)] = 250.0  # carbon-fibre shell
    table_y = cy + radius + 40
    hu[(y > table_y) & (y < table_y + 12) & (np.abs(x - contact[0]) < 230)] = 150.0
    return hu


def _metal_streaks(
    xy: tuple[np.ndarray, np.ndarray], metal: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """2-D streak pattern around dental metal: alternating bright/dark lines, decaying with r."""
    x, y = xy
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.float32)
    for m in metal:
        dx, dy = x - m[0], y - m[1]
        r = np.sqrt(dx**2 + dy**2) + 1e-3
        for k in range(int(rng.integers(4, 9))):
            ang = rng.uniform(0, np.pi)
            perp = np.abs(dx * np.sin(ang) - dy * np.cos(ang))
            amp = rng.uniform(250, 900) * (1 if k % 2 == 0 else -1)
            out += amp * np.exp(-(perp**2) / (2 * 1.2**2)) * (12.0 / (r + 12.0))
        out[r < 2.2] = 3071.0
    return out


def _reconstruction_grid(
    scan: ScanParams,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Pixel centres (LPS x, y mm) of a slice and the pixels outside the reconstruction circle."""
    p = scan.pixel_mm
    centre = np.array([scan.fov_offset_mm[0], scan.fov_offset_mm[1]])
    origin_xy = centre - (MATRIX - 1) / 2 * p
    axis = np.arange(MATRIX, dtype=np.float32) * p
    xy = (origin_xy[0] + axis[None, :], origin_xy[1] + axis[:, None])
    circle = (xy[0] - centre[0]) ** 2 + (xy[1] - centre[1]) ** 2 > fov_radius_mm(scan) ** 2
    return origin_xy, xy, circle


@dataclass(frozen=True)
class _DeviceSlabs:
    """Devices outside the skin, resampled only in their own pixel box and S range."""

    image: sitk.Image  # exterior HU, model frame
    origin_xy: np.ndarray  # LPS x, y (mm) of their box's first pixel
    size: tuple[int, int]  # columns, rows
    in_box: tuple[slice, slice]  # their rows and columns within the head's pixel box
    z_lo: float
    z_hi: float

    def outside_skin(
        self, inv: sitk.AffineTransform, z0: float, shape: tuple[int, ...], scan: ScanParams
    ) -> np.ndarray:
        """HU outside the skin of ``shape[0]`` slices from ``z0`` in the head's pixel box."""
        p, dz = scan.pixel_mm, scan.slice_spacing_mm
        outer = np.full(shape, -1000.0, dtype=np.float32)
        o = _resample(self.image, inv, np.array([*self.origin_xy, z0]), (*self.size, shape[0]),
                      (p, p, dz), -1000.0)  # fmt: skip
        outer[:, self.in_box[0], self.in_box[1]] = sitk.GetArrayViewFromImage(o)
        return outer


def _device_slabs(
    head: HeadFields, place: Placement, origin_xy: np.ndarray, p: float, rows: slice, cols: slice
) -> _DeviceSlabs | None:
    """Where the head's devices lie in the scanner (None: no devices)."""
    dev_box = _device_box(head)
    if dev_box is None or head.exterior_hu is None:
        return None
    d_rows, d_cols, d_z0, d_z1 = _plane_box(*dev_box, place, origin_xy, p)
    # devices touching the grid's edge reach a voxel past it: keep to the head's pixel box
    d_rows = slice(max(d_rows.start, rows.start), min(d_rows.stop, rows.stop))
    d_cols = slice(max(d_cols.start, cols.start), min(d_cols.stop, cols.stop))
    if d_rows.stop <= d_rows.start or d_cols.stop <= d_cols.start:
        return None
    d_origin = origin_xy + p * np.array([d_cols.start, d_rows.start])
    d_size = (d_cols.stop - d_cols.start, d_rows.stop - d_rows.start)
    d_in_box = (slice(d_rows.start - rows.start, d_rows.stop - rows.start),
                slice(d_cols.start - cols.start, d_cols.stop - cols.start))  # fmt: skip
    image = _model_image(head.exterior_hu, head)
    return _DeviceSlabs(image, d_origin, d_size, d_in_box, d_z0, d_z1)


@dataclass(frozen=True)
class _PosedHead:
    """The head's fields posed in the scanner, resampled slab by slab within its pixel box."""

    images: list[tuple[sitk.Image, float]]  # signed distance, interior HU; value off the grid
    inv: sitk.AffineTransform  # scanner -> model frame
    rows: slice
    cols: slice
    origin_xy: np.ndarray  # LPS x, y (mm) of the box's first pixel
    devices: _DeviceSlabs | None
    scan: ScanParams

    def slab(self, z_first: float, k0: int, k1: int) -> np.ndarray:
        """HU of slices k0..k1-1 (float32, -1000 outside the box) before holder, noise, metal."""
        p, dz = self.scan.pixel_mm, self.scan.slice_spacing_mm
        rows, cols = self.rows, self.cols
        slab = np.full((k1 - k0, MATRIX, MATRIX), -1000.0, dtype=np.float32)
        origin = np.array([self.origin_xy[0], self.origin_xy[1], z_first + (k0 - 1) * dz])
        size = (cols.stop - cols.start, rows.stop - rows.start, k1 - k0 + 2)
        outs = [_resample(im, self.inv, origin, size, (p, p, dz), d) for im, d in self.images]
        f = [sitk.GetArrayViewFromImage(o) for o in outs]  # no copies; `outs` keeps them alive
        a = _skin_fraction(f[0], self.scan)
        inner = f[1][1:-1]
        z0, z1 = z_first + k0 * dz, z_first + (k1 - 1) * dz
        dev = self.devices
        if dev is not None and z1 >= dev.z_lo and z0 <= dev.z_hi:
            outer = dev.outside_skin(self.inv, z0, a.shape, self.scan)
            slab[:, rows, cols] = outer + a * (inner - outer)
        else:
            slab[:, rows, cols] = a * (inner + 1000.0) - 1000.0
        return slab


def _posed_head(
    head: HeadFields, scan: ScanParams, place: Placement, origin_xy: np.ndarray
) -> _PosedHead:
    """The head's fields as images (interior blurred by the slice profile) and their pixel box."""
    p, thick = scan.pixel_mm, scan.slice_thickness_mm
    interior = head.interior_hu
    if thick > 2.0:
        interior = ndimage.gaussian_filter(interior, 0.22 * thick / head.step)
    images = [(_model_image(head.sdf, head), 1000.0), (_model_image(interior, head), 0.0)]
    inv = sitk.AffineTransform(3)
    inv.SetMatrix(place.rotation.T.ravel().tolist())
    inv.SetTranslation((-place.rotation.T @ place.translation).tolist())
    grid_hi = head.origin + (np.array(head.sdf.shape) - 1) * head.step
    rows, cols, _, _ = _plane_box(head.origin, grid_hi, place, origin_xy, p)
    box_origin = origin_xy + p * np.array([cols.start, rows.start])
    devices = _device_slabs(head, place, origin_xy, p, rows, cols)
    return _PosedHead(images, inv, rows, cols, box_origin, devices, scan)


def _skin_fraction(sdf: np.ndarray, scan: ScanParams) -> np.ndarray:
    """Skin partial volume: inside fraction of each voxel box (``sdf`` has one slice more
    on either side); exact only near the skin."""
    p, dz, thick = scan.pixel_mm, scan.slice_spacing_mm, scan.slice_thickness_mm
    half_extent = 0.5 * (thick + 1.2 * p)  # largest half-size of a voxel box along any normal
    a = (sdf[1:-1] < 0).astype(np.float32)
    band = np.nonzero(np.abs(sdf[1:-1]) < half_extent)
    above = (band[0] + 2, band[1], band[2])
    nz = np.clip(np.abs(sdf[above] - sdf[band]) / (2 * dz), 0, 1)
    extent = thick * nz + 1.2 * p * np.sqrt(1 - nz**2)
    a[band] = np.clip(0.5 - sdf[1:-1][band] / np.maximum(extent, 1e-3), 0, 1)
    return a


def _head_holder(
    xy: tuple[np.ndarray, np.ndarray], contact: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and HU of the head holder's and table's pixels."""
    support = _support_mask(xy, contact, 110.0)
    sup_r, sup_c = np.nonzero(~np.isnan(support))
    return sup_r, sup_c, support[sup_r, sup_c]


def _add_metal_streaks(
    slab: np.ndarray,
    z_first: float,
    k0: int,
    scan: ScanParams,
    metal_lps: np.ndarray,
    xy: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    streaks: Callable[..., np.ndarray] | None = None,
) -> None:
    """Streaks on each slice of the slab (first slice k0) that passes near dental metal, made
    by ``streaks(xy, near_metal, rng)`` (default: the standard model)."""
    streaks = _metal_streaks if streaks is None else streaks
    dz, thick = scan.slice_spacing_mm, scan.slice_thickness_mm
    for k in range(k0, k0 + len(slab)):
        z = z_first + k * dz
        near = metal_lps[np.abs(metal_lps[:, 2] - z) < max(1.5, thick / 2 + 1.0)]
        if len(near):
            slab[k - k0] += streaks(xy, near, rng)


def _heldout_slab(
    slab: np.ndarray,
    z_first: float,
    k0: int,
    scan: ScanParams,
    metal_lps: np.ndarray,
    xy: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """Held-out acquisition: wider blur, kernel-shaped correlated noise, other streak model."""
    from ctface.phantom import heldout

    held = scan.heldout
    slab = heldout.blur_slab(slab, held)
    slab += scan.noise_hu * heldout.correlated_noise(rng, slab.shape, held)
    rays = held["streak_rays"]
    _add_metal_streaks(slab, z_first, k0, scan, metal_lps, xy, rng,
                       lambda xy_, near, r: heldout.metal_streaks(xy_, near, r, rays))  # fmt: skip
    return slab


def acquire(
    head: HeadFields,
    scan: ScanParams,
    place: Placement,
    z_first: float,
    n_slices: int,
    metal_points_model: np.ndarray,
    rng: np.random.Generator,
    progress: Callable[[int, int], None] | None = None,
) -> CtVolume:
    """Simulate the reconstructed CT series (int16 HU) of the posed head.

    Skin partial volume is exact for a locally planar skin: the covered fraction of a voxel
    box (pixel x pixel x slice thickness) is computed from the signed distance and the skin
    normal's angle to the slice axis. Inner structures get the slice profile as a Gaussian blur.
    """
    p, dz = scan.pixel_mm, scan.slice_spacing_mm
    origin_xy, xy, circle = _reconstruction_grid(scan)
    posed = _posed_head(head, scan, place, origin_xy)
    metal_lps = place.apply(metal_points_model) if len(metal_points_model) else np.zeros((0, 3))
    holder = _head_holder(xy, head_contact(head, place)) if scan.headrest else None

    hu = np.empty((n_slices, MATRIX, MATRIX), dtype=np.int16)
    for k0 in range(0, n_slices, SLAB):
        k1 = min(n_slices, k0 + SLAB)
        slab = posed.slab(z_first, k0, k1)
        if holder is not None:  # head holder and table wherever the voxel is still pure air
            sup_r, sup_c, sup_v = holder
            vals = slab[:, sup_r, sup_c]
            slab[:, sup_r, sup_c] = np.where(vals <= -999.0, sup_v[None], vals)
        if scan.heldout:
            slab = _heldout_slab(slab, z_first, k0, scan, metal_lps, xy, rng)
        else:
            slab += scan.noise_hu * rng.standard_normal(slab.shape, dtype=np.float32)
            _add_metal_streaks(slab, z_first, k0, scan, metal_lps, xy, rng)
        slab[:, circle] = HU_MIN
        np.rint(slab, out=slab)
        np.clip(slab, HU_MIN, HU_MAX, out=slab)
        hu[k0:k1] = slab
        if progress is not None:
            progress(k1, n_slices)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([p, p, dz])
    affine[:3, 3] = [origin_xy[0], origin_xy[1], z_first]
    return CtVolume(hu=hu, affine_lps=affine)


def head_contact(head: HeadFields, place: Placement) -> np.ndarray:
    """LPS point of the skin that lies lowest (most posterior) on the head holder."""
    idx = np.argwhere(np.abs(head.sdf[:, ::2, :]) < head.step)
    idx[:, 1] *= 2
    pts = place.apply(idx * head.step + head.origin)
    upper = pts[:, 2] > np.quantile(pts[:, 2], 0.45)
    return pts[upper][np.argmax(pts[upper][:, 1])]
