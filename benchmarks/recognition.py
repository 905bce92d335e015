"""Recognition accuracy on a held-out phantom cohort, through the whole pipeline.

Run: .venv/bin/python benchmarks/recognition.py --cohort DIR [--cache DIR] [--jobs 2]
     [--model NAME=FILE ...] [--views N]
     or --examples DIR instead of --cohort: the CT examples of `ctface train phantoms` (the
     validation sets of the model card; their views were rendered from the true landmarks).

The cohort is a folder written by ``ctface phantom`` (2-3 scans per person, every nuisance on;
the model card names the seed and settings). Each scan is read with ``load_ct`` (NIfTI or DICOM,
as a user's scan), its landmarks found (auto), its face rendered in 90 views (256 px), pooled
to the 128 px the models read, and cached (``--cache``). A scan the pipeline refuses is a
failure to acquire (FTA): it has no template, and a probe that failed counts as a missed search
(ISO/IEC 19795-1 transaction level, as NIST FRTE counts it): ``rank1`` = hits / (probes +
failed probes), with its exact (Clopper-Pearson) 95 % CI; ``rank1_acquired`` leaves the
failures out; the FTA rate is stored beside them.

Protocol (cross-scan, ``ctface.evaluate.cross_scan``): each subject's first scan is its gallery
entry, its other scans are probes; rank-1 over all probes, verification AUC over every
probe-gallery pair; the probes missed at rank 1 (the model's own template rule) are listed
with their mate's score and the score that beat it. Per model, three templates are scored: the
median of the view embeddings (the rule new model files record), their mean (the rule of older
files) and the frontal view alone. ``--views N`` embeds N of the 90 views (evenly spaced), for
networks too slow to embed all of them on a CPU.

``--uncapped`` scores the paper's adjustment without the face-anchored cap on max SX (the rule
before issue 16) on the same cached renderings.

Decision thresholds: for a model that the shipped calibration (``calibration.json``) was made
for, its thresholds (fitted on another cohort) are applied to every pair of this cohort's scans
(its own template rule): the observed FMR and FNMR, with exact 95 % CIs. A genuine pair with a
scan that failed to acquire counts as a false non-match.

``--rescore FILE`` adds the FTA-counted fields to a results file written before they existed,
from its stored counts (hits = rank-1 x probes; a failed scan's subject is its scan id's prefix,
as ``ctface phantom`` names them), records absolute paths as ``shown_path`` does, and writes it
back.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ctface.embed.embedder import WEIGHTS, FaceEmbedder
from ctface.embed.examples import DepthExample
from ctface.embed.template import scan_template
from ctface.evaluate import cross_scan
from ctface.evaluate.cohort import prepare_cohort
from ctface.evaluate.metrics import (
    FMR_POINTS,
    clopper_pearson,
    failed_probe_count,
    pair_scores,
)
from ctface.files import portable_path, write_text_atomic
from ctface.gallery.calibration import Calibration
from ctface.render.depth import OPEN_MM

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
FRONTAL = 45  # pitch 0 (index 4 of 9) x roll ~0 (index 5 of 10) in the paper's pose grid


def _progress(done: int, total: int) -> None:
    if done % 10 == 0 or done == total:
        print(f"{done}/{total} scans ready", flush=True)


def shown_path(path: Path | str) -> str:
    """A path as results record it: relative to the repository, else the folder's name."""
    return portable_path(path, REPO)


def proportion(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n)
    return {"rate": round(k / n, 6) if n else None, "count": k, "of": n,
            "ci95": [round(lo, 6), round(hi, 6)] if n else None}  # fmt: skip


