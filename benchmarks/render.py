"""Face rendering speed and memory: DICOM load, face location, surface, samples, 90 views.

Run: .venv/bin/python benchmarks/render.py [--repeats 2] [--keep DIR]
A phantom head CT (0.5 mm pixels, 512 x 512, 1 mm slices, ~260 slices) is written as a DICOM
series; each measurement then runs in a fresh child process so its peak RSS is its own:

  pydicom    bare pydicom read of the series (dcmread + pixel_array + stack), the baseline
  canonical  ctface.ingest.load_ct (read, head crop, 1 mm isotropic LPS) + render_face
  native     ctface.ingest.read_ct (native 0.5 x 0.5 x 1 mm grid) + render_face

Target (render issue): the whole render (surface + 90 views) a small multiple of the DICOM read
time on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAKE = r"""
import dataclasses, sys, numpy as np
from pathlib import Path
from ctface.phantom.face_model import load_face_model
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


def _child(mode: str, folder: Path) -> dict[str, float]:
    res = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(folder)], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{res.stderr}")
    out: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2, help="runs per mode (best time is shown)")
    ap.add_argument("--keep", type=Path, help="write the DICOM series here (reused if present)")
    args = ap.parse_args()
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
        rows: dict[str, dict[str, float]] = {}
        for mode in ("pydicom", "canonical", "native"):
            runs = [_child(mode, folder) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["load_s"] + r.get("render_s", 0.0))
            best["peak_mb"] = max(r["peak_mb"] for r in runs)
            rows[mode] = best
    head = ("mode", "load s", "locate s", "surface s", "90 views s", "render s", "samples",
            "peak MB")  # fmt: skip
    print(" ".join(f"{h:>10}" for h in head))
    for mode, r in rows.items():
        cells = [r.get(k) for k in ("load_s", "locate", "surface", "views", "render_s")]
        nums = " ".join(f"{c:10.2f}" if c is not None else f"{'-':>10}" for c in cells)
        n = f"{int(r['samples_n']):10d}" if "samples_n" in r else f"{'-':>10}"
        print(f"{mode:>10} {nums} {n} {r['peak_mb']:10.0f}   shape {r['shape']}")
    bare = rows["pydicom"]["load_s"]
    for mode in ("canonical", "native"):
        r = rows[mode]
        print(
            f"{mode}: render / bare pydicom read = {r['render_s'] / bare:.2f}; "
            f"(load + render) / bare read = {(r['load_s'] + r['render_s']) / bare:.2f}"
        )


if __name__ == "__main__":
    main()
