"""`ctface render`: depth images of the face in one CT."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from ctface.cli.common import progress_bar
from ctface.cli.main import app
from ctface.ingest.volume import SKIN_HU
from ctface.render.views import RENDER_PX

out_console = Console()
SOURCE_KEYS = ("format", "series_uid", "series_description", "notes", "canonical")


@app.command()
def render(
    scan: Path = typer.Argument(
        ..., help="CT: DICOM folder or file, NIfTI, NRRD or MetaImage.", readable=False
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (must not exist or be empty)."),
    views: int = typer.Option(
        90, "--views", min=1, help="Number of poses: a pitch x roll grid (90 = 9 x 10)."
    ),
    size: int = typer.Option(RENDER_PX, "--size", min=16, max=4096, help="Image size in pixels."),
    threshold: float = typer.Option(
        SKIN_HU, "--threshold", help="Skin isosurface threshold in HU (paper: -400..-300)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary, no progress."),
) -> None:
    """Render the face as depth images from many head poses (PNG + metric npz + render.json)."""
    from ctface.ingest import load_ct
    from ctface.render import pose_grid, render_face, write_rendering

    t0 = time.perf_counter()
    volume = load_ct(scan)
    t1 = time.perf_counter()
    columns = (TextColumn("[bold]render"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress_bar(json_out, *columns) as bar:
        task = bar.add_task("views", total=views)
        result = render_face(
            volume,
            views=pose_grid(views),
            size=size,
            threshold_hu=threshold,
            progress=lambda done, _total: bar.update(task, completed=done),
        )
    t2 = time.perf_counter()
    write_rendering(result, out)
    t3 = time.perf_counter()
    summary = {
        "out": str(out),
        "views": len(result.views),
        "size": result.size,
        "mm_per_pixel": result.mm_per_pixel,
        "frame": result.frame.to_json(),
        "source": {k: volume.metadata.get(k) for k in SOURCE_KEYS if k in volume.metadata},
        "missing": list(result.face_region.missing),
        "partial": list(result.face_region.partial),
        "seconds": {
            "load": round(t1 - t0, 3),
            "render": round(t2 - t1, 3),
            "write": round(t3 - t2, 3),
        },
    }
    if json_out:
        print(json.dumps(summary, indent=1))
    else:
        missing = ", ".join(result.face_region.missing) or "none"
        meta = volume.metadata
        if meta.get("series_uid"):
            about = meta.get("series_description") or "no description"
            out_console.print(f"series {meta['series_uid']} ({about})")
        for note in meta.get("notes", []):
            out_console.print(f"note: {note}")
        out_console.print(
            f"wrote {len(result.views)} depth images ({size} px, "
            f"{result.mm_per_pixel:.3f} mm/px) to {out}; face parts missing: {missing}; "
            f"load {t1 - t0:.1f} s, render {t2 - t1:.1f} s, write {t3 - t2:.1f} s"
        )
