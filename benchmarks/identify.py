"""End-to-end identification time of a DICOM series, as a process and in process, vs its bare read.

A gallery of 1000 templates; the bare SimpleITK read of the same series measured side by side
(issue 18).

Run: .venv/bin/python benchmarks/identify.py [--repeats 3] [--gallery 1000] [--data DIR]
     [--series DIR ...]

Data: a phantom person with two DICOM scans (seed 90: a routine series, 102 slices of 2.5 mm,
and a thin one, 478 slices of 0.6 mm); ``--data DIR`` keeps the generated cohort there and
reuses it in later runs. Each series is the probe once, against its own gallery: ``--gallery``
minus one synthetic unit templates plus the person enrolled (``Gallery.enroll``) from the
OTHER scan, so the probe is never in the gallery and the right decision is "PERSON". With
``--series DIR`` (repeatable) your own DICOM folders are the probes, against the synthetic
templates only (right decision: not in gallery).

Timed per series, interleaved (every repeat runs every measurement of every series in turn;
medians of ``--repeats``):
- bare read process: a fresh ``python -c`` that imports SimpleITK and reads the series
  (``ImageSeriesReader``: ``GetGDCMSeriesFileNames`` + ``Execute``), wall time from start to
  exit;
- identify process: ``python -m ctface identify SERIES --json`` with ``CTFACE_GALLERY`` set,
  as a user runs it (Python start, imports, model, calibration and gallery loading included);
  its decision is checked, and its own reported probe -> decision seconds kept;
- in process (model loaded, gallery open and its templates read, pipeline warmed by the
  enrollment, or with ``--series`` by one acquisition: as a service or batch worker runs it):
  the bare SimpleITK read, the pydicom read (``dcmread`` + ``pixel_array`` of every file;
  reference only), and ``Gallery.identify(SERIES)`` (load -> decision). Its stages are those
  of that same call: ``Acquisition.seconds`` (load, render, embed) and
  ``FaceRendering.timings_s`` (locate = landmarks / face frame, surface, views), caught by
  wrapping ``ctface.gallery.acquire``'s functions for the call; search + decision is the rest.
  When the wrapping catches nothing (the code moved), a separate ``ctface.api.acquire`` call
  gives them, and ``stages_from`` says so.
Peak memory: VmHWM (the kernel's peak RSS of a process) of the bare read and identify
processes, read from ``/proc/PID/status`` every 0.05 s while they run (``TreeMonitor``).
Ratios: identify process / bare read process; in-process identify / in-process SimpleITK read.
Targets (issue 18): process ratio <= 4 (goal 2); in-process ratio <= 2.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
SEED = 90
PROCESS_TARGET, PROCESS_GOAL, IN_PROCESS_TARGET = 4.0, 2.0, 2.0
SITK_READ = (
    "import sys, SimpleITK as sitk; r = sitk.ImageSeriesReader(); "
    "r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1])); r.Execute()"
)


# -- shared with benchmarks/enroll.py ---------------------------------------------------------


def machine() -> dict[str, Any]:
    """The machine and software the numbers were measured on (no paths)."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("ctface", "numpy", "SimpleITK", "pydicom", "torch", "onnxruntime"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        root = Path(__file__).resolve().parent.parent
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src"],
                               cwd=root, text=True, capture_output=True).stdout.strip()  # fmt: skip
        commit = head + (" (src/ with local changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        commit = None
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": ram_gb,
        "gpu": "none used (CPU only)",
        "platform": platform.platform(),
        "versions": versions,
        "commit": commit,
        "thread_env": threads,
    }


