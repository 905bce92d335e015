"""Domain-randomization devices (issue 16): more kinds of things on and around the face.

Each ``add_*`` models one thing seen on real head CTs, from a design dict drawn in
``params.draw_extra_devices`` (recorded in the scan's JSON). Like ``devices``, they live in the
head's model frame (+x face's left, +y up, +z anterior) and write ``HeadFields.exterior_hu``
(outside the skin) and, for things in the mouth, ``interior_hu``. Random textures (hair, beard,
skin bumps) come from the scan's side stream (``ScanParams.extra_seed``), never from the
generator's main stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ctface.phantom.anatomy import HeadFields, tube_box
from ctface.phantom.devices import _exterior, mask_distance, mask_sheet

Design = dict[str, Any]
LIP_TUBE = dict(outer_r=5.5, wall=1.3, hu=110.0)  # the ET tube itself (PVC), as in devices
CONNECTOR_R = 7.5  # 15 mm ET connector


def _texture(seed: int, salt: int, shape: tuple[int, ...], corr_vox: float) -> np.ndarray:
    """Smooth Gaussian random field with unit SD (side stream ``[seed, 17, salt]``)."""
    rng = np.random.default_rng([seed, 17, salt])
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), corr_vox)
    return f / max(float(f.std()), 1e-6)


def paint(head: HeadFields, box: tuple[slice, ...], w: np.ndarray, hu: Any,
          inside: bool = False) -> None:  # fmt: skip
    """Blend ``hu`` with weight ``w`` into the box: outside the skin, and inside it too when
    ``inside`` (things in the mouth)."""
    ext = _exterior(head)
    w = np.asarray(w, dtype=np.float32)
    out = w * (head.sdf[box] > 0)
    ext[box] = ext[box] * (1 - out) + hu * out
    if inside:
        head.interior_hu[box] = head.interior_hu[box] * (1 - w) + hu * w


def rod(head: HeadFields, path: np.ndarray, r: float, hu: float, inside: bool = False) -> None:
    """A solid rod of radius ``r`` along a polyline (glasses frame, strap edges)."""
    box, d = tube_box(head.grid, path, r)
    paint(head, box, np.clip((r + head.step / 2 - d) / head.step, 0, 1), hu, inside)


def hollow_tube(head: HeadFields, path: np.ndarray, outer_r: float, wall: float, hu: float,
                inside: bool = True) -> None:  # fmt: skip
    """Tube wall of ``hu`` with an air lumen along a polyline (as ``devices.add_tube``)."""
    h = head.step
    box, d = tube_box(head.grid, path, outer_r)
    w = np.clip((outer_r + h / 2 - d) / h, 0, 1)
    lumen = np.clip((outer_r - wall + h / 2 - d) / h, 0, 1)
    value = hu * (w - lumen) - 1000.0 * lumen
    ext = _exterior(head)
    ext[box] = ext[box] * (1 - w) + value
    if inside:
        head.interior_hu[box] = head.interior_hu[box] * (1 - w) + value


def ensure_room(head: HeadFields, lo: np.ndarray, hi: np.ndarray) -> None:
    """Grow the head's grid so that the box [lo, hi] (mm) fits (long tubes, hoses)."""
    h, shape = head.step, np.array(head.sdf.shape)
    top = head.origin + (shape - 1) * h
    before = np.clip(np.ceil((head.origin - np.asarray(lo)) / h), 0, 150).astype(int)
    after = np.clip(np.ceil((np.asarray(hi) - top) / h), 0, 150).astype(int)
    if not (before.any() or after.any()):
        return
    pad = [(int(a), int(b)) for a, b in zip(before, after, strict=True)]
    head.sdf = np.pad(head.sdf, pad, constant_values=1000.0)
    head.interior_hu = np.pad(head.interior_hu, pad, mode="edge")
    if head.exterior_hu is not None:
        head.exterior_hu = np.pad(head.exterior_hu, pad, constant_values=-1000.0)
    head.origin = head.origin - before * h


