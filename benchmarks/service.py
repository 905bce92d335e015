"""Identification through the HTTP service (``ctface serve``) vs the CLI as one process per scan.

Latency (p50, p95, mean) and throughput of ``POST /v1/identify`` at 1, 2 and 4 concurrent
clients against the same DICOM series, side by side with ``ctface identify SCAN --db DB
--json`` run as a subprocess per request: the per-scan cost a hospital pays today without the
service (Python start, imports, model loading, then the acquisition).

Run: .venv/bin/python benchmarks/service.py [--requests 8] [--workers 2] [--queue 8]
     [--levels 1,2,4] [--seed 3] [--out DIR] [--results benchmarks/results/service.json]

Data: a phantom cohort of 3 people x 2 DICOM scans (``--seed``; routine slices of 2.5 or 3 mm,
the other nuisances as the generator draws them), generated into ``--out DIR``/cohort (a temp
folder by default; an existing cohort of the same spec there is reused). The first scan of
each person is enrolled with ``ctface enroll SCAN --patient-id PERSON --db DB`` into a new
gallery; the probe is person 1's second scan (a rescan: the right answer is person 1). It is
zipped once (every file of the series, deflated) and that zip is what the clients upload.

Service: ``ctface serve --db DB --workers W --queue Q`` (``tests/service_server.py``: a fresh
token, a free loopback port). Its warm-up is the time from starting the process to the first
``/healthz`` answer (polled every 0.3 s; workers start with their model loaded), the token's
creation (one ``ctface serve --add-token`` process) apart. Then W concurrent requests warm
every worker (their latencies kept apart, ``first_requests_s``). For each level c: c client
threads (``requests``) send ``--requests`` N requests in all, ``POST /v1/identify?record=false``
(nothing is kept for the review page) with the zip as the multipart field ``file`` and
``Authorization: Bearer TOKEN``; a request's latency is from sending it to its whole answer.

CLI: ``python -m ctface identify SERIES --db DB --json`` on the series folder (unzipped, as a
hospital has it), one process per request, c at a time (c = 1: one after the other), N in all;
latency = the process's wall time from start to exit. One run before the levels warms the
page cache (kept apart, ``warmup_run_s``).

Levels run interleaved (c = 1: service, then CLI; c = 2: ...). Every answer must be 200 (exit
0) and decide person 1. Per mode and level: p50 and p95 (linear interpolation between the
sorted latencies: with N = 8, p95 lies between the two slowest), mean, throughput = N / wall
time of the level (first request sent -> last answer), and the service/CLI ratios of p50
(below 1: the service answers sooner) and of throughput (above 1: it does more). Threads: a
service worker computes with 1 thread (``ServiceSettings.threads_per_worker``); the CLI with
the libraries' defaults (all cores). The machine may be shared: per level, the CPU seconds
the whole machine spent (/proc/stat) minus those of this benchmark's own process tree (the
server, its workers, the CLI processes) gives ``others_cpu_share``, the share of the machine's
CPUs that other work used meanwhile (above ~0.1: the times are longer than on an idle
machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from identify import _f, load_note, machine, phantom_cohort

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
FACE_MODEL = ROOT.parent / "shared" / "data" / "face_model" / "ict_facekit_light.npz"
SUBJECTS, SCANS = 3, 2
THICKNESS_MM = (2.5, 3.0)  # routine acquisitions: a probe of ~100 slices
HTTP_TIMEOUT_S = 900


def service_server() -> Any:
    """``tests/service_server.py`` (the real ``ctface serve`` in a subprocess)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import service_server as mod

    return mod


