"""Fuzz ``load_ct``: every input must end in a CtVolume or a CtfaceError, within 10 s, in 2 GiB.

Run: .venv/bin/python benchmarks/fuzz.py [--inputs 100000] [--seed 0] [--jobs 1] [--out FILE]
     .venv/bin/python benchmarks/fuzz.py --replay N [--seed S] [--replay-dir DIR]  (input N)
     .venv/bin/python benchmarks/fuzz.py --atheris SECONDS [--atheris-dir DIR]

Engine: a seeded mutation engine driven by NumPy's RNG (input ``n`` of seed ``s`` is drawn from
``default_rng([s, n])``: the same input whatever the order or the number of workers). Seeds are
tiny valid head-like volumes made in code (16 x 16 x 12 voxels of 4 mm: an ellipsoid of soft
tissue with a bone shell in air, which ``load_ct`` reads, crops and resamples): a classic DICOM
series (int16; uint16 with padding; RLE Lossless; deflated), an enhanced multi-frame DICOM file,
NIfTI-1 (.nii, .nii.gz), NIfTI-2, NRRD and MetaImage (raw and compressed). Each input stacks
1-3 mutations: byte flips, interesting integers, truncation, insertion, deletion, chunk copies,
and structured ones (DICOM elements: sizes, bits, geometry, rescale, transfer syntax, frames,
VR swaps, deletions; NIfTI header fields; NRRD / MetaImage header lines, also with a payload
resized to match). DICOM series are mutated in one file, every file, or by removing/adding files.
Coverage guidance (atheris) is not used for the campaign: atheris runs in-process, where neither
a memory limit nor a kill on timeout can be enforced per input as the contract asks (libFuzzer's
process-wide -rss_limit_mb and -timeout stand in), a native crash ends the run, and it mutates
bytes only, blind to the header fields the structured mutators set directly. ``--atheris
SECONDS`` runs it as a complement (coverage-guided, single-file inputs, seeds as above).
Hypothesis is not used either: its shrinking is of little help on binary file formats, and a
seeded RNG gives the same reproducible inputs at a fraction of the cost.

Contract (enforced): each input runs in a worker subprocess (``--worker``) whose address space
is limited to its size after warm-up + 2 GiB (RLIMIT_AS); the parent kills it after 10 s.
Findings: any exception that is not a CtfaceError (crash), a timeout, a MemoryError (also one
turned into an error message) or a dead worker (memory), a result that is not an int16 3-D
CtVolume with a finite affine, an error message that is empty or longer than one line.

Regressions found by this fuzzer live in ``tests/fuzz_corpus/`` (index.json); results go to
``benchmarks/results/fuzz.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import pickle
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CORPUS = REPO / "tests" / "fuzz_corpus"
TIME_LIMIT_S = 10.0
MEMORY_LIMIT = 2 << 30  # bytes of address space above the warmed-up worker's
NI, NJ, NK, SPACING = 16, 16, 12, 4.0
ORIGIN = (-30.0, -30.0, -22.0)
FORMATS = ("dicom-file", "dicom-folder", "dicom-enhanced", "nifti", "nifti-gz", "nrrd", "mha")
Rng = np.random.Generator

# ---------------------------------------------------------------- seeds


@dataclass
class Case:
    """One input: files (relative name -> bytes) written into an empty folder, and the path
    (relative) given to ``load_ct``; ``mutators`` names what was done to the seed."""

    fmt: str
    seed: str
    files: dict[str, bytes]
    target: str
    mutators: list[str] = field(default_factory=list)


def seed_volume() -> Any:
    from ctface.ingest.volume import CtVolume

    k, j, i = np.meshgrid(np.arange(NK), np.arange(NJ), np.arange(NI), indexing="ij")
    x, y, z = (SPACING * (i - 7.5), SPACING * (j - 7.5), SPACING * (k - 5.5))
    r = (x / 29) ** 2 + (y / 30) ** 2 + (z / 22) ** 2
    hu = np.where(r < 1, 40, -1024)
    hu = np.where((r >= 0.55) & (r < 0.75), 900, hu).astype(np.int16)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = ORIGIN
    return CtVolume(hu, affine)


def _dicom_series(tmp: Path, name: str, **kw: Any) -> dict[str, bytes]:
    from ctface.phantom.export import DicomSeriesInfo, make_uid, write_dicom_series

    info = DicomSeriesInfo(
        patient_id="FUZZ", patient_name="Fuzz^Seed", study_date="20240101", study_time="120000",
        study_uid=make_uid("fuzz", "study"), series_uid=make_uid("fuzz", name),
        frame_of_reference_uid=make_uid("fuzz", "for"), **kw,
    )  # fmt: skip
    files = write_dicom_series(seed_volume(), tmp / name, info)
    return {f"s/{f.name}": f.read_bytes() for f in files}


def _recode(files: dict[str, bytes], syntax: str) -> dict[str, bytes]:
    """The series re-encoded in another transfer syntax (RLE Lossless, deflated)."""
    import pydicom
    from pydicom.uid import UID

    out = {}
    for name, raw in files.items():
        ds = pydicom.dcmread(io.BytesIO(raw))
        if syntax == "rle":
            ds.compress(pydicom.uid.RLELossless)
        else:
            ds.file_meta.TransferSyntaxUID = UID(pydicom.uid.DeflatedExplicitVRLittleEndian)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out[name] = buf.getvalue()
    return out


def _enhanced() -> bytes:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian

    from ctface.phantom.export import make_uid

    vol = seed_volume()
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, make_uid("fuzz", "enh", "sop")
    ds.Modality, ds.PatientID, ds.StudyDate = "CT", "FUZZ", "20240101"
    ds.SeriesInstanceUID, ds.StudyInstanceUID = make_uid("fuzz", "enh"), make_uid("fuzz", "st")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = NJ, NI, NK
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [SPACING, SPACING]
    shared.PixelMeasuresSequence[0].SliceThickness = SPACING
    shared.PixelValueTransformationSequence = Sequence([Dataset()])
    pvt = shared.PixelValueTransformationSequence[0]
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1, 0, "HU"
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(NK):
        fg = Dataset()
        fg.PlanePositionSequence = Sequence([Dataset()])
        fg.PlanePositionSequence[0].ImagePositionPatient = [*ORIGIN[:2], ORIGIN[2] + SPACING * k]
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = vol.hu.astype("<i2").tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _nifti(version: int) -> bytes:
    import nibabel as nib

    vol = seed_volume()
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = cls(vol.hu.T, vol.affine_ras)
    img.set_qform(vol.affine_ras, code=1)
    img.set_sform(vol.affine_ras, code=1)
    return bytes(img.to_bytes())


def _itk_file(tmp: Path, suffix: str, compress: bool) -> bytes:
    import SimpleITK as sitk

    vol = seed_volume()
    img = sitk.GetImageFromArray(vol.hu)
    img.SetSpacing(vol.spacing)
    img.SetOrigin(vol.origin.tolist())
    path = tmp / f"seed{'_z' if compress else ''}{suffix}"
    sitk.WriteImage(img, str(path), useCompression=compress)
    return path.read_bytes()


@cache
def seeds() -> dict[str, list[Case]]:
    """The valid seed inputs of every format (made once per process)."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        signed = _dicom_series(tmp, "signed")
        series = {
            "int16": signed,
            "uint16-padding": _dicom_series(tmp, "unsigned", signed=False,
                                            pixel_padding_value=-2000),
            "rle": _recode(signed, "rle"),
            "deflated": _recode(signed, "deflate"),
        }  # fmt: skip
        nrrd = {"raw": _itk_file(tmp, ".nrrd", False), "gzip": _itk_file(tmp, ".nrrd", True)}
        mha = {"raw": _itk_file(tmp, ".mha", False), "zlib": _itk_file(tmp, ".mha", True)}
    mid = sorted(signed)[NK // 2]
    n1, n2 = _nifti(1), _nifti(2)
    return {
        "dicom-file": [Case("dicom-file", k, dict(v), mid) for k, v in series.items()],
        "dicom-folder": [Case("dicom-folder", k, dict(v), "s") for k, v in series.items()],
        "dicom-enhanced": [Case("dicom-enhanced", "enhanced", {"e.dcm": _enhanced()}, "e.dcm")],
        "nifti": [Case("nifti", "nifti1", {"v.nii": n1}, "v.nii"),
                  Case("nifti", "nifti2", {"v.nii": n2}, "v.nii")],
        "nifti-gz": [Case("nifti-gz", "nifti1", {"v.nii.gz": gzip.compress(n1, mtime=0)},
                          "v.nii.gz"),
                     Case("nifti-gz", "nifti2", {"v.nii.gz": gzip.compress(n2, mtime=0)},
                          "v.nii.gz")],
        "nrrd": [Case("nrrd", k, {"v.nrrd": v}, "v.nrrd") for k, v in nrrd.items()],
        "mha": [Case("mha", k, {"v.mha": v}, "v.mha") for k, v in mha.items()],
    }  # fmt: skip


# ---------------------------------------------------------------- byte mutators

INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 4096, 65535, 1000000)  # fmt: skip


