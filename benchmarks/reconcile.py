"""Reconciling an archive: the engines that acquire its scans, and the cost of its all-pairs step.

Run: .venv/bin/python benchmarks/reconcile.py [--engines local dask ray] [--scans 20] [--jobs 2]
     [--startup-repeats 3] [--data DIR] [--sizes 10000 100000 1000000] [--fraction 0.05]
     [--max-case-s 600] [--skip-engines] [--skip-pairs] [--out benchmarks/results/reconcile.json]

1. Engines (``ctface.jobs.Engine``), side by side on the same scans: ``--scans`` phantom DICOM
   scans (seed 31: people x 2 scans, routine acquisitions: pixels 0.8-1.0 mm, slices 2-3 mm),
   listed as archive scans (``ingest.archive.list_archive``). Generating them is not timed;
   ``--data DIR`` keeps them for later runs. Every measurement runs in a fresh child process
   of this one (its *driver*: nothing is left over from another engine, e.g. the local pool's
   forkserver, which lives as long as its process):
   - startup: seconds from nothing to the first result of a trivial task (local: a process
     pool; dask: a distributed ``LocalCluster`` of ``--jobs`` one-thread worker processes and
     its client; ray: ``ray.init`` of a local cluster), the library's import apart
     (``import_s``); median of ``--startup-repeats`` fresh processes;
   - throughput: ``gallery.enroll.acquire_many(scans, default_model(), --jobs, engine=...)``,
     as enrollment runs it (a cluster started for the call, each worker reading the model once
     and keeping it loaded): scans per minute = 60 x scans / wall time of the call (cluster
     start, model loading in the workers included); also after the first result;
   - peak memory: the summed RSS of the driver's whole process tree (psutil, sampled every
     0.2 s in a thread of the driver): the driver (the model loaded, the dask scheduler runs
     in it), the local pool's forkserver and workers, dask's worker processes, Ray's GCS
     server, raylet, its helper processes and workers; the peak of the sum, and what each kind
     of process held at that moment. Shared pages are counted once per process that maps them.
   - templates: every engine's template of every scan against the first engine's: max
     absolute difference of the vectors, per scan (0: identical).
2. All pairs, synthetic templates (``--sizes``; 128-d unit float32; people with 1 + Poisson(1)
   scans, 2 on average; a scan = its person's random unit identity vector + Gaussian noise
   (genuine scores ~0.9, the shipped calibration's median); 0.1 % of the scans filed under
   another person's ID and 0.1 % without an ID, so every step runs), each case in a fresh
   child process:
   (a) ``gallery.reconcile.reconcile(templates, Calibration.load())``: patient centroids all
       pairs (``all_pairs_above``), within-ID pairs, the impostor-tail sample, probes x
       patients;
   (b) ``gallery.reconcile.all_pairs_above(vectors, threshold)`` over all N(N-1)/2 scan
       pairs, the threshold the one reconcile's ``match`` would be at N(N-1)/2 comparisons.
   Time: wall seconds of the call. Peak memory: the kernel's peak RSS of the child (VmHWM,
   reset through /proc/self/clear_refs just before the call; the input templates included),
   and the peak above the RSS before the call. A case whose all-pairs products would take
   more than ``--max-case-s`` (estimated from ~2 s of its first tiles, timed first) is
   measured on a fixed ``--fraction`` of its tiles (``reconcile.pair_tiles``; every k-th,
   k = 1 / fraction, spread over the triangle) and its all-pairs seconds extrapolated linearly
   in the number of pair products (measured seconds x all products / measured products);
   reconcile's other steps always run in full. Its peak memory is that of the measured tiles
   (the same tile size; only the hits of those tiles kept), its merge findings those of the
   measured tiles. The JSON (``extrapolated``, ``measured_fraction``, ``every_kth_tile``) and
   the table say so. Dot products: those computed (whole tiles: a tile on the diagonal
   computes both halves of itself; reconcile: + the within-ID matrices, the impostor-tail
   sample, the probes x patients); rate = dot products / seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ctface.gallery.reconcile import pair_tiles, pairs_above

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent
SEED = 31  # the phantom archive
PAIRS_SEED = 7  # the synthetic templates
PIXEL_MM, THICKNESS_MM = (0.8, 1.0), (2.0, 2.5, 3.0)
DIM = 128
NOISE = 0.0295  # per dimension: genuine scores ~ 1 / (1 + 128 NOISE^2) ~ 0.9
ERROR_RATE = 0.001  # scans filed under another person's ID; scans without an ID (each)
SAMPLE_S = 0.2


def _trivial(x: int) -> int:
    return x + 1


def _rel(p: Path) -> str:
    """A path for the record: relative to the repository, else its name only."""
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return f"<outside the repository>/{p.name}"


# -- memory ------------------------------------------------------------------------------------


def _role(p: Any, root: int) -> str:
    if p.pid == root:
        return "driver"
    try:
        cmd = " ".join(p.cmdline())
        name = p.name()
    except Exception:  # noqa: BLE001 - gone, or not readable
        return "other"
    if name in ("raylet", "gcs_server"):
        return name
    if cmd.startswith("ray::"):  # a process title: ray::IDLE, ray::_Runner, ray::...Agent
        return "ray helper" if "Agent" in cmd else "ray worker"
    if "default_worker.py" in cmd:  # a Ray worker before it sets its title
        return "ray worker"
    if "/ray/" in cmd:  # the dashboard, the autoscaler monitor, the log monitor, the agents
        return "ray helper"
    if "resource_tracker" in cmd:
        return "resource tracker"
    if "forkserver" in cmd:  # the server, and the pool's workers forked from it
        return "forkserver" if p.ppid() == root else "pool worker"
    if "spawn_main" in cmd:
        return "dask worker"  # spawned by its nanny (which runs in the driver)
    return "worker" if "python" in name else name


class TreeSampler(threading.Thread):
    """Every ``SAMPLE_S`` seconds, the RSS of every process under ``root`` (psutil); keeps the
    peak of their sum, with what each kind of process held then, and each process's peak."""

    def __init__(self, root: int | None = None) -> None:
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.root = root or os.getpid()
        self.halt = threading.Event()
        self.peak = 0
        self.at_peak: dict[str, int] = {}
        self.procs: dict[int, dict[str, Any]] = {}
        self.samples = 0
        self._cache: dict[int, Any] = {}

    def run(self) -> None:
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(SAMPLE_S)
        self.sample()

    def stop(self) -> dict[str, Any]:
        self.halt.set()
        self.join()
        mb = 2**20
        roles: dict[str, list[float]] = {}
        for d in self.procs.values():
            roles.setdefault(d["role"], []).append(d["peak"] / mb)
        return {
            "peak_tree_rss_mb": round(self.peak / mb, 1),
            "at_peak_mb": {k: round(v / mb, 1) for k, v in sorted(self.at_peak.items())},
            "process_peaks_mb": {
                k: [round(x, 1) for x in sorted(v, reverse=True)] for k, v in sorted(roles.items())
            },  # fmt: skip
            "samples": self.samples,
        }

    def sample(self) -> None:
        ps = self.psutil
        try:
            root = self._cache.setdefault(self.root, ps.Process(self.root))
            procs = [root, *root.children(recursive=True)]
        except ps.Error:
            return
        total = 0
        by_role: dict[str, int] = {}
        for p in procs:
            p = self._cache.setdefault(p.pid, p)
            try:
                rss = p.memory_info().rss
            except ps.Error:
                continue
            info = self.procs.setdefault(p.pid, {"peak": 0})
            role = _role(p, self.root)  # each time: a Ray process retitles itself
            if role != "other" or "role" not in info:  # "other": gone while looked at
                info["role"] = role
            info["peak"] = max(info["peak"], rss)
            total += rss
            by_role[info["role"]] = by_role.get(info["role"], 0) + rss
        self.samples += 1
        if total > self.peak:
            self.peak, self.at_peak = total, by_role


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# -- children ----------------------------------------------------------------------------------


