"""Adaptive score normalization (AS-norm) measured on a cohort: does normalizing each pair's
score by both scans' own impostor scores lower the false non-match rate at a low FMR?

Run: .venv/bin/python benchmarks/score_normalization.py --cohort DIR [--cache DIR]
     [--model NAME=FILE ...] [--top-k 30] [--jobs 2] [--out FILE]

Every scan of the cohort (``ctface phantom``) goes through the pipeline and each model
(``evaluate.calibration.cohort_templates``, cached; the template of all 90 views, as
``benchmarks/site_calibration.py`` makes it; ctface's own templates use 30). Four scores per
pair of scans a, b:

- ``raw``: the cosine similarity s(a, b) of the two templates, what ctface's decisions compare;
- ``as_norm``: 0.5 ((s - m_a) / d_a + (s - m_b) / d_b), where m_x and d_x are the mean and
  standard deviation of scan x's ``--top-k`` highest scores against the cohort's scans of
  other subjects by the true labels (the speaker-verification AS-norm of Matejka et al.,
  2017). A scan that scores high with everybody (a mask makes faces alike) has its scores
  lowered; one that scores low with everybody (a tube, a cut) raised;
- ``as_norm_unlabeled``: the same with every other scan of the cohort in x's set, labels
  unused;
- ``as_norm_held_out``: the same with, for the pair (a, b), the scans of both a's and b's
  subjects left out of both sets: the cohort holds only people foreign to the pair.

The first two rules leak: in ``as_norm`` an impostor pair's other scan b is in a's set, so
the highest impostor pairs raise their own scans' means and normalize themselves away, while
a genuine pair's partner is kept out; in ``as_norm_unlabeled`` both partners are in each
other's sets. Decisions never see that: a probe is not in the gallery its candidate's
statistics come from. ``as_norm_held_out`` is the leak-free figure, the one that says whether
AS-norm helps; the other two are kept to show the size of the leak. Measured per
score: verification AUC over every pair (ties count half), the FNMR at the FMR 1e-2 and
1e-3 thresholds that the true labels give on this cohort (every pair), and cross-scan rank-1
(each subject's first scan is the gallery). Nothing in ctface uses AS-norm: on the held-out
cohorts the leak-free rule does not lower the FNMR (README, "Score normalization, measured").
Writes ``--out`` (paths relative to the current folder, the repository when run from it, or
the file's name).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ctface.embed.embedder import cached_model
from ctface.evaluate.calibration import cohort_templates
from ctface.evaluate.metrics import fnmr_at_fmr, roc_auc
from ctface.files import portable_path, write_text_atomic
from ctface.gallery.scores import clopper_pearson

RESULTS = Path(__file__).resolve().parent / "results" / "score_normalization.json"
FMRS = (1e-2, 1e-3)
RULES = ("raw", "as_norm", "as_norm_unlabeled", "as_norm_held_out")


def top_stats(scores: np.ndarray, top_k: int) -> tuple[float, float]:
    """Mean and spread (standard deviation, at least 1e-6) of the ``top_k`` highest scores."""
    top = np.sort(scores)[::-1][:top_k]
    return float(top.mean()), max(float(top.std()), 1e-6)


def as_norm(sim: np.ndarray, subject: np.ndarray, top_k: int, labeled: bool) -> np.ndarray:
    """AS-norm of a (N, N) score matrix; each scan's cohort: the other subjects' scans
    (``labeled``), or every other scan."""
    stats = []
    for a in range(len(subject)):
        others = subject != subject[a] if labeled else np.arange(len(subject)) != a
        stats.append(top_stats(sim[a, others], top_k))
    m, d = (np.array(x) for x in zip(*stats, strict=True))
    return 0.5 * ((sim - m[:, None]) / d[:, None] + (sim - m[None, :]) / d[None, :])


def as_norm_held_out(sim: np.ndarray, subject: np.ndarray, top_k: int) -> np.ndarray:
    """AS-norm of every pair with both scans' sets free of the pair's subjects."""
    _, person = np.unique(subject, return_inverse=True)
    stats: dict[tuple[int, int, int], tuple[float, float]] = {}

    def stat(x: int, p: int, q: int) -> tuple[float, float]:
        key = (x, min(p, q), max(p, q))
        if key not in stats:
            stats[key] = top_stats(sim[x, (person != p) & (person != q)], top_k)
        return stats[key]

    out = np.array(sim, np.float64)
    for a, b in zip(*np.triu_indices(len(subject), k=1), strict=True):
        p, q = int(person[a]), int(person[b])
        (ma, da), (mb, db) = stat(int(a), p, q), stat(int(b), p, q)
        out[a, b] = out[b, a] = 0.5 * ((sim[a, b] - ma) / da + (sim[a, b] - mb) / db)
    return out


def rank1(sim: np.ndarray, subject: np.ndarray) -> tuple[int, int]:
    """Cross-scan rank-1 hits and probes: each subject's first scan is its gallery entry."""
    _, first = np.unique(subject, return_index=True)
    gallery = np.sort(first)
    probes = np.setdiff1d(np.arange(len(subject)), gallery)
    best = gallery[np.argmax(sim[np.ix_(probes, gallery)], axis=1)]
    return int((subject[best] == subject[probes]).sum()), len(probes)


