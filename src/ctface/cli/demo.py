"""`ctface demo`: the main job end to end on an embedded default (what `make demo` runs).

A small synthetic hospital (8 patients with 2 scans each, half as DICOM series, plus one
person who was never a patient) is enrolled into a fresh gallery, one scan filed under the
wrong patient (a planted error); then a rescan whose DICOM PatientID was lost is identified,
and so is the stranger, who must come back "not in gallery"; last, the gallery is reconciled
(``ctface reconcile``), which must find the misfiled scan. Decisions use the shipped model and
calibration.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from ctface.cli.common import out_console, progress_bar
from ctface.cli.gallery import print_identification
from ctface.cli.main import app
from ctface.cli.phantom import run_phantom, summary_table
from ctface.phantom.params import NuisanceConfig

# Routine head-CT reconstructions (0.8-1 mm pixels, 2-3 mm slices: quicker to generate and read
# than thin slices, so the demo stays within 3 minutes on 2 cores); every other nuisance of the
# generator at its default rate (expression, tubes, masks, cut fields of view, ...).
DEMO_ACQUISITION = NuisanceConfig(pixel_mm=(0.8, 1.0), slice_thickness_mm=(2.0, 2.5, 3.0))
PATIENTS, SEED = 8, 2026


def _blank_patient_id(series: Path, out: Path) -> Path:
    """Copy a DICOM series with its PatientID and PatientName emptied (the "lost" ID)."""
    import pydicom

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in sorted(p for p in series.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(f)
        ds.PatientID, ds.PatientName = "", ""
        ds.save_as(out / f.name)
    return out


@dataclass(frozen=True)
class Hospital:
    """The demo's synthetic hospital: who is enrolled with which scans, and the two probes."""

    cohort: Path
    enroll: list[tuple[Any, str]]  # (ArchiveScan or NIfTI path, patient ID)
    probes: list[tuple[Path, str, str | None]]  # (scan, label, true patient or None)
    misfiled: tuple[Path, str, str]  # the planted error: (scan, its patient, filed under)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the demo's files."),
    jobs: int = typer.Option(
        min(4, os.cpu_count() or 1), "--jobs", min=1, help="Worker processes."
    ),
) -> None:
    """Synthetic hospital -> enroll with IDs -> identify a rescan with a lost PatientID and a
    person who is not enrolled; ranked candidates and HTML pages with the depth images."""
    from ctface.api import Gallery

    t0 = time.perf_counter()
    for old in out.glob("gallery.db*"):
        old.unlink()
    with Gallery.open(out / "gallery.db") as gallery:
        gallery.calibration.threshold(1e-3)  # model, calibration: before the slow work
        hospital = _make_hospital(out, jobs)
        frontals = _enroll(gallery, hospital, jobs)
        correct = _identify_probes(gallery, hospital, frontals, out, jobs)
        found = _reconcile(gallery, hospital, frontals, out)
    out_console.print(
        f"{correct} of {len(hospital.probes)} decisions correct; the misfiled scan "
        f"{'found' if found else 'NOT found'}; demo took {time.perf_counter() - t0:.0f} s"
    )


def _make_hospital(out: Path, jobs: int) -> Hospital:
    """Generate the cohort; choose the rescan whose PatientID is lost (a DICOM series, its ID
    blanked) and the stranger (never enrolled); everyone else's scans are enrolled: DICOM
    series by their PatientID tags, NIfTI files with the manifest's IDs."""
    from ctface.ingest.archive import list_archive

    cohort = out / "hospital"
    if cohort.exists():
        shutil.rmtree(cohort)
    rows = run_phantom(
        subjects=PATIENTS + 1, scans_min=2, scans_max=2, seed=SEED, out=cohort,
        dicom_fraction=0.5, jobs=jobs, qc=False, face_model=None, quiet=False,
        nuisance=DEMO_ACQUISITION,
    )  # fmt: skip
    out_console.print(summary_table(rows, cohort))
    subjects = sorted({r["subject_id"] for r in rows})
    stranger, patients = subjects[-1], subjects[:PATIENTS]
    scans = {s: [r for r in rows if r["subject_id"] == s] for s in subjects}
    lost = next((s[-1] for p in patients if (s := scans[p])[-1]["format"] == "dicom"),
                scans[patients[0]][-1])  # fmt: skip
    lost_path = cohort / lost["path"]
    if lost["format"] == "dicom":
        lost_path = _blank_patient_id(lost_path, out / "probes" / f"{lost['scan_id']}_no_id")
    skip = {cohort / lost["path"]} | {cohort / r["path"] for r in scans[stranger]}
    archive, _ = list_archive(cohort)
    items: list[tuple[Any, str]] = [
        (a, a.patient_id) for a in archive
        if not any(a.series.paths[0].is_relative_to(p) for p in skip)
    ]  # fmt: skip
    items += [(cohort / r["path"], r["subject_id"]) for r in rows
              if r["format"] == "nifti" and cohort / r["path"] not in skip]  # fmt: skip
    misfiled = _misfile(items, patients, lost["subject_id"])
    probes = [
        (lost_path, f"rescan {lost['scan_id']}, PatientID lost", lost["subject_id"]),
        (cohort / scans[stranger][0]["path"], f"{stranger}, never enrolled", None),
    ]
    return Hospital(cohort, items, probes, misfiled)


