"""ctface.ingest: DICOM folders/series choice, enhanced DICOM, NIfTI/NRRD/MHA, geometry, errors.

Synthetic volumes sample one analytic head (ellipsoid skull, nose, a bright marker on the
patient's left) on grids of any orientation, so every variant shows the same patient.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian
from scipy import ndimage

from ctface.errors import InvalidInputError, NoFaceError
from ctface.ingest import canonicalize, find_head, load_ct, read_ct
from ctface.ingest.volume import CtVolume
from ctface.phantom.export import DicomSeriesInfo, make_uid, write_dicom_series

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL = SHARED / "data" / "real_ct"
S = 3.0  # mm, isotropic synthetic voxels
NI, NJ, NK = 64, 64, 40
LO = np.array([-94.5, -94.5, -90.0])  # LPS of the first voxel centre of the axial grid
HI = LO + S * (np.array([NI, NJ, NK]) - 1)
CENTRE = np.array([0.0, 0.0, -50.0])


def phantom_hu(lps: np.ndarray) -> np.ndarray:
    """The analytic head: air, skin/soft tissue, skull shell, nose (anterior), left marker."""
    x, y, z = (lps - CENTRE).T
    r = (x / 60) ** 2 + (y / 75) ** 2 + (z / 70) ** 2
    hu = np.full(len(lps), -1024.0)
    hu[r < 1] = 40
    hu[(r < 0.85) & (r >= 0.7)] = 1000
    hu[r < 0.7] = 30
    hu[(x / 12) ** 2 + ((y + 75) / 16) ** 2 + ((z + 10) / 22) ** 2 < 1] = 40
    hu[(x > 45) & (abs(y) < 10) & (abs(z) < 10) & (r < 1)] = 2000
    return hu


def sample(axes: np.ndarray, origin: np.ndarray, shape_ijk: tuple[int, int, int]) -> CtVolume:
    """The phantom on a grid: ``axes`` columns = LPS steps (mm) of i, j, k."""
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = axes, origin
    ni, nj, nk = shape_ijk
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    lps = ijk @ affine[:3, :3].T + affine[:3, 3]
    return CtVolume(phantom_hu(lps).reshape(nk, nj, ni).astype(np.int16), affine)


AXIAL = sample(np.diag([S, S, S]), LO, (NI, NJ, NK))
# Same voxel centres, other orientations: coronal (rows inferior, slices anterior), prone.
CORONAL = sample(
    np.array([[S, 0, 0], [0, 0, -S], [0, -S, 0]]).astype(float),
    np.array([LO[0], HI[1], HI[2]]),
    (NI, NK, NJ),
)
PRONE = sample(np.diag([-S, -S, S]), np.array([HI[0], HI[1], LO[2]]), (NI, NJ, NK))
_c, _s = np.cos(np.radians(30)), np.sin(np.radians(30))
_ROT = np.array([[_c, -_s, 0], [_s, _c, 0], [0, 0, 1]])  # 30 deg about z, centred on the head
OBLIQUE = sample(_ROT * S, [0, 0, LO[2]] - _ROT @ [31.5 * S, 31.5 * S, 0], (NI, NJ, NK))


def info(name: str, **kw: object) -> DicomSeriesInfo:
    return DicomSeriesInfo(
        patient_id="P1",
        patient_name="Test^One",
        study_date="20240102",
        study_time="101500",
        study_uid=make_uid("study"),
        series_uid=make_uid("series", name),
        frame_of_reference_uid=make_uid("for"),
        **kw,  # type: ignore[arg-type]
    )


def write(volume: CtVolume, folder: Path, name: str, **kw: object) -> list[Path]:
    return write_dicom_series(volume, folder, info(name, **kw))


def edit(files: list[Path], **attrs: object) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        for key, value in attrs.items():
            setattr(ds, key, value)
        ds.save_as(f)


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


# ---------------------------------------------------------------- DICOM folders and series


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nested folders: the CT (files without extension), a coarser CT, a localizer, an MR."""
    root = tmp_path_factory.mktemp("mixed")
    for f in write(AXIAL, root / "study" / "a" / "ct", "ct", signed=False):
        f.rename(f.with_suffix(""))
    coarse = sample(np.diag([S, S, 2 * S]), LO, (NI, NJ, 20))
    write(coarse, root / "study" / "b" / "coarse", "coarse")
    scout = sample(np.diag([S, S, S]), LO + [0, 0, 60], (NI, NJ, 2))
    edit(write(scout, root / "loc", "loc"), ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    mr = write(AXIAL, root / "study" / "mr", "mr")
    edit(mr, Modality="MR", SOPClassUID="1.2.840.10008.5.1.4.1.1.4")
    (root / "study" / "notes.txt").write_text("not an image\n")
    return root


def test_mixed_folder_chooses_the_ct_series(mixed: Path) -> None:
    vol = read_ct(mixed)
    meta = vol.metadata
    assert meta["series_uid"] == make_uid("series", "ct")
    assert meta["format"] == "dicom" and meta["modality"] == "CT" and meta["n_files"] == NK
    found = {s["uid"]: s for s in meta["chosen_from"]}
    assert len(found) == 4
    assert found[make_uid("series", "loc")]["why_not"] == "localizer (scout) image"
    assert found[make_uid("series", "mr")]["why_not"].startswith("modality MR")
    assert any(n.startswith("chose series") for n in meta["notes"])
    assert np.array_equal(vol.hu, AXIAL.hu)  # unsigned storage + intercept -1024 undone
    assert np.allclose(vol.affine_lps, AXIAL.affine_lps, atol=1e-4)


def test_series_uid_override(mixed: Path) -> None:
    vol = read_ct(mixed, series_uid=make_uid("series", "coarse"))
    assert vol.hu.shape == (20, NJ, NI) and vol.spacing[2] == pytest.approx(2 * S)
    with pytest.raises(InvalidInputError) as exc:
        read_ct(mixed, series_uid=make_uid("series", "mr"))
    assert "modality MR" in one_line(exc)
    with pytest.raises(InvalidInputError) as exc:
        read_ct(mixed, series_uid="1.2.3.4")
    assert "is not in" in one_line(exc)


def test_single_slice_reads_its_series(mixed: Path) -> None:
    one = sorted((mixed / "study" / "b" / "coarse").iterdir())[3]
    vol = read_ct(one)
    assert vol.metadata["series_uid"] == make_uid("series", "coarse")
    assert vol.hu.shape[0] == 20


def test_missing_slice_is_interpolated_from_positions(tmp_path: Path) -> None:
    files = write(AXIAL, tmp_path / "s", "gap")
    files[19].unlink()
    vol = read_ct(tmp_path / "s")
    assert vol.hu.shape == AXIAL.hu.shape
    assert np.allclose(vol.affine_lps, AXIAL.affine_lps, atol=1e-4)
    keep = [k for k in range(NK) if k != 19]
    assert np.array_equal(vol.hu[keep], AXIAL.hu[keep])
    mean = (AXIAL.hu[18].astype(float) + AXIAL.hu[20]) / 2
    assert np.abs(vol.hu[19] - mean).max() <= 0.5
    assert any("missing slices" in n for n in vol.metadata["notes"])


def test_non_uniform_steps_are_placed_at_their_positions(tmp_path: Path) -> None:
    files = write(AXIAL, tmp_path / "s", "steps")
    for f in files[1::3]:  # steps alternate 3 and 6 mm
        f.unlink()
    vol = read_ct(tmp_path / "s")
    kept = [k for k in range(NK) if k % 3 != 1]
    z = vol.ijk_to_lps(np.zeros((1, 3)))[0, 2] + vol.spacing[2] * np.arange(vol.hu.shape[0])
    for k in kept:
        zk = LO[2] + S * k
        grid_k = int(np.argmin(abs(z - zk)))
        assert abs(z[grid_k] - zk) < 0.01
        assert np.array_equal(vol.hu[grid_k], AXIAL.hu[k])
    assert vol.metadata["slice_positions_mm"] == pytest.approx([LO[2] + S * k for k in kept])


@pytest.mark.parametrize("name", ["coronal", "prone", "oblique"])
def test_any_orientation_gives_the_same_canonical_volume(tmp_path: Path, name: str) -> None:
    volume = {"coronal": CORONAL, "prone": PRONE, "oblique": OBLIQUE}[name]
    files = write(volume, tmp_path / name, name)
    if name == "prone":
        edit(files, PatientPosition="HFP")
    vol = read_ct(tmp_path / name)
    # read_ct sorts slices along row x column: a stack written the other way comes back flipped
    flip = vol.affine_lps[:3, 2] @ volume.affine_lps[:3, 2] < 0
    assert np.array_equal(vol.hu, volume.hu[::-1] if flip else volume.hu)
    assert np.allclose(vol.affine_lps[:3, :2], volume.affine_lps[:3, :2], atol=1e-6)
    last = volume.ijk_to_lps(np.array([0, 0, NK - 1 if name != "coronal" else NJ - 1]))
    assert np.allclose(vol.origin, last[0] if flip else volume.origin, atol=1e-4)
    canon = canonicalize(vol, S)
    assert np.allclose(canon.direction, np.eye(3)) and canon.spacing == pytest.approx((S, S, S))
    assert canon.metadata["canonical"] == "LPS, i->L j->P k->S, 3 mm"
    if name != "oblique":  # same voxel centres: exactly the axial volume
        assert np.array_equal(canon.hu, AXIAL.hu)
        assert np.allclose(canon.affine_lps, AXIAL.affine_lps, atol=1e-4)
    # against the analytic head at the canonical voxel centres (interpolation at the edges only)
    ni, nj, nk = canon.shape_ijk
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    lps = canon.ijk_to_lps(np.stack([i.ravel(), j.ravel(), k.ravel()], 1))
    inside = vol.lps_to_ijk(lps)
    valid = np.all((inside > 0.5) & (inside < np.array(vol.shape_ijk) - 1.5), axis=1)
    truth = phantom_hu(lps)[valid] > -350
    assert np.mean((canon.hu.ravel()[valid] > -350) == truth) > 0.98
    marker = canon.ijk_to_lps(np.argwhere(canon.hu > 1500)[:, ::-1]).mean(axis=0)
    assert marker[0] > 40  # the left marker stays on the patient's left (+x)


def test_gantry_tilt_is_a_shear_that_keeps_every_voxel_in_place(tmp_path: Path) -> None:
    files = write(AXIAL, tmp_path / "t", "tilt")
    shift = np.tan(np.radians(15.0)) * S
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [f"{ipp[0]:.4f}", f"{ipp[1] + k * shift:.4f}", f"{ipp[2]:.4f}"]
        ds.save_as(f)
    vol = read_ct(tmp_path / "t")
    assert any("gantry tilt 15.0 deg" in n for n in vol.metadata["notes"])
    assert np.allclose(vol.affine_lps[:3, 2], [0, shift, S], atol=1e-3)
    for k in (0, 17, NK - 1):
        corner = np.array([[0.0, 0.0], [63.0, 0.0], [0.0, 63.0]])
        lps = LO + [0, k * shift, k * S] + np.c_[corner * S, np.zeros(3)]
        assert np.allclose(vol.lps_to_ijk(lps), np.c_[corner, np.full(3, k)], atol=1e-3)
        assert np.array_equal(vol.hu[k], AXIAL.hu[k])


def test_enhanced_multiframe(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, make_uid("enh", "sop")
    ds.Modality, ds.PatientID, ds.StudyDate = "CT", "P9", "20240301"
    ds.SeriesInstanceUID, ds.StudyInstanceUID = make_uid("enh"), make_uid("enh", "study")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = NJ, NI, NK
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [S, S]
    shared.PixelMeasuresSequence[0].SliceThickness = S
    shared.PixelValueTransformationSequence = Sequence([Dataset()])
    pvt = shared.PixelValueTransformationSequence[0]
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1, -1024, "HU"
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    order = np.random.default_rng(0).permutation(NK)  # frames stored out of order
    frames = []
    for k in order:
        fg = Dataset()
        fg.PlanePositionSequence = Sequence([Dataset()])
        ipp = [float(LO[0]), float(LO[1]), float(LO[2] + S * k)]
        fg.PlanePositionSequence[0].ImagePositionPatient = ipp
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = (AXIAL.hu[order].astype(np.int32) + 1024).astype("<u2").tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    vol = read_ct(tmp_path / "enhanced.dcm")
    assert vol.metadata["format"] == "dicom-enhanced" and vol.metadata["patient_id"] == "P9"
    assert np.array_equal(vol.hu, AXIAL.hu)
    assert np.allclose(vol.affine_lps, AXIAL.affine_lps, atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_volume_files_round_trip_through_simpleitk(tmp_path: Path, suffix: str) -> None:
    img = sitk.GetImageFromArray(CORONAL.hu)
    img.SetSpacing(CORONAL.spacing)
    img.SetOrigin(CORONAL.origin.tolist())
    img.SetDirection(CORONAL.direction.ravel().tolist())
    sitk.WriteImage(img, str(tmp_path / f"v{suffix}"))
    vol = read_ct(tmp_path / f"v{suffix}")
    fmt = {".nii.gz": "nifti", ".nrrd": "nrrd", ".mha": "metaimage"}[suffix]
    assert vol.metadata["format"] == fmt
    assert np.array_equal(vol.hu, CORONAL.hu)
    assert np.allclose(vol.affine_lps, CORONAL.affine_lps, atol=1e-4)
    assert np.array_equal(load_ct(tmp_path / f"v{suffix}", spacing_mm=S).hu, AXIAL.hu)


# ---------------------------------------------------------------- head finding


def _body(head: bool, n_k: int) -> CtVolume:
    """4 mm grid: a trunk (30 x 22 cm) from the bottom, and a neck and head on top if ``head``."""
    k, j, i = np.meshgrid(np.arange(n_k), np.arange(75), np.arange(100), indexing="ij")
    x, y, z = -200 + 4 * i, -150 + 4 * j, -1000 + 4 * k
    top = -1000 + 4 * (n_k - 1)
    trunk = ((x / 150) ** 2 + (y / 110) ** 2 < 1) & (z < (top - 300 if head else top + 10))
    body = trunk | (head & (x**2 + y**2 < 55**2) & (z < top - 180))
    if head:
        body |= ((x / 75) ** 2 + (y / 95) ** 2 + ((z - top + 110) / 100) ** 2) < 1
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-200.0, -150.0, -1000.0]
    return CtVolume(np.where(body, 40, -1024).astype(np.int16), affine)


def test_find_head_crops_a_whole_body_scan() -> None:
    vol = _body(True, 200)  # 800 mm
    top = vol.origin[2] + 4 * 199
    head = find_head(vol)
    z = head.origin[2] + 4 * np.arange(head.hu.shape[0])
    assert head.metadata["head"]["cropped"]
    assert z.max() == pytest.approx(top) and 240 <= z.max() - z.min() <= 262
    assert head.metadata["head"]["top_z_mm"] == pytest.approx(top - 10, abs=6)
    # left-right: the head (75 mm half-width) and 90 mm around it; front-back: the whole field
    x = head.origin[0] + 4 * np.arange(head.hu.shape[2])
    assert -170 <= x.min() <= -160 and 160 <= x.max() <= 170
    assert head.hu.shape[1] == vol.hu.shape[1]
    i0 = int(round((head.origin[0] - vol.origin[0]) / 4))
    expect = vol.hu[-head.hu.shape[0] :, :, i0 : i0 + head.hu.shape[2]]
    assert np.array_equal(head.hu, expect)


def test_no_head_in_field_of_view() -> None:
    with pytest.raises(NoFaceError) as exc:
        find_head(_body(False, 100))
    assert "No head in the field of view" in one_line(exc)
    air = CtVolume(np.full((NK, NJ, NI), -1024, np.int16), AXIAL.affine_lps)
    with pytest.raises(NoFaceError) as exc:
        find_head(air)
    assert "no body" in one_line(exc)


# ---------------------------------------------------------------- bad input


def _bad(tmp: Path, case: str) -> Path:
    if case == "missing":
        return tmp / "nothing_here"
    if case == "empty":
        (tmp / "e").mkdir()
        return tmp / "e"
    if case == "text":
        (tmp / "t").mkdir()
        for n in range(3):
            (tmp / "t" / f"f{n}.txt").write_text("hello\n" * 50)
        return tmp / "t"
    if case == "truncated_pixels":
        files = write(AXIAL, tmp / "tp", "tp")
        files[10].write_bytes(files[10].read_bytes()[:3000])
        return tmp / "tp"
    if case == "truncated_file":
        files = write(AXIAL, tmp / "tf", "tf")
        files[0].write_bytes(files[0].read_bytes()[:200])
        return files[0]
    if case == "three_slices":
        write(sample(np.diag([S, S, S]), LO, (NI, NJ, 3)), tmp / "3", "three")
        return tmp / "3"
    if case == "mr_only":
        edit(write(AXIAL, tmp / "mr", "mr"), Modality="MR")
        return tmp / "mr"
    if case == "zero_pixel_spacing":
        edit(write(AXIAL, tmp / "z", "z"), PixelSpacing=["0", "0"])
        return tmp / "z"
    img = sitk.GetImageFromArray(AXIAL.hu)
    if case == "spacing_25mm":
        img.SetSpacing((25.0, 25.0, 25.0))
    if case == "too_many_slices":
        img = sitk.GetImageFromArray(np.full((2001, 2, 2), -1024, np.int16))
    if case == "not_hu":
        img = sitk.GetImageFromArray((AXIAL.hu + 1024).astype(np.int16) + 100)
    sitk.WriteImage(img, str(tmp / "v.nrrd"))
    return tmp / "v.nrrd"


BAD = {
    "missing": "does not exist",
    "empty": "is empty",
    "text": "no DICOM images",
    "truncated_pixels": "Cannot read the pixel data",
    "truncated_file": "truncated or corrupt DICOM",
    "three_slices": "only 3 slices",
    "mr_only": "modality MR, not CT",
    "zero_pixel_spacing": "pixel spacing 0 x 0 mm is absurd",
    "spacing_25mm": "25 x 25 x 25 mm is absurd",
    "too_many_slices": "2001 slices",
    "not_hu": "Hounsfield",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_one_line_typed_error(tmp_path: Path, case: str) -> None:
    path = _bad(tmp_path, case)
    with pytest.raises(InvalidInputError) as exc:
        load_ct(path)
    assert exc.type is InvalidInputError
    assert BAD[case] in one_line(exc)


def test_absurd_resampling_size_and_spacing_setting() -> None:
    with pytest.raises(InvalidInputError) as exc:
        canonicalize(AXIAL, 0.05)
    assert "voxels" in one_line(exc)
    for bad in (0.0, -1.0, 25.0, float("nan")):
        with pytest.raises(InvalidInputError):
            canonicalize(AXIAL, bad)


def test_all_air_volume_has_no_face(tmp_path: Path) -> None:
    air = CtVolume(np.full((NK, NJ, NI), -1024, np.int16), AXIAL.affine_lps)
    write(air, tmp_path / "air", "air")
    with pytest.raises(NoFaceError) as exc:
        load_ct(tmp_path / "air")
    assert exc.value.exit_code == 6 and "No head" in one_line(exc)


def test_padding_and_far_below_air_become_air(tmp_path: Path) -> None:
    vol = copy.deepcopy(AXIAL)
    vol.hu[:, :4] = -2000  # padding outside the reconstruction circle
    vol.hu[:, 4:6] = -3024
    write(vol, tmp_path / "p", "pad", pixel_padding_value=-2000)
    got = read_ct(tmp_path / "p")
    assert got.hu.min() == -1024 and np.array_equal(got.hu[:, 6:], AXIAL.hu[:, 6:])
    notes = " ".join(got.metadata["notes"])
    assert "padding voxels" in notes and "below -1100 HU" in notes


# ---------------------------------------------------------------- real CTs (../shared)


def real(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real CT {name} not found under {REAL} (../shared beside the repository)")
    return path


def _ipps(folder: Path) -> tuple[list[Path], np.ndarray]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    ipp = [
        [float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient]
        for f in files
    ]
    return files, np.array(ipp)


def test_real_invesalius_non_uniform_steps() -> None:
    folder = real("invesalius_0051") / "dicom"
    vol = read_ct(folder)
    meta = vol.metadata
    assert meta["n_files"] == 108 and meta["modality"] == "CT"
    assert meta["series_uid"] == "1.3.12.2.1107.5.1.1.20707.20020604104421111.3"
    assert vol.spacing[:2] == pytest.approx((0.4785156, 0.4785156))
    assert vol.shape_ijk[:2] == (512, 512)
    assert np.allclose(vol.direction, np.eye(3))
    assert vol.origin == pytest.approx([-122.49999, -167.49999, 116.0])
    assert (vol.hu.min(), vol.hu.max()) == (-1024, 3033)
    assert vol.spacing[2] == pytest.approx(1.0) and vol.hu.shape[0] == 161  # 116 ... 276 mm
    files, ipp = _ipps(folder)
    assert sorted(meta["slice_positions_mm"]) == pytest.approx(sorted(ipp[:, 2]), abs=0.01)
    z = vol.origin[2] + vol.spacing[2] * np.arange(vol.hu.shape[0])
    on_grid = 0
    for f, p in zip(files, ipp, strict=True):
        k = int(np.argmin(abs(z - p[2])))
        if abs(z[k] - p[2]) < 0.01:  # an original slice on the 1 mm grid: copied exactly
            on_grid += 1
            ds = pydicom.dcmread(f)
            assert np.array_equal(vol.hu[k], ds.pixel_array.astype(np.int32) - 1024)
    assert on_grid == 55  # the slices at whole-mm positions
    assert any("non-uniform slice steps 1.00-1.50 mm" in n for n in meta["notes"])
    canon = load_ct(folder)
    assert np.allclose(canon.direction, np.eye(3)) and canon.spacing == pytest.approx((1, 1, 1))
    assert canon.origin[2] == pytest.approx(116.0) and canon.hu.shape[0] == 161


def test_real_ge_gantry_tilt() -> None:
    folder = real("ge_gantry_tilt") / "dicom"
    vol = read_ct(folder)
    assert vol.metadata["n_files"] == 28 and vol.shape_ijk[:2] == (512, 512)
    assert vol.spacing[:2] == pytest.approx((0.4882812, 0.4882812))
    assert vol.direction[:, 1] == pytest.approx([0, 0.9483237, -0.3173047])
    assert any("gantry tilt 18.5 deg" in n for n in vol.metadata["notes"])
    assert vol.hu.min() == -1024 and 2000 < vol.hu.max() <= 2121  # padding -1500 -> air
    files, ipp = _ipps(folder)
    assert ipp[:, 0] == pytest.approx(-125.0) and ipp[:, 1] == pytest.approx(-123.5404569)
    assert ipp[:, 2].min() == pytest.approx(5.836, abs=1e-3)
    assert ipp[:, 2].max() == pytest.approx(157.776, abs=1e-3)
    r, c = np.array([1.0, 0, 0]), np.array([0, 0.9483237, -0.3173047])
    for p in ipp:  # every original voxel maps to its LPS position
        ij = np.array([[0, 0], [511, 0], [0, 511], [300, 200]], dtype=float)
        lps = p + ij[:, :1] * 0.4882812 * r + ij[:, 1:] * 0.4882812 * c
        got = vol.lps_to_ijk(lps)
        assert np.abs(got[:, :2] - ij).max() < 0.5
        assert np.ptp(got[:, 2]) < 0.01 and -0.01 < got[0, 2] < vol.hu.shape[0] - 0.99
    # each original slice's pixels are found at its own (continuous) k of the regular grid
    nk = vol.hu.shape[0]

    def at(kc: float) -> np.ndarray:
        k0 = min(int(np.floor(kc)), nk - 2)
        return (k0 + 1 - kc) * vol.hu[k0].astype(float) + (kc - k0) * vol.hu[k0 + 1]

    for f, p in zip(files, ipp, strict=True):
        raw = np.clip(pydicom.dcmread(f).pixel_array.astype(float), -1024, None)  # -1500 -> air
        kc = float(vol.lps_to_ijk(p)[0, 2])
        err = np.abs(at(kc) - raw).mean()
        assert err < 15 and all(
            err < np.abs(at(o) - raw).mean() for o in (kc - 1, kc + 1) if 0 <= o <= nk - 1
        )
        if abs(kc - round(kc)) < 1e-3:  # an original on the grid: copied exactly
            assert np.array_equal(vol.hu[round(kc)], raw)


def test_real_vtk_headsq_metaimage() -> None:
    path = real("vtk_headsq") / "headsq.mha"
    vol = read_ct(path)
    assert vol.shape_ijk == (64, 64, 93) and vol.spacing == pytest.approx((3.2, 3.2, 1.5))
    assert np.allclose(vol.direction, np.diag([1, -1, -1])) and np.allclose(vol.origin, 0)
    assert (vol.hu.min(), vol.hu.max()) == (-1024, 2902)
    canon = load_ct(path)
    assert np.allclose(canon.direction, np.eye(3))
    assert canon.origin == pytest.approx([0.0, -201.6, -138.0], abs=1e-3)
    assert canon.hu.shape == (139, 202, 202)
    # every canonical voxel = trilinear interpolation of the original at the same LPS point
    ni, nj, nk = canon.shape_ijk
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    src = vol.lps_to_ijk(canon.ijk_to_lps(np.stack([i.ravel(), j.ravel(), k.ravel()], 1)))
    expect = ndimage.map_coordinates(vol.hu.astype(float), src[:, ::-1].T, order=1, cval=-1024)
    assert np.abs(canon.hu.ravel() - expect).max() <= 1.0


def test_real_visible_human_nrrd() -> None:
    path = real("visible_human") / "visible_human_head_approx_hu.nrrd"
    vol = read_ct(path)
    assert vol.shape_ijk == (512, 512, 234) and vol.spacing == pytest.approx((0.9, 0.9, 1.0))
    assert np.allclose(vol.direction, np.eye(3)) and np.allclose(vol.origin, 0)
    assert vol.hu.min() == -1024 and vol.hu.max() <= 3071
    canon = load_ct(path, spacing_mm=2.0)
    # all slices kept; front-back cropped to 90 mm around the body (the head fills left-right)
    assert canon.hu.shape == (117, 191, 230) and canon.metadata["head"]["cropped"]


def test_real_single_file_of_a_series_is_enough() -> None:
    vol = read_ct(real("ge_gantry_tilt") / "dicom" / "In_GE_05.dcm")
    assert vol.metadata["n_files"] == 28


def test_header_checks_accept_what_simpleitk_reads(tmp_path: Path) -> None:
    """The headers checked before SimpleITK reads them (``ingest.volume_headers``) are not
    refused for what real files hold: an attached NRRD with CRLF lines, a data file name
    with a space, a data file that is a link out of the folder (DataLad, git-annex)."""
    import SimpleITK as sitk

    from ctface.ingest.volume_headers import check_metaimage, check_nrrd

    image = sitk.GetImageFromArray(np.zeros((12, 16, 16), np.int16))
    sitk.WriteImage(image, str(tmp_path / "a.nrrd"), useCompression=False)
    raw = (tmp_path / "a.nrrd").read_bytes()
    end = raw.index(b"\n\n")
    crlf = raw[:end].replace(b"\n", b"\r\n") + b"\r\n\r\n" + raw[end + 2 :]
    (tmp_path / "crlf.nrrd").write_bytes(crlf)
    check_nrrd(tmp_path / "crlf.nrrd")
    (tmp_path / "cut.nrrd").write_bytes(crlf[:-10])
    with pytest.raises(InvalidInputError, match="bytes of data are present"):
        check_nrrd(tmp_path / "cut.nrrd")
    sitk.WriteImage(image, str(tmp_path / "my scan.mhd"))
    check_metaimage(tmp_path / "my scan.mhd")
    annex = tmp_path / ".git" / "annex"
    annex.mkdir(parents=True)
    (tmp_path / "my scan.raw").rename(annex / "KEY")
    (tmp_path / "my scan.raw").symlink_to(annex / "KEY")
    check_metaimage(tmp_path / "my scan.mhd")
    header = (tmp_path / "my scan.mhd").read_text()
    (tmp_path / "up.mhd").write_text(header.replace("= my scan.raw", "= ../my scan.raw"))
    with pytest.raises(InvalidInputError, match="outside the header's folder"):
        check_metaimage(tmp_path / "up.mhd")
