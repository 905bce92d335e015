"""One scan defaced end to end: read, find the face, cut, write in the source's format, QC.

The QC picture (``<qc_dir>/<name>.png``) shows the frontal skin surface and the mid-sagittal
slice before and after. The "before" half shows the face: it is written to its own folder,
never into the output that is shared.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctface.deid.deface import DefaceMethod, FaceCut, cut_summary, plan_deface
from ctface.deid.output import write_dicom, write_volume_file
from ctface.errors import NoFaceError, OutputError
from ctface.files import atomic_path, portable_path
from ctface.ingest.volume import CtVolume

CHIN_MARGIN_MM = 80.0


@dataclass(frozen=True)
class DefaceResult:
    """A defaced scan: ``output`` (a DICOM folder or a volume file), ``qc`` (PNG or None),
    what the cut changed (``summary``) and the seconds each stage took."""

    source: str
    output: Path
    format: str
    method: DefaceMethod
    qc: Path | None
    summary: dict[str, Any]
    landmarks: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    skipped_files: int = 0  # DICOM files outside the image stack, not written

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        def rel(p: Path | None) -> str | None:
            return (
                None if p is None else portable_path(p, Path(relative_to) if relative_to else None)
            )

        return {
            "source": portable_path(self.source),
            "output": rel(self.output),
            "format": self.format,
            "method": str(self.method),
            "qc": None if self.qc is None else portable_path(self.qc),
            "skipped_files": self.skipped_files,
            **self.summary,
            "landmarks": self.landmarks,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def output_name(scan: Path) -> str:
    """The output's name: the source's own (a DICOM file's folder for a single file)."""
    name = scan.name if scan.is_dir() or scan.suffix.lower() != ".dcm" else scan.parent.name
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "scan"


def _canonical(native: CtVolume) -> CtVolume:
    from ctface.ingest.canonical import canonicalize
    from ctface.ingest.head import HEAD_DEPTH_MM, find_head

    # deeper than the recognizer's crop: a large head's chin must not fall outside the cut
    return canonicalize(find_head(native, HEAD_DEPTH_MM + CHIN_MARGIN_MM))


def deface_scan(
    scan: str | Path,
    out: str | Path,
    method: DefaceMethod = DefaceMethod.REMOVE,
    *,
    ears: bool = False,
    series_uid: str | None = None,
    qc_dir: str | Path | None = None,
) -> DefaceResult:
    """Deface one CT (DICOM folder or file, NIfTI, NRRD, MetaImage) into ``out``.

    Raises NoFaceError (nothing written) when the face is not found whole.
    """
    from ctface.ingest.reader import read_ct
    from ctface.landmarks.detect import detect_landmarks

    scan, out = Path(scan), Path(out)
    name = output_name(scan)
    if (out / name).exists():
        raise OutputError(f"{out / name} already exists (choose another --out)")
    t0 = time.perf_counter()
    native = read_ct(scan, series_uid=series_uid)
    volume = _canonical(native)
    t1 = time.perf_counter()
    try:
        landmarks = detect_landmarks(volume)
    except NoFaceError as e:
        raise NoFaceError(f"{e}: refusing to deface it") from e
    t2 = time.perf_counter()
    cut = plan_deface(volume, landmarks, method, ears=ears)
    t3 = time.perf_counter()
    fmt = str(native.metadata.get("format", ""))
    write = write_dicom if fmt.startswith("dicom") else write_volume_file
    output, skipped = write(native, cut, out, name)
    t4 = time.perf_counter()
    picture = write_qc(volume, cut, Path(qc_dir) / f"{name}.png") if qc_dir else None
    seconds = {"read": t1 - t0, "landmarks": t2 - t1, "plan": t3 - t2, "write": t4 - t3}
    if qc_dir:
        seconds["qc"] = time.perf_counter() - t4
    return DefaceResult(str(scan), output, fmt, method, picture, cut_summary(cut, volume.hu),
                        landmarks.to_json(), seconds, skipped)  # fmt: skip


def _frontal(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Shaded skin seen from the front: orthographic along LPS +y (the canonical grid's j),
    superior up, 1 px per voxel (a picture, not the recognizer's view)."""
    from ctface.ingest.volume import SKIN_HU
    from ctface.render.output import shaded

    skin = hu >= SKIN_HU
    first = np.argmax(skin, axis=1).astype(np.float32) * spacing[1]
    depth = np.where(skin.any(axis=1), -first, np.nan)[::-1]
    return (shaded(depth, spacing[0]) * 255).astype(np.uint8)


def _sagittal(volume: CtVolume, cut: FaceCut, height: int) -> np.ndarray:
    i = int(np.clip(np.rint(volume.lps_to_ijk(cut.frame.origin[None])[0][0]), 0,
                    volume.hu.shape[2] - 1))  # fmt: skip
    grey = np.clip((volume.hu[::-1, :, i].astype(np.float32) + 1000) / 2000 * 255, 0, 255)
    return _height(grey.astype(np.uint8), height)


def _height(image: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(image)
    w = max(1, round(img.width * height / img.height))
    return np.asarray(img.resize((w, height)))


def write_qc(volume: CtVolume, cut: FaceCut, path: Path) -> Path:
    """PNG: frontal skin before | after, mid-sagittal slice before | after, labelled."""
    from PIL import Image, ImageDraw

    after = CtVolume(cut.apply(volume.hu), volume.affine_lps, volume.metadata)
    panels = [_frontal(v.hu, volume.spacing) for v in (volume, after)]
    panels += [_sagittal(volume, cut, 256), _sagittal(after, cut, 256)]
    panels[:2] = [_height(p, 256) for p in panels[:2]]
    sheet = Image.new("L", (sum(p.shape[1] for p in panels) + 8 * 3, 276), 0)
    x = 0
    draw = ImageDraw.Draw(sheet)
    for p, label in zip(panels, ("before", f"after ({cut.method})", "before", "after"),
                        strict=True):  # fmt: skip
        sheet.paste(Image.fromarray(p), (x, 20))
        draw.text((x + 4, 4), label, fill=255)
        x += p.shape[1] + 8
    with atomic_path(path) as tmp:
        sheet.save(tmp)
    return path
