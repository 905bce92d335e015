"""The bad-input corpus: named hostile or broken inputs, each run through the CLI (in this
process where it can be, a subprocess where the case needs one: an unprivileged user, a file
size limit; the real ``ctface serve`` for uploads). Every case asserts its exit code (the
distinct codes of ``ctface.errors``; HTTP status and error code for the service), exactly one
line on stderr, no traceback anywhere in the output, and, where a gallery is involved, that
the gallery file is byte-identical afterwards (no half-written database, no output left
behind).

The table ``CASES`` below is the corpus (README cites its size): name -> command, exit code,
a fragment of the one-line message. Inputs are made in code, tiny (16 x 16 pixel DICOM
slices, 2 x 2 for the 10,000-slice series). ``tests/test_ingest.py``'s ``BAD`` cases (the
reader's own errors, in the library) are kept there.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from conftest import Cli
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2  # what lets root read a file of mode 000
PR_CAPBSET_DROP = 24
ROWS = 16  # pixels of a tiny slice (8 mm): a cylinder of soft tissue in air
PIXEL_MM = 8.0
SLICES = 12
STUDY = "1.2.826.0.1.3680043.8.498.77"


def _uid(*parts: object) -> str:
    return "1.2.826.0.1.3680043.8.498." + ".".join(str(p) for p in parts)


SERIES = _uid(1)

# ------------------------------------------------------------------ tiny inputs


def ct_slice(
    k: int,
    z: float,
    *,
    rows: int = ROWS,
    series: str = SERIES,
    patient: str = "P1",
    study: str = STUDY,
    modality: str = "CT",
    pixel_mm: float = PIXEL_MM,
) -> Dataset:
    """One axial CT slice: uint16 storage, intercept -1024, a disc of 40 HU in air."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{series}.{k}")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, f"{series}.{k}"
    ds.Modality, ds.PatientID, ds.PatientName = modality, patient, f"Test^{patient}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = ds.Columns = rows
    ds.PixelSpacing = [pixel_mm, pixel_mm]
    ds.SliceThickness = PIXEL_MM
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-rows * pixel_mm / 2, -rows * pixel_mm / 2, z]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    j, i = np.mgrid[:rows, :rows] - (rows - 1) / 2
    hu = np.where(i**2 + j**2 < (rows / 2.5) ** 2, 40, -1024)
    ds.PixelData = (hu + 1024).astype("<u2").tobytes()
    return ds


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def series(folder: Path, n: int = SLICES, **kw: Any) -> list[Path]:
    """A tiny CT series, one file per slice, 8 mm apart."""
    return [save(ct_slice(k, PIXEL_MM * k, **kw), folder / f"{k:04d}.dcm") for k in range(n)]


def many_slices(folder: Path, n: int) -> None:
    """``n`` 2 x 2 pixel slices, fast: one slice serialized once, its position and UID patched
    as bytes (fixed-width placeholders) for each file."""
    placeholder_z, placeholder_uid = "-987654.25", f"{SERIES}.999999999999"
    ds = ct_slice(0, 0.0, rows=2, pixel_mm=1.0)
    ds.ImagePositionPatient = ["0", "0", placeholder_z]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(placeholder_uid)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    template = buf.getvalue()
    folder.mkdir(parents=True)
    for k in range(n):
        data = template.replace(placeholder_z.encode(), f"{k * 0.5:10.2f}".encode())
        data = data.replace(placeholder_uid.encode(), f"{SERIES}.{k:012d}".encode())
        (folder / f"{k:05d}.dcm").write_bytes(data)


def nifti(path: Path, affine: np.ndarray | None = None) -> Path:
    """A tiny NIfTI volume (``affine``: RAS, default 8 mm voxels)."""
    import nibabel as nib

    hu = np.full((ROWS, ROWS, SLICES), -1024, np.int16)
    hu[4:12, 4:12, :] = 40
    img = nib.Nifti1Image(hu, np.diag([PIXEL_MM] * 3 + [1.0]) if affine is None else affine)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


@dataclass
class Ctx:
    """What a case's builder has: its folder, the canned gallery's bytes, and what the run
    must leave as it was (``gallery``) or must not create (``absent``)."""

    tmp: Path
    canned: dict[str, bytes]
    fixture: Callable[[str], Any]  # a fixture's value (pytest's request.getfixturevalue)
    gallery: Path | None = None
    absent: list[Path] = field(default_factory=list)

    def make_gallery(self, kind: str = "small") -> Path:
        """A copy of a canned gallery of the shipped model (``canned_galleries``)."""
        self.gallery = self.tmp / "g.db"
        self.gallery.write_bytes(self.canned[kind])
        return self.gallery

    def db(self, kind: str = "small") -> list[str]:
        return ["--db", str(self.make_gallery(kind))]


# ------------------------------------------------------------------ the builders

