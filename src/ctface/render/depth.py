"""Face depth images (the paper's step 4) and their adjustment (step 6), without VTK.

Method. The skin isosurface (``threshold_hu``, default -350 HU; the paper uses -400..-300) is
extracted with marching cubes at the scan's own voxel size inside the box that the views can
see, then sampled densely (every surface point within ``mm_per_pixel / 2`` of a sample). For
each view the samples are turned into the camera frame (orthographic camera looking along the
face's -forward, the head rotated by the view about the nose tip) and written into a z-buffer:
each pixel keeps the *nearest* surface, and its depth is the depth of that sample's tangent
plane *at the pixel centre* (sub-pixel depth). Back-facing samples are skipped. Views that
differ only by roll see the same surfaces (roll turns the image about the view axis), so one
z-buffer per (pitch, yaw) drops the hidden samples before its rolls are rendered.

Why this is equivalent to the paper's VTK rendering: a VTK depth buffer of the same
isosurface under an orthographic camera is, per pixel, the nearest triangle's depth at the
pixel centre; here the nearest sample's tangent plane is evaluated at the same point, and
dense sampling guarantees a sample of the visible triangle lands in every covered pixel, so
the two agree up to the surface's curvature within half a pixel (smooth vertex normals
instead of flat facets). Against exact ray casting of the same mesh (``benchmarks/render.py``:
1,498 random pixels with a depth in a frontal and two pitched and rolled views of a phantom):
median 0.04 mm, 95th percentile 0.6 mm. The one difference is at depth jumps: a pixel partly
covered by a nearer surface takes it even when its centre misses it (silhouettes grow by under
half a pixel), where VTK decides by the pixel centre; the 47 of those pixels off by more than
1 mm (up to 71 mm) all lie at a depth step or the outline and are rendered nearer.
Depth is metric (mm) by construction: the camera works in patient mm, the reference plane is
fixed to the face frame (``REFERENCE_MM`` behind the nose tip), so the same face at the same
pose gives the same image whatever the voxel size or slice thickness.

Image adjustment (step 6): NX = C * (SX - theta) / (max(SX) - theta) per image, with SX the
depth in mm above the reference plane; surface pixels are clipped to 1..255 (background 0).
theta = 0 mm (the reference plane, 100 mm behind the nose tip) and C = 220, from the measured
depths of the true face pixels of phantom CT views (``benchmarks/depth_histogram.py``: 600
views of 60 training scans): they lie 2.3 mm (0.5th percentile) to 123 mm above the plane,
median 66 mm, 5th percentile 18 mm; each image's maximum (nose tip or forehead) is 98-112 mm.
theta = 0 keeps every face pixel (theta = 20 mm, first chosen, clipped ~6 % of them: the sides
of the face) and maps the face's 5th percentile .. maximum to 40 .. 220, the spread of natural
depth images (40..220) to which the paper maps CT depth.

The adjustment is anchored on the face, not on whatever is nearest to the camera: max(SX) is
capped at ``FACE_TOP_MM`` above the reference plane, 15 mm in front of the nose tip (the
views turn the head about the CT-FAN nose tip, which lies at ``REFERENCE_MM`` in every view).
The face's own maxima mostly lie below it (98-112 mm, 5th-95th percentile above; the highest
of the 600 views, 123 mm, is then scaled by 115 instead and reaches 235); an endotracheal
tube's connector 8-15 cm in front of the lips, a blanket or hair that the face separation
kept would otherwise set max(SX) and squeeze the face into a narrow band of grey levels in all
90 views (issue 16); with the cap the face keeps at least 100/115 of its grey levels (the
spread of its own maxima), and anything nearer is clipped (255 from 133 mm).

Masks opened away (issue 16). A thermoplastic immobilization mask is a perforated sheet 1.5-3
mm thick standing 0.5-2.5 mm off the skin and bridging the eye sockets, the sides of the nose
and the mouth: at -350 HU it *is* the isosurface, so the views see a smoothed face, and two
people's masked faces look alike (the commonest miss on every held-out cohort). Before the
isosurface the tissue is opened by a ball of ``OPEN_MM`` = 3 mm (``landmarks.skin.
open_thin_shells``): what the ball cannot reach from inside the body, any layer thinner than 6
mm standing off it, becomes air. On a phantom under the generator's mask the frontal depth then
lies 0.55 mm (median) from the same face without it, against 2.6 mm unopened
(``tests/test_render.py``). Where the sheet touches the skin with no air between them at the
scan's resolution it stays. It also opens the walls of tubes and bite blocks in front of the
face, and of the face itself what is that thin: the rims of the nostril wings and the lips of
an open mouth (2-3 % of an unmasked phantom face's pixels move by more than 1 mm). Taking only
large pieces (15 cm3 and more, masks being 30-200 cm3) kept the face intact but lost on the
held-out cohorts (false non-matches at the true labels' FMR-1e-3 threshold, measured outside
the repository: 5 of 126 on 1616 and 3 of 134 on 1717, against 1 and 2 opened whole; a fused
mask leaves pieces of 4-10 cm3 over the eyes and mouth, and a bite block with the lips around
it comes in one of 21 cm3), so the whole opening is used. Thick layers (a bolus, a mask of 6
mm and more) stay: the quality gate measures them (``render.tissue``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ctface.errors import InvalidInputError, NoFaceError
from ctface.ingest.volume import SKIN_HU, CtVolume
from ctface.landmarks.frame import FaceFrame
from ctface.landmarks.skin import (  # THREADS: view groups rendered in parallel
    THREADS,
    SkinSurface,
    dense_samples,
    skin_surface,
    voxel_box,
)
from ctface.render.tissue import UnderSkin, face_grid, under_skin
from ctface.render.views import FIELD_MM, RENDER_PX, View, pose_grid

REFERENCE_MM = 100.0  # depth reference plane: this far behind the nose tip, along the view axis
CENTRE_UP_MM = 15.0  # image centre: this far above the nose tip (forehead to chin in view)
FRONT_MM = 80.0  # surfaces up to this far in front of the nose tip are rendered (devices)
THETA_MM = 0.0  # measured: benchmarks/depth_histogram.py (module docstring)
SCALE_C = 220.0  # the paper's C: grey level of each image's nearest point (not FIELD_MM)
FACE_TOP_MM = REFERENCE_MM + 15.0  # max(SX) of the adjustment never above this (docstring)
MIN_SLOPE_NZ = 0.3  # tangent-plane correction: normals steeper than this are clamped
SAMPLE_FRACTION = 0.5  # covering radius of the samples, in pixels
HIDDEN_MM = 2.0  # visibility pass: samples this far behind the front surface are dropped
OPEN_MM = 3.0  # thin shells off the skin (masks) opened away by a ball of this radius

# Face parts in the face frame (mm from the nose tip: x right, y up, z forward) used to report
# what is missing: x range, y range, z of the plane checked against the field of view. A part
# point counts when it is inside the field of view and the frontal image has skin there.
FACE_PARTS: dict[str, tuple[tuple[float, float], tuple[float, float], float]] = {
    "forehead": ((-40.0, 40.0), (40.0, 80.0), -20.0),
    "eyes": ((-50.0, 50.0), (15.0, 45.0), -25.0),
    "nose": ((-15.0, 15.0), (-12.0, 30.0), -8.0),
    "mouth": ((-30.0, 30.0), (-45.0, -12.0), -12.0),
    "chin": ((-25.0, 25.0), (-75.0, -45.0), -15.0),
}


@dataclass(frozen=True)
class FaceRegion:
    """What of the face the rendering shows. Per face part (``FACE_PARTS``: forehead, eyes,
    nose, mouth, chin) the share inside the field of view (``parts_in_field_of_view``), with
    skin in the frontal image (``parts_with_skin``) and both (``parts_in_view``); ``missing``:
    parts < 50 % in view, ``partial``: 50-95 %; ``under_skin``: the share of soft tissue just
    behind the frontal surface, the share with a skull behind it and the thickness over that
    skull (``render.tissue``); ``crop_box_mm``: (low, high) per face-frame
    axis x, y, z, where the surface was extracted."""

    parts_in_view: dict[str, float]
    missing: tuple[str, ...]
    partial: tuple[str, ...]
    parts_in_field_of_view: dict[str, float]
    parts_with_skin: dict[str, float]
    under_skin: UnderSkin
    crop_box_mm: dict[str, tuple[float, float]]

    def to_json(self) -> dict[str, Any]:
        return {
            "parts_in_view": dict(self.parts_in_view),
            "missing": list(self.missing),
            "partial": list(self.partial),
            "parts_in_field_of_view": dict(self.parts_in_field_of_view),
            "parts_with_skin": dict(self.parts_with_skin),
            "parts_mm": {
                k: {"x": list(v[0]), "y": list(v[1]), "z": v[2]} for k, v in FACE_PARTS.items()
            },
            "under_skin": self.under_skin.to_json(),
            "crop_box_mm": {a: list(lo_hi) for a, lo_hi in self.crop_box_mm.items()},
        }


@dataclass
class FaceRendering:
    """Depth images of one CT's face, one per view.

    depth_mm: (V, size, size) float32, height of the skin above the reference plane
    (``REFERENCE_MM`` behind the nose tip, perpendicular to the view axis), NaN = background.
    normalized: (V, size, size) uint8, the paper's adjustment (module docstring), 0 = background.
    Row 0 is the top of the image; column 0 its left (the patient's right in a frontal view).
    face_region: which face parts are in view, and what lies under the skin (``FaceRegion``).
    timings_s: seconds per stage (locate, surface, samples, views) and the sample count.
    frontal_mm: (size, size) the depth image of the frontal view (pitch = roll = yaw = 0),
    rendered for the coverage checks whatever ``views`` holds; None when not rendered.
    """

    depth_mm: np.ndarray
    normalized: np.ndarray
    views: list[View]
    frame: FaceFrame
    mm_per_pixel: float
    size: int
    threshold_hu: float
    face_region: FaceRegion
    theta_mm: float = THETA_MM
    scale_c: float = SCALE_C
    face_top_mm: float = FACE_TOP_MM  # the cap on max(SX) (module docstring)
    open_mm: float = OPEN_MM  # radius of the opening before the isosurface (0: none)
    timings_s: dict[str, float] = field(default_factory=dict)
    frontal_mm: np.ndarray | None = None

    def camera(self) -> dict[str, Any]:
        c = (self.size - 1) / 2
        return {
            "projection": "orthographic",
            "mm_per_pixel": self.mm_per_pixel,
            "size": self.size,
            "field_mm": self.mm_per_pixel * self.size,
            "centre": [c, c],
            "centre_frame_mm": [0.0, CENTRE_UP_MM],
            "reference_plane_mm": REFERENCE_MM,
            "rotation_centre": "frame origin (nose tip)",
            "axes": "image x = face-frame right (patient's left when frontal), image y = down, "
            "depth = towards the viewer; view Q = R_roll @ R_pitch @ R_yaw (render.views)",
        }


def project_points(r: FaceRendering, lps: np.ndarray, view: int) -> np.ndarray:
    """LPS points (N, 3) -> (N, 3) continuous (column, row, depth_mm) in image ``view``."""
    q = r.frame.to_frame(lps) @ r.views[view].rotation().T  # camera: X right, Y up, Z to viewer
    c = (r.size - 1) / 2
    col = q[:, 0] / r.mm_per_pixel + c
    row = (CENTRE_UP_MM - q[:, 1]) / r.mm_per_pixel + c
    return np.stack([col, row, q[:, 2] + REFERENCE_MM], axis=1)


def _crop_box(views: list[View], field_mm: float) -> np.ndarray:
    """Face-frame box (2, 3) holding everything any view can see in its image."""
    h = field_mm / 2
    corners = np.array(
        [
            [x, CENTRE_UP_MM + y, z]
            for x in (-h, h)
            for y in (-h, h)
            for z in (-REFERENCE_MM - 1.0, FRONT_MM)
        ]
    )
    pts = np.concatenate([corners @ v.rotation() for v in views])  # camera -> frame: Q^T
    return np.stack([pts.min(0), pts.max(0)])


def _box_corners(box: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in box[:, 0] for y in box[:, 1] for z in box[:, 2]])


def face_coverage(
    volume: CtVolume, frame: FaceFrame, frontal: np.ndarray, mpp: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Share of each face part (``FACE_PARTS``) inside the field of view, and covered by skin
    in the frontal depth image ``frontal`` (pitch = roll = yaw = 0)."""
    affine, shape = volume.scanned_geometry()
    inv = np.linalg.inv(affine)
    size = frontal.shape[0]
    c = (size - 1) / 2
    fov: dict[str, float] = {}
    skin: dict[str, float] = {}
    for name, ((x0, x1), (y0, y1), z) in FACE_PARTS.items():
        x, y = np.meshgrid(np.linspace(x0, x1, 7), np.linspace(y0, y1, 7))
        pts = np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], axis=1)
        ijk = frame.to_lps(pts) @ inv[:3, :3].T + inv[:3, 3]
        fov[name] = round(float(np.all((ijk >= -0.5) & (ijk <= shape - 0.5), axis=1).mean()), 3)
        col = np.rint(pts[:, 0] / mpp + c).astype(int)
        row = np.rint((CENTRE_UP_MM - pts[:, 1]) / mpp + c).astype(int)
        on = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        d = frontal[np.clip(row, 0, size - 1), np.clip(col, 0, size - 1)]
        covered = on & np.isfinite(d)
        skin[name] = round(float(covered.mean()), 3)
    return fov, skin