class TreeMonitor(threading.Thread):
    """Polls the peak RSS (VmHWM) of every process under ``root`` until stopped."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.stop_event = threading.Event()
        self.procs: dict[int, dict[str, Any]] = {}  # pid -> depth, role, peak_mb
        self.tree_rss_max_mb = 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)
        self.sample()

    def stop(self) -> None:
        self.stop_event.set()
        self.join()

    def sample(self) -> None:
        children: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(name))
        todo, total = [(self.root, 0)], 0.0
        while todo:
            pid, depth = todo.pop()
            todo += [(c, depth + 1) for c in children.get(pid, [])]
            if depth == 0 and _cmdline(pid) == OWN_CMDLINE:
                continue  # not started yet: still the clone of this process (its memory)
            mem = _status_mb(pid)
            if mem is None:
                continue
            rss, hwm = mem
            total += rss
            info = self.procs.setdefault(pid, {"depth": depth, "role": _role(pid, depth),
                                               "peak_rss_mb": 0.0})  # fmt: skip
            info["peak_rss_mb"] = max(info["peak_rss_mb"], hwm)
        self.tree_rss_max_mb = max(self.tree_rss_max_mb, total)


def _status_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a live process in MiB."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    kb = {ln.split(":")[0]: int(ln.split()[1]) for ln in lines if ln.startswith(("VmRSS", "VmHWM"))}
    if "VmRSS" not in kb:
        return None  # a zombie
    return kb["VmRSS"] / 1024, kb.get("VmHWM", kb["VmRSS"]) / 1024


def _cmdline(pid: int | str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


OWN_CMDLINE = _cmdline("self")


def _role(pid: int, depth: int) -> str:
    if depth == 0:
        return "command"
    cmd = _cmdline(pid)
    if "resource_tracker" in cmd:
        return "resource tracker"
    if depth == 1 and "forkserver" in cmd:
        return "forkserver"
    return "worker" if depth >= 2 else "child"


def load_note(start: tuple[float, float, float]) -> dict[str, Any]:
    """The 1-, 5- and 15-minute load averages when the run began and ended: other work on the
    machine (more than ~0.5 at the start) makes the times longer than they are."""
    end = os.getloadavg()
    busy = start[0] > 0.5
    if busy:
        print(f"note: the machine was busy when the run began (load average {start[0]:.1f}): "
              "the times are longer than on an idle machine")  # fmt: skip
    return {"start": [round(x, 2) for x in start], "end": [round(x, 2) for x in end],
            "busy_at_start": busy}  # fmt: skip


@dataclass
class Proc:
    """A finished child process: wall seconds, exit code, output, peak RSS (MiB)."""

    seconds: float
    rc: int
    stdout: str
    stderr: str
    peak_rss_mb: float


def run_process(cmd: list[str], env: dict[str, str] | None = None) -> Proc:
    """Run ``cmd`` to its end: wall time from start to exit, and its peak RSS (``TreeMonitor``;
    not ``ru_maxrss``, which on Linux also counts the RSS of this big parent at the fork)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        monitor = TreeMonitor(p.pid)
        monitor.start()
        rc = p.wait()
        seconds = time.perf_counter() - t
        monitor.stop()
        out.seek(0)
        err.seek(0)
        peak = monitor.procs.get(p.pid, {}).get("peak_rss_mb", 0.0)
        return Proc(seconds, rc, out.read().decode(errors="replace"),
                    err.read().decode(errors="replace"), peak)  # fmt: skip


def bare_read_process(series: Path) -> Proc:
    """A fresh Python process that only imports SimpleITK and reads the series."""
    p = run_process([sys.executable, "-c", SITK_READ, str(series)])
    if p.rc != 0:
        raise RuntimeError(f"the bare SimpleITK read failed: {p.stderr[-500:]}")
    return p


def sitk_read(series: Path) -> tuple[float, Any]:
    """In-process bare SimpleITK read: (seconds, image)."""
    import SimpleITK as sitk

    t = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
    image = reader.Execute()
    return time.perf_counter() - t, image


def pydicom_read(series: Path) -> float:
    import pydicom

    t = time.perf_counter()
    for f in sorted(p for p in series.rglob("*") if p.is_file()):
        pydicom.dcmread(f).pixel_array  # noqa: B018 - decoding is what is timed
    return time.perf_counter() - t


