"""`ctface embed`: one scan's face template (what the gallery stores)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from ctface.cli.common import acquire_probe
from ctface.cli.main import app

out_console = Console()


@app.command()
def embed(
    scan: Path = typer.Argument(
        ..., help="CT: DICOM folder or file, NIfTI, NRRD or MetaImage.", readable=False
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the template vector here (.npy)."),
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model file."),
    series_uid: str | None = typer.Option(None, "--series-uid", help="DICOM series to use."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (with the vector)."),
) -> None:
    """Face template of one CT: load, landmarks, 90 depth views, quality gate, face
    separation, embedding (exit 6 with the failure-to-acquire code when the face is not
    usable)."""
    import numpy as np

    from ctface.api import resolve_model
    from ctface.files import atomic_path

    model = resolve_model(weights)  # first: a missing model fails before the slow work
    acq = acquire_probe(scan, model, series_uid, json_out)
    template, sec = acq.template, acq.seconds
    if out is not None:
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.save(fh, template.vector)
    summary = {
        "scan": str(scan),
        "model": {"version": template.model_version, "config": model.config.name},
        "n_views": template.n_views,
        "face_fraction": round(template.face_fraction, 4),
        "missing_face_parts": acq.record.quality["missing_parts"],
        "seconds": {k: round(v, 3) for k, v in sec.items()},
        "template": [round(float(x), 6) for x in template.vector],
    }
    if json_out:
        print(json.dumps(summary))
        return
    out_console.print(
        f"template of {scan}: {len(template.vector)} numbers from {template.n_views} views "
        f"(model {template.model_version}); face {template.face_fraction:.0%} of the image; "
        f"load {sec['load']:.1f} s, render {sec['render']:.1f} s, embed {sec['embed']:.1f} s"
        + (f"; wrote {out}" if out else "")
    )
