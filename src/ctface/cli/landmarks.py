"""`ctface landmarks` (detect) and `ctface train-landmarks` (reproduce the shipped CT-FAN)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from ctface.cli.common import progress_bar
from ctface.cli.main import app
from ctface.errors import InvalidInputError

if TYPE_CHECKING:
    from ctface.landmarks.model import CtFan
    from ctface.training import TrainConfig

out_console = Console()
METHODS = ("auto", "ct-fan", "surface-fit")


@app.command()
def landmarks(
    scan: Path = typer.Argument(
        ..., help="CT: DICOM folder or file, NIfTI, NRRD or MetaImage.", readable=False
    ),
    method: str = typer.Option(
        "auto", "--method", help="auto (CT-FAN + face-model cross-check), ct-fan, surface-fit."
    ),
    qc: Path | None = typer.Option(None, "--qc", help="Write a QC picture (PNG) here."),
    weights: Path | None = typer.Option(None, "--weights", help="CT-FAN weights file."),
    face_model: Path | None = typer.Option(None, "--face-model", help="Face model (.npz)."),
    series_uid: str | None = typer.Option(None, "--series-uid", help="DICOM series to use."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Eye centres, nose tip and mouth corners in patient mm (LPS and RAS), with confidence."""
    if method not in METHODS:
        raise InvalidInputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    from ctface.ingest import load_ct
    from ctface.landmarks import detect_landmarks

    t0 = time.perf_counter()
    volume = load_ct(scan, series_uid=series_uid)
    t1 = time.perf_counter()
    result = detect_landmarks(
        volume,
        method,  # type: ignore[arg-type]
        weights=str(weights) if weights else None,
        face_model=str(face_model) if face_model else None,
    )
    if qc is not None:
        from ctface.render.landmark_qc import write_landmark_qc

        write_landmark_qc(volume, result, qc)
    summary = result.to_json()
    summary["scan"] = str(scan)
    summary["seconds"] = {"load": round(t1 - t0, 3), "landmarks": round(result.seconds, 3)}
    if json_out:
        print(json.dumps(summary, indent=1))
        return
    check = result.cross_check_text
    table = Table(title=f"landmarks of {scan} ({result.method}; cross-check: {check})")
    for col in ("landmark", "LPS mm", "RAS mm", "confidence", "note"):
        table.add_column(col)
    for name, lm in result.landmarks.items():
        if lm.lps is None or lm.ras is None:
            table.add_row(name, "-", "-", "-", lm.reason or "")
            continue
        note = "" if lm.cross_check_mm is None else f"fit {lm.cross_check_mm:.1f} mm away"
        table.add_row(
            name,
            " ".join(f"{v:7.1f}" for v in lm.lps),
            " ".join(f"{v:7.1f}" for v in lm.ras),
            f"{lm.confidence:.2f}" + (" (low)" if lm.confidence < 0.5 else ""),
            note,
        )
    out_console.print(table)
    out_console.print(f"load {t1 - t0:.1f} s, landmarks {result.seconds:.1f} s")
    if qc is not None:
        out_console.print(f"QC picture: {qc}")


@app.command("train-landmarks")
def train_landmarks(
    work: Path = typer.Option(
        Path("ctfan-train"), "--work", help="Folder for the example cache and checkpoints."
    ),
    out: Path = typer.Option(Path("ctfan.pt"), "--out", help="Weights file to write."),
    phantoms: int = typer.Option(480, "--phantoms", min=1, help="Training phantoms."),
    seed: int = typer.Option(1001, "--seed", help="Phantom seed of the training set."),
    validation: int = typer.Option(
        40, "--validation", min=0, help="Validation phantoms (seed + 1)."
    ),
    cohort: list[Path] = typer.Option([], "--cohort", help="Extra cohort folder(s) with truth."),
    coarse_iterations: int = typer.Option(1500, "--coarse-iterations", min=1),
    fine_iterations: int = typer.Option(2000, "--fine-iterations", min=1),
    batch: int = typer.Option(8, "--batch", min=1, help="Coarse batch; fine batch is twice."),
    train_seed: int = typer.Option(0, "--train-seed", help="Seed of the training draws."),
    jobs: int = typer.Option(2, "--jobs", min=1, help="Processes preparing phantoms."),
    json_out: bool = typer.Option(False, "--json", help="Print the training summary as JSON."),
) -> None:
    """Train CT-FAN (coarse + fine) on phantoms; resumes from the checkpoints in --work."""
    from ctface.landmarks.ctfan import save_weights
    from ctface.landmarks.dataset import TRAINING_NUISANCE, LandmarkExample
    from ctface.landmarks.train import TrainConfig, validation_error

    cfg_c = TrainConfig(iterations=coarse_iterations, batch=batch, seed=train_seed)
    cfg_f = TrainConfig(iterations=fine_iterations, batch=2 * batch, seed=train_seed)
    coarse_net, fine_net, info, val_paths = _train_ctfan(
        work, phantoms, seed, validation, cohort, (cfg_c, cfg_f), jobs, json_out
    )
    val = validation_error(coarse_net, fine_net, (LandmarkExample.load(p) for p in val_paths))
    meta = {
        **info,
        "data": {
            "phantoms": phantoms,
            "seed": seed,
            "validation": {"phantoms": validation, "seed": seed + 1},
            "nuisance": TRAINING_NUISANCE.__dict__,
            "cohorts": [str(c) for c in cohort],
        },
        "validation_error_mm": val,
        "created": time.strftime("%Y-%m-%d"),
    }
    save_weights(out, coarse_net, fine_net, meta)
    if json_out:
        print(json.dumps({"out": str(out), **meta}, indent=1, default=str))
    else:
        row = val.get("all", {})
        out_console.print(
            f"wrote {out}; validation ({validation} phantoms): mean {row.get('mean_mm')} mm, "
            f"p95 {row.get('p95_mm')} mm, failures {row.get('failure_rate')}"
        )


def _train_ctfan(
    work: Path,
    phantoms: int,
    seed: int,
    validation: int,
    cohort: list[Path],
    configs: tuple[TrainConfig, TrainConfig],
    jobs: int,
    quiet: bool,
) -> tuple[CtFan, CtFan, dict[str, Any], list[Path]]:
    """The training and validation phantoms (made or reused in WORK/cache) and both stages
    trained, with progress bars; returns the nets, what was run and the validation files."""
    from ctface.landmarks.dataset import (
        TRAINING_NUISANCE,
        LandmarkExample,
        cohort_examples,
        prepare_phantoms,
    )
    from ctface.landmarks.train import train_ctfan

    cache = work / "cache"
    with progress_bar(quiet) as bar:
        task = bar.add_task("phantoms", total=phantoms + validation, info="")
        step = lambda _p: bar.advance(task)  # noqa: E731
        train_paths = prepare_phantoms(cache, seed, phantoms, TRAINING_NUISANCE, jobs, step)
        val_paths = prepare_phantoms(cache, seed + 1, validation, TRAINING_NUISANCE, jobs, step)
        examples = [LandmarkExample.load(p) for p in train_paths]
        for folder in cohort:
            examples.extend(cohort_examples(folder))
        stages = {name: bar.add_task(name, total=cfg.iterations, info="")
                  for name, cfg in zip(("coarse", "fine"), configs, strict=True)}  # fmt: skip

        def show(stage: str, done: int, _total: int, loss: float) -> None:
            bar.update(stages[stage], completed=done, info=f"loss {loss:.3f}")

        coarse_net, fine_net, info = train_ctfan(examples, work, *configs, show)
    return coarse_net, fine_net, info, val_paths
