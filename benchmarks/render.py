"""Face rendering speed and memory: DICOM load, face location, surface, samples, 90 views.

Run: .venv/bin/python benchmarks/render.py [--repeats 2] [--keep DIR] [--accuracy-pixels 500]
     [--out FILE.json]
A phantom head CT (0.5 mm pixels, 512 x 512, 1 mm slices, ~260 slices) is written as a DICOM
series; each measurement then runs in a fresh child process so its peak RSS is its own:

  pydicom    bare pydicom read of the series (dcmread + pixel_array + stack), the baseline
  canonical  ctface.ingest.load_ct (read, head crop, 1 mm isotropic LPS) + render_face
  native     ctface.ingest.read_ct (native 0.5 x 0.5 x 1 mm grid) + render_face

render_face's "locate" stage is the landmarks (CT-FAN + face-model fit) that place the camera;
"surface" + "90 views" is the rendering proper.

Accuracy (``--accuracy-pixels N``, 0 to skip): the canonical volume rendered in three views
(frontal; pitch 20, roll 25; pitch -20, roll -25), then, for N random pixels with a depth in
each view, exact ray casting of the same triangle mesh (the skin isosurface and the triangles
render_face keeps): the nearest intersection of the pixel centre's ray, compared with the
rendered depth. Pixels with a rendered depth that the ray misses lie on a silhouette (the
z-buffer covers a pixel that a surface only partly covers) and are counted apart.

Target (render issue): the whole render (surface + 90 views) a small multiple of the DICOM read
time on 2 cores. Results: ``benchmarks/results/render.json`` (or ``--out``).
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
from typing import Any

from ctface.files import portable_path, write_text_atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

MAKE = r"""
import dataclasses, sys, numpy as np
from pathlib import Path
from ctface.face_model.model import load_face_model
from ctface.phantom.mesh import tissue_maps
from ctface.phantom.params import NuisanceConfig, draw_subject, draw_scan
from ctface.phantom.generator import synthesize_scan
from ctface.phantom.export import DicomSeriesInfo, make_uid, write_dicom_series
out = Path(sys.argv[1])
model = load_face_model(); maps = tissue_maps(model)
rng = np.random.default_rng(1)  # seed 1: the whole face fits the 256 mm field of view
subject = draw_subject(rng, "B", model.n_identity)
scan = draw_scan(rng, "B_01", model.expression_names, NuisanceConfig())
scan = dataclasses.replace(scan, pixel_mm=0.5, slice_thickness_mm=1.0, slice_spacing_mm=1.0,
                           cut_top_mm=0.0, cut_chin=False, mask=False, tube="none",
                           fov_offset_mm=(0.0, 0.0))
res = synthesize_scan(model, maps, subject, scan, np.random.default_rng(2))
info = DicomSeriesInfo(patient_id="B", patient_name="BENCH^B", study_date="20240101",
                       study_time="080000", study_uid=make_uid("bench", "study"),
                       series_uid=make_uid("bench", "series"),
                       frame_of_reference_uid=make_uid("bench", "for"))
write_dicom_series(res.volume, out, info)
print(list(res.volume.hu.shape))
"""

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
mode, folder = sys.argv[1], Path(sys.argv[2])
row = {"mode": mode}
t0 = time.perf_counter()
if mode == "pydicom":
    import pydicom
    files = sorted(p for p in folder.iterdir() if p.is_file())
    ds = [pydicom.dcmread(p) for p in files]
    ds.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array.astype(np.int16) * int(d.RescaleSlope)
                   + int(d.RescaleIntercept) for d in ds])
    row["load_s"] = time.perf_counter() - t0
    row["shape"] = list(hu.shape)
else:
    from ctface.ingest import load_ct, read_ct
    from ctface.render import render_face
    volume = load_ct(folder) if mode == "canonical" else read_ct(folder)
    row["load_s"] = time.perf_counter() - t0
    row["shape"] = list(volume.hu.shape)
    row["spacing"] = [round(s, 3) for s in volume.spacing]
    t1 = time.perf_counter()
    r = render_face(volume)
    row["render_s"] = time.perf_counter() - t1
    row.update({k: v for k, v in r.timings_s.items()})
row["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(row))
"""