def face_region(
    fov: dict[str, float], skin: dict[str, float], under_skin: UnderSkin, box: np.ndarray
) -> FaceRegion:
    """The ``FaceRegion`` of the face parts' shares in the field of view and with skin
    (``face_coverage``) and the face-frame crop box (2, 3)."""
    parts = {k: min(fov[k], skin[k]) for k in FACE_PARTS}
    lo, hi = ([round(float(x), 1) for x in row] for row in box)
    return FaceRegion(
        parts_in_view=parts,
        missing=tuple(k for k, v in parts.items() if v < 0.5),
        partial=tuple(k for k, v in parts.items() if 0.5 <= v < 0.95),
        parts_in_field_of_view=fov,
        parts_with_skin=skin,
        under_skin=under_skin,
        crop_box_mm={a: (lo[n], hi[n]) for n, a in enumerate("xyz")},
    )


def frontal_surface(frontal: np.ndarray, mpp: float) -> np.ndarray:
    """(N, 3) face-frame points of the frontal depth image's surface on ``tissue.face_grid``
    (grid points without a surface are left out)."""
    xy = face_grid()
    size = frontal.shape[0]
    c = (size - 1) / 2
    col = np.rint(xy[:, 0] / mpp + c).astype(int)
    row = np.rint((CENTRE_UP_MM - xy[:, 1]) / mpp + c).astype(int)
    on = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    z = np.full(len(xy), np.nan)
    z[on] = frontal[row[on], col[on]] - REFERENCE_MM
    keep = np.isfinite(z)
    return np.column_stack([xy[keep], z[keep]])


