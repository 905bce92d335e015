"""Site calibration against the truth: thresholds estimated from a gallery whose patient IDs are
partly wrong, compared with the thresholds the true labels give.

Run: .venv/bin/python benchmarks/site_calibration.py --cohort DIR [--cache DIR] [--jobs 2]
     [--rates 0 0.02 0.05] [--trials 50] [--weights FILE]

The cohort (``ctface phantom``, 2-3 scans per person) goes through the pipeline and the model
(``evaluate.calibration.cohort_templates``; cached). Its scans, filed under their true subject,
are a gallery; for each misfiling rate r, in each trial, round(r x scans) scans chosen at random
are refiled under another patient chosen at random (an archive's wrong PatientIDs). From that
gallery:

- ``site``: ``ctface calibrate --gallery``'s estimate (``gallery.site.estimate``), robust to
  label errors;
- ``naive``: every same-ID pair genuine, every different-ID pair impostor (no cleaning).

Each estimate's threshold at FMR 1e-2 and 1e-3 is compared with the one the true labels give
(every pair of the cohort scored by who the scans really are), and is scored against the truth:
the true FMR (share of true impostor pairs at or above it) and true FNMR (share of true genuine
pairs below it). Also counted: the share of same-ID pairs that are not the same person and of
different-ID pairs that are (the mislabeled pairs). Writes ``benchmarks/results/
site_calibration.json`` (paths relative to the repository or the cohort's name).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ctface.embed.embedder import cached_model
from ctface.evaluate.calibration import CohortTemplates, cohort_templates
from ctface.files import portable_path, write_text_atomic
from ctface.gallery import GalleryTemplates, calibrate
from ctface.gallery.scores import pair_scores, rate_at, threshold_at_rate
from ctface.gallery.site import estimate

RESULTS = Path(__file__).resolve().parent / "results" / "site_calibration.json"
FMRS = (1e-2, 1e-3)


def misfile(rng: np.random.Generator, subjects: np.ndarray, rate: float) -> tuple[np.ndarray, int]:
    """Labels with round(rate x scans) scans refiled under another subject, and that number."""
    labels = subjects.copy()
    n = int(round(rate * len(labels)))
    people = np.unique(subjects)
    for i in rng.choice(len(labels), n, replace=False):
        labels[i] = rng.choice(people[people != subjects[i]])
    return labels, n


def mislabeled_pairs(subjects: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Shares of same-ID pairs that are two people, and of different-ID pairs that are one."""
    i, j = np.triu_indices(len(labels), k=1)
    same_id, same_person = labels[i] == labels[j], subjects[i] == subjects[j]
    two_people = float((same_id & ~same_person).sum() / same_id.sum())
    one_person = float((~same_id & same_person).sum() / (~same_id).sum())
    return {"same_id_two_people": two_people, "different_id_one_person": one_person}


def scored(threshold: float, genuine: np.ndarray, impostor: np.ndarray) -> dict[str, float]:
    """A threshold and the true FMR / FNMR it gives."""
    return {"threshold": threshold, "true_fmr": rate_at(impostor, threshold, above=True),
            "true_fnmr": rate_at(genuine, threshold, above=False)}  # fmt: skip


def trial(
    t: CohortTemplates, labels: np.ndarray, version: str, genuine: np.ndarray, impostor: np.ndarray
) -> dict[str, Any]:
    """Site and naive estimates from a gallery filed under ``labels``, scored by the truth."""
    gallery = GalleryTemplates(t.vectors, [str(x) for x in labels],
                               np.arange(len(labels), dtype=np.int64), "benchmark")  # fmt: skip
    site = estimate(gallery, version).calibration
    naive = calibrate(t.vectors, labels, version, {})
    out: dict[str, Any] = {}
    for f in FMRS:
        out[f"{f:g}"] = {"site": scored(site.threshold(f), genuine, impostor),
                         "naive": scored(naive.threshold(f), genuine, impostor)}  # fmt: skip
    return out


def summary(trials: list[dict[str, Any]], key: str, kind: str) -> dict[str, float]:
    """Median and range over trials of threshold, true FMR and true FNMR."""
    out: dict[str, float] = {}
    for field in ("threshold", "true_fmr", "true_fnmr"):
        v = np.array([tr[key][kind][field] for tr in trials])
        out[f"{field}_median"] = round(float(np.median(v)), 5)
        out[f"{field}_min"], out[f"{field}_max"] = (
            round(float(v.min()), 5),
            round(float(v.max()), 5),
        )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = cached_model(args.weights)
    t0 = time.perf_counter()
    t = cohort_templates(args.cohort, args.cache or args.cohort / "depth_cache", model, args.jobs)
    genuine, impostor = pair_scores(t.vectors, t.subjects)
    truth = {f"{f:g}": scored(threshold_at_rate(impostor, f), genuine, impostor) for f in FMRS}
    rows = []
    for rate in args.rates:
        rng = np.random.default_rng(args.seed)
        trials, shares = [], []
        for _ in range(args.trials if rate > 0 else 1):
            labels, moved = misfile(rng, t.subjects, rate)
            shares.append(mislabeled_pairs(t.subjects, labels))
            trials.append(trial(t, labels, model.version, genuine, impostor))
        row: dict[str, Any] = {"rate": rate, "scans_misfiled": moved, "trials": len(trials),
                               "mislabeled_pairs_mean": {k: round(float(np.mean(
                                   [s[k] for s in shares])), 5) for k in shares[0]}}  # fmt: skip
        for f in FMRS:
            key = f"{f:g}"
            row[key] = {kind: summary(trials, key, kind) for kind in ("site", "naive")}
        rows.append(row)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/site_calibration.py --cohort "
        f"{portable_path(args.cohort)} --trials {args.trials} --seed {args.seed}"
        + (f" --weights {portable_path(args.weights)}" if args.weights else ""),
        "cohort": portable_path(args.cohort),
        "model_version": model.version,
        "scans": len(t.subjects),
        "subjects": int(len(np.unique(t.subjects))),
        "failures_to_acquire": len(t.failures),
        "genuine_pairs": len(genuine),
        "impostor_pairs": len(impostor),
        "true_labels": truth,
        "rates": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def table(res: dict[str, Any]) -> str:
    lines = [f"{res['scans']} scans of {res['subjects']} people; {res['genuine_pairs']} genuine, "
             f"{res['impostor_pairs']} impostor pairs (true labels)",
             "FMR    rate  estimate  threshold (median, range)   true FMR (median, max)  "
             "true FNMR (median, max)"]  # fmt: skip
    for f in FMRS:
        key = f"{f:g}"
        tr = res["true_labels"][key]
        lines.append(f"{key:<6} truth           {tr['threshold']:.4f}                      "
                     f"{tr['true_fmr']:.2e}                {tr['true_fnmr']:.3f}")  # fmt: skip
        for row in res["rates"]:
            for kind in ("site", "naive"):
                s = row[key][kind]
                lines.append(
                    f"{key:<6} {row['rate']:<5} {kind:<9} {s['threshold_median']:.4f} "
                    f"({s['threshold_min']:.4f}-{s['threshold_max']:.4f})  "
                    f"{s['true_fmr_median']:.2e} ({s['true_fmr_max']:.2e})     "
                    f"{s['true_fnmr_median']:.3f} ({s['true_fnmr_max']:.3f})"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cohort", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=None, help="default COHORT/depth_cache")
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.02, 0.05])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    res = run(args)
    print(table(res))
    write_text_atomic(args.out, json.dumps(res, indent=1) + "\n")
    print(f"wrote {portable_path(args.out)}")


if __name__ == "__main__":
    main()