ACCURACY = r"""
import json, sys
from pathlib import Path
import numpy as np
from ctface.ingest import load_ct
from ctface.render import render_face
from ctface.render.depth import CENTRE_UP_MM, REFERENCE_MM, _box_corners, _crop_box
from ctface.landmarks.skin import skin_surface, voxel_box
from ctface.render.views import View
folder, n_pix = Path(sys.argv[2]), int(sys.argv[3])  # argv[1]: the mode
volume = load_ct(folder)
views = [View(0.0, 0.0), View(20.0, 25.0), View(-20.0, -25.0)]
r = render_face(volume, views=views)
# the same mesh as render_face: the skin in the views' box, the triangles it keeps
box = _crop_box(views, r.mm_per_pixel * r.size)
surf = skin_surface(volume, r.threshold_hu,
                    voxel_box(volume, r.frame.to_lps(_box_corners(box))), r.open_mm)
m = r.frame.matrix()
corner = (surf.vertices[surf.triangles[:, 0]] - r.frame.origin) @ m.T
towards = np.array([v.rotation()[2] for v in views])
facing = ((surf.normals @ m.T) @ towards.T).max(axis=1) > -0.2
inside = np.all((corner >= box[0] - 2.0) & (corner <= box[1] + 2.0), axis=1)
surf = surf.subset(facing & inside)
rng = np.random.default_rng(0)
c, mpp = (r.size - 1) / 2, r.mm_per_pixel
per_view, errors, over = [], [], []
for vi, view in enumerate(views):
    tri = (r.frame.to_frame(surf.vertices.astype(np.float64)) @ view.rotation().T)[surf.triangles]
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    xmin, xmax, ymin, ymax = x.min(1), x.max(1), y.min(1), y.max(1)
    rows, cols = np.nonzero(np.isfinite(r.depth_mm[vi]))
    pick = rng.choice(len(rows), size=min(n_pix, len(rows)), replace=False)
    err, missed, edge = [], 0, []
    for row, col in zip(rows[pick], cols[pick]):
        X, Y = (col - c) * mpp, CENTRE_UP_MM - (row - c) * mpp  # the pixel centre's ray
        k = np.flatnonzero((xmin <= X) & (X <= xmax) & (ymin <= Y) & (Y <= ymax))
        x0, x1, x2, y0, y1, y2 = x[k, 0], x[k, 1], x[k, 2], y[k, 0], y[k, 1], y[k, 2]
        det = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        with np.errstate(divide="ignore", invalid="ignore"):
            l0 = ((y1 - y2) * (X - x2) + (x2 - x1) * (Y - y2)) / det
            l1 = ((y2 - y0) * (X - x2) + (x0 - x2) * (Y - y2)) / det
        l2 = 1.0 - l0 - l1
        hit = (det != 0) & (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        if not hit.any():
            missed += 1
            continue
        zz = l0 * z[k, 0] + l1 * z[k, 1] + l2 * z[k, 2]
        err.append(float(r.depth_mm[vi, row, col]) - (float(zz[hit].max()) + REFERENCE_MM))
        nb = r.depth_mm[vi, max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2]
        edge.append(bool(np.isnan(nb).any() or np.nanmax(nb) - np.nanmin(nb) > 3.0))
    e, big = np.abs(np.array(err)), np.abs(np.array(err)) > 1
    errors.extend(e.tolist())
    # where the differences over 1 mm lie: rendered nearer than the ray, at a depth step
    # (3x3 neighbourhood spanning > 3 mm of depth, or with background in it)
    over.append((int(big.sum()), int((big & (np.array(err) > 0)).sum()),
                 int((big & np.array(edge)).sum())))
    per_view.append({"view": view.to_json(), "pixels": int(len(pick)), "ray_missed": missed,
                     "abs_error_mm_median": round(float(np.median(e)), 4),
                     "abs_error_mm_p95": round(float(np.percentile(e, 95)), 4),
                     "abs_error_mm_max": round(float(e.max()), 4),
                     "over_1mm": int((e > 1).sum()), "over_5mm": int((e > 5).sum()),
                     "signed_error_mm_median": round(float(np.median(err)), 4)})
e = np.array(errors)
print(json.dumps({"triangles": int(len(surf.triangles)), "views": per_view,
                  "pixels_compared": int(len(e)),
                  "abs_error_mm_median": round(float(np.median(e)), 4),
                  "abs_error_mm_p95": round(float(np.percentile(e, 95)), 4),
                  "abs_error_mm_max": round(float(e.max()), 4),
                  "over_1mm": int((e > 1).sum()), "over_5mm": int((e > 5).sum()),
                  "over_1mm_rendered_nearer": sum(o[1] for o in over),
                  "over_1mm_at_depth_step": sum(o[2] for o in over)}))
"""