def _header_end(data: bytes, name: str) -> int:
    """Where the (small) header of a file ends: bulk voxel data is a poorer place to mutate."""
    if name.endswith((".dcm", ".nrrd", ".mha")) or "/" in name:
        pos = data.rfind(b"\xe0\x7f\x10\x00")  # DICOM PixelData
        if pos < 0:
            pos = data.find(b"\n\n") if name.endswith(".nrrd") else data.find(b"LOCAL\n")
        return len(data) if pos < 0 else min(len(data), pos + 16)
    return min(len(data), 560 if name.endswith(".nii") else len(data))


def _pos(rng: Rng, data: bytes, name: str) -> int:
    hi = _header_end(data, name) if rng.random() < 0.75 else len(data)
    return int(rng.integers(0, max(1, hi)))


def flip_bits(rng: Rng, data: bytes, name: str) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        if b:
            b[_pos(rng, data, name)] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def set_int(rng: Rng, data: bytes, name: str) -> bytes:
    size = int(rng.choice([1, 2, 4, 8]))
    value = int(rng.choice(INTERESTING)) % (1 << (8 * size))
    order = "little" if rng.random() < 0.8 else "big"
    p = _pos(rng, data, name)
    return data[:p] + value.to_bytes(size, order) + data[p + size :]


def truncate(rng: Rng, data: bytes, name: str) -> bytes:
    return data[: int(rng.integers(0, max(1, len(data))))]


def insert(rng: Rng, data: bytes, name: str) -> bytes:
    p = _pos(rng, data, name)
    n = int(rng.choice([1, 2, 4, 16, 256]))
    return data[:p] + rng.integers(0, 256, n, dtype=np.uint8).tobytes() + data[p:]


def delete(rng: Rng, data: bytes, name: str) -> bytes:
    p = _pos(rng, data, name)
    return data[:p] + data[p + int(rng.choice([1, 2, 4, 16, 256])) :]


def copy_chunk(rng: Rng, data: bytes, name: str) -> bytes:
    a, p = _pos(rng, data, name), _pos(rng, data, name)
    chunk = data[a : a + int(rng.choice([4, 16, 64, 512]))]
    return data[:p] + chunk + data[p:]


BYTE_MUTATORS: dict[str, Callable[[Rng, bytes, str], bytes]] = {
    "flip": flip_bits, "int": set_int, "truncate": truncate, "insert": insert,
    "delete": delete, "copy-chunk": copy_chunk,
}  # fmt: skip

# ---------------------------------------------------------------- DICOM mutators

DS_VALUES = ("nan", "inf", "-inf", "0", "-0", "1e308", "-1e308", "1e-300", "abc", "",
             "6", "0.01", "25", "-6", "1e5", "100000", "3.0000001")  # fmt: skip
US_VALUES = (0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 24, 32, 64, 255, 4096, 4097, 32768, 65535)
IS_VALUES = ("0", "1", "-1", "2", "11", "12", "13", "1000", "2147483647", "-2147483648", "abc",
             "99999999999", "")  # fmt: skip
UIDS = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201",
        "1.2.3", "", "1.2.840.10008.5.1.4.1.1.2")  # fmt: skip
SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1",
               "1.2.840.10008.5.1.4.1.1.4", "1.2.3", "")  # fmt: skip
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "", "FOO")
US_TAGS = ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
           "SamplesPerPixel", "PlanarConfiguration")  # fmt: skip
