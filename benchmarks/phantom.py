"""Phantom generator speed and memory per scan, by slice spacing (0.5 mm pixels, 512 matrix).

Run: .venv/bin/python benchmarks/phantom.py [--slices 0.6 1 2 5] [--repeats 2]
     [--devices drawn all] [--out FILE.json]
Each configuration runs in a fresh child process so its peak RSS is its own. Every run and a
summary per slice spacing go to ``benchmarks/results/phantom.json`` (or ``--out``).
Target (issue 2): <= 10 s and <= 2 GB per scan at 0.5 mm in-plane, 1 mm slices, on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ctface.files import portable_path, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

CHILD = r"""
import json, sys, time, dataclasses, resource, numpy as np
from pathlib import Path
from ctface.face_model.model import load_face_model
from ctface.phantom.mesh import tissue_maps
from ctface.phantom.params import NuisanceConfig, draw_subject, draw_scan
from ctface.phantom.generator import synthesize_scan
from ctface.phantom.export import write_nifti
thick, seed, out, dev = float(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
model = load_face_model(); maps = tissue_maps(model)
rng = np.random.default_rng(seed)
subject = draw_subject(rng, "B", model.n_identity)
scan = draw_scan(rng, "B_01", model.expression_names, NuisanceConfig())
scan = dataclasses.replace(scan, pixel_mm=0.5, slice_thickness_mm=thick, slice_spacing_mm=thick,
                           cut_top_mm=0.0, cut_chin=False)
if dev == "all":  # worst case: mask, endotracheal tube and dental metal in the same scan
    scan = dataclasses.replace(scan, mask=True, tube="endotracheal", dental_metal=3,
                               expression={**scan.expression, "jawOpen": 0.4})
t0 = time.perf_counter(); res = synthesize_scan(model, maps, subject, scan, rng)
t1 = time.perf_counter(); write_nifti(res.volume, out / "b.nii.gz"); t2 = time.perf_counter()
print(json.dumps({"synth_s": t1 - t0, "write_s": t2 - t1, "slices": res.volume.hu.shape[0],
                  "mask": scan.mask, "tube": scan.tube,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--slices", type=float, nargs="+", default=[0.6, 1.0, 2.0, 5.0])
    ap.add_argument("--repeats", type=int, default=2, help="scans (different people) per setting")
    ap.add_argument(
        "--devices",
        choices=["drawn", "all"],
        nargs="+",
        default=["drawn", "all"],
        help="'drawn': nuisances as drawn; 'all': mask + ET tube + metal forced",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "phantom.json")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    head = ("slice mm", "slices", "devices", "synth s", "write s", "total s", "peak MB")
    print(" ".join(f"{h:>8}" for h in head))
    runs = [(t, d, s) for t in args.slices for d in args.devices for s in range(args.repeats)]
    for thick, dev, seed in runs:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-c", CHILD, str(thick), str(seed), tmp, dev],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            wall = time.perf_counter() - t
        r = json.loads(res.stdout.strip().splitlines()[-1])
        total = r["synth_s"] + r["write_s"]
        rows.append({
            "slice_mm": thick, "devices": dev, "seed": seed, "slices": r["slices"],
            "synth_s": round(r["synth_s"], 2), "write_s": round(r["write_s"], 2),
            "total_s": round(total, 2), "peak_mb": round(r["peak_mb"]),
            "process_s": round(wall, 1), "mask": r["mask"], "tube": r["tube"],
        })  # fmt: skip
        print(
            f"{thick:8.2f} {r['slices']:8d} {dev:>8} {r['synth_s']:8.2f} {r['write_s']:8.2f} "
            f"{total:8.2f} {r['peak_mb']:8.0f}   (process {wall:.1f} s; "
            f"mask={r['mask']}, tube={r['tube']})"
        )
    summary = {}
    for thick in args.slices:
        sel = [r for r in rows if r["slice_mm"] == thick]
        summary[str(thick)] = {
            "runs": len(sel),
            "total_s_min": min(r["total_s"] for r in sel),
            "total_s_max": max(r["total_s"] for r in sel),
            "peak_mb_min": min(r["peak_mb"] for r in sel),
            "peak_mb_max": max(r["peak_mb"] for r in sel),
        }
    slices = " ".join(f"{s:g}" for s in args.slices)
    opts = f"--slices {slices} --repeats {args.repeats} --devices {' '.join(args.devices)}"
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "pixel_mm": 0.5,
        "matrix": 512,
        "cpu_count": os.cpu_count(),
        # other jobs on the machine slow every timing: the 1-minute load average before/after
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "summary_by_slice_mm": summary,
        "runs": rows,
        "command": f"python benchmarks/phantom.py {opts}",
    }
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(f"wrote {portable_path(args.out, REPO)}")


if __name__ == "__main__":
    main()