Build = Callable[[Ctx], list[str]]


def b_truncated_pixel_data(c: Ctx) -> list[str]:
    """A slice whose PixelData element is half of what Rows x Columns x 2 bytes says."""
    files = series(c.tmp / "s")
    ds = pydicom.dcmread(files[5])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(files[5])
    return ["identify", str(c.tmp / "s"), *c.db()]


def b_cut_file(c: Ctx) -> list[str]:
    """The file itself cut short in the middle of the pixel data."""
    files = series(c.tmp / "s")
    files[3].write_bytes(files[3].read_bytes()[:-200])
    return ["identify", str(c.tmp / "s"), *c.db()]


def b_mixed_patients_series(c: Ctx) -> list[str]:
    """One series (one SeriesInstanceUID) whose slices carry two PatientIDs."""
    for k in range(SLICES):
        save(ct_slice(k, PIXEL_MM * k, patient="P1" if k % 2 else "P2"), c.tmp / "s" / f"{k}.dcm")
    return ["identify", str(c.tmp / "s"), *c.db()]


def b_mixed_patients_folder(c: Ctx) -> list[str]:
    """Two patients' CT series in one folder, enrolled under one --patient-id."""
    series(c.tmp / "s" / "a", patient="P1", series=_uid(2), study=_uid(20))
    series(c.tmp / "s" / "b", patient="P2", series=_uid(3), study=_uid(30))
    return ["enroll", str(c.tmp / "s"), "--patient-id", "A", *c.db()]


