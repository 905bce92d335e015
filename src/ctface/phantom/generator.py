"""One synthetic head CT: mesh for (subject, scan) -> solid head -> devices -> acquisition.

Public API: ``PhantomScan`` (volume + ground truth) and ``synthesize_scan``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctface.face_model import FaceModel, five_landmarks
from ctface.ingest.volume import LPS_TO_RAS, CtVolume
from ctface.phantom import devices
from ctface.phantom.anatomy import build_head
from ctface.phantom.mesh import TissueMaps, vertex_normals
from ctface.phantom.params import ScanParams, SubjectParams
from ctface.phantom.scanner import acquire, fov_radius_mm, place_head, slice_range

GENERATOR_VERSION = "1.0"


@dataclass
class PhantomScan:
    """A synthetic CT with everything known about it."""

    volume: CtVolume
    subject: SubjectParams
    scan: ScanParams
    truth: dict[str, Any]


def scan_vertices(
    model: FaceModel, maps: TissueMaps, subject: SubjectParams, scan: ScanParams
) -> np.ndarray:
    """Mesh of this person in this scan: identity, expression, weight change, head size (mm)."""
    expr = np.zeros(len(model.expression_names), dtype=np.float32)
    for name, w in scan.expression.items():
        expr[model.expression_index(name)] = w
    v = model.vertices(subject.identity, expr)
    skin = model.vertex_group <= 1
    n = vertex_normals(v, model.triangles[model.group_mask("face", "head_neck")])
    centre = (v[skin].min(0) + v[skin].max(0)) / 2
    outward = np.sign(np.einsum("ij,ij->i", n, v - centre))[:, None]
    shift = scan.weight_change_mm * maps.weight_gain[:, None] * n * outward
    v = v + np.where(skin[:, None], shift, 0).astype(np.float32)
    return (v * subject.head_scale).astype(np.float32)


def synthesize_scan(
    model: FaceModel,
    maps: TissueMaps,
    subject: SubjectParams,
    scan: ScanParams,
    rng: np.random.Generator,
    progress: Callable[[int, int], None] | None = None,
) -> PhantomScan:
    """Generate one CT volume and its ground truth (landmarks in patient LPS and RAS mm)."""
    v = scan_vertices(model, maps, subject, scan)
    head = build_head(
        model, maps, v, habitus=subject.habitus, weight_change_mm=scan.weight_change_mm, rng=rng
    )
    lm68 = v[model.landmarks68].astype(np.float64)
    device_info: dict[str, Any] = {}
    if scan.mask:
        device_info["mask"] = devices.add_mask(head, lm68, rng)
    if scan.tube != "none":
        device_info["tube"] = devices.add_tube(head, scan.tube, scan.tube_side, lm68)
    head_v = v[model.vertex_group <= 1]
    place = place_head(scan, head_v, lm68[30])
    neck_y = float(head.origin[1])
    z0, n = slice_range(scan, place, head_v, lm68, neck_y)
    metal = np.zeros((0, 3))
    if scan.dental_metal:
        teeth = head.teeth_points
        metal = teeth[rng.choice(len(teeth), size=scan.dental_metal, replace=False)]
    vol = acquire(head, scan, place, z0, n, metal, rng, progress)
    five = {k: place.apply(p)[0] for k, p in five_landmarks(model, v).items()}
    lm_lps = place.apply(lm68)
    top = vol.ijk_to_lps(np.array([0, 0, vol.hu.shape[0] - 1]))[0, 2]
    bottom = vol.ijk_to_lps(np.array([0, 0, 0]))[0, 2]

    def entry(p: np.ndarray) -> dict[str, Any]:
        ras = (LPS_TO_RAS[:3, :3] @ p).tolist()
        in_circle = np.hypot(*(p[:2] - np.array(scan.fov_offset_mm))) < fov_radius_mm(scan)
        inside = bool(bottom - 0.5 <= p[2] <= top + 0.5 and in_circle)
        return {
            "lps": [round(x, 3) for x in p.tolist()],
            "ras": [round(x, 3) for x in ras],
            "in_fov": inside,
        }

    truth: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "subject_id": subject.subject_id,
        "scan_id": scan.scan_id,
        "subject": subject.to_json(),
        "scan": scan.to_json(),
        "devices": device_info,
        "metal_lps": [[round(x, 2) for x in p] for p in place.apply(metal).tolist()]
        if len(metal)
        else [],
        "pose": {
            "model_to_lps_rotation": place.rotation.round(6).tolist(),
            "model_to_lps_translation_mm": place.translation.round(4).tolist(),
        },
        "landmarks": {k: entry(p) for k, p in five.items()},
        "landmarks68": [entry(p) for p in lm_lps],
        "geometry": {
            "shape_kji": list(vol.hu.shape),
            "spacing_ijk_mm": list(vol.spacing),
            "affine_lps": vol.affine_lps.round(6).tolist(),
        },
    }
    return PhantomScan(volume=vol, subject=subject, scan=scan, truth=truth)
