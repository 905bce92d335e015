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
    """Generate a small synthetic hospital (4 people, 2 scans each, some DICOM) with QC images.

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
