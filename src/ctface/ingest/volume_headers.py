"""Check the header of a NIfTI, NRRD or MetaImage file before its voxels are read.

The readers (nibabel, SimpleITK) allocate what a header declares before reading, and the ITK
readers crash the process on some malformed headers (MetaImage NDims out of range, NRRD text
encodings of binary data). So the header is parsed here first: one 3-D scalar volume (a 4th
dimension of size 1 is allowed), sizes within the sanity limits, finite geometry, a known
voxel type, voxel data in the file itself or in one data file in its folder, and at least as
many data bytes as declared (compressed data: at most ``MAX_COMPRESSION`` times its size).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ctface.errors import InvalidInputError
from ctface.ingest.checks import check_data_bytes, check_shape, shown

MAX_HEADER_BYTES = 65536
NRRD_TYPES = {
    1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
    2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t",
        "ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
        "float"),
    8: ("longlong", "long long", "long long int", "signed long long", "signed long long int",
        "int64", "int64_t", "ulonglong", "unsigned long long", "unsigned long long int",
        "uint64", "uint64_t", "double"),
}  # fmt: skip
NRRD_ENCODINGS = {"raw": False, "gzip": True, "gz": True, "bzip2": True, "bz2": True}
MET_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
             "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8,
             "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}  # fmt: skip


def _fail(path: Path, what: str) -> InvalidInputError:
    return InvalidInputError(f"{path} has an unusable header: {what}.")


def _numbers(path: Path, key: str, text: str, n: int | None, integer: bool = False) -> list[float]:
    """``n`` finite numbers (any count if None) from a header value."""
    parts = text.replace("(", " ").replace(")", " ").replace(",", " ").split()
    try:
        values = [float(int(v)) if integer else float(v) for v in parts]
    except ValueError:
        raise _fail(path, f"{key} {shown(text)!r} is not numbers") from None
    if (n is not None and len(values) != n) or not all(math.isfinite(v) for v in values):
        raise _fail(path, f"{key} {shown(text)!r} is not {n or 'some'} finite numbers")
    return values


def _sizes(path: Path, key: str, text: str, ndim: int) -> list[int]:
    """Voxels along each axis: 3 of them (a 4th of 1 allowed), within the sanity limits."""
    if ndim not in (3, 4):
        raise InvalidInputError(f"{path} is {ndim}-D; a 3-D CT volume is needed.")
    sizes = [int(v) for v in _numbers(path, key, text, ndim, integer=True)]
    if ndim == 4 and sizes[3] != 1:
        raise InvalidInputError(f"{path} is 4-D; a 3-D CT volume is needed.")
    _shape(path, sizes[:3])
    return sizes


def _shape(path: Path, sizes: list[int]) -> None:
    try:
        check_shape(sizes[0], sizes[1], sizes[2])
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path} cannot be used: {exc}") from exc


def _fields(lines: list[str], sep: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        if sep in line and not line.startswith("#"):
            key, value = line.split(sep, 1)
            out[key.strip().lower()] = value.strip()
    return out


def _head(path: Path) -> str:
    with path.open("rb") as fh:
        return fh.read(MAX_HEADER_BYTES).decode("latin-1")


def _data_file(path: Path, name: str) -> Path:
    """The one data file a detached header names, in its folder (lists, patterns and files
    elsewhere, such as /dev/zero or another patient's data, are refused)."""
    if not name or name.upper().split()[0] == "LIST" or "%" in name:
        raise _fail(path, f"data file {shown(name)!r} (lists and patterns are not supported)")
    # judged by its name, not where a link points (DataLad/git-annex keep data as links)
    if os.path.isabs(name) or ".." in Path(os.path.normpath(name)).parts:
        raise _fail(path, f"data file {shown(name)!r} outside the header's folder")
    data = path.parent / name
    if not data.is_file():
        raise InvalidInputError(f"{path} names a data file {shown(name)!r} that does not exist.")
    return data


def _header_end(text: str) -> tuple[int, int]:
    """Where an attached NRRD header ends (its blank line, LF or CRLF) and that line's length;
    no blank line: all of ``text``."""
    ends = [(i, len(sep)) for sep in ("\n\n", "\r\n\r\n") if (i := text.find(sep)) >= 0]
    return min(ends) if ends else (len(text), 0)


def check_nrrd(path: Path) -> None:
    """Raise unless ``path`` is a NRRD header SimpleITK can read safely (see module doc)."""
    text = _head(path)
    end, blank = _header_end(text)
    lines = text[:end].splitlines()
    if not lines or not lines[0].startswith("NRRD000"):
        raise _fail(path, "no NRRD magic line")
    f = _fields(lines[1:], ":")
    ndim = int(_numbers(path, "dimension", f.get("dimension", ""), 1, integer=True)[0])
    sizes = _sizes(path, "sizes", f.get("sizes", ""), ndim)
    size = next((n for n, names in NRRD_TYPES.items() if f.get("type") in names), None)
    encoding = f.get("encoding", "").lower()
    if size is None:
        raise _fail(path, f"voxel type {shown(f.get('type'))!r}")
    if encoding not in NRRD_ENCODINGS:
        raise _fail(path, f"encoding {shown(encoding)!r} (raw, gzip or bzip2 are supported)")
    if f.get("endian", "little") not in ("little", "big"):
        raise _fail(path, f"endian {shown(f['endian'])!r}")
    for key in ("space directions", "space origin"):
        if key in f:
            _numbers(path, key, f[key].replace("none", ""), None)
    detached = f.get("data file", f.get("datafile"))
    if detached is not None:
        available = _data_file(path, detached).stat().st_size
    else:
        available = path.stat().st_size - (end + blank)
    declared = float(math.prod(sizes)) * size
    check_data_bytes(declared, available, NRRD_ENCODINGS[encoding], f"Cannot read {path}")


def check_metaimage(path: Path) -> None:
    """Raise unless ``path`` is a MetaImage header SimpleITK can read safely."""
    text = _head(path)
    lines = text.splitlines()
    last = next((i for i, ln in enumerate(lines) if ln.strip().startswith("ElementDataFile")), -1)
    if last < 0:
        raise _fail(path, "no ElementDataFile line")
    f = _fields(lines[: last + 1], "=")
    ndim = int(_numbers(path, "NDims", f.get("ndims", ""), 1, integer=True)[0])
    sizes = _sizes(path, "DimSize", f.get("dimsize", ""), ndim)
    _check_meta_geometry(path, f, ndim)
    size = MET_TYPES.get(f.get("elementtype", "").upper())
    if size is None:
        raise _fail(path, f"ElementType {shown(f.get('elementtype'))!r}")
    channels = f.get("elementnumberofchannels", "1")
    if channels.strip() != "1":
        raise InvalidInputError(f"{path} has several values per voxel (colour or vector image).")
    compressed = f.get("compresseddata", "false").lower() == "true"
    available = _meta_available(path, f, lines, last, compressed)
    check_data_bytes(float(math.prod(sizes)) * size, available, compressed, f"Cannot read {path}")


def _check_meta_geometry(path: Path, f: dict[str, Any], ndim: int) -> None:
    for key in ("ElementSpacing", "ElementSize", "Offset", "Position", "Origin"):
        if key.lower() in f:
            _numbers(path, key, f[key.lower()], ndim)
    for key in ("TransformMatrix", "Rotation", "Orientation"):
        if key.lower() in f:
            _numbers(path, key, f[key.lower()], ndim * ndim)


def _meta_available(
    path: Path, f: dict[str, Any], lines: list[str], last: int, zipped: bool
) -> int:
    """Bytes of voxel data the MetaImage holds (in the file after the header, or beside it)."""
    name = f["elementdatafile"]
    header = sum(len(ln) + 1 for ln in lines[: last + 1])
    if name.upper() == "LOCAL":
        available = path.stat().st_size - header
    else:
        available = _data_file(path, name).stat().st_size
    for key, shown_key in (
        ("headersize", "HeaderSize"),
        ("compresseddatasize", "CompressedDataSize"),
    ):
        if key in f:
            n = _numbers(path, shown_key, f[key], 1, integer=True)[0]
            low = -1 if key == "headersize" else 1  # HeaderSize -1: the data ends the file
            if n < low or n > available:
                raise _fail(path, f"{shown_key} {n:.0f} (the data holds {available} bytes)")
            if key == "headersize" and n == -1 and zipped:  # MetaIO: bad_alloc
                raise _fail(path, "HeaderSize -1 (data at the end) with compressed data")
            if key == "headersize" and n > 0:
                available -= int(n)
    return available


def check_nifti(path: Path, header: Any, compressed: bool) -> None:
    """Raise unless a NIfTI header (nibabel's) declares one 3-D volume of the bytes present."""
    shape = tuple(int(v) for v in header.get_data_shape())
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InvalidInputError(f"{path} is {len(shape)}-D; a 3-D CT volume is needed.")
    _shape(path, list(shape))
    offset = float(header.get_data_offset())
    if not math.isfinite(offset) or offset < 0:
        raise _fail(path, f"vox_offset {offset:g}")
    declared = float(math.prod(shape)) * header.get_data_dtype().itemsize
    available = path.stat().st_size if compressed else path.stat().st_size - int(offset)
    check_data_bytes(declared, available, compressed, f"Cannot read {path}")