def b_duplicate_positions(c: Ctx) -> list[str]:
    """12 slices (own SOP instance UIDs, other pixels) at 6 positions, two at each: fewer
    than 8 distinct slices remain."""
    for k in range(SLICES):
        ds = ct_slice(k, PIXEL_MM * (k // 2))
        if k % 2:
            ds.PixelData = np.full((ROWS, ROWS), 2000, "<u2").tobytes()
        save(ds, c.tmp / "s" / f"{k:04d}.dcm")
    return ["identify", str(c.tmp / "s"), *c.db()]


def b_one_slice(c: Ctx) -> list[str]:
    series(c.tmp / "s", n=1)
    return ["identify", str(c.tmp / "s"), *c.db()]


def b_ten_thousand_slices(c: Ctx) -> list[str]:
    many_slices(c.tmp / "s", 10_000)
    return ["identify", str(c.tmp / "s"), *c.db()]


def b_nifti_singular_affine(c: Ctx) -> list[str]:
    """A NIfTI whose sform maps every slice onto one plane (its third column is zero) and
    that has no qform (nibabel refuses to write one: the header is patched)."""
    path = nifti(c.tmp / "v.nii")
    data = bytearray(path.read_bytes())
    data[252:256] = np.array([0, 1], "<i2").tobytes()  # qform_code 0, sform_code 1
    data[312:328] = np.zeros(4, "<f4").tobytes()  # srow_z
    path.write_bytes(bytes(data))
    return ["identify", str(path), *c.db()]


def b_nan_position(c: Ctx) -> list[str]:
    """ImagePositionPatient is NaN in every slice (one such slice is left out, the gap
    interpolated: ``tests/test_ingest.py``)."""
    for f in series(c.tmp / "s"):
        ds = pydicom.dcmread(f)
        with warnings.catch_warnings():  # pydicom: "Invalid value for VR DS" (the point)
            warnings.simplefilter("ignore")
            ds["ImagePositionPatient"].value = ["-64", "-64", "NaN"]
            ds.save_as(f)
    return ["identify", str(c.tmp / "s"), *c.db()]


def b_non_ct_modality(c: Ctx) -> list[str]:
    series(c.tmp / "s", modality="MR")
    return ["identify", str(c.tmp / "s"), *c.db()]


def b_empty_folder(c: Ctx) -> list[str]:
    (c.tmp / "empty").mkdir()
    return ["identify", str(c.tmp / "empty"), *c.db()]


def b_missing_path(c: Ctx) -> list[str]:
    return ["enroll", str(c.tmp / "nothing"), "--patient-id", "A", *c.db()]


def b_zip_not_a_zip(c: Ctx) -> list[str]:
    (c.tmp / "scan.zip").write_text("this is not a zip archive\n" * 20)
    return ["identify", str(c.tmp / "scan.zip"), *c.db()]


def b_zip_slip_archive(c: Ctx) -> list[str]:
    """A zip whose members climb out of any folder it would be unpacked into: the CLI reads
    no zip, so it is refused as an input and nothing is unpacked anywhere."""
    escape = c.tmp / "evil.dcm"
    with zipfile.ZipFile(c.tmp / "series.zip", "w") as z:
        z.writestr("../../" + escape.name, b"DICM" * 10)
        z.writestr(f"/{c.tmp}/abs.dcm", b"x")
    c.absent += [escape, c.tmp / "abs.dcm", c.tmp.parent / escape.name]
    return ["enroll", str(c.tmp / "series.zip"), "--patient-id", "A", *c.db()]


def b_unknown_series_uid(c: Ctx) -> list[str]:
    series(c.tmp / "s")
    return ["identify", str(c.tmp / "s"), "--series-uid", "1.2.3.4.5", *c.db()]


def b_series_uid_of_a_volume(c: Ctx) -> list[str]:
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--series-uid", SERIES, *c.db()]


def b_symlink_loop_archive(c: Ctx) -> list[str]:
    """An archive folder with a folder link to itself, two links to each other and a text
    file: no endless walk, no crash."""
    root = c.tmp / "archive"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    (root / "notes.txt").write_text("not an image\n")
    return ["enroll", "--from-dicom-tags", str(root), *c.db()]


def b_symlink_loop_scan(c: Ctx) -> list[str]:
    """A scan folder of links in a loop (identify reads it as a DICOM folder)."""
    root = c.tmp / "scan"
    root.mkdir()
    (root / "self").symlink_to(root / "self")
    (root / "up").symlink_to(root, target_is_directory=True)
    return ["identify", str(root), *c.db()]


def b_file_disappears(c: Ctx) -> list[str]:
    """A phantom scan's file removed after it was loaded, before the enrollment hashes it
    (another process cleaning up the folder): see ``_disappearing_scan``."""
    cohort = c.fixture("nifti_cohort")
    scan = c.tmp / "scan.nii.gz"
    shutil.copy(next(cohort.rglob("*.nii.gz")), scan)
    return ["enroll", str(scan), "--patient-id", "A", *c.db()]


def b_unreadable_volume(c: Ctx) -> list[str]:
    """A NIfTI file its user may not read (mode 000; run without the right to bypass it)."""
    path = nifti(c.tmp / "v.nii.gz")
    path.chmod(0)
    return ["render", str(path), "--out", str(c.tmp / "out")]


def b_unreadable_slice(c: Ctx) -> list[str]:
    """One slice of a DICOM series its user may not read."""
    files = series(c.tmp / "s")
    files[6].chmod(0)
    return ["render", str(c.tmp / "s"), "--out", str(c.tmp / "out")]


def b_gallery_newer_schema(c: Ctx) -> list[str]:
    db = c.make_gallery()
    with sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    con.close()
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--db", str(db)]


def b_gallery_not_sqlite(c: Ctx) -> list[str]:
    db = c.tmp / "g.db"
    db.write_bytes(np.random.default_rng(1).bytes(8192))
    c.gallery = db
    return ["enroll", str(nifti(c.tmp / "v.nii.gz")), "--patient-id", "A", "--db", str(db)]


def b_gallery_corrupt_page(c: Ctx) -> list[str]:
    """A gallery whose SQLite header is intact but a later page (the scans) is garbage."""
    db = c.make_gallery()
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) >= 3 * page
    data[page * 2 : page * 3] = np.random.default_rng(2).bytes(page)  # page 3
    db.write_bytes(bytes(data))
    return ["gallery", "list", "--db", str(db)]


def b_gallery_truncated(c: Ctx) -> list[str]:
    """A gallery cut to its first page (a copy that stopped half-way)."""
    db = c.make_gallery()
    data = db.read_bytes()
    db.write_bytes(data[: int.from_bytes(data[16:18], "big")])
    return ["gallery", "stats", "--db", str(db)]


def b_gallery_is_directory(c: Ctx) -> list[str]:
    (c.tmp / "g.db").mkdir()
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--db", str(c.tmp / "g.db")]


def b_gallery_other_model(c: Ctx) -> list[str]:
    db = c.make_gallery()
    with sqlite3.connect(db) as con:
        con.execute("UPDATE scans SET model_version = 'someone-else-v9'")
        con.execute("UPDATE meta SET value = 'someone-else-v9' WHERE key = 'model_version'")
    con.close()
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--db", str(db)]


def b_gallery_missing(c: Ctx) -> list[str]:
    c.absent.append(c.tmp / "none.db")
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--db", str(c.tmp / "none.db")]


def b_gallery_empty(c: Ctx) -> list[str]:
    from ctface.gallery import GalleryDatabase

    with GalleryDatabase(c.tmp / "g.db", create=True):
        pass
    c.gallery = c.tmp / "g.db"
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--db", str(c.gallery)]


def b_full_disk_export(c: Ctx) -> list[str]:
    """``gallery export`` of 120 scans (~400 kB of JSON) under a 128 KiB file size limit."""
    out = c.tmp / "export.json"
    c.absent.append(out)
    return ["gallery", "export", "--out", str(out), *c.db("big")]


def b_full_disk_gallery_write(c: Ctx) -> list[str]:
    """``gallery remove`` of a patient with 60 scans under a 40 kB file size limit: the
    write-ahead log cannot take the transaction (reading needs 32 KiB: SQLite's shared
    memory file)."""
    return ["gallery", "remove", "--patient", "A", *c.db("big")]


def b_output_inside_a_file(c: Ctx) -> list[str]:
    (c.tmp / "report.txt").write_text("a file, not a folder\n")
    return ["gallery", "export", "--out", str(c.tmp / "report.txt" / "e.json"), *c.db()]


def b_html_in_missing_folder(c: Ctx) -> list[str]:
    html = c.tmp / "no" / "such" / "page.html"
    c.absent.append(html)
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--html", str(html), *c.db()]


def b_export_out_is_a_directory(c: Ctx) -> list[str]:
    (c.tmp / "e.json").mkdir()
    return ["gallery", "export", "--out", str(c.tmp / "e.json"), *c.db()]


def b_gallery_read_only(c: Ctx) -> list[str]:
    """``gallery remove`` on a gallery file of mode 444 (run without the right to bypass it)."""
    args = ["gallery", "remove", "--patient", "A", *c.db()]
    assert c.gallery is not None
    c.gallery.chmod(0o444)
    return args


def b_newline_in_path(c: Ctx) -> list[str]:
    """A scan path with a line break (the failure line must stay one line)."""
    return ["enroll", str(c.tmp / "scan\nfailed: fake second line"), "--patient-id", "A",
            *c.db()]  # fmt: skip


def b_escape_in_path(c: Ctx) -> list[str]:
    """A scan path with a terminal escape sequence (clear screen) and a line break."""
    return ["identify", str(c.tmp / "x\x1b[2J\ny"), *c.db()]


def b_remove_unknown_patient(c: Ctx) -> list[str]:
    return ["gallery", "remove", "--patient", "NOBODY", *c.db()]


def b_remove_unknown_scan(c: Ctx) -> list[str]:
    return ["gallery", "remove", "--scan", "999", *c.db()]


def b_list_unknown_patient(c: Ctx) -> list[str]:
    return ["gallery", "list", "--patient", "NOBODY", *c.db()]


def b_fmr_out_of_range(c: Ctx) -> list[str]:
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--fmr", "2", *c.db()]


def b_top_k_zero(c: Ctx) -> list[str]:
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--top-k", "0", *c.db()]


def b_fmr_not_a_number(c: Ctx) -> list[str]:
    return ["verify", "a.nii.gz", "b.nii.gz", "--fmr", "often"]


def b_unknown_option(c: Ctx) -> list[str]:
    return ["gallery", "list", "--colour", "blue", *c.db()]


def b_empty_patient_id(c: Ctx) -> list[str]:
    return ["enroll", str(nifti(c.tmp / "v.nii.gz")), "--patient-id", "  ", *c.db()]


def b_patient_id_and_tags(c: Ctx) -> list[str]:
    return ["enroll", str(c.tmp), "--patient-id", "A", "--from-dicom-tags", *c.db()]


def b_verify_missing_scan(c: Ctx) -> list[str]:
    a = nifti(c.tmp / "a.nii.gz")
    return ["verify", str(a), str(c.tmp / "b.nii.gz"), *c.db()]


def b_calibration_corrupt(c: Ctx) -> list[str]:
    (c.tmp / "cal.json").write_text('{"model_version": ')
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--calibration",
            str(c.tmp / "cal.json"), *c.db()]  # fmt: skip


