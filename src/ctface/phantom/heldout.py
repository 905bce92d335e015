"""The held-out generator style (``GeneratorStyle.HELDOUT``, issue 16): for testing only.

Same identities and anatomy as the standard generator, but other appearance and acquisition
models and device designs that no training configuration draws:

* skin/fat: dermis and subcutaneous fat HU shifted, wider in-plane blur (partial volume);
* noise: spatially correlated (smooth or sharp reconstruction-kernel shaped) instead of white;
* dental metal: fan of many thin rays plus dark bands between metal pieces;
* geometry: fields of view off centre by up to 25 mm (``params.draw_heldout``); gantry tilt is
  not modelled (a first version added it to the head's pitch, but a reader that applies the
  tilt, as ctface's does, sees the head in its true pose: it doubled the pose range instead);
* devices: an ET tube with connector and a 22 mm ventilator hose, 8-15 cm out of the mouth in
  all (tube and connector are within the ranges of the training design ``et_connector``; the
  hose is what no training design has), a full-head mask with a cut-out where the head rests, a
  Guedel-like ring bite block.

This is our own second configuration, written knowing the failures seen on an independent
generator; it is a harder test, not truly independent data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ctface.phantom.anatomy import HeadFields
from ctface.phantom.devices import _exterior, mask_distance
from ctface.phantom.extras import (
    CONNECTOR_R,
    LIP_TUBE,
    ensure_room,
    et_inner_path,
    hollow_tube,
    mouth_frame,
    paint,
)

Design = dict[str, Any]


def shift_tissue_hu(head: HeadFields, held: Design) -> None:
    """Other dermis HU (within 2.5 mm of the skin, and the skin value the partial volume mixes
    with outside) and other subcutaneous fat HU."""
    hu = head.interior_hu
    fat = (hu > -150) & (hu < -50)
    hu[fat] += held["fat_shift_hu"]
    hu[head.sdf > -2.5] += held["dermis_shift_hu"]


def add_long_et(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """ET tube straight out of the mouth, its 15 mm connector and a 22 mm ventilator hose:
    8-15 cm in front of the lips in all, then the hose drops away to one side."""
    path = et_inner_path(lm, d["side"])
    exit_ = path[-1]
    fwd = np.array([0.0, 0.0, 1.0])
    tube_end = exit_ + d["tube_mm"] * fwd
    conn_end = tube_end + d["connector_mm"] * fwd
    hose_end = exit_ + d["total_mm"] * fwd
    a = np.radians(d["hose_drop_deg"])
    turn = hose_end + 50 * np.array([d["side"] * 0.5, -np.sin(a), np.cos(a)])
    hose = np.array([conn_end - 5 * fwd, hose_end, turn])
    ensure_room(head, np.minimum(path.min(0), hose.min(0)) - 15,
                np.maximum(hose.max(0), turn) + 15)  # fmt: skip
    hollow_tube(head, np.vstack([path, tube_end]), LIP_TUBE["outer_r"], LIP_TUBE["wall"],
                LIP_TUBE["hu"])  # fmt: skip
    hollow_tube(head, np.array([tube_end - 5 * fwd, conn_end]), CONNECTOR_R, 2.0, 350.0, False)
    hollow_tube(head, hose, d["hose_radius_mm"], 1.2, d["hose_hu"], inside=False)
    return d


def add_full_mask(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """Full-head thermoplastic mask: wraps face, sides and vertex, open at the back where the
    head rests (cut-out), perforated by round holes on a square lattice."""
    h = head.step
    dist = mask_distance(head, 8.0)
    g = head.grid.axes()
    inside_z = np.flatnonzero((head.sdf < 0).any(axis=(0, 1)))
    back = head.origin[2] + h * (inside_z[0] if len(inside_z) else 0)
    p, r = d["hole_pitch_mm"], d["hole_radius_mm"]
    lattice = sum((gi - p * np.round(gi / p)) ** 2 for gi in g)
    t = d["thickness_mm"]
    sheet = np.clip(1 - np.abs(dist - d["gap_mm"] - t / 2) / (t / 2 + h / 2), 0, 1)
    keep = (lattice > r**2) & (g[2] > back + d["cutout_mm"]) & (g[1] > lm[8][1] - 25)
    ext = _exterior(head)
    ext += sheet * keep * (head.sdf > 0) * (150.0 + 1000.0)
    return d


def add_ring_bite_block(head: HeadFields, lm: np.ndarray, d: Design) -> Design:
    """Guedel-like bite block: a ring (air channel) between the teeth and a flat flange at the
    lips."""
    mouth, lip = mouth_frame(lm)
    fw, fh = d["flange_mm"]
    lo = np.array([-fw / 2, mouth[1] - fh / 2, lip - d["depth_mm"]]) - 3
    hi = np.array([fw / 2, mouth[1] + fh / 2, lip + 4]) + 3
    box = head.grid.box(lo, hi)
    g = head.grid.axes(box)
    rad = np.sqrt(g[0] ** 2 + ((g[1] - mouth[1]) * 1.3) ** 2)
    ring = (rad < d["outer_r_mm"]) & (rad > d["inner_r_mm"]) & (g[2] > lip - d["depth_mm"])
    ring &= g[2] < lip
    flange = (np.abs(g[0]) < fw / 2) & (np.abs(g[1] - mouth[1]) < fh / 2)
    flange = flange & (g[2] >= lip) & (g[2] < lip + 3) & (rad > d["inner_r_mm"])
    paint(head, box, (ring | flange).astype(np.float32), d["hu"], inside=True)
    return d


def blur_slab(slab: np.ndarray, held: Design) -> np.ndarray:
    """Wider in-plane blur (a smoother partial-volume / reconstruction model)."""
    return ndimage.gaussian_filter(slab, (0, held["blur_px"], held["blur_px"]))


def correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], held: Design) -> np.ndarray:
    """Unit-SD noise with a reconstruction-kernel texture: low-pass ("smooth" kernel) or
    high-pass ("sharp" kernel) filtered white noise."""
    n = rng.standard_normal(shape, dtype=np.float32)
    s = held["kernel_sigma_px"]
    low = ndimage.gaussian_filter(n, (0, s, s))
    out = low if held["kernel"] == "smooth" else n - low
    return out / max(float(out.std()), 1e-6)


def metal_streaks(
    xy: tuple[np.ndarray, np.ndarray], metal: np.ndarray, rng: np.random.Generator, rays: int
) -> np.ndarray:
    """Held-out streak model: a fan of thin bright/dark rays from each metal piece, decaying
    slowly, and dark bands along the lines joining metal pieces (beam hardening)."""
    x, y = xy
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.float32)
    for m in metal:
        dx, dy = x - m[0], y - m[1]
        r = np.sqrt(dx**2 + dy**2) + 1e-3
        for ang in rng.uniform(0, np.pi, rays):
            perp = np.abs(dx * np.sin(ang) - dy * np.cos(ang))
            amp = rng.uniform(100, 400) * rng.choice([-1.0, 1.0])
            out += amp * np.exp(-(perp**2) / (2 * 0.6**2)) * (25.0 / (r + 25.0))
    for i in range(len(metal)):
        for j in range(i + 1, len(metal)):
            a, b = metal[i, :2], metal[j, :2]
            ab = b - a
            t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1]) / max(ab @ ab, 1e-6), 0, 1)
            d = np.hypot(x - a[0] - t * ab[0], y - a[1] - t * ab[1])
            out -= rng.uniform(300, 700) * np.exp(-(d**2) / (2 * 2.5**2))
    for m in metal:
        out[np.hypot(x - m[0], y - m[1]) < 1.8] = 3071.0
    return out
