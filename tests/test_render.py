"""Face depth rendering: metric depth across acquisitions, landmarks, face location, no-face
errors, any voxel geometry, output folder and CLI."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FACE_MODEL, Cli, needs_face_model

from ctface.errors import MissingDataError, NoFaceError, OutputError
from ctface.ingest.volume import CtVolume
from ctface.landmarks.frame import locate_face
from ctface.landmarks.skin import open_thin_shells, skin_surface
from ctface.render import (
    FaceRendering,
    View,
    pose_grid,
    project_points,
    render_face,
    write_rendering,
)
from ctface.render.depth import OPEN_MM
from ctface.render.views import grid_shape

FRONTAL = View(0.0, 0.0, 0.0)
TURNED = View(15.0, -20.0, 0.0)
CLEAN = {"mask": False, "tube": "none", "dental_metal": 0, "cut_top_mm": 0.0, "cut_chin": False}


@pytest.fixture(scope="module")
def model_maps() -> tuple[Any, Any]:
    needs_face_model()
    from ctface.face_model.model import load_face_model
    from ctface.phantom.mesh import tissue_maps

    model = load_face_model(FACE_MODEL)
    return model, tissue_maps(model)


def _scan(model_maps: tuple[Any, Any], seed: int, **acq: Any) -> tuple[CtVolume, dict[str, Any]]:
    """A phantom CT of subject ``seed``; identical pose and anatomy for every ``acq``."""
    from ctface.phantom.generator import synthesize_scan
    from ctface.phantom.params import NuisanceConfig, draw_scan, draw_subject

    model, maps = model_maps
    rng = np.random.default_rng(seed)
    subject = draw_subject(rng, f"R{seed}", model.n_identity)
    scan = draw_scan(rng, f"R{seed}_01", model.expression_names, NuisanceConfig())
    scan = dataclasses.replace(scan, **{**CLEAN, **acq})
    res = synthesize_scan(model, maps, subject, scan, np.random.default_rng(seed + 1000))
    return res.volume, res.truth


@pytest.fixture(scope="module")
def thick(model_maps: tuple[Any, Any]) -> tuple[CtVolume, dict[str, Any]]:
    return _scan(model_maps, 11, pixel_mm=1.0, slice_thickness_mm=3.0, slice_spacing_mm=3.0)


@pytest.fixture(scope="module")
def thin(model_maps: tuple[Any, Any]) -> tuple[CtVolume, dict[str, Any]]:
    return _scan(model_maps, 11, pixel_mm=0.8, slice_thickness_mm=0.6, slice_spacing_mm=0.6)


@pytest.fixture(scope="module")
def thick_90(thick: tuple[CtVolume, dict[str, Any]]) -> FaceRendering:
    return render_face(thick[0])


def _lm(truth: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.array(v["lps"], dtype=float) for k, v in truth["landmarks"].items()}


def test_pose_grid() -> None:
    views = pose_grid()
    assert len(views) == 90 and grid_shape(90) == (9, 10)
    assert sorted({v.pitch for v in views}) == pytest.approx(np.linspace(-20, 20, 9))
    assert sorted({v.roll for v in views}) == pytest.approx(np.linspace(-25, 25, 10))
    assert all(v.yaw == 0 for v in views)
    assert grid_shape(12) == (3, 4) and grid_shape(7) == (1, 7)
    assert pose_grid(1) == [View(0.0, 0.0, 0.0)]
    # conventions: pitch > 0 lifts the nose (forward tilts up), roll > 0 is counter-clockwise
    assert (View(10, 0, 0).rotation() @ [0, 0, 1])[1] > 0
    assert (View(0, 10, 0).rotation() @ [1, 0, 0])[1] > 0
    assert (View(0, 0, 10).rotation() @ [0, 0, 1])[0] > 0


def test_depth_is_metric_across_slice_thickness(
    thick: tuple[CtVolume, dict[str, Any]], thin: tuple[CtVolume, dict[str, Any]]
) -> None:
    """Same face, same pose, 1 mm x 3 mm voxels vs 0.8 mm x 0.6 mm: same depth images."""
    assert thick[0].spacing[2] == 3.0 and thin[0].spacing[2] == pytest.approx(0.6)
    frame = locate_face(thick[0])  # one camera for both: only the voxels differ
    assert np.linalg.norm(locate_face(thin[0]).origin - frame.origin) < 1.0
    a = render_face(thick[0], frame=frame, views=[FRONTAL, TURNED])
    b = render_face(thin[0], frame=frame, views=[FRONTAL, TURNED])
    for v in range(2):
        da, db = a.depth_mm[v], b.depth_mm[v]
        both = np.isfinite(da) & np.isfinite(db)
        face = both & (da > 40.0)  # the face, not the sides of the head
        assert face.sum() > 8000
        # measured: median 0.184 / 0.184 mm, 90th percentile 0.419 / 0.471 mm (frontal / turned)
        assert np.median(np.abs(da - db)[face]) < 0.4
        assert np.percentile(np.abs(da - db)[face], 90) < 1.0
        assert (np.isfinite(da) != np.isfinite(db)).mean() < 0.01  # same silhouette
        assert np.array_equal(a.normalized[v] == 0, ~np.isfinite(da))


def test_roll_groups_match_single_views(thick: tuple[CtVolume, dict[str, Any]]) -> None:
    """Views sharing a pitch share a visibility pass; it must not change any pixel."""
    volume, _ = thick
    frame = locate_face(volume)
    views = pose_grid(4)  # pitch -20/+20 x roll -25/+25
    # without the opening: views cut different boxes from the volume, and a surface that the
    # opening carves can end differently at a box's edge (1 silhouette pixel of 128 x 128)
    grouped = render_face(volume, frame=frame, views=views, size=128, open_mm=0.0)
    for i, v in enumerate(views):
        single = render_face(volume, frame=frame, views=[v], size=128, open_mm=0.0).depth_mm[0]
        assert np.array_equal(np.isfinite(single), np.isfinite(grouped.depth_mm[i]))
        diff = np.abs(single - grouped.depth_mm[i])[np.isfinite(single)]
        # identical but for a few silhouette pixels (samples of triangles facing other views)
        assert (diff > 0.05).mean() < 0.001 and diff.max() < 3.0  # grazing silhouette pixels
    # the adjustment: NX = C (SX - theta) / (max SX - theta), surface 1..255, background 0
    d, n = grouped.depth_mm[1], grouped.normalized[1]
    ok = np.isfinite(d)
    expect = 220.0 * (d[ok] - grouped.theta_mm) / (d[ok].max() - grouped.theta_mm)
    assert np.abs(n[ok] - np.clip(np.rint(expect), 1, 255)).max() <= 1
    assert (n[~ok] == 0).all()


def test_landmarks_metric(thin: tuple[CtVolume, dict[str, Any]]) -> None:
    """Depths and depth differences in the image equal the truth's along the view axis (mm).

    The phantom seals skin gaps narrower than ~3 mm (eyelid fissures, lip corners), so its CT
    skin can lie up to ~2 mm in front of the truth eye or mouth point (seen in the HU profile
    itself, not only in the rendering); the convex nose tip has no such offset.
    """
    volume, truth = thin
    r = render_face(volume, views=[FRONTAL, TURNED])
    lm = _lm(truth)
    for v in range(2):
        img = r.depth_mm[v]
        proj = {k: project_points(r, p, v)[0] for k, p in lm.items()}
        at = {}
        for name, (col, row, depth) in proj.items():
            c, rr = int(round(col)), int(round(row))
            assert 0 <= c < r.size and 0 <= rr < r.size, name
            assert np.isfinite(img[rr, c]), f"{name} falls on background"
            at[name] = float(img[rr, c])
            assert abs(at[name] - depth) < 2.5, (name, at[name], depth)
        assert at["nose_tip"] == pytest.approx(proj["nose_tip"][2], abs=1.0)
        eyes_img = (at["right_eye"] + at["left_eye"]) / 2
        eyes_true = (proj["right_eye"][2] + proj["left_eye"][2]) / 2
        assert at["nose_tip"] - eyes_img == pytest.approx(proj["nose_tip"][2] - eyes_true, abs=2.0)
        assert 15.0 < at["nose_tip"] - eyes_img < 45.0
        # image orientation: the patient's right eye is on the image's left, eyes above mouth
        assert proj["right_eye"][0] < proj["left_eye"][0]
        assert proj["right_eye"][1] < proj["right_mouth"][1]
    # the frame origin is the nose tip; it is the highest point of the frontal image
    assert np.linalg.norm(r.frame.origin - lm["nose_tip"]) < 5.0
    assert np.nanmax(r.depth_mm[0]) == pytest.approx(100.0, abs=1.0)


@pytest.mark.parametrize(
    ("seed", "pose"),
    [(21, (18.0, -8.0, 12.0)), (22, (-18.0, 9.0, -13.0))],
)
def test_locate_face_poses(
    model_maps: tuple[Any, Any], seed: int, pose: tuple[float, float, float]
) -> None:
    acq = {"pixel_mm": 1.0, "slice_thickness_mm": 3.0, "slice_spacing_mm": 3.0}
    p, r, y = pose
    volume, truth = _scan(model_maps, seed, pitch_deg=p, roll_deg=r, yaw_deg=y, **acq)
    frame = locate_face(volume)
    assert frame.method == "geometric"
    assert np.allclose(frame.forward, [0, -1, 0]) and np.allclose(frame.up, [0, 0, 1])
    assert np.linalg.norm(frame.origin - _lm(truth)["nose_tip"]) < 10.0


def test_locate_face_same_scan(thick: tuple[CtVolume, dict[str, Any]]) -> None:
    frame = locate_face(thick[0])
    assert np.linalg.norm(frame.origin - _lm(thick[1])["nose_tip"]) < 10.0


def test_no_face(thick: tuple[CtVolume, dict[str, Any]]) -> None:
    air = CtVolume(np.full((30, 80, 80), -1024, np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(NoFaceError, match="no face in field of view"):
        locate_face(air)
    with pytest.raises(NoFaceError):
        render_face(air, views=[FRONTAL])
    # only the back of the head: cut the volume halfway between the nose tip and the occiput
    volume, truth = thick
    nose_j = volume.lps_to_ijk(_lm(truth)["nose_tip"])[0][1]
    rows = np.flatnonzero((volume.hu >= -350).any(axis=(0, 2)))
    cut = int(nose_j + 0.5 * (rows[-1] - nose_j))
    affine = volume.affine_lps.copy()
    affine[:3, 3] = volume.ijk_to_lps(np.array([0, cut, 0]))[0]
    back = CtVolume(volume.hu[:, cut:, :].copy(), affine)
    with pytest.raises(NoFaceError, match="no face in field of view"):
        locate_face(back)


def test_any_voxel_geometry(thick: tuple[CtVolume, dict[str, Any]]) -> None:
    """The same voxels stored right-to-left and top-to-bottom give the same images."""
    volume, _ = thick
    ni, _, nk = volume.shape_ijk
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    flip[:3, 3] = [ni - 1, 0, nk - 1]  # new (i, j, k) -> old (i, j, k)
    flipped = CtVolume(volume.hu[::-1, :, ::-1].copy(), volume.affine_lps @ flip)
    assert np.allclose(
        flipped.ijk_to_lps(np.array([0, 0, 0])), volume.ijk_to_lps([ni - 1, 0, nk - 1])
    )
    a = render_face(volume, views=[FRONTAL])
    b = render_face(flipped, views=[FRONTAL])
    assert np.linalg.norm(a.frame.origin - b.frame.origin) < 0.1
    both = np.isfinite(a.depth_mm) & np.isfinite(b.depth_mm)
    assert both.sum() > 8000
    assert np.median(np.abs(a.depth_mm - b.depth_mm)[both]) < 0.05
    # outward normals, whatever the handedness: the skin at the nose tip faces anterior
    box = (slice(0, nk), slice(0, volume.hu.shape[1]), slice(0, ni))
    for vol in (volume, flipped):
        s = skin_surface(vol, -350.0, box)
        centre = s.vertices[s.triangles].mean(axis=1)
        near = np.linalg.norm(centre - a.frame.origin, axis=1) < 3.0
        assert near.any() and (s.normals[near] @ [0, -1, 0]).mean() > 0.8


def test_partial_face_reports_missing(model_maps: tuple[Any, Any]) -> None:
    volume, truth = _scan(
        model_maps, 23, pixel_mm=1.0, slice_thickness_mm=3.0, slice_spacing_mm=3.0, cut_chin=True
    )
    r = render_face(volume, views=[FRONTAL])
    assert "chin" in r.face_region.missing + r.face_region.partial
    assert r.face_region.parts_in_field_of_view["eyes"] == 1.0
    assert r.face_region.parts_in_view["forehead"] > 0.9
    assert np.isfinite(r.depth_mm[0]).sum() > 8000
    assert np.linalg.norm(r.frame.origin - _lm(truth)["nose_tip"]) < 10.0


def test_write_rendering(thick_90: FaceRendering, tmp_path: Path) -> None:
    r = thick_90
    assert r.depth_mm.shape == (90, 256, 256) and r.depth_mm.dtype == np.float32
    assert r.normalized.dtype == np.uint8 and r.normalized.max() == 220
    assert all(np.isfinite(r.depth_mm[v]).sum() > 8000 for v in range(90))
    out = write_rendering(r, tmp_path / "render")
    meta = json.loads((out / "render.json").read_text())
    assert len(meta["views"]) == 90
    assert {"pitch", "roll", "yaw", "depth"} <= set(meta["views"][0])
    assert all((out / v["depth"]).is_file() for v in meta["views"])
    assert meta["camera"]["projection"] == "orthographic"
    assert meta["camera"]["size"] == 256
    assert meta["camera"]["mm_per_pixel"] == pytest.approx(220 / 256)
    assert meta["normalization"] == {**meta["normalization"], "theta_mm": r.theta_mm, "C": 220.0}
    assert meta["frame"]["method"] == "landmarks" and meta["threshold_hu"] == -350.0
    assert "missing" in meta["face_region"]
    depth = np.load(out / "depth_mm.npz")["depth_mm"]
    assert depth.dtype == np.float32 and np.array_equal(depth, r.depth_mm, equal_nan=True)
    from PIL import Image

    png = np.asarray(Image.open(out / meta["views"][37]["depth"]))
    assert np.array_equal(png, r.normalized[37])
    assert (out / "qc.png").stat().st_size > 10_000
    with pytest.raises(OutputError):
        write_rendering(r, out)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_write_rendering_without_the_plot_extra(
    thick_90: FaceRendering, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """matplotlib is the ``plot`` extra: without it the rendering is written whole, only the QC
    picture is left out, and a QC-only feature names the extra."""
    from ctface.extras import pyplot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    out = write_rendering(thick_90, tmp_path / "render")
    assert (out / "render.json").is_file() and (out / "depth_mm.npz").is_file()
    assert not (out / "qc.png").exists()
    with pytest.raises(MissingDataError, match=r"pip install 'ctface\[plot\]'"):
        pyplot("the landmark QC picture")


def test_cli_render(thick: tuple[CtVolume, dict[str, Any]], tmp_path: Path, cli: Cli) -> None:
    from ctface.phantom.export import write_nifti

    scan = write_nifti(thick[0], tmp_path / "scan.nii.gz")
    out = tmp_path / "r"
    args = ["render", str(scan), "--out", str(out), "--views", "4", "--size", "64"]
    res = cli(*args, "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["views"] == 4 and summary["frame"]["method"] == "landmarks"
    meta = json.loads((out / "render.json").read_text())
    assert len(meta["views"]) == 4 and meta["camera"]["size"] == 64
    again = cli(*args)
    assert again.returncode == 5 and "not empty" in again.stderr
    air = tmp_path / "air.nii.gz"
    write_nifti(CtVolume(np.full((40, 64, 64), -1000, np.int16), np.diag([3.0, 3, 3, 1])), air)
    res = cli("render", str(air), "--out", str(tmp_path / "a"))
    assert res.returncode == 6 and res.stderr.count("\n") == 1, res.stderr  # no usable face
    assert "No head in the field of view" in res.stderr and not (tmp_path / "a").exists()


def test_adjustment_is_anchored_on_the_face_not_on_a_nearer_object() -> None:
    """A tube connector 60 mm in front of the nose tip (depth 160 mm) is clipped instead of
    setting max(SX): the face keeps at least 100/115 of the grey levels it has without the tube
    (the cap, 15 mm in front of the nose tip), where the uncapped maximum squeezes it to 100/160
    (issue 16). Below the cap the paper's per-image maximum still rules."""
    from ctface.render.depth import FACE_TOP_MM, REFERENCE_MM, SCALE_C, normalize_depth

    yy, xx = np.mgrid[0:64, 0:64]
    face = REFERENCE_MM - 0.05 * ((yy - 32.0) ** 2 + (xx - 32.0) ** 2)  # nose tip at 100 mm
    face = np.where(face > 5, face, np.nan)[None].astype(np.float32)
    tube = face.copy()
    tube[0, 30:34, 40:60] = REFERENCE_MM + 60.0
    plain, with_tube = normalize_depth(face, 0.0, SCALE_C), normalize_depth(tube, 0.0, SCALE_C)
    untouched = np.isfinite(face[0]) & (tube[0] == face[0])
    assert int(plain.max()) == 220
    ratio = with_tube[0][untouched] / plain[0][untouched]
    assert ratio.min() >= REFERENCE_MM / FACE_TOP_MM - 0.02 and ratio.max() <= 1.0
    assert bool((with_tube[0][tube[0] > REFERENCE_MM + 30] == 255).all())
    uncapped = normalize_depth(tube, 0.0, SCALE_C, top_mm=np.inf)
    assert uncapped[0][untouched].max() < 0.7 * 220  # the squeeze the cap prevents
    higher = face + 10.0  # a forehead 10 mm above the nose plane: still its own maximum
    assert int(normalize_depth(higher, 0.0, SCALE_C).max()) == 220 and FACE_TOP_MM >= 110