def b_weights_corrupt(c: Ctx) -> list[str]:
    (c.tmp / "w.pt").write_bytes(b"\x00" * 1000)
    return ["identify", str(nifti(c.tmp / "v.nii.gz")), "--weights", str(c.tmp / "w.pt"),
            *c.db()]  # fmt: skip


def b_reconcile_out_is_a_file(c: Ctx) -> list[str]:
    (c.tmp / "out").write_text("x")
    return ["reconcile", "--out", str(c.tmp / "out"), *c.db()]


def b_reconcile_fmr(c: Ctx) -> list[str]:
    return ["reconcile", "--out", str(c.tmp / "out"), "--fmr", "0", *c.db()]


def b_reconcile_archive_is_a_file(c: Ctx) -> list[str]:
    return ["reconcile", str(nifti(c.tmp / "v.nii.gz")), "--out", str(c.tmp / "out"), *c.db()]


def b_deface_unknown_method(c: Ctx) -> list[str]:
    c.absent.append(c.tmp / "out")
    return ["deface", str(nifti(c.tmp / "v.nii.gz")), "--out", str(c.tmp / "out"),
            "--method", "blur"]  # fmt: skip


def b_deface_unreadable_scan(c: Ctx) -> list[str]:
    c.absent += [c.tmp / "out", c.tmp / "out-qc"]
    return ["deface", str(c.tmp / "nothing.nii.gz"), "--out", str(c.tmp / "out")]


