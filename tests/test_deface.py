"""ctface deface: DICOM and NIfTI round trips, de-identified headers, the face cut and nothing
behind it, refusal without a face, the generic face; ctface audit end to end on two people."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

import ctface
from ctface.deid.deface import (
    AIR,
    DefaceMethod,
    _face,
    _frame_coords,
    intracranial,
    plan_deface,
)
from ctface.ingest.volume import CtVolume


def _dicom_scan(cohort: Path) -> Path:
    return next(p for p in sorted(cohort.rglob("*_dicom")) if p.is_dir())


def _nifti_scan(cohort: Path) -> Path:
    return sorted(cohort.rglob("*.nii.gz"))[0]


def _behind_the_face(volume: CtVolume) -> np.ndarray:
    """Voxels of a canonical volume 10 mm or more behind the cut's back plane (never cut)."""
    face = _face(ctface.detect_landmarks(volume))
    whole = tuple(slice(0, n) for n in volume.hu.shape)
    z = _frame_coords(volume, face.frame, whole)[2]  # type: ignore[arg-type]
    return z < face.eye_z - 0.75 * face.eyes - 10


def test_dicom_round_trip_deidentifies_and_cuts_only_the_face(
    dicom_cohort: Path, tmp_path: Path, cli
) -> None:
    scan = _dicom_scan(dicom_cohort)
    r = cli("deface", str(scan), "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)["defaced"][0]
    out = tmp_path / "out" / result["output"]
    assert result["qc"] and not (tmp_path / "out" / "qc").exists()  # the face stays out of OUT
    assert len(list((tmp_path / "out-qc").glob("*.png"))) == 1
    src_files = sorted(scan.glob("*.dcm"))
    out_files = sorted(out.glob("*.dcm"))
    assert len(out_files) == len(src_files)
    before = [pydicom.dcmread(f) for f in src_files]
    after = [pydicom.dcmread(f) for f in out_files]
    b0, a0 = before[0], after[0]
    # header: PS3.15 Basic Profile by dicom-anonymizer, marked as such
    assert a0.PatientIdentityRemoved == "YES"
    codes = {(c.CodeValue, c.CodingSchemeDesignator) for c in a0.DeidentificationMethodCodeSequence}
    assert codes == {("113100", "DCM"), ("113102", "DCM")}
    assert "ctface deface" in " ".join(a0.DeidentificationMethod)
    assert str(a0.PatientID) != str(b0.PatientID) and str(b0.PatientName) not in str(a0.PatientName)
    assert a0.get("PatientBirthDate", "") != b0.get("PatientBirthDate", "x") or not b0.get(
        "PatientBirthDate"
    )
    assert not any(e.tag.is_private for ds in after for e in ds)
    # new UIDs, one study and one series for the whole output
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({str(ds[key].value) for ds in after}) == 1
        assert str(a0[key].value) != str(b0[key].value)
    assert not {str(d.SOPInstanceUID) for d in before} & {str(d.SOPInstanceUID) for d in after}
    assert a0.ImageType[0] == "DERIVED"
    # pixels: the slice geometry is kept; air in front of the face, the rest untouched
    changed = 0
    for b, a in zip(before, after, strict=True):
        assert b.ImagePositionPatient == a.ImagePositionPatient
        changed += int((b.pixel_array != a.pixel_array).sum())
    assert changed > 10_000
    from ctface.ingest.canonical import canonicalize
    from ctface.ingest.reader import read_ct

    native, native_after = read_ct(scan), read_ct(out)
    assert native.hu.shape == native_after.hu.shape
    original = canonicalize(native)
    behind = _behind_the_face(original)
    changed_at = _nearest_canonical(original, native, native.hu != native_after.hu)
    assert changed_at.size and not behind[tuple(changed_at.T)].any()
    inside = intracranial(original, ctface.detect_landmarks(original))
    assert inside.sum() > 100_000
    assert inside[tuple(changed_at.T)].sum() <= 0.001 * inside.sum()


def _nearest_canonical(canonical: CtVolume, native: CtVolume, where: np.ndarray) -> np.ndarray:
    """(N, 3) canonical [k, j, i] of the native voxels ``where`` is true (nearest voxel)."""
    kji = np.argwhere(where)
    lps = native.ijk_to_lps(kji[:, ::-1].astype(float))
    ijk = np.rint(canonical.lps_to_ijk(lps)).astype(int)
    return np.clip(ijk[:, ::-1], 0, np.array(canonical.hu.shape) - 1)


def test_nifti_round_trip_keeps_grid_and_type(nifti_cohort: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    scan = _nifti_scan(nifti_cohort)
    result = ctface.deface(scan, tmp_path, method="reface")
    assert result.output == tmp_path / scan.name and result.qc is None
    a, b = sitk.ReadImage(str(scan)), sitk.ReadImage(str(result.output))
    assert a.GetSize() == b.GetSize() and a.GetPixelID() == b.GetPixelID()
    assert np.allclose(a.GetDirection(), b.GetDirection())
    assert np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetSpacing(), b.GetSpacing())
    va, vb = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
    diff = va != vb
    assert 0 < diff.mean() < 0.2
    assert result.summary["generic_face_ml"] > 50 and result.summary["removed_tissue_ml"] > 50
    # the voxels the cut reached are the only ones changed
    volume = ctface.load_ct(scan)
    cut = plan_deface(volume, ctface.detect_landmarks(volume), DefaceMethod.REFACE)
    affine = np.eye(4)
    affine[:3, :3] = np.array(a.GetDirection()).reshape(3, 3) * np.array(a.GetSpacing())
    affine[:3, 3] = a.GetOrigin()
    reached = cut.on_grid(affine, va.shape)
    assert reached is not None
    box, labels = reached
    outside = np.ones(va.shape, bool)
    outside[box] = labels == 0
    assert not diff[outside].any()
    assert (vb[box][labels == AIR] == -1000).all()


def test_a_scan_without_its_face_is_refused_and_nothing_written(
    nifti_cohort: Path, tmp_path: Path, cli
) -> None:
    """The back of the head only (the face outside the field of view): exit 6, no output."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(_nifti_scan(nifti_cohort)))
    arr = sitk.GetArrayFromImage(image)
    volume = ctface.load_ct(_nifti_scan(nifti_cohort))
    nose = ctface.detect_landmarks(volume)["nose_tip"].lps
    # LPS y grows posterior: keep rows 60 mm or more behind the nose tip
    index = image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in nose))
    direction_y = np.array(image.GetDirection()).reshape(3, 3)[1, 1]
    rows = int(index[1] + np.sign(direction_y) * 60 / image.GetSpacing()[1])
    cut = arr[:, rows:, :] if direction_y > 0 else arr[:, :rows, :]
    back = sitk.GetImageFromArray(np.ascontiguousarray(cut))
    back.SetSpacing(image.GetSpacing())
    back.SetDirection(image.GetDirection())
    origin = image.TransformIndexToPhysicalPoint((0, rows if direction_y > 0 else 0, 0))
    back.SetOrigin(origin)
    path = tmp_path / "back.nii.gz"
    sitk.WriteImage(back, str(path))
    out = tmp_path / "out"
    r = cli("deface", str(path), "--out", str(out))
    assert r.returncode == 6, r.stdout + r.stderr
    assert "refusing to deface" in r.stderr or "no usable face" in r.stderr
    assert not out.exists() or not any(p for p in out.rglob("*") if p.is_file())


def test_existing_output_and_bad_method_fail_before_any_work(
    nifti_cohort: Path, tmp_path: Path, cli
) -> None:
    scan = _nifti_scan(nifti_cohort)
    (tmp_path / scan.name).write_text("keep me")
    r = cli("deface", str(scan), "--out", str(tmp_path))
    assert r.returncode == 5 and "already exists" in r.stderr
    assert (tmp_path / scan.name).read_text() == "keep me"
    assert cli("deface", str(scan), "--out", str(tmp_path), "--method", "blur").returncode == 4


def test_generic_face_ships_and_is_rebuilt_from_the_face_model() -> None:
    from conftest import FACE_MODEL, needs_face_model

    from ctface.deid.generic_face import build_generic_face, generic_face

    shipped = generic_face()
    assert shipped.height_mm.shape == (256, 256)
    needs_face_model()
    rebuilt = build_generic_face(FACE_MODEL)
    both = np.isfinite(shipped.height_mm) & np.isfinite(rebuilt.height_mm)
    assert both.mean() > 0.5
    assert np.abs(shipped.height_mm[both] - rebuilt.height_mm[both]).max() < 0.1
    assert abs(shipped.eye_distance_mm - rebuilt.eye_distance_mm) < 1e-6


def test_audit_end_to_end_on_two_people(people: Path, tmp_path: Path, cli) -> None:
    """Reference = first scans, shared = second scans (one defaced by remove): the report, the
    CSV and the JSON agree, the intact scan is re-identified by ctface and ICP."""
    ref, shared = tmp_path / "ref", tmp_path / "shared"
    truth = ["scan,person"]
    for person in ("S0001", "S0002"):
        (ref / person).mkdir(parents=True)
        (ref / person / f"{person}_01.nii.gz").symlink_to(people / person / f"{person}_01.nii.gz")
    shared.mkdir()
    (shared / "a.nii.gz").symlink_to(people / "S0001" / "S0001_02.nii.gz")
    ctface.deface(people / "S0002" / "S0002_02.nii.gz", tmp_path / "d")
    (shared / "b.nii.gz").symlink_to(tmp_path / "d" / "S0002_02.nii.gz")
    truth += ["a.nii.gz,S0001", "b.nii.gz,S0002"]
    (tmp_path / "truth.csv").write_text("\n".join(truth) + "\n")
    out = tmp_path / "audit"
    r = cli("audit", "--scans", str(shared), "--reference", str(ref), "--truth",
            str(tmp_path / "truth.csv"), "--out", str(out), "--attack", "ctface", "--attack",
            "surface-icp", "--boot", "20", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "audit.json").read_text())
    assert {a["attack"] for a in doc["attacks"]} == {"ctface", "surface-icp"}
    scans = {s["probe_id"]: s for s in doc["scans"]}
    assert scans["a.nii.gz"]["attacks"]["ctface"]["rank"] == 1
    assert doc["face_presence"]["a.nii.gz"]["gate"] == "usable"
    html = (out / "report.html").read_text()
    assert "a.nii.gz" in html and "b.nii.gz" in html
    assert (out / "scans.csv").read_text().count("\n") == 3


def test_audit_against_a_gallery_keeps_the_reidentified_scans(
    people: Path, tmp_path: Path, cli
) -> None:
    """Reference = a gallery: the shared scan ctface re-identifies becomes a finding in it
    (the service's review page), with its image and the person's gallery scan."""
    from ctface.gallery.review import list_findings, probe_png
    from ctface.gallery.store import GalleryDatabase

    db = tmp_path / "g.db"
    with ctface.Gallery.open(db) as g:
        for person in ("S0001", "S0002"):
            g.enroll(people / person / f"{person}_01.nii.gz", person)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "a.nii.gz").symlink_to(people / "S0001" / "S0001_02.nii.gz")
    (tmp_path / "truth.csv").write_text("scan,person\na.nii.gz,S0001\n")
    args = ("audit", "--scans", str(shared), "--reference", str(db), "--truth",
            str(tmp_path / "truth.csv"), "--attack", "ctface", "--boot", "20")  # fmt: skip
    for n in (1, 2):  # a second audit updates the finding, never adds a copy
        r = cli(*args, "--out", str(tmp_path / f"audit{n}"))
        assert r.returncode == 0, r.stderr
    with GalleryDatabase(db) as g:
        found, total = list_findings(g)
        assert total == 1 and found[0].kind == "re-identified" and found[0].origin == "audit"
        assert found[0].detail["person"] == "S0001" and found[0].detail["worst_rank"] == 1
        assert [s["patient_id"] for s in found[0].detail["scans"]] == ["S0001"]
        assert (probe_png(g, found[0].finding_id) or b"")[:4] == b"\x89PNG"


@pytest.mark.parametrize("bad", ["no-truth-columns", "missing-reference"])
def test_audit_bad_input(people: Path, tmp_path: Path, cli, bad: str) -> None:
    truth = tmp_path / "t.csv"
    truth.write_text("a,b\n1,2\n" if bad == "no-truth-columns" else "scan,person\n")
    ref = tmp_path / "nowhere" if bad == "missing-reference" else people
    r = cli("audit", "--scans", str(people), "--reference", str(ref), "--truth", str(truth),
            "--out", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 4 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_only_the_image_stack_is_written(dicom_cohort: Path, tmp_path: Path) -> None:
    """A localizer (another orientation) in the series is left out, not shared uncut."""
    from ctface.deid.output import stack_files

    files = sorted(_dicom_scan(dicom_cohort).glob("*.dcm"))[:3]
    odd = pydicom.dcmread(files[0])
    odd.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    odd.save_as(tmp_path / "localizer.dcm")
    kept, skipped = stack_files([*files, tmp_path / "localizer.dcm"])
    assert kept == files and skipped == 1


def test_nifti_whose_sform_and_qform_disagree_is_refused(
    nifti_cohort: Path, tmp_path: Path
) -> None:
    import nibabel as nib

    img = nib.load(_nifti_scan(nifti_cohort))
    moved = img.affine.copy()
    moved[:3, 3] += [10.0, 20.0, 30.0]
    odd = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
    odd.set_sform(moved, code=2)
    odd.set_qform(img.affine, code=1)
    path = tmp_path / "odd.nii.gz"
    nib.save(odd, path)
    with pytest.raises(ctface.InvalidInputError, match="sform and qform"):
        ctface.deface(path, tmp_path / "out")
    assert not (tmp_path / "out" / "odd.nii.gz").exists()