def _no_dirs(line: str) -> str:
    """``line`` with the folders of its paths left out (no machine paths in the record)."""
    return re.sub(r"(/[^\s/:'\"]+)+/", "", line)


def run_child(task: dict[str, Any], work: Path) -> dict[str, Any]:
    """``task`` in a fresh ``python benchmarks/reconcile.py --child`` process; its result."""
    spec = work / f"task_{time.monotonic_ns()}.json"
    spec.write_text(json.dumps(task))
    result = spec.with_suffix(".out.json")
    with tempfile.TemporaryFile() as err:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(spec)],
                           stderr=err, check=False)  # fmt: skip
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if p.returncode != 0 or not result.exists():
        tail = "\n".join(lines[-15:])
        print(f"  child {task['kind']} {task.get('engine') or task.get('n')} failed (exit "
              f"{p.returncode}):\n{tail}", flush=True)  # fmt: skip
        return {"failed": True, "exit_code": p.returncode, "stderr_lines": len(lines),
                "error": lines[-1][-300:] if lines else ""}  # fmt: skip
    out: dict[str, Any] = json.loads(result.read_text())
    out["stderr_lines"] = len(lines)
    if lines:
        out["stderr_first"] = [_no_dirs(ln)[:160] for ln in lines[:3]]
    return out


def child_main(spec: Path) -> None:
    task = json.loads(spec.read_text())
    kind = task["kind"]
    if kind == "startup":
        out = child_startup(task["engine"], task["jobs"])
    elif kind == "throughput":
        out = child_throughput(task)
    elif kind == "pairs":
        out = child_pairs(task)
    else:
        raise SystemExit(f"unknown task {kind}")
    spec.with_suffix(".out.json").write_text(json.dumps(out))


