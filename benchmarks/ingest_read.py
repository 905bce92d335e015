"""Ingest benchmarks: load time vs a bare pydicom read, and the canonical spacing trade-off.

Run: .venv/bin/python benchmarks/ingest_read.py [--timing] [--spacing] [--repeats 3]
     [--out FILE.json]

--timing   ``load_ct`` (read + find head + canonical 1 mm) on ../shared invesalius_0051 against
           reading the same 108 files with pydicom (header + pixel_array), median of repeats.
--spacing  skin surface (-350 HU, marching cubes) of ``canonicalize`` at several spacings against
           the one at 0.5 mm: symmetric point-to-surface distance (mean, 95th percentile) over the
           face (the anterior 90 mm), with time and size; on a synthetic phantom scan (0.5 mm
           pixels, 0.6 mm slices; needs the face model) and on invesalius_0051.

What ran goes to ``benchmarks/results/ingest_read.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from ctface.files import portable_path, write_text_atomic
from ctface.ingest import canonicalize, load_ct, read_ct
from ctface.ingest.volume import CtVolume

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared"
INVESALIUS = SHARED / "data" / "real_ct" / "invesalius_0051" / "dicom"
SPACINGS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timing(repeats: int) -> dict[str, Any]:
    files = sorted(p for p in INVESALIUS.iterdir() if p.is_file())

    def bare() -> None:
        for f in files:
            _ = pydicom.dcmread(f).pixel_array

    t_bare = _median_time(bare, repeats)
    t_read = _median_time(lambda: read_ct(INVESALIUS), repeats)
    t_load = _median_time(lambda: load_ct(INVESALIUS), repeats)
    print(f"invesalius_0051 ({len(files)} files), median of {repeats}:")
    print(f"  bare pydicom read      {t_bare:6.2f} s")
    print(f"  read_ct (native grid)  {t_read:6.2f} s  ({t_read / t_bare:.1f}x bare)")
    print(f"  load_ct (1 mm canon.)  {t_load:6.2f} s  ({t_load / t_bare:.1f}x bare)")
    return {"scan": "invesalius_0051", "files": len(files), "repeats": repeats,
            "bare_pydicom_s": round(t_bare, 3), "read_ct_s": round(t_read, 3),
            "load_ct_s": round(t_load, 3)}  # fmt: skip


def _dense_surface(vol: CtVolume, face_y_max: float) -> np.ndarray:
    """LPS points on the -350 HU surface of the face region, densified (edge midpoints)."""
    v, f, _, _ = marching_cubes(vol.hu.astype(np.float32), level=-350.0)
    lps = vol.ijk_to_lps(v[:, ::-1])
    tri = lps[f]
    mids = [(tri[:, a] + tri[:, b]) / 2 for a, b in ((0, 1), (1, 2), (2, 0))]
    pts = np.concatenate([lps, tri.mean(1), *mids])
    return pts[pts[:, 1] < face_y_max]


def _face_box(vol: CtVolume) -> CtVolume:
    """Crop a canonical volume to the anterior 90 mm of the body (the face side)."""
    body = vol.hu > -350
    rows = np.nonzero(body.any(axis=(0, 2)))[0]
    j0 = max(0, int(rows[0]) - 3)
    j1 = min(vol.hu.shape[1], j0 + int(np.ceil(93 / vol.spacing[1])))
    affine = vol.affine_lps.copy()
    affine[:3, 3] += affine[:3, 1] * j0
    return CtVolume(vol.hu[:, j0:j1], affine)


def spacing_sweep(name: str, volume: CtVolume) -> dict[str, Any]:
    ref = _face_box(canonicalize(volume, SPACINGS[0]))
    y_max = ref.origin[1] + 90.0
    ref_pts = _dense_surface(ref, y_max)
    ref_tree = cKDTree(ref_pts)
    print(f"{name}: {len(ref_pts)} reference surface points (0.5 mm)")
    print("  spacing  mean mm  p95 mm  canonicalize s  canonical MB  marching cubes s")
    rows = []
    for s in SPACINGS[1:]:
        t0 = time.perf_counter()
        c = canonicalize(volume, s)
        t1 = time.perf_counter()
        box = _face_box(c)
        t2 = time.perf_counter()
        pts = _dense_surface(box, y_max)
        t3 = time.perf_counter()
        d1 = ref_tree.query(pts)[0]
        d2 = cKDTree(pts).query(ref_pts)[0]
        d = np.concatenate([d1, d2])
        print(
            f"  {s:5.2f}   {d.mean():7.3f} {np.percentile(d, 95):7.3f}  {t1 - t0:10.2f}"
            f"  {c.hu.nbytes / 2**20:12.0f}  {t3 - t2:12.2f}"
        )
        rows.append({"spacing_mm": s, "mean_mm": round(float(d.mean()), 4),
                     "p95_mm": round(float(np.percentile(d, 95)), 4),
                     "canonicalize_s": round(t1 - t0, 2),
                     "canonical_mb": round(c.hu.nbytes / 2**20, 1),
                     "marching_cubes_s": round(t3 - t2, 2)})  # fmt: skip
    return {"scan": name, "reference_spacing_mm": SPACINGS[0],
            "reference_points": len(ref_pts), "rows": rows}  # fmt: skip


def phantom_volume() -> CtVolume:
    from ctface.face_model.model import load_face_model
    from ctface.phantom.generator import synthesize_scan
    from ctface.phantom.mesh import tissue_maps
    from ctface.phantom.params import NuisanceConfig, draw_scan, draw_subject

    model = load_face_model()
    maps = tissue_maps(model)
    rng = np.random.default_rng(3)
    subject = draw_subject(rng, "B", model.n_identity)
    scan = draw_scan(rng, "B_01", model.expression_names, NuisanceConfig())
    scan = dataclasses.replace(
        scan,
        pixel_mm=0.5,
        slice_thickness_mm=0.6,
        slice_spacing_mm=0.6,
        cut_top_mm=0.0,
        cut_chin=False,
        mask=False,
        tube="none",
        headrest=False,
        dental_metal=0,
    )
    return synthesize_scan(model, maps, subject, scan, rng).volume


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--spacing", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "ingest_read.json")
    args = ap.parse_args()
    if not INVESALIUS.is_dir():
        sys.exit(f"shared data not found at {INVESALIUS}")
    load_before = os.getloadavg()[0]
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count()}
    run_all = not (args.timing or args.spacing)
    if args.timing or run_all:
        out["timing"] = timing(args.repeats)
    if args.spacing or run_all:
        out["spacing"] = [
            spacing_sweep("phantom (0.5 mm pixels, 0.6 mm slices)", phantom_volume()),
            spacing_sweep(
                "invesalius_0051 (0.48 mm pixels, 1.0-1.5 mm steps)", read_ct(INVESALIUS)
            ),
        ]
    # other jobs on the machine slow every timing: the 1-minute load average before/after
    out["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    parts = [f"--{k}" for k in ("timing", "spacing") if getattr(args, k)]
    out["command"] = " ".join(["python benchmarks/ingest_read.py", *parts,
                               f"--repeats {args.repeats}"])  # fmt: skip
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(f"wrote {portable_path(args.out, REPO)}")


if __name__ == "__main__":
    main()
