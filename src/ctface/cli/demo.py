"""`ctface demo`: the end-to-end job on an embedded default (what `make demo` runs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from ctface.cli.main import app
from ctface.cli.phantom import out_console, run_phantom, summary_table


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the demo's files."),
    jobs: int = typer.Option(2, "--jobs", min=1, help="Worker processes."),
) -> None:
    """Generate a small synthetic hospital (4 people, 2 scans each, some DICOM) with QC images,
    then ingest one DICOM scan, find its facial landmarks (QC picture) and render its face as
    90 depth images in the landmarks' face frame.

    Recognition (enroll / identify) joins this demo when those stages exist.
    """
    cohort = out / "cohort"
    if cohort.exists():
        shutil.rmtree(cohort)
    rows = run_phantom(
        subjects=4, scans_min=2, scans_max=2, seed=2026, out=cohort, dicom_fraction=0.5,
        jobs=jobs, qc=True, face_model=None, quiet=False,
    )  # fmt: skip
    out_console.print(summary_table(rows, cohort))
    out_console.print(f"manifest: {cohort / 'manifest.csv'}; QC images: {cohort / 'qc'}")

    from ctface.ingest import load_ct
    from ctface.landmarks import detect_landmarks
    from ctface.landmarks.qc import write_landmark_qc
    from ctface.render import render_face, write_rendering

    first = next((r for r in rows if r["format"] == "dicom"), rows[0])
    rendered = out / f"render_{first['scan_id']}"
    if rendered.exists():
        shutil.rmtree(rendered)
    volume = load_ct(cohort / first["path"])
    marks = detect_landmarks(volume)
    qc_png = write_landmark_qc(volume, marks, out / f"landmarks_{first['scan_id']}.png")
    found = ", ".join(
        f"{n} ({lm.confidence:.2f})" if lm.lps is not None else f"{n} missing"
        for n, lm in marks.landmarks.items()
    )
    out_console.print(
        f"landmarks of {first['scan_id']} ({marks.method}, {marks.seconds:.1f} s; cross-check: "
        f"{marks.cross_check}): {found} -> {qc_png}"
    )
    result = render_face(volume, frame=marks.frame())
    write_rendering(result, rendered)
    out_console.print(
        f"face of {first['scan_id']} ({first['format']}): {len(result.views)} depth images in "
        f"the landmarks' face frame, missing parts: "
        f"{', '.join(result.face_region['missing']) or 'none'} -> {rendered}"
    )