def median(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(float(np.median(vals)), 3) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def read_manifest(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def phantom_cohort(spec: Any, folder: Path, jobs: int = 1) -> tuple[list[dict[str, str]], float]:
    """The cohort's manifest rows, generated into ``folder`` unless a cohort of the same spec
    is there already (then the generation seconds are 0)."""
    from ctface.errors import InvalidInputError
    from ctface.phantom import generate_cohort
    from ctface.phantom.params import NuisanceConfig

    stamp = folder / "cohort.json"
    if (folder / "manifest.csv").exists() and stamp.exists():
        kept = json.loads(stamp.read_text())
        wanted = json.loads(json.dumps(dataclasses.asdict(spec)))
        # a nuisance written before a field existed holds it at its default
        kept.setdefault("style", "standard")  # written before the held-out style existed
        same = all(kept.get(k) == v for k, v in wanted.items() if k in kept and k != "nuisance")
        try:
            same = same and NuisanceConfig.from_dict(kept.get("nuisance", {})) == spec.nuisance
        except InvalidInputError:  # a nuisance field this version does not know
            same = False
        if same:
            return read_manifest(folder), 0.0
        raise SystemExit(f"{folder} holds another cohort than this benchmark's: use another --data")
    t = time.perf_counter()
    generate_cohort(spec, folder, jobs=jobs)
    return read_manifest(folder), time.perf_counter() - t


# -- this benchmark ----------------------------------------------------------------------------


@dataclass
class Probe:
    label: str  # relative to the data folder (never an absolute path)
    path: Path
    db: Path
    expected: str | None  # the right decision
    enrolled_from: str | None
    files: int = 0
    slices: int = 0
    spacing_mm: float = 0.0
    thickness_mm: float | None = None


def synthetic_gallery(db: Path, n: int, version: str, dim: int) -> None:
    """``n`` random unit templates under patients SYN000000.. (seed 0)."""
    from ctface.gallery.records import ScanRecord
    from ctface.gallery.store import GalleryDatabase

    rng = np.random.default_rng(0)
    noise = rng.standard_normal((n, dim))
    with GalleryDatabase(db, create=True) as g:
        for i, v in enumerate(noise / np.linalg.norm(noise, axis=1, keepdims=True)):
            rec = ScanRecord(digest=f"synthetic{i}", source="-", series_uid=None, study_uid=None,
                             dicom_patient_id="", acquisition={}, quality={})  # fmt: skip
            g.add_scan(f"SYN{i:06d}", rec, v.astype(np.float32), version)


@contextmanager
def catch_stages() -> Iterator[dict[str, dict[str, float]]]:
    """While inside: the ``seconds`` of the Acquisition and the ``timings_s`` of the rendering
    made by ``ctface.gallery.acquire`` (its module functions wrapped, restored on exit)."""
    # by its full name: ``ctface.gallery.acquire`` is also a function the package exports
    mod: Any = importlib.import_module("ctface.gallery.acquire")

    got: dict[str, dict[str, float]] = {}
    acquire: Any = mod.acquire
    render: Any = getattr(mod, "render_face", None)

    def acquire_wrapped(*a: Any, **k: Any) -> Any:
        acq = acquire(*a, **k)
        got["acquire"] = dict(getattr(acq, "seconds", {}) or {})
        return acq

    def render_wrapped(*a: Any, **k: Any) -> Any:
        rendering = render(*a, **k)
        got["render"] = dict(getattr(rendering, "timings_s", {}) or {})
        return rendering

    mod.acquire = acquire_wrapped
    if render is not None:
        mod.render_face = render_wrapped
    try:
        yield got
    finally:
        mod.acquire = acquire
        if render is not None:
            mod.render_face = render


def stage_row(got: dict[str, dict[str, float]], total: float | None) -> dict[str, float | None]:
    acq, ren = got.get("acquire", {}), got.get("render", {})
    load, render, embed = acq.get("load"), acq.get("render"), acq.get("embed")
    locate, surface, views = ren.get("locate"), ren.get("surface"), ren.get("views")
    parts = [x for x in (locate, surface, views) if x is not None]
    rest = render - sum(parts) if render is not None and parts else None
    known = [x for x in (load, render, embed) if x is not None]
    return {
        "load_s": load,
        "locate_s": locate,  # landmarks / face frame
        "surface_s": surface,
        "views_s": views,
        "render_rest_s": rest,  # coverage, soft tissue, normalization, quality gate
        "render_s": render,  # locate + surface + views + rest
        "embed_s": embed,
        "search_decision_s": total - sum(known) if total and len(known) == 3 else None,
    }


def measure(probe: Probe, gallery: Any, env: dict[str, str], model: Any) -> dict[str, Any]:
    """One repeat of every measurement of one series (in this order)."""
    from ctface.api import acquire
    from ctface.errors import CtfaceError

    row: dict[str, Any] = {}
    p = bare_read_process(probe.path)
    row["bare_read_process_s"], row["bare_read_process_rss_mb"] = p.seconds, p.peak_rss_mb
    cli = run_process([sys.executable, "-m", "ctface", "identify", str(probe.path), "--json"],
                      env=env)  # fmt: skip
    row["identify_process_s"], row["identify_process_rss_mb"] = cli.seconds, cli.peak_rss_mb
    try:
        out = json.loads(cli.stdout)
        row["identify_process_decision"] = out["decision"]["patient_id"]
        row["identify_process_internal_s"] = out.get("seconds")
    except (ValueError, KeyError, TypeError):
        row["identify_process_decision"] = f"error (exit {cli.rc}): {cli.stderr.strip()[-300:]}"
        row["identify_process_internal_s"] = None
    row["sitk_read_s"] = sitk_read(probe.path)[0]
    row["pydicom_read_s"] = pydicom_read(probe.path)
    with catch_stages() as got:
        t = time.perf_counter()
        try:
            result = gallery.identify(str(probe.path))
        except CtfaceError as e:  # e.g. refused by the quality gate: timed all the same
            result = None
            row["in_process_decision"] = f"{type(e).__name__}: {getattr(e, 'code', '')} {e}"
        total: float | None = time.perf_counter() - t
    row["in_process_s"] = total
    if result is not None:
        best = result.candidates[0] if result.candidates else None
        row["in_process_decision"] = result.patient_id
        row["top_candidate"] = best.patient_id if best else None
        row["top_score"] = round(float(best.score), 4) if best else None
    row["stages_from"] = "the timed call"
    if "acquire" not in got and result is not None:  # the wrapping caught nothing
        with catch_stages() as got:
            acquire(probe.path, model=model, digest=False)
        row["stages_from"] = "a separate ctface.api.acquire call (search_decision_s: none)"
        total = None
    row.update(stage_row(got, total))
    return row


def describe(probe: Probe) -> None:
    _, image = sitk_read(probe.path)
    probe.files = sum(1 for p in probe.path.rglob("*") if p.is_file())
    probe.slices = int(image.GetSize()[2])
    probe.spacing_mm = round(float(image.GetSpacing()[2]), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gallery", type=int, default=1000,
                    help="Templates in each gallery (synthetic ones + the person).")  # fmt: skip
    ap.add_argument("--data", type=Path, default=None,
                    help="Keep (and reuse) the generated phantom DICOM series here.")  # fmt: skip
    ap.add_argument("--series", type=Path, action="append", default=None,
                    help="Your own DICOM series folder as a probe (repeatable).")  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS / "identify.json")
    args = ap.parse_args()
    t_run, load_start = time.perf_counter(), os.getloadavg()

    from ctface.api import Gallery, acquire, default_model
    from ctface.errors import CtfaceError
    from ctface.phantom import CohortSpec

    model = default_model()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = args.data or work / "phantom"
        base = work / "synthetic.db"
        generation_s = 0.0
        if args.series:
            synthetic_gallery(base, args.gallery, model.version, model.config.embedding_dim)
            probes = [Probe(s.name, s, base, None, None) for s in args.series]
            data_note = "your DICOM series (--series) against synthetic templates only"
        else:
            spec = CohortSpec(subjects=1, scans_min=2, scans_max=2, seed=SEED,
                              dicom_fraction=1.0)  # fmt: skip
            print(f"phantom: 1 person, 2 DICOM scans, seed {SEED} -> {data}", flush=True)
            rows, generation_s = phantom_cohort(spec, data)
            synthetic_gallery(base, args.gallery - 1, model.version, model.config.embedding_dim)
            probes = []
            for i, r in enumerate(rows):
                other = rows[1 - i]
                db = work / f"gallery_{r['scan_id']}.db"
                shutil.copyfile(base, db)
                with Gallery.open(db) as g:
                    (o,) = g.enroll(data / other["path"], patient_id="PERSON")
                if o.status != "enrolled":
                    raise SystemExit(f"enrolling {other['path']} failed: {o.code} {o.reason}")
                probe = Probe(r["path"], data / r["path"], db, "PERSON", other["path"])
                probe.thickness_mm = float(r["slice_thickness_mm"])
                probes.append(probe)
            data_note = (f"phantom seed {SEED}: each series identified against "
                         f"{args.gallery - 1} synthetic templates + PERSON enrolled from the "
                         "other series")  # fmt: skip
        for probe in probes:
            describe(probe)
        galleries = {}
        for probe in probes:  # open, templates read, search index built: as a service runs
            galleries[probe.label] = g = Gallery.open(probe.db)
            g.check()
            g.identify(np.eye(model.config.embedding_dim, dtype=np.float32)[0])
        if args.series:  # the pipeline's first run (the phantoms' enrollment did it above)
            with suppress(CtfaceError):
                acquire(probes[0].path, model=model, digest=False)
        runs: dict[str, list[dict[str, Any]]] = {p.label: [] for p in probes}
        for rep in range(args.repeats):
            for probe in probes:
                env = {**os.environ, "CTFACE_GALLERY": str(probe.db)}
                row = measure(probe, galleries[probe.label], env, model)
                runs[probe.label].append(row)
                print(f"  repeat {rep + 1}/{args.repeats} {probe.label}: identify process "
                      f"{row['identify_process_s']:.2f} s, in process {row['in_process_s']:.2f}"
                      f" s -> {row['in_process_decision']}", flush=True)  # fmt: skip
        for g in galleries.values():
            g.close()

    series_out: list[dict[str, Any]] = []
    for probe in probes:
        rs = runs[probe.label]
        med = {k: median([r[k] for r in rs]) for k in rs[0] if k.endswith(("_s", "_mb"))}
        keys = ("identify_process_decision", "in_process_decision")
        decisions = sorted({str(r[k]) for r in rs for k in keys})
        ok = all(r["identify_process_decision"] == probe.expected
                 and r["in_process_decision"] == probe.expected for r in rs)  # fmt: skip
        series_out.append({
            "series": probe.label, "files": probe.files, "slices": probe.slices,
            "spacing_mm": probe.spacing_mm, "thickness_mm": probe.thickness_mm,
            "enrolled_from": probe.enrolled_from, "expected_decision": probe.expected,
            "decisions": decisions, "decisions_right": ok,
            "median": med,
            "process_ratio": ratio(med["identify_process_s"], med["bare_read_process_s"]),
            "in_process_ratio": ratio(med["in_process_s"], med["sitk_read_s"]),
            "stages_from": sorted({r["stages_from"] for r in rs}),
            "runs": rs,
        })  # fmt: skip
    for s in series_out:
        pr, ipr = s["process_ratio"], s["in_process_ratio"]
        s["meets_process_target"] = pr is not None and pr <= PROCESS_TARGET
        s["meets_process_goal"] = pr is not None and pr <= PROCESS_GOAL
        s["meets_in_process_target"] = ipr is not None and ipr <= IN_PROCESS_TARGET
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python benchmarks/identify.py --repeats {args.repeats} "
        f"--gallery {args.gallery}",
        "machine": machine(),
        "data": data_note,
        "gallery_templates": args.gallery,
        "repeats": args.repeats,
        "phantom_generation_s": round(generation_s, 1),
        "targets": {
            "process_ratio_max": PROCESS_TARGET,
            "process_ratio_goal": PROCESS_GOAL,
            "in_process_ratio_max": IN_PROCESS_TARGET,
        },
        "method": {
            "bare_read_process": "python -c: import SimpleITK; ImageSeriesReader("
            "GetGDCMSeriesFileNames) Execute; wall time start -> exit",
            "identify_process": "python -m ctface identify SERIES --json, CTFACE_GALLERY set",
            "in_process": "Gallery.identify(SERIES) with the model loaded and the gallery open",
            "in_process_bare_read": "SimpleITK ImageSeriesReader in this process",
            "peak_rss": "VmHWM of the child process, /proc polled every 0.05 s",
            "stages": "Acquisition.seconds and FaceRendering.timings_s of the timed call",
            "statistic": "median of the repeats, measurements interleaved",
        },  # fmt: skip
        "series": series_out,
        "benchmark_seconds": round(time.perf_counter() - t_run, 1),
        "load_average": load_note(load_start),
    }
    print_tables(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def print_tables(out: dict[str, Any]) -> None:
    m = out["machine"]
    print(f"\n{m['cpu_model']}, {m['cpu_count']} CPUs, {m['ram_gb']} GB; gallery of "
          f"{out['gallery_templates']} templates; median of {out['repeats']}")  # fmt: skip
    head = (f"{'series':<28} {'slices':>6} {'mm':>5} | {'read proc':>9} {'identify proc':>13} "
            f"{'ratio':>6} {'RSS MB':>7} | {'read':>6} {'pydicom':>7} {'identify':>8} {'ratio':>6}"
            f" | decision")  # fmt: skip
    print(f"{'':<41}| {'--- as processes (s) ---':^39} | {'--- in process (s) ---':^30} |")
    print(head)
    print("-" * len(head))
    for s in out["series"]:
        md = s["median"]
        print(f"{s['series']:<28} {s['slices']:>6} {s['spacing_mm']:>5.2f} | "
              f"{_f(md['bare_read_process_s']):>9} {_f(md['identify_process_s']):>13} "
              f"{_f(s['process_ratio'], '{:.1f}'):>6} "
              f"{_f(md['identify_process_rss_mb'], '{:.0f}'):>7}"
              f" | {_f(md['sitk_read_s']):>6} {_f(md['pydicom_read_s']):>7} "
              f"{_f(md['in_process_s']):>8} {_f(s['in_process_ratio'], '{:.1f}'):>6} | "
              f"{'/'.join(s['decisions'])}{'' if s['decisions_right'] else ' (WRONG)'}"
              )  # fmt: skip
    keys = ["load_s", "locate_s", "surface_s", "views_s", "render_rest_s", "embed_s",
            "search_decision_s", "in_process_s", "identify_process_internal_s"]  # fmt: skip
    names = ["load", "locate", "surface", "views", "rest", "embed", "search", "total",
             "cli p->d"]  # fmt: skip
    print("\nin-process stages (s; render = locate + surface + views + rest; cli p->d: the "
          "command's own probe -> decision seconds)")  # fmt: skip
    print(f"{'series':<28} " + " ".join(f"{n:>8}" for n in names))
    for s in out["series"]:
        print(f"{s['series']:<28} " + " ".join(f"{_f(s['median'].get(k)):>8}" for k in keys))
    print(f"targets: identify process <= {PROCESS_TARGET:g}x the bare read process "
          f"(goal {PROCESS_GOAL:g}x); in process <= {IN_PROCESS_TARGET:g}x the in-process "
          "read")  # fmt: skip


if __name__ == "__main__":
    main()
