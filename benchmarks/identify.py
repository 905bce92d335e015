"""End-to-end identification time of one DICOM series (load -> decision), and its ratio to the
bare DICOM read time.

Run: .venv/bin/python benchmarks/identify.py [--repeats 3] [--gallery 1000] [--series DIR]

Data: a phantom person with two scans written as DICOM series at the generator's default
(clinical) acquisition, seed 90 (or ``--series``: your own DICOM folder, identified against
synthetic templates only). The first scan is enrolled in a gallery padded with ``--gallery``
synthetic templates; the second is the probe. Timed (median of the repeats):
- bare read: ``pydicom.dcmread`` of every file of the series with its pixel array;
- in process: ``acquire`` (load_ct: read + head crop + canonical grid; landmarks + 90-view
  render; face separation + embedding) then search and decision (``identify``);
- the command: ``ctface identify SERIES --json`` as a user runs it (Python start, imports,
  model and calibration loading, gallery read included).
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

import numpy as np

from ctface.embed.embedder import FaceEmbedder
from ctface.gallery import Calibration, GalleryDatabase, TemplateIndex, acquire, identify
from ctface.gallery.records import ScanRecord
from ctface.phantom import CohortSpec, generate_cohort

RESULTS = Path(__file__).parent / "results"


def bare_read(series: Path) -> float:
    import pydicom

    t = time.perf_counter()
    for f in sorted(p for p in series.rglob("*") if p.is_file()):
        pydicom.dcmread(f).pixel_array  # noqa: B018 - decoding is what is timed
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gallery", type=int, default=1000, help="Synthetic templates added.")
    ap.add_argument("--series", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "identify.json")
    args = ap.parse_args()
    model, cal = FaceEmbedder.load(), Calibration.load()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "g.db"
        with GalleryDatabase(db, create=True) as g:
            noise = rng.standard_normal((args.gallery, 128))
            for i, v in enumerate(noise / np.linalg.norm(noise, axis=1, keepdims=True)):
                rec = ScanRecord(f"synthetic{i}", "-", None, None, "", {}, {})
                g.add_scan(f"SYN{i:06d}", rec, v.astype(np.float32), model.version)
        if args.series is None:
            spec = CohortSpec(subjects=1, scans_min=2, scans_max=2, seed=90, dicom_fraction=1.0)
            rows = generate_cohort(spec, folder / "c")
            enrolled, probe = (folder / "c" / r["path"] for r in rows)
            acq = acquire(enrolled, model)
            with GalleryDatabase(db) as g:
                g.add_scan("PERSON", acq.record, acq.template.vector, model.version)
        else:
            probe = args.series
        n_files = sum(1 for p in probe.rglob("*") if p.is_file())
        rows_out = []
        for _ in range(args.repeats):
            read_s = bare_read(probe)
            t = time.perf_counter()
            acq = acquire(probe, model)
            t_acq = time.perf_counter()
            with GalleryDatabase(db) as g:
                index = TemplateIndex.cached(g.templates(), db)
            result = identify(acq.template.vector, index, cal, 1e-3)
            t_end = time.perf_counter()
            env = {**os.environ, "CTFACE_GALLERY": str(db)}
            t_cli = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "ctface", "identify", str(probe), "--json"],
                               capture_output=True, text=True, env=env, check=True)  # fmt: skip
            cli_s = time.perf_counter() - t_cli
            decision = json.loads(r.stdout)["decision"]["patient_id"]
            rows_out.append({
                "bare_read_s": read_s, "load_s": acq.seconds["load"],
                "landmarks_render_s": acq.seconds["render"], "embed_s": acq.seconds["embed"],
                "acquire_s": t_acq - t, "search_decision_s": t_end - t_acq,
                "in_process_s": t_end - t, "command_s": cli_s,
                "decision": result.patient_id, "command_decision": decision,
            })  # fmt: skip
    med = {k: round(float(np.median([r[k] for r in rows_out])), 3)
           for k in rows_out[0] if k.endswith("_s")}  # fmt: skip
    med["ratio_in_process_to_read"] = round(med["in_process_s"] / med["bare_read_s"], 1)
    med["ratio_command_to_read"] = round(med["command_s"] / med["bare_read_s"], 1)
    out = {"date": time.strftime("%Y-%m-%d"), "series_files": n_files,
           "gallery_templates": args.gallery + (args.series is None),
           "decisions": sorted({str(r["decision"]) for r in rows_out}),
           "median": med, "runs": rows_out, "cpu_count": os.cpu_count(),
           "command": "python benchmarks/identify.py"}  # fmt: skip
    for k, v in med.items():
        print(f"{k:>26} {v:>10}")
    print(f"decisions: {out['decisions']} (files in the series: {n_files})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
