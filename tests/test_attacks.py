"""The independent re-identification attacks (``ctface.deid.attacks``): the skin surface of a
head, trimmed ICP, the frontal render, dlib's face recognizer, and the batch scores.

Fast tests use analytic shapes and small synthetic volumes; the phantom tests (``people``: two
people, two scans each) are slow."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ctface.deid import attacks
from ctface.deid.attacks import Attack, Features
from ctface.errors import MissingDataError
from ctface.ingest.volume import CtVolume


def _head_volume(radii: tuple[float, float, float] = (70.0, 85.0, 95.0), nose: bool = True,
                 bump_left: bool = False) -> CtVolume:  # fmt: skip
    """A 1 mm LPS volume: an ellipsoid of soft tissue (0 HU) in air, with a nose in front
    (-y) and optionally a bump on the patient's left (+x); a table plate below (posterior)."""
    shape = (230, 230, 190)  # k, j, i
    x = np.arange(shape[2])[None, None, :] - 95.0
    y = np.arange(shape[1])[None, :, None] - 110.0
    z = np.arange(shape[0])[:, None, None] - 115.0
    inside = (x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2 <= 1
    if nose:
        inside |= (x / 12) ** 2 + ((y + radii[1]) / 18) ** 2 + ((z + 10) / 25) ** 2 <= 1
    if bump_left:
        inside |= ((x - radii[0]) / 15) ** 2 + (y / 15) ** 2 + ((z - 30) / 15) ** 2 <= 1
    hu = np.where(inside, 0, -1000).astype(np.int16)
    hu[:, 215:220, :] = 150  # a table behind the head: not connected to it
    affine = np.eye(4)
    affine[:3, 3] = [-95.0, -110.0, -115.0]
    return CtVolume(hu, affine)


def _cloud(n: int = 4000, radii: tuple[float, float, float] = (70.0, 85.0, 95.0),
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Points on an ellipsoid with a nose-like bump (no symmetry but the mirror), with outward
    unit normals, spatially ordered like thinned isosurface points."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    r = np.asarray(radii)
    bump = 25.0 * np.exp(-(((u[:, 0]) ** 2 + (u[:, 2] + 0.1) ** 2) / 0.03)) * (u[:, 1] < 0)
    p = u * r * (1 + bump[:, None] / 100.0)
    normal = u / r  # the gradient of sum((p / r) ** 2) at p = u * r
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    order = np.lexsort((p[:, 0], p[:, 1], np.round(p[:, 2] / 3)))
    return p[order].astype(np.float32), normal[order].astype(np.float32)


def test_surface_points_are_the_head_skin_not_the_table() -> None:
    volume = _head_volume()
    points = attacks.surface_points(volume)
    assert points is not None and points.dtype == np.float32 and points.shape[1] == 3
    assert 2000 < len(points) < 20000  # one per 3 mm cube of a ~80,000 mm2 surface
    x, y, z = points.T
    ellipsoid = (x / 70) ** 2 + (y / 85) ** 2 + (z / 95) ** 2
    # all on the head (the ellipsoid or its nose), none on the table plate at y = 105..110 mm
    assert y.max() < 90 and np.median(np.abs(np.sqrt(ellipsoid) - 1)) < 0.02
    pts, normals = attacks.surface_samples(volume)  # type: ignore[misc]
    assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-3)
    outward = np.einsum("ij,ij->i", normals, pts / np.array([70, 85, 95]) ** 2)
    assert np.mean(outward > 0) > 0.95
    air = CtVolume(np.full((20, 20, 20), -1000, np.int16), np.eye(4))
    assert attacks.surface_points(air) is None
    assert attacks.features(Attack.SURFACE_ICP, air).failure == "no skin surface"


def test_icp_finds_the_same_shape_moved_and_tells_it_from_another() -> None:
    ref, ref_n = _cloud(seed=1)
    probe, probe_n = _cloud(seed=2)  # other samples of the same surface
    turn = Rotation.from_euler("xyz", [12, -6, 18], degrees=True).as_matrix()
    moved = probe @ turn.T + np.array([15.0, -8.0, 20.0])
    same = attacks.icp_similarity(
        moved, ref, probe_normals=probe_n @ turn.T, reference_normals=ref_n
    )
    other_pts, other_n = _cloud(radii=(74.0, 80.0, 99.0), seed=3)
    other = attacks.icp_similarity(other_pts, ref, probe_normals=other_n, reference_normals=ref_n)
    assert same > -0.3 and other < same - 0.5
    # without normals: point-to-point (Kabsch) steps, the same ordering
    plain = attacks.icp_similarity(moved, ref)
    assert plain > attacks.icp_similarity(other_pts, ref)
    assert np.isnan(attacks.icp_similarity(moved[:5], ref))


def test_trimmed_icp_registers_what_is_left_of_a_defaced_probe() -> None:
    ref, ref_n = _cloud(seed=1)
    probe, probe_n = _cloud(seed=2)
    kept = ~((probe[:, 1] < -40) & (np.abs(probe[:, 2]) < 50))  # the face cut away
    turn = Rotation.from_euler("z", 15, degrees=True).as_matrix()
    score = attacks.icp_similarity(
        probe[kept] @ turn.T, ref, probe_normals=probe_n[kept] @ turn.T, reference_normals=ref_n
    )
    assert score > -0.3


def test_attack_scores_from_features_with_failed_probes() -> None:
    a, a_n = _cloud(seed=1)
    b, b_n = _cloud(radii=(74.0, 80.0, 99.0), seed=3)
    refs = [Features(Attack.SURFACE_ICP, points=a, normals=a_n),
            Features(Attack.SURFACE_ICP, points=b, normals=b_n)]  # fmt: skip
    probes = [
        Features(Attack.SURFACE_ICP, points=b[::-1].copy(), normals=b_n[::-1].copy()),
        Features(Attack.SURFACE_ICP, failure="no skin surface"),
        Features(Attack.SURFACE_ICP, points=a, normals=a_n),
    ]
    probes = pickle.loads(pickle.dumps(probes))  # features travel through process pools
    result = attacks.attack_scores("surface-icp", probes, refs)
    assert result.scores.shape == (3, 2)
    assert np.isnan(result.scores[1]).all() and result.failures == [None, "no skin surface", None]
    assert result.scores[0].argmax() == 1 and result.scores[2].argmax() == 0
    assert result.reference_failures == [None, None]
    with pytest.raises(ValueError, match="features of the face-2d attack"):
        attacks.attack_scores(Attack.SURFACE_ICP, [Features(Attack.FACE_2D)], refs)
    with pytest.raises(ValueError, match="not one of the independent attacks"):
        attacks.features(Attack.CTFACE, _head_volume())


def test_face_2d_scores_are_minus_the_descriptor_distance() -> None:
    d = np.zeros(128, np.float32)
    e = d.copy()
    e[0] = 0.3
    refs = [Features(Attack.FACE_2D, descriptor=d), Features(Attack.FACE_2D, failure="no face")]
    result = attacks.attack_scores(Attack.FACE_2D, [Features(Attack.FACE_2D, descriptor=e)], refs)
    assert result.scores[0, 0] == pytest.approx(-0.3) and np.isnan(result.scores[0, 1])
    assert result.reference_failures == [None, "no face"]


def test_frontal_render_shows_the_patients_left_on_the_right() -> None:
    image = attacks.frontal_render(_head_volume(bump_left=True))  # bump at z = +30 mm
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert np.array_equal(image[..., 0], image[..., 2])
    m = attacks.RENDER_MARGIN_PX
    lit = np.flatnonzero(image[..., 0].any(axis=0))
    assert lit[0] == m and image.shape[1] - 1 - lit[-1] == m  # cropped, with a margin
    assert 150 <= len(lit) <= 160  # 1 px/mm: the head (140 mm) and the bump (15 mm)

    def span(z: float) -> np.ndarray:  # lit columns of the row at height z (top: z = 95)
        return np.flatnonzero(image[int(round(m + 95 - z)), :, 0] > 0)[[0, -1]]

    up, down = span(30.0), span(-30.0)  # the ellipsoid is as wide at both heights
    assert abs(up[0] - down[0]) <= 2 and up[1] > down[1] + 10  # the bump is on the right
    air = CtVolume(np.full((8, 8, 8), -1000, np.int16), np.eye(4))
    assert attacks.frontal_render(air).shape == (1, 1, 3)


def test_symmetry_rotation_undoes_yaw() -> None:
    p, n = _cloud(8000, seed=4)
    turn = Rotation.from_euler("z", 20, degrees=True).as_matrix()
    upright = attacks.symmetry_rotation(p @ turn.T, n @ turn.T)
    # the mirror plane's normal (x) after both rotations is x again
    assert abs((upright @ turn)[0, 0]) > np.cos(np.radians(3))


def test_face_2d_needs_the_audit_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    attacks._dlib_models.cache_clear()
    monkeypatch.setattr(attacks, "optional", lambda name: None)
    with pytest.raises(MissingDataError, match=r"ctface\[audit\]"):
        attacks.features(Attack.FACE_2D, _head_volume())
    attacks._dlib_models.cache_clear()
    monkeypatch.undo()
    monkeypatch.setattr(attacks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDataError, match="face_recognition_models.*ctface\\[audit\\]"):
        attacks._models_folder()
    attacks._dlib_models.cache_clear()


def test_face_2d_finds_no_face_on_a_featureless_head() -> None:
    pytest.importorskip("dlib")
    result = attacks.features(Attack.FACE_2D, _head_volume(nose=False))
    assert not result.ok and result.descriptor is None
    assert result.failure is not None and "no face" in result.failure


def _crude_deface(volume: CtVolume) -> CtVolume:
    """Air in a box in front of the face (the audit's sanity check, not a real defacer)."""
    pts = attacks.surface_points(volume)
    assert pts is not None
    eye = pts[:, 2].max() - 100.0
    band = np.abs(pts[:, 2] - eye) < 20
    mid = 0.5 * (pts[band, 0].min() + pts[band, 0].max())
    nk, nj, ni = volume.hu.shape
    a = volume.affine_lps  # canonical: diagonal
    x = a[0, 0] * np.arange(ni)[None, None, :] + a[0, 3]
    y = a[1, 1] * np.arange(nj)[None, :, None] + a[1, 3]
    z = a[2, 2] * np.arange(nk)[:, None, None] + a[2, 3]
    cut = (y < pts[:, 1].min() + 35) & (np.abs(x - mid) < 70) & (z > eye - 60) & (z < eye + 40)
    hu = volume.hu.copy()
    hu[cut] = -1000
    return CtVolume(hu, volume.affine_lps, volume.metadata)


@pytest.mark.slow
def test_surface_icp_and_face_2d_on_phantoms(people: Path) -> None:
    from ctface.api import load_ct

    scans = sorted(people.glob("S*/S*_0?.nii.gz"))
    assert len(scans) == 4
    volumes = [load_ct(p) for p in scans]
    subject = [p.parent.name for p in scans]
    first = [i for i, s in enumerate(subject) if subject.index(s) == i]
    second = [i for i in range(len(scans)) if i not in first]
    feats = {a: [attacks.features(a, v) for v in volumes] for a in attacks.INDEPENDENT}
    icp = attacks.attack_scores(
        Attack.SURFACE_ICP, [feats[Attack.SURFACE_ICP][i] for i in second],
        [feats[Attack.SURFACE_ICP][i] for i in first],
    )  # fmt: skip
    assert icp.scores.shape == (2, 2) and all(f is None for f in icp.failures)
    assert (icp.scores.argmax(axis=1) == [0, 1]).all()
    assert all(f.seconds < 5 for f in feats[Attack.SURFACE_ICP])
    # face-2d: a face is found on the intact renders, none once the face is cut away
    faces = feats[Attack.FACE_2D]
    assert sum(f.ok for f in faces) >= 3
    for f in faces:
        if f.ok:
            assert f.descriptor is not None and f.descriptor.shape == (128,)
            assert f.detector in ("hog", "cnn") and f.view_pitch_deg in attacks.VIEW_PITCHES_DEG
    defaced = _crude_deface(volumes[second[0]])
    assert not attacks.features(Attack.FACE_2D, defaced).ok
    # what is left of the head still registers best to the same person
    left = attacks.attack_scores(
        Attack.SURFACE_ICP, [defaced], [feats[Attack.SURFACE_ICP][i] for i in first]
    )
    assert left.scores[0].argmax() == 0
