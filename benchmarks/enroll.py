"""Batch enrollment throughput of a DICOM archive folder, vs the bare read of its scans.

``ctface enroll --from-dicom-tags`` on this machine, against the bare SimpleITK read of the
same scans (issue 18).

Run: .venv/bin/python benchmarks/enroll.py [--subjects 8] [--repeats 1] [--jobs 1 2]
     [--data DIR]

Data: a phantom archive of ``--subjects`` people x 2 DICOM scans (seed 18), slice thickness
drawn among 0.6 and 0.625 mm (thin: ~300-550 slices) and 2.5 and 3 mm (routine: ~70-150
slices), every scan under its PatientID and StudyInstanceUID. Generating it is timed apart
(``phantom_generation_s``) and not part of any result; ``--data DIR`` keeps it for later runs.

Timed, interleaved (each repeat runs every ``--jobs`` value, then the bare reads):
- enrollment: ``python -m ctface enroll ARCHIVE --from-dicom-tags --db NEW.db --jobs N --json``
  as a process, into a new gallery, wall time from start to exit (Python start, model loading,
  the archive's header scan and the content digests included). Scans per minute = 60 x scans /
  wall; seconds per scan = wall / scans. Every scan must come out enrolled under its subject.
- bare read: each scan read by SimpleITK (``ImageSeriesReader``: ``GetGDCMSeriesFileNames`` +
  ``Execute``) in this process, and as a fresh ``python -c`` process (median of the repeats,
  summed over the scans).
Ratio: enrollment seconds per scan / mean in-process bare read per scan (a batch worker pays
no process start per scan); also per scan: the acquisition seconds the enrollment reports for
that scan / its in-process bare read (--jobs 1 run).
Peak memory per worker: ``/proc/PID/status`` VmHWM (the kernel's peak RSS of a process),
polled every 0.05 s for every process under the enrollment command (the command, the
forkserver, its workers; ``identify.TreeMonitor``), each process's last value kept; with
``--jobs 1`` the command's own process is the worker. Also the largest sum of VmRSS over the
process tree at one poll. (Not ``ru_maxrss``: on Linux a child's counts its parent's RSS at the
fork, and the forkserver's workers are not the command's children.)
Target (issue 18): seconds per scan <= 2x the bare read; <= 2 GB per worker.
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

import pydicom
from identify import (
    TreeMonitor,
    _f,
    bare_read_process,
    load_note,
    machine,
    median,
    phantom_cohort,
    ratio,
    sitk_read,
)

RESULTS = Path(__file__).parent / "results"
SEED = 18
THICKNESS_MM = (0.6, 0.625, 2.5, 3.0)
RATIO_TARGET, WORKER_GB_MAX = 2.0, 2.0


def enroll_run(archive: Path, db: Path, jobs: int) -> dict[str, Any]:
    """One ``ctface enroll`` of the whole archive into a new gallery, as a process."""
    cmd = [sys.executable, "-m", "ctface", "enroll", str(archive), "--from-dicom-tags",
           "--db", str(db), "--jobs", str(jobs), "--json"]  # fmt: skip
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        monitor = TreeMonitor(p.pid)
        monitor.start()
        p.wait()
        wall = time.perf_counter() - t
        monitor.stop()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    try:
        summary = json.loads(stdout)
    except ValueError:
        raise SystemExit(f"ctface enroll failed (exit {p.returncode}): {stderr[-800:]}") from None
    procs = sorted(monitor.procs.values(), key=lambda d: (d["depth"], d["role"]))
    work_role = "command" if jobs == 1 else "worker"
    workers = [d["peak_rss_mb"] for d in procs if d["role"] == work_role]
    return {
        "jobs": jobs,
        "exit_code": p.returncode,
        "wall_s": wall,
        "command_internal_s": summary.get("seconds"),  # the command's own enrollment loop
        "counts": {
            k: summary.get(k) for k in ("enrolled", "already-enrolled", "failed", "skipped")
        },
        "not_scans": len(summary.get("not_scans", [])),
        "scans": [
            {k: s.get(k) for k in ("source", "patient_id", "status", "code", "reason", "seconds")}
            for s in summary.get("scans", [])
        ],
        "worker_peak_rss_mb": max(workers) if workers else None,
        "workers_seen": len(workers),
        "command_peak_rss_mb": next(
            (d["peak_rss_mb"] for d in procs if d["role"] == "command"), None
        ),  # fmt: skip
        "processes": [
            {"role": d["role"], "peak_rss_mb": round(d["peak_rss_mb"], 1)} for d in procs
        ],  # fmt: skip
        "tree_rss_max_mb": monitor.tree_rss_max_mb,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=8, help="People (2 scans each).")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="--jobs values to run.")
    ap.add_argument("--data", type=Path, default=None,
                    help="Keep (and reuse) the generated archive here.")  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS / "enroll.json")
    args = ap.parse_args()
    t_run, load_start = time.perf_counter(), os.getloadavg()

    from ctface.phantom import CohortSpec
    from ctface.phantom.params import NuisanceConfig

    spec = CohortSpec(subjects=args.subjects, scans_min=2, scans_max=2, seed=SEED,
                      dicom_fraction=1.0,
                      nuisance=NuisanceConfig(slice_thickness_mm=THICKNESS_MM))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = args.data or work / "archive"
        print(f"phantom archive: {args.subjects} people x 2 DICOM scans, seed {SEED} -> "
              f"{archive}", flush=True)  # fmt: skip
        rows, generation_s = phantom_cohort(spec, archive, jobs=min(2, os.cpu_count() or 1))
        print(f"  generated in {generation_s:.0f} s" if generation_s else "  reused", flush=True)
        scans: list[dict[str, Any]] = [
            {"scan": r["scan_id"], "subject": r["subject_id"], "path": archive / r["path"],
             "slices": int(r["n_slices"]), "spacing_mm": float(r["slice_spacing_mm"]),
             "thickness_mm": float(r["slice_thickness_mm"])} for r in rows
        ]  # fmt: skip
        for s in scans:  # the enrollment names a scan by its PatientID / SeriesInstanceUID
            first_file = min(p for p in s["path"].iterdir() if p.is_file())
            header = pydicom.dcmread(first_file, stop_before_pixels=True)
            s["uid"] = str(header.SeriesInstanceUID)
        runs: list[dict[str, Any]] = []
        reads: dict[str, dict[str, list[float]]] = {
            s["scan"]: {"in": [], "proc": []} for s in scans
        }
        for rep in range(args.repeats):
            for jobs in args.jobs:
                r = enroll_run(archive, work / f"gallery_{rep}_{jobs}.db", jobs)
                r["repeat"] = rep + 1
                runs.append(r)
                print(f"  repeat {rep + 1}/{args.repeats} --jobs {jobs}: {r['wall_s']:.1f} s, "
                      f"{r['counts']}, worker peak {r['worker_peak_rss_mb']:.0f} MB",
                      flush=True)  # fmt: skip
            for s in scans:
                reads[s["scan"]]["in"].append(sitk_read(s["path"])[0])
                reads[s["scan"]]["proc"].append(bare_read_process(s["path"]).seconds)

    n = len(scans)
    subject_of = {s["uid"]: s["subject"] for s in scans}
    for r in runs:  # right: every scan enrolled once, under its own subject's PatientID
        wrong = []
        for o in r["scans"]:
            src = str(o.get("source") or "")
            right = subject_of.get(src.rsplit("/", 1)[-1])
            if o.get("status") != "enrolled" or o.get("patient_id") != right:
                wrong.append(f"{src}: {o.get('status')} as {o.get('patient_id')} "
                             f"(expected {right}) {o.get('code') or ''}".strip())  # fmt: skip
        r["all_enrolled_right"] = not wrong and r["counts"]["enrolled"] == n
        r["problems"] = wrong
    read_in = {k: median(v["in"]) or 0.0 for k, v in reads.items()}
    read_proc = {k: median(v["proc"]) or 0.0 for k, v in reads.items()}
    read_in_sum, read_proc_sum = sum(read_in.values()), sum(read_proc.values())
    summary = []
    for jobs in args.jobs:
        rs = [r for r in runs if r["jobs"] == jobs]
        wall = median([r["wall_s"] for r in rs])
        per_scan = wall / n if wall else None
        worker_mb = max(r["worker_peak_rss_mb"] or 0 for r in rs)
        summary.append({
            "jobs": jobs,
            "wall_s": wall,
            "scans_per_minute": round(60 * n / wall, 2) if wall else None,
            "seconds_per_scan": round(per_scan, 3) if per_scan else None,
            "ratio_to_bare_read": ratio(per_scan, read_in_sum / n),
            "ratio_to_bare_read_process": ratio(per_scan, read_proc_sum / n),
            "startup_listing_s": median([r["wall_s"] - (r["command_internal_s"] or 0)
                                         for r in rs]),  # fmt: skip
            "worker_peak_rss_mb": round(worker_mb, 1),
            "command_peak_rss_mb": round(max(r["command_peak_rss_mb"] or 0 for r in rs), 1),
            "tree_rss_max_mb": round(max(r["tree_rss_max_mb"] for r in rs), 1),
            "all_enrolled_right": all(r["all_enrolled_right"] for r in rs),
            "meets_ratio_target": per_scan is not None
            and per_scan <= RATIO_TARGET * read_in_sum / n,
            "meets_memory_target": worker_mb <= WORKER_GB_MAX * 1024,
        })  # fmt: skip
    # per scan: its acquisition seconds in the first --jobs 1 run (else the first run)
    first = next((r for r in runs if r["jobs"] == 1), runs[0])
    acq_s = {o["source"].rsplit("/", 1)[-1]: o.get("seconds") for o in first["scans"]}
    per_scan_rows = []
    for s in scans:
        a = acq_s.get(s["uid"])
        per_scan_rows.append({
            "scan": s["scan"], "slices": s["slices"], "spacing_mm": s["spacing_mm"],
            "thickness_mm": s["thickness_mm"], "bare_read_s": read_in[s["scan"]],
            "bare_read_process_s": read_proc[s["scan"]], "acquisition_s": a,
            "acquisition_ratio": ratio(a, read_in[s["scan"]]),
        })  # fmt: skip
    acq_list = [o.get("seconds") for o in first["scans"]]
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python benchmarks/enroll.py --subjects {args.subjects} --repeats "
        f"{args.repeats} --jobs {' '.join(map(str, args.jobs))}",
        "machine": machine(),
        "data": (
            f"phantom archive seed {SEED}: {args.subjects} people x 2 DICOM scans, slice "
            f"thickness drawn from {list(THICKNESS_MM)} mm"
        ),  # fmt: skip
        "scans": n,
        "thin_scans": sum(s["spacing_mm"] <= 1.0 for s in scans),
        "slices_total": sum(s["slices"] for s in scans),
        "phantom_generation_s": round(generation_s, 1),
        "repeats": args.repeats,
        "targets": {"ratio_to_bare_read_max": RATIO_TARGET, "worker_peak_gb_max": WORKER_GB_MAX},
        "method": {
            "enrollment": "python -m ctface enroll ARCHIVE --from-dicom-tags --db NEW --jobs N "
            "--json; wall time start -> exit (median of the repeats)",
            "bare_read": "SimpleITK ImageSeriesReader in this process, per scan, median of the "
            "repeats; bare_read_process: the same as a fresh python -c process",
            "ratio": "seconds per scan (wall / scans) / mean in-process bare read per scan",
            "peak_memory": "VmHWM of every process under the command, /proc polled every "
            "0.05 s; worker = the command's process with --jobs 1, the forkserver's "
            "children otherwise",
        },
        "bare_read_s": {"sum": round(read_in_sum, 2), "per_scan": round(read_in_sum / n, 3)},
        "bare_read_process_s": {
            "sum": round(read_proc_sum, 2),
            "per_scan": round(read_proc_sum / n, 3),
        },  # fmt: skip
        "summary": summary,
        "per_scan": per_scan_rows,
        "acquisition_s_jobs1": {
            "median": median(acq_list),
            "max": max((a for a in acq_list if a is not None), default=None),
        },  # fmt: skip
        "runs": runs,
        "benchmark_seconds": round(time.perf_counter() - t_run, 1),
        "load_average": load_note(load_start),
    }
    print_table(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")


def print_table(out: dict[str, Any]) -> None:
    m = out["machine"]
    print(f"\n{m['cpu_model']}, {m['cpu_count']} CPUs, {m['ram_gb']} GB; {out['scans']} scans "
          f"({out['thin_scans']} thin, {out['slices_total']} slices); phantom generation "
          f"{out['phantom_generation_s']} s (not timed below)")  # fmt: skip
    print(f"bare SimpleITK read: {out['bare_read_s']['sum']:.2f} s in all, "
          f"{out['bare_read_s']['per_scan']:.3f} s per scan in process; "
          f"{out['bare_read_process_s']['per_scan']:.3f} s per scan as a process")  # fmt: skip
    head = (f"{'jobs':>4} {'wall s':>8} {'scans/min':>9} {'s/scan':>7} {'ratio':>6} "
            f"{'ratio(proc)':>11} {'start+list s':>12} {'worker MB':>9} {'tree MB':>8} "
            "ok")  # fmt: skip
    print(head)
    print("-" * len(head))
    for s in out["summary"]:
        print(f"{s['jobs']:>4} {s['wall_s']:>8.1f} {s['scans_per_minute']:>9.2f} "
              f"{s['seconds_per_scan']:>7.2f} {s['ratio_to_bare_read']:>6.1f} "
              f"{s['ratio_to_bare_read_process']:>11.1f} {s['startup_listing_s']:>12.1f} "
              f"{s['worker_peak_rss_mb']:>9.0f} {s['tree_rss_max_mb']:>8.0f} "
              f"{'yes' if s['all_enrolled_right'] else 'NO'}")  # fmt: skip
    jobs1 = "--jobs 1" if any(s["jobs"] == 1 for s in out["summary"]) else "first"
    print(f"\nper scan ({jobs1} run): acquisition seconds the enrollment reports / bare read")
    print(f"{'scan':<10} {'slices':>6} {'mm':>5} {'read s':>7} {'acquire s':>9} {'ratio':>6}")
    for r in out["per_scan"]:
        print(f"{r['scan']:<10} {r['slices']:>6} {r['spacing_mm']:>5.2f} {r['bare_read_s']:>7.3f} "
              f"{_f(r['acquisition_s']):>9} {_f(r['acquisition_ratio'], '{:.1f}'):>6}")  # fmt: skip
    print(f"targets: seconds per scan <= {RATIO_TARGET:g}x the bare read; <= {WORKER_GB_MAX:g} "
          "GB per worker")  # fmt: skip


if __name__ == "__main__":
    main()