def b_audit_truth_malformed(c: Ctx) -> list[str]:
    """A truth CSV whose row has no person column."""
    nifti(c.tmp / "shared" / "x.nii.gz")
    (c.tmp / "truth.csv").write_text("scan,person\nx.nii.gz\n")
    return ["audit", "--scans", str(c.tmp / "shared"), "--reference", str(c.make_gallery()),
            "--out", str(c.tmp / "out"), "--truth", str(c.tmp / "truth.csv"),
            "--attack", "ctface"]  # fmt: skip


def b_audit_truth_no_columns(c: Ctx) -> list[str]:
    nifti(c.tmp / "shared" / "x.nii.gz")
    (c.tmp / "truth.csv").write_bytes(b"\xff\xfe\x00garbage")
    return ["audit", "--scans", str(c.tmp / "shared"), "--reference", str(c.make_gallery()),
            "--out", str(c.tmp / "out"), "--truth", str(c.tmp / "truth.csv"),
            "--attack", "ctface"]  # fmt: skip


def b_evaluate_report_malformed(c: Ctx) -> list[str]:
    """``evaluate --tables`` on a report.json of the wrong shape."""
    (c.tmp / "out").mkdir()
    (c.tmp / "out" / "report.json").write_text(json.dumps({"protocols": 5}))
    c.absent.append(c.tmp / "out" / "tables.md")
    return ["evaluate", "--out", str(c.tmp / "out"), "--tables"]


def b_evaluate_report_not_json(c: Ctx) -> list[str]:
    (c.tmp / "out").mkdir()
    (c.tmp / "out" / "report.json").write_text("{not json")
    c.absent.append(c.tmp / "out" / "tables.md")
    return ["evaluate", "--out", str(c.tmp / "out"), "--tables"]


# ------------------------------------------------------------------ the corpus


@dataclass(frozen=True)
class Case:
    name: str
    what: str  # the command and the input
    build: Build
    exit_code: int
    message: str  # a fragment of the one line on stderr
    runner: str = "cli"  # cli (in this process) | unprivileged | fsize (RLIMIT_FSIZE)
    fsize: int = 0
    slow: bool = False

    @property
    def param(self) -> Any:
        return pytest.param(self, id=self.name, marks=[pytest.mark.slow] if self.slow else [])