def child_startup(engine: str, jobs: int) -> dict[str, Any]:
    """Seconds from nothing to the first result of a trivial task, in this fresh process."""
    import logging

    t = time.perf_counter()
    if engine == "dask":
        import dask  # noqa: F401
        from distributed import Client, LocalCluster
    elif engine == "ray":
        import ray
    else:
        from ctface.jobs import process_pool
    import_s = time.perf_counter() - t
    sampler = TreeSampler()
    sampler.start()
    t = time.perf_counter()
    if engine == "dask":
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)  # fmt: skip
        client = Client(cluster)
        assert client.submit(_trivial, 1, pure=False).result() == 2
        ready = time.perf_counter() - t
        time.sleep(1.0)  # the idle cluster's memory
        t = time.perf_counter()
        client.close()
        cluster.close()
    elif engine == "ray":
        ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)  # fmt: skip
        assert ray.get(ray.remote(_trivial).remote(1)) == 2
        ready = time.perf_counter() - t
        time.sleep(1.0)
        t = time.perf_counter()
        ray.shutdown()
    else:
        with process_pool(jobs) as pool:
            assert pool.submit(_trivial, 1).result() == 2
            ready = time.perf_counter() - t
            time.sleep(1.0)
            t = time.perf_counter()
    shutdown = time.perf_counter() - t
    mem = sampler.stop()
    return {"import_s": round(import_s, 3), "startup_s": round(ready, 3),
            "shutdown_s": round(shutdown, 3), "idle_tree_rss_mb": mem["peak_tree_rss_mb"],
            "idle_at_peak_mb": mem["at_peak_mb"]}  # fmt: skip


def child_throughput(task: dict[str, Any]) -> dict[str, Any]:
    """``acquire_many`` of the archive's first ``scans`` scans on the engine."""
    from ctface.api import default_model
    from ctface.gallery.enroll import acquire_many
    from ctface.ingest.archive import list_archive
    from ctface.jobs import Engine

    engine, jobs = Engine(task["engine"]), int(task["jobs"])
    sampler = TreeSampler()
    sampler.start()
    model = default_model()
    scans = list_archive(Path(task["data"]))[0][: int(task["scans"])]
    if engine != Engine.LOCAL:  # the library imported before the clock starts, as startup_s
        __import__("distributed" if engine == Engine.DASK else "ray")
    driver_before = psutil_rss_mb()
    times: list[float] = []
    t = time.perf_counter()
    results = acquire_many(scans, model, jobs, lambda i, r: times.append(time.perf_counter() - t),
                           engine=engine)  # fmt: skip
    wall = time.perf_counter() - t
    mem = sampler.stop()
    vectors, labels, failures = [], [], []
    for s, (acq, code, reason, _secs) in zip(scans, results, strict=True):
        labels.append(s.label)
        if acq is None:
            failures.append({"scan": s.label, "code": str(code), "reason": (reason or "")[:300]})
            vectors.append(np.full(DIM, np.nan, np.float32))
        else:
            vectors.append(np.asarray(acq.template.vector, np.float32))
    np.savez(task["templates_out"], labels=np.array(labels), vectors=np.stack(vectors))
    first = min(times) if times else None
    n = len(scans)
    acq_s = [r[3] for r in results if r[0] is not None]
    return {
        "engine": str(engine),
        "jobs": jobs,
        "scans": n,
        "wall_s": round(wall, 2),
        "scans_per_minute": round(60 * n / wall, 2),
        "first_result_s": round(first, 2) if first is not None else None,
        "scans_per_minute_after_first": (
            round(60 * (n - 1) / (wall - first), 2)
            if first is not None and n > 1 and wall > first
            else None
        ),  # fmt: skip
        "acquisition_s_median": round(statistics.median(acq_s), 3) if acq_s else None,
        "acquisition_s_sum": round(sum(acq_s), 2),
        "failures": failures,
        "driver_rss_before_mb": driver_before,
        "memory": mem,
        "model_version": model.version,
    }


def psutil_rss_mb() -> float:
    return round(_status_kb("VmRSS") / 1024, 1)


# -- synthetic templates and the all-pairs cases -----------------------------------------------


