"""`ctface phantom` and `ctface face-model pack`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ctface.cli.common import progress_bar
from ctface.cli.main import app
from ctface.phantom.params import GeneratorStyle, NuisanceConfig

face_model_app = typer.Typer(help="Build or inspect the ICT-FaceKit face model file.")
app.add_typer(face_model_app, name="face-model")
out_console = Console()


def run_phantom(
    *, subjects: int, scans_min: int, scans_max: int, seed: int, out: Path,
    dicom_fraction: float, jobs: int, qc: bool, face_model: Path | None, quiet: bool,
    nuisance: Path | NuisanceConfig | None = None,
    style: GeneratorStyle = GeneratorStyle.STANDARD,
) -> list[dict[str, Any]]:  # fmt: skip
    """Generate a cohort with a progress bar (shared by `phantom` and `demo`)."""
    from ctface.errors import InvalidInputError
    from ctface.face_model.model import find_face_model
    from ctface.phantom.cohort import CohortSpec, generate_cohort, plan

    cfg = nuisance if isinstance(nuisance, NuisanceConfig) else NuisanceConfig()
    if isinstance(nuisance, Path):
        try:
            cfg = NuisanceConfig.from_dict(json.loads(nuisance.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidInputError(f"cannot use --nuisance {nuisance}: {exc}") from exc
    spec = CohortSpec(
        subjects=subjects, scans_min=scans_min, scans_max=scans_max, seed=seed,
        dicom_fraction=dicom_fraction, qc=qc, face_model=str(face_model) if face_model else None,
        nuisance=cfg, style=GeneratorStyle(style),
    )  # fmt: skip
    spec.validate()
    find_face_model(spec.face_model)  # a missing model fails before any progress is shown
    columns = (TextColumn("[bold]phantom"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress_bar(quiet, *columns) as bar:
        task = bar.add_task("scans", total=len(plan(spec)))
        return generate_cohort(spec, out, jobs=jobs, progress=lambda _row: bar.advance(task))


def summary_table(rows: list[dict[str, Any]], out: Path) -> Table:
    subjects = Counter(r["subject_id"] for r in rows)
    table = Table(title=f"synthetic cohort in {out}", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("subjects", str(len(subjects)))
    table.add_row("scans", str(len(rows)))
    table.add_row("DICOM series / NIfTI", f"{sum(r['format'] == 'dicom' for r in rows)} / "
                  f"{sum(r['format'] == 'nifti' for r in rows)}")  # fmt: skip
    table.add_row(
        "slice thickness (mm)", ", ".join(sorted({str(r["slice_thickness_mm"]) for r in rows}))
    )
    table.add_row("with tube / mask", f"{sum(r['tube'] != 'none' for r in rows)} / "
                  f"{sum(int(r['mask']) for r in rows)}")  # fmt: skip
    table.add_row("non-neutral expression", str(sum(r["expression"] != "neutral" for r in rows)))
    return table


@app.command()
def phantom(
    subjects: int = typer.Option(..., "--subjects", min=1, help="Number of synthetic people."),
    scans_min: int = typer.Option(2, "--scans-min", min=1, help="Fewest scans per person."),
    scans_max: int = typer.Option(3, "--scans-max", min=1, help="Most scans per person."),
    seed: int = typer.Option(
        0, "--seed", help="Random seed; the same seed gives identical output."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (must not exist or be empty)."),
    dicom_fraction: float = typer.Option(
        0.0,
        "--dicom-fraction",
        min=0.0,
        max=1.0,
        help="Share of scans written as DICOM CT series (one file per slice); the rest NIfTI.",
    ),  # fmt: skip
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes (each ~1-2 GB)."),
    qc: bool = typer.Option(False, "--qc", help="Also write qc/<scan>.png (skin render, slices)."),
    face_model: Path | None = typer.Option(
        None,
        "--face-model",
        help="Packed ICT-FaceKit npz; default $CTFACE_FACE_MODEL, else "
        "../shared/data/face_model/ict_facekit_light.npz beside the repository.",
    ),  # fmt: skip
    nuisance: Path | None = typer.Option(
        None,
        "--nuisance",
        help="JSON file overriding nuisance/acquisition probabilities and ranges "
        "(fields of ctface.phantom.params.NuisanceConfig, documented in the README).",
    ),  # fmt: skip
    style: GeneratorStyle = typer.Option(
        GeneratorStyle.STANDARD,
        "--style",
        help="Generator configuration: standard (training) or heldout (a test-only appearance, "
        "acquisition and device model that no training configuration draws; recorded in "
        "cohort.json).",
    ),  # fmt: skip
    json_out: bool = typer.Option(False, "--json", help="Print the manifest rows as JSON."),
) -> None:
    """Generate a synthetic head-CT cohort (NIfTI/DICOM, ground-truth JSON, manifest.csv)."""
    rows = run_phantom(
        subjects=subjects, scans_min=scans_min, scans_max=scans_max, seed=seed, out=out,
        dicom_fraction=dicom_fraction, jobs=jobs, qc=qc, face_model=face_model, quiet=json_out,
        nuisance=nuisance, style=style,
    )  # fmt: skip
    if json_out:
        print(json.dumps({"out": str(out), "scans": rows}, indent=1))
    else:
        out_console.print(summary_table(rows, out))


@face_model_app.command("pack")
def pack(
    folder: Path = typer.Argument(..., help="ICT-FaceKit FaceXModel/ folder (OBJ files)."),
    out: Path = typer.Option(Path("ict_facekit_light.npz"), "--out", help="npz file to write."),
) -> None:
    """Pack ICT-FaceKit's OBJ folder into the npz that `ctface phantom` reads."""
    from ctface.face_model.pack import pack_face_model

    path = pack_face_model(folder, out)
    out_console.print(f"wrote {path}")