# fmt: off
CASES = [
    # -- reading the scan (ingest) --------------------------------------------------------
    Case("truncated-pixel-data", "identify DIR: a slice's PixelData half what Rows x Columns say",
         b_truncated_pixel_data, 4, "truncated or corrupt file"),
    Case("cut-file", "identify DIR: a slice file cut short inside its pixel data",
         b_cut_file, 4, "truncated or corrupt file"),
    Case("mixed-patients-in-series", "identify DIR: one series, slices of PatientIDs P1 and P2",
         b_mixed_patients_series, 4, "PatientID"),
    Case("mixed-patients-in-folder", "enroll DIR --patient-id A: P1's and P2's series in DIR",
         b_mixed_patients_folder, 4, "patients"),
    Case("duplicate-slice-positions", "identify DIR: 12 slices (other pixels) at 6 positions",
         b_duplicate_positions, 4, "only 6 slices"),
    Case("one-slice", "identify DIR: a 1-slice series",
         b_one_slice, 4, "only 1 slices"),
    Case("ten-thousand-slices", "identify DIR: a 10,000-slice series (2 x 2 pixels)",
         b_ten_thousand_slices, 4, "10000 slices (at most 2000)",
         slow=True),
    Case("nifti-singular-affine", "identify v.nii: sform with a zero column, no qform",
         b_nifti_singular_affine, 4, "geometry is degenerate"),
    Case("nan-image-position", "identify DIR: ImagePositionPatient NaN in every slice",
         b_nan_position, 4, "no image geometry"),
    Case("non-ct-modality", "identify DIR: an MR series",
         b_non_ct_modality, 4, "modality MR, not CT"),
    Case("empty-folder", "identify DIR: an empty folder",
         b_empty_folder, 4, "is empty"),
    Case("missing-path", "enroll PATH --patient-id A: PATH does not exist",
         b_missing_path, 4, "does not exist"),
    Case("zip-not-a-zip", "identify scan.zip: text named .zip",
         b_zip_not_a_zip, 4, "is not a DICOM, NIfTI, NRRD or MetaImage file"),
    Case("zip-slip-archive", "enroll series.zip: members ../../evil.dcm, /abs.dcm (never unpacked)",
         b_zip_slip_archive, 4, "is not a DICOM, NIfTI, NRRD or MetaImage"),
    Case("unknown-series-uid", "identify DIR --series-uid 1.2.3.4.5 (not in DIR)",
         b_unknown_series_uid, 4, "Series 1.2.3.4.5 is not in"),
    Case("series-uid-of-a-volume", "identify v.nii.gz --series-uid UID",
         b_series_uid_of_a_volume, 4, "applies only to DICOM"),
    Case("symlink-loop-archive", "enroll --from-dicom-tags DIR: a link to DIR, 2 links in a loop",
         b_symlink_loop_archive, 4, "no DICOM images"),
    Case("symlink-loop-scan", "identify DIR: a self link and a link to DIR only",
         b_symlink_loop_scan, 4, "empty"),
    Case("file-disappears-during-enroll", "enroll v.nii.gz: deleted between load and digest",
         b_file_disappears, 4, "No such file"),
    Case("unreadable-volume", "render v.nii.gz (mode 000, no right to bypass it)",
         b_unreadable_volume, 4, "permission denied", runner="unprivileged"),
    Case("unreadable-slice", "render DIR: one slice of mode 000 (no right to bypass it)",
         b_unreadable_slice, 4, "permission denied", runner="unprivileged"),
    # -- the gallery file ---------------------------------------------------------------------
    Case("gallery-newer-schema", "identify --db G: G has gallery schema 2",
         b_gallery_newer_schema, 7, "has gallery schema 2"),
    Case("gallery-not-sqlite", "enroll --db G: G is 8 KiB of random bytes",
         b_gallery_not_sqlite, 7, "not a ctface gallery"),
    Case("gallery-corrupt-page", "gallery list --db G: G's page 3 overwritten with random bytes",
         b_gallery_corrupt_page, 7, "malformed"),
    Case("gallery-truncated", "gallery stats --db G: G cut to its first page",
         b_gallery_truncated, 7, "malformed"),
    Case("gallery-is-a-directory", "identify --db G: G is a folder",
         b_gallery_is_directory, 7, "cannot be opened as a gallery database"),
    Case("gallery-other-model", "identify --db G: G's templates are another model's",
         b_gallery_other_model, 7, "someone-else-v9"),
    Case("gallery-missing", "identify --db G: no G (and none made)",
         b_gallery_missing, 3, "enroll scans first"),
    Case("gallery-empty", "identify --db G: G has no scans",
         b_gallery_empty, 7, "is empty"),
    Case("full-disk-export", "gallery export --out F under RLIMIT_FSIZE 128 KiB (F ~400 kB)",
         b_full_disk_export, 5, "cannot write", runner="fsize",
         fsize=128 * 1024),
    Case("full-disk-gallery-write", "gallery remove --patient A (60 scans), RLIMIT_FSIZE 40 kB",
         b_full_disk_gallery_write, 5, "cannot write the gallery",
         runner="fsize", fsize=40_000),
    Case("output-inside-a-file", "gallery export --out FILE/e.json",
         b_output_inside_a_file, 5, "report.txt is a file, not a folder"),
    Case("html-in-missing-folder", "identify --html no/such/page.html",
         b_html_in_missing_folder, 5, "does not exist"),
    Case("export-out-is-a-directory", "gallery export --out DIR",
         b_export_out_is_a_directory, 5, "cannot write"),
    Case("gallery-read-only", "gallery remove --patient A: G of mode 444, no right to bypass",
         b_gallery_read_only, 5, "readonly database", runner="unprivileged"),
    Case("newline-in-path", "enroll 'scan<LF>failed: fake second line' --patient-id A",
         b_newline_in_path, 4, "scan\\nfailed: fake second line does not exist"),
    Case("escape-in-path", "identify 'x<ESC>[2J<LF>y' (terminal escape, line break)",
         b_escape_in_path, 4, "x\\x1b[2J\\ny does not exist"),
    Case("remove-unknown-patient", "gallery remove --patient NOBODY",
         b_remove_unknown_patient, 7, "no patient 'NOBODY'"),
    Case("remove-unknown-scan", "gallery remove --scan 999",
         b_remove_unknown_scan, 7, "no scan 999"),
    Case("list-unknown-patient", "gallery list --patient NOBODY",
         b_list_unknown_patient, 7, "no patient 'NOBODY'"),
    # -- options -------------------------------------------------------------------------------
    Case("fmr-out-of-range", "identify --fmr 2",
         b_fmr_out_of_range, 4, "FMR"),
    Case("top-k-zero", "identify --top-k 0",
         b_top_k_zero, 2, "--top-k"),
    Case("fmr-not-a-number", "verify a b --fmr often",
         b_fmr_not_a_number, 2, "--fmr"),
    Case("unknown-option", "gallery list --colour blue",
         b_unknown_option, 2, "--colour"),
    Case("empty-patient-id", "enroll --patient-id '  '",
         b_empty_patient_id, 4, "--patient-id is empty"),
    Case("patient-id-and-dicom-tags", "enroll --patient-id A --from-dicom-tags",
         b_patient_id_and_tags, 4, "one of them"),
    Case("verify-missing-scan", "verify a.nii.gz MISSING (refused before a is processed)",
         b_verify_missing_scan, 4, "does not exist"),
    Case("calibration-corrupt", "identify --calibration cal.json: cut-off JSON",
         b_calibration_corrupt, 3, "calibration unreadable"),
    Case("weights-corrupt", "identify --weights w.pt: 1000 zero bytes",
         b_weights_corrupt, 3, "w.pt"),
    Case("reconcile-out-is-a-file", "reconcile --db G --out FILE",
         b_reconcile_out_is_a_file, 4, "is not a folder"),
    Case("reconcile-fmr-zero", "reconcile --db G --fmr 0",
         b_reconcile_fmr, 4, "--fmr must be between 0 and 1"),
    Case("reconcile-archive-is-a-file", "reconcile v.nii.gz --out O",
         b_reconcile_archive_is_a_file, 4, "is not a folder"),
    Case("deface-unknown-method", "deface v.nii.gz --method blur",
         b_deface_unknown_method, 4, "unknown --method 'blur'"),
    Case("deface-missing-scan", "deface MISSING --out O",
         b_deface_unreadable_scan, 4, "does not exist"),
    Case("audit-truth-short-row", "audit --truth T: a row without its person column",
         b_audit_truth_malformed, 4, "has no person"),
    Case("audit-truth-not-csv", "audit --truth T: binary, no scan,person header",
         b_audit_truth_no_columns, 4, "truth"),
    Case("evaluate-report-wrong-shape", "evaluate --tables: report.json {'protocols': 5}",
         b_evaluate_report_malformed, 4, "not a ctface evaluation report"),
    Case("evaluate-report-not-json", "evaluate --tables: report.json is not JSON",
         b_evaluate_report_not_json, 4, "not a ctface evaluation report"),
]
# fmt: on