def mouth_frame(lm: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of the mouth opening and the z (mm) of the lips' front."""
    return (lm[62] + lm[66]) / 2, float(max(lm[51][2], lm[57][2]))


def et_inner_path(lm: np.ndarray, side: int) -> np.ndarray:
    """ET tube from the trachea to the lips (the inner part of ``devices.tube_path``)."""
    nose, chin = lm[30], lm[8]
    mouth, lip = mouth_frame(lm)
    s = float(side)
    return np.array([
        [0.0, chin[1] - 60, nose[2] - 75],
        [0.0, mouth[1] - 8, nose[2] - 72],
        [s * 2, mouth[1] - 2, mouth[2] - 30],
        [s * 3, mouth[1], lip],
    ])  # fmt: skip


def add_et_connector(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """ET tube standing 3-9 cm out of the lips, straight (slightly up or down) or taped to
    one side along the cheek, ending in a 15 mm connector of denser plastic."""
    path = et_inner_path(lm, d["side"])
    exit_, s, L = path[-1], float(d["side"]), d["protrude_mm"]
    if d["taped"]:
        out = [exit_ + [s * 8, -2, 10], exit_ + [s * 0.75 * L, -0.25 * L, 0.45 * L]]
    else:
        a = np.radians(d["angle_deg"])
        out = [exit_ + L * np.array([0.0, np.sin(a), np.cos(a)])]
    path = np.vstack([path, out])
    step = path[-1] - path[-2]
    conn = np.array([path[-1], path[-1] + d["connector_mm"] * step / np.linalg.norm(step)])
    ensure_room(head, np.minimum(path.min(0), conn.min(0)) - 12,
                np.maximum(path.max(0), conn.max(0)) + 12)  # fmt: skip
    hollow_tube(head, path, LIP_TUBE["outer_r"], LIP_TUBE["wall"], LIP_TUBE["hu"])
    hollow_tube(head, conn, CONNECTOR_R, 2.0, d["connector_hu"], inside=False)
    return {**d, "end_mm": [round(float(x), 1) for x in conn[-1]]}


def _rounded_box(g: tuple[np.ndarray, ...], c: np.ndarray, half: np.ndarray, h: float,
                 round_mm: float = 2.0) -> np.ndarray:  # fmt: skip
    q = [np.maximum(np.abs(g[i] - c[i]) - (half[i] - round_mm), 0) for i in range(3)]
    dist = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) - round_mm
    return np.clip(0.5 - dist / h, 0, 1)


def add_bite_block(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """A plastic bite block (~25 mm wide) held between the teeth, its front at the lips."""
    mouth, lip = mouth_frame(lm)
    half = np.array([d["width_mm"], d["height_mm"], d["depth_mm"]]) / 2
    c = np.array([0.0, mouth[1], lip + 4 - half[2]])
    box = head.grid.box(c - half - 3, c + half + 3)
    paint(head, box, _rounded_box(head.grid.axes(box), c, half, head.step), d["hu"], True)
    return d


def _face_openings(g: tuple[np.ndarray, ...], lm: np.ndarray) -> np.ndarray:
    """Openings of an open-face mask (front view): both eyes, the nose, the mouth."""
    mouth, _ = mouth_frame(lm)
    half_mouth = abs(lm[54][0] - lm[48][0]) / 2 + 10
    spots = [(lm[36:42].mean(0), (22.0, 16.0)), (lm[42:48].mean(0), (22.0, 16.0)),
             (np.array([lm[30][0], (lm[27][1] + lm[33][1]) / 2]),
              (20.0, (lm[27][1] - lm[33][1]) / 2 + 8)),
             (mouth, (half_mouth, 14.0))]  # fmt: skip
    hole = np.zeros(np.broadcast_shapes(g[0].shape, g[1].shape), dtype=bool)
    for c, (rx, ry) in spots:
        hole |= ((g[0] - c[0]) / rx) ** 2 + ((g[1] - c[1]) / ry) ** 2 < 1
    return hole


def add_mask_variant(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """Thermoplastic mask of another make: open-face (eyes, nose, mouth free) and/or a thick
    3-4 mm sheet, its edges at other heights on chin and forehead."""
    dist = mask_distance(head, d["bridge_radius_mm"])
    g = head.grid.axes()
    front = g[2] > (lm[0][2] + lm[16][2]) / 2 - 5
    span = (g[1] > lm[8][1] + d["chin_edge_mm"]) & (g[1] < lm[19][1] + d["top_edge_mm"])
    sheet = mask_sheet(head, dist, g, d["gap_mm"], d["thickness_mm"], d["hole_pitch_mm"],
                       d["hole_radius_mm"]) * front * span  # fmt: skip
    if d["open_face"]:
        sheet = sheet * ~_face_openings(g, lm)
    ext = _exterior(head)
    ext += sheet * (180.0 + 1000.0)
    return d


def _shell(head: HeadFields, thickness: np.ndarray | float) -> np.ndarray:
    """Weight of a layer lying on the skin, ``thickness`` mm thick (partial volume ramps)."""
    h = head.step
    return np.clip(0.5 + head.sdf / h, 0, 1) * np.clip(0.5 + (thickness - head.sdf) / h, 0, 1)


def add_blanket(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """A blanket or sheet drawn up over the neck to the chin, lying in folds."""
    g = head.grid.axes()
    fold = d["fold_mm"] * np.abs(np.sin(2 * np.pi * g[0] / d["fold_period_mm"] + d["phase"]))
    w = _shell(head, d["thickness_mm"] + fold)
    w = w * (g[1] < lm[8][1] + d["top_mm"]) * (g[2] > (lm[0][2] + lm[16][2]) / 2 - 10)
    paint(head, tuple(slice(None) for _ in range(3)), w, d["hu"])
    return d


def _lateral_edge(head: HeadFields, y: float, z: float, side: int) -> float:
    """x (mm) of the skin on one side of the head at height y, near depth z."""
    g = head.grid
    j = int(np.clip(round((y - g.origin[1]) / g.step), 0, g.shape[1] - 1))
    k0 = int(np.clip(round((z - 20 - g.origin[2]) / g.step), 0, g.shape[2] - 1))
    k1 = int(np.clip(round((z + 20 - g.origin[2]) / g.step), k0 + 1, g.shape[2]))
    xs = np.flatnonzero((head.sdf[:, j, k0:k1] < 0).any(axis=1))
    if len(xs) == 0:
        return float(side * 70.0)
    return float(g.origin[0] + g.step * (xs[-1] if side > 0 else xs[0]))


def add_pillow(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """A positioning pad (foam ~-800 HU or gel ~0-50 HU) pressed against the cheek and side of
    the head; it fills the space up to the skin."""
    s, r = d["side"], np.array(d["radii_mm"])
    y, z = lm[0][1] + d["dy_mm"], lm[0][2] + d["dz_mm"]
    edge = _lateral_edge(head, y, z, s)
    c = np.array([edge + s * (r[0] - d["indent_mm"]), y, z])
    box = head.grid.box(c - r, c + r)
    g = head.grid.axes(box)
    e = sum(((g[i] - c[i]) / r[i]) ** 4 for i in range(3))  # a blocky pad, rounded edges
    paint(head, box, np.clip((1 - e) * r.min() / (4 * head.step), 0, 1), d["hu"])
    return d


def add_strap(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """A head-holder strap (fabric/Velcro) across the forehead, running round to the holder."""
    g = head.grid.axes()
    y0 = lm[19][1] + d["above_brow_mm"]
    yy = g[1] - y0 - np.tan(np.radians(d["tilt_deg"])) * (g[2] - lm[27][2])
    band = np.clip(0.5 + (d["width_mm"] / 2 - np.abs(yy)) / head.step, 0, 1)
    w = _shell(head, d["thickness_mm"]) * band * (g[2] > (lm[0][2] + lm[16][2]) / 2 - 30)
    paint(head, tuple(slice(None) for _ in range(3)), w, d["hu"])
    return d


def _hairy(head: HeadFields, w: np.ndarray, d: Design, seed: int, salt: int) -> None:
    """Paint a layer of strands and air: HU varies around ``hu`` by ``hu_sd`` (smooth field),
    partly denser than the -350 HU skin threshold."""
    tex = _texture(seed, salt, head.sdf.shape, d.get("corr_mm", 4.0) / head.step)
    hu = np.clip(d["hu"] + d["hu_sd"] * tex, -980.0, 50.0)
    paint(head, tuple(slice(None) for _ in range(3)), w * (tex > -1.5), hu)


def add_hair(head: HeadFields, lm: np.ndarray, d: Design, seed: int) -> Design:
    """Hair on the scalp, down to a hairline on the forehead (a fringe when low)."""
    g = head.grid.axes()
    ear_z = (lm[0][2] + lm[16][2]) / 2
    front = np.clip((g[2] - ear_z) / 30 + 0.5, 0, 1)  # 0 behind the ears, 1 at the forehead
    line = lm[19][1] + d["hairline_mm"] * front + (lm[0][1] - 10 - lm[19][1]) * (1 - front)
    tex = _texture(seed, 1, head.sdf.shape, 6.0 / head.step)
    w = _shell(head, d["thickness_mm"] * (0.7 + 0.3 * np.tanh(tex))) * (g[1] > line)
    _hairy(head, w, d, seed, 2)
    return d


def add_beard(head: HeadFields, lm: np.ndarray, d: Design, seed: int) -> Design:
    """Beard (jaw and chin below the lower lip) and/or moustache (over the upper lip)."""
    g = head.grid.axes()
    region = np.zeros(head.sdf.shape, dtype=bool)
    if d["beard"]:
        region |= (g[1] < lm[57][1] - 2) & (g[1] > lm[8][1] - 35) & (g[2] > lm[0][2] - 5)
    if d["moustache"]:
        half = abs(lm[54][0] - lm[48][0]) / 2 + 8
        region |= ((g[1] > lm[51][1] + 1) & (g[1] < lm[33][1] - 1) & (np.abs(g[0]) < half)
                   & (g[2] > lm[33][2] - 25))  # fmt: skip
    _hairy(head, _shell(head, d["thickness_mm"]) * region, {**d, "corr_mm": 2.5}, seed, 3)
    return d


def _ellipse(c: np.ndarray, rx: float, ry: float, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n + 1)
    return np.stack([c[0] + rx * np.cos(t), c[1] + ry * np.sin(t), np.full_like(t, c[2])], 1)


def add_glasses(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """Glasses: metal/plastic frame (+300..+1000 HU) with lenses, in front of the eyes, and
    temples running back to the ears."""
    z = float(max(lm[36:48, 2].max(), lm[27][2] - 5)) + d["offset_mm"]
    rw, rh, fr = d["rim_w_mm"], d["rim_h_mm"], d["frame_r_mm"]
    eyes = [np.array([*lm[a : a + 6, :2].mean(0), z]) for a in (36, 42)]
    for c in eyes:
        box = head.grid.box(c - [rw, rh, 3], c + [rw, rh, 3])
        g = head.grid.axes(box)
        disc = ((g[0] - c[0]) / rw) ** 2 + ((g[1] - c[1]) / rh) ** 2 < 1
        paint(head, box, disc * np.clip(0.5 + (d["lens_mm"] / 2 - np.abs(g[2] - z)) / head.step,
                                        0, 1), d["lens_hu"])  # fmt: skip
        rod(head, _ellipse(c, rw, rh), fr, d["frame_hu"])
        s = np.sign(c[0]) or 1.0
        ear = np.array([s * (abs(lm[16 if s > 0 else 0][0]) + 4), c[1] + 3, lm[0][2] - 15])
        rod(head, np.array([c + [s * rw, 0.3 * rh, 0], ear]), fr, d["frame_hu"])
    bridge = np.array([eyes[0] + [rw, 0.3 * rh, 0], [0, eyes[0][1] + 0.5 * rh, z + 2],
                       eyes[1] - [rw, -0.3 * rh, 0]])  # fmt: skip
    rod(head, bridge, fr, d["frame_hu"])
    return d


def add_skin_bumps(head: HeadFields, d: Design, seed: int) -> Design:
    """Small random displacements of the skin (wrinkles, swelling, skin folds, dressings)."""
    tex = _texture(seed, 4, head.sdf.shape, d["corr_mm"] / head.step)
    near = np.clip(1 - np.abs(head.sdf) / 8.0, 0, 1)  # only the skin moves
    head.sdf = (head.sdf + d["amplitude_mm"] * tex * near).astype(np.float32)
    return d


def add_surface_extras(head: HeadFields, lm: np.ndarray, extra: dict[str, Design],
                       seed: int) -> dict[str, Design]:  # fmt: skip
    """Skin bumps, hair, beard (before masks: they lie under them)."""
    info: dict[str, Design] = {}
    if "skin_bumps" in extra:
        info["skin_bumps"] = add_skin_bumps(head, extra["skin_bumps"], seed)
    if "hair" in extra:
        info["hair"] = add_hair(head, lm, extra["hair"], seed)
    if "beard" in extra:
        info["beard"] = add_beard(head, lm, extra["beard"], seed)
    return info


def add_object_extras(head: HeadFields, lm: np.ndarray, extra: dict[str, Design],
                      held_out: bool) -> dict[str, Design]:  # fmt: skip
    """Glasses, strap, blanket, pillow and (standard style) the bite block."""
    info: dict[str, Design] = {}
    for name, fn in (("glasses", add_glasses), ("strap", add_strap), ("blanket", add_blanket),
                     ("pillow", add_pillow)):  # fmt: skip
        if name in extra:
            info[name] = fn(head, lm, extra[name])
    if "bite_block" in extra and not held_out:
        info["bite_block"] = add_bite_block(head, lm, extra["bite_block"])
    return info
