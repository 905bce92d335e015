"""Identification search scaling: latency, memory and agreement with exact search at gallery
sizes 10^3 ... 10^6 templates (synthetic templates; the recognition model is not involved).

Run: .venv/bin/python benchmarks/search.py [--sizes 1000 10000 100000 1000000] [--queries 200]
     [--threads 2]

Templates: 128-d unit vectors, two scans per synthetic patient (a random identity direction
plus per-scan noise of 0.04 per dimension: same-patient cosine ~0.83, about the shipped model's
genuine scores; different patients ~0). Probes: a new scan of an enrolled patient (noise
around the identity). Per size: the production path (``TemplateIndex.cached``: exact NumPy
below 50,000 templates, FAISS IVF-Flat above), the exact search on the same templates, the
per-query latency of a top-5 patient ranking (mean and p95 over single queries), index build
time, resident memory of the templates + index, how often the production path's rank-1 patient
and score equal the exact search's, and the time to read the templates from the SQLite gallery
(the first `ctface identify` after a change) and from the cache beside it (every later call;
the FAISS index is cached there too).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from ctface.gallery import GalleryDatabase, TemplateIndex
from ctface.gallery.records import ScanRecord
from ctface.gallery.search import FAISS_MIN

RESULTS = Path(__file__).parent / "results"
DIM, NOISE = 128, 0.04


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _gallery_file(folder: Path, vectors: np.ndarray) -> Path:
    """A real gallery database holding ``vectors`` (bulk insert: one transaction)."""
    path = folder / f"g{len(vectors)}.db"
    with GalleryDatabase(path, create=True) as g:
        g.add_scan("P0", ScanRecord("d0", "s", None, None, "", {}, {}), vectors[0], "bench")
    db = sqlite3.connect(path)
    with db:
        db.executemany("INSERT OR IGNORE INTO patients VALUES (?, 'x')",
                       ((f"P{i // 2}",) for i in range(1, len(vectors))))  # fmt: skip
        db.executemany(
            "INSERT INTO scans (patient_id, digest, source, dicom_patient_id, acquisition, "
            "quality, model_version, template, enrolled_at) VALUES (?, ?, 's', '', '{}', '{}', "
            "'bench', ?, 'x')",
            ((f"P{i // 2}", f"d{i}", vectors[i].tobytes()) for i in range(1, len(vectors))),
        )
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")
    db.close()
    return path


def _time_queries(index: TemplateIndex, probes: np.ndarray) -> tuple[list[float], list]:
    times, firsts = [], []
    for p in probes:
        t = time.perf_counter()
        c = index.rank_patients(p, 5)
        times.append(time.perf_counter() - t)
        firsts.append((c[0].patient_id, c[0].score))
    return times, firsts


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def run(size: int, queries: int, folder: Path, rng: np.random.Generator) -> dict:
    ids = _unit(rng.standard_normal((size // 2, DIM)))
    vectors = _unit(np.repeat(ids, 2, axis=0) + NOISE * rng.standard_normal((size, DIM)))
    pick = rng.choice(size // 2, queries, replace=False)
    probes = _unit(ids[pick] + NOISE * rng.standard_normal((queries, DIM)))
    path = _gallery_file(folder, vectors)
    del vectors
    t = time.perf_counter()
    with GalleryDatabase(path) as g:
        templates = g.templates(cache=True)  # the first identify call after a change
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    with GalleryDatabase(path) as g:
        g.templates(cache=True)  # every later call
    cached_read_s = time.perf_counter() - t
    rss0 = _rss_mb()
    t = time.perf_counter()
    index = TemplateIndex.cached(templates, path)  # builds (and caches) FAISS when large
    build_s = time.perf_counter() - t
    rss = _rss_mb() - rss0 + templates.vectors.nbytes / 2**20
    lat, first = _time_queries(index, probes)
    t = time.perf_counter()
    TemplateIndex.cached(templates, path)  # what the next identify call does
    cached_s = time.perf_counter() - t
    truth = [f"P{i}" for i in pick]
    correct = np.mean([a[0] == t for a, t in zip(first, truth, strict=True)])
    exact = TemplateIndex(templates, exact=True)
    lat_exact, first_exact = _time_queries(exact, probes)
    same = np.mean([a[0] == b[0] and abs(a[1] - b[1]) < 1e-5
                    for a, b in zip(first, first_exact, strict=True)])  # fmt: skip
    row = {
        "templates": size,
        "search": index.kind,
        "query_ms_mean": round(1e3 * float(np.mean(lat)), 3),
        "query_ms_p95": round(1e3 * float(np.percentile(lat, 95)), 3),
        "exact_query_ms_mean": round(1e3 * float(np.mean(lat_exact)), 3),
        "build_s": round(build_s, 2),
        "cached_index_load_s": round(cached_s, 3),
        "gallery_read_s": round(load_s, 3),
        "gallery_cached_read_s": round(cached_read_s, 3),
        "memory_mb": round(rss, 1),
        "rank1_equals_exact": round(float(same), 4),
        "rank1_correct": round(float(correct), 4),
    }
    path.unlink()
    for f in folder.glob(f"{path.name}*"):
        f.unlink()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "search.json")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    head = ("templates", "search", "ms/query", "p95 ms", "exact ms", "build s", "read s",
            "cached s", "MB", "=exact", "rank-1")  # fmt: skip
    print(" ".join(f"{h:>11}" for h in head))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            r = run(size, args.queries, Path(tmp), rng)
            rows.append(r)
            kind = r["search"].split("(")[0]
            cells = (r["templates"], kind, r["query_ms_mean"], r["query_ms_p95"],
                     r["exact_query_ms_mean"], r["build_s"], r["gallery_read_s"],
                     r["gallery_cached_read_s"], r["memory_mb"], r["rank1_equals_exact"],
                     r["rank1_correct"])  # fmt: skip
            print(" ".join(f"{c:>11}" for c in cells), flush=True)
    out = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "dim": DIM,
           "faiss_from": FAISS_MIN, "queries": args.queries, "rows": rows,
           "command": "python benchmarks/search.py"}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
