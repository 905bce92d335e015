"""`ctface embed`: one scan's face template (what the gallery stores)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from ctface.cli.main import app

out_console = Console()


@app.command()
def embed(
    scan: Path = typer.Argument(..., help="CT: DICOM folder or file, NIfTI, NRRD or MetaImage."),
    out: Path | None = typer.Option(None, "--out", help="Write the template vector here (.npy)."),
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model file."),
    series_uid: str | None = typer.Option(None, "--series-uid", help="DICOM series to use."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (with the vector)."),
) -> None:
    """Face template of one CT: load, landmarks, 90 depth views, face separation, embedding."""
    import numpy as np

    from ctface.embed.embedder import FaceEmbedder
    from ctface.ingest import load_ct
    from ctface.render import render_face

    model = FaceEmbedder.load(weights)  # first: a missing model fails before the slow work
    t0 = time.perf_counter()
    volume = load_ct(scan, series_uid=series_uid)
    t1 = time.perf_counter()
    rendering = render_face(volume)
    t2 = time.perf_counter()
    template = model.template(rendering)
    t3 = time.perf_counter()
    if out is not None:
        tmp = out.with_name(out.name + ".tmp.npy")
        np.save(tmp, template.vector)
        tmp.replace(out)
    summary = {
        "scan": str(scan),
        "model": {"version": template.model_version, "config": model.config.name},
        "n_views": template.n_views,
        "face_fraction": round(template.face_fraction, 4),
        "missing_face_parts": rendering.face_region["missing"],
        "seconds": {
            "load": round(t1 - t0, 3),
            "render": round(t2 - t1, 3),
            "embed": round(t3 - t2, 3),
        },  # fmt: skip
        "template": [round(float(x), 6) for x in template.vector],
    }
    if json_out:
        print(json.dumps(summary))
        return
    out_console.print(
        f"template of {scan}: {len(template.vector)} numbers from {template.n_views} views "
        f"(model {template.model_version}); face {template.face_fraction:.0%} of the image; "
        f"load {t1 - t0:.1f} s, render {t2 - t1:.1f} s, embed {t3 - t2:.1f} s"
        + (f"; wrote {out}" if out else "")
    )