def test_an_immobilization_mask_is_opened_away(
    model_maps: tuple[Any, Any], thick: tuple[CtVolume, dict[str, Any]]
) -> None:
    """A perforated mask sheet standing off the skin is opened away (``open_thin_shells``):
    the masked scan renders within a fraction of a mm of the same face without a mask, where
    the sheet itself lies mm in front; the unmasked face loses only its thinnest edges."""
    clean = thick[0]
    masked, truth = _scan(model_maps, 11, mask=True, pixel_mm=1.0, slice_thickness_mm=3.0,
                          slice_spacing_mm=3.0)  # fmt: skip
    assert truth["scan"]["mask"]
    frame = locate_face(clean)  # one camera: the same pose and anatomy
    views = [FRONTAL, TURNED]
    face_only = render_face(clean, frame=frame, views=views)
    for opened, tol in ((0.0, None), (OPEN_MM, 1.0)):
        m = render_face(masked, frame=frame, views=views, open_mm=opened).depth_mm
        for v in range(2):
            ref = face_only.depth_mm[v]
            face = np.isfinite(ref) & np.isfinite(m[v]) & (ref > 40.0)
            off = np.median(np.abs(m[v] - ref)[face])
            # measured: closed 2.60 / 2.75 mm, opened 0.55 / 0.55 mm (frontal / turned)
            assert (off < tol) if tol else (off > 2.0)
    # of the unmasked face the opening takes only what is that thin (nostril rims, lip edges)
    unopened = render_face(clean, frame=frame, views=views, open_mm=0.0).depth_mm
    for v in range(2):
        ref = face_only.depth_mm[v]
        face = np.isfinite(ref) & (ref > 40.0)
        moved = np.abs(unopened[v] - ref)[face & np.isfinite(unopened[v])]
        assert np.median(moved) < 0.01 and (moved > 1.0).mean() < 0.05  # measured 2.0 / 2.7 %


