"""A solid head in Hounsfield units, built around one face-model mesh, in the model frame.

The mesh is a surface with holes (open neck, eye and mouth sockets). It is made solid by
rasterizing its outer groups, sealing gaps narrower than ~3 mm, cutting the neck where it is a
closed ring, and flood-filling the air from the grid border. Near the skin the signed distance
is exact (point-to-plane distance to dense surface samples with inside/outside-oriented normals),
so depth images of the phantom have no voxel staircase. Inside, tissue layers follow the skin at
region-dependent depths (``mesh.tissue_maps``); bone, brain, eyes, airways, sinuses, teeth and
spine are placed from the face's own landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ctface.face_model.model import FaceModel
from ctface.geometry import SurfaceSamples, sample_surface
from ctface.phantom.mesh import OUTER_GROUPS, OUTWARD_GROUPS, TissueMaps

GRID_MM = 2.0  # model-frame grid of the distance and tissue fields (exact near the skin)
SAMPLE_MM = 1.2  # surface sample spacing (point-to-plane distance makes this ample)
MARGIN_MM = 16.0  # grid margin around the mesh (room for masks and tubes)
MAX_MAP_DEPTH_MM = 45.0  # tissue maps reach this deep under the skin

HU = {
    "air": -1000.0,
    "skin": 45.0,
    "fat": -95.0,
    "muscle": 48.0,
    "bone": 1350.0,
    "diploe": 650.0,
    "brain": 34.0,
    "white_matter": 27.0,
    "csf": 6.0,
    "vitreous": 12.0,
    "lens": 95.0,
    "orbital_fat": -85.0,
    "tongue": 62.0,
    "tooth": 2400.0,
}


@dataclass(frozen=True)
class Grid:
    """A regular model-frame grid: voxel [a, b, c] has centre origin + step * (a, b, c)."""

    origin: np.ndarray
    step: float
    shape: tuple[int, int, int]

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice]:
        """Index slices of the voxels between two corners (mm), clipped to the grid."""
        i0 = np.clip(np.floor((np.asarray(lo) - self.origin) / self.step), 0, self.shape)
        i1 = np.clip(np.ceil((np.asarray(hi) - self.origin) / self.step) + 1, 0, self.shape)
        a, b, c = (slice(int(x), int(y)) for x, y in zip(i0, i1, strict=True))
        return a, b, c

    def axes(self, box: tuple[slice, ...] | None = None) -> tuple[np.ndarray, ...]:
        """Broadcastable coordinate arrays (mm) of the grid or of a box of it."""
        box = box or tuple(slice(0, n) for n in self.shape)
        return tuple(
            (np.arange(n, dtype=np.float32)[sl] * self.step + o).reshape(
                [-1 if a == i else 1 for a in range(3)]
            )
            for i, (n, o, sl) in enumerate(zip(self.shape, self.origin, box, strict=True))
        )


def ellipsoid_box(
    grid: Grid, c: np.ndarray, r: np.ndarray
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Box around an ellipsoid and the mask of its inside within that box."""
    box = grid.box(c - r, c + r)
    return box, _ellipsoid(grid.axes(box), c, r) < 1


