"""Where the landmark anatomy rule acts: every scan of phantom cohorts through ``detect_landmarks``.

Run: .venv/bin/python benchmarks/landmark_rule.py --cohort DIR [--cohort DIR ...] [--jobs 2]
     [--out FILE.json]

The rule (``landmarks.detect._implausible``): a CT-FAN landmark the face-model fit disagrees
with, lying at a distance outside ``ANATOMY_MM`` from the landmarks both agree on where the
fit's point does not, is the fit's. Each scan of each cohort's ``manifest.csv`` is read with
``load_ct`` as a user's file; where the rule acts (``details["implausible_ct_fan"]``) the JSON
lists the scan, the landmark, the broken distance, and CT-FAN's and the fit's distance to the
phantom's true landmark (the manifest's ``truth`` file). A scan the pipeline refuses is counted
with its error type. Writes ``benchmarks/results/landmark_rule.json`` (cohort folder names only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import CtfaceError
from ctface.evaluate.cohort import read_manifest
from ctface.files import portable_path, write_text_atomic
from ctface.jobs import map_jobs

RESULTS = Path(__file__).resolve().parent / "results" / "landmark_rule.json"


def one_scan(cohort: Path, row: dict[str, str]) -> dict[str, Any]:
    """The rule's verdict on one scan: the landmarks it changed, with their errors (mm)."""
    from ctface.ingest import load_ct
    from ctface.landmarks import LANDMARKS, detect_landmarks

    sid = row["scan_id"]
    try:
        details = detect_landmarks(load_ct(cohort / row["path"])).details
    except CtfaceError as exc:
        return {"scan": sid, "refused": type(exc).__name__}
    found = details.get("implausible_ct_fan", {})
    if not found:
        return {"scan": sid}
    truth = json.loads((cohort / row["truth"]).read_text())["landmarks"]
    ct_fan, fit = np.array(details["ct_fan"]["lps"]), np.array(details["surface_fit"]["lps"])
    changed = []
    for name, why in found.items():
        i, true = LANDMARKS.index(name), np.array(truth[name]["lps"])
        errors = {f"{who}_error_mm": round(float(np.linalg.norm(p[i] - true)), 1)
                  for who, p in (("ct_fan", ct_fan), ("fit", fit))}  # fmt: skip
        changed.append({"landmark": name, "why": why, **errors})
    return {"scan": sid, "changed": changed}


def one_cohort(cohort: Path, jobs: int) -> dict[str, Any]:
    rows = read_manifest(cohort)
    results = map_jobs(one_scan, [(cohort, r) for r in rows], jobs)
    refused = [r for r in results if "refused" in r]
    changed = [r for r in results if r.get("changed")]
    print(f"{cohort.name}: {len(rows)} scans, {len(refused)} refused, rule acts on "
          f"{len(changed)}: {[c['scan'] for c in changed]}", flush=True)  # fmt: skip
    return {"cohort": portable_path(cohort), "scans": len(rows),
            "refused": {r["scan"]: r["refused"] for r in refused},
            "changed": changed}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, action="append", required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    t0 = time.perf_counter()
    cohorts = [one_cohort(c, args.jobs) for c in args.cohort]
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/landmark_rule.py "
        + " ".join(f"--cohort {portable_path(c)}" for c in args.cohort),
        "scans": sum(c["scans"] for c in cohorts),
        "landmarks_changed": sum(len(s["changed"]) for c in cohorts for s in c["changed"]),
        "cohorts": cohorts,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_text_atomic(args.out, json.dumps(out, indent=1) + "\n")
    print(f"{out['scans']} scans, {out['landmarks_changed']} landmarks changed; wrote {args.out}")


if __name__ == "__main__":
    main()