def _check(size: int, field_mm: float, threshold_hu: float, views: list[View]) -> None:
    if not 16 <= size <= 4096:
        raise InvalidInputError(f"image size must be 16..4096 pixels, got {size}")
    if not 20.0 <= field_mm <= 1000.0:
        raise InvalidInputError(f"field of view must be 20..1000 mm, got {field_mm:g}")
    if not -1000.0 < threshold_hu < 3000.0:
        raise InvalidInputError(
            f"skin threshold must be within -1000..3000 HU, got {threshold_hu:g}"
        )
    if not views:
        raise InvalidInputError("no views to render")


Samples = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _splat(cam: Samples, size: int, mpp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffer of camera-frame samples (X, Y, Z, nx, ny, nz as 1-D float32 arrays).

    Returns the depth image (size, size) (NaN = none), each sample's flat pixel index
    (``size * size`` = off image or back-facing) and its depth at that pixel's centre.
    """
    x, y, z, nx, ny, nz = cam
    c = (size - 1) / 2
    fx = x * np.float32(1 / mpp) + np.float32(c)
    fy = (np.float32(CENTRE_UP_MM) - y) * np.float32(1 / mpp) + np.float32(c)
    col = np.floor(fx + np.float32(0.5))
    row = np.floor(fy + np.float32(0.5))
    ok = (nz > 0) & (col >= 0) & (col < size) & (row >= 0) & (row < size)
    # tangent plane at the pixel centre: dZ = -(nx dX + ny dY) / nz, image rows run down
    slope = np.float32(mpp) / np.maximum(nz, np.float32(MIN_SLOPE_NZ))
    depth = z + np.float32(REFERENCE_MM) - (nx * (col - fx) - ny * (row - fy)) * slope
    pix = np.where(ok, row * size + col, size * size).astype(np.intp)
    img = np.full(size * size + 1, -np.inf, np.float32)
    np.maximum.at(img, pix, depth)
    out = img[:-1].reshape(size, size)
    out[out <= 0] = np.nan
    return out, pix, depth


def _rolled(cam: Samples, roll: float) -> Samples:
    """Camera-frame samples turned by ``roll`` about the view axis (depth and nz unchanged)."""
    if roll == 0.0:
        return cam
    x, y, z, nx, ny, nz = cam
    co, si = np.float32(np.cos(np.radians(roll))), np.float32(np.sin(np.radians(roll)))
    return co * x - si * y, si * x + co * y, z, co * nx - si * ny, si * nx + co * ny, nz


def _visible(cam: Samples, size: int, mpp: float) -> np.ndarray:
    """Samples not hidden behind the front surface in this view direction, whatever the roll.

    Occlusion along the view axis does not depend on roll; a sample is dropped when it lies
    more than ``HIDDEN_MM`` behind the shallowest surface of its pixel's 3x3 neighbourhood (the
    neighbourhood keeps surfaces next to silhouettes, which a rolled pixel grid may need).
    """
    canvas = int(np.ceil(size * np.sqrt(2))) + 2  # holds the image square at any roll
    img, pix, depth = _splat(cam, canvas, mpp)
    near = ndimage.minimum_filter(np.nan_to_num(img, nan=-np.inf), size=3, mode="nearest")
    limit = np.append(near.ravel(), np.inf)[pix]
    return (pix < canvas * canvas) & (depth >= limit - np.float32(HIDDEN_MM))


def _render_views(
    pts: np.ndarray,
    nrm: np.ndarray,
    views: list[View],
    size: int,
    mpp: float,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Depth images of face-frame samples for every view; views that differ only by roll
    share one visibility pass (a full z-buffer), then each roll renders the visible samples."""
    depth = np.empty((len(views), size, size), np.float32)
    groups: dict[tuple[float, float], list[int]] = {}
    for i, v in enumerate(views):
        groups.setdefault((round(v.pitch, 6), round(v.yaw, 6)), []).append(i)

    def one_group(key: tuple[float, float], members: list[int]) -> None:
        q = View(pitch=key[0], roll=0.0, yaw=key[1]).rotation().astype(np.float32)
        p, n = q @ pts.T, q @ nrm.T
        cam: Samples = (p[0], p[1], p[2], n[0], n[1], n[2])
        if len(members) > 1:
            keep = _visible(cam, size, mpp)
            cam = (p[0][keep], p[1][keep], p[2][keep], n[0][keep], n[1][keep], n[2][keep])
        for i in members:
            depth[i] = _splat(_rolled(cam, views[i].roll), size, mpp)[0]

    # numpy releases the GIL in the array arithmetic: groups render on THREADS threads
    done = 0
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [(pool.submit(one_group, k, m), len(m)) for k, m in groups.items()]
        for future, n_views in futures:
            future.result()
            done += n_views
            if progress is not None:
                progress(done, len(views))
    return depth