# -- CPU accounting (the machine may be shared) -----------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting for I/O) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def own_cpu_s() -> float:
    """CPU seconds of this process's tree: the live processes under it (/proc) and the
    children that ended and were waited for (getrusage)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            rest = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(name)] = rest
        children.setdefault(int(rest[1]), []).append(int(name))
    total, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        if pid in stats:  # utime, stime: fields 14 and 15 of /proc/PID/stat
            total += (int(stats[pid][11]) + int(stats[pid][12])) / TICK
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + ended.ru_utime + ended.ru_stime


class CpuWindow:
    """The machine's and this benchmark's CPU seconds between ``__init__`` and ``end``."""

    def __init__(self) -> None:
        self.t, self.busy, self.own = time.perf_counter(), machine_busy_s(), own_cpu_s()

    def end(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t
        busy, own = machine_busy_s() - self.busy, own_cpu_s() - self.own
        cpus = os.cpu_count() or 1
        return {"machine_cpu_s": round(busy, 1), "own_cpu_s": round(own, 1),
                "others_cpu_share": round(max(0.0, busy - own) / (wall * cpus), 3)}  # fmt: skip


# -- the two modes ------------------------------------------------------------------------------


def service_request(server: Any, data: bytes, expected: str) -> dict[str, Any]:
    import requests

    t = time.perf_counter()
    r = requests.post(
        f"{server.url}/v1/identify",
        params={"record": "false"},
        files={"file": ("probe.zip", data, "application/zip")},
        headers=server.headers(),
        timeout=HTTP_TIMEOUT_S,
    )
    latency = time.perf_counter() - t
    row: dict[str, Any] = {"latency_s": latency, "status": r.status_code}
    try:
        body = r.json()
    except ValueError:
        body = {}
    if r.status_code == 200:
        row["patient_id"] = (body.get("decision") or {}).get("patient_id")
        row["server_s"] = body.get("seconds")  # the route's own time: upload -> decision
    else:
        row["error"] = (body.get("error") or {}).get("code") or r.text[:200]
    row["right"] = r.status_code == 200 and row.get("patient_id") == expected
    return row


def cli_request(series: Path, db: Path, expected: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "ctface", "identify", str(series), "--db", str(db), "--json"]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    latency = time.perf_counter() - t
    row: dict[str, Any] = {"latency_s": latency, "status": p.returncode}
    try:
        out = json.loads(p.stdout)
        row["patient_id"] = out["decision"]["patient_id"]
        row["server_s"] = out.get("seconds")  # the command's own probe -> decision time
    except (ValueError, KeyError, TypeError):
        row["error"] = p.stderr.strip()[-300:]
    row["right"] = p.returncode == 0 and row.get("patient_id") == expected
    return row


def run_level(one: Callable[[], dict[str, Any]], clients: int, n: int) -> dict[str, Any]:
    """``n`` calls of ``one`` by ``clients`` threads (each takes the next call when it is
    free): every call's result and the level's wall time."""
    window = CpuWindow()
    load = os.getloadavg()[0]
    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        rows = list(pool.map(lambda _: one(), range(n)))
    wall = time.perf_counter() - t
    return {"clients": clients, "wall_s": wall, "rows": rows, "load_1min_at_start": round(load, 2),
            **window.end()}  # fmt: skip


def summarize(level: dict[str, Any]) -> dict[str, Any]:
    lat = np.array([r["latency_s"] for r in level["rows"]])
    inner = [r["server_s"] for r in level["rows"] if r.get("server_s") is not None]
    n = len(lat)
    problems = [f"{r['status']} {r.get('patient_id') or r.get('error', '')}".strip()
                for r in level["rows"] if not r["right"]]  # fmt: skip
    return {
        "clients": level["clients"],
        "requests": n,
        "p50_s": round(float(np.percentile(lat, 50)), 3),
        "p95_s": round(float(np.percentile(lat, 95)), 3),
        "mean_s": round(float(lat.mean()), 3),
        "min_s": round(float(lat.min()), 3),
        "max_s": round(float(lat.max()), 3),
        "wall_s": round(level["wall_s"], 2),
        "throughput_rps": round(n / level["wall_s"], 4),
        "scans_per_min": round(60 * n / level["wall_s"], 1),
        "inner_median_s": round(float(np.median(inner)), 3) if inner else None,
        "all_right": not problems,
        "problems": problems,
        "load_1min_at_start": level["load_1min_at_start"],
        "machine_cpu_s": level["machine_cpu_s"],
        "own_cpu_s": level["own_cpu_s"],
        "others_cpu_share": level["others_cpu_share"],
        "latencies_s": [round(float(x), 3) for x in lat],
    }


# -- setup ----------------------------------------------------------------------------------------


def enroll(scan: Path, patient_id: str, db: Path) -> float:
    cmd = [sys.executable, "-m", "ctface", "enroll", str(scan), "--patient-id", patient_id,
           "--db", str(db), "--json"]  # fmt: skip
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    try:
        (outcome,) = json.loads(p.stdout)["scans"]
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"ctface enroll failed (exit {p.returncode}): {p.stderr[-800:]}") from None
    if outcome.get("status") != "enrolled":
        raise SystemExit(f"enrolling {patient_id} failed: {outcome}")
    return seconds


def zip_series(series: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(p for p in series.rglob("*") if p.is_file()):
            z.write(f, f"{series.name}/{f.relative_to(series).as_posix()}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="Work folder (the cohort, reused; the gallery, zip, server log). "
                    "Default: a temporary folder.")  # fmt: skip
    ap.add_argument("--seed", type=int, default=3, help="The phantom cohort's seed.")
    ap.add_argument("--requests", type=int, default=8, help="Requests per mode and level.")
    ap.add_argument("--workers", type=int, default=2, help="The server's worker processes.")
    ap.add_argument("--queue", type=int, default=8,
                    help="Requests that may wait for a worker (the server's --queue).")  # fmt: skip
    ap.add_argument("--levels", default="1,2,4", help="Concurrent clients, comma-separated.")
    ap.add_argument("--results", type=Path, default=RESULTS / "service.json")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if max(levels) > args.workers + args.queue:
        print(f"note: {max(levels)} clients > workers + queue ({args.workers + args.queue}): "
              "expect 503 answers")  # fmt: skip
    if not FACE_MODEL.is_file():
        raise SystemExit(f"face model not found at {FACE_MODEL} (../shared beside the repo)")
    t_run, load_start = time.perf_counter(), os.getloadavg()

    from ctface.phantom import CohortSpec
    from ctface.phantom.params import NuisanceConfig

    srv = service_server()
    spec = CohortSpec(subjects=SUBJECTS, scans_min=SCANS, scans_max=SCANS, seed=args.seed,
                      dicom_fraction=1.0, face_model=str(FACE_MODEL),
                      nuisance=NuisanceConfig(slice_thickness_mm=THICKNESS_MM))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cohort = work / "cohort"
        print(f"phantom: {SUBJECTS} people x {SCANS} DICOM scans, seed {args.seed} -> {cohort}",
              flush=True)  # fmt: skip
        rows, generation_s = phantom_cohort(spec, cohort, jobs=min(2, os.cpu_count() or 1))
        print(f"  generated in {generation_s:.0f} s" if generation_s else "  reused", flush=True)
        run = work / "run"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir()
        db = run / "gallery.db"
        people = sorted({r["subject_id"] for r in rows})
        enroll_s = []
        for person in people:
            first = min((r for r in rows if r["subject_id"] == person), key=lambda r: r["scan_id"])
            enroll_s.append(enroll(cohort / first["path"], person, db))
            print(f"  enrolled {person} from {first['path']} ({enroll_s[-1]:.1f} s)", flush=True)
        expected = people[0]
        mine = [r for r in rows if r["subject_id"] == expected]
        probe_row = max(mine, key=lambda r: r["scan_id"])  # the person's rescan
        series = cohort / probe_row["path"]
        data = zip_series(series, run / "probe.zip").read_bytes()
        files = sum(1 for p in series.rglob("*") if p.is_file())
        print(f"probe: {probe_row['path']} ({probe_row['n_slices']} slices of "
              f"{probe_row['slice_thickness_mm']} mm, {files} files; zip "
              f"{len(data) / 2**20:.1f} MB) -> expected {expected}", flush=True)  # fmt: skip

        token_s: list[float] = []
        make_token = srv.make_token

        def timed_token(*a: Any, **k: Any) -> str:
            t = time.perf_counter()
            try:
                return str(make_token(*a, **k))
            finally:
                token_s.append(time.perf_counter() - t)

        srv.make_token = timed_token  # running_server looks it up at each call
        results: dict[str, list[dict[str, Any]]] = {"service": [], "cli": []}
        t = time.perf_counter()
        with srv.running_server(db, run, "--workers", str(args.workers),
                                "--queue", str(args.queue)) as server:  # fmt: skip
            warmup_s = time.perf_counter() - t - sum(token_s)
            print(f"server ready in {warmup_s:.1f} s ({args.workers} workers, queue "
                  f"{args.queue}; token {sum(token_s):.1f} s apart)", flush=True)  # fmt: skip
            first = run_level(lambda: service_request(server, data, expected), args.workers,
                              args.workers)  # fmt: skip
            first_s = [round(r["latency_s"], 3) for r in first["rows"]]
            print(f"  first requests (one per worker): {first_s} s", flush=True)
            cli_warm = cli_request(series, db, expected)
            print(f"  CLI warm-up run: {cli_warm['latency_s']:.1f} s", flush=True)
            for c in levels:
                for mode, one in (
                    ("service", lambda: service_request(server, data, expected)),
                    ("cli", lambda: cli_request(series, db, expected)),
                ):
                    s = summarize(run_level(one, c, args.requests))
                    results[mode].append(s)
                    print(f"  {mode:<7} c={c}: p50 {s['p50_s']:.2f} s, p95 {s['p95_s']:.2f} s, "
                          f"{s['throughput_rps']:.3f} req/s, others' CPU share "
                          f"{s['others_cpu_share']:.2f}"
                          f"{'' if s['all_right'] else ' WRONG: ' + '; '.join(s['problems'])}",
                          flush=True)  # fmt: skip
            log_lines = server.log.read_text(errors="replace").splitlines()
        srv.make_token = make_token

    compare = []
    for svc, cli in zip(results["service"], results["cli"], strict=True):
        compare.append({
            "clients": svc["clients"],
            "p50_service_over_cli": round(svc["p50_s"] / cli["p50_s"], 3),
            "throughput_service_over_cli": round(svc["throughput_rps"] / cli["throughput_rps"], 3),
        })  # fmt: skip
    m = machine()
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python benchmarks/service.py --requests {args.requests} --workers "
        f"{args.workers} --queue {args.queue} --levels {args.levels} --seed {args.seed}",
        "machine": m,
        "machine_note": f"{m['cpu_count']} CPUs, shared: other work (e.g. other test runs) "
        "may have run at the same time; see load_average and each level's others_cpu_share",
        "data": {
            "cohort": f"phantom seed {args.seed}: {SUBJECTS} people x {SCANS} DICOM scans, "
            f"slice thickness {' or '.join(f'{x:g}' for x in THICKNESS_MM)} mm",
            "enrolled": "the first scan of each person (ctface enroll --patient-id, CLI)",
            "probe": probe_row["path"],
            "probe_slices": int(probe_row["n_slices"]),
            "probe_thickness_mm": float(probe_row["slice_thickness_mm"]),
            "probe_pixel_mm": float(probe_row["pixel_mm"]),
            "probe_files": files,
            "probe_zip_mb": round(len(data) / 2**20, 2),
            "expected_patient": expected,
        },
        "phantom_generation_s": round(generation_s, 1),
        "enroll_process_s": [round(x, 2) for x in enroll_s],
        "server": {
            "workers": args.workers,
            "queue": args.queue,
            "threads_per_worker": 1,
            "warmup_s": round(warmup_s, 2),
            "warmup_note": "process start -> first /healthz answer (polled every 0.3 s); the "
            "token's creation apart",
            "token_creation_s": round(sum(token_s), 2),
            "first_requests_s": first_s,
            "first_requests_right": all(r["right"] for r in first["rows"]),
            "log_errors": [ln for ln in log_lines if " 500 " in ln or "Traceback" in ln][:10],
        },
        "cli_warmup_run_s": round(cli_warm["latency_s"], 2),
        "requests_per_level": args.requests,
        "levels": levels,
        "method": {
            "service": "c client threads, POST /v1/identify?record=false, the zip as multipart "
            "field file, Bearer token; latency: request sent -> whole answer",
            "cli": "python -m ctface identify SERIES --db DB --json, one process per request, c "
            "at a time; latency: process start -> exit",
            "throughput": "requests / wall time of the level (first sent -> last answered)",
            "percentiles": "numpy linear interpolation",
            "inner_median_s": "service: the route's own seconds (upload -> decision); cli: the "
            "command's own probe -> decision seconds",
            "order": "levels interleaved: for each c, service then CLI",
            "others_cpu_share": "(machine busy CPU s - this benchmark's tree CPU s) / (wall x "
            "CPUs) during the level",
        },
        "service": results["service"],
        "cli": results["cli"],
        "service_over_cli": compare,
        "all_right": all(s["all_right"] for s in results["service"] + results["cli"]),
        "benchmark_seconds": round(time.perf_counter() - t_run, 1),
        "load_average": load_note(load_start),
    }
    print_table(out)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.results}")


def print_table(out: dict[str, Any]) -> None:
    m, d, s = out["machine"], out["data"], out["server"]
    print(f"\n{m['cpu_model']}, {m['cpu_count']} CPUs (may be shared), {m['ram_gb']} GB; probe "
          f"{d['probe_slices']} slices ({d['probe_zip_mb']:.0f} MB zip), "
          f"{out['requests_per_level']} requests per level; server: {s['workers']} workers, "
          f"warm-up {s['warmup_s']:.1f} s, "
          f"first requests {', '.join(f'{x:.2f}' for x in s['first_requests_s'])} s\n")  # fmt: skip
    print("| mode | clients | requests | p50 s | p95 s | mean s | req/s | others' CPU | right |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for svc, cli in zip(out["service"], out["cli"], strict=True):
        for mode, r in (("service", svc), ("CLI", cli)):
            print(f"| {mode} | {r['clients']} | {r['requests']} | {r['p50_s']:.2f} | "
                  f"{r['p95_s']:.2f} | {r['mean_s']:.2f} | {r['throughput_rps']:.3f} | "
                  f"{r['others_cpu_share']:.2f} | {'yes' if r['all_right'] else 'NO'} |"
                  )  # fmt: skip
    print("\n| clients | p50 service/CLI | throughput service/CLI |")
    print("|---:|---:|---:|")
    for c in out["service_over_cli"]:
        print(
            f"| {c['clients']} | {_f(c['p50_service_over_cli'])} | "
            f"{_f(c['throughput_service_over_cli'])} |"
        )


if __name__ == "__main__":
    main()
