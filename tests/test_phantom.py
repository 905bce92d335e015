"""The synthetic cohort generator: determinism, formats, geometry, landmarks, identity."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import FACE_MODEL, FAST, make_cohort, needs_face_model
from scipy import ndimage

from ctface.errors import OutputError
from ctface.face_model.model import load_face_model
from ctface.phantom.generator import synthesize_scan
from ctface.phantom.mesh import tissue_maps
from ctface.phantom.params import NuisanceConfig, draw_scan, draw_subject

SKIN_HU = -350.0


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv") as fh:
        return list(csv.DictReader(fh))


def _sitk_dicom(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_manifest_and_truth(nifti_cohort: Path) -> None:
    rows = _manifest(nifti_cohort)
    assert len(rows) == 1
    row = rows[0]
    assert {"scan_id", "subject_id", "path", "format", "truth"} <= set(row)
    assert row["format"] == "nifti" and (nifti_cohort / row["path"]).is_file()
    truth = json.loads((nifti_cohort / row["truth"]).read_text())
    assert truth["subject_id"] == row["subject_id"]
    for name in ("right_eye", "left_eye", "nose_tip", "right_mouth", "left_mouth"):
        lm = truth["landmarks"][name]
        assert np.allclose(lm["ras"], [-lm["lps"][0], -lm["lps"][1], lm["lps"][2]])
    assert len(truth["landmarks68"]) == 68
    # patient's right eye lies at smaller LPS x (towards the patient's right) than the left eye
    assert truth["landmarks"]["right_eye"]["lps"][0] < truth["landmarks"]["left_eye"]["lps"][0]
    assert truth["landmarks"]["right_mouth"]["lps"][0] < truth["landmarks"]["left_mouth"]["lps"][0]
    # the face looks anterior: nose tip is the most anterior (smallest LPS y) of the five
    ys = {k: v["lps"][1] for k, v in truth["landmarks"].items()}
    assert min(ys, key=ys.__getitem__) == "nose_tip"


def test_same_seed_same_bytes(nifti_cohort: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    make_cohort(again, seed=7, dicom_fraction=0.0)
    for name in ("manifest.csv", "S0001/S0001_01.nii.gz", "S0001/S0001_01.json"):
        assert (again / name).read_bytes() == (nifti_cohort / name).read_bytes(), name


def test_dicom_matches_nifti_geometry(nifti_cohort: Path, dicom_cohort: Path) -> None:
    (nrow,), (drow,) = _manifest(nifti_cohort), _manifest(dicom_cohort)
    assert drow["format"] == "dicom"
    nii = nib.load(nifti_cohort / nrow["path"])
    data = np.asarray(nii.dataobj)  # [i, j, k]
    ref = sitk.ReadImage(str(nifti_cohort / nrow["path"]))
    img = _sitk_dicom(dicom_cohort / drow["path"])
    assert img.GetSize() == ref.GetSize()
    assert np.allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    assert np.allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-3)
    assert np.allclose(img.GetDirection(), ref.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(ref))
    truth = json.loads((dicom_cohort / drow["truth"]).read_text())
    affine_lps = np.array(truth["geometry"]["affine_lps"])
    assert np.allclose(np.diag([-1, -1, 1, 1]) @ affine_lps, nii.affine, atol=1e-4)
    files = sorted((dicom_cohort / drow["path"]).iterdir())
    assert len(files) == data.shape[2]
    for k in (0, len(files) // 2, len(files) - 1):
        ds = pydicom.dcmread(files[k])
        assert ds.Modality == "CT" and ds.PatientID == drow["subject_id"]
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        kk = int(ds.InstanceNumber) - 1
        assert np.array_equal(hu, data[:, :, kk].T)
        ipp = affine_lps @ np.array([0, 0, kk, 1])
        assert np.allclose([float(x) for x in ds.ImagePositionPatient], ipp[:3], atol=1e-3)


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed (apt)")
def test_dcm2niix_converts_without_warnings(dicom_cohort: Path, tmp_path: Path) -> None:
    (drow,) = _manifest(dicom_cohort)
    res = subprocess.run(
        ["dcm2niix", "-z", "n", "-f", "x", "-o", str(tmp_path), str(dicom_cohort / drow["path"])],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = (res.stdout + res.stderr).splitlines()
    # The only tolerated line: dcm2niix does not know "ctface" as a vendor (we do not pose as one).
    bad = [ln for ln in lines if ("warning" in ln.lower() or "error" in ln.lower())
           and "Unable to determine manufacturer" not in ln]  # fmt: skip
    assert not bad, bad
    assert nib.load(tmp_path / "x.nii").shape[2] == len(
        list((dicom_cohort / drow["path"]).iterdir())
    )


def _hu_sphere(volume: np.ndarray, affine_ras: np.ndarray, ras: np.ndarray, r: float) -> np.ndarray:
    """HU (trilinear) at points on spheres of radius <= r mm around a RAS point."""
    dirs = np.random.default_rng(0).normal(size=(400, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pts = np.concatenate([ras + rr * dirs for rr in (0.5 * r, r)] + [ras[None]])
    inv = np.linalg.inv(affine_ras)
    ijk = pts @ inv[:3, :3].T + inv[:3, 3]
    return ndimage.map_coordinates(volume.astype(np.float32), ijk.T, order=1, mode="nearest")


@pytest.mark.parametrize("thickness", [pytest.param(1.0, marks=pytest.mark.slow), 3.0])
def test_landmarks_lie_on_skin(thickness: float) -> None:
    needs_face_model()
    model = load_face_model(FACE_MODEL)
    maps = tissue_maps(model)
    cfg = NuisanceConfig(
        pixel_mm=(0.8, 0.8), slice_thickness_mm=(thickness,), p_overlapping_slices=0
    )
    for seed in (3, 4):
        rng = np.random.default_rng(seed)
        subject = draw_subject(rng, "S", model.n_identity)
        scan = draw_scan(rng, "S_01", model.expression_names, cfg)
        res = synthesize_scan(model, maps, subject, scan, rng)
        vol = res.volume.hu.transpose(2, 1, 0)
        for name, lm in res.truth["landmarks"].items():
            if not lm["in_fov"]:
                continue
            hu = _hu_sphere(vol, res.volume.affine_ras, np.array(lm["ras"]), 1.5)
            assert hu.min() < SKIN_HU < hu.max(), (seed, name, hu.min(), hu.max())


def test_identity_is_kept_across_scans_and_differs_between_subjects() -> None:
    """Upper-face 68-point shape: scans of one subject agree better than different subjects."""
    needs_face_model()
    model = load_face_model(FACE_MODEL)
    maps = tissue_maps(model)
    from ctface.phantom.generator import scan_vertices

    def shape(subject_seed: int, scan_seed: int) -> np.ndarray:
        subject = draw_subject(np.random.default_rng(subject_seed), "S", model.n_identity)
        rng = np.random.default_rng(1000 + scan_seed)
        scan = draw_scan(rng, "x", model.expression_names, NuisanceConfig(p_expression=1.0))
        p = scan_vertices(model, maps, subject, scan)[model.landmarks68[17:48]]
        return p - p.mean(0)

    same = [np.abs(shape(s, 1) - shape(s, 2)).mean() for s in range(6)]
    diff = [np.abs(shape(s, 1) - shape(s + 1, 1)).mean() for s in range(6)]
    assert max(same) < min(diff), (same, diff)


def test_existing_output_refused_and_interrupt_leaves_nothing(tmp_path: Path) -> None:
    needs_face_model()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep")
    with pytest.raises(OutputError):
        make_cohort(busy)
    assert (busy / "x").read_text() == "keep"

    from ctface.phantom.cohort import CohortSpec, generate_cohort

    def stop(_row: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "cut"
    spec = CohortSpec(
        subjects=1, scans_min=2, scans_max=2, face_model=str(FACE_MODEL), nuisance=FAST
    )
    with pytest.raises(KeyboardInterrupt):
        generate_cohort(spec, out, progress=stop)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]