def normalize_depth(
    depth_mm: np.ndarray, theta_mm: float, scale_c: float, top_mm: float | None = None
) -> np.ndarray:
    """The paper's NX = C (SX - theta) / (max SX - theta) per image, max SX at most ``top_mm``
    (default ``FACE_TOP_MM``, read at the call: the face-anchored cap, module docstring);
    surface 1..255, else 0."""
    top_mm = FACE_TOP_MM if top_mm is None else top_mm
    out = np.zeros(depth_mm.shape, np.uint8)
    for v in range(depth_mm.shape[0]):
        d = depth_mm[v]
        valid = np.isfinite(d)
        if not valid.any():
            continue
        top = min(float(d[valid].max()), top_mm)
        nx = scale_c * (d[valid] - theta_mm) / max(top - theta_mm, 1e-6)
        out[v][valid] = np.clip(np.rint(nx), 1, 255).astype(np.uint8)
    return out


def _surface_views(
    surface: SkinSurface,
    frame: FaceFrame,
    views: list[View],
    size: int,
    field_mm: float,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth images (V, size, size) of ``surface`` (LPS mm) in ``frame``, and the face-frame
    samples (points, normals) they were rendered from. Raises NoFaceError when no part of the
    surface inside the views' box faces the camera."""
    mpp = field_mm / size
    box = _crop_box(views, field_mm)
    # keep triangles in the crop box that face the camera in at least one view
    m = frame.matrix().astype(np.float32)
    origin = frame.origin.astype(np.float32)
    corner = (surface.vertices[surface.triangles[:, 0]] - origin) @ m.T
    towards = np.unique(np.round([v.rotation()[2] for v in views], 6), axis=0).astype(np.float32)
    facing = ((surface.normals @ m.T) @ towards.T).max(axis=1) > -0.2
    inside = np.all((corner >= box[0] - 2.0) & (corner <= box[1] + 2.0), axis=1)
    surface = surface.subset(facing & inside)
    if surface.empty:
        raise NoFaceError("no face in field of view: no skin surface faces the camera")
    pts, nrm = dense_samples(surface, step=float(np.sqrt(3) * SAMPLE_FRACTION * mpp))
    pts = (pts - origin) @ m.T
    nrm = nrm @ m.T
    return _render_views(pts, nrm, views, size, mpp, progress), pts, nrm


def render_surface(
    surface: SkinSurface,
    frame: FaceFrame,
    views: list[View],
    *,
    size: int = RENDER_PX,
    field_mm: float = FIELD_MM,
) -> np.ndarray:
    """Depth images (V, size, size) float32 mm (NaN = background) of any mesh in LPS mm, with
    exactly the camera of ``render_face`` (used for meshes of the face model: synthetic depth
    faces and the phantoms' true face region)."""
    _check(size, field_mm, 0.0, views)
    return _surface_views(surface, frame, views, size, field_mm, None)[0]


def render_face(
    volume: CtVolume,
    *,
    frame: FaceFrame | None = None,
    views: list[View] | None = None,
    size: int = RENDER_PX,
    threshold_hu: float = SKIN_HU,
    field_mm: float = FIELD_MM,
    theta_mm: float = THETA_MM,
    scale_c: float = SCALE_C,
    open_mm: float = OPEN_MM,
    progress: Callable[[int, int], None] | None = None,
) -> FaceRendering:
    """Depth images of the face in ``volume``, one per view (default: the paper's 90 poses).

    ``frame`` defaults to the face frame of the CT-FAN landmarks (``landmarks.face_frame``);
    ``field_mm`` is the width of the image in mm (``mm_per_pixel = field_mm / size``).
    ``open_mm``: the tissue is opened by a ball of this radius before the isosurface, so that a
    mask's sheet standing off the skin is not taken for the face (module docstring; 0: not).
    ``progress(done, total)`` is called after each view. Raises NoFaceError when there is no
    skin surface in front of the face.
    """
    views = pose_grid() if views is None else list(views)
    _check(size, field_mm, threshold_hu, views)
    t0 = time.perf_counter()
    if frame is None:
        from ctface.landmarks import face_frame  # imported here: CT-FAN needs torch

        frame = face_frame(volume, threshold_hu)
    t1 = time.perf_counter()
    mpp = field_mm / size
    box = _crop_box(views, field_mm)
    vbox = voxel_box(volume, frame.to_lps(_box_corners(box)))
    surface = skin_surface(volume, threshold_hu, vbox, open_mm) if vbox is not None else None
    if surface is None or surface.empty:
        raise NoFaceError(
            "no face in field of view: no skin surface (>= "
            f"{threshold_hu:g} HU) in the region in front of the face"
        )
    t2 = time.perf_counter()
    depth, pts, nrm = _surface_views(surface, frame, views, size, field_mm, progress)
    t3 = time.perf_counter()
    frontal = _render_views(pts, nrm, [View(0.0, 0.0, 0.0)], size, mpp, None)[0]
    fov, skin = face_coverage(volume, frame, frontal, mpp)
    under = under_skin(volume, frame, frontal_surface(frontal, mpp))
    region = face_region(fov, skin, under, box)
    return FaceRendering(
        depth_mm=depth,
        normalized=normalize_depth(depth, theta_mm, scale_c),
        views=views,
        frame=frame,
        mm_per_pixel=mpp,
        size=size,
        threshold_hu=float(threshold_hu),
        face_region=region,
        theta_mm=float(theta_mm),
        scale_c=float(scale_c),
        face_top_mm=FACE_TOP_MM,
        open_mm=float(open_mm),
        timings_s={
            "locate": t1 - t0,
            "surface": t2 - t1,
            "views": t3 - t2,
            "samples_n": float(len(pts)),
        },
        frontal_mm=frontal,
    )