def _misfile(items: list[tuple[Any, str]], patients: list[str], lost: str) -> tuple[Path, str, str]:
    """The planted error: the last scan (a NIfTI file where there is one) of a patient other
    than the lost rescan's, filed under another patient (not the lost rescan's either, where
    there is one), as a clerk might; ``items`` is changed accordingly."""
    order = sorted(range(len(items)), key=lambda i: (not isinstance(items[i][0], Path), -i))
    n = next(i for i in order if items[i][1] != lost)
    src, owner = items[n]
    others = [p for p in patients if p != owner]
    filed = next((p for p in others if p != lost), others[0])
    items[n] = (src, filed)
    path = src if isinstance(src, Path) else src.series.paths[0].parent  # a DICOM series' folder
    return path, owner, filed


def _enroll(gallery: Any, hospital: Hospital, jobs: int) -> dict[int, Any]:
    """Enroll with a progress bar; the enrolled scans' frontal depth images, by scan key."""
    from ctface.gallery.records import Status

    frontals: dict[int, Any] = {}
    with progress_bar(False) as bar:
        task = bar.add_task("enroll", total=len(hospital.enroll), info="")

        def keep(o: Any, acq: Any) -> None:
            bar.advance(task)
            bar.update(task, info=f"{o.patient_id}: {o.status}")
            if acq is not None and o.scan_key is not None:
                frontals[o.scan_key] = acq.frontal
            elif o.status == Status.FAILED:
                bar.console.print(f"not enrolled: {o.source} ({o.code}): {o.reason}",
                                  highlight=False, soft_wrap=True, markup=False)  # fmt: skip

        outcomes = gallery.enroll_archive(hospital.enroll, jobs=jobs, record_failures=False,
                                          on_outcome=keep)  # fmt: skip
    enrolled = sum(o.status == Status.ENROLLED for o in outcomes)
    out_console.print(
        f"gallery {gallery.path}: {enrolled} scans of {len(gallery.db.patients())} patients "
        f"enrolled ({len(outcomes) - enrolled} failed to acquire)",
        markup=False, soft_wrap=True,
    )  # fmt: skip
    return frontals


def _identify_probes(
    gallery: Any, hospital: Hospital, frontals: dict[int, Any], out: Path, jobs: int
) -> int:
    """Acquire the probes (in parallel), identify each, print it and write its page; the
    number of correct decisions."""
    from ctface.gallery.enroll import acquire_many
    from ctface.gallery.report import identification_html

    found = acquire_many([p for p, _, _ in hospital.probes], gallery.model, jobs)
    correct = 0
    for (path, label, truth), (probe, code, reason, _) in zip(hospital.probes, found, strict=True):
        if probe is None:
            out_console.print(f"{label}: failure to acquire ({code}): {reason}", markup=False)
            continue
        result = gallery.identify(probe, fmr=1e-3, top_k=3)
        print_identification(label, result)
        page = out / f"identify_{Path(path).name.split('.')[0]}.html"
        identification_html(page, label, probe.frontal, result,
                            lambda c: frontals.get(c.scan_key))  # fmt: skip
        correct += result.patient_id == truth
        truth_text = truth or "not in gallery"
        out_console.print(f"  truth: {truth_text}; page: {page}", markup=False)
    return correct


def _reconcile(gallery: Any, hospital: Hospital, frontals: dict[int, Any], out: Path) -> bool:
    """Reconcile the gallery (``ctface reconcile --db``); whether the planted error is the
    split finding it reports first."""
    from ctface.cli.reconcile import print_findings, reconcile_gallery

    scan, owner, filed = hospital.misfiled
    out_console.print(f"planted error: {owner}'s scan {scan.name} was enrolled as {filed}; "
                      f"`ctface reconcile --db {gallery.path} --out {out / 'reconcile'}`:",
                      markup=False, soft_wrap=True)  # fmt: skip
    summary, files = reconcile_gallery(
        gallery, hospital.cohort, out / "reconcile", None, frontals, False
    )
    print_findings(summary, files)
    first = summary["findings"][0] if summary["findings"] else None
    return bool(first and first["kind"] == "split" and first["suggested_patient_id"] == owner
                and scan.name in Path(first["scans"][0]["source"]).parts)  # fmt: skip