def synthetic(n: int, seed: int = PAIRS_SEED) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """``n`` unit templates of people with 1 + Poisson(1) scans, their gallery IDs (a few
    filed under another person's ID, a few without an ID), and what was put in."""
    from ctface.gallery.reconcile import archive_patient_id

    rng = np.random.default_rng([seed, n])
    counts = 1 + rng.poisson(1.0, size=n // 2 + n // 5 + 16)
    person = np.repeat(np.arange(len(counts)), counts)[:n]
    people = int(person[-1]) + 1
    identity = rng.standard_normal((people, DIM), dtype=np.float32)
    identity /= np.linalg.norm(identity, axis=1, keepdims=True)
    vec = np.empty((n, DIM), np.float32)
    for s in range(0, n, 65536):  # in chunks: no float64 copy of the whole
        v = identity[person[s : s + 65536]]
        v += NOISE * rng.standard_normal(v.shape, dtype=np.float32)
        vec[s : s + 65536] = v / np.linalg.norm(v, axis=1, keepdims=True)
    del identity
    ids = np.array([f"P{p:07d}" for p in person], dtype=object)
    k = max(1, round(ERROR_RATE * n))
    rows = rng.choice(n, size=2 * k, replace=False)
    wrong, unlabeled = rows[:k], rows[k:]
    others = (person[wrong] + rng.integers(1, people, size=k)) % people
    ids[wrong] = [f"P{p:07d}" for p in others]
    ids[unlabeled] = [archive_patient_id("", f"1.2.826.0.1.{i}") for i in range(k)]
    return vec, ids.tolist(), {"people": people, "mislabeled": k, "unlabeled": k}


def products(tiles: list[tuple[int, int, int, int]]) -> int:
    """Dot products computed over ``tiles`` (``pair_tiles``' rectangles)."""
    return sum((i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in tiles)


def probe_rate(vectors: np.ndarray, n: int) -> float:
    """Dot products per second of ``all_pairs_above``'s loop at ``n`` rows (a few blocks of the
    first ``n`` rows of ``vectors``, the widest ones)."""
    v = vectors[:n]
    tiles = pair_tiles(n)
    pairs_above(v, 2.0, tiles[:1])  # warm-up (threads, caches)
    t, done = time.perf_counter(), []
    for tile in tiles:  # from the first tile on, about 2 s of them
        pairs_above(v, 2.0, [tile])
        done.append(tile)
        if time.perf_counter() - t > 2.0:
            break
    return products(done) / max(time.perf_counter() - t, 1e-9)


def sampled_tiles(n: int, fraction: float) -> tuple[list[tuple[int, int, int, int]], int]:
    """Every k-th tile of ``pair_tiles(n)`` (k = round(1 / fraction)), the middle one of each
    run of k."""
    k = max(1, round(1 / fraction))
    return [t for i, t in enumerate(pair_tiles(n)) if i % k == k // 2], k


def child_pairs(task: dict[str, Any]) -> dict[str, Any]:
    import ctface.gallery.reconcile as rc
    from ctface.gallery.calibration import DEFAULT_FMR, Calibration
    from ctface.gallery.scores import ImpostorTail
    from ctface.gallery.site import different_id_pairs, scores
    from ctface.gallery.store import GalleryTemplates

    n, what = int(task["n"]), task["what"]
    fraction, max_case_s = float(task["fraction"]), float(task["max_case_s"])
    t = time.perf_counter()
    vec, ids, made = synthetic(n)
    gen_s = time.perf_counter() - t
    labeled = [p for p in ids if not rc.is_unlabeled(p)]
    m_est = len(set(labeled))  # the patients (centroids) reconcile compares all-pairs
    width = m_est if what == "reconcile" else n
    rate = probe_rate(vec, width)
    total_products = products(pair_tiles(width))
    estimate = total_products / rate
    extrapolate = estimate > max_case_s
    out: dict[str, Any] = {
        "what": what, "n": n, "generation_s": round(gen_s, 2), **made,
        "all_pairs_rows": width, "estimated_all_pairs_s": round(estimate, 1),
        "probe_rate_per_s": round(rate),
    }  # fmt: skip
    record: dict[str, Any] = {}

    def all_pairs(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
        rows = len(vectors)
        tiles, k = sampled_tiles(rows, fraction) if extrapolate else (pair_tiles(rows), 1)
        t0 = time.perf_counter()
        if extrapolate:
            hits = pairs_above(vectors, threshold, tiles)
        else:
            hits = original(vectors, threshold)
        secs = time.perf_counter() - t0
        total, done = products(pair_tiles(rows)), products(tiles)
        record.update(rows=rows, threshold=threshold, hits=len(hits), measured_s=secs,
                      products_total=total, products_measured=done, every_kth_tile=k,
                      tiles_total=len(pair_tiles(rows)), tiles_measured=len(tiles),
                      seconds=secs * total / done if done else 0.0)  # fmt: skip
        return hits

    original = rc.all_pairs_above
    if what == "reconcile":
        calibration = Calibration.load()
        templates = GalleryTemplates(vec, ids, np.arange(n, dtype=np.int64), "synthetic")
        rc.all_pairs_above = all_pairs  # reconcile's merge step looks it up in its module
        rss0 = psutil_rss_mb()
        reset = _reset_peak()
        t = time.perf_counter()
        result = rc.reconcile(templates, calibration)
        measured = time.perf_counter() - t
        peak = _status_kb("VmHWM") / 1024
        rc.all_pairs_above = original
        lv = result.levels
        within = sum(len(r) ** 2 for r in _by_id(ids).values() if len(r) > 1)
        tail_pairs = _tail_pairs(result.patients)
        probes = lv.comparisons - result.patients * (result.patients - 1) // 2
        rest = measured - record["measured_s"]
        seconds = rest + record["seconds"]
        dots = record["products_total"] + within + tail_pairs + probes
        kinds: dict[str, int] = {}
        for f in result.findings:
            kinds[str(f.kind)] = kinds.get(str(f.kind), 0) + 1
        out.update(
            patients=result.patients, unlabeled_found=result.unlabeled, levels=lv.to_json(),
            findings=kinds,
            findings_note=("merges: of the measured row blocks only" if extrapolate else ""),
            merge_all_pairs=_pairs_record(record), other_steps_s=round(rest, 2),
            seconds=round(seconds, 2), measured_s=round(measured, 2),
            dot_products={"centroid_pairs_computed": record["products_total"],
                          "within_id": within, "impostor_tail_sample": tail_pairs,
                          "probes_x_patients": probes, "total": dots},
            rate_per_s=round(dots / seconds) if seconds else None,
        )  # fmt: skip
    else:
        labels = np.unique(np.array(ids, dtype=object), return_inverse=True)[1]
        a, b, _ = different_id_pairs(labels)
        tail = ImpostorTail.fit(scores(vec, a, b))
        del a, b
        pairs = n * (n - 1) // 2
        threshold = tail.threshold(min(DEFAULT_FMR, 1.0 / pairs))
        rss0 = psutil_rss_mb()
        reset = _reset_peak()
        all_pairs(vec, threshold)
        peak = _status_kb("VmHWM") / 1024
        seconds = record["seconds"]
        out.update(threshold=round(threshold, 4), pairs=pairs,
                   all_pairs=_pairs_record(record), seconds=round(seconds, 2),
                   measured_s=round(record["measured_s"], 2),
                   dot_products={"total": record["products_total"], "distinct_pairs": pairs},
                   rate_per_s=round(record["products_total"] / seconds) if seconds else None,
                   )  # fmt: skip
    out.update(
        extrapolated=extrapolate,
        measured_fraction=(
            round(record["products_measured"] / record["products_total"], 4)
            if record["products_total"]
            else 1.0
        ),  # fmt: skip
        input_mb=round(vec.nbytes / 2**20, 1),
        rss_before_mb=rss0,
        peak_rss_mb=round(peak, 1) if reset else None,
        peak_above_before_mb=round(peak - rss0, 1) if reset else None,
        peak_method="VmHWM reset before the call" if reset else "unavailable (no clear_refs)",
    )
    return out


def _by_id(ids: list[str]) -> dict[str, list[int]]:
    from ctface.gallery.reconcile import is_unlabeled

    by: dict[str, list[int]] = {}
    for i, p in enumerate(ids):
        if not is_unlabeled(p):
            by.setdefault(p, []).append(i)
    return by


def _tail_pairs(patients: int) -> int:
    from ctface.gallery.reconcile import MIN_ARCHIVE_PAIRS
    from ctface.gallery.site import MAX_IMPOSTOR_PAIRS

    pairs = patients * (patients - 1) // 2
    return 0 if pairs < MIN_ARCHIVE_PAIRS else min(pairs, MAX_IMPOSTOR_PAIRS)


def _pairs_record(r: dict[str, Any]) -> dict[str, Any]:
    return {"rows": r["rows"], "threshold": round(float(r["threshold"]), 4), "hits": r["hits"],
            "tiles": r["tiles_total"], "tiles_measured": r["tiles_measured"],
            "every_kth_tile": r["every_kth_tile"], "products": r["products_total"],
            "products_measured": r["products_measured"], "measured_s": round(r["measured_s"], 2),
            "seconds": round(r["seconds"], 2)}  # fmt: skip


def check_tiles_match() -> bool:
    """``pairs_above`` over sampled tiles plus the rest gives what ``all_pairs_above`` gives."""
    from ctface.gallery.reconcile import all_pairs_above

    rng = np.random.default_rng(1)
    vec = rng.normal(size=(3000, 128)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    tiles = pair_tiles(len(vec))
    some, _ = sampled_tiles(len(vec), 0.5)
    rest = [t for t in tiles if t not in some]
    merged = pairs_above(vec, 0.2, some) + pairs_above(vec, 0.2, rest)
    return set(merged) == set(all_pairs_above(vec, 0.2))  # the order of equal scores may differ


def engines_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from identify import phantom_cohort

    from ctface.ingest.archive import list_archive
    from ctface.phantom import CohortSpec
    from ctface.phantom.params import NuisanceConfig

    subjects = math.ceil(args.scans / 2)
    spec = CohortSpec(subjects=subjects, scans_min=2, scans_max=2, seed=SEED, dicom_fraction=1.0,
                      nuisance=NuisanceConfig(pixel_mm=PIXEL_MM,
                                              slice_thickness_mm=THICKNESS_MM))  # fmt: skip
    data = args.data or work / "archive"
    print(f"phantom archive: {subjects} people x 2 DICOM scans, seed {SEED}", flush=True)
    rows, generation_s = phantom_cohort(spec, data, jobs=min(2, os.cpu_count() or 1))
    print(f"  generated in {generation_s:.0f} s" if generation_s else "  reused", flush=True)
    scans, skipped = list_archive(data)
    scans = scans[: args.scans]
    slices = {r["scan_id"]: int(r["n_slices"]) for r in rows}
    out: dict[str, Any] = {
        "data": (
            f"phantom archive seed {SEED}: {subjects} people x 2 DICOM scans, pixels "
            f"{list(PIXEL_MM)} mm, slice thickness {list(THICKNESS_MM)} mm"
            f"{' (--data ' + _rel(data) + ')' if args.data else ''}"
        ),  # fmt: skip
        "scans": len(scans),
        "listed_skipped": len(skipped),
        "slices_total": sum(slices.values()),
        "phantom_generation_s": round(generation_s, 1),
        "jobs": args.jobs,
        "startup_repeats": args.startup_repeats,
        "engines": {},
    }
    for engine in args.engines:
        starts = []
        for rep in range(args.startup_repeats):
            s = run_child({"kind": "startup", "engine": engine, "jobs": args.jobs}, work)
            starts.append(s)
            if s.get("failed"):
                break
            print(f"  {engine}: startup {rep + 1}/{args.startup_repeats} {s['startup_s']:.2f} s "
                  f"(import {s['import_s']:.2f} s)", flush=True)  # fmt: skip
        ok = [s for s in starts if not s.get("failed")]
        npz = work / f"templates_{engine}.npz"
        print(f"  {engine}: acquiring {len(scans)} scans, --jobs {args.jobs}", flush=True)
        tp = run_child({"kind": "throughput", "engine": engine, "jobs": args.jobs,
                        "data": str(data), "scans": args.scans, "templates_out": str(npz)},
                       work)  # fmt: skip
        if not tp.get("failed"):
            print(f"  {engine}: {tp['wall_s']:.1f} s, {tp['scans_per_minute']:.1f} scans/min, "
                  f"peak {tp['memory']['peak_tree_rss_mb']:.0f} MB, "
                  f"{len(tp['failures'])} failed", flush=True)  # fmt: skip
        out["engines"][engine] = {
            "startup_s": statistics.median(s["startup_s"] for s in ok) if ok else None,
            "startup_runs_s": [s["startup_s"] for s in ok],
            "import_s": statistics.median(s["import_s"] for s in ok) if ok else None,
            "shutdown_s": statistics.median(s["shutdown_s"] for s in ok) if ok else None,
            "idle_tree_rss_mb": max(s["idle_tree_rss_mb"] for s in ok) if ok else None,
            "idle_at_peak_mb": ok[-1]["idle_at_peak_mb"] if ok else None,
            "startup_failed": [s for s in starts if s.get("failed")],
            "startup_stderr_lines": [s["stderr_lines"] for s in starts],
            "throughput": tp,
        }
    out["templates"] = compare_templates(args.engines, work)
    return out


def compare_templates(engines: list[str], work: Path) -> dict[str, Any]:
    """Each engine's templates against the first engine's: max |difference| per scan."""
    got = {}
    for e in engines:
        f = work / f"templates_{e}.npz"
        if f.exists():
            with np.load(f) as z:
                got[e] = (list(z["labels"]), z["vectors"])
    if not got:
        return {}
    ref = next(iter(got))
    labels, base = got[ref]
    out: dict[str, Any] = {"reference": ref, "engines": {}}
    for e, (lab, v) in got.items():
        if e == ref:
            continue
        if lab != labels:
            out["engines"][e] = {"error": "another list of scans"}
            continue
        diff = np.abs(v - base).max(axis=1)
        per = {str(k): (None if np.isnan(d) else float(d)) for k, d in zip(lab, diff, strict=True)}
        finite = [d for d in per.values() if d is not None]
        out["engines"][e] = {
            "max_abs_diff": max(finite) if finite else None,
            "identical": bool(finite) and len(finite) == len(per) and max(finite) == 0.0,
            "per_scan": per,
        }
    return out


def pairs_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cases = []
    for n in args.sizes:
        for what in ("reconcile", "all_pairs_above"):
            print(f"  {what} at {n:,} templates ...", flush=True)
            r = run_child({"kind": "pairs", "what": what, "n": n, "fraction": args.fraction,
                           "max_case_s": args.max_case_s}, work)  # fmt: skip
            if not r.get("failed"):
                note = (f" (extrapolated from {r['measured_fraction']:.1%} of the pair products)"
                        if r["extrapolated"] else "")  # fmt: skip
                print(f"    {r['seconds']:.1f} s{note}, peak {r['peak_rss_mb']} MB, "
                      f"{r['rate_per_s'] / 1e6:.0f} M dot products/s", flush=True)  # fmt: skip
            cases.append({"what": what, "n": n, **r})
    return {
        "templates": (
            f"synthetic, seed {PAIRS_SEED}: {DIM}-d unit float32; people with 1 + "
            f"Poisson(1) scans (2 on average); scan = identity + N(0, {NOISE}^2) per "
            f"dimension, normalized; {ERROR_RATE:.1%} of the scans under another "
            f"person's ID and {ERROR_RATE:.1%} without an ID"
        ),  # fmt: skip
        "fraction": args.fraction,
        "max_case_s": args.max_case_s,
        "tiles_match_all_pairs_above": check_tiles_match(),
        "cases": cases,
    }


# -- output ------------------------------------------------------------------------------------


def print_tables(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 170))
    m = out["machine"]
    console.print(f"\n{m['cpu_model']}, {m['cpu_count']} CPUs, {m['ram_gb']} GB")
    eng = out.get("engines")
    if eng:
        t = Table(title=f"engines: {eng['scans']} phantom DICOM scans ({eng['slices_total']} "
                  f"slices), --jobs {eng['jobs']}")  # fmt: skip
        for c in ("engine", "startup s", "import s", "idle MB", "wall s", "scans/min",
                  "first s", "scans/min after", "peak tree MB", "at peak", "failed",
                  "max |diff|"):  # fmt: skip
            t.add_column(c, justify="left" if c in ("engine", "at peak") else "right")
        diffs = eng["templates"].get("engines", {}) if eng["templates"] else {}
        for name, e in eng["engines"].items():
            tp = e["throughput"]
            ok = not tp.get("failed")
            d = diffs.get(name, {}).get("max_abs_diff", "ref" if ok else None)
            at_peak = tp["memory"]["at_peak_mb"].items() if ok else []
            at = ", ".join(f"{k} {v:.0f}" for k, v in at_peak)
            t.add_row(name, _f(e["startup_s"]), _f(e["import_s"]), _f(e["idle_tree_rss_mb"], 0),
                      _f(tp.get("wall_s"), 1), _f(tp.get("scans_per_minute"), 1),
                      _f(tp.get("first_result_s"), 1),
                      _f(tp.get("scans_per_minute_after_first"), 1),
                      _f(tp["memory"]["peak_tree_rss_mb"], 0) if ok else "FAILED", at,
                      str(len(tp["failures"])) if ok else "-",
                      d if isinstance(d, str) else _f(d, 3, "g"))  # fmt: skip
        console.print(t)
    pairs = out.get("pairs")
    if pairs:
        t = Table(title="all pairs, synthetic 128-d templates (E = extrapolated)")
        for c in ("case", "N", "all-pairs rows", "dot products", "seconds", "measured",
                  "pairs/s", "peak MB", "above before MB", "hits / findings"):  # fmt: skip
            t.add_column(c, justify="left" if c in ("case", "measured", "hits / findings")
                         else "right")  # fmt: skip
        for c in pairs["cases"]:
            if c.get("failed"):
                t.add_row(c["what"], f"{c['n']:,}", *(["FAILED"] + [""] * 7))
                continue
            measured = (f"E: {c['measured_fraction']:.1%} of products, {c['measured_s']:.0f} s"
                        if c["extrapolated"] else "all")  # fmt: skip
            found = (
                ", ".join(f"{k} {v}" for k, v in c["findings"].items())
                if c["what"] == "reconcile"
                else f"{c['all_pairs']['hits']:,} hits"
            )
            t.add_row(c["what"], f"{c['n']:,}", f"{c['all_pairs_rows']:,}",
                      f"{c['dot_products']['total']:.3g}",
                      ("E " if c["extrapolated"] else "") + _f(c["seconds"], 1), measured,
                      f"{c['rate_per_s']:.3g}", _f(c["peak_rss_mb"], 0),
                      _f(c["peak_above_before_mb"], 0), found)  # fmt: skip
        console.print(t)
    maths = out["maths"]
    t = Table(title=f"default thresholds by archive size (2 scans per patient; link "
              f"{maths['link_threshold']}, G(link) {maths['genuine_below_link']})")  # fmt: skip
    for c in ("scans", "patient pairs", "FMR", "match", "false matches", "false splits",
              "listed", "genuine >= match"):  # fmt: skip
        t.add_column(c, justify="right")
    for r in maths["sizes"]:
        t.add_row(f"{r['scans']:,}", f"{r['comparisons']:.3g}", f"{r['fmr']:.2g}",
                  f"{r['match_threshold']:.3f}", f"{r['expected_false_matches']:.2f}",
                  f"{r['expected_false_unmatched_splits']:.1f}",
                  "yes" if r["unmatched_splits_listed"] else "no",
                  f"{r['genuine_pairs_at_or_above_match']:.3f}")  # fmt: skip
    console.print(t)


def maths_part(sizes: list[int]) -> dict[str, Any]:
    """The default thresholds and expected false findings by archive size, with the shipped
    calibration's impostor tail and genuine scores (README "Reconcile an archive"): N scans of
    N / 2 patients with 2 scans each, no unlabeled scans."""
    import ctface.gallery.reconcile as rc
    from ctface.gallery.calibration import DEFAULT_FMR, Calibration
    from ctface.gallery.scores import ImpostorTail

    cal = Calibration.load()
    tail = ImpostorTail.fit(cal.impostor)
    link = tail.threshold(rc.LINK_RATE)
    g_link = rc.genuine_below(cal, link)
    rows = []
    for n in sizes:
        m = n // 2
        comparisons = m * (m - 1) // 2
        fmr = min(DEFAULT_FMR, rc.EXPECTED_FALSE_MATCHES / comparisons)
        match = tail.threshold(fmr)
        false_splits = n * g_link / 2
        rows.append(
            {
                "scans": n,
                "patients": m,
                "comparisons": comparisons,
                "fmr": fmr,
                "match_threshold": round(match, 4),
                "expected_false_matches": round(comparisons * float(tail.rate(match)), 3),
                "expected_false_unmatched_splits": round(false_splits, 1),
                "unmatched_splits_listed": false_splits <= rc.MAX_FALSE_UNMATCHED,
                "genuine_pairs_at_or_above_match": round(1 - cal.fnmr_at(match), 3),
            }
        )
    return {"calibration": cal.label, "link_threshold": round(link, 4),
            "genuine_below_link": round(g_link, 5), "genuine_pairs": len(cal.genuine),
            "impostor_pairs": len(cal.impostor), "tail_median": round(tail.median, 5),
            "tail_spread": round(tail.spread, 5), "sizes": rows}  # fmt: skip


def _f(v: float | None, digits: int = 2, kind: str = "f") -> str:
    return "-" if v is None else f"{v:.{digits}{kind}}"


def command(args: argparse.Namespace) -> str:
    """The command line of this run, without machine paths."""
    parts = ["python benchmarks/reconcile.py"]
    if not args.skip_pairs:
        parts.append("--sizes " + " ".join(map(str, args.sizes)))
    if not args.skip_engines:
        parts += [f"--engines {' '.join(args.engines)}", f"--scans {args.scans}",
                  f"--jobs {args.jobs}", f"--startup-repeats {args.startup_repeats}"]  # fmt: skip
        parts += ["--data DIR"] if args.data else []
    parts += ["--skip-engines"] if args.skip_engines else []
    parts += ["--skip-pairs"] if args.skip_pairs else []
    if not args.skip_pairs:
        parts.append(f"--fraction {args.fraction:g} --max-case-s {args.max_case_s:g}")
    if args.out.resolve() != (RESULTS / "reconcile.json").resolve():
        parts.append(f"--out {_rel(args.out)}")
    return " ".join(parts)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(Path(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--engines", nargs="+", default=["local", "dask", "ray"],
                    choices=["local", "dask", "ray"])  # fmt: skip
    ap.add_argument("--scans", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--startup-repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None,
                    help="Keep (and reuse) the generated phantom archive here.")  # fmt: skip
    ap.add_argument("--skip-engines", action="store_true")
    ap.add_argument("--skip-pairs", action="store_true")
    ap.add_argument(
        "--fraction",
        type=float,
        default=0.05,
        help="Share of the row blocks measured when a case is extrapolated.",
    )
    ap.add_argument(
        "--max-case-s",
        type=float,
        default=600.0,
        help="All-pairs seconds (estimated) beyond which a case is extrapolated.",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "reconcile.json")
    args = ap.parse_args()
    from identify import load_note, machine

    t_run, load_start = time.perf_counter(), os.getloadavg()
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "command": command(args),
        "machine": machine(),
        "method": (__doc__ or "")[(__doc__ or "").find("1. Engines") :].strip(),
    }
    for pkg in ("dask", "distributed", "ray", "psutil", "scipy"):
        try:
            out["machine"]["versions"][pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out["machine"]["versions"][pkg] = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_engines:
            t = time.perf_counter()
            out["engines"] = engines_part(args, work)
            out["engines"]["part_seconds"] = round(time.perf_counter() - t, 1)
        if not args.skip_pairs:
            t = time.perf_counter()
            print("all pairs, synthetic templates", flush=True)
            out["pairs"] = pairs_part(args, work)
            out["pairs"]["part_seconds"] = round(time.perf_counter() - t, 1)
    out["maths"] = maths_part([1_000, 10_000, 100_000, 1_000_000])
    out["benchmark_seconds"] = round(time.perf_counter() - t_run, 1)
    out["load_average"] = load_note(load_start)
    print_tables(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {_rel(args.out)}")


if __name__ == "__main__":
    main()
