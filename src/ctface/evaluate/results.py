"""A method's results under one protocol: every metric per fold, mean and SD over folds, a
subject-level bootstrap 95 % CI, the CMC, pooled score curves for the plots, and rank-1 by
nuisance.

Bootstrap: in each replicate every fold's probe subjects are drawn with replacement (all the
probes of a drawn subject come along; the gallery stays), the metrics are recomputed per fold
and averaged over folds; the CI is the 2.5-97.5 percentile range of that mean. Curves and
histograms pool the folds' scores (each fold has its own gallery; thresholds are not shared).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ctface.evaluate.data import NUISANCES, CohortData
from ctface.evaluate.harness import MethodRun
from ctface.evaluate.metrics import (
    CMC_RANKS,
    FMR_POINTS,
    FPIR_POINTS,
    Searches,
    cmc,
    fnir_at_fpir,
    fnmr_at_fmr,
    roc_curve,
    summary,
)
from ctface.evaluate.protocols import PROTOCOLS, searches

BOOTSTRAP = 200
CURVE_POINTS = 300
HIST_BINS = np.linspace(-1.0, 1.0, 81)


def fold_searches(
    run: MethodRun, protocol: str, seed: int, failed_subject: np.ndarray | None = None
) -> list[Searches]:
    """Each fold's searches; ``failed_subject``: the subjects of the scans that failed to
    acquire (``CohortData.failed_subject``), counted as failed searches."""
    p = PROTOCOLS.index(protocol)
    rngs = [np.random.default_rng([seed, i, p]) for i in range(len(run.folds))]
    return [searches(f, protocol, rng, failed_subject)
            for f, rng in zip(run.folds, rngs, strict=True)]  # fmt: skip


def _resample(s: Searches, rng: np.random.Generator) -> Searches:
    subjects = np.unique(np.concatenate([s.probe_subject, s.failed_subject]))
    pick = rng.choice(subjects, len(subjects), replace=True)
    rows = np.concatenate([np.flatnonzero(s.probe_subject == x) for x in pick])
    lost = np.concatenate([np.flatnonzero(s.failed_subject == x) for x in pick])
    return s.rows(rows, lost)


def _fold_mean(per_fold: list[dict[str, float]], key: str) -> float:
    vals = np.array([f.get(key, np.nan) for f in per_fold], float)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan


def bootstrap(ss: list[Searches], n: int, seed: int) -> dict[str, list[float] | None]:
    """Per metric: the 95 % CI of the fold-mean over ``n`` subject-level replicates (a fold
    whose replicate cannot give a metric is left out of that replicate's mean)."""
    rng = np.random.default_rng(seed)
    reps: dict[str, list[float]] = defaultdict(list)
    for _ in range(n):
        per_fold = [summary(_resample(s, rng)) for s in ss]
        for key in dict.fromkeys(k for f in per_fold for k in f):
            reps[key].append(_fold_mean(per_fold, key))
    out: dict[str, list[float] | None] = {}
    for key, v in reps.items():
        arr = np.array(v)
        ok = arr[np.isfinite(arr)]
        out[key] = [round(float(np.percentile(ok, q)), 5) for q in (2.5, 97.5)] if len(ok) else None
    return out


def _downsample(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    keep = np.unique(np.linspace(0, len(x) - 1, min(CURVE_POINTS, len(x))).astype(int))
    return [[round(float(x[i]), 6), round(float(y[i]), 6)] for i in keep]


def nuisance_breakdown(ss: list[Searches], data: CohortData) -> dict[str, dict[str, Any]]:
    """Rank-1 of the mated probes by each nuisance group of the probe scan (folds pooled)."""
    hits = np.concatenate([s.mate_rank() == 1 for s in ss])
    scans = np.concatenate([s.probe_scan[s.mated] for s in ss])
    out: dict[str, dict[str, Any]] = {}
    for name in NUISANCES:
        groups: dict[str, list[bool]] = defaultdict(list)
        for hit, scan in zip(hits, scans, strict=True):
            g = data.nuisance[int(scan)].get(name)
            if g is not None:
                groups[g].append(bool(hit))
        if groups:
            out[name] = {g: {"rank1": round(float(np.mean(v)), 4), "probes": len(v)}
                         for g, v in sorted(groups.items())}  # fmt: skip
    return out


def protocol_result(
    run: MethodRun, protocol: str, data: CohortData, seed: int, n_boot: int = BOOTSTRAP
) -> dict[str, Any]:
    """Everything the report shows of ``run`` under ``protocol``."""
    ss = fold_searches(run, protocol, seed, data.failed_subject)
    per_fold = [summary(s) for s in ss]
    ci = bootstrap(ss, n_boot, seed) if n_boot > 0 else {}
    metrics = {}
    for key in dict.fromkeys(k for f in per_fold for k in f):
        vals = np.array([f.get(key, np.nan) for f in per_fold], float)
        ok = vals[np.isfinite(vals)]
        mean = _fold_mean(per_fold, key)
        metrics[key] = {
            "mean": round(mean, 5) if np.isfinite(mean) else None,
            "std": round(float(ok.std(ddof=1)), 5) if len(ok) > 1 else 0.0,
            "ci95": ci.get(key),
            "folds": [round(float(v), 5) if np.isfinite(v) else None for v in vals],
            "folds_used": len(ok),
        }
    curves = [np.pad(c, (0, CMC_RANKS - len(c)), mode="edge")
              for c in (cmc(s, min(CMC_RANKS, s.scores.shape[1])) for s in ss)]  # fmt: skip
    pairs = [s.pairs() for s in ss]
    gen = np.concatenate([g for g, _ in pairs])
    imp = np.concatenate([i for _, i in pairs])
    fmr, tmr = roc_curve(gen, imp)
    points = {f"fmr={r:g}": [fnmr_at_fmr(g, i, r).to_json() for g, i in pairs] for r in FMR_POINTS}
    if protocol == "open-set":
        points |= {f"fpir={r:g}": [fnir_at_fpir(s, r).to_json() for s in ss] for r in FPIR_POINTS}
    return {
        "metrics": metrics,
        "cmc": [round(float(v), 5) for v in np.mean(curves, axis=0)],
        "gallery_size": [int(s.scores.shape[1]) for s in ss],
        "probes": {
            "mated": int(sum(s.mated.sum() for s in ss)),
            "failed_to_acquire": int(sum(len(s.failed_subject) for s in ss)),
            "non_mated": int(sum((~s.mated).sum() for s in ss)),
        },  # fmt: skip
        "comparisons": {"genuine": len(gen), "impostor": len(imp)},
        "operating_points": points,
        "roc": _downsample(fmr, tmr),
        "histogram": {
            "bins": [round(float(b), 3) for b in HIST_BINS],
            "genuine": np.histogram(gen, HIST_BINS)[0].tolist(),
            "impostor": np.histogram(imp, HIST_BINS)[0].tolist(),
        },  # fmt: skip
        "nuisance": nuisance_breakdown(ss, data),
    }