def test_open_thin_shells_keeps_the_body() -> None:
    """A 2 mm sheet in front of a block is removed; the block is kept voxel for voxel, a plate
    thicker than the ball but for its edges (no ball reaches them)."""
    hu = np.full((30, 60, 40), -1000, np.int16)
    hu[:, 30:, :] = 40  # the body (touches the array's border: not air)
    hu[:, 24:26, 5:35] = 180  # a 2 mm sheet, 4 mm of air in front of the body
    hu[5:25, 10:18, 5:35] = 180  # 8 mm thick plate: stays
    out = open_thin_shells(hu, (1.0, 1.0, 1.0), -350.0, 3.0)
    assert (out[:, 24:26] == -1000).all()
    assert np.array_equal(out[:, 30:], hu[:, 30:])
    assert np.array_equal(out[7:23, 11:17, 7:33], hu[7:23, 11:17, 7:33])
    assert 0.75 < (out[5:25, 10:18, 5:35] == 180).mean() < 1.0  # rounded edges (0.80)
    small_ball = open_thin_shells(hu, (1.0, 1.0, 1.0), -350.0, 0.9)
    assert np.array_equal(small_ball[:, 24:26], hu[:, 24:26])


def test_open_thin_shells_is_the_morphological_opening() -> None:
    """The same voxels as scipy's binary opening by the closed ball, for tissue away from the
    array's border (so that the transforms' crop to the tissue box cannot show)."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    blobs = np.pad(ndimage.gaussian_filter(rng.random((32, 42, 52)), 2.0) > 0.52, 4)
    hu = np.where(blobs, 60, -1000).astype(np.int16)
    zz, yy, xx = np.mgrid[-3:4, -3:4, -3:4]
    ball = zz**2 + yy**2 + xx**2 <= 9
    expected = ndimage.binary_opening(blobs, structure=ball)
    out = open_thin_shells(hu, (1.0, 1.0, 1.0), -350.0, 3.0)
    assert 0 < expected.sum() < blobs.sum()  # the opening takes something and leaves something
    assert np.array_equal(out >= -350, expected)
    assert np.array_equal(out[expected], hu[expected])


def test_skin_surface_opens_in_mm_with_the_volume_spacing() -> None:
    """Anisotropic voxels (2 mm slices, 0.5 mm pixels): a plate 4 slices thick is 8 mm and
    stays, a sheet 2 rows thick is 1 mm and goes. Spacing taken in the wrong axis order would
    make the plate 2 mm and open it away."""
    hu = np.full((40, 60, 40), -1000, np.int16)
    hu[:, 44:, :] = 40  # the body (touches the array's border: not air)
    hu[4:8, 8:28, 5:35] = 180  # plate: 8 x 10 x 15 mm
    hu[14:34, 34:36, 5:35] = 180  # sheet: 1 mm thick, 4 mm of air in front of the body
    volume = CtVolume(hu, np.diag([0.5, 0.5, 2.0, 1.0]))  # i, j: 0.5 mm; k: 2 mm
    box = (slice(0, 40), slice(0, 60), slice(0, 40))
    plain = skin_surface(volume, -350.0, box)
    opened = skin_surface(volume, -350.0, box, open_mm=OPEN_MM)

    def vertices_in(surface: Any, j: tuple[float, float], k: tuple[float, float]) -> int:
        ijk = surface.vertices / np.array([0.5, 0.5, 2.0])  # LPS mm -> voxel index (i, j, k)
        inside = (
            (ijk[:, 1] >= j[0]) & (ijk[:, 1] <= j[1]) & (ijk[:, 2] >= k[0]) & (ijk[:, 2] <= k[1])
        )
        return int(inside.sum())

    sheet, plate = ((33.0, 36.0), (14.0, 33.0)), ((7.0, 8.0), (4.0, 7.0))
    assert vertices_in(plain, *sheet) > 100 and vertices_in(plain, *plate) > 100
    assert vertices_in(opened, *sheet) == 0  # the 1 mm sheet is opened away
    assert vertices_in(opened, *plate) > 0.5 * vertices_in(plain, *plate)  # the 8 mm plate stays
