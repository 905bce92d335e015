"""Defacers compared on a held-out phantom cohort, and deface's seconds per scan beside identify's.

Run: .venv/bin/python benchmarks/deface.py --cohort DIR [--people 20] [--jobs 2] [--boot 1000]
     [--timing-scans 5] [--out benchmarks/results/deface.json]

The cohort (``ctface phantom``; the committed run: ``--subjects 20 --scans-min 2 --scans-max 2
--seed 2020 --dicom-fraction 0.5``, a seed no model or calibration was made from) gives each
person's first scan to the reference and their second scan to the shared dataset. The shared
scans go through each defacer (``ctface audit --compare``: none, remove, reface, quickshear)
and each attack (ctface, surface-icp, face-2d); rank-1 with its exact CI, the chance level
1/N, TPIR at FPIR 1e-2, the intracranial voxels changed, the refusals.

The compare table cuts the canonical volumes in memory (``FaceCut.apply``: the same cut the
written scans carry to their own grid, nearest voxel).

Timing, side by side in one run on the same ``--timing-scans`` shared scans: ``ctface.deface``
(read, landmarks, cut, write in the source's format with a de-identified header, QC picture)
against ``ctface.acquire`` (read, landmarks, 90 views, quality gate, template: what identify
does before its search, which takes milliseconds), in alternating order (the file cache helps
whichever runs second). Ratio = median deface / median acquire.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ctface.files import portable_path, write_text_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cohort_split(cohort: Path, people: int) -> tuple[list, list]:
    """(reference items, shared items) from the cohort's manifest: first scan, second scan."""
    from ctface.deid.audit import ScanItem

    with open(cohort / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    subjects = sorted({r["subject_id"] for r in rows})[:people]
    refs, shared = [], []
    for s in subjects:
        scans = sorted((r for r in rows if r["subject_id"] == s), key=lambda r: r["scan_id"])
        refs.append(ScanItem(scans[0]["scan_id"], cohort / scans[0]["path"], s))
        shared.append(ScanItem(scans[1]["scan_id"], cohort / scans[1]["path"], s))
    return refs, shared


def timing(items: list, n: int) -> dict:
    import ctface

    ctface.default_model()  # loaded once, as a service or a batch would
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_scan, it in enumerate(items[:n]):
            out = Path(tmp) / it.scan_id
            runs = {
                "acquire_s": lambda it=it: ctface.acquire(it.path, digest=False),
                "deface_s": lambda it=it, out=out: ctface.deface(
                    it.path, out, method="remove", qc_dir=out / "qc"
                ),
            }
            order = list(runs) if n_scan % 2 == 0 else list(runs)[::-1]  # file cache: fair
            row: dict = {"scan": it.scan_id, "first": order[0]}
            for key in order:
                t0 = time.perf_counter()
                runs[key]()
                row[key] = round(time.perf_counter() - t0, 2)
            rows.append(row)
    a = statistics.median(r["acquire_s"] for r in rows)
    d = statistics.median(r["deface_s"] for r in rows)
    return {"scans": rows, "median_acquire_s": a, "median_deface_s": d,
            "ratio": round(d / a, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohort", type=Path, required=True)
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--timing-scans", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/deface.json")
    args = ap.parse_args()

    from ctface.deid.attacks import Attack
    from ctface.deid.audit import evidence_of
    from ctface.deid.compare import Defacer, compare_defacers, compare_table

    attacks = [Attack.CTFACE, Attack.SURFACE_ICP, Attack.FACE_2D]
    refs_items, shared = cohort_split(args.cohort, args.people)
    t0 = time.perf_counter()
    refs, bad = evidence_of(refs_items, attacks, jobs=args.jobs)
    t1 = time.perf_counter()
    rows, unread = compare_defacers(shared, refs, attacks, list(Defacer), jobs=args.jobs,
                                    n_boot=args.boot)  # fmt: skip
    t2 = time.perf_counter()
    doc, table = compare_table(rows, attacks, unread + bad)
    times = timing(shared, args.timing_scans)
    result = {
        "command": "benchmarks/deface.py "
        + " ".join(a if not a.startswith("/") else portable_path(a) for a in sys.argv[1:]),
        "cohort": {
            "name": args.cohort.name,
            "people": len(refs_items),
            "reference_scans": len(refs),
            "shared_scans": len(shared),
        },  # fmt: skip
        "compare": doc,
        "table": table,
        "seconds": {"references": round(t1 - t0, 1), "compare": round(t2 - t1, 1)},
        "timing": times,
    }
    write_text_atomic(args.out, json.dumps(result, indent=1, allow_nan=False))
    print(table)
    print(f"deface {times['median_deface_s']} s vs acquire {times['median_acquire_s']} s per "
          f"scan: ratio {times['ratio']}")  # fmt: skip


if __name__ == "__main__":
    main()
