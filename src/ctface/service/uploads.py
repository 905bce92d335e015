"""A request's scans into a private folder, and which path ``load_ct`` is to read for each.

A scan comes as multipart files under a form field (``file``; ``a`` and ``b`` for verify):
DICOM files, a zip of a DICOM series, or one NIfTI, NRRD or MetaImage (``.mha``) file; or, for
one-scan requests, as the whole body (``Content-Type: application/zip``). The body is parsed as
it streams (python-multipart) and every file part is written straight into the request's
folder (0700, named ``ctface-upload-<server pid>-...``, removed after the request whatever
happens; ``sweep`` removes those of servers no longer running): no part is held in memory.

What a hostile upload cannot do: choose where a file is written (names are reduced to safe
characters and numbered, zip members are flattened into the folder; links refused), unpack
without bound (at most ``UNZIP_FACTOR`` times the upload limit in ``MAX_FILES`` files), or make
the reader open a file of the server (formats whose header names a separate data file —
``.mhd``, ``.nhdr``, an ``.nrrd`` with ``data file:``, an ``.mha`` without
``ElementDataFile = LOCAL`` — are refused).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from ctface.service.errors import ServiceError

MAX_FILES = 20_000  # files in one upload (a thin-slice series: a few thousand)
MAX_FIELDS = 20  # text fields of a form
MAX_FIELD_BYTES = 4096
UNZIP_FACTOR = 4  # unpacked zip bytes per byte of the upload limit
CHUNK = 1 << 20
PREFIX = "ctface-upload-"
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
DETACHED_SUFFIXES = (".mhd", ".nhdr", ".hdr", ".img")
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class Upload:
    folder: Path  # the private folder (gone after the request)
    scans: dict[str, Path]  # form field -> the path to read
    fields: dict[str, str]  # the form's text fields


def bad(message: str) -> ServiceError:
    return ServiceError(400, "bad-input", message)


def safe_name(name: str, n: int) -> str:
    """A file name of safe characters that keeps its suffix (``n`` keeps names distinct)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[-100:]
    return f"{n:05d}_{clean or 'file'}"


def _check_volume(path: Path) -> None:
    """400 for a volume file whose header points at data outside itself."""
    name = path.name.lower()
    if name.endswith(DETACHED_SUFFIXES):
        raise bad(f"{path.suffix} files name a separate data file: send the scan as .mha, "
                  ".nrrd (data attached), NIfTI or DICOM")  # fmt: skip
    if not name.endswith((".mha", ".nrrd")):
        return
    with path.open("rb") as fh:
        head = fh.read(65536).split(b"\n\n")[0].decode("latin-1").lower()
    if name.endswith(".nrrd") and re.search(r"^data ?file\s*:", head, re.M):
        raise bad("the NRRD header names a separate data file: send it with the data attached")
    if name.endswith(".mha"):
        found = re.search(r"^elementdatafile\s*=\s*(\S+)", head, re.M)
        if found is None or found.group(1) != "local":
            raise bad("the .mha header names a separate data file (ElementDataFile is not "
                      "LOCAL): send the data inside the file")  # fmt: skip


def scan_path(folder: Path) -> Path:
    """What ``load_ct`` reads from a folder of one scan's files: the one volume file in it,
    else the folder (DICOM)."""
    files = [p for p in folder.iterdir() if p.is_file()]
    if not files:
        raise bad("the upload holds no file")
    for f in files:
        _check_volume(f)
    volumes = [p for p in files if p.name.lower().endswith(VOLUME_SUFFIXES)]
    if len(volumes) > 1:
        raise bad(f"the upload holds {len(volumes)} volume files: send one scan per request")
    return volumes[0] if volumes else folder


def _member_name(info: zipfile.ZipInfo, n: int) -> str | None:
    """The flat name a zip member is written under (None for folders); 400 for links and
    paths that leave the archive."""
    if info.is_dir():
        return None
    if stat.S_ISLNK(info.external_attr >> 16):
        raise bad("the zip holds a link: not unpacked")
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise bad("a zip member's path leaves its folder: not unpacked")
    return safe_name(parts[-1] if parts else "file", n)


def unzip(archive: Path, root: Path, max_bytes: int) -> None:
    """Unpack ``archive`` flat into ``root``: at most ``max_bytes`` (counted while writing:
    declared sizes can lie) in at most ``MAX_FILES`` files; 400 otherwise."""
    root.mkdir()
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            if len(members) > MAX_FILES:
                raise bad(f"the zip holds {len(members)} files (at most {MAX_FILES})")
            if sum(m.file_size for m in members) > max_bytes:
                raise bad(f"the zip unpacks to more than {max_bytes:,} bytes")
            written = 0
            for n, info in enumerate(members):
                name = _member_name(info, n)
                if name is None:
                    continue
                with z.open(info) as src, open(root / name, "xb") as dst:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise bad(f"the zip unpacks to more than {max_bytes:,} bytes")
                        dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as e:
        raise bad(f"not a readable zip archive ({type(e).__name__})") from None
    except (RuntimeError, ValueError, OSError) as e:  # encrypted, bad compression, names
        raise bad(f"the zip cannot be unpacked ({type(e).__name__})") from None


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == ZIP_MAGIC