def _child(mode: str, folder: Path, *extra: str, code: str = CHILD) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-c", code, mode, str(folder), *extra], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{res.stderr}")
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2, help="runs per mode (best time is shown)")
    ap.add_argument("--keep", type=Path, help="write the DICOM series here (reused if present)")
    ap.add_argument("--accuracy-pixels", type=int, default=500, help="per view; 0: skip")
    ap.add_argument("--out", type=Path, default=RESULTS / "render.json")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "dicom"
        if not folder.is_dir() or not any(folder.iterdir()):
            t = time.perf_counter()
            made = subprocess.run(
                [sys.executable, "-c", MAKE, str(folder)], capture_output=True, text=True
            )
            if made.returncode != 0:
                raise SystemExit(made.stderr)
            shape = made.stdout.strip().splitlines()[-1]
            print(f"phantom series {shape} (k, j, i) written in {time.perf_counter() - t:.1f} s")
        rows: dict[str, dict[str, Any]] = {}
        for mode in ("pydicom", "canonical", "native"):
            runs = [_child(mode, folder) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["load_s"] + r.get("render_s", 0.0))
            best["peak_mb"] = max(r["peak_mb"] for r in runs)
            rows[mode] = best
        accuracy = None
        if args.accuracy_pixels > 0:
            accuracy = _child("accuracy", folder, str(args.accuracy_pixels), code=ACCURACY)
    head = ("mode", "load s", "locate s", "surface s", "90 views s", "render s", "samples",
            "peak MB")  # fmt: skip
    print(" ".join(f"{h:>10}" for h in head))
    for mode, r in rows.items():
        cells = [r.get(k) for k in ("load_s", "locate", "surface", "views", "render_s")]
        nums = " ".join(f"{c:10.2f}" if c is not None else f"{'-':>10}" for c in cells)
        n = f"{int(r['samples_n']):10d}" if "samples_n" in r else f"{'-':>10}"
        print(f"{mode:>10} {nums} {n} {r['peak_mb']:10.0f}   shape {r['shape']}")
    bare = rows["pydicom"]["load_s"]
    ratios = {}
    for mode in ("canonical", "native"):
        r = rows[mode]
        proper = r["surface"] + r["views"]  # the rendering without the landmarks (locate)
        ratios[mode] = {
            "render_to_bare_read": round(r["render_s"] / bare, 2),
            "render_without_locate_to_bare_read": round(proper / bare, 2),
            "load_and_render_to_bare_read": round((r["load_s"] + r["render_s"]) / bare, 2),
        }
        print(
            f"{mode}: render / bare pydicom read = {r['render_s'] / bare:.2f} "
            f"(without the landmarks: {proper / bare:.2f}); "
            f"(load + render) / bare read = {(r['load_s'] + r['render_s']) / bare:.2f}"
        )
    if accuracy is not None:
        print(
            f"ray casting vs rendered depth, {accuracy['pixels_compared']} pixels of "
            f"{len(accuracy['views'])} views: median {accuracy['abs_error_mm_median']:.3f} mm, "
            f"p95 {accuracy['abs_error_mm_p95']:.3f} mm, max {accuracy['abs_error_mm_max']:.2f} mm"
        )
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "series_shape_kji": rows["pydicom"]["shape"],
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        # other jobs on the machine slow every timing: the 1-minute load average before/after
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "modes": {
            m: {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
            for m, r in rows.items()
        },
        "ratios": ratios,
        "ray_casting": accuracy,
        "command": f"python benchmarks/render.py --repeats {args.repeats} "
        f"--accuracy-pixels {args.accuracy_pixels}",
    }
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(f"wrote {portable_path(args.out, REPO)}")


if __name__ == "__main__":
    main()