def at_thresholds(
    cal: Calibration, templates: np.ndarray, labels: np.ndarray, lost_genuine: int
) -> dict[str, Any]:
    """The calibration's thresholds applied to every pair of these scans; a genuine pair lost
    to a failure to acquire (``lost_genuine``) is a false non-match."""
    gen, imp = pair_scores(templates, labels)
    out = {}
    for fmr in FMR_POINTS:
        if fmr * len(cal.impostor) < 1:
            continue
        t = cal.threshold(fmr)
        fm = int(np.sum(imp >= t))  # accepted at score >= threshold, as decisions are
        fnm = int(np.sum(gen < t)) + lost_genuine
        out[f"fmr={fmr:g}"] = {"threshold": round(t, 5), "fmr": proportion(fm, len(imp)),
                               "fnmr": proportion(fnm, len(gen) + lost_genuine)}  # fmt: skip
    return out


def evaluate(
    model: FaceEmbedder, examples: list[DepthExample], views: int, failed_probes: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
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
    templates = {"mean": np.array(mean_t), "frontal": np.array(frontal_t),
                 "median": np.array(median_t), "labels": labels}  # fmt: skip
    for name in ("mean", "frontal", "median"):
        out[name] = cross_scan(templates[name], labels, failed_probes).to_json()
    return out, templates


def misses(t: np.ndarray, labels: np.ndarray, scan_ids: list[str]) -> list[dict[str, Any]]:
    """Each probe whose mate is not ranked first: its mate's score and the score and gallery
    scan that beat it (ties count against the mate)."""
    _, first = np.unique(labels, return_index=True)  # gallery column k = label k
    out = []
    for p in np.setdiff1d(np.arange(len(labels)), first):
        scores = t[first] @ t[p]
        mate = scores[labels[p]]
        scores[labels[p]] = -np.inf
        k = int(np.argmax(scores))
        if scores[k] >= mate:
            out.append({"probe": scan_ids[p], "gallery": scan_ids[first[labels[p]]],
                        "mate_score": round(float(mate), 4), "best_other": scan_ids[first[k]],
                        "best_other_score": round(float(scores[k]), 4)})  # fmt: skip
    return out


def lost_genuine_pairs(subjects: list[str], failed: set[int]) -> int:
    """Genuine pairs of scans (all of a cohort's scans, in order) that involve a failed one:
    per subject, its pairs among all its scans less those among its acquired ones."""
    total = Counter(subjects)
    acquired = Counter(s for i, s in enumerate(subjects) if i not in failed)
    return sum(n * (n - 1) // 2 - acquired[s] * (acquired[s] - 1) // 2 for s, n in total.items())


def table_row(name: str, rule: str, m: dict[str, Any], seconds: float) -> str:
    lo, hi = m["rank1_ci95"]
    return (f"{name:>24} {rule:>8} {m['rank1']:8.4f} {lo:6.3f}-{hi:5.3f} {m['rank1_acquired']:8.4f}"
            f" {m['auc']:8.5f} {m['verification_accuracy']:8.4f} {m['n_probes']:6d}"
            f"+{m['n_failed_probes']} {seconds:6.2f}")  # fmt: skip


def rescore(path: Path) -> None:
    """Add the FTA-counted fields to a results file from its stored counts (see the module
    docstring); fields already there are recomputed the same way."""
    res = json.loads(path.read_text())
    failed_ids = list(res.get("failures_to_acquire", {}))
    subj = [f.split("_")[0] for f in failed_ids]
    acquired = {s for s in subj if f"{s}_01" not in failed_ids}
    n_failed = failed_probe_count(acquired, subj)
    res["fta_rate"] = proportion(len(failed_ids), res["scans"])
    res["cohort"] = (
        shown_path(res["cohort"]) if Path(res["cohort"]).is_absolute() else res["cohort"]
    )
    for entry in res["models"].values():
        if Path(entry["file"]).is_absolute():
            entry["file"] = shown_path(entry["file"])
        for rule in ("mean", "frontal", "median"):
            m = entry[rule]
            n = m["n_probes"]
            hits = int(round(m.get("rank1_acquired", m["rank1"]) * n))
            lo, hi = clopper_pearson(hits, n + n_failed)
            entry[rule] = {"rank1": round(hits / (n + n_failed), 5),
                           "rank1_ci95": [round(lo, 5), round(hi, 5)],
                           "rank1_acquired": round(hits / n, 5), "hits": hits,
                           **{k: v for k, v in m.items() if k not in ("rank1", "rank1_ci95",
                              "rank1_acquired", "hits", "n_failed_probes")},
                           "n_failed_probes": n_failed}  # fmt: skip
    write_text_atomic(path, json.dumps(res, indent=1))
    print(f"rescored {path}: {len(failed_ids)} failure(s) to acquire, {n_failed} failed probe(s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--cohort", type=Path)
    source.add_argument("--examples", type=Path, help="`ctface train phantoms` cache")
    source.add_argument("--rescore", type=Path, help="results file to add FTA-counted fields to")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--model", action="append", default=[], help="NAME=FILE (repeatable)")
    ap.add_argument("--views", type=int, default=90)
    ap.add_argument("--out", type=Path, default=RESULTS / "recognition.json")
    ap.add_argument(
        "--uncapped",
        action="store_true",
        help="the adjustment's max SX not capped at the face (the earlier rule)",
    )
    args = ap.parse_args()
    if args.uncapped:  # the ablation of the face-anchored cap (render.depth, issue 16)
        import ctface.render.depth as depth

        depth.FACE_TOP_MM = float("inf")
    if args.rescore is not None:
        rescore(args.rescore)
        return
    failures: dict[str, str] = {}
    seconds: list[float] = []
    failed_at: set[int] = set()
    if args.examples is not None:
        examples = [DepthExample.load(p) for p in sorted(args.examples.glob("ct_*.npz"))]
        all_subjects = [e.subject_id for e in examples]
    else:
        prep = prepare_cohort(args.cohort, args.cache or args.cohort / "depth_cache", args.jobs,
                              _progress)  # fmt: skip
        examples, failures, seconds = prep.examples, prep.failures, prep.seconds
        all_subjects = [r["subject_id"] for r in prep.rows]
        failed_at = {i for i, r in enumerate(prep.rows) if r["scan_id"] in failures}
    failed_subjects = [all_subjects[i] for i in sorted(failed_at)]
    n_failed = failed_probe_count((e.subject_id for e in examples), failed_subjects)
    lost = lost_genuine_pairs(all_subjects, failed_at)
    models = dict(m.split("=", 1) for m in args.model) or {"shipped": str(WEIGHTS)}
    cal = Calibration.load()
    results: dict[str, Any] = {
        "cohort": shown_path(args.cohort or args.examples),
        "scans": len(examples) + len(failures),
        "subjects": len(set(all_subjects)),
        "failures_to_acquire": failures,
        "fta_rate": proportion(len(failures), len(examples) + len(failures)),
        "pipeline_s_per_scan": round(float(np.mean(seconds)), 2) if seconds else None,
        "adjustment": "uncapped max SX" if args.uncapped else "max SX capped at the face",
        "thin_shells": f"opened by a ball of {OPEN_MM:g} mm" if OPEN_MM else "kept",
        "models": {},
    }
    head = ("model", "template", "rank-1", "95% CI", "acquired", "AUC", "VACC", "probes", "s/scan")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (24, 8, 8, 12, 8, 8, 8, 8, 6), strict=True)))
    for name, path in models.items():
        model = FaceEmbedder.load(path)
        r, templates = evaluate(model, examples, args.views, n_failed)
        entry = {"file": shown_path(path), "model_version": model.version,
                 "template_rule": model.template_rule, **r}  # fmt: skip
        own = templates[model.template_rule]
        entry["misses"] = misses(own, templates["labels"], [e.scan_id for e in examples])
        if model.version == cal.model_version:
            entry["calibrated_thresholds"] = {
                "calibration": cal.provenance.get("cohort", "?"),
                **at_thresholds(cal, own, templates["labels"], lost),
            }
        results["models"][name] = entry
        for t in ("median", "mean", "frontal"):
            print(table_row(name, t, r[t], r["embed_s_per_scan"]))
    write_text_atomic(args.out, json.dumps(results, indent=1))
    print(f"failures to acquire: {len(failures)} of {results['scans']} scans "
          f"({n_failed} probe(s) counted as misses); wrote {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
