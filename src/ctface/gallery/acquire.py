"""A CT scan -> its face template and what the gallery stores about it, through the quality
gate: a scan whose face is not usable is refused with a failure-to-acquire code, never enrolled
or identified silently.

Codes (``FailureToAcquire.code``, an ``errors.FailureCode``):
- ``no-face``: no face in the field of view (no skin surface in front of the face).
- ``thick-slices``: slices thicker than ``MAX_SLICE_MM`` (the range the model was trained and
  tested on: the phantoms' 0.6-5 mm).
- ``face-incomplete``: the eyes or the nose are outside the field of view or without skin.
- ``face-covered``: the face separation kept under ``MIN_FACE_FRACTION`` of the image (an RT
  mask moulded on the face is kept as face and is not refused); or the skull lies under more
  than ``MAX_COVER_MM`` of material even where the face's skin is thinnest (``render.tissue``
  ``cover_mm``: faces 1-6 mm, with RT masks 2-4; a 12 mm layer on the face 14; ctface's own
  refaced scans 3-15): a thick mask or bolus hides the face's shape.
- ``no-soft-tissue``: the face surface is not skin over soft tissue: under
  ``MIN_SOFT_TISSUE`` of the CT samples 1-6 mm behind it (that are not air) are soft tissue
  (-200..+250 HU; ``render.tissue``, with the measured ranges). A bare skull has bone right
  under its surface (0.06-0.12 measured; faces 0.58-0.99, RT masks 0.82-0.89), and passed the
  other checks with a face fraction of 26-37 %.
- ``no-skull``: under ``MIN_BONE_SHARE`` of the face surface has bone within
  ``render.tissue.BONE_SEARCH_MM`` (40 mm) behind it (``bone_share``; faces and their
  re-acquisitions 0.64-0.95, ctface's own defaced scans 0.34-0.48): a head phantom without a
  skull, a mannequin, not a patient.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctface.embed.embedder import FaceEmbedder, Template
from ctface.embed.template import TEMPLATE_PITCHES_DEG
from ctface.errors import CtfaceError, FailureCode, FailureToAcquire, NoFaceError
from ctface.gallery.records import ACQUISITION_KEYS, ScanRecord
from ctface.ingest import CtVolume, load_ct
from ctface.ingest.archive import ArchiveScan, load_archive_scan, source_digest
from ctface.render import pose_grid, render_face
from ctface.render.depth import FaceRendering, normalize_depth
from ctface.render.tissue import BONE_SEARCH_MM
from ctface.render.views import View

MAX_SLICE_MM = 5.0
REQUIRED_PARTS = ("eyes", "nose")
MIN_FACE_FRACTION = 0.15
MIN_SOFT_TISSUE = 0.35  # measured: render.tissue (module docstring)
MIN_BONE_SHARE = 0.3  # measured: render.tissue
MAX_COVER_MM = 12.0  # measured: render.tissue


@dataclass(frozen=True)
class Acquisition:
    """A usable scan: its record, template and frontal depth image (for reports only)."""

    record: ScanRecord
    template: Template
    frontal: np.ndarray  # (S, S) uint8 normalized depth of the view nearest pitch 0, roll 0
    seconds: dict[str, float] = field(default_factory=dict)


Source = str | Path | ArchiveScan | CtVolume


def acquire(
    source: Source, model: FaceEmbedder, *, series_uid: str | None = None, digest: bool = True
) -> Acquisition:
    """Load (unless ``source`` is a loaded volume), render, check and embed one scan. Raises
    FailureToAcquire (quality gate), and the loaders' InvalidInputError for unreadable input.
    ``digest=False``: the record's digest is left empty (a probe that is only searched for
    needs no identity in the gallery; hashing the files costs ~0.2 s per 250 MB)."""
    t0 = time.perf_counter()
    try:
        volume = _load(source, series_uid)
        t1 = time.perf_counter()
        _check_slices(volume)
        rendering = render_face(volume, views=template_views())
    except FailureToAcquire:
        raise
    except NoFaceError as e:
        raise FailureToAcquire(FailureCode.NO_FACE, str(e)) from e
    content = _digest(source, volume) if digest else ""
    t2 = time.perf_counter()
    missing = [p for p in REQUIRED_PARTS if p in rendering.face_region.missing]
    if missing:
        raise FailureToAcquire(
            FailureCode.FACE_INCOMPLETE,
            f"the {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in the "
            "scan (outside the field of view or without skin)",
        )
    _check_soft_tissue(rendering)
    _check_skull(rendering)
    template = model.template(rendering)
    if template.face_fraction < MIN_FACE_FRACTION:
        raise FailureToAcquire(
            FailureCode.FACE_COVERED,
            f"the face separation found face in {template.face_fraction:.0%} of the image "
            f"(usable scans: >= {MIN_FACE_FRACTION:.0%}); is the face covered?",
        )
    t3 = time.perf_counter()
    meta = volume.metadata
    record = ScanRecord(
        digest=content,
        source=_source_path(source, meta),
        series_uid=meta.get("series_uid"),
        study_uid=meta.get("study_uid"),
        dicom_patient_id=str(meta.get("patient_id") or ""),
        acquisition={k: meta[k] for k in ACQUISITION_KEYS if k in meta},
        quality={
            "face_fraction": round(template.face_fraction, 4),
            "missing_parts": list(rendering.face_region.missing),
            "partial_parts": list(rendering.face_region.partial),
            "face_frame": rendering.frame.method,
            "soft_tissue_share": rendering.face_region.under_skin.soft_tissue_share,
            "bone_share": rendering.face_region.under_skin.bone_share,
            "cover_mm": rendering.face_region.under_skin.cover_mm,
            "n_views": template.n_views,
        },
    )
    seconds = {"load": t1 - t0, "render": t2 - t1, "embed": t3 - t2}
    return Acquisition(record, template, frontal_image(rendering), seconds)


def template_views() -> list[View]:
    """The views a template is made from (``embed.template.TEMPLATE_PITCHES_DEG``)."""
    return [v for v in pose_grid() if v.pitch in TEMPLATE_PITCHES_DEG]


def _load(source: Source, series_uid: str | None) -> CtVolume:
    if isinstance(source, CtVolume):
        return source
    if isinstance(source, ArchiveScan):
        return load_archive_scan(source)
    return load_ct(source, series_uid=series_uid)


def _source_path(source: Source, meta: dict[str, Any]) -> str:
    if meta.get("source"):
        return str(Path(meta["source"]).resolve())
    if isinstance(source, CtVolume):
        return "(volume in memory)"
    return str(Path(str(source)).resolve())


def _digest(source: Source, volume: CtVolume) -> str:
    """The scan's identity in the gallery: the digest of its files (of its voxels for a volume
    made in memory)."""
    if isinstance(source, ArchiveScan):
        return source.digest  # already read by the enrollment's resume check
    files = volume.metadata.get("files") or (
        [volume.metadata["source"]] if volume.metadata.get("source") else []
    )
    if files:
        return source_digest(files)
    return hashlib.sha256(volume.hu.tobytes() + volume.affine_lps.tobytes()).hexdigest()


def frontal_image(rendering: FaceRendering) -> np.ndarray:
    """The normalized depth image of the frontal view (of the view closest to it when the
    rendering kept no frontal image)."""
    if rendering.frontal_mm is not None:
        frontal = rendering.frontal_mm[None]
        return normalize_depth(
            frontal, rendering.theta_mm, rendering.scale_c, rendering.face_top_mm
        )[0]
    i = int(np.argmin([abs(v.pitch) + abs(v.roll) + abs(v.yaw) for v in rendering.views]))
    return rendering.normalized[i]


def frontal_from_source(record: ScanRecord) -> np.ndarray | None:
    """A stored scan's frontal depth image, rendered again from its source files (the gallery
    keeps no images); None when the files are gone or no longer readable."""
    try:
        volume = load_ct(record.source, series_uid=record.series_uid)
        return render_face(volume, views=[View(0.0, 0.0, 0.0)]).normalized[0]
    except CtfaceError:
        return None


def _check_slices(volume: CtVolume) -> None:
    spacing = [float(v) for v in volume.metadata.get("original_spacing") or []]
    if spacing and max(spacing) > MAX_SLICE_MM:  # the coarsest axis, whatever the orientation
        raise FailureToAcquire(
            FailureCode.THICK_SLICES,
            f"slices {max(spacing):.1f} mm apart (at most {MAX_SLICE_MM:g} mm: the range "
            "the recognition model was trained and tested on)",
        )


def _check_soft_tissue(rendering: FaceRendering) -> None:
    share = rendering.face_region.under_skin.soft_tissue_share
    if share < MIN_SOFT_TISSUE:
        raise FailureToAcquire(
            FailureCode.NO_SOFT_TISSUE,
            f"the face surface is not skin over soft tissue: {share:.0%} of the CT just behind "
            f"it is soft tissue (faces: >= {MIN_SOFT_TISSUE:.0%}); a bare skull or a phantom?",
        )


def _check_skull(rendering: FaceRendering) -> None:
    under = rendering.face_region.under_skin
    if under.bone_share < MIN_BONE_SHARE:
        raise FailureToAcquire(
            FailureCode.NO_SKULL,
            f"no skull behind the face: bone lies within {BONE_SEARCH_MM:g} mm behind "
            f"{under.bone_share:.0%} of the face surface (faces: >= {MIN_BONE_SHARE:.0%}); a "
            "phantom or a mannequin, or a defaced scan?",
        )
    if under.cover_mm is not None and under.cover_mm > MAX_COVER_MM:
        raise FailureToAcquire(
            FailureCode.FACE_COVERED,
            f"the skull lies under {under.cover_mm:.0f} mm of material even where the face's "
            f"skin is thinnest (faces and RT masks: <= {MAX_COVER_MM:g} mm); a thick mask or "
            "bolus on the face, or a face pasted over it (a refaced scan)?",
        )
