"""Landmarks without CT training: the ICT face model fitted to the CT skin isosurface.

~3k face vertices (brow to chin, in front of the ears) start as the mean face with its nose tip
on ``frame.origin`` (or 35/70 mm above it: the geometric locator sometimes takes the chin) and
its axes on the frame's (+-10 deg yaw/pitch), then follow robust ICP on the marching-cubes skin.
A vertex matches the nearest CT vertex whose normal agrees (< 60 deg: skips the inner side of a
mask sheet) within a trimmed bound (3 x median, >= 4 mm, <= a cap shrinking to 5 mm); CT
vertices on the edge of the box or of the scanned field of view never match. Each step is one
Gauss-Newton step (point-to-plane plus weak point-to-point rows, Geman-McClure weights) of the
similarity (scale 0.85-1.15) jointly with the model weights: pose only for the starts (the best
by truncated squared distance goes on), then identity modes (10 growing to 60, N(0, 1) prior)
and the non-gaze expression modes (in [0, 1]). The five points follow ``five_landmarks`` (the
phantoms' ground-truth rule) on the fitted mesh; the nose tip then moves along the face's
forward axis to the CT skin edge (half way between tissue and air HU), removing the model's
depth error there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.linalg import cho_factor, cho_solve
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ctface.errors import NoFaceError
from ctface.face_model import five_landmarks
from ctface.face_model.model import FaceModel
from ctface.ingest.volume import SKIN_HU, CtVolume
from ctface.landmarks.frame import FaceFrame
from ctface.landmarks.sampling import LANDMARKS
from ctface.landmarks.skin import skin_surface, voxel_box

BOX_MM = ((-90.0, 90.0), (-110.0, 90.0), (-110.0, 30.0))  # along frame right, up, forward
N_POINTS, N_IDENTITY = 3000, 60
SKIP_EXPRESSIONS = ("eyeLook",)  # gaze modes do not change the skin
SIGMA_MM, EXPRESSION_PRIOR = 1.0, 0.3  # residual SD; prior SD of expression vs identity weights
P2P_WEIGHT = 0.15  # point-to-point rows beside the point-to-plane ones
MIN_NORMAL_COS, MIN_TRIM_MM, ROBUST_MM = 0.5, 4.0, 2.0
SCALE_RANGE = (0.85, 1.15)
# pose-only starts: yaw, pitch (deg) about the frame origin, shift along frame.up (mm)
STARTS = ((0, 0, 0), (10, 0, 0), (-10, 0, 0), (0, 10, 0), (0, -10, 0), (0, 0, 35), (0, 0, 70))
RIGID_CAPS_MM = (20.0, 16.0, 12.0, 10.0, 8.0, 8.0)
SHAPE_CAP_MM, FINAL_CAP_MM = 8.0, 5.0
SCHEDULE = ((10, False), (10, True), (20, True), (30, True), (45, True)) + ((60, True),) * 11
MIN_SURFACE_VERTICES, MIN_INLIER_FRACTION = 2000, 0.15
SNAP_MM = 3.0

Pose = tuple[float, np.ndarray, np.ndarray]  # p = scale * rotation @ m + translation


@dataclass(frozen=True)
class SurfaceFit:
    """Five landmarks (rows in ``LANDMARKS`` order, LPS mm) and how well the model fits."""

    lps: np.ndarray
    rms_mm: float  # point-to-plane RMS of the matched model vertices
    inlier_fraction: float  # of the fitted model vertices that found the skin
    seconds: float


def _apply(pose: Pose, m: np.ndarray) -> np.ndarray:
    out: np.ndarray = pose[0] * m @ pose[1].T + pose[2]
    return out


def _fit_vertices(model: FaceModel) -> np.ndarray:
    """Indices of face-group vertices in front of the ears, from above the brows to the chin."""
    v, lm = model.neutral, model.neutral[model.landmarks68]
    face = np.zeros(len(v), bool)
    face[np.unique(model.triangles[model.group_mask("face")])] = True
    keep = face & (np.abs(v[:, 0]) < 0.475 * abs(lm[16, 0] - lm[0, 0]))
    keep &= (v[:, 1] > lm[8, 1] - 15.0) & (v[:, 1] < lm[17:27, 1].max() + 45.0)
    idx = np.flatnonzero(keep & (v[:, 2] > min(lm[0, 2], lm[16, 2]) - 5.0))
    if len(idx) > N_POINTS:
        idx = np.sort(np.random.default_rng(0).choice(idx, N_POINTS, replace=False))
    return idx


def _ct_surface(volume: CtVolume, frame: FaceFrame, threshold_hu: float) -> tuple[np.ndarray, ...]:
    """Skin vertices and unit normals (LPS) near the face, without those on the edges of the
    box or of the scanned field of view (cuts there are no skin)."""
    corners = np.array([[x, y, z] for x in BOX_MM[0] for y in BOX_MM[1] for z in BOX_MM[2]])
    box = voxel_box(volume, frame.to_lps(corners))
    if box is None:
        raise NoFaceError("no usable face: the region around the face estimate misses the volume")
    surf = skin_surface(volume, threshold_hu, box)
    pts, nrm = surf.vertices.astype(np.float64), surf.vertex_normals.astype(np.float64)
    ijk = volume.lps_to_ijk(pts)
    lo = np.array([box[2].start, box[1].start, box[0].start]) + 1.5
    hi = np.array([box[2].stop, box[1].stop, box[0].stop]) - 2.5
    affine, shape = volume.scanned_geometry()
    inv = np.linalg.inv(affine)
    sijk = pts @ inv[:3, :3].T + inv[:3, 3]
    margin = 1.5 / np.linalg.norm(affine[:3, :3], axis=0)
    ok = np.all((ijk > lo) & (ijk < hi), axis=1)
    ok &= np.all((sijk > margin - 0.5) & (sijk < np.asarray(shape) - 0.5 - margin), axis=1)
    if ok.sum() < MIN_SURFACE_VERTICES:
        raise NoFaceError(
            f"no usable face: only {int(ok.sum())} skin surface points at {threshold_hu:g} HU "
            "around the face estimate"
        )
    return pts[ok], nrm[ok]


def _gram(a: np.ndarray) -> np.ndarray:
    """a.T @ a in row blocks small enough for single-threaded BLAS (threaded BLAS on these
    sizes costs several times what it saves on a busy CPU)."""
    rows = max(1, 200_000 // a.shape[1] ** 2)
    out = np.zeros((a.shape[1], a.shape[1]))
    for r in range(0, len(a), rows):
        out += a[r : r + rows].T @ a[r : r + rows]
    return out


def _bounded_solve(
    mat: np.ndarray, rhs: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """argmin 0.5 x'Mx - rhs'x within [lo, hi] (M positive definite): primal active set from
    the feasible start ``x`` (blocking bounds are held, one held bound released per step)."""
    x = np.clip(x, lo, hi)
    held = (x <= lo) | (x >= hi)
    for _ in range(4 * len(x)):
        free, target = ~held, x.copy()
        rest = rhs[free] - mat[free][:, held] @ x[held]
        target[free] = cho_solve(cho_factor(mat[np.ix_(free, free)]), rest)
        step = target - x
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(step < 0, (lo - x) / step, np.where(step > 0, (hi - x) / step, np.inf))
        alpha = float(min(1.0, room[free].min(initial=np.inf)))
        x = np.clip(x + alpha * step, lo, hi)
        if alpha < 1.0:
            held |= free & (room <= alpha + 1e-12)
            continue
        grad = mat @ x - rhs  # KKT: held at lo needs grad >= 0, at hi grad <= 0
        wrong = np.where(held, np.where(x <= lo, -grad, grad), 0.0)
        if wrong.max(initial=0.0) <= 1e-9:
            break
        held[int(np.argmax(wrong))] = False
    return x


class _Fitter:
    """Model points (a subset of the face) with their mode basis, matched to the CT skin."""

    def __init__(self, model: FaceModel, pts: np.ndarray, nrm: np.ndarray) -> None:
        self.model, self.pts, self.nrm, self.tree = model, pts, nrm, cKDTree(pts)
        idx = _fit_vertices(model)
        names = model.expression_names
        self.expr = [i for i, n in enumerate(names) if not n.startswith(SKIP_EXPRESSIONS)]
        basis = [model.identity_modes[:N_IDENTITY, idx], model.expression_modes[self.expr][:, idx]]
        self.basis = np.concatenate(basis).transpose(1, 2, 0).astype(np.float64)  # (n, 3, K)
        self.coef = np.zeros(self.basis.shape[2])
        n_e = len(self.expr)
        self.prior = np.r_[np.ones(N_IDENTITY), np.full(n_e, EXPRESSION_PRIOR**2)] * SIGMA_MM**2
        self.lo = np.r_[np.full(N_IDENTITY, -4.0), np.zeros(n_e)]
        self.hi = np.r_[np.full(N_IDENTITY, 4.0), np.ones(n_e)]
        v, tris = model.neutral.astype(np.float64), model.triangles[model.group_mask("face")]
        fn = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
        vn = np.stack([sum(np.bincount(tris[:, c], fn[:, a], len(v)) for c in range(3))
                       for a in range(3)], 1)  # fmt: skip
        vn /= np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12
        self.mn = vn[idx] * np.sign(vn[model.landmarks68[30], 2])  # outwards (neutral shape)
        self.mean = self.m = v[idx]

    def full_vertices(self) -> np.ndarray:
        expr = np.zeros(len(self.model.expression_names), np.float32)
        expr[self.expr] = self.coef[N_IDENTITY:]
        return self.model.vertices(self.coef[:N_IDENTITY].astype(np.float32), expr)

    def match(self, pose: Pose, cap: float, stride: int = 1) -> tuple[np.ndarray, ...]:
        """Model points (LPS), inlier mask, matched CT points and normals, distances."""
        p, pn = _apply(pose, self.m[::stride]), self.mn[::stride] @ pose[1].T
        d, j = self.tree.query(p, k=4, distance_upper_bound=2.0 * cap)
        j = np.where(np.isfinite(d), j, 0)
        good = np.isfinite(d) & (np.einsum("nkc,nc->nk", self.nrm[j], pn) > MIN_NORMAL_COS)
        rows, first = np.arange(len(p)), np.argmax(good, axis=1)
        ok, jj, dd = good[rows, first], j[rows, first], d[rows, first]
        thr = min(max(3.0 * float(np.median(dd[ok])), MIN_TRIM_MM), cap) if ok.any() else cap
        ok &= dd <= thr
        return p, ok, self.pts[jj], self.nrm[jj], np.where(ok, dd, thr)

    def step(
        self, pose: Pose, cap: float, n_id: int, expr: bool, stride: int = 1
    ) -> tuple[Pose, float]:
        """One robust Gauss-Newton step of the similarity and of the first ``n_id`` identity
        weights (and the expression weights if ``expr``); the new pose and the truncated mean
        squared distance before the step."""
        p, ok, q, n, dd = self.match(pose, cap, stride)
        score = float(np.mean(np.minimum(dd, cap) ** 2))
        if ok.sum() < 50:
            return pose, score
        p, q, n, d = p[ok], q[ok], n[ok], p[ok] - p[ok].mean(0)
        z = np.zeros(len(d))
        skew = np.stack([np.stack([z, d[:, 2], -d[:, 1]], 1), np.stack([-d[:, 2], z, d[:, 0]], 1),
                         np.stack([d[:, 1], -d[:, 0], z], 1)], 1)  # fmt: skip  # -[d]x
        act = np.r_[np.arange(n_id), N_IDENTITY + np.arange(len(self.expr) * expr)].astype(int)
        basis = self.basis[::stride][ok][:, :, act] if len(act) else np.zeros((len(d), 3, 0))
        shape = (pose[0] * pose[1]) @ basis  # (n, 3, k)
        eye = np.broadcast_to(np.eye(3), (len(d), 3, 3))
        jac = np.concatenate([skew, d[:, :, None], eye, shape], 2)  # rotation, scale, shift
        resid = q - p + np.einsum("nak,k->na", shape, self.coef[act])  # unknowns: new weights
        w = 1.0 / (1.0 + (dd[ok] / max(ROBUST_MM, 0.25 * cap)) ** 2)  # sqrt of Geman-McClure
        rows = np.concatenate([jac, resid[:, :, None]], 2)
        plane = w[:, None] * np.einsum("nc,nck->nk", n, rows)
        p2p = (P2P_WEIGHT * w[:, None, None] * rows).reshape(-1, rows.shape[2])
        g = _gram(np.vstack([plane, p2p]))
        lo, hi = np.r_[np.full(7, -np.inf), self.lo[act]], np.r_[np.full(7, np.inf), self.hi[act]]
        mat = g[:-1, :-1] + np.diag(np.r_[np.full(7, 1e-6), self.prior[act]])
        x = _bounded_solve(mat, g[:-1, -1], lo, hi, np.r_[np.zeros(7), self.coef[act]])
        self.coef[act] = x[7:]
        if len(act):
            self.m = self.mean + np.einsum("nak,k->na", self.basis, self.coef)
        scale = float(np.clip(pose[0] * (1 + x[3]), *SCALE_RANGE))
        r, c = Rotation.from_rotvec(x[:3]).as_matrix(), p.mean(0)
        return (scale, r @ pose[1], c + scale / pose[0] * r @ (pose[2] - c) + x[4:7]), score


def fit_face_model(
    volume: CtVolume, frame: FaceFrame, model: FaceModel, threshold_hu: float = SKIN_HU
) -> SurfaceFit:
    """Fit the face model to the skin of ``volume`` near ``frame``; the five landmarks in LPS.

    All five points are returned even where the field of view cuts the face (the model
    extrapolates); NoFaceError if there is too little skin near the frame to fit.
    """
    t0 = time.perf_counter()
    fit = _Fitter(model, *_ct_surface(volume, frame, threshold_hu))
    tip = model.neutral[model.landmarks68[30]].astype(np.float64)
    best: tuple[float, Pose] = (np.inf, (1.0, np.eye(3), np.zeros(3)))
    for yaw, pitch, shift in STARTS:
        turn = Rotation.from_rotvec(np.radians(pitch) * frame.right) * Rotation.from_rotvec(
            np.radians(yaw) * frame.up
        )
        rot = turn.as_matrix() @ frame.matrix().T  # model x, y, z -> frame right, up, forward
        pose: Pose = (1.0, rot, frame.origin + shift * frame.up - rot @ tip)
        for cap in RIGID_CAPS_MM[:3]:
            pose, score = fit.step(pose, cap, 0, False, stride=4)
        best = min(best, (score, pose), key=lambda b: b[0])
    pose = best[1]
    for cap in RIGID_CAPS_MM:  # the best start goes on
        pose, _ = fit.step(pose, cap, 0, False, stride=3)
    caps = np.linspace(SHAPE_CAP_MM, FINAL_CAP_MM, len(SCHEDULE))
    for cap, (n_id, expr) in zip(caps, SCHEDULE, strict=True):
        pose, _ = fit.step(pose, cap, min(n_id, N_IDENTITY), expr)
    p, ok, q, n, _ = fit.match(pose, FINAL_CAP_MM)
    if ok.mean() < MIN_INLIER_FRACTION:
        raise NoFaceError(
            f"no usable face: the face model finds skin for only {100 * ok.mean():.0f}% of its "
            "points near the face estimate"
        )
    rms = float(np.sqrt(np.mean(np.einsum("ij,ij->i", n[ok], p[ok] - q[ok]) ** 2)))
    five = five_landmarks(model, fit.full_vertices())
    lps = _apply(pose, np.array([five[name] for name in LANDMARKS], dtype=np.float64))
    nose = LANDMARKS.index("nose_tip")
    lps[nose] = _skin_edge(volume, lps[nose], pose[1][:, 2], threshold_hu)
    return SurfaceFit(lps, rms, float(ok.mean()), time.perf_counter() - t0)


def _skin_edge(
    volume: CtVolume, point: np.ndarray, ray: np.ndarray, threshold: float
) -> np.ndarray:
    """Where the HU profile along ``ray`` through ``point`` falls half way from the tissue
    (max 3 mm inside) to the air (min 3 mm outside) at the ``threshold`` crossing (tissue to
    air) nearest ``point`` within SNAP_MM; ``point`` if there is none."""
    t = np.arange(-SNAP_MM - 3.0, SNAP_MM + 3.0 + 1e-9, 0.1)
    kji = volume.lps_to_ijk(point + t[:, None] * ray)[:, ::-1].T
    hu = ndimage.map_coordinates(volume.hu, kji, order=1, mode="constant", cval=-1024.0)
    inside = hu >= threshold
    down = np.flatnonzero(inside[:-1] & ~inside[1:] & (np.abs(t[:-1]) <= SNAP_MM))
    if len(down) == 0:
        return point
    k = int(down[np.argmin(np.abs(t[down]))])
    level = 0.5 * (hu[max(k - 30, 0) : k + 1].max() + hu[k + 1 : k + 31].min())
    while k > 0 and hu[k] < level:  # the half-way level lies deeper than the threshold
        k -= 1
    while k + 2 < len(hu) and hu[k + 1] >= level:  # or further out
        k += 1
    frac = float(np.clip((hu[k] - level) / max(hu[k] - hu[k + 1], 1e-6), 0.0, 1.0))
    return point + (t[k] + 0.1 * frac) * ray
