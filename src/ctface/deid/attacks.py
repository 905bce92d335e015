"""Re-identification attacks that do not use ctface's own recognizer: an audit of a de-identified
CT dataset must not rest on the network it audits alone.

Both attacks see only the CT (no ctface landmarks, face frame or embedding network), on the
probe side and the reference side alike:

``surface-icp``
    The head's skin: the ``SKIN_HU`` isosurface of the largest connected part above the
    threshold (opened first, so the table, the head holder's shell and a mask's straps drop
    out), on a 2 mm block-mean grid, thinned to one point per 3 mm cube, with outward normals.
    A probe (3,000 of its points) is registered to each reference by trimmed rigid ICP: each
    step fits the closest ``TRIM`` share of the correspondences whose normals agree, so a
    missing face, a different field of view or a device costs nothing. Started from the
    surfaces' centroids at a few pitches and yaws (both are supine head CTs in scanner
    orientation); the coarse passes (1,000 points) pick the start, a fine pass finishes.
    Similarity = minus the mean point-to-plane distance (mm) of the kept correspondences at the
    final pose: how well what is left of the probe fits the reference over their overlap.
    The ICP is written here on scipy (``cKDTree``; ``Rotation.align_vectors`` for the Kabsch
    step): Open3D would do it but is a ~400 MB dependency for ~60 lines. With normals each step
    is point-to-plane (one 6x6 least-squares solve): point-to-point (Kabsch) steps crawl along
    the round skull (on check1818 same-person pairs were still at 1.5-2.6 mm after 100 of
    them), point-to-plane converges in 10-20. Measured on check1818 (first scan of 10 people
    as references, their second as probes): same person 0.23-0.90 mm, the best other person
    0.77-1.32 mm, rank-1 10/10, also with the face cut away; 23/24 over all 24 people;
    ~0.4 s per scan, ~0.13 s per pair on one core. A trim of 0.5 was the most robust of
    0.4/0.5/0.6 (rank-1 22, 23, 23 of 24; smallest own-minus-best-other margin).

``face-2d``
    What the published MRI re-identification studies did: renders of the skin, then a 2-D face
    recognizer (dlib: HOG face detector, the CNN detector when HOG finds nothing, the 5-point
    shape predictor, the 128-D ResNet descriptor). The head's full-resolution skin mesh
    (vertices with nothing solid behind them, such as a perforated RT mask or a tube wall,
    are dropped) is turned so that its mirror-symmetry plane (found by ICP of the mirrored
    surface onto itself) is the sagittal plane, then rendered orthographically from in front
    of the face (looking along LPS +y, 1 px/mm, Lambert shading of the depth) at a few pitches;
    the view where the detector is surest is described. Similarity = minus the Euclidean
    distance of the descriptors (dlib's rule: the same person under 0.6). No face found in any
    view -> the attack fails on that scan. Needs the ``audit`` extra (dlib-bin,
    face_recognition_models). On check1818 (10 people, as above): rank-1 6/10, all four
    pairs without an RT mask right, two of the six with a mask on either side (the mask,
    stretched over the face, is what the render shows); ~2.3 s per scan.

Each volume goes through ``features`` once; ``attack_scores`` compares features only, so a
caller keeps the reference gallery's features (small, picklable) and not its volumes.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ctface.errors import MissingDataError
from ctface.extras import optional
from ctface.ingest.volume import SKIN_HU, CtVolume
from ctface.landmarks.skin import skin_surface
from ctface.render.output import shaded


class Attack(StrEnum):
    CTFACE = "ctface"  # ctface's own recognizer: not computed here
    SURFACE_ICP = "surface-icp"
    FACE_2D = "face-2d"


INDEPENDENT = (Attack.SURFACE_ICP, Attack.FACE_2D)

# --- the head's surface --------------------------------------------------------------------
GRID_MM = 2.0  # block-mean grid of the head mask and of surface-icp's isosurface
CELL_MM = 3.0  # one surface point per cube of this size
RESTORE_VOXELS = 2  # the opened head grows back this far into what is above the threshold
# --- surface-icp ---------------------------------------------------------------------------
PROBE_POINTS = 3000  # probe points of the fine ICP pass (a reference keeps all its points)
COARSE_POINTS = 1000  # probe points of the coarse passes (one per start pose)
START_POSES_DEG = ((-15.0, 0.0), (0.0, 0.0), (15.0, 0.0), (0.0, -25.0), (0.0, 25.0))  # pitch, yaw
TRIM = 0.5  # share of the probe's points fitted and scored (the closest, normals agreeing)
NORMAL_COS = 0.5  # correspondences whose normals differ by more than 60 degrees are not fitted
COARSE_ITERATIONS = 15
FINE_ITERATIONS = 15
TOLERANCE_MM = 1e-3  # stop when the trimmed mean residual improves by less than this
# --- face-2d -------------------------------------------------------------------------------
SOLID_MM = 5.0  # a rendered vertex has at least this much above-threshold HU behind it
MIRROR_YAWS_DEG = (-40.0, -20.0, 0.0, 20.0, 40.0)  # starts of the mirror ICP
VIEW_PITCHES_DEG = (-30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0)
CNN_PITCHES_DEG = (-20.0, 0.0, 20.0)  # the (slower) CNN detector's views, when HOG finds none
RENDER_MARGIN_PX = 20
OPEN_PX = 5  # depth pits narrower than this are filled
HOG_UPSAMPLE = 1
CNN_UPSAMPLE = 0  # a rendered face is ~150 px wide: enough for the CNN detector as it is
MODELS = (
    "mmod_human_face_detector.dat",
    "shape_predictor_5_face_landmarks.dat",
    "dlib_face_recognition_resnet_model_v1.dat",
)


@dataclass(frozen=True)
class Features:
    """What one attack keeps of one scan (picklable: numpy arrays, numbers and strings).

    surface-icp: ``points`` (N, 3) float32 LPS mm and their outward unit ``normals``.
    face-2d: ``descriptor`` (128,) float32; ``face_box`` (left, top, right, bottom) px in the
    rendered view, ``detector`` ("hog" or "cnn") and ``view_pitch_deg``.
    ``failure`` says why the attack cannot use the scan (the arrays are then None);
    ``seconds``: the time the extraction took.
    """

    attack: Attack
    points: np.ndarray | None = None
    normals: np.ndarray | None = None
    descriptor: np.ndarray | None = None
    face_box: tuple[int, int, int, int] | None = None
    detector: str | None = None
    view_pitch_deg: float | None = None
    failure: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class AttackScores:
    """``scores`` (P, G), higher = more alike: a NaN row where the attack failed on that probe
    (``failures[p]`` says why), a NaN column where it failed on that reference
    (``reference_failures[g]``)."""

    attack: Attack
    scores: np.ndarray
    failures: list[str | None]
    reference_failures: list[str | None]


# ------------------------------------------------------------------------------------------
# The head: the largest connected part above the skin threshold
# ------------------------------------------------------------------------------------------


def _block_mean(volume: CtVolume, step_mm: float) -> CtVolume:
    """The volume averaged over blocks of about ``step_mm`` (whole voxels per axis; the last
    partial block is left out)."""
    f = [max(1, int(round(step_mm / s))) for s in volume.spacing[::-1]]  # k, j, i
    n = [a // b for a, b in zip(volume.hu.shape, f, strict=True)]
    cut = volume.hu[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]].astype(np.float32)
    mean = cut.reshape(n[0], f[0], n[1], f[1], n[2], f[2]).mean(axis=(1, 3, 5))
    fi, fj, fk = f[2], f[1], f[0]
    affine = volume.affine_lps.copy()
    affine[:3, :3] = volume.affine_lps[:3, :3] * np.array([fi, fj, fk], float)
    affine[:3, 3] = volume.ijk_to_lps(np.array([[(fi - 1) / 2, (fj - 1) / 2, (fk - 1) / 2]]))[0]
    return CtVolume(mean, affine)


def _head(coarse: CtVolume) -> np.ndarray | None:
    """Head mask [k, j, i] on the coarse grid: the largest connected part at or above
    ``SKIN_HU`` after an opening (which cuts thin shells: an RT mask's straps, tubes), grown back
    into what is above the threshold (ears, nose), then by one voxel (so that the isosurface
    keeps its air side); None when nothing is above the threshold."""
    above = coarse.hu >= SKIN_HU
    cross = ndimage.generate_binary_structure(3, 1)
    labels, n = ndimage.label(ndimage.binary_opening(above, cross))
    if n == 0:
        labels, n = ndimage.label(above)
        if n == 0:
            return None
    sizes = np.bincount(labels.ravel())[1:]
    head = labels == 1 + int(np.argmax(sizes))
    head = ndimage.binary_dilation(head, cross, iterations=RESTORE_VOXELS) & above
    grown: np.ndarray = ndimage.binary_dilation(head, cross)
    return grown


def _whole_box(volume: CtVolume) -> tuple[slice, slice, slice]:
    k, j, i = volume.hu.shape
    return slice(0, k), slice(0, j), slice(0, i)


def _thin(points: np.ndarray, cell_mm: float) -> np.ndarray:
    """Indices (ascending) of one point per ``cell_mm`` cube: the first one met."""
    cell = np.floor(points / cell_mm).astype(np.int64)
    cell -= cell.min(axis=0)
    span = cell.max(axis=0) + 1
    key = (cell[:, 0] * span[1] + cell[:, 1]) * span[2] + cell[:, 2]
    _, first = np.unique(key, return_index=True)
    return np.sort(first)


def _skin_vertices(masked: CtVolume) -> tuple[np.ndarray, np.ndarray] | None:
    """The vertices of the skin mesh of a whole (masked) volume and their outward normals."""
    surface = skin_surface(masked, SKIN_HU, _whole_box(masked))
    if surface.empty:
        return None
    used = np.zeros(len(surface.vertices), bool)
    used[surface.triangles.ravel()] = True
    return surface.vertices[used], surface.vertex_normals[used]


def surface_samples(volume: CtVolume) -> tuple[np.ndarray, np.ndarray] | None:
    """(points, normals), (N, 3) float32: the head's skin surface (``SKIN_HU``, on the 2 mm
    block-mean grid) in LPS mm, one point per ``CELL_MM`` cube, with outward unit normals;
    None when the volume holds no skin."""
    coarse = _block_mean(volume, GRID_MM)
    head = _head(coarse)
    if head is None:
        return None
    masked = CtVolume(np.where(head, coarse.hu, np.float32(-1000.0)), coarse.affine_lps)
    found = _skin_vertices(masked)
    if found is None:
        return None
    pts, nrm = found
    keep = _thin(pts, CELL_MM)
    return pts[keep].astype(np.float32), nrm[keep].astype(np.float32)


def surface_points(volume: CtVolume) -> np.ndarray | None:
    """(N, 3) float32 LPS mm: the head's skin surface (``SKIN_HU``), one point per 3 mm cube;
    None when the volume holds no skin."""
    found = surface_samples(volume)
    return None if found is None else found[0]


# ------------------------------------------------------------------------------------------
# Trimmed rigid ICP
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cloud:
    """Points (float64) with optional unit normals, and a KD-tree when it is the target."""

    points: np.ndarray
    normals: np.ndarray | None = None
    tree: cKDTree | None = None

    @staticmethod
    def of(
        points: np.ndarray, normals: np.ndarray | None = None, tree: cKDTree | None = None
    ) -> _Cloud:
        p = np.asarray(points, np.float64)
        n = None if normals is None else np.asarray(normals, np.float64)
        return _Cloud(p, n, tree)

    def subset(self, n: int) -> _Cloud:
        """``n`` points spread evenly over the (spatially ordered) array."""
        if len(self.points) <= n:
            return self
        idx = np.linspace(0, len(self.points) - 1, n).round().astype(int)
        return _Cloud(self.points[idx], None if self.normals is None else self.normals[idx])

    def with_tree(self) -> _Cloud:
        return (
            self
            if self.tree is not None
            else _Cloud(self.points, self.normals, cKDTree(self.points))
        )


@dataclass(frozen=True)
class _Pose:
    """x -> rotation @ x + shift, and the trimmed mean residual (mm) there."""

    rotation: np.ndarray
    shift: np.ndarray
    residual: float = np.inf


def _match(source: _Cloud, target: _Cloud, pose: _Pose) -> tuple[np.ndarray, ...]:
    """At ``pose``: the moved source points, their nearest target points' indices, the kept
    correspondences (the ``TRIM`` share with the smallest distance, those whose normals
    disagree last) and their residuals (point-to-plane with target normals, else distance)."""
    assert target.tree is not None
    moved = source.points @ pose.rotation.T + pose.shift
    dist, idx = target.tree.query(moved)
    rank = dist.copy()
    if source.normals is not None and target.normals is not None:
        agree = np.einsum("ij,ij->i", source.normals @ pose.rotation.T, target.normals[idx])
        rank[agree < NORMAL_COS] += 1e6  # only when too few agree
    n_keep = max(6, int(round(TRIM * len(moved))))
    keep = np.argpartition(rank, min(n_keep, len(rank)) - 1)[:n_keep]
    if target.normals is not None:
        plane = np.abs(np.einsum("ij,ij->i", moved - target.points[idx], target.normals[idx]))
        resid = np.where(rank >= 1e6, dist, np.minimum(plane, dist))
    else:
        resid = dist
    return moved, idx, keep, resid


def _icp(source: _Cloud, target: _Cloud, pose: _Pose, iterations: int) -> _Pose:
    """Trimmed ICP from ``pose``: point-to-plane steps with target normals, else Kabsch."""
    for _ in range(iterations):
        moved, idx, keep, resid = _match(source, target, pose)
        residual = float(resid[keep].mean())
        if pose.residual - residual < TOLERANCE_MM:
            return _Pose(pose.rotation, pose.shift, min(residual, pose.residual))
        a, b = moved[keep], target.points[idx[keep]]
        centre = a.mean(axis=0)
        if target.normals is not None:  # linearized point-to-plane: (rotation vector, shift)
            n = target.normals[idx[keep]]
            jac = np.hstack([np.cross(a - centre, n), n])
            x = np.linalg.lstsq(jac, -np.einsum("ij,ij->i", a - b, n), rcond=None)[0]
            step = Rotation.from_rotvec(x[:3]).as_matrix()
            move = centre + x[3:]
        else:  # Kabsch: a - centre onto b - mean(b)
            rot, _ = Rotation.align_vectors(b - b.mean(axis=0), a - centre)
            step, move = rot.as_matrix(), b.mean(axis=0)
        pose = _Pose(step @ pose.rotation, step @ (pose.shift - centre) + move, residual)
    _, _, keep, resid = _match(source, target, pose)
    return _Pose(pose.rotation, pose.shift, float(resid[keep].mean()))


def _start(source: _Cloud, target: _Cloud, rotation: np.ndarray) -> _Pose:
    """``rotation`` about the source's centroid, which goes onto the target's centroid."""
    return _Pose(rotation, target.points.mean(axis=0) - rotation @ source.points.mean(axis=0))


def _register(source: _Cloud, target: _Cloud, starts: Sequence[np.ndarray]) -> _Pose:
    """Best trimmed-ICP pose of ``source`` on ``target``: coarse passes from every start
    rotation, a fine pass from the best."""
    target = target.with_tree()
    coarse = source.subset(COARSE_POINTS)
    best = min(
        (_icp(coarse, target, _start(coarse, target, r), COARSE_ITERATIONS) for r in starts),
        key=lambda p: p.residual,
    )
    fine = source.subset(PROBE_POINTS)
    return _icp(fine, target, _Pose(best.rotation, best.shift), FINE_ITERATIONS)


def _rotation(pitch_deg: float, yaw_deg: float = 0.0) -> np.ndarray:
    """Rotation about LPS x (left-right: pitch), then about z (superior: yaw)."""
    out: np.ndarray = Rotation.from_euler("xz", [pitch_deg, yaw_deg], degrees=True).as_matrix()
    return out


def icp_similarity(
    probe_pts: np.ndarray,
    reference_pts: np.ndarray,
    reference_tree: cKDTree | None = None,
    *,
    probe_normals: np.ndarray | None = None,
    reference_normals: np.ndarray | None = None,
) -> float:
    """How well the probe's surface fits the reference's after trimmed rigid ICP: minus the
    mean distance (mm) of the closest ``TRIM`` share of the probe's points to the reference
    surface at the best pose (point-to-plane with ``reference_normals``, else point-to-point;
    ``probe_normals`` too: correspondences must agree in normal). Higher = more alike; NaN
    when either side has fewer than 10 points. ``reference_tree``: ``cKDTree(reference_pts)``
    when the caller keeps one."""
    if len(probe_pts) < 10 or len(reference_pts) < 10:
        return float("nan")
    source = _Cloud.of(probe_pts, probe_normals)
    target = _Cloud.of(reference_pts, reference_normals, reference_tree)
    starts = [_rotation(p, y) for p, y in START_POSES_DEG]
    return -_register(source, target, starts).residual


# ------------------------------------------------------------------------------------------
# face-2d: pose-normalized renders + dlib
# ------------------------------------------------------------------------------------------


def face_surface(volume: CtVolume) -> tuple[np.ndarray, np.ndarray] | None:
    """(points, normals) (N, 3) float32 LPS mm: the vertices of the head's full-resolution skin
    mesh that have ``SOLID_MM`` of tissue behind them (so a thin shell in front of the face,
    a perforated RT mask or a tube's wall, is seen through), with outward unit normals;
    None when the volume holds no skin."""
    coarse = _block_mean(volume, GRID_MM)
    head = _head(coarse)
    if head is None:
        return None
    f = [a // b for a, b in zip(volume.hu.shape, head.shape, strict=True)]
    up = head.repeat(f[0], 0).repeat(f[1], 1).repeat(f[2], 2)
    mask = np.zeros(volume.hu.shape, bool)
    mask[: up.shape[0], : up.shape[1], : up.shape[2]] = up
    hu = np.where(mask, volume.hu, np.asarray(-1000, volume.hu.dtype))
    del mask, up
    masked = CtVolume(hu, volume.affine_lps)
    found = _skin_vertices(masked)
    if found is None:
        return None
    pts, nrm = found
    depths = np.arange(1.0, SOLID_MM + 1e-6, 1.0)
    behind = (pts[:, None, :] - depths[None, :, None] * nrm[:, None, :]).reshape(-1, 3)
    ijk = masked.lps_to_ijk(behind)
    values = ndimage.map_coordinates(
        hu, [ijk[:, 2], ijk[:, 1], ijk[:, 0]], order=1, cval=-1000.0, output=np.float32
    )
    solid = (values.reshape(len(pts), len(depths)) >= SKIN_HU).all(axis=1)
    if not solid.any():
        return None
    return pts[solid].astype(np.float32), nrm[solid].astype(np.float32)


def symmetry_rotation(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """The rotation (3x3, about the head's centroid) that turns the head's mirror-symmetry
    plane into the sagittal (LPS y-z) plane, undoing yaw and roll but not pitch. The plane is
    found by trimmed ICP of the mirrored surface (x -> -x) onto the surface itself."""
    keep = _thin(points, CELL_MM)
    target = _Cloud.of(points[keep], normals[keep])
    flip = np.diag([-1.0, 1.0, 1.0])
    centre = target.points.mean(axis=0)
    source = _Cloud((target.points - centre) @ flip + centre, target.normals @ flip)
    pose = _register(source, target, [_rotation(0.0, y) for y in MIRROR_YAWS_DEG])
    reflection = pose.rotation @ flip  # ~ I - 2 u u^T, u the plane's normal
    values, vectors = np.linalg.eigh((reflection + reflection.T) / 2)
    u = vectors[:, int(np.argmin(values))]
    u = u if u[0] >= 0 else -u
    rot, _ = Rotation.align_vectors(np.array([[1.0, 0.0, 0.0]]), u[None])
    out: np.ndarray = rot.as_matrix()
    return out


def render_view(points: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: ``points`` (a dense skin surface, LPS mm), turned by ``rotation`` about
    their centroid, seen orthographically from in front of the face (looking along LPS +y) at
    1 px/mm: the nearest point per pixel (one-pixel holes filled, lightly smoothed), Lambert
    shading of that depth (``render.output.shaded``, light at the viewer), cropped to the head
    with a ``RENDER_MARGIN_PX`` black border. The patient's left is on the image's right."""
    p = np.asarray(points, np.float64)
    if len(p) == 0:
        return np.zeros((1, 1, 3), np.uint8)
    if rotation is not None:
        centre = p.mean(axis=0)
        p = (p - centre) @ np.asarray(rotation).T + centre
    m = RENDER_MARGIN_PX
    col = np.round(p[:, 0] - p[:, 0].min()).astype(np.int64) + m
    row = np.round(p[:, 2].max() - p[:, 2]).astype(np.int64) + m
    depth = np.full((int(row.max()) + m + 1, int(col.max()) + m + 1), np.inf)
    np.minimum.at(depth, (row, col), p[:, 1])
    hit = np.isfinite(depth)
    near = ndimage.convolve(hit.astype(np.float32), np.ones((3, 3), np.float32), mode="constant")
    nearest = ndimage.minimum_filter(depth, 3)
    fill = ~hit & (near >= 5)  # a pixel that no point fell on, inside the surface
    depth[fill] = nearest[fill]
    # pits narrower than OPEN_PX (the skin seen through the holes of a perforated mask) are
    # filled to the level around them (a grey opening: deeper = larger)
    depth = ndimage.grey_opening(depth, size=(OPEN_PX, OPEN_PX))
    valid = np.isfinite(depth)
    # smooth the depth (normalized Gaussian over the valid pixels): rounding the points to
    # pixels leaves up to 0.5 mm of jitter, which shading would show
    w = ndimage.gaussian_filter(valid.astype(np.float64), 0.8)
    d = ndimage.gaussian_filter(np.where(valid, depth, 0.0), 0.8)
    depth = np.where(valid, d / np.maximum(w, 1e-6), np.nan)
    gray = (255.0 * shaded(depth, 1.0)).round().astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def frontal_render(volume: CtVolume, rotation: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the head's skin seen from in front of the face, orthographic along
    LPS +y at 1 px/mm, Lambert-shaded (``render_view`` of ``face_surface``); the head turned
    first by ``rotation`` about its centroid (None: as scanned). A 1x1 black image when the
    volume holds no skin."""
    found = face_surface(volume)
    if found is None:
        return np.zeros((1, 1, 3), np.uint8)
    return render_view(found[0], rotation)


def _missing(what: str) -> str:
    return f"the face-2d attack needs {what}, which is not installed: pip install 'ctface[audit]'"


def _models_folder() -> Path:
    """``face_recognition_models/models``, found without importing the package (its
    ``__init__`` needs ``pkg_resources``)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(_missing("face_recognition_models"))
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    absent = [m for m in MODELS if not (folder / m).is_file()]
    if absent:
        raise MissingDataError(f"{_missing('face_recognition_models')} (no {', '.join(absent)})")
    return folder


@functools.lru_cache(maxsize=1)
def _dlib_models() -> tuple[Any, Any, Any, Any]:
    """(HOG detector, CNN detector, 5-point shape predictor, face recognizer), loaded once per
    process; MissingDataError naming the ``audit`` extra when dlib or the models are absent."""
    dlib = optional("dlib")
    if dlib is None:
        raise MissingDataError(_missing("dlib"))
    folder = _models_folder()
    return (
        dlib.get_frontal_face_detector(),
        dlib.cnn_face_detection_model_v1(str(folder / MODELS[0])),
        dlib.shape_predictor(str(folder / MODELS[1])),
        dlib.face_recognition_model_v1(str(folder / MODELS[2])),
    )


def check_face_2d() -> None:
    """MissingDataError (naming the ``audit`` extra) unless dlib and its models are here."""
    _dlib_models()


@dataclass(frozen=True)
class FaceView:
    """The view of the head where a detector found a face: the image, the face's box (left,
    top, right, bottom) px, the detector ("hog" or "cnn") and its score, the view's pitch."""

    image: np.ndarray
    box: tuple[int, int, int, int]
    detector: str
    score: float
    pitch_deg: float
    rect: Any  # dlib.rectangle (not kept in Features)


def _box(rect: Any) -> tuple[int, int, int, int]:
    return int(rect.left()), int(rect.top()), int(rect.right()), int(rect.bottom())


def find_face(points: np.ndarray, normals: np.ndarray) -> FaceView | None:
    """The head (``face_surface``) turned to its symmetry plane, rendered at each of
    ``VIEW_PITCHES_DEG``; the view where the HOG detector scores a face highest (else, on
    ``CNN_PITCHES_DEG``, the CNN detector), or None when no view shows a face."""
    hog, cnn, _, _ = _dlib_models()
    upright = symmetry_rotation(points, normals)
    views = {pitch: render_view(points, _rotation(pitch) @ upright) for pitch in VIEW_PITCHES_DEG}
    best: FaceView | None = None
    for pitch, image in views.items():
        rects, scores, _ = hog.run(image, HOG_UPSAMPLE, 0.0)
        for rect, score in zip(rects, scores, strict=True):
            if best is None or score > best.score:
                best = FaceView(image, _box(rect), "hog", float(score), pitch, rect)
    if best is not None:
        return best
    for pitch in CNN_PITCHES_DEG:
        seen = views.get(pitch)
        image = seen if seen is not None else render_view(points, _rotation(pitch) @ upright)
        for found in cnn(image, CNN_UPSAMPLE):
            if best is None or found.confidence > best.score:
                rect = found.rect
                best = FaceView(image, _box(rect), "cnn", float(found.confidence), pitch, rect)
    return best


def describe(view: FaceView) -> np.ndarray:
    """(128,) float32 dlib face descriptor of the face in ``view`` (5-point alignment)."""
    _, _, predictor, recognizer = _dlib_models()
    shape = predictor(view.image, view.rect)
    return np.array(recognizer.compute_face_descriptor(view.image, shape), np.float32)


def face_descriptor(volume: CtVolume) -> np.ndarray | None:
    """(128,) float32 dlib descriptor of the head's best rendered view; None when no view
    shows a face (``features(Attack.FACE_2D, volume).failure`` says why)."""
    f = features(Attack.FACE_2D, volume)
    return f.descriptor


# ------------------------------------------------------------------------------------------
# Features and scores
# ------------------------------------------------------------------------------------------


def _since(start: float) -> float:
    return time.perf_counter() - start


def features(attack: Attack | str, volume: CtVolume) -> Features:
    """What ``attack`` needs of ``volume``, extracted once (see ``Features``); a scan the
    attack cannot use gives Features with ``failure`` set (no exception)."""
    attack = Attack(attack)
    start = time.perf_counter()
    if attack == Attack.SURFACE_ICP:
        found = surface_samples(volume)
        if found is None:
            return Features(attack, failure="no skin surface", seconds=_since(start))
        return Features(attack, points=found[0], normals=found[1], seconds=_since(start))
    if attack == Attack.FACE_2D:
        check_face_2d()
        skin = face_surface(volume)
        if skin is None:
            return Features(attack, failure="no skin surface", seconds=_since(start))
        view = find_face(*skin)
        if view is None:
            failure = "no face found in any rendered view (dlib HOG and CNN detectors)"
            return Features(attack, failure=failure, seconds=_since(start))
        return Features(
            attack,
            descriptor=describe(view),
            face_box=view.box,
            detector=view.detector,
            view_pitch_deg=view.pitch_deg,
            seconds=_since(start),
        )
    raise ValueError(f"{attack} is not one of the independent attacks ({', '.join(INDEPENDENT)})")


def _as_features(attack: Attack, item: CtVolume | Features) -> Features:
    if isinstance(item, Features):
        if item.attack != attack:
            raise ValueError(f"features of the {item.attack} attack given to {attack}")
        return item
    return features(attack, item)


def pair_score(
    probe: Features, reference: Features, reference_tree: cKDTree | None = None
) -> float:
    """One probe against one reference, higher = more alike; NaN when the attack failed on
    either. ``reference_tree``: surface-icp's KD-tree of the reference's points, when kept."""
    if probe.attack != reference.attack:
        raise ValueError(f"{probe.attack} features against {reference.attack} features")
    if not (probe.ok and reference.ok):
        return float("nan")
    if probe.attack == Attack.FACE_2D:
        assert probe.descriptor is not None and reference.descriptor is not None
        return -float(np.linalg.norm(probe.descriptor - reference.descriptor))
    assert probe.points is not None and reference.points is not None
    return icp_similarity(
        probe.points,
        reference.points,
        reference_tree,
        probe_normals=probe.normals,
        reference_normals=reference.normals,
    )


def attack_scores(
    attack: Attack | str,
    probes: Sequence[CtVolume | Features],
    references: Sequence[CtVolume | Features],
) -> AttackScores:
    """Scores (P, G) of every probe against every reference (higher = more alike). Volumes
    are turned into features first (each once); NaN rows (columns) where the attack failed on
    a probe (reference), with the reasons."""
    attack = Attack(attack)
    refs = [_as_features(attack, r) for r in references]
    trees: list[cKDTree | None] = [None] * len(refs)
    if attack == Attack.SURFACE_ICP:  # one KD-tree per reference, shared by all the probes
        trees = [
            cKDTree(np.asarray(r.points, np.float64)) if r.ok and r.points is not None else None
            for r in refs
        ]
    scores = np.full((len(probes), len(refs)), np.nan)
    failures: list[str | None] = []
    for p, item in enumerate(probes):
        probe = _as_features(attack, item)
        failures.append(probe.failure)
        if probe.ok:
            for g, ref in enumerate(refs):
                scores[p, g] = pair_score(probe, ref, trees[g])
    return AttackScores(attack, scores, failures, [r.failure for r in refs])