def settle(field_dir: Path, max_bytes: int) -> Path:
    """A field's files: a zip among them unpacked; the path to read (blocking: a thread)."""
    files = [p for p in field_dir.iterdir() if p.is_file()]
    zips = [f for f in files if _is_zip(f)]
    if zips and len(files) > 1:
        raise bad("send a zip alone, not among other files")
    if zips:
        unzip(zips[0], field_dir / "unzipped", max_bytes)
        zips[0].unlink()
        return scan_path(field_dir / "unzipped")
    return scan_path(field_dir)


class FormWriter:
    """python-multipart callbacks: file parts of the scan fields written to the folder as
    they arrive, text fields kept (small); anything else is refused."""

    def __init__(self, folder: Path, scan_fields: tuple[str, ...]) -> None:
        self.folder, self.scan_fields = folder, scan_fields
        self.fields: dict[str, str] = {}
        self.files = 0
        self._header = [b"", b""]
        self._headers: dict[bytes, bytes] = {}
        self._out: BinaryIO | None = None
        self._text: bytearray | None = None
        self._name = ""

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.data,
                "on_part_end": self.part_end}  # fmt: skip

    def part_begin(self) -> None:
        self._headers = {}

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def header_end(self) -> None:
        self._headers[self._header[0].strip().lower()] = self._header[1].strip()
        self._header = [b"", b""]

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is None:
            if len(self.fields) >= MAX_FIELDS:
                raise bad(f"more than {MAX_FIELDS} form fields")
            self._text = bytearray()
            return
        if self._name not in self.scan_fields:
            fields = ", ".join(repr(f) for f in self.scan_fields)
            raise bad(f"a file in the form field {self._name!r}: files go in {fields}")
        self.files += 1
        if self.files > MAX_FILES:
            raise bad(f"more than {MAX_FILES} files")
        folder = self.folder / self._name
        folder.mkdir(exist_ok=True)
        name = safe_name(filename.decode("utf-8", "replace"), self.files)
        self._out = open(folder / name, "xb")  # noqa: SIM115 - closed at the part's end

    def data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._out.write(data[start:end])
        elif self._text is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise bad(f"the form field {self._name!r} is over {MAX_FIELD_BYTES} bytes")

    def part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        elif self._text is not None:
            self.fields[self._name] = self._text.decode("utf-8", "replace")
            self._text = None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def _from_form(request: Any, folder: Path, scan_fields: tuple[str, ...]) -> dict[str, str]:
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise bad("a multipart/form-data body without a boundary")
    writer = FormWriter(folder, scan_fields)
    parser = MultipartParser(boundary, writer.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as e:
        raise bad(f"the multipart body cannot be parsed ({e})") from None
    finally:
        writer.close()
    return writer.fields


async def _from_body(request: Any, folder: Path, field: str) -> None:
    (folder / field).mkdir()
    with open(folder / field / "00001_upload.zip", "xb") as fh:
        async for chunk in request.stream():
            fh.write(chunk)


def _folder(temp_dir: Path | None) -> Path:
    """The request's private folder (mode 0700)."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=temp_dir))


def sweep(temp_dir: Path | None) -> int:
    """Remove the upload folders that servers no longer running left behind (a kill, a
    crash); the number removed."""
    root = Path(temp_dir or tempfile.gettempdir())
    removed = 0
    for folder in root.glob(f"{PREFIX}*"):
        pid = folder.name.removeprefix(PREFIX).split("-")[0]
        if pid.isdigit() and not _running(int(pid)) and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@asynccontextmanager
async def uploaded(
    request: Any, scan_fields: tuple[str, ...], max_upload: int, temp_dir: Path | None
) -> AsyncIterator[Upload]:
    """The request's scans in a private folder, removed when the block ends."""
    folder = _folder(temp_dir)
    try:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fields: dict[str, str] = {}
        if kind == "multipart/form-data":
            fields = await _from_form(request, folder, scan_fields)
        elif kind == "application/zip" and len(scan_fields) == 1:
            await _from_body(request, folder, scan_fields[0])
        else:
            names = ", ".join(repr(f) for f in scan_fields)
            raise bad(f"send the scan as multipart/form-data (fields {names}) or, for one "
                      "scan, a zip body with Content-Type: application/zip")  # fmt: skip
        scans = {}
        for field in scan_fields:
            if not (folder / field).is_dir():
                raise bad(f"no file in the form field {field!r}")
            scans[field] = await run_in_threadpool(settle, folder / field,
                                                   UNZIP_FACTOR * max_upload)  # fmt: skip
        yield Upload(folder, scans, fields)
    finally:
        await run_in_threadpool(shutil.rmtree, folder, True)