VECTORS = {
    "ImagePositionPatient": 3,
    "ImageOrientationPatient": 6,
    "PixelSpacing": 2,
}
IOP_VALUES = ([1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [1, 0, 0, 0.5, 0.5, 0],
              [2, 0, 0, 0, 2, 0], [1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 1],
              [1, 0, 0, 0, 1, 0, 0], [1e300, 0, 0, 0, 1e300, 0],
              [0.7071068, 0.7071068, 0, -0.7071068, 0.7071068, 0])  # fmt: skip


def _ds_list(rng: Rng, n: int) -> list[str]:
    return [str(rng.choice(DS_VALUES)) if rng.random() < 0.5 else f"{rng.normal(0, 50):.3f}"
            for _ in range(n)]  # fmt: skip


def _dicom_value(rng: Rng, kw: str) -> tuple[str, Any]:
    """A (VR, value) to set ``kw`` to."""
    if kw in US_TAGS:
        return "US", int(rng.choice(US_VALUES))
    if kw == "ImageOrientationPatient" and rng.random() < 0.6:
        return "DS", [str(v) for v in IOP_VALUES[int(rng.integers(len(IOP_VALUES)))]]
    if kw in VECTORS:
        n = VECTORS[kw] + int(rng.choice([0, 0, 0, -1, 1]))
        return "DS", _ds_list(rng, max(0, n))
    if kw in ("SliceThickness", "RescaleSlope", "RescaleIntercept"):
        return "DS", str(rng.choice(DS_VALUES))
    if kw == "PixelPaddingValue":
        return "SS", int(rng.choice([-32768, -2000, -1024, 0, 32767]))
    if kw == "NumberOfFrames":
        return "IS", str(rng.choice(IS_VALUES))
    if kw == "PhotometricInterpretation":
        return "CS", str(rng.choice(PHOTOMETRIC))
    if kw == "SOPClassUID":
        return "UI", str(rng.choice(SOP_CLASSES))
    if kw == "Modality":
        return "CS", str(rng.choice(["CT", "MR", "", "ct"]))
    return "LO", "x"


DICOM_KEYWORDS = (*US_TAGS, *VECTORS, "SliceThickness", "RescaleSlope", "RescaleIntercept",
                  "PixelPaddingValue", "NumberOfFrames", "PhotometricInterpretation",
                  "SOPClassUID", "Modality")  # fmt: skip
SWAP_VRS = (("OB", b"\x01\x02\x03"), ("DS", "abc"), ("US", 7), ("SQ", []), ("UN", b"\xff" * 5),
            ("FD", 1e300), ("SL", -5), ("AT", 0x00100010))  # fmt: skip


@contextlib.contextmanager
def _lenient_pydicom() -> Iterator[None]:
    """pydicom without value validation (restored after: tests share the process)."""
    import pydicom.config as cfg

    old = (cfg.settings.reading_validation_mode, cfg.settings.writing_validation_mode)
    cfg.settings.reading_validation_mode = cfg.settings.writing_validation_mode = cfg.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        cfg.settings.reading_validation_mode, cfg.settings.writing_validation_mode = old


def _targets(rng: Rng, ds: Any, kw: str) -> list[Any]:
    """The datasets holding ``kw``: the top level, or functional group items (enhanced)."""
    found = [ds] if kw in ds else []
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in ds.get(seq) or []:
            for item_seq in group:
                if item_seq.VR == "SQ":
                    found += [item for item in item_seq.value if kw in item]
    if not found:
        return [ds]
    return [found[int(rng.integers(len(found)))]] if rng.random() < 0.7 else found


def _raw(tag: int, vr: str, value: Any) -> Any:
    """An element whose bytes are written as given (no conversion or validation by pydicom)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    if isinstance(value, bytes):
        data = value
    elif vr in ("US", "SS", "SL", "FD", "AT"):
        fmt = {"US": "<H", "SS": "<h", "SL": "<i", "FD": "<d", "AT": "<HH"}[vr]
        args = (value >> 16, value & 0xFFFF) if vr == "AT" else (value,)
        data = struct.pack(fmt, *args)
    elif vr == "SQ":
        data = b""
    else:
        text = "\\".join(value) if isinstance(value, list) else str(value)
        data = text.encode("latin-1")
    if len(data) % 2:
        data += b"\0" if vr in ("UI", "OB", "UN") else b" "
    return RawDataElement(Tag(tag), vr, len(data), data, 0, False, True)


def _set_element(rng: Rng, ds: Any, name: list[str]) -> None:
    from pydicom.datadict import tag_for_keyword

    kw = str(rng.choice(DICOM_KEYWORDS))
    tag = tag_for_keyword(kw)
    op = rng.random()
    for target in _targets(rng, ds, kw):
        if op < 0.15:
            if kw in target:
                del target[kw]
            name[0] = f"del:{kw}"
        elif op < 0.3:
            vr, value = SWAP_VRS[int(rng.integers(len(SWAP_VRS)))]
            target._dict[tag] = _raw(tag, vr, value)
            name[0] = f"vr:{kw}"
        else:
            vr, value = _dicom_value(rng, kw)
            target._dict[tag] = _raw(tag, vr, value)
            name[0] = f"set:{kw}"


def _set_pixels(rng: Rng, ds: Any, name: list[str]) -> None:
    """Rows/Columns/frames/bits changed with PixelData resized to match (deeper paths)."""
    from pydicom.dataelem import DataElement

    rows, cols = (int(rng.choice([1, 2, 3, 16, 31, 64, 300])) for _ in range(2))
    bits = int(rng.choice([8, 16, 16, 32]))
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    try:  # the data of at most NK frames (a mutated NumberOfFrames may be 2**31)
        frames = min(max(1, int(ds.get("NumberOfFrames", 1) or 1)), NK)
    except (TypeError, ValueError):
        frames = 1
    fill = rng.integers(-1024, 1200, rows * cols * frames).astype(f"<i{bits // 8}")
    ds[0x7FE00010] = DataElement(0x7FE00010, "OB" if bits == 8 else "OW", fill.tobytes())
    name[0] = f"pixels:{rows}x{cols}x{bits}"


def _set_transfer_syntax(rng: Rng, ds: Any, name: list[str]) -> None:
    ds.file_meta.TransferSyntaxUID = str(rng.choice(UIDS))
    name[0] = "set:TransferSyntaxUID"


def _frames_items(rng: Rng, ds: Any, name: list[str]) -> None:
    """Enhanced: drop, duplicate or empty per-frame functional group items."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is None or not len(per):
        return _set_element(rng, ds, name)
    op = int(rng.integers(3))
    if op == 0:
        del per[int(rng.integers(len(per)))]
    elif op == 1:
        per.append(per[int(rng.integers(len(per)))])
    else:
        from pydicom.dataset import Dataset

        per[int(rng.integers(len(per)))] = Dataset()
    name[0] = f"frames-items:{op}"
    return None


def dicom_structured(rng: Rng, data: bytes, path: str) -> tuple[bytes, str]:
    """One structured mutation of a DICOM file (re-encoded with pydicom, not validated)."""
    import pydicom

    name = ["dicom"]
    with _lenient_pydicom():
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            ds.PixelData  # noqa: B018  (read it before changing the encoding)
        except Exception:
            return flip_bits(rng, data, path), "flip"
        choice = rng.random()
        if choice < 0.6:
            _set_element(rng, ds, name)
        elif choice < 0.75:
            _set_pixels(rng, ds, name)
        elif choice < 0.85 and hasattr(ds, "file_meta"):
            _set_transfer_syntax(rng, ds, name)
        else:
            _frames_items(rng, ds, name)
        buf = io.BytesIO()
        try:
            ds.save_as(buf, enforce_file_format=False)
        except Exception:
            return flip_bits(rng, data, path), "flip"
    return buf.getvalue(), name[0]


# ---------------------------------------------------------------- NIfTI mutators

NIFTI_VALUES: dict[str, tuple[float, ...]] = {
    "dim": (
        0,
        1,
        2,
        3,
        4,
        5,
        7,
        8,
        -1,
        12,
        16,
        4096,
        4097,
        32767,
        -32768,
        100000,
        2**31 - 1,
        2**40,
    ),
    "datatype": (
        0,
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        512,
        768,
        1024,
        1280,
        1536,
        1792,
        2048,
        2304,
        255,
        9999,
        -1,
    ),
    "bitpix": (0, 1, 8, 16, 32, 64, 128, 7, -16),
    "pixdim": (0.0, -1.0, 1e-10, 6.0, 25.0, 1e30, float("nan"), float("inf"), -6.0),
    "vox_offset": (0, 348, 352, 540, 544, 1e10, -1, 2**31, float("nan"), 7),
    "scl_slope": (0.0, 1.0, -1.0, float("nan"), float("inf"), 1e30, 1e-30, 1e10),
    "scl_inter": (0.0, -1024.0, float("nan"), float("inf"), 1e30, -1e30),
    "qform_code": (0, 1, 2, 5, -1, 32767),
    "sform_code": (0, 1, 2, 5, -1, 32767),
    "quatern_b": (0.0, 1.0, 2.0, float("nan"), -1.0, 1e30),
    "srow_x": (0.0, 6.0, -6.0, float("nan"), float("inf"), 1e30, 1e-12),
    "sizeof_hdr": (0, 348, 540, 1000000, -1),
    "magic": (0,),
}
NIFTI_FIELDS = {
    "quatern_c": "quatern_b", "quatern_d": "quatern_b", "qoffset_x": "srow_x",
    "srow_y": "srow_x", "srow_z": "srow_x",
}  # fmt: skip


def _nifti_dtype(data: bytes) -> Any:
    import nibabel as nib

    two = data[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c")
    dt = (nib.nifti2 if two else nib.nifti1).header_dtype
    big = data[:4] in (b"\x00\x00\x01\x5c", b"\x00\x00\x02\x1c")
    return dt.newbyteorder(">" if big else "<")


def nifti_header(rng: Rng, data: bytes, path: str) -> tuple[bytes, str]:
    """One header field of an uncompressed NIfTI-1/2 byte string set to an odd value."""
    dt = _nifti_dtype(data)
    if len(data) < dt.itemsize:
        return truncate(rng, data, path), "truncate"
    hdr = np.frombuffer(data[: dt.itemsize], dtype=dt).copy()
    names = [*NIFTI_VALUES, *NIFTI_FIELDS]
    fname = str(rng.choice(names))
    pool = NIFTI_VALUES[NIFTI_FIELDS.get(fname, fname)]
    value = pool[int(rng.integers(len(pool)))]
    fld = hdr[fname]
    if fname == "magic":
        hdr[fname] = rng.choice([b"ni1", b"n+1", b"n+2", b"xxx", b""])
    else:
        index = (0, int(rng.integers(fld.shape[1]))) if fld.ndim > 1 else 0
        with np.errstate(all="ignore"):
            kind = fld.dtype.kind
            if kind in "iu":
                info = np.iinfo(fld.dtype)
                value = int(np.clip(np.nan_to_num(value), info.min, info.max))
            fld[index] = value
        hdr[fname] = fld
    return hdr.tobytes() + data[dt.itemsize :], f"nifti:{fname}"


def nifti_consistent(rng: Rng, data: bytes, path: str) -> tuple[bytes, str]:
    """New dims / datatype with voxel data of the matching size (deeper than a mismatch)."""
    dt = _nifti_dtype(data)
    hdr = np.frombuffer(data[: dt.itemsize], dtype=dt).copy()
    dims = [int(rng.choice([1, 2, 3, 8, 12, 16, 40])) for _ in range(3)]
    code, npt = [(2, "u1"), (4, "i2"), (8, "i4"), (16, "f4"), (64, "f8"), (512, "u2"),
                 (1024, "i8")][int(rng.integers(7))]  # fmt: skip
    dim = hdr["dim"].copy()
    dim[0, :4] = [3, *dims]
    hdr["dim"], hdr["datatype"] = dim, code
    hdr["bitpix"] = np.dtype(npt).itemsize * 8
    offset = int(np.asarray(hdr["vox_offset"]).ravel()[0])
    voxels = rng.integers(-1024, 1500, int(np.prod(dims))).astype(np.dtype(npt).newbyteorder(
        dt.byteorder if dt.byteorder in "<>" else "<"))  # fmt: skip
    if rng.random() < 0.2 and voxels.dtype.kind == "f":
        voxels[int(rng.integers(voxels.size))] = np.nan
    head = hdr.tobytes() + data[dt.itemsize : offset]
    return head + voxels.tobytes(), f"nifti-voxels:{'x'.join(map(str, dims))}:{npt}"


# ---------------------------------------------------------------- NRRD / MetaImage mutators

NRRD_FIELDS: dict[str, tuple[str, ...]] = {
    "type": (
        "short",
        "ushort",
        "int",
        "uint",
        "float",
        "double",
        "uchar",
        "signed char",
        "int64",
        "uint64",
        "block",
        "foo",
        "",
    ),
    "dimension": ("0", "1", "2", "3", "4", "17", "-1", "1000000", "x"),
    "sizes": (
        "16 16 12",
        "0 16 12",
        "100000 100000 100000",
        "16 16",
        "16 16 12 1",
        "-1 16 12",
        "4097 4096 12",
        "a b c",
        "16 16 1e10",
        "1 1 12",
        "16 16 2001",
        "3 16 16 12",
    ),
    "space directions": (
        "(6,0,0) (0,6,0) (0,0,6)",
        "(0,0,0) (0,6,0) (0,0,6)",
        "(nan,0,0) (0,6,0) (0,0,6)",
        "(1e308,0,0) (0,6,0) (0,0,6)",
        "(6,0,0) (6,0,0) (0,0,6)",
        "none (6,0,0) (0,6,0) (0,0,6)",
        "(6,0) (0,6) (0,0)",
        "(inf,0,0) (0,6,0) (0,0,6)",
        "(25,0,0) (0,25,0) (0,0,25)",
    ),
    "space origin": ("(0,0,0)", "(nan,0,0)", "(1e308,1e308,1e308)", "(0,0)", "()"),
    "encoding": ("raw", "gzip", "bzip2", "ascii", "hex", "txt", "foo"),
    "endian": ("big", "little", "middle"),
    "space": (
        "left-posterior-superior",
        "right-anterior-superior",
        "3D-right-handed-time",
        "scanner-xyz",
        "foo",
    ),
    "kinds": (
        "domain domain domain",
        "RGB-color domain domain",
        "vector domain domain",
        "domain domain",
        "list domain domain domain",
    ),
    "data file": ("LIST", "missing.raw", "v%03d.raw 0 1000000 1", ".", "/dev/zero", "../v.raw"),
    "byte skip": ("-1", "0", "1000000", "x"),
    "line skip": ("1000000", "-1"),
}
MHA_FIELDS: dict[str, tuple[str, ...]] = {
    "NDims": ("0", "1", "2", "3", "4", "-1", "100", "x"),
    "DimSize": (
        "16 16 12",
        "0 16 12",
        "100000 100000 100000",
        "16 16",
        "16 16 12 1",
        "-1 16 12",
        "4097 4096 12",
        "a b c",
        "1 1 12",
        "16 16 2001",
    ),
    "ElementSpacing": ("6 6 6", "0 6 6", "nan 6 6", "1e308 6 6", "-6 6 6", "25 25 25", "6"),
    "Offset": ("0 0 0", "nan 0 0", "1e308 0 0", "0"),
    "TransformMatrix": (
        "1 0 0 0 1 0 0 0 1",
        "0 0 0 0 0 0 0 0 0",
        "1 0 0 1 0 0 0 0 1",
        "nan 0 0 0 1 0 0 0 1",
        "2 0 0 0 2 0 0 0 2",
        "1 0 0",
    ),
    "ElementType": (
        "MET_SHORT",
        "MET_USHORT",
        "MET_UCHAR",
        "MET_CHAR",
        "MET_INT",
        "MET_FLOAT",
        "MET_DOUBLE",
        "MET_LONG_LONG",
        "MET_OTHER",
        "MET_STRING",
        "MET_SHORT_ARRAY",
        "MET_FLOAT_MATRIX",
        "foo",
    ),
    "ElementNumberOfChannels": ("0", "1", "3", "1000000", "-1"),
    "BinaryDataByteOrderMSB": ("True", "False", "x"),
    "CompressedData": ("True", "False"),
    "CompressedDataSize": ("0", "1", "100", "99999999999", "-1"),
    "HeaderSize": ("-1", "0", "1000000000000", "10"),
    "ElementDataFile": ("LOCAL", "LIST", "missing.raw", "v%03d.raw 1 1000000 1", "/dev/zero"),
    "ObjectType": ("Image", "Tube", "foo"),
}


def _split_text(data: bytes, fmt: str) -> tuple[list[bytes], bytes]:
    if fmt == "nrrd":
        end = data.find(b"\n\n")
        end = len(data) if end < 0 else end + 2
    else:
        at = data.find(b"ElementDataFile")
        nl = data.find(b"\n", at) if at >= 0 else -1
        end = len(data) if nl < 0 else nl + 1
    return data[:end].split(b"\n"), data[end:]


def _payload(rng: Rng, header: list[bytes], payload: bytes, fmt: str) -> bytes:
    """For a raw file, voxel data of the declared size (short/int16 only), else unchanged."""
    text = b"\n".join(header).decode("latin-1")
    key = "sizes:" if fmt == "nrrd" else "DimSize ="
    raw = ("encoding: raw" in text) if fmt == "nrrd" else ("CompressedData = True" not in text)
    if not raw or rng.random() < 0.5:
        return payload
    for line in text.splitlines():
        if line.startswith(key):
            try:
                n = int(np.prod([int(v) for v in line[len(key) :].split()]))
            except ValueError:
                return payload
            if 0 < n <= 200_000:
                return rng.integers(-1024, 1500, n).astype("<i2").tobytes()
    return payload


def text_header(rng: Rng, data: bytes, path: str) -> tuple[bytes, str]:
    """One NRRD / MetaImage header line set, removed, duplicated or added."""
    fmt = "nrrd" if path.endswith(".nrrd") else "mha"
    table = NRRD_FIELDS if fmt == "nrrd" else MHA_FIELDS
    sep = ": " if fmt == "nrrd" else " = "
    lines, payload = _split_text(data, fmt)
    key = str(rng.choice(list(table)))
    value = str(rng.choice(table[key]))
    keyed = [i for i, ln in enumerate(lines) if ln.split(sep.strip().encode())[0].strip()
             == key.encode()]  # fmt: skip
    op = rng.random()
    new = f"{key}{sep}{value}".encode("latin-1")
    if keyed and op < 0.15:
        del lines[keyed[0]]
        tag = f"del:{key}"
    elif keyed and op < 0.25:
        lines.insert(keyed[0], new)
        tag = f"dup:{key}"
    elif keyed:
        lines[keyed[0]] = new
        tag = f"set:{key}"
    else:
        at = len(lines) - (3 if fmt == "nrrd" else 2)
        lines.insert(max(1, at), new)
        tag = f"add:{key}"
    if key in ("sizes", "DimSize", "type", "ElementType"):
        payload = _payload(rng, lines, payload, fmt)
    return b"\n".join(lines) + payload, f"{fmt}:{tag}"


# ---------------------------------------------------------------- one input


def _structured(rng: Rng, case: Case, name: str) -> tuple[bytes, str]:
    data = case.files[name]
    if case.fmt.startswith("dicom"):
        return dicom_structured(rng, data, name)
    if case.fmt == "nifti-gz":
        try:
            inner = gzip.decompress(data)
        except Exception:
            return flip_bits(rng, data, name), "flip"
        mut = nifti_consistent if rng.random() < 0.3 else nifti_header
        out, tag = mut(rng, inner, name)
        return gzip.compress(out, mtime=0), tag
    if case.fmt == "nifti":
        return (nifti_consistent if rng.random() < 0.3 else nifti_header)(rng, data, name)
    return text_header(rng, data, name)


def _folder_op(rng: Rng, case: Case) -> str:
    """Remove, copy or re-label whole files of a DICOM series."""
    names = sorted(case.files)
    op = int(rng.integers(3))
    victim = names[int(rng.integers(len(names)))]
    if op == 0 and len(names) > 1:
        del case.files[victim]
        if case.target == victim:
            case.target = sorted(case.files)[0]
        return "remove-file"
    if op == 1:
        case.files[victim.replace(".dcm", "_copy.dcm")] = case.files[victim]
        return "copy-file"
    case.files["s/junk.bin"] = rng.integers(0, 256, int(rng.integers(0, 600)), np.uint8).tobytes()
    return "add-junk"


def make_case(seed: int, index: int) -> Case:
    """Input ``index`` of campaign ``seed`` (independent of every other input)."""
    rng = np.random.default_rng([seed, index])
    fmt = FORMATS[int(rng.integers(len(FORMATS)))]
    pool = seeds()[fmt]
    base = pool[int(rng.integers(len(pool)))]
    case = Case(fmt, base.seed, dict(base.files), base.target)
    for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
        case.mutators.append(_mutate(rng, case))
    return case


def _mutate(rng: Rng, case: Case) -> str:
    names = sorted(case.files)
    if case.fmt == "dicom-folder" and rng.random() < 0.1:
        return _folder_op(rng, case)
    every = case.fmt == "dicom-folder" and rng.random() < 0.3
    if case.fmt == "dicom-file" and rng.random() < 0.8:
        names = [case.target]  # mostly the file that was given
    chosen = names if every else [names[int(rng.integers(len(names)))]]
    structured = rng.random() < 0.5
    mut = str(rng.choice(list(BYTE_MUTATORS)))
    state = rng.bit_generator.state
    tag = mut
    for name in chosen:
        if every:
            rng.bit_generator.state = state  # the same mutation in every file
        if structured:
            try:
                case.files[name], tag = _structured(rng, case, name)
            except Exception:  # the seed was already mutated beyond parsing: bytes then
                case.files[name], tag = flip_bits(rng, case.files[name], name), "flip"
        else:
            case.files[name] = BYTE_MUTATORS[mut](rng, case.files[name], name)
    return f"all:{tag}" if every else tag


# ---------------------------------------------------------------- worker (subprocess)


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss_reset() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


MEMORY_WORDS = ("bad_alloc", "memoryerror", "unable to allocate", "cannot allocate memory",
                "too large to read into memory")  # fmt: skip


def _is_memory(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, MemoryError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    return any(s in text for s in MEMORY_WORDS)


def run_one(path: Path) -> dict[str, Any]:
    """``load_ct(path)`` and what came of it (in the worker)."""
    from ctface.errors import CtfaceError
    from ctface.ingest import load_ct
    from ctface.ingest.volume import CtVolume

    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        vol = load_ct(path)
        ok = (isinstance(vol, CtVolume) and vol.hu.dtype == np.int16 and vol.hu.ndim == 3
              and bool(np.all(np.isfinite(vol.affine_lps))))  # fmt: skip
        out["outcome"] = "result" if ok else "finding:bad-result"
    except MemoryError as exc:
        out["outcome"], out["message"] = "finding:memory", f"MemoryError: {exc}"
    except CtfaceError as exc:
        msg = str(exc)
        out["outcome"], out["message"] = type(exc).__name__, msg
        if _is_memory(exc):
            out["outcome"] = "finding:memory"
        elif not msg.strip() or "\n" in msg.strip():
            out["outcome"] = "finding:message"
    except Exception as exc:
        import traceback

        out["outcome"] = "finding:crash"
        out["message"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        frames = traceback.extract_tb(exc.__traceback__)
        out["where"] = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames[-4:]]
        if _is_memory(exc):
            out["outcome"] = "finding:memory"
    out["seconds"] = time.perf_counter() - t0
    return out


def _write_case(root: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _send(fd: int, obj: Any) -> None:
    body = pickle.dumps(obj)
    os.write(fd, struct.pack("<Q", len(body)))
    view = memoryview(body)
    while view:
        view = view[os.write(fd, view) :]


def _recv(fd: int) -> Any:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    (n,) = struct.unpack("<Q", exactly(8))
    return pickle.loads(exactly(n))


def worker_main() -> None:
    """Read cases from stdin, answer results on stdout; the address space limited after warm-up."""
    import resource

    out_fd, in_fd = os.dup(1), 0
    os.dup2(2, 1)  # anything printed goes to stderr, not into the protocol
    warnings.simplefilter("ignore")
    root = Path(tempfile.mkdtemp(prefix="ctface-fuzz-"))
    try:
        for case in [c for cases in seeds().values() for c in cases]:  # warm-up: every reader
            _write_case(root / "c", case.files)
            run_one(root / "c" / case.target)
        limit = _vm_size() + MEMORY_LIMIT
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        _send(out_fd, {"ready": True, "limit": limit})
        while True:
            try:
                files, target = _recv(in_fd)
            except EOFError:
                break
            _write_case(root / "c", files)
            _peak_rss_reset()
            result = run_one(root / "c" / target)
            result["message"] = str(result.get("message", "")).replace(str(root / "c"), "<in>")
            result["peak_rss"] = _peak_rss()
            _send(out_fd, result)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Worker:
    """A worker subprocess; ``submit`` a case, then ``poll`` its answer (or kill it on time)."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            cwd=str(REPO),
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in, self.fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.ready = _recv(self.fd_out)
        self.index: int | None = None
        self.started = 0.0

    def submit(self, index: int, case: Case) -> None:
        self.index, self.started = index, time.perf_counter()
        _send(self.fd_in, (case.files, case.target))

    def answer(self) -> dict[str, Any]:
        try:
            return dict(_recv(self.fd_out))
        except EOFError:
            code = self.proc.wait()
            return {"outcome": "finding:memory" if code in (-9, 137) else "finding:died",
                    "message": f"worker exited with {code}",
                    "seconds": time.perf_counter() - self.started}  # fmt: skip

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


def run_inputs(
    cases: Iterator[tuple[int, Case]], jobs: int, on_result: Callable[[int, Case, dict], None]
) -> None:
    """Run every case on ``jobs`` workers with the 10 s watchdog; a dead or killed worker is
    replaced. The next cases are made while the workers run."""
    workers = [Worker() for _ in range(jobs)]
    pending: dict[int, Case] = {}
    ahead: list[tuple[int, Case]] = []
    it = iter(cases)
    try:
        while True:
            for w in workers:
                if w.index is None and ahead:
                    index, case = ahead.pop(0)
                    pending[index] = case
                    w.submit(index, case)
            ahead += [c for c in (next(it, None) for _ in range(jobs - len(ahead))) if c]
            busy = [w for w in workers if w.index is not None]
            if not busy and not ahead:
                break
            if busy:
                _collect(workers, pending, on_result)
    finally:
        for w in workers:
            w.close()


def _collect(
    workers: list[Worker], pending: dict[int, Case], on_result: Callable[[int, Case, dict], None]
) -> None:
    """Wait for the first answer or time limit; hand on what came (or the timeout)."""
    busy = [w for w in workers if w.index is not None]
    now = time.perf_counter()
    wait = max(0.0, min(w.started + TIME_LIMIT_S - now for w in busy))
    ready, _, _ = select.select([w.fd_out for w in busy], [], [], wait)
    for k, w in enumerate(workers):
        if w.index is None:
            continue
        if w.fd_out in ready:
            result = w.answer()
        elif time.perf_counter() - w.started > TIME_LIMIT_S:
            w.kill()
            result = {"outcome": "finding:timeout", "seconds": TIME_LIMIT_S,
                      "message": f"no answer within {TIME_LIMIT_S:g} s"}  # fmt: skip
        else:
            continue
        index, w.index = w.index, None
        on_result(index, pending.pop(index), result)
        if w.proc.poll() is not None:
            workers[k] = Worker()


# ---------------------------------------------------------------- campaign


@dataclass
class Tally:
    inputs: int = 0
    by_format: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_mutator: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    outcomes: Counter = field(default_factory=Counter)
    findings: list[dict[str, Any]] = field(default_factory=list)
    slowest: dict[str, Any] = field(default_factory=lambda: {"seconds": -1.0})
    peak: dict[str, Any] = field(default_factory=lambda: {"peak_rss_mb": -1.0})

    def add(self, index: int, case: Case, result: dict[str, Any]) -> None:
        self.inputs += 1
        outcome = str(result["outcome"])
        self.outcomes[outcome] += 1
        self.by_format[case.fmt][outcome] += 1
        for m in case.mutators:
            family = m.split(":")[0] if not m.startswith("all:") else m.split(":")[1]
            self.by_mutator[family]["inputs"] += 1
            if outcome.startswith("finding"):
                self.by_mutator[family]["findings"] += 1
        what = {"index": index, "format": case.fmt, "seed": case.seed,
                "mutators": case.mutators, "outcome": outcome,
                "message": str(result.get("message", ""))[:300]}  # fmt: skip
        if outcome.startswith("finding") and len(self.findings) < 200:
            self.findings.append({**what, "where": result.get("where")})
        if result["seconds"] > self.slowest["seconds"]:
            self.slowest = {**what, "seconds": round(float(result["seconds"]), 3)}
        rss = result.get("peak_rss", 0) / 2**20
        if rss > self.peak["peak_rss_mb"]:
            self.peak = {**what, "peak_rss_mb": round(rss, 1)}


def campaign(seed: int, n_inputs: int, jobs: int, start: int = 0) -> Tally:
    """Run inputs ``start .. start + n_inputs`` of campaign ``seed``."""
    tally = Tally()
    t0 = time.perf_counter()

    def cases() -> Iterator[tuple[int, Case]]:
        for i in range(start, start + n_inputs):
            yield i, make_case(seed, i)

    def on_result(index: int, case: Case, result: dict[str, Any]) -> None:
        tally.add(index, case, result)
        if result["outcome"].startswith("finding"):
            print(f"  FINDING #{index} {case.fmt} {case.mutators}: {result['outcome']} "
                  f"{result.get('message', '')[:160]}", flush=True)  # fmt: skip
        if tally.inputs % 5000 == 0:
            rate = tally.inputs / (time.perf_counter() - t0)
            print(f"  {tally.inputs} inputs, {rate:.0f}/s", flush=True)

    run_inputs(cases(), jobs, on_result)
    return tally


def replay(index: int, seed: int, out: Path) -> None:
    """Write input ``index`` of campaign ``seed`` to the folder ``out`` (to inspect it)."""
    case = make_case(seed, index)
    _write_case(out, case.files)
    print(f"{case.fmt} {case.seed} {case.mutators}: load_ct({out / case.target})")


def _table(tally: Tally) -> None:
    cols = sorted({o for c in tally.by_format.values() for o in c})
    print(f"\n{'format':16s}{'inputs':>8s}" + "".join(f"{c:>19s}" for c in cols))
    for fmt in FORMATS:
        c = tally.by_format.get(fmt, Counter())
        print(f"{fmt:16s}{sum(c.values()):8d}" + "".join(f"{c[o]:19d}" for o in cols))
    print(f"\n{'mutator':22s}{'inputs':>8s}{'findings':>10s}")
    for m, c in sorted(tally.by_mutator.items()):
        print(f"{m:22s}{c['inputs']:8d}{c['findings']:10d}")


def corpus_index(corpus: Path = CORPUS) -> list[dict[str, Any]]:
    path = corpus / "index.json"
    return list(json.loads(path.read_text())) if path.exists() else []


def corpus_case(entry: dict[str, Any], corpus: Path = CORPUS) -> Case:
    """A regression input of the corpus, made again from its seed (built in code) and the
    byte edits the index keeps per file (``[start, end, hex]`` of the seed's bytes replaced;
    ``null``: the seed's file left out): no data file is committed."""
    folder, _, target = entry["file"].partition("/")
    seed = next(c for c in seeds()[entry["format"]] if c.seed == entry["seed_input"])
    edits: dict[str, list[list[Any]] | None] = entry["edits"]
    files = {name: data for name, data in seed.files.items() if edits.get(name, []) is not None}
    for name, ops in edits.items():
        if ops is not None:
            data = bytearray(seed.files.get(name, b""))
            for start, end, new in sorted(ops, reverse=True):  # from the end: offsets hold
                data[start:end] = bytes.fromhex(new)
            files[name] = bytes(data)
    return Case(entry["format"], folder, files, target)


def run_corpus(corpus: Path = CORPUS) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every corpus input through a worker (same contract as the campaign)."""
    entries = corpus_index(corpus)
    results: dict[int, dict[str, Any]] = {}
    cases = ((i, corpus_case(e, corpus)) for i, e in enumerate(entries))
    run_inputs(cases, 1, lambda i, case, r: results.__setitem__(i, r))
    return [(e, results[i]) for i, e in enumerate(entries)]


ATHERIS_FORMATS = ("dicom-file", "dicom-enhanced", "nifti", "nifti-gz", "nrrd", "mha")


def atheris_main(seconds: int, work: Path) -> None:
    """Coverage-guided byte fuzzing with atheris (libFuzzer) for ``seconds``, in-process: the
    first byte picks the format, the rest is the file (a classic slice goes into its series).
    libFuzzer's own limits stand in for the worker's: -timeout=10, -rss_limit_mb=2048 (above
    the process's size); a crash stops it and leaves crash-* in ``work``."""
    import atheris

    with atheris.instrument_imports(include=["ctface.ingest", "pydicom", "nibabel"]):
        from ctface.errors import CtfaceError
        from ctface.ingest import load_ct
    warnings.simplefilter("ignore")
    pool = seeds()
    seed_dir, case_dir = work / "seeds", work / "case"
    seed_dir.mkdir(parents=True, exist_ok=True)
    for n, fmt in enumerate(ATHERIS_FORMATS):
        for k, case in enumerate(pool[fmt]):
            (seed_dir / f"{fmt}-{k}").write_bytes(bytes([n]) + case.files[case.target])

    def one_input(data: bytes) -> None:
        if not data:
            return
        base = pool[ATHERIS_FORMATS[data[0] % len(ATHERIS_FORMATS)]][0]
        files = dict(base.files)
        files[base.target] = data[1:]
        _write_case(case_dir, files)
        with contextlib.suppress(CtfaceError):
            load_ct(case_dir / base.target)

    argv = [sys.argv[0], str(seed_dir), f"-max_total_time={seconds}", "-timeout=10",
            "-rss_limit_mb=3072", "-print_final_stats=1", f"-artifact_prefix={work}/"]  # fmt: skip
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="first input index (resume a range)")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    ap.add_argument("--replay", type=int, help="write input N to --replay-dir and stop")
    ap.add_argument("--replay-dir", type=Path, default=Path("fuzz_case"))
    ap.add_argument(
        "--atheris",
        type=int,
        metavar="SECONDS",
        help="coverage-guided byte fuzzing with atheris instead (in-process)",
    )
    ap.add_argument("--atheris-dir", type=Path, default=Path("fuzz_atheris"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main()
    if args.atheris is not None:
        return atheris_main(args.atheris, args.atheris_dir)
    if args.replay is not None:
        return replay(args.replay, args.seed, args.replay_dir)
    from ctface.files import portable_path, write_text_atomic

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    print(f"fuzzing load_ct: {args.inputs} inputs, seed {args.seed}, {args.jobs} worker(s)")
    tally = campaign(args.seed, args.inputs, args.jobs, args.start)
    total = time.perf_counter() - t0
    _table(tally)
    o = tally.outcomes
    kinds = ("crash", "timeout", "memory", "died", "bad-result", "message")
    findings = {k: o.get(f"finding:{k}", 0) for k in kinds}
    print(f"\n{tally.inputs} inputs in {total:.0f} s ({tally.inputs / total:.1f}/s); findings: "
          f"{findings}; slowest {tally.slowest['seconds']} s ({tally.slowest['format']} "
          f"{tally.slowest['mutators']})")  # fmt: skip
    cmd = (f"python benchmarks/fuzz.py --inputs {args.inputs} --seed {args.seed} "
           f"--jobs {args.jobs}" + (f" --start {args.start}" if args.start else ""))  # fmt: skip
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu_count": os.cpu_count(),
        "command": cmd,
        "engine": "seeded structured + byte mutation (numpy default_rng([seed, index])), "
        "worker subprocess per job: RLIMIT_AS = warmed-up size + 2 GiB, 10 s watchdog",
        "seed": args.seed,
        "inputs": tally.inputs,
        "jobs": args.jobs,
        "total_s": round(total, 1),
        "inputs_per_s": round(tally.inputs / total, 1),
        "outcomes": dict(sorted(o.items())),
        "findings": findings,
        "unfixed_findings": tally.findings,
        "by_format": {f: dict(sorted(tally.by_format[f].items())) for f in FORMATS},
        "by_mutator": {m: dict(c) for m, c in sorted(tally.by_mutator.items())},
        "slowest_input": tally.slowest,
        "largest_peak_rss": tally.peak,
        "fixed_crashes": [
            {**e, "file": f"tests/fuzz_corpus/{e['file']}"} for e in corpus_index()
        ],  # fmt: skip
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(f"wrote {portable_path(args.out, REPO)}")
    return None


if __name__ == "__main__":
    main()