# ------------------------------------------------------------------ running a case


@pytest.fixture(scope="module")
def canned_galleries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The bytes of two galleries of the shipped model with canned unit templates and records
    (no CT): ``small``: patient A (2 scans), B (1 scan); ``big``: A and B with 60 scans each."""
    from ctface.api import default_model
    from ctface.gallery import GalleryDatabase, ScanRecord

    model = default_model()
    rng = np.random.default_rng(23)
    out = {}
    for kind, pids in (("small", ["A", "B", "A"]), ("big", ["A", "B"] * 60)):
        db = tmp_path_factory.mktemp("canned") / f"{kind}.db"
        vectors = rng.standard_normal((len(pids), model.config.embedding_dim))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with GalleryDatabase(db, create=True) as g:
            for n, (pid, v) in enumerate(zip(pids, vectors.astype(np.float32), strict=True)):
                rec = ScanRecord(f"digest{n}", f"/scans/{n}", f"1.2.{n}", "1.2", pid,
                                 {"format": "nifti"}, {"face_fraction": 0.5})  # fmt: skip
                g.add_scan(pid, rec, v, model.version)
        out[kind] = db.read_bytes()
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "(not a file)"


def _drop_file_privileges() -> None:
    """In the child (before exec): without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH a root
    process obeys file modes like any user (dropped from the bounding set: gone after exec)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


