"""A synthetic cohort on disk: subjects x scans, NIfTI or DICOM volumes, truth JSON, manifest.

Layout of ``out``::

    manifest.csv               scan_id, subject_id, path, format, truth, + acquisition columns
    cohort.json                the arguments, seed and generator version
    S0001/S0001_01.nii.gz      NIfTI scan (or S0001/S0001_02_dicom/ with one file per slice)
    S0001/S0001_01.json        ground truth of that scan
    qc/S0001_01.png            with --qc

Every scan draws its randomness from ``(seed, subject index, scan index)`` alone, so the output
is the same for the same seed whatever the number of jobs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import InvalidInputError, OutputError
from ctface.extras import require
from ctface.face_model.model import FaceModel, load_face_model
from ctface.files import write_text_atomic
from ctface.jobs import process_pool
from ctface.phantom.export import DicomSeriesInfo, make_uid, write_dicom_series, write_nifti
from ctface.phantom.generator import GENERATOR_VERSION, PhantomScan, synthesize_scan
from ctface.phantom.mesh import TissueMaps, tissue_maps
from ctface.phantom.params import (
    GeneratorStyle,
    NuisanceConfig,
    ScanParams,
    SubjectParams,
    draw_scan,
    draw_subject,
)

MANIFEST_COLUMNS = [
    "scan_id", "subject_id", "path", "format", "truth", "pixel_mm", "slice_thickness_mm",
    "slice_spacing_mm", "n_slices", "tube", "mask", "expression", "weight_change_mm",
]  # fmt: skip


@dataclass(frozen=True)
class CohortSpec:
    """What to generate. ``dicom_fraction`` of the scans are written as DICOM series."""

    subjects: int
    scans_min: int = 2
    scans_max: int = 3
    seed: int = 0
    dicom_fraction: float = 0.0
    qc: bool = False
    face_model: str | None = None
    nuisance: NuisanceConfig = field(default_factory=NuisanceConfig)
    style: GeneratorStyle = GeneratorStyle.STANDARD  # heldout: the test-only configuration

    def validate(self) -> None:
        if not 1 <= self.subjects <= 100_000:
            raise InvalidInputError(f"--subjects must be 1..100000, got {self.subjects}")
        if not 1 <= self.scans_min <= self.scans_max <= 50:
            raise InvalidInputError(
                "need 1 <= --scans-min <= --scans-max <= 50, "
                f"got {self.scans_min}, {self.scans_max}"
            )
        if self.style not in tuple(GeneratorStyle):
            raise InvalidInputError(f"unknown generator style {self.style!r}")
        if not 0.0 <= self.dicom_fraction <= 1.0:
            raise InvalidInputError(
                f"--dicom-fraction must be in [0, 1], got {self.dicom_fraction}"
            )


@dataclass(frozen=True)
class ScanJob:
    subject_index: int
    scan_index: int
    n_scans: int


def plan(spec: CohortSpec) -> list[ScanJob]:
    """The scans of the cohort, in order (how many scans each subject gets is seeded too)."""
    rng = np.random.default_rng([spec.seed, 0xC0])
    counts = rng.integers(spec.scans_min, spec.scans_max + 1, size=spec.subjects)
    return [ScanJob(s, k, int(n)) for s, n in enumerate(counts) for k in range(int(n))]


@lru_cache(maxsize=2)
def load_generator_model(face_model: str | None = None) -> tuple[FaceModel, TissueMaps]:
    """The face model the generator builds on and its tissue maps, read once per process.

    ``face_model`` is the packed ICT-FaceKit npz (None: ``load_face_model``'s default,
    $CTFACE_FACE_MODEL else the shared copy); MissingDataError when it is not there.
    """
    model = load_face_model(face_model)
    return model, tissue_maps(model)


def _is_dicom(spec: CohortSpec, job: ScanJob) -> bool:
    u = np.random.default_rng([spec.seed, job.subject_index, job.scan_index, 0xD1]).random()
    return bool(u < spec.dicom_fraction)


def draw_job(
    spec: CohortSpec, job: ScanJob
) -> tuple[SubjectParams, ScanParams, np.random.Generator]:
    """The person and scan parameters of ``job`` (they depend on the seed and indices only)
    and the generator the synthesis goes on drawing from."""
    model, _ = load_generator_model(spec.face_model)
    subject_id = f"S{job.subject_index + 1:04d}"
    scan_id = f"{subject_id}_{job.scan_index + 1:02d}"
    subject = draw_subject(
        np.random.default_rng([spec.seed, job.subject_index]), subject_id, model.n_identity
    )
    rng = np.random.default_rng([spec.seed, job.subject_index, job.scan_index + 1])
    scan = draw_scan(rng, scan_id, model.expression_names, spec.nuisance, spec.style)
    return subject, scan, rng


def synthesize_job(spec: CohortSpec, job: ScanJob) -> tuple[PhantomScan, np.random.Generator]:
    """The scan of ``job`` (its draws depend on the seed and indices only) and its generator,
    which the writers go on drawing from."""
    model, maps = load_generator_model(spec.face_model)
    subject, scan, rng = draw_job(spec, job)
    return synthesize_scan(model, maps, subject, scan, rng), rng


def generate_one(spec: CohortSpec, job: ScanJob, out: Path) -> dict[str, Any]:
    """Generate, write and describe one scan; returns its manifest row."""
    result, rng = synthesize_job(spec, job)
    subject, scan = result.subject, result.scan
    subject_id, scan_id = subject.subject_id, scan.scan_id
    folder = out / subject_id
    folder.mkdir(parents=True, exist_ok=True)
    if _is_dicom(spec, job):
        fmt, rel = "dicom", f"{subject_id}/{scan_id}_dicom"
        study_uid = make_uid("ctface-study", str(spec.seed), scan_id)
        info = DicomSeriesInfo(
            patient_id=subject_id,
            patient_name=f"PHANTOM^{subject_id}",
            study_date=scan.study_date,
            study_time=f"{8 + job.scan_index % 10:02d}{(7 * job.subject_index) % 60:02d}00",
            study_uid=study_uid,
            series_uid=make_uid("ctface-series", str(spec.seed), scan_id),
            frame_of_reference_uid=make_uid("ctface-for", str(spec.seed), scan_id),
            slice_thickness_mm=scan.slice_thickness_mm,
            signed=bool(rng.random() < 0.5),
            patient_sex=subject.sex,
            patient_age=f"{int(scan.study_date[:4]) - subject.birth_year:03d}Y",
        )
        write_dicom_series(result.volume, out / rel, info)
    else:
        fmt, rel = "nifti", f"{subject_id}/{scan_id}.nii.gz"
        write_nifti(result.volume, out / rel)
    truth_rel = f"{subject_id}/{scan_id}.json"
    write_text_atomic(out / truth_rel, json.dumps(result.truth, indent=1))
    if spec.qc:
        from ctface.phantom.qc import write_qc

        write_qc(result.volume, result.truth, out / "qc" / f"{scan_id}.png")
    return {
        "scan_id": scan_id,
        "subject_id": subject_id,
        "path": rel,
        "format": fmt,
        "truth": truth_rel,
        "pixel_mm": scan.pixel_mm,
        "slice_thickness_mm": scan.slice_thickness_mm,
        "slice_spacing_mm": scan.slice_spacing_mm,
        "n_slices": int(result.volume.hu.shape[0]),
        "tube": scan.tube,
        "mask": int(scan.mask),
        "expression": ";".join(k for k, v in scan.expression.items() if v >= 0.15) or "neutral",
        "weight_change_mm": round(scan.weight_change_mm, 2),
    }


def _prepare_out(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"output folder {out} exists and is not empty; choose a new --out")
    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(f"cannot create {staging}: {exc.strerror}") from exc
    return staging


def generate_cohort(
    spec: CohortSpec,
    out: Path,
    jobs: int = 1,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Write a whole cohort into ``out`` (must not exist or be empty); returns manifest rows.

    The cohort is built in a hidden sibling folder and renamed at the end, so an interrupted
    run never leaves a folder that looks complete.
    """
    spec.validate()
    load_generator_model(spec.face_model)  # fail early, before any work, if it is missing
    if spec.qc:
        require("matplotlib", "the phantom QC pictures (--qc)")
    todo = plan(spec)
    staging = _prepare_out(out)
    rows: list[dict[str, Any]] = []
    try:
        if jobs <= 1:
            for job in todo:
                rows.append(generate_one(spec, job, staging))
                if progress:
                    progress(rows[-1])
        else:
            with process_pool(jobs) as pool:
                for row in pool.map(generate_one, [spec] * len(todo), todo, [staging] * len(todo)):
                    rows.append(row)
                    if progress:
                        progress(row)
        with open(staging / "manifest.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        meta = {k: v for k, v in asdict(spec).items() if k != "face_model"}
        meta["generator_version"] = GENERATOR_VERSION
        (staging / "cohort.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return rows
