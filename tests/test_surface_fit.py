"""Face-model fit to the CT skin: landmarks from a rough frame, and no face -> NoFaceError."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import FACE_MODEL, needs_face_model

from ctface.errors import NoFaceError
from ctface.ingest.canonical import canonicalize
from ctface.ingest.head import find_head
from ctface.ingest.volume import CtVolume
from ctface.landmarks.frame import FaceFrame, FrameMethod
from ctface.landmarks.sampling import LANDMARKS
from ctface.landmarks.surface_fit import fit_face_model

BOUND_MM = 4.0  # every landmark; phantom means are ~1 mm (eyes ~1.5, closed eyes up to ~3)


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = np.radians(degrees)
    out: np.ndarray = np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx
    return out


def test_fit_from_perturbed_frame_finds_all_five_landmarks() -> None:
    needs_face_model()
    from ctface.face_model.model import load_face_model
    from ctface.phantom.generator import synthesize_scan
    from ctface.phantom.mesh import tissue_maps
    from ctface.phantom.params import NuisanceConfig, draw_scan, draw_subject

    model = load_face_model(FACE_MODEL)
    rng = np.random.default_rng(31)
    subject = draw_subject(rng, "F31", model.n_identity)
    scan = draw_scan(rng, "F31_01", model.expression_names, NuisanceConfig())
    clean = {"mask": False, "tube": "none", "dental_metal": 0, "cut_top_mm": 0.0}
    coarse = {"pixel_mm": 1.0, "slice_thickness_mm": 2.0, "slice_spacing_mm": 2.0}
    scan = dataclasses.replace(scan, cut_chin=False, **clean, **coarse)
    res = synthesize_scan(model, tissue_maps(model), subject, scan, np.random.default_rng(32))
    volume = canonicalize(find_head(res.volume), 1.0)
    truth = np.array([res.truth["landmarks"][n]["lps"] for n in LANDMARKS])
    rot = np.array(res.truth["pose"]["model_to_lps_rotation"])

    # a frame 8 mm and 10 deg off the true nose tip and face axes
    turned = _rotation(np.array([1.0, 2.0, 0.5]), 10.0) @ rot
    offset = np.array([5.0, -4.0, 4.9])
    frame = FaceFrame(truth[2] + offset, turned[:, 2], turned[:, 1], FrameMethod.LANDMARKS)
    assert np.linalg.norm(frame.origin - truth[2]) > 7.9

    fit = fit_face_model(volume, frame, model)
    err = np.linalg.norm(fit.lps - truth, axis=1)
    assert fit.lps.shape == (5, 3)
    assert np.all(err < BOUND_MM), dict(zip(LANDMARKS, err.round(2), strict=True))
    assert fit.rms_mm < 1.5 and fit.inlier_fraction > 0.5
    assert fit.seconds > 0


def test_all_air_volume_has_no_face() -> None:
    needs_face_model()
    from ctface.face_model.model import load_face_model

    model = load_face_model(FACE_MODEL)
    air = CtVolume(np.full((80, 90, 100), -1000, np.int16), np.eye(4))
    centre = np.array([50.0, 45.0, 40.0])
    up, forward = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])
    frame = FaceFrame(centre, forward, up, FrameMethod.GEOMETRIC)
    with pytest.raises(NoFaceError, match="no usable face"):
        fit_face_model(air, frame, model)
