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
from ctface.phantom import devices, extras, heldout
from ctface.phantom.anatomy import HeadFields, build_head
from ctface.phantom.mesh import TissueMaps, vertex_normals
from ctface.phantom.params import GeneratorStyle, ScanParams, SubjectParams
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


def dress_head(
    head: HeadFields, lm68: np.ndarray, scan: ScanParams, rng: np.random.Generator
) -> dict[str, Any]:
    """Put the scan's devices on the head (standard designs use ``rng`` as before; the
    domain-randomization and held-out designs were drawn into ``scan``)."""
    held = scan.style == GeneratorStyle.HELDOUT.value
    extra = scan.extra_devices
    if held:
        heldout.shift_tissue_hu(head, scan.heldout)
    device_info: dict[str, Any] = extras.add_surface_extras(head, lm68, extra, scan.extra_seed)
    if scan.mask and (held or "mask_variant" in extra):
        rng.random(5)  # the standard mask's draws, so that a scan whose standard draw had a
        #                mask keeps its noise and metal (one given a mask by a variant does not)
    if scan.mask and held:
        device_info["mask"] = heldout.add_full_mask(head, lm68, scan.heldout["mask"])
    elif scan.mask and "mask_variant" in extra:
        device_info["mask"] = extras.add_mask_variant(head, lm68, extra["mask_variant"])
    elif scan.mask:
        device_info["mask"] = devices.add_mask(head, lm68, rng)
    device_info.update(extras.add_object_extras(head, lm68, extra, held))
    if held and "bite_block" in extra:
        device_info["bite_block"] = heldout.add_ring_bite_block(
            head, lm68, scan.heldout["bite_block"]
        )
    if scan.tube == "endotracheal" and held:
        device_info["tube"] = heldout.add_long_et(head, lm68, scan.heldout["et"])
    elif scan.tube == "endotracheal" and "et_connector" in extra:
        device_info["tube"] = extras.add_et_connector(head, lm68, extra["et_connector"])
    elif scan.tube != "none":
        device_info["tube"] = devices.add_tube(head, scan.tube, scan.tube_side, lm68)
    return device_info


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
    neck_y = float(head.origin[1])  # before devices may grow the grid
    device_info = dress_head(head, lm68, scan, rng)
    head_v = v[model.vertex_group <= 1]
    place = place_head(scan, head_v, lm68[30])
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
