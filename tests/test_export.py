"""Round trips of ctface.phantom.export through pydicom, SimpleITK, nibabel and dcm2niix."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_rescale

from ctface.errors import InvalidInputError, OutputError
from ctface.ingest.volume import CtVolume
from ctface.phantom.export import DicomSeriesInfo, make_uid, write_dicom_series, write_nifti

NI, NJ, NK = 40, 32, 12
SPACING = (0.7, 0.7, 2.5)
ORIGIN = (-12.3, 40.1, -80.0)
MARKER = (3, 5, 2)  # (i, j, k) of the only voxel with HU 2000
# dcm2niix warns about any Manufacturer it does not know; "ctface" is honest, so this is expected.
VENDOR_WARNING = "Unable to determine manufacturer (0008,0070)"


def _rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


DIRECTIONS = {
    "axial": np.eye(3),
    "flipped": np.diag([1.0, 1.0, -1.0]),  # k points inferior
    "rotated": _rot_z(30.0),
}


def _volume(direction: np.ndarray) -> CtVolume:
    k, j, i = np.meshgrid(np.arange(NK), np.arange(NJ), np.arange(NI), indexing="ij")
    hu = (-1024 + (7 * i + 131 * j + 977 * k + i * j) % 3024).astype(np.int16)
    hu[MARKER[2], MARKER[1], MARKER[0]] = 2000
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(SPACING)
    affine[:3, 3] = ORIGIN
    return CtVolume(hu, affine)


def _info(signed: bool = True, **kw: Any) -> DicomSeriesInfo:
    return DicomSeriesInfo(
        patient_id="PHANTOM01",
        patient_name="Phantom^One",
        study_date="20240102",
        study_time="101500",
        study_uid=make_uid("study", "PHANTOM01"),
        series_uid=make_uid("series", "PHANTOM01", str(signed)),
        frame_of_reference_uid=make_uid("for", "PHANTOM01"),
        signed=signed,
        patient_age="045Y",
        **kw,
    )


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], Path]:
    root = tmp_path_factory.mktemp("series")
    out = {}
    for name, direction in DIRECTIONS.items():
        for signed in (True, False):
            folder = root / f"{name}_{signed}"
            files = write_dicom_series(_volume(direction), folder, _info(signed))
            assert [f.name for f in files] == [f"IM{k:05d}.dcm" for k in range(1, NK + 1)]
            out[name, signed] = folder
    return out


def _assert_same_world(vol: CtVolume, data: np.ndarray, affine_lps: np.ndarray) -> None:
    """Every voxel of ``data`` (indexed [a, b, c] by its own axes) sits where ``vol`` has it."""
    idx = np.indices(data.shape).reshape(3, -1).T.astype(float)
    lps = idx @ affine_lps[:3, :3].T + affine_lps[:3, 3]
    ijk = vol.lps_to_ijk(lps)
    assert np.allclose(ijk, np.rint(ijk), atol=1e-3)
    i, j, k = np.rint(ijk).astype(int).T
    assert i.min() == 0 and j.min() == 0 and k.min() == 0
    assert (i.max(), j.max(), k.max()) == (NI - 1, NJ - 1, NK - 1)
    assert len(set(zip(i.tolist(), j.tolist(), k.tolist(), strict=True))) == i.size
    np.testing.assert_array_equal(data.reshape(-1), vol.hu[k, j, i])


def _sitk_affine(img: sitk.Image) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    a[:3, 3] = img.GetOrigin()
    return a


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_simpleitk_reads_series(series: dict, name: str, signed: bool) -> None:
    vol = _volume(DIRECTIONS[name])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series[name, signed])))
    img = reader.Execute()
    assert img.GetSize() == (NI, NJ, NK)
    np.testing.assert_allclose(img.GetSpacing(), SPACING, atol=1e-4)
    direction = np.array(img.GetDirection()).reshape(3, 3)
    expected_dir, expected_origin = vol.direction.copy(), vol.origin
    if direction[:, 2] @ vol.direction[:, 2] < 0:  # SimpleITK sorted the slices the other way
        expected_dir[:, 2] *= -1
        expected_origin = vol.ijk_to_lps(np.array([0, 0, NK - 1]))[0]
    np.testing.assert_allclose(direction, expected_dir, atol=1e-4)
    np.testing.assert_allclose(img.GetOrigin(), expected_origin, atol=1e-4)
    arr = sitk.GetArrayFromImage(img)  # [k, j, i]
    _assert_same_world(vol, np.transpose(arr, (2, 1, 0)), _sitk_affine(img))
    if name != "flipped":
        np.testing.assert_array_equal(arr, vol.hu)
    else:
        np.testing.assert_array_equal(arr, vol.hu[::-1])


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_pydicom_tags_and_pixels(series: dict, name: str, signed: bool) -> None:
    vol = _volume(DIRECTIONS[name])
    info = _info(signed)
    files = sorted(series[name, signed].iterdir())
    assert len(files) == NK
    for k, f in enumerate(files):
        raw = f.read_bytes()
        assert raw[:128] == b"\0" * 128 and raw[128:132] == b"DICM"
        ds = pydicom.dcmread(f)
        meta = ds.file_meta
        assert meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPInstanceUID == make_uid(info.series_uid, str(k))
        assert meta.ImplementationClassUID
        assert ds.Modality == "CT" and list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert ds.InstanceNumber == k + 1 and ds.PatientPosition == "HFS"
        assert ds.StudyInstanceUID == info.study_uid and ds.SeriesInstanceUID == info.series_uid
        assert ds.FrameOfReferenceUID == info.frame_of_reference_uid
        assert ds.PatientID == "PHANTOM01" and ds.PatientAge == "045Y"
        assert ds.Rows == NJ and ds.Columns == NI
        ipp = vol.ijk_to_lps(np.array([0, 0, k]))[0]
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], ipp, atol=1e-6)
        iop = [float(v) for v in ds.ImageOrientationPatient]
        np.testing.assert_allclose(iop[:3], vol.direction[:, 0], atol=1e-7)
        np.testing.assert_allclose(iop[3:], vol.direction[:, 1], atol=1e-7)
        assert all(len(str(v)) <= 16 for v in [*ds.ImagePositionPatient, *iop])
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [0.7, 0.7])
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 2.5
        assert ds.PixelRepresentation == int(signed)
        assert float(ds.RescaleIntercept) == (0.0 if signed else -1024.0)
        assert ds.pixel_array.dtype == (np.int16 if signed else np.uint16)
        np.testing.assert_array_equal(apply_rescale(ds.pixel_array, ds), vol.hu[k])


def test_dicom_pixel_spacing_order_and_thickness(tmp_path: Path) -> None:
    vol = _volume(np.eye(3))
    vol.affine_lps[:3, 0] *= 0.5 / 0.7  # columns 0.5 mm apart, rows 0.7 mm apart
    files = write_dicom_series(vol, tmp_path / "s", _info(slice_thickness_mm=3.0))
    ds = pydicom.dcmread(files[0])
    assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.5]  # [row spacing, column spacing]
    assert float(ds.SliceThickness) == 3.0 and float(ds.SpacingBetweenSlices) == 2.5


def test_unsigned_clips_and_padding(tmp_path: Path) -> None:
    vol = _volume(np.eye(3))
    hu = vol.hu.astype(np.float32)
    hu[0, 0, :3] = [-1500.4, -3000.0, 99.6]
    vol = CtVolume(hu, vol.affine_lps)
    unsigned = write_dicom_series(vol, tmp_path / "u", _info(False, pixel_padding_value=-1024))
    signed = write_dicom_series(vol, tmp_path / "s", _info(True, pixel_padding_value=-2000))
    du, dsg = pydicom.dcmread(unsigned[0]), pydicom.dcmread(signed[0])
    assert apply_rescale(du.pixel_array, du)[0, :3].tolist() == [-1024, -1024, 100]
    assert apply_rescale(dsg.pixel_array, dsg)[0, :3].tolist() == [-1500, -3000, 100]
    assert du.PixelPaddingValue == 0 and du["PixelPaddingValue"].VR == "US"
    assert dsg.PixelPaddingValue == -2000 and dsg["PixelPaddingValue"].VR == "SS"


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_nifti_roundtrip(tmp_path: Path, name: str, suffix: str) -> None:
    vol = _volume(DIRECTIONS[name])
    path = write_nifti(vol, tmp_path / f"ct{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"ct{suffix}"]
    img = nib.Nifti1Image.from_filename(path)
    assert img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.affine, vol.affine_ras, atol=1e-5)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.get_qform(), vol.affine_ras, atol=1e-5)
    assert img.header.get_xyzt_units()[0] == "mm"
    data = np.asanyarray(img.dataobj)
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data, vol.hu.transpose(2, 1, 0))
    simg = sitk.ReadImage(str(path))
    np.testing.assert_allclose(simg.GetOrigin(), vol.origin, atol=1e-4)
    np.testing.assert_allclose(np.reshape(simg.GetDirection(), (3, 3)), vol.direction, atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(simg), vol.hu)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_dcm2niix_converts_cleanly(series: dict, tmp_path: Path, name: str) -> None:
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix not installed (it is optional; install it to run this check)")
    vol = _volume(DIRECTIONS[name])
    for signed in (True, False):
        out = tmp_path / str(signed)
        out.mkdir()
        cmd = ["dcm2niix", "-z", "n", "-f", "out", "-o", str(out), str(series[name, signed])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        log = proc.stdout + proc.stderr
        bad = [
            line
            for line in log.splitlines()
            if ("warning" in line.lower() or "error" in line.lower()) and VENDOR_WARNING not in line
        ]
        assert proc.returncode == 0 and not bad, log
        img = nib.Nifti1Image.from_filename(out / "out.nii")
        data = np.rint(img.get_fdata()).astype(np.int32)
        np.testing.assert_array_equal(np.sort(data, axis=None), np.sort(vol.hu, axis=None))
        marker = np.argwhere(data == 2000)
        assert len(marker) == 1
        ras = img.affine @ np.append(marker[0], 1.0)
        np.testing.assert_allclose(ras[:3], (vol.affine_ras @ np.array([*MARKER, 1.0]))[:3], 1e-3)
        _assert_same_world(vol, data, np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine)


def test_outputs_are_deterministic(tmp_path: Path) -> None:
    vol = _volume(DIRECTIONS["rotated"])
    a = write_dicom_series(vol, tmp_path / "a", _info())
    b = write_dicom_series(vol, tmp_path / "b", _info())
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    n1 = write_nifti(vol, tmp_path / "x" / "one.nii.gz").read_bytes()
    n2 = write_nifti(vol, tmp_path / "y" / "one.nii.gz").read_bytes()
    assert n1 == n2 and n1[4:8] == b"\0\0\0\0"  # gzip MTIME field: no clock in the file
    assert make_uid("a", "b") == make_uid("a", "b") != make_uid("a", "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "x", "y"]


def test_existing_empty_folder_is_ok_nonempty_is_refused(tmp_path: Path) -> None:
    vol = _volume(np.eye(3))
    (tmp_path / "empty").mkdir()
    assert len(write_dicom_series(vol, tmp_path / "empty", _info())) == NK
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    with pytest.raises(OutputError):
        write_dicom_series(vol, full, _info())
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full"]


def test_unwritable_nifti_target(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        write_nifti(_volume(np.eye(3)), tmp_path / "file" / "ct.nii.gz")
    with pytest.raises(InvalidInputError):
        write_nifti(_volume(np.eye(3)), tmp_path / "ct.img")


def test_sheared_volume_is_refused(tmp_path: Path) -> None:
    vol = _volume(np.eye(3))
    vol.affine_lps[0, 2] = 1.0  # slices shifted sideways: not a plain CT stack
    with pytest.raises(InvalidInputError):
        write_dicom_series(vol, tmp_path / "s", _info())
    assert not (tmp_path / "s").exists() and list(tmp_path.iterdir()) == []