def measured(sim: np.ndarray, subject: np.ndarray) -> dict[str, Any]:
    """AUC, FNMR at the true-label FMR thresholds (with counts and CI), rank-1."""
    i, j = np.triu_indices(len(subject), k=1)
    same = subject[i] == subject[j]
    gen, imp = sim[i, j][same], sim[i, j][~same]
    hits, probes = rank1(sim, subject)
    out: dict[str, Any] = {"auc": round(roc_auc(gen, imp), 6), "rank1": round(hits / probes, 4),
                           "hits": hits, "probes": probes}  # fmt: skip
    for f in FMRS:
        at = fnmr_at_fmr(gen, imp, f)
        misses = int(round(at.error * len(gen)))
        out[f"fmr={f:g}"] = {
            "threshold": round(at.threshold, 4),
            "fnmr": round(misses / len(gen), 4),
            "false_non_matches": misses,
            "genuine_pairs": len(gen),
            "fnmr_ci95": [round(x, 4) for x in clopper_pearson(misses, len(gen))],
            "impostor_pairs": len(imp),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cohort", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=None, help="default COHORT/depth_cache")
    ap.add_argument("--model", action="append", default=[], help="NAME=FILE (repeatable)")
    ap.add_argument("--top-k", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in args.model) or {"shipped": ""}
    res: dict[str, Any] = {"cohort": args.cohort.name, "top_k": args.top_k, "models": {}}
    for name, weights in models.items():
        t = cohort_templates(args.cohort, args.cache or args.cohort / "depth_cache",
                             cached_model(weights or None), args.jobs)  # fmt: skip
        sim = t.vectors.astype(np.float64) @ t.vectors.T.astype(np.float64)
        res["models"][name] = {
            "weights": portable_path(Path(weights)) if weights else "shipped",
            "raw": measured(sim, t.subjects),
            "as_norm": measured(as_norm(sim, t.subjects, args.top_k, True), t.subjects),
            "as_norm_unlabeled": measured(as_norm(sim, t.subjects, args.top_k, False), t.subjects),
            "as_norm_held_out": measured(
                as_norm_held_out(sim, t.subjects, args.top_k), t.subjects
            ),  # fmt: skip
        }
        res["scans"], res["failures_to_acquire"] = len(t.subjects), len(t.failures)
        for rule in RULES:
            r = res["models"][name][rule]
            a = r["fmr=0.001"]
            print(
                f"{name:>12} {rule:>17}  rank-1 {r['hits']}/{r['probes']}  AUC {r['auc']:.5f}  "
                f"FNMR@FMR1e-3 {a['fnmr']:.3f} ({a['false_non_matches']}/{a['genuine_pairs']})"
            )
    write_text_atomic(args.out, json.dumps(res, indent=1) + "\n")
    print(f"wrote {portable_path(args.out)}")


if __name__ == "__main__":
    main()
