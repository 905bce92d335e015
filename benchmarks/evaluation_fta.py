"""Recount the committed Tables I/II evaluation with its failure to acquire as a miss.

Run: .venv/bin/python benchmarks/evaluation_fta.py [--report REPORT.json]
(default: benchmarks/results/evaluation/report.json)

The committed report (``benchmarks/results/evaluation/``) was made before the harness counted a
probe that failed to acquire as a missed search: its rank-1, FNMR and FNIR are over the scans
that went through (its FTA rate is stated beside them). Its cohort's one refused scan
(S0033_02, harsh seed 4242) is a probe of one fold; this script finds that fold again, without
the volumes, from the cohort's seeded plan (scans per person) and the harness's own fold rule
(``subject_folds``) and open-set draw, checks the reconstruction against every fold's stored
rank-1 (hits over probes must be a whole number), and recounts: in that fold rank-1 = hits /
(probes + u), FNMR = (misses + u) / (genuine pairs + u), FNIR likewise, where u is 90 failed
searches in the paper protocol for methods that search single views (one per view the scan
would have had), else 1. The bootstrap CIs cannot be recounted without the scores and are not
given. Writes ``fta_recount.json`` and the table ``fta_recount.md`` beside the report. The
harness itself now counts failures this way (``ctface.evaluate.metrics``); a rerun of
``ctface evaluate`` gives these figures with their CIs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ctface.evaluate.methods import parse_method, subject_folds
from ctface.evaluate.protocols import OPEN_SET_ENROLLED, PROTOCOLS
from ctface.files import write_text_atomic
from ctface.phantom.cohort import CohortSpec, plan

RESULTS = Path(__file__).parent / "results" / "evaluation"
VIEWS = 90
RECOUNTED = ("rank1", "fnmr@fmr=0.01", "fnmr@fmr=0.001", "fnmr@fmr=0.0001", "fnir@fpir=0.01",
             "fnir@fpir=0.003")  # fmt: skip


def accepted_counts(spec: dict[str, Any], failed: list[str]) -> np.ndarray:
    """Scans per subject that went through the pipeline (subject index = S#### - 1)."""
    cohort = CohortSpec(subjects=spec["subjects"], scans_min=spec["scans_min"],
                        scans_max=spec["scans_max"], seed=spec["seed"])  # fmt: skip
    counts = np.bincount([j.subject_index for j in plan(cohort)], minlength=spec["subjects"])
    for scan_id in failed:
        counts[int(scan_id[1:5]) - 1] -= 1
    return counts


def enrolled(test: np.ndarray, acc: np.ndarray, seed: int, fold: int) -> np.ndarray:
    """The open-set draw of ``protocols.searches`` for this fold."""
    rng = np.random.default_rng([seed, fold, PROTOCOLS.index("open-set")])
    multi = rng.permutation(test[acc[test] >= 2])
    n = min(len(multi), max(1, int(round(len(test) * OPEN_SET_ENROLLED))))
    return np.sort(multi[:n])


def mated(protocol: str, test: np.ndarray, acc: np.ndarray, views: int, seed: int, i: int) -> int:
    if protocol == "paper":
        return int(sum(acc[s] * views - 1 for s in test))
    subjects = test if protocol == "cross-scan" else enrolled(test, acc, seed, i)
    return int(sum(acc[s] - 1 for s in subjects))


def recount(value: float, n: int, lost: int, metric: str) -> float:
    if metric == "rank1":
        return value * n / (n + lost)
    return (value * n + lost) / (n + lost)  # an error rate: the lost searches are errors


def method_recount(m: dict[str, Any], acc: np.ndarray, failed_subjects: list[int],
                   k: int, seed: int) -> dict[str, Any]:  # fmt: skip
    method = parse_method(m["spec"])
    folds = subject_folds(np.repeat(np.arange(len(acc)), acc), k, seed, method.stratified)
    out: dict[str, Any] = {"label": m["label"]}
    for protocol, res in m["protocols"].items():
        views = 1 if method.family == "cnn3d" or protocol != "paper" else VIEWS
        n = [mated(protocol, f, acc, views, seed, i) for i, f in enumerate(folds)]
        if sum(n) != res["probes"]["mated"]:
            raise SystemExit(f"{m['spec']} {protocol}: {sum(n)} mated, report {res['probes']}")
        lost = [0] * k
        for s in failed_subjects:
            i = next(i for i, f in enumerate(folds) if s in f)
            if protocol != "open-set" or s in enrolled(folds[i], acc, seed, i):
                lost[i] += views
        rows: dict[str, Any] = {"failed_searches": lost, "mated_searches": n}
        for metric in RECOUNTED:
            if metric not in res["metrics"]:
                continue
            old = res["metrics"][metric]["folds"]
            if metric == "rank1":
                hits = [v * c for v, c in zip(old, n, strict=True)]
                if max(abs(h - round(h)) for h in hits) > 1e-3 * max(n):
                    raise SystemExit(f"{m['spec']} {protocol}: folds do not match the report")
            new = [None if v is None else recount(v, c, u, metric)
                   for v, c, u in zip(old, n, lost, strict=True)]  # fmt: skip
            ok = [v for v in new if v is not None]
            rows[metric] = {"mean": round(float(np.mean(ok)), 5),
                            "std": round(float(np.std(ok, ddof=1)), 5) if len(ok) > 1 else 0.0,
                            "folds": [None if v is None else round(v, 5) for v in new],
                            "acquired_mean": res["metrics"][metric]["mean"]}  # fmt: skip
        out[protocol] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", type=Path, default=RESULTS / "report.json")
    args = ap.parse_args()
    report = json.loads(args.report.read_text())
    spec = json.loads((args.report.parent / "cohort.json").read_text())
    failed = sorted(report["cohort"]["failure_to_acquire"]["scans"])
    acc = accepted_counts(spec, failed)
    failed_subjects = [int(f[1:5]) - 1 for f in failed if acc[int(f[1:5]) - 1] > 0]
    k, seed = report["settings"]["folds"], report["settings"]["seed"]
    methods = {m["spec"]: method_recount(m, acc, failed_subjects, k, seed)
               for m in report["methods"]}  # fmt: skip
    out = {"report": "report.json", "failures_to_acquire": failed, "methods": methods}
    write_text_atomic(args.report.parent / "fta_recount.json", json.dumps(out, indent=1))
    table = markdown(methods, failed)
    write_text_atomic(args.report.parent / "fta_recount.md", table)
    print(table)


def _cell(r: dict[str, Any], protocol: str, metric: str) -> str:
    x = r.get(protocol, {}).get(metric)
    if x is None:
        return "–"
    return f"{x['mean']:.4f} ± {x['std']:.3f} ({x['acquired_mean']:.4f})"


def markdown(methods: dict[str, dict[str, Any]], failed: list[str]) -> str:
    lines = [
        f"### Recount with the failure(s) to acquire ({', '.join(failed)}) as missed searches",
        "",
        "Mean ± SD over folds; in brackets the report's figure over the scans that went "
        "through. `benchmarks/evaluation_fta.py`.",
        "",
        "| method | spec | paper rank-1 | cross-scan rank-1 | open-set FNIR at FPIR 1e-2 |",
        "|---|---|---|---|---|",
    ]
    for spec, r in methods.items():
        cells = [_cell(r, "paper", "rank1"), _cell(r, "cross-scan", "rank1"),
                 _cell(r, "open-set", "fnir@fpir=0.01")]  # fmt: skip
        lines.append(f"| {r['label']} | `{spec}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
