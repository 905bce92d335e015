"""Recognition accuracy on a held-out phantom cohort, through the whole pipeline.

Run: .venv/bin/python benchmarks/recognition.py --cohort DIR [--cache DIR] [--jobs 2]
     [--model NAME=FILE ...] [--views N]
     or --examples DIR instead of --cohort: the CT examples of `ctface train phantoms` (the
     validation sets of the model card; their views were rendered from the true landmarks).

The cohort is a folder written by ``ctface phantom`` (2-3 scans per person, every nuisance on;
the model card names the seed and settings). Each scan is read with ``load_ct`` (NIfTI or DICOM,
as a user's scan), its landmarks found (auto), its face rendered in 90 views (256 px), pooled
to the 128 px the models read, and cached (``--cache``). A scan the pipeline refuses is a
failure to acquire: counted, and left out of the comparisons.

Protocol (cross-scan, ``ctface.evaluate.cross_scan``): each subject's first scan is its gallery
entry, its other scans are probes; rank-1 over all probes, verification AUC over every
probe-gallery pair. Per model, three templates are scored: the median of the view embeddings
(the rule new model files record), their mean (the rule of older files) and the frontal view
alone. ``--views N`` embeds N of the 90 views (evenly
spaced), for networks too slow to embed all of them on a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ctface.embed.embedder import WEIGHTS, FaceEmbedder
from ctface.embed.examples import DepthExample
from ctface.embed.template import scan_template
from ctface.evaluate import cross_scan
from ctface.evaluate.cohort import prepare_cohort

RESULTS = Path(__file__).parent / "results"
FRONTAL = 45  # pitch 0 (index 4 of 9) x roll ~0 (index 5 of 10) in the paper's pose grid


def _progress(done: int, total: int) -> None:
    if done % 10 == 0 or done == total:
        print(f"{done}/{total} scans ready", flush=True)


def evaluate(model: FaceEmbedder, examples: list[DepthExample], views: int) -> dict[str, Any]:
    pick = np.unique(np.linspace(0, 89, views).round().astype(int)) if views < 90 else None
    subject, mean_t, frontal_t, median_t = [], [], [], []
    t0 = time.perf_counter()
    for ex in examples:
        depth = ex.depth_mm.astype(np.float32)
        imgs, _ = model.images(depth if pick is None else depth[pick])
        emb = model.embed(imgs)
        subject.append(ex.subject_id)
        mean_t.append(scan_template(emb, "mean"))
        front = FRONTAL if pick is None else int(np.argmin(np.abs(pick - FRONTAL)))
        frontal_t.append(emb[front])
        median_t.append(scan_template(emb, "median"))
    per_scan = (time.perf_counter() - t0) / len(examples)
    labels = np.unique(subject, return_inverse=True)[1]
    out: dict[str, Any] = {"embed_s_per_scan": round(per_scan, 3), "views": views}
    for name, t in (("mean", mean_t), ("frontal", frontal_t), ("median", median_t)):
        out[name] = cross_scan(np.array(t), labels).to_json()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--cohort", type=Path)
    source.add_argument("--examples", type=Path, help="`ctface train phantoms` cache")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--model", action="append", default=[], help="NAME=FILE (repeatable)")
    ap.add_argument("--views", type=int, default=90)
    ap.add_argument("--out", type=Path, default=RESULTS / "recognition.json")
    args = ap.parse_args()
    failures: dict[str, str] = {}
    seconds: list[float] = []
    if args.examples is not None:
        examples = [DepthExample.load(p) for p in sorted(args.examples.glob("ct_*.npz"))]
    else:
        prep = prepare_cohort(args.cohort, args.cache or args.cohort / "depth_cache", args.jobs,
                              _progress)  # fmt: skip
        examples, failures, seconds = prep.examples, prep.failures, prep.seconds
    models = dict(m.split("=", 1) for m in args.model) or {"shipped": str(WEIGHTS)}
    results: dict[str, Any] = {
        "cohort": str(args.cohort or args.examples),
        "scans": len(examples) + len(failures),
        "subjects": len({e.subject_id for e in examples}),
        "failures_to_acquire": failures,
        "pipeline_s_per_scan": round(float(np.mean(seconds)), 2) if seconds else None,
        "models": {},
    }
    head = ("model", "template", "rank-1", "AUC", "VACC", "probes", "s/scan")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (24, 8, 8, 8, 8, 7, 7), strict=True)))
    for name, path in models.items():
        model = FaceEmbedder.load(path)
        r = evaluate(model, examples, args.views)
        results["models"][name] = {"file": path, "model_version": model.version,
                                   "template_rule": model.template_rule, **r}  # fmt: skip
        for t in ("median", "mean", "frontal"):
            m = r[t]
            cells = f"{m['rank1']:8.4f} {m['auc']:8.5f} {m['verification_accuracy']:8.4f}"
            print(f"{name:>24} {t:>8} {cells} {m['n_probes']:7d} {r['embed_s_per_scan']:7.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"failures to acquire: {len(failures)} of {results['scans']}; wrote {args.out}")


if __name__ == "__main__":
    main()