def _subprocess(case: Case, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``python -m ctface ARGS`` without the right to read files of mode 000, or under a file
    size limit (a full disk: writes past it fail with EFBIG)."""

    def limits() -> None:
        if case.runner == "unprivileged" and os.geteuid() == 0:
            _drop_file_privileges()
        if case.runner == "fsize":
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.fsize, case.fsize))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        return subprocess.run([sys.executable, "-m", "ctface", *args], capture_output=True,
                              text=True, env=env, preexec_fn=limits, timeout=300)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise
    except subprocess.SubprocessError as e:  # the child could not drop its privileges
        pytest.skip(f"cannot run without file privileges here: {e}")


def _disappearing_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Enrollment's load of a scan file, then the file is deleted (before its digest)."""
    acquire = importlib.import_module("ctface.gallery.acquire")  # the module, not the function
    load = acquire._load

    def load_then_delete(source: Any, series_uid: str | None) -> Any:
        volume = load(source, series_uid)
        Path(source).unlink()
        return volume

    monkeypatch.setattr(acquire, "_load", load_then_delete)


@pytest.mark.parametrize("case", [c.param for c in CASES])
def test_bad_input(
    case: Case,
    tmp_path: Path,
    canned_galleries: dict[str, bytes],
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    c = Ctx(tmp_path, canned_galleries, request.getfixturevalue)
    try:
        args = case.build(c)
        before = _sha(c.gallery) if c.gallery else None
        if case.name == "file-disappears-during-enroll":
            _disappearing_scan(monkeypatch)
        r = cli(*args) if case.runner == "cli" else _subprocess(case, args)
        lines = r.stderr.strip().splitlines()
        assert "Traceback" not in r.stderr + r.stdout, r.stderr
        assert r.returncode == case.exit_code, (r.returncode, r.stderr)
        assert len(lines) == 1, r.stderr
        assert case.message in lines[0], lines[0]
        if c.gallery is not None:
            assert _sha(c.gallery) == before, "the gallery file changed"
            assert not c.gallery.with_name(c.gallery.name + "-journal").exists()
            wal = c.gallery.with_name(c.gallery.name + "-wal")  # a reader may leave it empty
            assert not wal.exists() or wal.stat().st_size == 0, "frames left in the WAL"
        for p in c.absent:
            assert not p.exists(), f"{p} was written"
        leftovers = [p for p in tmp_path.rglob("*.tmp*") if p.is_file()]
        assert not leftovers, leftovers
    finally:
        for p in tmp_path.rglob("*"):  # mode 000 files: pytest removes the folder later
            if not p.is_symlink():
                p.chmod(0o700)


def test_corpus_size() -> None:
    """The README cites the corpus: at least 30 named cases, names unique."""
    names = [c.name for c in CASES] + [s for s, *_ in SERVICE_CASES]
    assert len(names) == len(set(names)) and len(names) >= 30


# ------------------------------------------------------------------ the service's uploads


def _zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # a symbolic link
            z.writestr(info, target)
    return buf.getvalue()


def _one_slice_bytes() -> bytes:
    buf = io.BytesIO()
    ct_slice(0, 0.0).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


ESCAPE = f"ctface-escape-{uuid.uuid4().hex[:8]}.dcm"

# name, route, request keywords (files / data / headers), HTTP status, error code, fragment
SERVICE_CASES: list[tuple[str, str, Callable[[], dict[str, Any]], int, str, str]] = [
    ("service-zip-slip", "/v1/identify",
     lambda: {"files": [("file", ("a.zip", _zip({f"../../../{ESCAPE}": _one_slice_bytes()})))]},
     400, "bad-input", "leaves its folder"),
    ("service-zip-absolute-member", "/v1/enroll",
     lambda: {"files": [("file", ("a.zip", _zip({f"/tmp/{ESCAPE}": b"x"})))],
              "data": {"patient_id": "C"}},
     400, "bad-input", "leaves its folder"),
    ("service-zip-symlink", "/v1/identify",
     lambda: {"files": [("file", ("a.zip", _zip({}, {"slice.dcm": "/etc/passwd"})))]},
     400, "bad-input", "link"),
    ("service-path-traversal-filename", "/v1/identify",
     lambda: {"files": [("file", (f"../../../../tmp/{ESCAPE}", _one_slice_bytes()))]},
     400, "bad-input", "only 1 slices"),
    ("service-body-not-a-zip", "/v1/identify",
     lambda: {"data": b"PK\x03\x04 but not a zip at all" * 10,
              "headers": {"Content-Type": "application/zip"}},
     400, "bad-input", "not a readable zip"),
    ("service-verify-unknown-patient", "/v1/verify?patient_id=NOBODY",
     lambda: {"files": [("a", ("a.dcm", _one_slice_bytes()))]},
     404, "not-found", "no patient 'NOBODY'"),
]  # fmt: skip


@pytest.fixture(scope="module")
def service(
    canned_galleries: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One real ``ctface serve`` on the canned gallery for every service case."""
    pytest.importorskip("fastapi")
    from service_server import running_server

    folder = tmp_path_factory.mktemp("service")
    db = folder / "gallery.db"
    db.write_bytes(canned_galleries["small"])
    uploads = folder / "uploads"
    uploads.mkdir()
    with running_server(db, folder, "--workers", "1", "--temp-dir", str(uploads)) as s:
        yield s
    assert "Traceback" not in s.log.read_text()


@pytest.mark.parametrize(("name", "route", "request_kw", "status", "code", "fragment"),
                         SERVICE_CASES, ids=[c[0] for c in SERVICE_CASES])  # fmt: skip
def test_bad_upload(service: Any, name: str, route: str, request_kw: Callable[[], dict[str, Any]],
                    status: int, code: str, fragment: str) -> None:  # fmt: skip
    import requests

    before = _sha(service.db)
    kw = request_kw()
    headers = {**service.headers(), **kw.pop("headers", {})}
    r = requests.post(f"{service.url}{route}", headers=headers, timeout=120, **kw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and fragment in error["message"], error
    assert "\n" not in error["message"] and "Traceback" not in r.text
    assert _sha(service.db) == before
    uploads = service.db.parent / "uploads"
    assert list(uploads.iterdir()) == []  # the request's folder is gone
    for where in (Path("/tmp"), uploads.parent, uploads.parent.parent, Path.cwd()):
        assert not (where / ESCAPE).exists()
    assert "Traceback" not in service.log.read_text()