def tube_box(
    grid: Grid, path: np.ndarray, radius: float
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Box around a polyline and the distance (mm) to it within that box."""
    box = grid.box(path.min(0) - radius - 2, path.max(0) + radius + 2)
    return box, polyline_distance(grid.axes(box), path)


@dataclass
class HeadFields:
    """Fields on a regular model-frame grid (index [x, y, z]; origin = centre of voxel 0)."""

    sdf: np.ndarray  # signed distance to the skin, mm, > 0 outside (float32)
    interior_hu: np.ndarray  # HU inside the skin; equals skin HU outside it (float32)
    exterior_hu: np.ndarray | None  # HU outside the skin (devices), None when it is all air
    origin: np.ndarray  # (3,) mm, model frame
    step: float  # mm
    teeth_points: np.ndarray  # (N, 3) model-frame points on the teeth (metal placement)

    @property
    def grid(self) -> Grid:
        a, b, c = self.sdf.shape
        return Grid(self.origin, self.step, (a, b, c))


def _inside_mask(points: np.ndarray, lo: np.ndarray, shape: np.ndarray, h: float) -> np.ndarray:
    idx = np.floor((points - lo) / h + 0.5).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < shape), axis=1)
    shell = np.zeros(tuple(shape), dtype=bool)
    shell[tuple(idx[ok].T)] = True
    shell = ndimage.binary_dilation(shell)
    labels, n = ndimage.label(~shell)
    border = np.concatenate(
        [labels[0].ravel(), labels[-1].ravel(), labels[:, -1].ravel()]
        + [labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]
    )
    is_air = np.zeros(n + 1, dtype=bool)
    is_air[border] = True
    is_air[0] = False
    return ~is_air[labels]


def _neck_cut(points: np.ndarray, lo: np.ndarray, shape: np.ndarray, h: float) -> int:
    """Lowest y index at which the surface forms a closed ring around >= 30 cm^2."""
    idx = np.floor((points - lo) / h + 0.5).astype(np.int64)

    def closed(iy: int) -> bool:
        sl = np.zeros((int(shape[0]), int(shape[2])), dtype=bool)
        sel = idx[:, 1] == iy
        sl[idx[sel, 0], idx[sel, 2]] = True
        sl = ndimage.binary_dilation(sl)
        return bool((ndimage.binary_fill_holes(sl) & ~sl).sum() * h * h > 3000)

    stride = 3  # coarse scan upwards, then step back to the lowest closed level
    for iy in range(0, int(shape[1]) // 3, stride):
        if closed(iy):
            lowest = iy
            for back in range(iy - 1, max(iy - stride, -1), -1):
                if not closed(back):
                    break
                lowest = back
            return lowest
    return 0


def _coarse_sdf(inside: np.ndarray, h: float) -> np.ndarray:
    """Signed distance (mm) from a 2x-coarser EDT, brought back to the grid by linear zoom."""
    c = inside[::2, ::2, ::2]
    d = np.where(
        c,
        -(ndimage.distance_transform_edt(c) - 0.5),
        ndimage.distance_transform_edt(~c) - 0.5,
    ).astype(np.float32) * (2 * h)
    return ndimage.affine_transform(
        d, np.full(3, 0.5), output_shape=inside.shape, order=1, mode="nearest"
    )


def _refine_band(
    sdf: np.ndarray,
    inside: np.ndarray,
    lo: np.ndarray,
    h: float,
    samples: SurfaceSamples,
    outward: np.ndarray,
) -> None:
    """Replace the coarse distance near the skin with the exact point-to-plane distance.

    ``outward`` marks samples whose mesh normal is known to point out of the head (skin:
    checked on the ICT model, no sample disagrees with the flood fill). The others
    (sockets, eyeballs) are oriented by probing the flood-filled mask on both sides, else keep
    the sign of the coarse distance.
    """
    pts, nrm = samples.points, samples.normals
    probe = 1.75 * h  # beyond the sealed (dilated) shell on either side
    look = np.stack([pts + probe * nrm, pts - probe * nrm])
    li = np.clip(np.floor((look - lo) / h + 0.5).astype(np.int64), 0, np.array(sdf.shape) - 1)
    ins = inside[li[..., 0], li[..., 1], li[..., 2]]
    flip = ins[0] & ~ins[1] & ~outward
    clear = (ins[0] != ins[1]) | outward
    nrm = np.where(flip[:, None], -nrm, nrm)
    band = np.argwhere(np.abs(sdf) < 2.5 * h)
    x = band * h + lo
    tree = cKDTree(pts)
    dist, j = tree.query(x, workers=-1, distance_upper_bound=6 * h)
    found = np.isfinite(dist)
    j = np.where(found, j, 0)
    plane = np.einsum("ij,ij->i", x - pts[j], nrm[j])
    coarse = sdf[tuple(band.T)]
    exact = np.where(clear[j], plane, np.sign(coarse) * np.abs(plane))
    sdf[tuple(band[found].T)] = exact[found]


def _triangle_attr(values: np.ndarray, tri: np.ndarray) -> np.ndarray:
    return values[tri].mean(axis=1).astype(np.float32)


def _smooth_step(x: np.ndarray, width: float) -> np.ndarray:
    """0 below -width/2, 1 above +width/2, linear in between (a partial-volume ramp)."""
    out = np.multiply(x, np.float32(1.0 / width), dtype=np.float32)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _ellipsoid(grid: tuple[np.ndarray, ...], c: np.ndarray, r: np.ndarray) -> np.ndarray:
    return (
        ((grid[0] - c[0]) / r[0]) ** 2
        + ((grid[1] - c[1]) / r[1]) ** 2
        + ((grid[2] - c[2]) / r[2]) ** 2
    )


def _segment_distance(grid: tuple[np.ndarray, ...], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = ((grid[0] - a[0]) * ab[0] + (grid[1] - a[1]) * ab[1] + (grid[2] - a[2]) * ab[2]) / (ab @ ab)
    t = np.clip(t, 0, 1)
    return np.sqrt(
        (grid[0] - a[0] - t * ab[0]) ** 2
        + (grid[1] - a[1] - t * ab[1]) ** 2
        + (grid[2] - a[2] - t * ab[2]) ** 2
    )


def polyline_distance(grid: tuple[np.ndarray, ...], path: np.ndarray) -> np.ndarray:
    """Distance (mm) from grid points to a polyline (K, 3)."""
    d = np.full(np.broadcast_shapes(*(g.shape for g in grid)), np.inf, dtype=np.float32)
    for a, b in zip(path[:-1], path[1:], strict=True):
        d = np.minimum(d, _segment_distance(grid, a, b))
    return d


def _solid_part(
    v: np.ndarray, tris: np.ndarray, grid: Grid
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Box and voxels of a small closed-ish part (teeth, tongue): rasterize, seal, fill."""
    pts = sample_surface(v, tris, grid.step * 0.6).points
    box = grid.box(pts.min(0) - 4 * grid.step, pts.max(0) + 4 * grid.step)
    corner = grid.origin + grid.step * np.array([b.start for b in box])
    shape = np.array([b.stop - b.start for b in box])
    idx = np.floor((pts - corner) / grid.step + 0.5).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < shape), axis=1)
    m = np.zeros(tuple(shape), dtype=bool)
    m[tuple(idx[ok].T)] = True
    return box, ndimage.binary_fill_holes(ndimage.binary_dilation(m))


