"""Face separation accuracy: IoU of a model's face masks against the phantoms' true face masks
on the validation phantoms (seed 5252: never trained on; it chose the model).

Run: .venv/bin/python benchmarks/segmentation.py [--subjects 12] [--seed 5252] [--cache DIR]
     [--jobs 1] [--weights FILE] [--out FILE.json]

The examples are those of ``ctface train phantoms --seed 5252 --subjects N`` (the fine-tuning
command's ``--validation`` set is N = 12: 32 scans, 2,880 views); every draw depends on the seed
and the person's index, so a smaller N gives the first N people of that set. ``--cache`` reuses
(and fills) such a folder; without it the examples are made in a temporary folder. IoU as
``ctface train segmenter`` reports it: the pixels of all views together (intersection / union
of the face masks at 128 px); each scan's own IoU is listed too. Default model: the shipped
``embedder.pt`` (its face separation network). Results: ``benchmarks/results/segmentation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ctface.embed.embedder import FaceEmbedder
from ctface.embed.examples import DepthExample, prepare_phantom_examples
from ctface.embed.segment import face_masks, iou
from ctface.files import portable_path, write_text_atomic
from ctface.landmarks.dataset import TRAINING_NUISANCE

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--seed", type=int, default=5252)
    ap.add_argument("--cache", type=Path, help="examples folder (ctface train phantoms --cache)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--weights", type=Path, help="model file (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=RESULTS / "segmentation.json")
    args = ap.parse_args()
    model = FaceEmbedder.load(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "val"
        before = len(list(cache.glob("ct_*.npz"))) if cache.is_dir() else 0
        t0 = time.perf_counter()
        paths = prepare_phantom_examples(
            cache, args.seed, args.subjects, TRAINING_NUISANCE, (2, 3), args.jobs
        )
        prepare_s = time.perf_counter() - t0
        preds, truths, per_scan = [], [], []
        for p in paths:
            ex = DepthExample.load(p)
            if ex.face_mask is None:
                raise SystemExit(f"{p} has no face mask (not a CT phantom example)")
            pred = face_masks(model.segmenter, ex.depth_mm.astype(np.float32))
            preds.append(pred)
            truths.append(ex.face_mask)
            per_scan.append(
                {"scan": ex.scan_id, "views": len(pred), "iou": round(iou(pred, ex.face_mask), 4)}
            )
            print(f"{ex.scan_id}: IoU {per_scan[-1]['iou']:.4f} ({len(pred)} views)")
    total = iou(np.concatenate(preds), np.concatenate(truths))
    views = sum(len(x) for x in preds)
    print(f"IoU over {len(paths)} scans of {args.subjects} people ({views} views): {total:.4f}")
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "model": portable_path(args.weights, REPO) if args.weights else "shipped embedder.pt",
        "model_version": model.version,
        "seed": args.seed,
        "subjects": args.subjects,
        "scans": len(paths),
        "views": views,
        "iou": round(total, 4),
        "per_scan": per_scan,
        "examples_already_cached": before,
        "prepare_s": round(prepare_s, 1),  # rendering the examples not yet cached
        "cpu_count": os.cpu_count(),
        "command": f"python benchmarks/segmentation.py --subjects {args.subjects} "
        f"--seed {args.seed} --jobs {args.jobs}",
    }
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(f"wrote {portable_path(args.out, REPO)}")


if __name__ == "__main__":
    main()
