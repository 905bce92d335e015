"""`ctface train ...`: the recognition model's data, face separation, pretraining, fine-tuning.

The shipped model is reproduced by the commands in ``embed/weights/MODEL_CARD.md``.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from pathlib import Path
from typing import Any

import typer

from ctface.cli.common import progress_bar, report
from ctface.cli.main import app
from ctface.errors import InvalidInputError

train_app = typer.Typer(
    help="Train the recognition model (face separation + embedding network).",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


class Augment(enum.StrEnum):
    """Fine-tuning augmentation (``embed.train``): the shipped model's, also the robust set, or
    also the devices on the face (mask shell, plate)."""

    STANDARD = "standard"
    ROBUST = "robust"
    ROBUST_DEVICES = "robust+devices"


class TrainingNuisance(enum.StrEnum):
    """The phantoms' nuisance draws: the shipped model's, or with domain randomization."""

    TRAINING = "training"
    DOMAIN_RANDOMIZED = "domain-randomized"


def _cached(folder: Path, pattern: str) -> list[Path]:
    paths = sorted(p for p in folder.glob(pattern) if ".tmp." not in p.name)
    if not paths:
        raise InvalidInputError(f"no training examples ({pattern}) in {folder}")
    return paths


@train_app.command("faces")
def faces(
    cache: Path = typer.Option(Path("embed-train/faces"), "--cache", help="Output folder."),
    count: int = typer.Option(2000, "--count", min=2, help="Synthetic identities."),
    seed: int = typer.Option(7070, "--seed"),
    instances: int = typer.Option(2, "--instances", min=1, help="Expressions etc. per identity."),
    views: int = typer.Option(8, "--views", min=1, help="Random poses per instance."),
    jobs: int = typer.Option(2, "--jobs", min=1),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Render pretraining depth faces straight from the face model (resumable)."""
    from ctface.embed.synthetic import prepare_synthetic_faces

    t0 = time.time()
    with progress_bar(json_out) as bar:
        task = bar.add_task("faces", total=count, info="")
        prepare_synthetic_faces(cache, seed, count, instances, views, jobs,
                                lambda _p: bar.advance(task))  # fmt: skip
    s = {"cache": str(cache), "identities": count, "seed": seed, "seconds": time.time() - t0}
    report(s, json_out, f"{count} identities x {instances * views} images in {cache}")