def _upsample2(c: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Nearest-neighbour x2 upsampling of a coarse field (smooth tissue maps only)."""
    out = c.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    return out[: shape[0], : shape[1], : shape[2]]


def _solid_grid(v: np.ndarray, model: FaceModel) -> tuple[Grid, SurfaceSamples]:
    h = GRID_MM
    samples = sample_surface(v, model.triangles[model.group_mask(*OUTER_GROUPS)], SAMPLE_MM)
    head_v = v[model.vertex_group <= 1]
    lo = head_v.min(0) - MARGIN_MM
    shape = np.ceil((head_v.max(0) + MARGIN_MM - lo) / h).astype(np.int64) + 1
    cut = _neck_cut(samples.points, lo, shape, h)
    lo[1] += cut * h
    shape[1] -= cut
    shape += shape % 2  # even, so the 2x-coarse fields map back exactly
    a, b, c = (int(x) for x in shape)
    return Grid(lo.astype(np.float64), h, (a, b, c)), samples


@dataclass(frozen=True)
class _FaceMarks:
    """Landmark positions and head extents (model frame, mm) that place the inner anatomy."""

    lm: np.ndarray  # the 68 landmarks
    eye_r: np.ndarray  # centre of the right eye's landmarks
    eye_y: float  # height of the eyes
    top: float  # vertex
    back: float  # back of the head
    front: float  # nasion depth
    half_w: float  # half the head's width

    @classmethod
    def of(cls, model: FaceModel, vertices: np.ndarray) -> _FaceMarks:
        """The marks of one scan's mesh."""
        lm = vertices[model.landmarks68]
        head_v = vertices[model.vertex_group <= 1]
        eye_r = lm[36:42].mean(0)
        eye_y = float((eye_r[1] + lm[42:48].mean(0)[1]) / 2)
        top, back, front = head_v[:, 1].max(), head_v[:, 2].min(), lm[27][2]
        half_w = (head_v[:, 0].max() - head_v[:, 0].min()) / 2
        return cls(lm, eye_r, eye_y, top, back, front, half_w)

    @property
    def pharynx_z(self) -> float:
        """Depth (z, mm) of the pharynx: 80 mm behind the nose tip."""
        return self.lm[30][2] - 80


def _skin_distance(model: FaceModel, grid: Grid, samples: SurfaceSamples) -> np.ndarray:
    """Signed distance to the skin: solid head by flood fill, coarse EDT, exact near the skin."""
    h, lo, shape = grid.step, grid.origin, grid.shape
    inside = _inside_mask(samples.points, lo, np.array(shape), h)
    sdf = _coarse_sdf(inside, h)
    sample_group = model.triangle_group[model.group_mask(*OUTER_GROUPS)][samples.triangle]
    outward = np.isin(sample_group, [model.group_names.index(g) for g in OUTWARD_GROUPS])
    _refine_band(sdf, inside, lo, h, samples, outward)
    return sdf


def _tissue_depths(
    model: FaceModel,
    maps: TissueMaps,
    samples: SurfaceSamples,
    sdf: np.ndarray,
    grid: Grid,
    habitus: float,
    weight_change_mm: float,
) -> tuple[np.ndarray, ...]:
    """Bone depth, fat fraction and bone presence per voxel, from the nearest skin point's maps."""
    # On the coarse grid, then repeated.
    h, lo, shape = grid.step, grid.origin, grid.shape
    sample_tri = model.triangles[model.group_mask(*OUTER_GROUPS)][samples.triangle]
    gain = _triangle_attr(maps.weight_gain, sample_tri)
    attrs = np.stack(
        [
            _triangle_attr(maps.bone_depth, sample_tri) * (1 + 0.08 * habitus)
            + weight_change_mm * gain,
            _triangle_attr(maps.fat_fraction, sample_tri) * (1 + 0.25 * habitus),
            _triangle_attr(maps.has_bone, sample_tri),
        ],
        axis=1,
    )
    coarse_sdf = sdf[::2, ::2, ::2]
    coarse_idx = np.argwhere((coarse_sdf < 0) & (coarse_sdf > -MAX_MAP_DEPTH_MM))
    _, j = cKDTree(samples.points[::8]).query(coarse_idx * (2 * h) + lo, workers=-1)
    fields = np.zeros((3, *coarse_sdf.shape), dtype=np.float32)
    fields[:] = np.array([6.0, 0.3, 1.0], dtype=np.float32)[:, None, None, None]  # deep inside
    fields[:, coarse_idx[:, 0], coarse_idx[:, 1], coarse_idx[:, 2]] = attrs[::8][j].T
    return tuple(_upsample2(f, shape) for f in fields)


def _soft_tissue_layers(
    depth: np.ndarray, bone_depth: np.ndarray, fat_frac: np.ndarray, h: float
) -> np.ndarray:
    """HU of skin, subcutaneous fat and muscle by depth under the skin."""
    skin_t = 1.6
    fat_depth = skin_t + np.maximum(0.5, fat_frac * np.maximum(bone_depth - skin_t, 0))
    hu = np.full(depth.shape, HU["skin"], dtype=np.float32)
    hu += _smooth_step(depth - skin_t, h) * (HU["fat"] - HU["skin"])
    hu += _smooth_step(depth - fat_depth, h) * (HU["muscle"] - HU["fat"])
    return hu


def _skull_and_brain(
    hu: np.ndarray,
    grid: Grid,
    depth: np.ndarray,
    bone_depth: np.ndarray,
    has_bone: np.ndarray,
    marks: _FaceMarks,
) -> np.ndarray:
    """Skull and facial skeleton (a shell under the skin where the map says bone lies), brain."""
    h, g = grid.step, grid.axes()
    eye_y, top, back, front = marks.eye_y, marks.top, marks.back, marks.front
    cranium_c = np.array([0.0, eye_y + 0.45 * (top - eye_y), (front + back) / 2 - 5])
    cranium_r = np.array([marks.half_w - 6, 0.75 * (top - eye_y), (front - back) / 2 - 2])
    in_cranium = _ellipsoid(g, cranium_c, cranium_r) < 1.0
    in_cranium &= g[1] > eye_y + 6 - 0.35 * np.clip(front - g[2], 0, None)
    bone_t = np.where(in_cranium, 7.0, 3.5).astype(np.float32)
    b_in = _smooth_step(depth - bone_depth, h)
    b_out = _smooth_step(depth - bone_depth - bone_t, h)
    bone_w = (b_in - b_out) * np.clip(has_bone, 0, 1)
    core = _smooth_step(depth - bone_depth - 2.0, h) - _smooth_step(depth - bone_depth - 5.0, h)
    bone_hu = HU["bone"] - np.where(in_cranium, core, 0) * (HU["bone"] - HU["diploe"])
    hu = hu * (1 - bone_w) + bone_w * bone_hu
    brain = in_cranium & (b_out > 0.5) & (has_bone > 0.5)
    csf = _smooth_step(depth - bone_depth - bone_t - 1.5, h)
    hu = np.where(brain, HU["csf"] + csf * (HU["brain"] - HU["csf"]), hu)
    paint = [(cranium_c, cranium_r * 0.7, HU["white_matter"])]
    paint += [
        (cranium_c + np.array([s * 8, 5, 5]), np.array([5.0, 9.0, 22.0]), HU["csf"])
        for s in (-1, 1)
    ]
    for c, r, value in paint:
        box, m = ellipsoid_box(grid, c, r)
        hu[box] = np.where(m & brain[box], value, hu[box])
    return hu


def _eyes(
    hu: np.ndarray, grid: Grid, depth: np.ndarray, model: FaceModel, vertices: np.ndarray
) -> None:
    """Retro-orbital fat, vitreous body and lens of both eyes, written into ``hu``."""
    for name in ("eyeball_left", "eyeball_right"):
        ev = vertices[model.vertex_group == model.group_names.index(name)]
        ec = ev.mean(0)
        er = float(np.median(np.linalg.norm(ev - ec, axis=1)))
        eye_parts = [
            (ec + np.array([0, 0, -0.7 * er]), np.array([1.15, 1.1, 1.4]) * er, HU["orbital_fat"]),
            (ec, np.full(3, er - 0.8), HU["vitreous"]),
            (ec + np.array([0, 0, 0.72 * er]), np.array([4.5, 4.5, 2.0]), HU["lens"]),
        ]
        for c2, r2, value in eye_parts:
            box, m = ellipsoid_box(grid, c2, r2)
            hu[box] = np.where(m & (depth[box] > 0.8), value, hu[box])


def _airways(hu: np.ndarray, grid: Grid, depth: np.ndarray, marks: _FaceMarks) -> None:
    """Nasal airway, maxillary and frontal sinuses, pharynx and trachea (deep inside only)."""
    lm, lo, eye_y = marks.lm, grid.origin, marks.eye_y
    nose_tip, sub, chin = lm[30], lm[33], lm[8]
    pharynx_z = marks.pharynx_z
    airs: list[tuple[tuple[slice, slice, slice], np.ndarray, float]] = []
    for s_ in (-1.0, 1.0):
        nostril = sub + np.array([s_ * 6.0, 2.0, -4.0])
        naso = np.array([s_ * 6.0, sub[1] + 14, nose_tip[2] - 75])
        box, d = tube_box(grid, np.stack([nostril, naso]), 4.5)
        airs.append((box, d < 4.5, 2.5))
        sinus_c = np.array([s_ * 27.0, (eye_y + sub[1]) / 2 - 2, marks.eye_r[2] - 18])
        airs.append((*ellipsoid_box(grid, sinus_c, np.array([11.0, 14.0, 16.0])), 5.0))
    frontal_c = np.array([0.0, lm[21][1] + 14, marks.front - 19])
    airs.append((*ellipsoid_box(grid, frontal_c, np.array([16.0, 9.0, 5.0])), 5.0))
    trachea = np.array(
        [
            [0.0, sub[1] + 12, pharynx_z],
            [0.0, chin[1] - 10, pharynx_z - 4],
            [0, lo[1] - 5, pharynx_z + 8],
        ]
    )
    box, d = tube_box(grid, trachea, 8.0)
    airs.append((box, d < 8.0, 8.0))
    for box, m, min_depth in airs:
        hu[box] = np.where(m & (depth[box] > min_depth), HU["air"], hu[box])


def _cervical_spine(hu: np.ndarray, grid: Grid, depth: np.ndarray, marks: _FaceMarks) -> None:
    """A column of vertebral bone behind the pharynx, up to the skull base."""
    pharynx_z, lo = marks.pharynx_z, grid.origin
    spine = np.array([[0.0, marks.eye_y - 45, pharynx_z - 22], [0.0, lo[1] - 5, pharynx_z - 18]])
    box, d = tube_box(grid, spine, 9.0)
    hu[box] = np.where((d < 9.0) & (depth[box] > 10), 700.0, hu[box])


def _mouth(hu: np.ndarray, grid: Grid, model: FaceModel, vertices: np.ndarray) -> None:
    """Tongue and teeth inside the mouth."""
    for group, value in (("gums_tongue", HU["tongue"]), ("teeth", HU["tooth"])):
        box, m = _solid_part(vertices, model.triangles[model.group_mask(group)], grid)
        hu[box] = np.where(m, value, hu[box])


def build_head(
    model: FaceModel,
    maps: TissueMaps,
    vertices: np.ndarray,
    *,
    habitus: float,
    weight_change_mm: float,
    rng: np.random.Generator,
) -> HeadFields:
    """Solid head fields for one scan's mesh (vertices already carry expression and weight)."""
    grid, samples = _solid_grid(vertices, model)
    sdf = _skin_distance(model, grid, samples)
    bone_depth, fat_frac, has_bone = _tissue_depths(
        model, maps, samples, sdf, grid, habitus, weight_change_mm
    )
    depth = -sdf
    hu = _soft_tissue_layers(depth, bone_depth, fat_frac, grid.step)
    marks = _FaceMarks.of(model, vertices)
    hu = _skull_and_brain(hu, grid, depth, bone_depth, has_bone, marks)
    _eyes(hu, grid, depth, model, vertices)
    _airways(hu, grid, depth, marks)
    _cervical_spine(hu, grid, depth, marks)
    _mouth(hu, grid, model, vertices)
    teeth_pts = vertices[model.vertex_group == model.group_names.index("teeth")]

    hu = np.where(depth < 0, HU["skin"], hu)
    jitter = rng.normal(0, 4.0)  # scanner/patient calibration offset
    return HeadFields(
        sdf=sdf.astype(np.float32),
        interior_hu=(hu + jitter).astype(np.float32),
        exterior_hu=None,
        origin=grid.origin,
        step=grid.step,
        teeth_points=teeth_pts.astype(np.float64),
    )