@train_app.command("phantoms")
def phantoms(
    cache: Path = typer.Option(Path("embed-train/ct"), "--cache", help="Output folder."),
    subjects: int = typer.Option(100, "--subjects", min=1),
    seed: int = typer.Option(5151, "--seed"),
    jobs: int = typer.Option(2, "--jobs", min=1),
    nuisance: TrainingNuisance = typer.Option(
        TrainingNuisance.TRAINING,
        "--nuisance",
        help="domain-randomized: also the extra devices and objects around the face.",
    ),  # fmt: skip
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Render CT phantoms (2-3 scans each, every nuisance) with their true face masks."""
    from ctface.embed.examples import prepare_phantom_examples
    from ctface.landmarks.dataset import DOMAIN_RANDOMIZED, TRAINING_NUISANCE

    draws = {TrainingNuisance.TRAINING: TRAINING_NUISANCE,
             TrainingNuisance.DOMAIN_RANDOMIZED: DOMAIN_RANDOMIZED}[nuisance]  # fmt: skip
    t0 = time.time()
    with progress_bar(json_out) as bar:
        task = bar.add_task("scans", total=None, info="")
        paths = prepare_phantom_examples(cache, seed, subjects, draws, (2, 3), jobs,
                                         lambda _p: bar.advance(task))  # fmt: skip
    s = {"cache": str(cache), "subjects": subjects, "scans": len(paths), "seed": seed,
         "nuisance": nuisance.value, "seconds": time.time() - t0}  # fmt: skip
    report(s, json_out, f"{len(paths)} scans of {subjects} subjects in {cache}")


def _depth_and_masks(paths: list[Path]) -> list[tuple[Any, Any]]:
    import numpy as np

    from ctface.embed.examples import DepthExample

    out = []
    for p in paths:
        ex = DepthExample.load(p)
        if ex.face_mask is None:
            raise InvalidInputError(f"{p} has no face mask (not a CT phantom example)")
        out.append((ex.depth_mm.astype(np.float32), ex.face_mask))
    return out


@train_app.command("segmenter")
def segmenter(
    ct: Path = typer.Option(Path("embed-train/ct"), "--ct", help="CT examples (train phantoms)."),
    validation: Path | None = typer.Option(None, "--validation", help="Held-out CT examples."),
    out: Path = typer.Option(Path("segmenter.pt"), "--out"),
    work: Path = typer.Option(Path("embed-train"), "--work", help="Checkpoints."),
    iterations: int = typer.Option(600, "--iterations", min=1),
    batch: int = typer.Option(16, "--batch", min=1),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Train the face separation network; report its IoU on --validation."""
    import numpy as np

    from ctface.embed.segment import face_masks, iou, save_segmenter
    from ctface.embed.segment_train import segmenter_data, train_segmenter
    from ctface.training import TrainConfig

    x, y = segmenter_data(_depth_and_masks(_cached(ct, "*.npz")))
    t0 = time.time()
    with progress_bar(json_out) as bar:
        task = bar.add_task("segmenter", total=iterations, info="")
        net, losses = train_segmenter(
            x, y, TrainConfig(iterations=iterations, batch=batch, seed=seed),
            work / "segmenter.ckpt",
            lambda i, v: bar.update(task, completed=i, info=f"loss {v:.3f}"),
        )  # fmt: skip
    seconds = time.time() - t0
    scores: dict[str, float] = {}
    if validation is not None:
        pairs = _depth_and_masks(_cached(validation, "*.npz"))
        pred = np.concatenate([face_masks(net, d) for d, _ in pairs])
        truth = np.concatenate([m for _, m in pairs])
        scores = {"iou": iou(pred, truth), "scans": float(len(pairs))}
    save_segmenter(out, net, {"ct": str(ct), "iterations": iterations, "batch": batch,
                              "seed": seed, "seconds": seconds, "validation": scores})  # fmt: skip
    s = {"out": str(out), "seconds": seconds, "final_loss": float(np.mean(losses[-50:])), **scores}
    report(s, json_out, f"wrote {out}; validation IoU {scores.get('iou', float('nan')):.4f}")


def _train(
    paths: list[Path],
    segmenter_path: Path | None,
    config: str,
    init: Path | None,
    stage: str,
    work: Path,
    iterations: int,
    seed: int,
    quiet: bool,
    group: tuple[int | None, int | None] = (None, None),
    augment: str | None = None,
) -> tuple[Any, Any, Any, dict[str, Any]]:
    from ctface.embed.dataset import image_set
    from ctface.embed.embedder import load_network
    from ctface.embed.resnet import CONFIGS
    from ctface.embed.segment import load_segmenter
    from ctface.embed.train import train_embedding
    from ctface.training import TrainConfig

    if config not in CONFIGS:
        raise InvalidInputError(f"--config must be one of {', '.join(CONFIGS)}, got {config!r}")
    cfg, start = CONFIGS[config], None
    if init is not None:
        cfg, start = load_network(init)
    if group[0] is not None or group[1] is not None:
        e, l_ = group[0] or cfg.group_e, group[1] or cfg.group_l
        cfg = dataclasses.replace(cfg, group_e=e, group_l=l_)
    if augment is not None:  # the one asked for, whatever the --init network was trained with
        extra = {k: v for k, v in cfg.extra.items() if k != "augment"}
        cfg = dataclasses.replace(cfg, extra=extra | ({} if augment == "standard" else
                                                      {"augment": augment}))  # fmt: skip
    seg = load_segmenter(segmenter_path) if segmenter_path is not None else None
    t0 = time.time()
    with progress_bar(quiet) as bar:
        task = bar.add_task("images", total=len(paths), info="")
        data = image_set(paths, seg, progress=lambda i, n: bar.update(task, completed=i))
        task = bar.add_task(stage, total=iterations, info=f"{len(data)} images")
        settings = TrainConfig(iterations=iterations, lr=cfg.lr, seed=seed, checkpoint_every=50)
        net, losses = train_embedding(
            cfg, data, settings, work, stage, start,
            lambda i, v: bar.update(task, completed=i, info=f"loss {v:.3f}"),
        )  # fmt: skip
    info = {
        "stage": stage,
        "config": cfg.name,
        "init": str(init) if init else None,
        "images": len(data),
        "subjects": len(data.subject_ids),
        "iterations": iterations,
        "group_e": cfg.group_e,
        "group_l": cfg.group_l,
        "batch": cfg.group_e * cfg.group_l,
        "seed": seed,
        "seconds": round(time.time() - t0, 1),
        "final_loss": round(sum(losses[-50:]) / max(len(losses[-50:]), 1), 4),
    }
    return cfg, net, seg, info


@train_app.command("pretrain")
def pretrain(
    faces_dir: Path = typer.Option(Path("embed-train/faces"), "--faces", help="Synthetic faces."),
    config: str = typer.Option("default", "--config", help="default or paper."),
    out: Path = typer.Option(Path("pretrained.pt"), "--out"),
    work: Path = typer.Option(Path("embed-train"), "--work", help="Checkpoints."),
    iterations: int = typer.Option(3000, "--iterations", min=1),
    init: Path | None = typer.Option(
        None, "--init", help="Continue from this pretrained network (new identity head)."
    ),
    group_e: int | None = typer.Option(None, "--group-e", min=2, help="E: images per subject."),
    group_l: int | None = typer.Option(None, "--group-l", min=2, help="L: subjects per batch."),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Pretrain the embedding network on synthetic depth faces (transfer learning, stage 1)."""
    from ctface.embed.embedder import save_model

    paths = _cached(faces_dir, "face_*.npz")
    cfg, net, _, info = _train(paths, None, config, init, f"pretrain-{config}", work,
                               iterations, seed, json_out, (group_e, group_l))  # fmt: skip
    info["data"] = {"faces": str(faces_dir), "files": len(paths)}
    save_model(out, cfg, net, None, {"pretrain": info})
    report({"out": str(out), **info}, json_out, f"wrote {out} ({info['seconds']} s)")


@train_app.command("finetune")
def finetune(
    ct: Path = typer.Option(Path("embed-train/ct"), "--ct", help="CT examples (train phantoms)."),
    segmenter_path: Path = typer.Option(Path("segmenter.pt"), "--segmenter"),
    init: Path | None = typer.Option(None, "--init", help="Pretrained network (else scratch)."),
    config: str = typer.Option("default", "--config", help="Without --init: default or paper."),
    validation: Path | None = typer.Option(None, "--validation", help="Held-out CT examples."),
    out: Path = typer.Option(Path("embedder.pt"), "--out"),
    work: Path = typer.Option(Path("embed-train"), "--work", help="Checkpoints."),
    iterations: int = typer.Option(2000, "--iterations", min=1),
    group_e: int | None = typer.Option(None, "--group-e", min=2, help="E: images per subject."),
    group_l: int | None = typer.Option(None, "--group-l", min=2, help="L: subjects per batch."),
    seed: int = typer.Option(0, "--seed"),
    augment: Augment = typer.Option(
        Augment.STANDARD,
        "--augment",
        help="robust: also scale, bumps, holes, stripes; robust+devices: and mask shells, plates.",
    ),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Train (or fine-tune) on CT phantoms; writes a complete model (network + separation)."""

    from ctface.embed.dataset import image_set
    from ctface.embed.embedder import save_model
    from ctface.embed.inference import embed_images
    from ctface.embed.template import scan_templates
    from ctface.evaluate import cross_scan

    name = "finetune" if init is not None else "scratch"
    robust = "" if augment is Augment.STANDARD else f"-{augment.value}"  # its own checkpoints
    cfg, net, seg, info = _train(_cached(ct, "ct_*.npz"), segmenter_path, config, init,
                                 f"{name}-{config}{robust}", work, iterations, seed, json_out,
                                 (group_e, group_l), augment.value)  # fmt: skip
    info["augment"] = augment.value
    if validation is not None:
        val = image_set(_cached(validation, "ct_*.npz"), seg)
        emb = embed_images(net, cfg, val.images)
        subj = [val.subject[val.scan == s][0] for s in range(len(val.scan_ids))]
        info["validation"] = cross_scan(
            scan_templates(emb, val.scan), __import__("numpy").array(subj)
        ).to_json()
    save_model(out, cfg, net, seg, {"train": info})
    v = info.get("validation", {})
    line = f"wrote {out} ({info['seconds']} s); validation: {v}"
    report({"out": str(out), **info}, json_out, line)


@train_app.command("average")
def average(
    models: list[Path] = typer.Option(
        ..., "--model", help="Models to average (repeat; the last: its face separation is kept)."
    ),
    weights: list[float] = typer.Option(
        [], "--weight", help="One per --model (default equal); normalized to sum 1."
    ),
    out: Path = typer.Option(Path("embedder.pt"), "--out"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Average models' embedding weights: a fine-tuned model with its start (WiSE-FT), or
    fine-tunings of one start (a model soup). Writes a complete model (and its ONNX export)."""
    from ctface.embed.average import average_models
    from ctface.embed.embedder import FaceEmbedder

    written = average_models(models, weights or None, out)
    version = FaceEmbedder.load(written).version
    info = {"out": str(written), "models": [str(m) for m in models], "model_version": version}
    report(info, json_out, f"wrote {written} (model {version})")


@train_app.command("export-onnx")
def export_onnx(
    weights: list[Path] = typer.Option(
        [], "--weights", help="Model or CT-FAN .pt file(s) (default: both shipped ones)."
    ),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Export weights files to ONNX beside them (inference then runs on ONNX Runtime, without
    torch); finetune and train-landmarks do it for the files they write."""
    from ctface.embed.embedder import READABLE, FaceEmbedder, export_model_onnx
    from ctface.embed.shipped import WEIGHTS
    from ctface.landmarks.ctfan import FORMAT as CTFAN_FORMAT
    from ctface.landmarks.ctfan import WEIGHTS as CTFAN_WEIGHTS
    from ctface.landmarks.ctfan import CtFanDetector, export_ctfan_onnx
    from ctface.model_files import load_checked

    rows: list[dict[str, Any]] = []
    for p in weights or [WEIGHTS, CTFAN_WEIGHTS]:
        if not p.is_file():
            raise InvalidInputError(f"no weights file {p}")
        try:
            fmt = load_checked(p, (*READABLE, CTFAN_FORMAT))["format"]
        except Exception as e:  # noqa: BLE001 - any unreadable file gets one message
            raise InvalidInputError(f"{p} is not a ctface model or CT-FAN weights file") from e
        if fmt == CTFAN_FORMAT:
            files = export_ctfan_onnx(p)
            backend = CtFanDetector.load(p, backend="onnxruntime").backend
        else:
            files = export_model_onnx(p)
            backend = FaceEmbedder.load(p, backend="onnxruntime").backend
        rows.append({"weights": str(p), "onnx": [str(f) for f in files], "backend": backend,
                     "bytes": sum(f.stat().st_size for f in files)})  # fmt: skip
    lines = [f"{r['weights']} -> {', '.join(r['onnx'])}" for r in rows]
    report({"exported": rows}, json_out, "\n".join(lines))


@train_app.command("generic-face")
def generic_face(
    out: Path = typer.Option(
        ..., "--out", help="The .npz to write (the shipped one: src/ctface/deid/generic_face.npz)."
    ),  # fmt: skip
    face_model: Path | None = typer.Option(None, "--face-model", help="Packed ICT-FaceKit npz."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """The generic face `ctface deface --method reface` puts in place of a face: the face model's
    mean shape as a frontal height field (reproduces the shipped file)."""
    import numpy as np

    from ctface.deid.generic_face import build_generic_face, save_generic_face

    face = build_generic_face(face_model)
    save_generic_face(face, out)
    summary = {"out": str(out), "eye_distance_mm": round(face.eye_distance_mm, 3),
               "eye_mouth_mm": round(face.eye_mouth_mm, 3),
               "coverage": round(float(np.isfinite(face.height_mm).mean()), 4)}  # fmt: skip
    report(summary, json_out, f"wrote {out} (eye distance {face.eye_distance_mm:.1f} mm)")
